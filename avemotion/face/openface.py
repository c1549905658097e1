"""Run the user's OpenFace 2.x ``FeatureExtraction`` on a chunk of videos and read its CSVs.

One call handles every video of a chunk (repeated ``-f``), so OpenFace loads its models once.
OpenFace names each CSV after the video's stem and overwrites what is there, so videos that share a
stem go to separate calls. Each call writes into a fresh staging folder inside ``out_dir``; the CSVs
are then renamed into place, so an interrupted or failed call never leaves a partial CSV at a path a
later run would trust, and a failed call leaves no folder of its own behind either.

The user's extra arguments (config ``face.openface_args``, e.g. ``-mloc model/main_clnf_general.txt``
where the default CE-CLM model's CEN patch experts are not installed) go after avemotion's own;
the arguments that choose the inputs and where and under which name the CSVs go are avemotion's
(config_checks.RESERVED_OPENFACE_ARGS).

The CSV field separator differs between builds: Windows builds and at least one Linux build (2.0.6,
whose RecorderCSV.cpp hard-codes it) write ``", "``, others ``","``; :func:`read_openface_csv` reads
both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from avemotion.config_checks import OPENFACE_KEY, openface_arguments, openface_executable
from avemotion.face.columns import ALL_COLUMNS, ordered_columns
from avemotion.media.probe import ffmpeg_input

# The outputs this project asks for: AUs, head pose, gaze and 2D landmarks (columns.REQUESTED_COLUMNS).
OUTPUT_FLAGS = ["-aus", "-pose", "-gaze", "-2Dfp"]
INTEGER_COLUMNS = ["frame", "face_id", "success"]
STDERR_TAIL_CHARS = 2000


class OpenFaceError(RuntimeError):
    """FeatureExtraction failed (could not start, non-zero exit or timeout)."""


def feature_extraction_command(binary, videos: list, out_dir, extra_args=()) -> list[str]:
    """The FeatureExtraction argv for one call over ``videos``; ``extra_args`` (the user's) go last."""
    command = [str(binary)]
    for video in videos:
        command += ["-f", ffmpeg_input(video)]  # OpenCV reads it: a relative name with a colon would be a protocol
    return command + ["-out_dir", str(out_dir), *OUTPUT_FLAGS, *extra_args]


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


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, deepest first."""
    created = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        created.append(path)
    folder.mkdir(parents=True, exist_ok=True)
    return created


def _run_batch(binary: Path, videos: list, destination: Path, timeout: float | None, extra_args: list[str]) -> dict:
    created = _make_folder(destination)
    staging = Path(tempfile.mkdtemp(prefix=".openface-", dir=destination))
    succeeded = False
    try:
        # Absolute paths: OpenFace's own working-directory handling of relative ones is not to be relied on.
        command = feature_extraction_command(binary, [Path(v).absolute() for v in videos], staging.absolute(), extra_args)
        try:
            result = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise OpenFaceError(f"FeatureExtraction timed out after {timeout} s on {len(videos)} videos; stderr tail:\n{_tail(error.stderr)}") from error
        except OSError as error:  # e.g. built for another platform, or a script without an interpreter line
            raise OpenFaceError(f"FeatureExtraction '{binary}' could not be started: {error}") from error
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
        succeeded = True
        return csvs
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not succeeded:  # the folders this call made for its CSVs, unless something else is in them now
            for folder in created:
                try:
                    folder.rmdir()
                except OSError:
                    break


def run_feature_extraction(binary, videos: list, out_dir, timeout: float | None = None, openface_args=()) -> dict:
    """Run FeatureExtraction over ``videos``: ``{video: CSV path, or None where OpenFace wrote none}``.

    The CSVs land in ``out_dir`` as ``<stem>.csv``; a video whose stem repeats an earlier one's is run
    in a further call whose CSV lands in ``out_dir/same_stem_<k>/``. ``timeout`` applies per call.
    ``openface_args`` (config ``face.openface_args``) are added to every call.
    """
    extra_args = openface_arguments(openface_args)
    # FeatureExtraction looks for its model/, AU_predictors/ and classifiers/ folders in the working
    # directory, then in the folder of its argv[0], then in one fixed at build time
    # (LandmarkDetectorParameters.cpp, FaceAnalyserParameters.cpp). It does not resolve argv[0]: run
    # through a symlink (/usr/local/bin/FeatureExtraction -> /opt/OpenFace/build/bin/FeatureExtraction)
    # it would look beside the link and find no models. So the real file runs.
    binary = Path(os.path.realpath(openface_executable(binary)))
    out_dir = Path(out_dir)
    csvs = {}
    for k, batch in enumerate(_batches_with_unique_stems(list(dict.fromkeys(videos)))):
        csvs.update(_run_batch(binary, batch, out_dir if k == 0 else out_dir / f"same_stem_{k}", timeout, extra_args))
    return csvs


def in_stored_pixels(table: pd.DataFrame, x_scale: float) -> pd.DataFrame:
    """OpenFace's table of a copy widened to square pixels (a clip of non-square pixels: OpenFace
    reads the stored pixels, and would measure a squeezed face) with its image x coordinates (the
    2D landmarks, the eyes' landmarks, the shape model's x translation when ``-pdmparams`` asked for
    it) in the clip's own pixels, as the facemesh backend writes them: x times ``x_scale`` (the
    clip's width over the copy's), pixel centres kept. A row's zeros (OpenFace's "no landmarks")
    stay zeros. ``p_scale`` stays the copy's: one scale cannot be both widths."""
    columns = [c for c in table.columns if c.startswith(("x_", "eye_lmk_x_")) or c == "p_tx"]
    if not columns:
        return table
    placed = (table[columns] != 0).any(axis=1)
    table = table.copy()
    table.loc[placed, columns] = (table.loc[placed, columns] + 0.5) * x_scale - 0.5
    return table


def several_faces(table: pd.DataFrame, name: str) -> str | None:
    """Why an OpenFace table of the clip ``name`` is no FeatureExtraction output (None where it is):
    FeatureExtraction follows one face, a row per frame with face_id 0; FaceLandmarkVidMulti takes
    the same arguments and writes the same columns, but a row per face per frame and a face_id per
    person, which read as one face would mix the people's features."""
    ids = table["face_id"] if "face_id" in table else pd.Series(0, index=table.index)
    frames = table["frame"] if "frame" in table else pd.Series(range(len(table)))
    if not (frames.duplicated().any() or (ids != 0).any()):
        return None
    span = f"{ids.min()}" if ids.min() == ids.max() else f"{ids.min()}-{ids.max()}"
    wrote = (f"up to {frames.value_counts().max()} faces in a frame of {name} (face_id {span})" if frames.duplicated().any()
             else f"face_id {span} for {name} (FeatureExtraction writes 0)")  # fmt: skip
    return f"several faces: OpenFace wrote {wrote}, as FaceLandmarkVidMulti does; {OPENFACE_KEY} must be FeatureExtraction, which follows one face"


def read_openface_csv(path) -> pd.DataFrame:
    """A FeatureExtraction CSV of either separator, OpenFace's known columns in OpenFace's order.

    Builds differ: Windows builds and at least one Linux build (2.0.6) separate fields with ", ",
    others with ",". Initial spaces are skipped and names stripped, so both read alike.
    """
    frame = pd.read_csv(path, skipinitialspace=True)
    frame.columns = frame.columns.str.strip()
    known = set(ALL_COLUMNS)
    frame = frame[ordered_columns(c for c in frame.columns if c in known)]
    present = [c for c in INTEGER_COLUMNS if c in frame.columns]
    return frame.astype({c: "int64" for c in present})
