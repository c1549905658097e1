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
