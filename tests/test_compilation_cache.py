"""A killed job's cut entry in JAX's persistent compilation cache is removed, so the next job that
compiles the step writes it whole (JAX itself keeps the cut entry and compiles again in every job)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from jax._src.compilation_cache import compress_executable

from avemotion.train import compilation_cache
from avemotion.train.compilation_cache import WHOLE_ENTRIES, remove_cut_entries

# A step that JAX keeps in the cache (however short its compilation), run in a fresh process as a job is
COMPILE = textwrap.dedent("""
    import jax, jax.numpy as jnp
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    @jax.jit
    def step(x):
        return jnp.tanh(x @ x.T).sum()
    step(jnp.ones((8, 8))).block_until_ready()
""")
READ_ERROR = "Error reading persistent compilation cache entry"


def compile_step(cache):
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", COMPILE], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stderr


def age(path, seconds):
    os.utime(path, (time.time() - seconds,) * 2)


def test_a_cut_entry_is_removed_and_the_next_job_writes_it_whole(tmp_path):
    cache = tmp_path / "jax"
    compile_step(cache)
    (entry,) = cache.glob("jit_step-*-cache")
    others = sorted(path.name for path in cache.glob("*-cache") if path != entry)
    whole = entry.read_bytes()
    entry.write_bytes(whole[: len(whole) // 2])  # killed while writing it
    age(entry, 3600)
    assert READ_ERROR in compile_step(cache)  # JAX cannot read it, compiles again ...
    assert entry.stat().st_size < len(whole)  # ... and keeps the cut entry

    assert remove_cut_entries(cache) == [entry.name]
    assert not entry.exists() and sorted(path.name for path in cache.glob("*-cache")) == others
    assert READ_ERROR not in compile_step(cache)
    assert entry.stat().st_size == len(whole)
    assert READ_ERROR not in compile_step(cache)  # read from the cache, whole
    assert remove_cut_entries(cache, min_age_s=0) == []


def test_a_young_entry_may_be_a_write_in_progress_and_is_left(tmp_path):
    cache = tmp_path / "jax"
    compile_step(cache)
    (entry,) = cache.glob("jit_step-*-cache")
    entry.write_bytes(entry.read_bytes()[:10])
    assert remove_cut_entries(cache, min_age_s=600) == [] and entry.exists()
    record = cache / WHOLE_ENTRIES  # not taken for whole: it is read once it is older
    assert not record.exists() or entry.name not in json.loads(record.read_text())
    age(entry, 601)
    atime = cache / entry.name.replace("-cache", "-atime")  # JAX's last use of it, where it evicts entries
    atime.write_bytes(b"\0" * 8)
    assert remove_cut_entries(cache, min_age_s=600) == [entry.name]
    assert not entry.exists() and not atime.exists()


def test_entries_found_whole_are_not_read_again_until_they_change(tmp_path, monkeypatch):
    cache = tmp_path / "jax"
    compile_step(cache)
    entries = sorted(cache.glob("*-cache"))
    for entry in entries:
        age(entry, 3600)
    read = []
    decompress = compilation_cache.decompress_executable
    monkeypatch.setattr(compilation_cache, "decompress_executable", lambda data: read.append(data) or decompress(data))
    assert remove_cut_entries(cache) == [] and len(read) == len(entries) > 0
    assert (cache / WHOLE_ENTRIES).exists()
    read.clear()
    assert remove_cut_entries(cache) == [] and read == []
    # an entry that changed since (another job removed and wrote it again) is read again
    entries[0].write_bytes(entries[0].read_bytes()[:-1])
    age(entries[0], 3600)
    assert remove_cut_entries(cache) == [entries[0].name] and len(read) == 1


def test_a_cut_entry_that_cannot_be_removed_is_said_and_the_job_goes_on(tmp_path, monkeypatch, caplog):
    cache = tmp_path / "jax"
    compile_step(cache)
    (entry,) = cache.glob("jit_step-*-cache")
    entry.write_bytes(entry.read_bytes()[:10])
    age(entry, 3600)

    def refused(path, missing_ok=False):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(Path, "unlink", refused)  # a cache shared with other users, in their folder
    assert remove_cut_entries(cache) == [] and entry.exists()
    assert f"{entry.name} is cut short" in caplog.text and "cannot be removed ([Errno 13] Permission denied" in caplog.text


def test_a_cache_folder_not_ours_to_write_does_not_stop_the_job(tmp_path, monkeypatch, caplog):
    cache = tmp_path / "jax"
    compile_step(cache)
    for entry in cache.glob("*-cache"):
        age(entry, 3600)

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refused)  # the record cannot be written
    assert remove_cut_entries(cache) == []
    assert "cannot record its whole entries ([Errno 13] Permission denied)" in caplog.text

def test_no_cache_yet_is_nothing_to_do(tmp_path):
    assert remove_cut_entries(tmp_path / "jax") == []
    assert not (tmp_path / "jax").exists()


@pytest.mark.parametrize("record", ["not json", "[1, 2]"])
def test_a_damaged_record_means_reading_the_entries_again(tmp_path, record):
    cache = tmp_path / "jax"
    compile_step(cache)
    for entry in cache.glob("*-cache"):
        age(entry, 3600)
    (cache / WHOLE_ENTRIES).write_text(record)
    assert remove_cut_entries(cache) == []
    assert set(json.loads((cache / WHOLE_ENTRIES).read_text())) == {path.name for path in cache.glob("*-cache")}


def test_a_job_that_chooses_jax_clears_its_cache_of_cut_entries_and_one_on_tensorflow_leaves_it(tmp_path):
    """use_backend (what a training job calls first) removes the cut entries of a JAX job's cache; a
    TensorFlow job neither imports JAX nor touches the cache."""
    cache = tmp_path / "jax"
    compile_step(cache)
    (entry,) = cache.glob("jit_step-*-cache")
    entry.write_bytes(entry.read_bytes()[:100])
    age(entry, 3600)
    choose = "import sys; from avemotion.train.backend import use_backend; use_backend(sys.argv[1], sys.argv[2]); print('jax' in sys.modules)"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("KERAS_BACKEND", None)
    for backend, jax_imported, kept in (("tensorflow", "False", True), ("jax", "True", False)):
        run = subprocess.run([sys.executable, "-c", choose, backend, str(cache)], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and run.stdout.split() == [jax_imported], run.stderr
        assert entry.exists() is kept, backend


def whole_entries(cache, *names, age_s=3600):
    """Entries as JAX writes them (compressed executables), without compiling."""
    cache.mkdir(parents=True, exist_ok=True)
    for name in names:
        (cache / f"{name}-cache").write_bytes(compress_executable(b"executable " * 100 + name.encode()))
        age(cache / f"{name}-cache", age_s)
    return [cache / f"{name}-cache" for name in names]


def test_by_default_an_entry_younger_than_ten_minutes_is_left_as_a_write_in_progress(tmp_path):
    (entry,) = whole_entries(tmp_path, "jit_step-1", age_s=0)
    entry.write_bytes(entry.read_bytes()[:10])
    assert remove_cut_entries(tmp_path) == [] and entry.exists()
    age(entry, 599)
    assert remove_cut_entries(tmp_path) == [] and entry.exists()
    age(entry, 601)
    assert remove_cut_entries(tmp_path) == [entry.name] and not entry.exists()


def test_an_entry_rewritten_at_the_same_size_since_it_was_found_whole_is_read_again(tmp_path):
    (entry,) = whole_entries(tmp_path, "jit_step-1")
    assert remove_cut_entries(tmp_path) == []
    entry.write_bytes(b"\0" * entry.stat().st_size)  # removed and written again, cut, by other jobs
    age(entry, 1800)
    assert remove_cut_entries(tmp_path) == [entry.name] and not entry.exists()


def test_files_beside_the_entries_are_left(tmp_path):
    """Only the files JAX reads as entries are checked: its last-use times of whole entries, and
    whatever else shares the folder, are no entries cut short."""
    (entry,) = whole_entries(tmp_path, "jit_step-1")
    others = [tmp_path / "jit_step-1-atime", tmp_path / "notes.txt", tmp_path / "cache.bin"]
    for other in others:
        other.write_bytes(b"\0" * 8)
        age(other, 3600)
    assert remove_cut_entries(tmp_path) == []
    assert entry.exists() and all(other.exists() for other in others)
    assert set(json.loads((tmp_path / WHOLE_ENTRIES).read_text())) == {entry.name}


def test_an_entry_not_ours_to_read_is_left_and_the_others_are_checked(tmp_path, monkeypatch):
    unreadable, cut, whole = whole_entries(tmp_path, "jit_a-1", "jit_b-1", "jit_c-1")
    cut.write_bytes(cut.read_bytes()[:10])
    age(cut, 3600)
    read_bytes = Path.read_bytes

    def refused(path):
        if path == unreadable:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refused)  # a cache shared with other users
    assert remove_cut_entries(tmp_path) == [cut.name]
    assert unreadable.exists() and set(json.loads((tmp_path / WHOLE_ENTRIES).read_text())) == {whole.name}


def test_a_cut_entry_another_job_removed_first_counts_as_removed_without_a_warning(tmp_path, monkeypatch, caplog):
    (entry,) = whole_entries(tmp_path, "jit_step-1")
    entry.write_bytes(entry.read_bytes()[:10])
    age(entry, 3600)
    atime = tmp_path / "jit_step-1-atime"
    atime.write_bytes(b"\0" * 8)
    unlink = Path.unlink

    def raced(path, missing_ok=False):
        unlink(path)
        if path == entry:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))

    monkeypatch.setattr(Path, "unlink", raced)
    assert remove_cut_entries(tmp_path) == [entry.name]
    assert not atime.exists() and "cannot be removed" not in caplog.text


def test_a_record_another_job_took_for_a_dead_writers_is_no_warning(tmp_path, monkeypatch, caplog):
    """On a shared file system whose clock runs far from ours, another job may remove our temporary
    record as a dead writer's: the next job reads the entries again, and the folder is writable."""
    whole_entries(tmp_path, "jit_step-1")

    def gone(source, target):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(source))

    monkeypatch.setattr(os, "replace", gone)
    assert remove_cut_entries(tmp_path) == []
    assert "cannot record" not in caplog.text
