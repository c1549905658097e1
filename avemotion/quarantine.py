"""The quarantine contract: clips that cannot be used, with the stage and the reason.

Each stage writes its own part (``results/{dataset}/quarantine/{stage}...csv``); the workflow merges
the parts into ``results/{dataset}/quarantine.csv``, which the report counts.
"""

from __future__ import annotations

import re
from pathlib import PurePath

import pandas as pd

QUARANTINE_COLUMNS = ["clip_id", "path", "stage", "reason"]


def quarantine_frame(entries: list[dict]) -> pd.DataFrame:
    """Quarantine entries as a table in the contract's column order, sorted for stable output."""
    frame = pd.DataFrame.from_records(entries, columns=QUARANTINE_COLUMNS)
    return frame.sort_values(["clip_id", "path", "stage"], kind="stable").reset_index(drop=True)


def read_quarantine(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)[QUARANTINE_COLUMNS]


def merge_quarantine(paths) -> pd.DataFrame:
    """All stage parts in one table."""
    parts = [read_quarantine(path) for path in paths]
    return quarantine_frame(pd.concat(parts, ignore_index=True).to_dict("records") if parts else [])


def naming_the_file(reason: str, path) -> str:
    """A stage's reason that names the clip's file: reasons are "what: file ..." (the report groups
    them by the text before the first ": "), and one that names no file of the clip (no face in any
    frame: the stage knows the clip, not the file) gets its file name after it. A reason naming the
    clip's other file (CREMA-D's AudioWAV beside its FLV: the same stem) names it already."""
    name = PurePath(path)
    # the stem as a name, not inside a longer word or number (MAFW's 00031 in a decoder's figures)
    named = re.search(rf"(?<![\w.]){re.escape(name.stem)}(?![\w-])", reason)
    return reason if named else f"{reason}: {name.name}"


class ClipDefect(ValueError):
    """A clip that cannot be used (unreadable, no video or audio stream, no face...): quarantine it."""


class SkipClip(Exception):
    """A clip a stage leaves out because an earlier stage already quarantined it (no second entry)."""
