"""A workflow job's rule log holds everything the job says: its log records, Python's stderr, and
what native libraries and child processes write to file descriptor 2 (TensorFlow's lines, ffmpeg's,
a crash's last words), which otherwise reached Snakemake's terminal and left the log without them."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_snakemake

JOB = """
import ctypes, logging, os, subprocess, sys
from avemotion.logs import script_logging
with script_logging(sys.argv[1]):
    logging.getLogger("avemotion.job").info("a log record")
    os.write(2, b"a native line\\n")
    print("python's stderr", file=sys.stderr)
    subprocess.run(["sh", "-c", "echo a child process line >&2"], check=True)
    {end}
os.write(2, b"after the block\\n")
"""
SAID = ["INFO avemotion.job: a log record", "a native line", "python's stderr", "a child process line"]


def run_code(code: str, log: Path, *options: str) -> subprocess.CompletedProcess:
    """A fresh Python (with interpreter ``options``) running ``code`` with the log's path as its argument."""
    return subprocess.run([sys.executable, *options, "-c", code, str(log)], capture_output=True, text=True, timeout=120)


def run_job(tmp_path: Path, end: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    log = tmp_path / "logs" / "job.log"
    job = run_code(JOB.format(end=end), log)
    return job, log.read_text().splitlines()


def in_order(lines: list[str], expected: list[str]) -> bool:
    """Whether each expected text ends a line of ``lines``, in this order."""
    found = [next((n for n, line in enumerate(lines) if line.endswith(text)), None) for text in expected]
    return None not in found and found == sorted(found)


def test_everything_a_job_says_goes_to_its_log_in_order_and_stderr_is_its_own_after(tmp_path):
    job, lines = run_job(tmp_path, "pass")
    assert job.returncode == 0, job.stderr
    assert in_order(lines, SAID), lines
    assert job.stderr == "after the block\n"


@pytest.mark.parametrize(
    "end, last_words",
    [
        ("raise ValueError('a clip nobody can read')", ["ERROR avemotion: script failed", "ValueError: a clip nobody can read"]),
        ("ctypes.string_at(0)", ["Fatal Python error: Segmentation fault", 'File "<string>", line 9 in <module>']),
        ("os.abort()", ["Fatal Python error: Aborted", 'File "<string>", line 9 in <module>']),
    ],
)
def test_a_failed_or_crashed_job_leaves_what_it_said_and_why_it_ended_in_its_log(tmp_path, end, last_words):
    job, lines = run_job(tmp_path, end)
    assert job.returncode != 0
    assert in_order(lines, SAID + last_words), lines


def test_a_config_error_a_job_finds_ends_it_with_its_one_line_not_a_traceback(tmp_path):
    """A setting only the job's data rules out (a batch larger than the training clips preprocessing
    left) is a config mistake like those the check finds before any job: one line naming the key,
    in the log and nowhere else, and a failed job."""
    error = "config: training.batch_size: 6 is larger than the 5 training clips"
    job, lines = run_job(tmp_path, f"from avemotion.config import ConfigError; raise ConfigError({error!r})")
    assert job.returncode == 1 and job.stderr == ""
    assert in_order(lines, SAID + [f"ERROR avemotion: {error}"]), lines
    assert not [line for line in lines if "Traceback" in line or "script failed" in line], lines


def test_a_native_line_of_a_snakemake_job_is_in_the_rule_log_not_on_snakemakes_terminal(tmp_path):
    (tmp_path / "job.py").write_text(
        "import os\nfrom avemotion.logs import script_logging\n"
        "with script_logging(snakemake.log[0]):\n"
        "    os.write(2, b'a native line\\n')\n"
        "    open(snakemake.output[0], 'w').close()\n"
    )
    (tmp_path / "Snakefile").write_text('rule job:\n    output: "done"\n    log: "job.log"\n    script: "job.py"\n')
    run = run_snakemake(tmp_path, "--cores", "1", "--quiet", snakefile=tmp_path / "Snakefile")
    assert (tmp_path / "job.log").read_text() == "a native line\n"
    assert "a native line" not in run.stdout + run.stderr


def test_a_job_leaves_logging_as_it_found_it_and_logs_names_in_any_encoding(tmp_path):
    """A file name that is not UTF-8 (its bytes kept as surrogates) reaches the log, escaped, rather
    than a logging error in place of the record; after the block the log's handler is gone and
    faulthandler is off again, so nothing more is written to the closed log."""
    code = (
        "import faulthandler, logging, sys\nfrom avemotion.logs import script_logging\n"
        "before = list(logging.getLogger().handlers)\n"
        "with script_logging(sys.argv[1]):\n"
        "    logging.getLogger('avemotion.job').warning('cannot read caf\\udce9.mp4')\n"
        "print(logging.getLogger().handlers == before, faulthandler.is_enabled())\n"
    )
    log = tmp_path / "job.log"
    job = run_code(code, log)
    assert job.returncode == 0 and job.stdout == "True False\n", job.stderr
    assert log.read_text().splitlines()[-1].endswith("WARNING avemotion.job: cannot read caf\\udce9.mp4")


def test_pythons_stderr_reaches_the_log_where_a_caller_had_replaced_sys_stderr(tmp_path):
    code = (
        "import contextlib, io, sys\nfrom avemotion.logs import script_logging\n"
        "caught = io.StringIO()\n"
        "with contextlib.redirect_stderr(caught), script_logging(sys.argv[1]):\n"
        "    print(\"python's stderr\", file=sys.stderr)\n"
        "print(repr(caught.getvalue()))\n"
    )
    log = tmp_path / "job.log"
    job = run_code(code, log)
    assert job.returncode == 0 and job.stdout == "''\n", job.stderr
    assert log.read_text() == "python's stderr\n"


def test_what_python_wrote_to_stderr_before_the_block_stays_on_stderr_in_order(tmp_path):
    """A line Python had not yet flushed when the job's block began (its sys.stderr a buffered file
    here, as a caller may set up) comes out first, where it was meant to go."""
    code = (
        "import os, sys\nfrom avemotion.logs import script_logging\n"
        "sys.stderr = open(os.dup(2), 'w')\n"
        "sys.stderr.write('before the block ')\n"
        "with script_logging(sys.argv[1]):\n"
        "    os.write(2, b'in the block\\n')\n"
        "os.write(2, b'after the block\\n')\n"
    )
    log = tmp_path / "job.log"
    job = run_code(code, log)
    assert job.returncode == 0, job.stderr
    assert job.stderr == "before the block after the block\n"
    assert log.read_text() == "in the block\n"


def test_a_crash_leaves_every_threads_stack_in_the_log(tmp_path):
    code = (
        "import os, sys, threading, time\nfrom avemotion.logs import script_logging\n"
        "def waiting_worker():\n    time.sleep(60)\n"
        "with script_logging(sys.argv[1]):\n"
        "    threading.Thread(target=waiting_worker, daemon=True).start()\n"
        "    time.sleep(0.2)\n"
        "    os.abort()\n"
    )
    log = tmp_path / "job.log"
    job = run_code(code, log)
    assert job.returncode != 0
    text = log.read_text()
    assert "Fatal Python error: Aborted" in text and "in waiting_worker" in text, text


def test_a_crash_handler_someone_else_set_up_is_left_on_after_the_block(tmp_path):
    """faulthandler enabled before the job (a test runner's, python -X faulthandler) is neither taken over nor turned off."""
    code = (
        "import faulthandler, sys\nfrom avemotion.logs import script_logging\n"
        "with script_logging(sys.argv[1]):\n"
        "    pass\n"
        "print(faulthandler.is_enabled())\n"
    )
    log = tmp_path / "job.log"
    job = run_code(code, log, "-X", "faulthandler")
    assert job.returncode == 0 and job.stdout == "True\n", job.stderr


def test_a_job_run_again_keeps_its_earlier_runs_lines_above_its_own(tmp_path):
    """A killed job's rerun (kill -9, out of memory, a Slurm time limit) leaves the killed run's last
    words in the log, then a line that says a new run starts, then the new run's."""
    killed, first = run_job(tmp_path, "os.kill(os.getpid(), 9)")
    assert killed.returncode == -9 and in_order(first, SAID), first
    job, lines = run_job(tmp_path, "pass")
    assert job.returncode == 0, job.stderr
    assert lines[: len(first)] == first
    assert lines[len(first)].startswith("=====") and lines[len(first)].endswith("this job runs again; the lines above are its earlier run's")
    assert in_order(lines[len(first) + 1 :], SAID), lines


def test_a_jobs_first_run_over_an_empty_log_says_no_earlier_run(tmp_path):
    """An empty log file there before the job (made by a scheduler, or a run killed before its first
    word) holds no earlier run's lines: no line says this job runs again."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "job.log").write_text("")
    job, lines = run_job(tmp_path, "pass")
    assert job.returncode == 0, job.stderr
    assert not [line for line in lines if line.startswith("=====")], lines
    assert in_order(lines, SAID), lines
