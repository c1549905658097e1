"""Logging for workflow scripts: everything a script says, and its traceback, goes to the rule's log."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path


@contextlib.contextmanager
def script_logging(path):
    """Send the logging module and stderr to ``path`` for the duration of a workflow script."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stderr(handle):
                yield
        except BaseException:
            logging.getLogger("avemotion").exception("script failed")
            raise
        finally:
            root.removeHandler(handler)


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
    writes before it dies (an abort, a segfault) still comes out. Python's own sys.stderr writes
    straight to the terminal, as before (a progress bar redraws in place). Nothing is filtered
    where there is no stderr."""
    try:
        original = os.dup(2)
    except OSError:  # started with stderr closed
        yield
        return
    previous = sys.stderr
    with contextlib.suppress(Exception):
        previous.flush()
    # Its own session: the terminal's Ctrl-C stops this process, not the filter, which drains what is left.
    filter_process = subprocess.Popen([sys.executable, "-c", _LINE_FILTER, dropped], stdin=subprocess.PIPE, stdout=original, stderr=original, start_new_session=True)
    encoding = getattr(previous, "encoding", None) or "utf-8"
    sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(original), "wb", buffering=0), encoding=encoding, errors="backslashreplace", line_buffering=True)
    os.dup2(filter_process.stdin.fileno(), 2)
    try:
        yield
    finally:
        try:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
                sys.stderr.close()
        finally:
            sys.stderr = previous
            os.dup2(original, 2)
            os.close(original)
            filter_process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                filter_process.wait(timeout=10)  # a child process of the block may still hold the pipe: the filter outlives us then
