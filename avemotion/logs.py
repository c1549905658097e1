"""Logging for workflow scripts: everything a script says, and its traceback, goes to the rule's log."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable


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


# File descriptor 2 is the process', not a thread's: one block at a time swaps it (nested ones restore in order).
_NATIVE_STDERR = threading.RLock()


@contextlib.contextmanager
def native_stderr_without(dropped: Callable[[str], bool]):
    """What native libraries write to the process' stderr (file descriptor 2, past sys.stderr) inside
    the block, written out when it ends without the lines ``dropped`` picks, a failure's lines too:
    some libraries' start-up lines ignore the log levels they document (TensorFlow 2.21 logs through
    absl before absl is initialised; TensorFlow Lite prints its delegate at INFO)."""
    with _NATIVE_STDERR, tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode("utf-8", "replace").splitlines(keepends=True) if not dropped(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
