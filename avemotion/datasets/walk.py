"""Listing a corpus' files without the clutter that file managers leave behind."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from avemotion.io import shown_name

log = logging.getLogger(__name__)

# Files that operating systems drop into folders; they are not clips, so they are not quarantined.
SYSTEM_CLUTTER = {"thumbs.db", "desktop.ini", "ehthumbs.db"}
# Folders of the same kind: a Mac's zip holds an AppleDouble copy (._name) of every file under
# __MACOSX; Windows keeps deleted files and its own under these (a USB stick's, too).
CLUTTER_FOLDERS = {"__macosx", "$recycle.bin", "system volume information", "lost+found"}  # lost+found: fsck's, at a volume's root


def visible(name: str) -> bool:
    """Whether a file or folder name is one a person put there: not hidden (a dot first, as macOS's
    ._ AppleDouble files, .DS_Store, .Trashes), not an operating system's."""
    return not name.startswith(".") and name.lower() not in SYSTEM_CLUTTER | CLUTTER_FOLDERS


# the folders walks could not read, per open unreadable_folders() block (innermost last)
_noting: list[dict[str, OSError]] = []


@contextlib.contextmanager
def unreadable_folders() -> Iterator[dict[str, OSError]]:
    """{folder: the error} of the folders that the walks inside the block could not read (a subject's
    folder copied without read permission): the index quarantines them, so that the clips left out
    show in the quarantine table, not only in a log."""
    found: dict[str, OSError] = {}
    _noting.append(found)
    try:
        yield found
    finally:
        _noting.remove(found)


def _walk(folder: Path, recursive: bool):
    """(folder, its visible file names) for ``folder`` and, when ``recursive``, every visible folder
    under it, symlinked ones too (a corpus spread over disks), each real folder once; a link to a
    folder that holds the way there (a loop) is not followed."""
    seen, ways = set(), {str(folder): ()}
    def unreadable(error: OSError) -> None:  # os.walk would skip such a folder's clips without a word
        log.warning("%s: cannot read this folder (%s); the files in it are left out", shown_name(error.filename), error.strerror or error)
        for found in _noting:
            found[str(error.filename)] = error

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable, followlinks=True):
        real = os.path.realpath(dirpath)
        way = (*ways.pop(dirpath, ()), real)  # the real folders walked through to get here
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        kept = []
        for name in sorted(dirnames) if recursive else []:
            target = os.path.realpath(os.path.join(dirpath, name))
            if visible(name) and not any(step == target or step.startswith(target.rstrip(os.sep) + os.sep) for step in way):
                ways[os.path.join(dirpath, name)] = way
                kept.append(name)
        dirnames[:] = kept
        yield Path(dirpath), [name for name in filenames if visible(name)]


def visible_files(folder, recursive: bool = False) -> list[Path]:
    """Sorted files under ``folder`` (empty if it does not exist), skipping hidden ones and
    clutter; a link whose target is gone is listed (what reads it says so)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(dirpath / name for dirpath, names in _walk(folder, recursive) for name in names)


def first_file(folder, matches, recursive: bool = False) -> Path | None:
    """The first visible file under ``folder`` whose name ``matches``, or None; stops at the first,
    so checking a 10,000-clip corpus' layout costs one folder listing, not a walk of every clip.
    First in name order: the order a file system lists names in is its own (a layout check that
    reads one file must give the same answer on every copy)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for dirpath, names in _walk(folder, recursive):
        for name in sorted(names):
            if matches(name):
                return dirpath / name
    return None


def visible_folders(folder) -> list[Path]:
    """``folder`` and every visible folder under it (symlinked ones too, each once), sorted."""
    folder = Path(folder)
    return sorted(dirpath for dirpath, _ in _walk(folder, True)) if folder.is_dir() else []
