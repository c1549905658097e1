"""Listing a corpus' files without the clutter that file managers leave behind."""

from __future__ import annotations

import os
from pathlib import Path

# Files that operating systems drop into folders; they are not clips, so they are not quarantined.
SYSTEM_CLUTTER = {"thumbs.db", "desktop.ini", "ehthumbs.db"}


def visible_files(folder, recursive: bool = False) -> list[Path]:
    """Sorted regular files under ``folder`` (empty if it does not exist), skipping hidden files."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        found += [
            Path(dirpath) / name
            for name in filenames
            if not name.startswith(".") and name.lower() not in SYSTEM_CLUTTER
        ]
    return sorted(found)


def first_file(folder, matches, recursive: bool = False) -> Path | None:
    """The first visible file under ``folder`` whose name ``matches``, or None; stops at the first,
    so checking a 10,000-clip corpus' layout costs one folder listing, not a walk of every clip."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for name in filenames:
            if not name.startswith(".") and matches(name):
                return Path(dirpath) / name
    return None
