"""Logging for workflow scripts: everything a script says, and its traceback, goes to the rule's log."""

from __future__ import annotations

import contextlib
import logging
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
