"""Running one preprocessing stage over one chunk of clips.

A chunk job loads its libraries and models once, then handles every clip of its chunk, writing one
artifact set per clip. A defective clip is quarantined with the stage and reason and the others go
on. Each finished clip leaves a small receipt (its result and a fingerprint of its sources and
settings), so a chunk that was killed half-way redoes only the clips it had not finished.
"""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import time
import traceback
from pathlib import Path

import pandas as pd

from avemotion.io import atomic_path, write_csv, write_parquet
from avemotion.layout import ClipArtifacts, source_digests
from avemotion.preprocess.sources import file_digests
from avemotion.quarantine import ClipDefect, SkipClip, naming_the_file, quarantine_frame

log = logging.getLogger(__name__)


class Stage(abc.ABC):
    """One preprocessing stage: what it writes per clip and how it computes it."""

    name = ""
    # Clips prepared at a time (None: the chunk's pending clips at once): their receipts are written
    # before the next group is prepared, so a job killed in prepare() loses one group, not the chunk
    prepared_together: int | None = None

    def __init__(self, root, outdir, settings: dict):
        self.root, self.outdir, self.settings = Path(root), Path(outdir), settings

    def sources(self, clip: dict) -> list[Path]:
        """The input files of a clip, whose changes invalidate its receipt."""
        return [self.root / clip["path"]]

    @abc.abstractmethod
    def artifacts(self, clip: dict) -> list[Path]:
        """The files the stage writes for a clip."""

    def prepare(self, clips: list[dict]) -> None:
        """Work done once for a group of clips (:attr:`prepared_together`) before they are processed
        one by one (e.g. one OpenFace call); called once per group, :meth:`finish` after the last."""

    def finish(self) -> None:
        """Clean-up after the per-clip loop."""

    @abc.abstractmethod
    def process(self, clip: dict) -> dict:
        """Write the clip's artifacts; return what the chunk table records about it."""


def digest_cache(stage: Stage) -> Path:
    """The stage's cache of source digests: one per dataset, shared with the workflow's chunk params."""
    return source_digests(stage.outdir)


def fingerprint(stage: Stage, clip: dict) -> str:
    """The clip's settings and its sources' paths and contents (not their mtimes: a copied corpus
    with new times reuses its receipts)."""
    paths = [str(path) for path in stage.sources(clip)]
    sources = list(zip(paths, file_digests(paths, digest_cache(stage))))
    payload = json.dumps([stage.name, stage.settings, clip, sources], sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()


def _receipt_path(stage: Stage, clip_id: str) -> Path:
    return ClipArtifacts(stage.outdir, clip_id).receipt(stage.name)


def _reusable(stage: Stage, clip: dict, print_: str) -> dict | None:
    receipt = _receipt_path(stage, clip["clip_id"])
    if not receipt.exists():
        return None
    saved = json.loads(receipt.read_text())
    if saved.get("fingerprint") != print_:
        return None
    if saved["row"]["status"] == "ok" and not all(p.exists() for p in stage.artifacts(clip)):
        return None
    return saved


def process_clip(stage: Stage, clip: dict) -> tuple[dict, list[dict], bool]:
    """(chunk-table row, quarantine entries, whether the result is final) of one clip.

    A failure nobody foresaw is not final: the next run tries the clip again, perhaps with fixed code.
    """
    started = time.perf_counter()
    entries, final = [], True
    try:
        row = {"status": "ok", **stage.process(clip)}
    except SkipClip as skip:
        row = {"status": "skipped", "reason": str(skip)}
    except ClipDefect as defect:
        row = {"status": "quarantined"}
        reason = naming_the_file(str(defect), clip["path"])
        entries = [{"clip_id": clip["clip_id"], "path": clip["path"], "stage": stage.name, "reason": reason}]
    except Exception as error:  # a failure we did not foresee: keep the chunk going, keep the evidence
        log.error("%s: %s failed:\n%s", stage.name, clip["clip_id"], traceback.format_exc())
        row = {"status": "quarantined"}
        reason = f"unexpected error: {type(error).__name__}: {error}"
        entries = [{"clip_id": clip["clip_id"], "path": clip["path"], "stage": stage.name, "reason": reason}]
        final = False
    return {"clip_id": clip["clip_id"], **row, "seconds": time.perf_counter() - started}, entries, final


def run_chunk(stage: Stage, clips: list[dict], table_path, quarantine_path, progress=None) -> pd.DataFrame:
    """Process every clip of a chunk; write the chunk table and the stage's quarantine part.

    ``progress``, when given, is called after each clip that had to be processed.
    """
    started = time.perf_counter()
    rows, quarantined, pending = [], [], []
    # Digest every source first: one write of the digest cache for the chunk, not one per clip.
    file_digests([path for clip in clips for path in stage.sources(clip)], digest_cache(stage))
    for clip in clips:
        print_ = fingerprint(stage, clip)
        saved = _reusable(stage, clip, print_)
        if saved:
            rows.append(saved["row"])
            quarantined += saved["quarantine"]
        else:
            pending.append((clip, print_))
    size = stage.prepared_together or max(len(pending), 1)
    try:  # finish() also after a prepare() that failed: it removes what prepare() made (FaceStage's openface-* folder)
        for start in range(0, len(pending), size):
            group = pending[start : start + size]
            stage.prepare([clip for clip, _ in group])
            for clip, print_ in group:
                row, entries, final = process_clip(stage, clip)
                rows.append(row)
                quarantined += entries
                if progress:
                    progress()
                if not final:
                    continue
                with atomic_path(_receipt_path(stage, clip["clip_id"])) as tmp:
                    tmp.write_text(json.dumps({"fingerprint": print_, "row": row, "quarantine": entries}, default=_jsonable))
    finally:
        stage.finish()
    table = pd.DataFrame.from_records(rows) if rows else pd.DataFrame({"clip_id": [], "status": [], "seconds": []})
    write_parquet(table, table_path)
    write_csv(quarantine_frame(quarantined), quarantine_path)
    log.info(
        "%s: %d clips (%d reused from an earlier run, %d quarantined) in %.1f s",
        stage.name,
        len(clips),
        len(clips) - len(pending),
        len(quarantined),
        time.perf_counter() - started,
    )
    return table


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
