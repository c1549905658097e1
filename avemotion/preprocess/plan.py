"""What each preprocessing chunk job works on, read from the manifest: the workflow uses these
functions for the jobs' inputs and params, so a chunk job depends only on its own clips' files.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from avemotion.config import sorted_keys
from avemotion.face.facemesh import features_version
from avemotion.job_params import preprocess_settings
from avemotion.media.audio import DECODING_REVISION
from avemotion.media.frame_crops import CROP_REVISION, FACE_CROPS
from avemotion.media.frames import READING_REVISION, SAMPLING_REVISION

STAGE_NAMES = ("audio", "face", "frames")
# Snakemake priorities of the stages' chunk jobs: face chunks are the long jobs and frames wait for
# them, so they start first, and the short audio chunks fill the cores at the end instead of one
# core idling behind the last face chunk.
STAGE_PRIORITY = {"face": 2, "frames": 1, "audio": 0}
_manifests: dict[tuple[str, int], pd.DataFrame] = {}


def read_manifest(path) -> pd.DataFrame:
    """The manifest, read once per version of the file (DAG building asks for it per chunk job)."""
    path = Path(path)
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _manifests:
        _manifests.clear()  # one dataset at a time is enough; keeps memory flat for many datasets
        _manifests[key] = pd.read_parquet(path, columns=None)
    return _manifests[key]


def chunk_clips(manifest: pd.DataFrame, chunk: int) -> list[dict]:
    """The clips of one chunk: id, video path and (CREMA-D) separate audio path."""
    rows = manifest[manifest["chunk"] == int(chunk)]
    audio = rows["audio_path"] if "audio_path" in rows else pd.Series("", index=rows.index)
    return [
        {"clip_id": clip_id, "path": path, "audio_path": audio_path or ""}
        for clip_id, path, audio_path in zip(rows["clip_id"], rows["path"], audio.fillna(""))
    ]


def chunk_source_files(root, clips: list[dict], stage: str) -> list[str]:
    """Corpus files a chunk job reads: its clips' videos, and for the audio stage the separate WAV
    too where a clip has one (its audio is put on the video's time axis)."""
    root = Path(root)
    if stage == "audio":
        return [str(root / path) for clip in clips for path in ([clip["audio_path"], clip["path"]] if clip["audio_path"] else [clip["path"]])]
    return [str(root / clip["path"]) for clip in clips]


def job_settings(config: dict, dataset: str, stage: str) -> dict:
    """A chunk job's settings param: the dataset's effective settings of ``stage`` with the revision
    of how videos are read (``reading_revision``), for audio jobs the revision of how audio is
    decoded (``decoding_revision``), for face jobs of the built-in backend its features version
    (``facemesh_features``) and for frames jobs the sampling revision (``sampling_revision``), so
    that a release that reads videos or audio, computes face features or samples frames differently
    recomputes them (Snakemake reruns a job whose params changed, and the chunk's
    receipts, which hold the settings, no longer match)."""
    settings = preprocess_settings(config, dataset)[stage]
    return sorted_keys({**settings, **stage_revisions(stage, settings)})


def stage_revisions(stage: str, settings: dict) -> dict:
    """This release's revisions of what a ``stage`` job with ``settings`` computes (see :func:`job_settings`)."""
    revisions = {"reading_revision": READING_REVISION}
    if stage == "audio":
        revisions["decoding_revision"] = DECODING_REVISION
    if stage == "face" and settings.get("backend") == "facemesh":
        revisions["facemesh_features"] = features_version()
    if stage == "frames":
        revisions["sampling_revision"] = SAMPLING_REVISION
        if settings.get("crop") in FACE_CROPS:
            revisions["crop_revision"] = CROP_REVISION
    return revisions
