"""Run the user's OpenFace 2.x ``FeatureExtraction`` on a chunk of videos and read its CSVs.

One call handles every video of a chunk (repeated ``-f``), so OpenFace loads its models once.
OpenFace names each CSV after the video's stem and overwrites what is there, so videos that share a
stem go to separate calls. Each call writes into a fresh staging folder inside ``out_dir``; the CSVs
are then renamed into place, so an interrupted or failed call never leaves a partial CSV at a path a
later run would trust.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from avemotion.config import openface_executable
from avemotion.face.columns import ALL_COLUMNS, ordered_columns

# The outputs this project asks for: AUs, head pose, gaze and 2D landmarks (columns.REQUESTED_COLUMNS).
OUTPUT_FLAGS = ["-aus", "-pose", "-gaze", "-2Dfp"]
INTEGER_COLUMNS = ["frame", "face_id", "success"]
STDERR_TAIL_CHARS = 2000


class OpenFaceError(RuntimeError):
    """FeatureExtraction failed (non-zero exit or timeout)."""


def feature_extraction_command(binary, videos: list, out_dir) -> list[str]:
    """The FeatureExtraction argv for one call over ``videos``."""
    command = [str(binary)]
    for video in videos:
        command += ["-f", str(video)]
    return command + ["-out_dir", str(out_dir), *OUTPUT_FLAGS]


def _batches_with_unique_stems(videos: list) -> list[list]:
    """Batch k holds the k-th video of each stem, so no batch has two videos writing one CSV name."""
    batches: list[list] = []
    seen: dict[str, int] = {}
    for video in videos:
        stem = Path(video).stem
        k = seen.get(stem, 0)
        seen[stem] = k + 1
        if k == len(batches):
            batches.append([])
        batches[k].append(video)
    return batches


def _tail(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "").strip()[-STDERR_TAIL_CHARS:]


def _run_batch(binary: Path, videos: list, destination: Path, timeout: float | None) -> dict:
    destination.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".openface-", dir=destination))
    try:
        # Absolute paths: OpenFace's own working-directory handling of relative ones is not to be relied on.
        command = feature_extraction_command(binary, [Path(v).absolute() for v in videos], staging.absolute())
        try:
            result = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise OpenFaceError(f"FeatureExtraction timed out after {timeout} s on {len(videos)} videos; stderr tail:\n{_tail(error.stderr)}") from error
        if result.returncode != 0:
            # OpenFace prints many of its errors on stdout; fall back to it when stderr is empty.
            raise OpenFaceError(
                f"FeatureExtraction exited with status {result.returncode} on {len(videos)} videos; "
                f"stderr tail:\n{_tail(result.stderr) or _tail(result.stdout)}"
            )
        csvs = {}
        for video in videos:
            produced, target = staging / f"{Path(video).stem}.csv", destination / f"{Path(video).stem}.csv"
            if produced.is_file():
                os.replace(produced, target)
                csvs[video] = target
            else:
                target.unlink(missing_ok=True)  # a CSV from an earlier run does not describe this one
                csvs[video] = None
        return csvs
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_feature_extraction(binary, videos: list, out_dir, timeout: float | None = None) -> dict:
    """Run FeatureExtraction over ``videos``: ``{video: CSV path, or None where OpenFace wrote none}``.

    The CSVs land in ``out_dir`` as ``<stem>.csv``; a video whose stem repeats an earlier one's is run
    in a further call whose CSV lands in ``out_dir/same_stem_<k>/``. ``timeout`` applies per call.
    """
    binary = openface_executable(binary)
    out_dir = Path(out_dir)
    csvs = {}
    for k, batch in enumerate(_batches_with_unique_stems(list(dict.fromkeys(videos)))):
        csvs.update(_run_batch(binary, batch, out_dir if k == 0 else out_dir / f"same_stem_{k}", timeout))
    return csvs


def read_openface_csv(path) -> pd.DataFrame:
    """A FeatureExtraction CSV of either dialect, OpenFace's known columns in OpenFace's order.

    Windows builds separate fields with ", " and Linux builds with ",": initial spaces are skipped
    and names stripped, so both read alike.
    """
    frame = pd.read_csv(path, skipinitialspace=True)
    frame.columns = frame.columns.str.strip()
    known = set(ALL_COLUMNS)
    frame = frame[ordered_columns(c for c in frame.columns if c in known)]
    present = [c for c in INTEGER_COLUMNS if c in frame.columns]
    return frame.astype({c: "int64" for c in present})
