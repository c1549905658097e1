"""Content digests of source files (avemotion.preprocess.sources): what decides that a file is read
again, what the per-dataset cache keeps when parallel jobs write it or it is unreadable, and what
one digest of a list of files depends on. (tests/test_preprocess_chunk.py has the receipts built on
them: a touched file keeps its digest, parallel writers' entries are merged.)"""

import hashlib
import json
import os
import shutil
import tracemalloc

import pytest

from avemotion.io import read_json
from avemotion.preprocess import sources


@pytest.fixture(autouse=True)
def new_process(monkeypatch):
    """Each test starts as a fresh process would: no cache read yet."""
    monkeypatch.setattr(sources, "_caches", {})


@pytest.fixture
def reads(monkeypatch):
    """The paths whose content was read, in order."""
    paths, read = [], sources.file_digest

    def counted(path):
        paths.append(path)
        return read(path)

    monkeypatch.setattr(sources, "file_digest", counted)
    return paths


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def test_a_files_digest_is_the_sha1_of_all_its_bytes_past_the_first_read_block(tmp_path):
    head = bytes(range(256)) * (sources.BLOCK // 256 + 1000)  # more than one block
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    first.write_bytes(head + b"a")
    second.write_bytes(head + b"b")
    assert sources.file_digest(first) == sha1(head + b"a")
    assert sources.file_digest(second) == sha1(head + b"b")


def test_a_file_is_hashed_in_memory_that_does_not_grow_with_its_size(tmp_path):
    clip = tmp_path / "clip.mp4"
    size = max(16 << 20, 8 * sources.BLOCK)
    clip.write_bytes(b"\x01" * size)
    tracemalloc.start()
    try:
        digest = sources.file_digest(clip)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest == sha1(clip.read_bytes())
    assert peak < size / 4


def test_another_file_of_the_same_size_and_mtime_moved_in_place_is_read_again(tmp_path, reads):
    """A clip replaced by another (a rename over it keeping size and time) has a new inode."""
    clip, cache = tmp_path / "clip.mp4", tmp_path / "source_digests.json"
    clip.write_bytes(b"aaaa")
    assert sources.file_digests([clip], cache) == [sha1(b"aaaa")]
    old = clip.stat()
    other = tmp_path / "other.mp4"
    other.write_bytes(b"bbbb")
    os.utime(other, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(other, clip)
    new = clip.stat()
    assert (new.st_size, new.st_mtime_ns) == (old.st_size, old.st_mtime_ns) and new.st_ino != old.st_ino
    assert sources.file_digests([clip], cache) == [sha1(b"bbbb")] and len(reads) == 2
    sources._caches.clear()  # and a new process has its digest from the cache
    assert sources.file_digests([clip], cache) == [sha1(b"bbbb")] and len(reads) == 2


def test_a_file_that_grew_with_its_mtime_set_back_is_read_again(tmp_path, reads):
    clip, cache = tmp_path / "clip.mp4", tmp_path / "source_digests.json"
    clip.write_bytes(b"ab")
    sources.file_digests([clip], cache)
    old = clip.stat()
    with clip.open("ab") as stream:
        stream.write(b"c")
    os.utime(clip, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert clip.stat().st_ino == old.st_ino and clip.stat().st_mtime_ns == old.st_mtime_ns
    assert sources.file_digests([clip], cache) == [sha1(b"abc")] and len(reads) == 2


def test_a_file_rewritten_with_its_mtime_a_nanosecond_later_is_read_again(tmp_path, reads):
    clip, cache = tmp_path / "clip.mp4", tmp_path / "source_digests.json"
    stamp = 1_700_000_000_000_000_000  # a whole second: a float of seconds cannot tell +1 ns from it
    clip.write_bytes(b"ab")
    os.utime(clip, ns=(stamp, stamp))
    if clip.stat().st_mtime_ns != stamp:
        pytest.skip("the file system does not keep nanoseconds")
    sources.file_digests([clip], cache)
    clip.write_bytes(b"cd")
    os.utime(clip, ns=(stamp, stamp + 1))
    if clip.stat().st_mtime_ns != stamp + 1:
        pytest.skip("the file system does not keep nanoseconds")
    assert sources.file_digests([clip], cache) == [sha1(b"cd")] and len(reads) == 2


def test_a_file_named_relative_or_absolute_is_read_once(tmp_path, monkeypatch, reads):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clip.mp4").write_bytes(b"clip")
    cache = tmp_path / "source_digests.json"
    assert sources.file_digests(["clip.mp4"], cache) == sources.file_digests([tmp_path / "clip.mp4"], cache)
    assert len(reads) == 1
    assert list(read_json(cache)) == [str(tmp_path / "clip.mp4")]


def test_a_cache_cut_short_is_ignored_and_replaced(tmp_path):
    """An entry of a cache that does not parse is not trusted, even one matching the file's
    current size, mtime and inode."""
    clip, cache = tmp_path / "clip.mp4", tmp_path / "source_digests.json"
    clip.write_bytes(b"clip")
    stat = clip.stat()
    entry = [stat.st_size, stat.st_mtime_ns, stat.st_ino, sha1(b"other")]
    cache.write_text(f'{{"{clip}": {entry}'.replace("'", '"'))  # no closing brace
    assert sources.file_digests([clip], cache) == [sha1(b"clip")]
    assert read_json(cache) == {str(clip): entry[:3] + [sha1(b"clip")]}


# caches of another shape, given the clip's path and its [size, mtime_ns, inode]
FOREIGN_CACHES = {
    "a list": lambda clip, key: [],
    "null": lambda clip, key: None,
    "an entry without its digest": lambda clip, key: {clip: key},
    "an entry that is a number": lambda clip, key: {clip: 5},
    "a digest that is a number": lambda clip, key: {clip: key + [7]},
}


@pytest.mark.parametrize("shape", FOREIGN_CACHES)
def test_a_cache_of_another_shape_is_ignored_where_it_is_not_of_the_form_written(tmp_path, shape):
    """A cache edited by hand or written by another tool is JSON of another shape: the file is read
    and its digest given (not an AttributeError in every job's params), the entries of the form
    written kept."""
    clip, other, cache = tmp_path / "clip.mp4", tmp_path / "other.mp4", tmp_path / "source_digests.json"
    clip.write_bytes(b"clip")
    other.write_bytes(b"other")
    key = [clip.stat().st_size, clip.stat().st_mtime_ns, clip.stat().st_ino]
    content = FOREIGN_CACHES[shape](str(clip), key)
    if isinstance(content, dict):
        content[str(other)] = [other.stat().st_size, other.stat().st_mtime_ns, other.stat().st_ino, sha1(b"remembered")]
    cache.write_text(json.dumps(content))
    expected_other = sha1(b"remembered") if isinstance(content, dict) else sha1(b"other")
    assert sources.file_digests([clip, other], cache) == [sha1(b"clip"), expected_other]


def test_a_run_that_reads_no_file_leaves_the_cache_file_alone(tmp_path):
    """A dry run after nothing changed writes nothing."""
    clip, cache = tmp_path / "clip.mp4", tmp_path / "source_digests.json"
    clip.write_bytes(b"clip")
    sources.file_digests([clip], cache)
    written = cache.stat()
    sources._caches.clear()
    sources.file_digests([clip, tmp_path / "gone.mp4"], cache)
    sources.sources_digest([clip], cache)
    assert (cache.stat().st_ino, cache.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)


def test_a_cache_write_lost_to_another_jobs_cleanup_still_gives_the_digests(tmp_path, monkeypatch, reads):
    """Another chunk job may remove this job's temporary file before its rename (a shared file
    system whose clock runs apart): the cache is only a shortcut, the job goes on."""
    clip, cache = tmp_path / "clip.mp4", tmp_path / "source_digests.json"
    clip.write_bytes(b"clip")
    replace = os.replace

    def removed_first(src, dst):
        os.unlink(src)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", removed_first)
    assert sources.file_digests([clip], cache) == [sha1(b"clip")]
    assert not cache.exists()
    assert sources.file_digests([clip], cache) == [sha1(b"clip")] and len(reads) == 1  # kept in memory


def test_entries_a_parallel_jobs_write_dropped_are_written_again_with_its_own(tmp_path, reads):
    """Two jobs' writes race and the last rename wins: the entries it lacked, which this job still
    holds, go back into the file with the other job's and this job's new ones."""
    for name in "acd":
        (tmp_path / name).write_text(name)
    cache = tmp_path / "source_digests.json"
    sources.file_digests([tmp_path / "a"], cache)  # this job
    held = dict(sources._caches)
    sources._caches.clear()  # the other job, whose write replaced the file without a's entry
    sources.file_digests([tmp_path / "c"], tmp_path / "other.json")
    shutil.copy(tmp_path / "other.json", cache)
    sources._caches.clear()
    sources._caches.update(held)
    sources.file_digests([tmp_path / "d"], cache)  # this job again
    assert sorted(read_json(cache)) == [str(tmp_path / name) for name in "acd"]
    sources._caches.clear()  # a new process reads none of them
    assert sources.file_digests([tmp_path / name for name in "acd"], cache) == [sha1(name.encode()) for name in "acd"]
    assert len(reads) == 3


def test_the_sources_digest_depends_on_the_paths_their_order_and_missing_files(tmp_path):
    cache = tmp_path / "source_digests.json"
    a, b, twin, gone = (tmp_path / name for name in ("a.mp4", "b.mp4", "twin.mp4", "gone.mp4"))
    a.write_bytes(b"same")
    twin.write_bytes(b"same")
    b.write_bytes(b"other")
    assert sources.sources_digest([a], cache) != sources.sources_digest([twin], cache)  # same bytes, another path
    assert sources.sources_digest([a, b], cache) != sources.sources_digest([b, a], cache)
    assert sources.sources_digest([a, gone], cache) != sources.sources_digest([a], cache)
    assert sources.sources_digest([a, gone], cache) == sources.sources_digest([a, gone], cache)


def test_the_sources_digest_of_relative_paths_does_not_depend_on_the_working_folder(tmp_path, monkeypatch):
    """A project moved to another folder, its corpus named relative to it, keeps its digests (no rerun)."""
    digests = []
    for project in ("here", "there"):
        (tmp_path / project / "clips").mkdir(parents=True)
        (tmp_path / project / "clips" / "a.mp4").write_bytes(b"clip")
        monkeypatch.chdir(tmp_path / project)
        sources._caches.clear()  # each a run of its own
        digests.append(sources.sources_digest(["clips/a.mp4"], "source_digests.json"))
    assert digests[0] == digests[1]
