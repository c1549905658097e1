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
