"""Logging for workflow scripts: everything a script says, and its traceback, goes to the rule's log."""

from __future__ import annotations

import contextlib
import faulthandler
import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from avemotion.config import ConfigError

RUN_SEPARATOR = "====="  # starts the line that opens a later run of the same job in its log


@contextlib.contextmanager
def script_logging(path):
    """Send everything a workflow script says to ``path`` for its duration: the logging module,
    Python's stderr, and what native libraries (TensorFlow, decord) and child processes (ffmpeg,
    OpenFace) write to file descriptor 2, which would otherwise reach Snakemake's terminal instead
    of the rule's log. A crash (a segfault, an abort) leaves its message and the Python stacks there
    too (faulthandler, unless something else already set it up)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    earlier = path.is_file() and path.stat().st_size > 0
    # Appended: the rerun of a killed job (kill -9, an out-of-memory kill, a Slurm time limit) keeps
    # the killed run's last words, what one looks for, above its own lines.
    # line-buffered: Python's lines reach the file before what native code writes after them
    with open(path, "a", buffering=1, encoding="utf-8", errors="backslashreplace") as handle:
        if earlier:
            handle.write(f"{RUN_SEPARATOR} {time.strftime('%Y-%m-%d %H:%M:%S')}: this job runs again; the lines above are its earlier run's\n")
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with _descriptor_2_writes_to(handle), _crash_stacks_on_descriptor_2(), contextlib.redirect_stderr(handle):
                yield
        except ConfigError as error:  # a setting the job's own data rules out: its one line, as the config check gives it
            logging.getLogger("avemotion").error("%s", error)
            raise SystemExit(1) from None
        except BaseException:
            logging.getLogger("avemotion").exception("script failed")
            raise
        finally:
            root.removeHandler(handler)


@contextlib.contextmanager
def _descriptor_2_writes_to(handle):
    """File descriptor 2 is ``handle``'s file within the block, and what it was after it."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()  # what Python had written before goes where it was meant to
    try:
        saved = os.dup(2)
    except OSError:  # stderr closed
        saved = None
    os.dup2(handle.fileno(), 2)
    try:
        yield
    finally:
        if saved is None:
            os.close(2)
        else:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def _crash_stacks_on_descriptor_2():
    """faulthandler writing to file descriptor 2 within the block, where nothing had enabled it."""
    if faulthandler.is_enabled():  # a test runner's, writing where it chose
        yield
        return
    faulthandler.enable(file=2, all_threads=True)
    try:
        yield
    finally:
        faulthandler.disable()


# The filter process: copies its input to its output line by line but for the lines the pattern
# (its argument) matches. Python without the package: it starts in milliseconds.
_LINE_FILTER = """
import re, sys
dropped = re.compile(sys.argv[1].encode())
for line in sys.stdin.buffer:
    if not dropped.search(line):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
"""


@contextlib.contextmanager
def native_stderr_filtered(dropped: str):
    """What native libraries and child processes write to the process' stderr (file descriptor 2)
    inside the block, without the lines the regular expression ``dropped`` matches: some libraries'
    start-up lines ignore the log levels they document (TensorFlow 2.21 logs through absl before
    absl is initialised). The lines pass through a process of their own, so that what a crash
    writes before it dies (an abort, a segfault) still comes out. Python's own lines (sys.stderr
    and the logging handlers writing to it) go straight to where they went, in order (a progress
    bar redraws in place). Nothing is filtered where stderr is not file descriptor 2 (closed, or
    sys.stderr replaced by a caller) or the filter cannot start. A child process that still holds
    stderr when the block ends delays it by up to 10 s, then the filter outlives the block."""
    previous = sys.stderr
    if not _is_descriptor_2(previous):
        yield
        return
    with contextlib.suppress(Exception):
        previous.flush()
    original = os.dup(2)
    try:
        # Its own session: the terminal's Ctrl-C stops this process, not the filter, which drains what is left.
        filter_process = subprocess.Popen([sys.executable, "-c", _LINE_FILTER, dropped], stdin=subprocess.PIPE, stdout=original, stderr=original, start_new_session=True)
    except OSError:
        os.close(original)
        yield
        return
    direct = open(os.dup(original), "w", buffering=1, encoding=getattr(previous, "encoding", None) or "utf-8", errors="backslashreplace")
    handlers = [handler for handler in _stream_handlers() if handler.stream is previous]
    for handler in handlers:
        handler.setStream(direct)
    sys.stderr = direct
    os.dup2(filter_process.stdin.fileno(), 2)
    try:
        yield
    finally:
        try:
            for handler in handlers:
                handler.setStream(previous)
            if sys.stderr is direct:
                sys.stderr = previous
            with contextlib.suppress(Exception):
                direct.close()
        finally:
            os.dup2(original, 2)
            os.close(original)
            filter_process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                filter_process.wait(timeout=10)


def _is_descriptor_2(stream) -> bool:
    """Whether ``stream`` writes to this process' file descriptor 2 (not closed, not replaced)."""
    try:
        return stream is not None and os.path.samestat(os.fstat(stream.fileno()), os.fstat(2))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


def _stream_handlers() -> list[logging.StreamHandler]:
    """Every logging handler that writes to a stream (the root logger's and the named loggers')."""
    loggers = [logging.getLogger(), *(item for item in logging.Logger.manager.loggerDict.values() if isinstance(item, logging.Logger))]
    return [handler for logger in loggers for handler in logger.handlers if isinstance(handler, logging.StreamHandler)]
