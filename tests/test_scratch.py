"""Scratch folders a killed job leaves (a lossless copy of a clip, a prediction's prepared frames,
OpenFace's output) are removed by the next job of the same host; a live job's and another host's
stay."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from avemotion.demo.encode import write_video
from avemotion.media import transcode
from avemotion.scratch import LOCK, ScratchFolder

# A process that makes a scratch folder (or a decodable copy of argv[2]), prints its path and waits
# to be killed
HOLDER = """
import sys, time
from avemotion.scratch import ScratchFolder
from avemotion.media.transcode import decodable_copy
if sys.argv[1] == "copy":
    print(decodable_copy(sys.argv[2]).parent, flush=True)
else:
    folder = ScratchFolder(sys.argv[1], sys.argv[2])  # held: a folder's lock goes with its object
    print(folder.path, flush=True)
time.sleep(600)
"""


def holding(*args, tmpdir):
    """A running :data:`HOLDER` and the folder it made."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, *map(str, args)], stdout=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmpdir)})
    return process, process.stdout.readline().strip()


def killed(process):
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture
def processes():
    """Holders started by a test, killed however it ends (a failed test left them sleeping)."""
    started = []
    yield started
    for process in started:
        killed(process)


def test_a_killed_jobs_folder_goes_with_the_next_one_of_its_host_and_prefix(tmp_path, processes):
    (dead, dead_folder), (live, live_folder), (other_prefix, other_folder) = held = [
        holding("openface-", tmp_path, tmpdir=tmp_path), holding("openface-", tmp_path, tmpdir=tmp_path), holding("avemotion-predict-", tmp_path, tmpdir=tmp_path)
    ]
    processes += [process for process, _ in held]
    killed(dead)
    killed(other_prefix)
    (tmp_path / dead_folder / "call_0").mkdir()  # what it wrote goes with it
    # another host's folder, whose name begins as this host's does: its lock is not this host's to test
    (tmp_path / f"openface-{socket.gethostname()}-12-4242-abc").mkdir()
    with ScratchFolder("openface-", tmp_path) as folder:
        assert folder.is_dir() and (folder / LOCK).is_file()
        left = {path.name for path in tmp_path.iterdir()}
        assert os.path.basename(dead_folder) not in left
        assert {os.path.basename(live_folder), os.path.basename(other_folder), f"openface-{socket.gethostname()}-12-4242-abc", folder.name} == left
    assert not folder.exists()
    killed(live)
    with ScratchFolder("openface-", tmp_path):  # once its job has ended, the live one's goes too
        assert not (tmp_path / live_folder).exists()


def test_a_process_that_ends_normally_leaves_no_scratch_folder(tmp_path):
    """As a TemporaryDirectory: the last decodable copy a job made (kept until the next) goes when the
    process exits, without a release()."""
    clip = tmp_path / "clip.mp4"
    write_video(clip, np.zeros((6, 32, 32, 3), np.uint8), 25, "mp4", None, 16000)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    code = "import sys\nfrom avemotion.media.transcode import decodable_copy\nprint(decodable_copy(sys.argv[1]).parent)"
    made = subprocess.run([sys.executable, "-c", code, str(clip)], capture_output=True, text=True, check=True, env={**os.environ, "TMPDIR": str(temporary)})
    assert made.stdout.strip().startswith(str(temporary / "avemotion-decodable-"))
    assert not list(temporary.iterdir())


def test_a_decodable_copy_that_a_killed_job_left_in_the_temporary_folder_is_removed(tmp_path, monkeypatch, processes):
    clip = tmp_path / "clip.mp4"
    write_video(clip, np.zeros((6, 32, 32, 3), np.uint8), 25, "mp4", None, 16000)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    process, left = holding("copy", clip, tmpdir=temporary)
    processes.append(process)
    killed(process)
    assert (temporary / left / "copy.mp4").stat().st_size > 0
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    try:
        copy = transcode.decodable_copy(clip)
        assert [path.name for path in temporary.iterdir()] == [copy.parent.name] and copy.parent.name != os.path.basename(left)
    finally:
        transcode.release()
    assert not list(temporary.iterdir())


def test_a_scratch_folder_is_made_under_a_parent_not_there_yet_and_goes_at_the_end_of_its_with(tmp_path):
    """The parent (a results folder a job has not written yet) is made; leaving the with block
    removes the folder even while its object is still held."""
    scratch = ScratchFolder("openface-", tmp_path / "results" / "face")
    with scratch as folder:
        assert folder.parent == tmp_path / "results" / "face" and folder.is_dir()
        (folder / "out.csv").write_text("frame\n")
    assert not folder.exists() and scratch is not None
