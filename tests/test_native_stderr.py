"""What native libraries print on stderr: start-up lines below the log level a user set stay out of
`avemotion predict`'s output (TensorFlow 2.21 and TensorFlow Lite print them past every level), and
nothing else is lost, not even what a crash prints."""

import contextlib
import io
import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from avemotion.cli import ABSL_PREAMBLE, XNNPACK_NOTICE, startup_noise
from avemotion.logs import native_stderr_filtered

# Lines TensorFlow 2.21 and CUDA print on a machine without a GPU (times and threads vary).
INFO = "I0000 00:00:1796582345.227893   14414 port.cc:153] oneDNN custom operations are on.\n"
WARNING = "W0000 00:00:1796582345.227893   14414 gpu_device.cc:2342] Cannot dlopen some GPU libraries.\n"
CUDA_FAILED = "E0000 00:00:1796582348.427482   14414 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
OTHER_ERROR = "E0000 00:00:1796582348.427482   14414 op_kernel.cc:1857] OP_REQUIRES failed at cast_op.cc:122\n"
FATAL = "F0000 00:00:1796582348.427482   14414 stream.cc:42] Check failed: device ordinal\n"


def shown(pattern: str, lines: list[str]) -> list[str]:
    return [line for line in lines if not re.search(pattern, line)]


@pytest.mark.parametrize(
    "level, gpus, expected",
    [
        ("2", [], [OTHER_ERROR, FATAL]),  # predict's default on a machine where no GPU was claimed
        ("2", ["0"], [CUDA_FAILED, OTHER_ERROR, FATAL]),  # a GPU claimed: why CUDA failed matters
        ("2", None, [CUDA_FAILED, OTHER_ERROR, FATAL]),  # a Slurm job: its GPUs are Slurm's to say
        ("1", ["0"], [WARNING, CUDA_FAILED, OTHER_ERROR, FATAL]),
        ("3", ["0"], [FATAL]),
        ("0", ["0"], [ABSL_PREAMBLE + "\n", INFO, WARNING, CUDA_FAILED, OTHER_ERROR, FATAL]),
        ("ERROR", ["0"], [ABSL_PREAMBLE + "\n", INFO, WARNING, CUDA_FAILED, OTHER_ERROR, FATAL]),  # not a number: 0, as TensorFlow reads it
        ("", ["0"], [ABSL_PREAMBLE + "\n", INFO, WARNING, CUDA_FAILED, OTHER_ERROR, FATAL]),  # set but empty: 0 too
    ],
)
def test_the_lines_left_out_are_those_below_the_users_level_and_cudas_failure_without_a_gpu(level, gpus, expected):
    lines = [ABSL_PREAMBLE + "\n", INFO, WARNING, CUDA_FAILED, OTHER_ERROR, FATAL, XNNPACK_NOTICE + "\n"]
    assert shown(startup_noise(level, gpus), lines) == expected


def test_native_lines_are_filtered_and_pythons_own_kept(capfd):
    """Lines written to file descriptor 2 (by native code, not through sys.stderr) come out in order
    without the dropped ones; Python's own lines are kept; stderr is the process' again after."""
    with native_stderr_filtered("^I0000"):
        os.write(2, b"E0000 kept\nI0000 dropped\nplain kept\n")
        print("python's own", file=sys.stderr)
    err = capfd.readouterr().err  # (Python's line goes straight out, the native ones through the filter)
    assert "python's own\n" in err and err.replace("python's own\n", "") == "E0000 kept\nplain kept\n"
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_a_native_line_comes_out_while_the_block_still_runs(capfd, monkeypatch):
    """The filter passes each line on as it comes (a long run's warnings are not held back to its
    end), with Python's output buffered as it is by default."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    seen = ""
    with native_stderr_filtered("^dropped"):
        os.write(2, b"dropped\nkept at once\n")
        deadline = time.monotonic() + 10
        while "kept at once" not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
            seen += capfd.readouterr().err
        assert seen == "kept at once\n"


def test_pythons_own_lines_and_log_records_go_straight_out_in_order(capfd):
    """A progress bar and the log records of a predict run keep their order and the terminal
    (sys.stderr and the logging handlers writing to it are pointed past the filter for the block,
    and back after it)."""
    handler = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("avemotion.test_native_stderr")
    logger.addHandler(handler)
    try:
        before = sys.stderr
        with native_stderr_filtered("^dropped"):
            assert sys.stderr is not before and handler.stream is sys.stderr
            for step in range(50):
                print(f"bar {step}", file=sys.stderr)
                logger.warning("record %d", step)
        assert sys.stderr is before and handler.stream is before
    finally:
        logger.removeHandler(handler)
    expected = "".join(f"bar {step}\nrecord {step}\n" for step in range(50))
    assert capfd.readouterr().err == expected


def test_a_sys_stderr_set_inside_the_block_is_kept_after_it(capfd):
    """Only the block's own stream is taken back: code in it that sets sys.stderr keeps its choice."""
    before = sys.stderr
    caught = io.StringIO()
    try:
        with native_stderr_filtered("^dropped"):
            sys.stderr = caught
        assert sys.stderr is caught
    finally:
        sys.stderr = before


def python_stderr(code: str) -> str:
    """stderr of a fresh Python running ``code``, its stderr buffered as it is by default."""
    code = "import logging, os, sys\nfrom avemotion.logs import native_stderr_filtered\n" + code
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60).stderr


def test_the_root_loggers_records_go_straight_out_too():
    """basicConfig's handler is the root logger's: its records are Python's own, never filtered."""
    code = "logging.basicConfig(format='%(message)s')\nwith native_stderr_filtered('^dropped'):\n    logging.warning('dropped? no: a log record')\n"
    assert python_stderr(code) == "dropped? no: a log record\n"


def test_a_line_python_began_before_the_block_comes_out_before_what_it_prints():
    code = "sys.stderr.write('begun before, ')\nwith native_stderr_filtered('^dropped'):\n    print('ended in the block', file=sys.stderr)\n"
    assert python_stderr(code) == "begun before, ended in the block\n"


def test_pythons_own_lines_come_out_at_once_and_any_name_can_be_printed(capfd):
    with native_stderr_filtered("^dropped"):
        print("dropped? no: caf\udce9.mp4", file=sys.stderr)
        assert capfd.readouterr().err == "dropped? no: caf\\udce9.mp4\n"


def test_the_block_ends_as_soon_as_nothing_else_holds_stderr(capfd):
    started = time.monotonic()
    with native_stderr_filtered("^dropped"):
        os.write(2, b"kept\n")
    assert time.monotonic() - started < 5
    assert capfd.readouterr().err == "kept\n"


def test_nothing_is_filtered_where_the_filter_cannot_start(capfd, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with native_stderr_filtered("^dropped"):
        os.write(2, b"dropped, yet shown\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "dropped, yet shown\nafter\n"


def test_nothing_is_filtered_where_a_caller_replaced_sys_stderr():
    """Under contextlib.redirect_stderr (a notebook's or a test's capture) Python's lines go where
    the caller sent them, not past it to the terminal."""
    caught = io.StringIO()
    with contextlib.redirect_stderr(caught), native_stderr_filtered("^dropped"):
        print("dropped? no: a Python line", file=sys.stderr)
        assert sys.stderr is caught
    assert caught.getvalue() == "dropped? no: a Python line\n"


@pytest.mark.parametrize("death", ["os.abort()", "os.kill(os.getpid(), signal.SIGSEGV)", "os._exit(3)"])
def test_what_a_crash_prints_before_it_dies_still_comes_out(death):
    """A library that aborts (TensorFlow's "Check failed") dies before any clean-up: its last line
    must reach the user, who would otherwise see only "Aborted"."""
    code = f"import os, signal; from avemotion.logs import native_stderr_filtered\nwith native_stderr_filtered('^dropped'):\n    os.write(2, b{FATAL!r} + b'dropped\\n'); {death}\n"
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stderr
    assert "Check failed: device ordinal" in err and "dropped" not in err, err


def tensorflow_start(filtered: bool) -> str:
    """stderr of a fresh process that starts TensorFlow and prepares a face model, as predict does
    on a machine where no GPU was claimed (filtered) or not."""
    start = "import tensorflow as tf; tf.config.list_physical_devices(); from avemotion.face.models import TfliteModel; TfliteModel('face_detection_back.tflite')"
    code = f"import os; from avemotion.cli import startup_noise; from avemotion.logs import native_stderr_filtered\nwith native_stderr_filtered(startup_noise('2', [])):\n    {start}" if filtered else start
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300, check=True).stderr


def test_tensorflow_and_the_face_models_start_without_their_start_up_lines():
    """At predict's level 2 (errors and up) the oneDNN and "could not find cuda drivers" lines,
    absl's preamble, CUDA's failed start and TensorFlow Lite's notice are left out: TensorFlow 2.21
    prints them all at that level (the unfiltered run shows it)."""
    raw = tensorflow_start(filtered=False)
    assert ABSL_PREAMBLE in raw and "I0000" in raw and XNNPACK_NOTICE in raw, raw
    quiet = tensorflow_start(filtered=True)
    assert ABSL_PREAMBLE not in quiet and "I0000" not in quiet and "cuInit" not in quiet and XNNPACK_NOTICE not in quiet, quiet


def test_ctrl_c_stops_the_command_not_the_filter_which_passes_on_what_comes_after(tmp_path):
    """The terminal sends Ctrl-C to the whole foreground process group: the filter, in a session of
    its own, is not stopped, so what the command writes while it stops still comes out."""
    code = (
        "import os, time\nfrom avemotion.logs import native_stderr_filtered\n"
        "with native_stderr_filtered('^dropped'):\n"
        "    try:\n"
        "        print('ready', flush=True)\n"
        "        time.sleep(60)\n"
        "    except KeyboardInterrupt:\n"
        "        os.write(2, b'dropped\\nstopped by Ctrl-C\\n')\n"
    )
    command = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert command.stdout.readline() == "ready\n"
        os.killpg(command.pid, signal.SIGINT)  # as the terminal does
        err = command.communicate(timeout=60)[1]
    finally:
        command.kill()
    assert err == "stopped by Ctrl-C\n"
