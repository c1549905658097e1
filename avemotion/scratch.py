"""Scratch folders that outlive no job: a job killed with SIGKILL runs no clean-up, and its folder
(OpenFace's output for a chunk, a lossless copy of a 1080p clip, a prediction's prepared frames:
hundreds of MB each) would stay until someone removes it by hand, one more per kill.

Each folder is named ``<prefix><host>-<pid>-<random>`` and holds a lock on a file inside it while its
process lives (the kernel lets the lock go however the process ends). Making a scratch folder first
removes the folders of the same prefix that this host's dead processes left: those whose lock no one
holds. Folders of other hosts sharing the parent (a cluster's shared results folder) are left to
their own host, where a lock may not be seen."""

from __future__ import annotations

import fcntl
import glob
import os
import re
import shutil
import socket
import tempfile
import weakref
from pathlib import Path

# the file whose lock tells a live job's folder from a dead one's
LOCK = ".running"


class ScratchFolder:
    """A folder under ``parent`` (made if missing; the system's temporary folder when None) that
    :meth:`cleanup` removes (or the object's end, or the process' normal exit), or, after a kill,
    the next scratch folder of this host and prefix. Also a context manager that gives its path."""

    def __init__(self, prefix: str, parent: str | os.PathLike | None = None):
        parent = Path(tempfile.gettempdir() if parent is None else parent)
        parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(parent, prefix)
        # made under a hidden name and locked before it takes the name the clean-up looks for, so a
        # job starting beside this one never finds it unlocked
        starting = Path(tempfile.mkdtemp(prefix=f".{prefix}starting-", dir=parent))
        self._lock = open(starting / LOCK, "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (NFSv3 without lockd): no clean-up finds it unlocked either
            pass
        self.path = parent / f"{prefix}{socket.gethostname()}-{os.getpid()}-{starting.name.rsplit('-', 1)[1]}"
        starting.rename(self.path)
        # removed when the object goes or the process exits normally, as a TemporaryDirectory is
        self._finalizer = weakref.finalize(self, _remove, self.path, self._lock)

    def cleanup(self) -> None:
        self._finalizer()

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        self.cleanup()


def _remove(path: Path, lock) -> None:
    lock.close()  # first: NFS renames a file still open (to .nfs followed by digits) and the folder would stay
    shutil.rmtree(path, ignore_errors=True)


def remove_orphans(parent: Path, prefix: str) -> None:
    """Remove ``parent``'s scratch folders of ``prefix`` that this host's dead processes left."""
    named = re.compile(rf"{re.escape(prefix)}{re.escape(socket.gethostname())}-\d+-[a-z0-9_]+")
    for folder in Path(parent).glob(f"{glob.escape(prefix)}*"):
        if not named.fullmatch(folder.name):
            continue
        try:
            with open(folder / LOCK, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held (its job runs), or not ours to open (another user's, in a shared /tmp)
            continue
        shutil.rmtree(folder, ignore_errors=True)

