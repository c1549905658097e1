"""What native libraries print on stderr: start-up lines below the log level a user set stay out of
`avemotion predict`'s output (TensorFlow 2.21 and TensorFlow Lite print them past every level)."""

import os
import subprocess
import sys

import pytest

from avemotion.cli import ABSL_PREAMBLE
from avemotion.face.models import XNNPACK_NOTICE
from avemotion.logs import native_stderr_without


def test_native_lines_are_kept_but_those_picked_even_when_the_block_fails(capfd):
    """Lines a library writes to file descriptor 2 (not through sys.stderr) come out when the block
    ends, in order, without the dropped ones, and Python's own are kept; a failure inside still
    shows its lines."""
    with native_stderr_without(lambda line: line.startswith("I0000")):
        os.write(2, b"E0000 kept\nI0000 dropped\nplain kept\n")
        print("python's own", file=sys.stderr)
    err = capfd.readouterr().err  # (pytest's sys.stderr bypasses file descriptor 2: its line's place differs)
    assert "python's own\n" in err and err.replace("python's own\n", "") == "E0000 kept\nplain kept\n"
    with pytest.raises(RuntimeError), native_stderr_without(lambda line: "dropped" in line):
        os.write(2, b"why it failed\ndropped\n")
        raise RuntimeError("native failure")
    assert capfd.readouterr().err == "why it failed\n"
    os.write(2, b"after\n")  # stderr is the process' again
    assert capfd.readouterr().err == "after\n"


def start_tensorflow(level: str) -> str:
    """stderr of a fresh process that starts TensorFlow as `avemotion predict --gpus 0` does."""
    code = "from avemotion.cli import _start_tensorflow; _start_tensorflow(0)"
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": level, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300, check=True).stderr


def test_tensorflow_starts_without_the_lines_below_the_users_log_level():
    """At predict's level (2: errors and up) TensorFlow's start-up lines (oneDNN, "could not find cuda
    drivers", absl's preamble) and CUDA's failed start on a machine where no GPU was asked for are
    left out; a user who sets TF_CPP_MIN_LOG_LEVEL=0 sees its INFO lines again."""
    quiet = start_tensorflow("2")
    assert ABSL_PREAMBLE not in quiet and "I0000" not in quiet and "cuInit" not in quiet, quiet
    everything = start_tensorflow("0")
    assert ABSL_PREAMBLE in everything and "I0000" in everything  # TensorFlow prints them: the filter is what removed them


def stderr_of(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stderr


def test_the_face_models_prepare_without_tensorflow_lites_delegate_notice():
    """TensorFlow Lite prints the notice once a process, for the first model it prepares."""
    ours = stderr_of("from avemotion.face.models import TfliteModel; TfliteModel('face_detection_back.tflite')")
    raw = stderr_of("from avemotion.face.models import _interpreter_class, model_dir; _interpreter_class()(model_path=str(model_dir() / 'face_detection_back.tflite')).allocate_tensors()")
    assert XNNPACK_NOTICE not in ours and XNNPACK_NOTICE in raw, (ours, raw)  # the same runtime prints it unfiltered
