"""Atomic writes: a writer killed mid-write leaves no artifact, and its temporary file goes at the rerun."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from avemotion.io import atomic_path, read_json, write_json, write_parquet

KILLED_WRITER = """
import sys, time
from avemotion.io import atomic_path
with atomic_path(sys.argv[1]) as tmp, open(tmp, "wb") as handle:
    handle.write(b"half a shard")
    handle.flush()
    time.sleep(600)  # killed here, mid-write
"""


def killed_mid_write(target) -> list:
    """Run a writer of ``target``, kill -9 it while it writes; return the files it left."""
    before = set(target.parent.iterdir())
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)])
    deadline = time.time() + 60
    while time.time() < deadline and not any(f.stat().st_size for f in set(target.parent.iterdir()) - before):
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    return sorted(set(target.parent.iterdir()) - before)


def test_a_rewrite_removes_the_temporary_file_of_a_killed_writer_and_nothing_else(tmp_path):
    target = tmp_path / "0.parquet"
    # Neighbours that must survive: another target's temporary file, look-alikes that are not
    # temporary files of this target, and a finished artifact.
    others = [
        tmp_path / ".0.parquet.backup",
        tmp_path / ".0.parquet.abc.tmp",
        tmp_path / ".0.parquet.k2ox9_qa77.tmp",
        tmp_path / ".10.parquet.k2ox9_qa.tmp",
        tmp_path / ".0.parquet.k2ox9_qa.tmp.keep",
        tmp_path / "1.parquet",
    ]
    for path in others:
        path.write_bytes(b"not mine")
    stale = killed_mid_write(target)
    assert len(stale) == 1 and stale[0].read_bytes() == b"half a shard" and not target.exists()

    frame = pd.DataFrame({"clip_id": ["a", "b"], "value": [1.0, 2.0]})
    write_parquet(frame, target)
    pd.testing.assert_frame_equal(pd.read_parquet(target), frame)
    assert not stale[0].exists()
    assert sorted(tmp_path.iterdir()) == sorted([target, *others])
    assert all(path.read_bytes() == b"not mine" for path in others)


def test_a_writer_with_its_own_suffix_removes_only_its_own_leftovers(tmp_path):
    target = tmp_path / "best.weights.h5"
    stale = tmp_path / ".best.weights.h5.0a1b2c3d.weights.h5"
    stale.write_bytes(b"killed")
    other_suffix = tmp_path / ".best.weights.h5.0a1b2c3d.tmp"
    other_suffix.write_bytes(b"not mine")
    with atomic_path(target, suffix=".weights.h5") as tmp:
        tmp.write_bytes(b"weights")
    assert target.read_bytes() == b"weights" and not stale.exists() and other_suffix.exists()


def test_json_is_strict_and_reads_back_as_python(tmp_path):
    """NaN (an undefined metric) is written as null; numpy values come back as plain Python."""
    path = tmp_path / "metrics.json"
    write_json({"uar": np.float32(0.5), "pearson": float("nan"), "clips": np.int64(3), 1: np.array([True, False])}, path)
    assert read_json(path) == {"uar": 0.5, "pearson": None, "clips": 3, "1": [True, False]}
    assert path.read_text().endswith("\n") and "NaN" not in path.read_text()


def test_a_writer_that_fails_leaves_the_previous_artifact_and_no_temporary_file(tmp_path):
    """An exception inside the block (a full disk, a bug in the writer) keeps what a later run trusts."""
    target = tmp_path / "metrics.json"
    target.write_text("before")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "before" and sorted(tmp_path.iterdir()) == [target]


def test_artifacts_get_the_usual_permissions_not_the_temporary_files_private_ones(tmp_path):
    """Others of a group on a shared cluster read the results: the mode the umask gives a new file."""
    umask = os.umask(0o022)
    try:
        write_json({"uar": 0.5}, tmp_path / "metrics.json")
    finally:
        os.umask(umask)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644


def test_json_writes_infinities_as_null_and_booleans_as_json_booleans(tmp_path):
    """Strict JSON has no Infinity (a loss that diverged); a flag stays true/false, not 1/0."""
    path = tmp_path / "metrics.json"
    write_json({"loss": float("inf"), "ratio": np.float64("-inf"), "final": True, "flags": (np.True_, False)}, path)
    assert json.loads(path.read_text()) == {"loss": None, "ratio": None, "final": True, "flags": [True, False]}
    assert '"final": true' in path.read_text()
