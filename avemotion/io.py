"""Atomic file writes (an interrupted run never leaves a half-written artifact a later run trusts),
the project's one JSON reader and writer, how a file Git LFS left as a pointer is told, and how a
file name that is not UTF-8 is shown."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd


# How a file that Git LFS did not fetch starts (a clone without `git lfs pull`, a zip of a repository
# page): a small text pointer stands where the file should be (CREMA-D's media and tables)
LFS_POINTER_START = "version https://git-lfs"


# A write of a shared file (a cache of a few MB) takes well under this: an older temporary file of it
# is a killed writer's, a younger one may be a live job's
SHARED_LEFTOVER_AGE_S = 600.0


# Why a file whose name is not UTF-8 is not read: OpenCV's reader crashed the process on such a
# name, and Parquet and CSV tables refuse it.
NOT_UTF8 = "the file name is not UTF-8 (written in another encoding, as old zips unpack): rename the file"


def shown_name(path) -> str:
    """``path`` as text a table or a log can hold: bytes of a name that is not UTF-8 (Python keeps
    them as surrogates) written as \\xNN; any other name as it is."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def is_utf8_name(path) -> bool:
    return shown_name(path) == str(path)


def is_lfs_pointer(path) -> bool:
    """Whether ``path`` is a Git LFS pointer (False where it cannot be read: a link to a gone file)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(LFS_POINTER_START)) == LFS_POINTER_START.encode()
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp", shared: bool = False):
    """Yield a temporary path in the same folder as ``path``; rename it over ``path`` on success.

    ``suffix`` is for writers that insist on an extension (Keras wants ``.weights.h5``). ``shared``
    marks a file that several jobs may write at once (a cache): a temporary file of its target is
    then a dead writer's only once it is older than any write takes (:data:`SHARED_LEFTOVER_AGE_S`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path, suffix, min_age_s=SHARED_LEFTOVER_AGE_S if shared else 0.0)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); artifacts get the usual permissions on a shared cluster.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_leftovers(path: Path, suffix: str, min_age_s: float = 0.0) -> None:
    """Delete the temporary files of ``path`` that a killed writer left (kill -9 skips the cleanup
    below; a fuse job's is a shard of several MB). Each output has one writing job at a time (the
    workflow gives it one rule), so a temporary file of this target found now is a dead writer's;
    for a target several jobs write, only one older than ``min_age_s`` is.
    The pattern is mkstemp's name for this target and suffix: 8 characters from its alphabet, which
    has no dot, so the temporary files of a longer name ("0.parquet.bak" next to "0.parquet") never match."""
    now = time.time()
    prefix = f".{path.name}."
    pattern = re.compile(re.escape(prefix) + "[a-z0-9_]{8}" + re.escape(suffix))
    # One read of the folder per write: under a millisecond per thousand entries, small next to
    # writing any artifact even in a folder with one file per clip.
    for entry in os.scandir(path.parent):
        if entry.name.startswith(prefix) and pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):  # another cleanup of this target got there first
                if min_age_s <= 0 or now - entry.stat(follow_symlinks=False).st_mtime > min_age_s:
                    os.unlink(entry.path)


def write_parquet(frame: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow")


def write_csv(frame: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def read_json(path):
    """The JSON document in ``path``. One that does not parse names the file (a run's settings.json
    edited by hand or cut short by a copy); a byte-order mark, which some editors write, is read past."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})") from error


def write_json(data, path) -> None:
    """``data`` as indented strict JSON (see :func:`plain`); data first, as write_parquet and write_csv."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(plain(data), indent=2, allow_nan=False) + "\n")


def plain(value):
    """JSON-safe: numpy scalars and arrays to Python, NaN and infinities to null (strict JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
