"""The manifest and quarantine contracts shared by every dataset reader.

A dataset reader scans its corpus from file names and metadata only and returns a :class:`Scan`:
one record per clip (``clip_id``, ``path``, ``speaker``, ``label``, ``fold`` plus its own columns)
and the files it had to quarantine. :func:`build_manifest` turns that into the manifest
(results/{dataset}/manifest.parquet, whose columns README.md lists): duplicate ids quarantined,
``label_index``, valence/arousal, the chunk of each clip, rows sorted by ``clip_id`` with a fixed
column order, so the same inputs give identical bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.datasets.walk import visible_files
from avemotion.labels import vote_weighted_va
from avemotion.quarantine import quarantine_frame

MANIFEST_COLUMNS = [
    "clip_id",
    "dataset",
    "path",
    "speaker",
    "label",
    "label_index",
    "valence",
    "arousal",
    "fold",
    "chunk",
]

# Clips indexed without a label (MAFW's compound-only clips) carry these values: they are kept in
# the manifest so reports can count them, and training leaves them out.
NO_LABEL = ""
NO_LABEL_INDEX = -1
NO_FOLD = 0

VOTE_PREFIX = "votes_"


@dataclass
class Scan:
    """What a dataset reader found: usable clip records and quarantined files."""

    records: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)

    def quarantine(self, clip_id: str, path: str, reason: str) -> None:
        self.quarantined.append({"clip_id": clip_id, "path": path, "stage": "index", "reason": reason})

    def quarantine_records(self, reason_of) -> None:
        """Quarantine each record that ``reason_of(record)`` gives a reason for; keep the others."""
        kept = []
        for record in self.records:
            reason = reason_of(record)
            if reason:
                self.quarantine(record["clip_id"], record["path"], reason)
            else:
                kept.append(record)
        self.records = kept

    def files_directly_in(self, root: Path, folder: str, corpus: str) -> list[Path]:
        """The visible files directly in ``root/folder``, where ``corpus`` keeps its clips; a file
        in a folder below it (a copy sorted into subfolders) is quarantined, saying where it is."""
        found = []
        for file in visible_files(root / folder, recursive=True):
            if file.parent == root / folder:
                found.append(file)
            else:
                self.quarantine(file.stem, file.relative_to(root).as_posix(), f"in a folder below {folder}; {corpus} keeps its clips directly in {folder}/")
        return found


def chunk_of(clip_id: str, num_chunks: int) -> int:
    """Stable chunk of a clip: adding or removing a clip never moves any other clip."""
    digest = hashlib.sha1(clip_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_chunks


def _drop_duplicate_ids(scan: Scan) -> list[dict]:
    """Keep the first record of each clip_id (by path) and quarantine the others, naming the kept one."""
    kept: dict[str, dict] = {}
    for record in sorted(scan.records, key=lambda r: (r["clip_id"], r["path"])):
        first = kept.setdefault(record["clip_id"], record)
        if first is not record:
            scan.quarantine(
                record["clip_id"], record["path"], f"duplicate clip id: {first['path']} has the same id"
            )
    return list(kept.values())


def _valence_arousal(frame: pd.DataFrame, coordinates) -> np.ndarray:
    """Class coordinates per clip, replaced by the vote-weighted mean where the clip has votes."""
    va = np.full((len(frame), 2), np.nan)
    for i, label in enumerate(frame["label"]):
        if label != NO_LABEL:
            va[i] = coordinates[label]
    vote_columns = [c for c in frame.columns if c.startswith(VOTE_PREFIX)]
    if vote_columns:
        votes = frame[vote_columns].astype("float64").fillna(0.0).to_numpy()
        weighted = vote_weighted_va(votes, [c[len(VOTE_PREFIX):] for c in vote_columns], coordinates)
        has_votes = ~np.isnan(weighted[:, 0])
        va[has_votes] = weighted[has_votes]
    return va


def build_manifest(
    dataset: str, scan: Scan, labels: list[str], coordinates, num_chunks: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Manifest and index-stage quarantine tables from a reader's scan."""
    records = _drop_duplicate_ids(scan)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        frame = pd.DataFrame(columns=["clip_id", "path", "speaker", "label", "fold"])
    frame["dataset"] = dataset
    label_index = {name: i for i, name in enumerate(labels)}
    frame["label_index"] = [label_index.get(label, NO_LABEL_INDEX) for label in frame["label"]]
    va = _valence_arousal(frame, coordinates)
    frame["valence"], frame["arousal"] = va[:, 0], va[:, 1]
    frame["chunk"] = [chunk_of(clip_id, num_chunks) for clip_id in frame["clip_id"]]
    extras = [c for c in frame.columns if c not in MANIFEST_COLUMNS]
    frame = frame[MANIFEST_COLUMNS + extras].sort_values("clip_id", kind="stable").reset_index(drop=True)
    frame = frame.astype(
        {
            "clip_id": "str",
            "dataset": "str",
            "path": "str",
            "speaker": "str",
            "label": "str",
            "label_index": "int64",
            "valence": "float64",
            "arousal": "float64",
            "fold": "int64",
            "chunk": "int64",
        }
    )
    quarantine = quarantine_frame(scan.quarantined)
    return frame, quarantine
