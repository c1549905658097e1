"""Predictions for new clips (``avemotion predict``, rule predict_clips).

A new clip goes through its model's own preprocessor (TrainedModel.preprocessor: the workflow's
preprocessing stages with the settings saved beside the model, and the fuse stage's encoding) and
the evaluation input pipeline (avemotion.model.outputs), so its prediction equals the evaluation
prediction of the same clip (a test checks it). The stages' artifacts go to a temporary folder,
or to ``workdir`` to keep them.

Differences from the workflow, on purpose: a clip without audio is predicted with silent audio and
a clip without a face with its whole picture and zero face features, each with a warning; a clip
that cannot be read gets a row with its error and the others are still predicted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.config import holds_wildcards, snakemake_can_name
from avemotion.datasets.walk import visible_files
from avemotion.io import NOT_UTF8, atomic_path, is_utf8_name, shown_name
from avemotion.model.bundle import TrainedModel
from avemotion.model.preprocessor import warnings_of
from avemotion.preprocess.plan import STAGE_NAMES
from avemotion.scratch import ScratchFolder

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".flv", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".vob", ".ts", ".mts", ".m2ts", ".wmv", ".3gp", ".ogv")
RESULT_COLUMNS = ["clip", "predicted_label", "valence", "arousal", "face_ratio", "warnings", "error"]
# Clips prepared and predicted at a time: what a crash can lose, and the work between two writes.
GROUP_SIZE = 32
# Clip ids are cut to this many UTF-8 bytes: the artifacts are named by them, their temporary
# names add up to 23 bytes, and file systems allow 255 (80 CJK characters are 240).
MAX_ID_BYTES = 120
# In --workdir: which folder and artifact names (clip id) hold each clip given.
WORKDIR_INDEX = "clips.csv"


class Progress:
    """A progress bar on stderr for more than ``minimum`` items: redrawn in place on a terminal,
    a line per tenth of the work otherwise (logs)."""

    def __init__(self, total: int, label: str, stream=None, minimum: int = 3, width: int = 30):
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.shown = total > minimum
        self.width = width
        self.terminal = hasattr(self.stream, "isatty") and self.stream.isatty()

    def advance(self) -> None:
        self.done += 1
        tenth = self.done * 10 // self.total != (self.done - 1) * 10 // self.total
        if not self.shown or not (self.terminal or tenth):
            return
        filled = int(self.width * self.done / self.total)
        bar = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}"
        if self.terminal:
            self.stream.write("\r" + bar + ("\n" if self.done >= self.total else ""))
        else:
            self.stream.write(bar + "\n")
        self.stream.flush()


def video_files(folder) -> list[Path]:
    """The video files under ``folder`` (recursively, by suffix, through symlinked folders), sorted;
    hidden files and folders and an operating system's clutter are left out (macOS's ._ copies,
    __MACOSX, .Trashes: avemotion.datasets.walk); a link whose target is gone is kept (its row
    says so)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (predict.input_dir)")
    return [path for path in visible_files(folder, recursive=True) if path.suffix.lower() in VIDEO_SUFFIXES]


def workflow_clips(folder) -> tuple[list[str], list[str]]:
    """The videos under ``folder`` (predict.input_dir) that the workflow's predict rule can take as
    inputs, and a notice for each it leaves out (a name with { or }, or not UTF-8: Snakemake cannot
    take it as a job's file); `avemotion predict` takes the first and says what is wrong with the second."""
    clips, notices = [], []
    for clip in map(str, video_files(folder)):
        if snakemake_can_name(clip):
            clips.append(clip)
        elif holds_wildcards(clip):
            notices.append(f"predict.input_dir: {clip} left out: Snakemake reads {{ }} in file names as wildcards; rename it, or run `avemotion predict` on it")
        else:
            notices.append(f"predict.input_dir: {shown_name(clip)} left out: {NOT_UTF8}")
    return clips, notices


def expand_clips(paths) -> list[str]:
    """The clips to predict: each file as given, and every video under a folder given instead
    (sorted); a folder without videos stays in the list and gets an error row."""
    clips = []
    for path in paths:
        try:
            videos = video_files(path) if Path(path).is_dir() else []
        except OSError:  # a folder it may not look into, a name too long: its row says so
            videos = []
        clips += [str(video) for video in videos] or [str(path)]
    return clips


def clip_records(paths) -> list[dict]:
    """One record per clip path: an id made from its file name, unique whatever the case (the
    artifacts are named by it, and macOS's and Windows' disks do not tell case apart), its absolute
    path, the path as the user wrote it (``given``; bytes that are not UTF-8 escaped) and why it
    cannot be read (``problem``, empty if it can)."""
    records, seen = [], set()
    for path in paths:
        stem = re.sub(r"[^\w.-]+", "_", Path(path).stem) or "clip"  # letters of any script kept: 高兴.mp4 is 高兴
        stem = stem.encode()[:MAX_ID_BYTES].decode("utf-8", "ignore")
        clip_id, number = stem, 1
        while clip_id.lower() in seen:  # Clip.mp4 and clip.mov: one artifact name on macOS's and Windows' disks
            number += 1
            clip_id = f"{stem}_{number}"
        seen.add(clip_id.lower())
        records.append({"clip_id": clip_id, "path": str(Path(path).resolve()), "audio_path": "", "given": shown_name(path), "problem": _unreadable(Path(path))})
    return records


def _unreadable(path: Path) -> str:
    """Why ``path`` cannot be read as a clip; empty if it can."""
    if not is_utf8_name(path):
        return NOT_UTF8
    try:
        if path.is_file():
            return "" if os.access(path, os.R_OK) else "permission denied: this user may not read the file"
        if path.is_dir():
            if not os.access(path, os.R_OK | os.X_OK):
                return "permission denied: this user may not read the folder"
            return f"a folder without video files ({', '.join(VIDEO_SUFFIXES)})"
        if path.is_symlink():
            return f"a link to {os.readlink(path)}, which does not exist"
    except PermissionError:
        return "permission denied: this user may not look into the folder that holds it"
    except OSError as error:  # a name longer than the file system allows, an I/O error
        return f"cannot be read: {error.strerror or error}"
    return "no such file"


def predict_files(
    model_dir, paths, dataset: str | None = None, workdir=None, progress: bool = True, on_rows=None, group_size: int = GROUP_SIZE, openface_bin=None
) -> pd.DataFrame:
    """One row per clip (a folder stands for the videos under it), in the given order:
    RESULT_COLUMNS plus ``prob_<label>`` per class.

    Rows of clips that could not be predicted hold their ``error`` and no prediction. ``workdir``
    keeps the intermediate artifacts (default: a temporary folder, removed afterwards);
    ``openface_bin`` is this machine's FeatureExtraction for a model trained on OpenFace's features
    (default: the one it was trained with). Clips are prepared and predicted ``group_size`` at a
    time; ``on_rows``, when given, gets the table of the clips done so far after each group (a
    crash later keeps those).
    """
    trained = TrainedModel.load(model_dir)
    preprocessor = trained.preprocessor(dataset, openface_bin)
    corpora = trained.settings["datasets"]
    recorded = trained.settings.get("preprocess") or {}
    if dataset is None and len({json.dumps(recorded.get(name), sort_keys=True) for name in corpora}) > 1:  # a mixture's, prepared differently
        log.warning("clips are prepared as %s's were (the model was trained on %s; --dataset picks another)", corpora[0], ", ".join(corpora))
    labels = trained.labels
    clips = clip_records(expand_clips(paths))
    if not clips:
        raise ValueError("no clips to predict")
    readable = {clip["clip_id"] for clip in clips if not clip["problem"]}
    if readable:  # mistyped paths alone get their rows without the seconds TensorFlow takes to start
        # TensorFlow, so not at the top: the workflow imports this module when it parses its rules. It
        # also registers the fusion model's layers, which load_model needs.
        from avemotion.model.outputs import raw_outputs

        network = trained.network()  # a damaged model file stops here, before any clip is prepared
    if workdir:  # ids are file stems made unique (clip.mp4 in two folders: clip, clip_2): say whose is whose
        folders = ["" if clip["problem"] else _group(n, group_size) for n, clip in enumerate(clips)]  # an unreadable clip has none
        index = pd.DataFrame({"clip": [clip["given"] for clip in clips], "folder": folders, "clip_id": [clip["clip_id"] for clip in clips]})
        with atomic_path(Path(workdir) / WORKDIR_INDEX) as temporary:
            index.to_csv(temporary, index=False)
    bar = Progress(len(readable) * len(STAGE_NAMES), "preparing", minimum=3 * len(STAGE_NAMES)) if progress else None
    rows = []
    with ScratchFolder("avemotion-predict-") as scratch:  # a killed run's is removed by the next
        for start in range(0, len(clips), group_size):
            group = clips[start : start + group_size]
            folder = Path(workdir or scratch) / _group(start, group_size)
            prepared = {clip.clip_id: clip for clip in preprocessor.prepare([c for c in group if c["clip_id"] in readable], folder, bar.advance if bar else None)}
            examples = preprocessor.write_examples(list(prepared.values()), folder)
            ids, final = [], {}
            if examples:
                ids, outputs = raw_outputs(network, trained.settings, [str(examples)], None, unlabelled=True)
                final = trained.fused(outputs)
            position = {clip_id: index for index, clip_id in enumerate(ids)}
            rows += [_row(clip, prepared.get(clip["clip_id"]), position.get(clip["clip_id"]), final, labels) for clip in group]
            if on_rows:
                on_rows(_table(rows, labels))
    return _table(rows, labels)


def _group(position: int, group_size: int) -> str:
    """The folder of the clip at ``position``'s group, prepared together."""
    return f"group_{position // group_size}"


def _row(clip: dict, done, index: int | None, final: dict, labels: list[str]) -> dict:
    """A clip's result row: its prediction (the ``index``-th output), or why there is none."""
    row = {"clip": clip["given"], "warnings": "", "error": ""}
    if done is None:
        return {**row, "error": clip["problem"] or "not prepared"}
    if index is None:
        return {**row, "error": done.error or "not predicted"}
    probabilities = final["emotion"][index]
    if not np.isfinite([*probabilities, final["valence"][index], final["arousal"][index]]).all():
        return {**row, "error": "the model gave non-finite outputs for this clip (its training diverged?)"}  # argmax would say the first class
    row.update(
        predicted_label=labels[int(np.argmax(probabilities))],
        valence=float(final["valence"][index]),
        arousal=float(final["arousal"][index]),
        face_ratio=done.face_ratio,
        warnings="; ".join(warnings_of(done)),
    )
    return {**row, **{f"prob_{label}": float(p) for label, p in zip(labels, probabilities)}}


def _table(rows: list[dict], labels: list[str]) -> pd.DataFrame:
    columns = RESULT_COLUMNS[:2] + [f"prob_{label}" for label in labels] + RESULT_COLUMNS[2:]
    return pd.DataFrame.from_records(rows, columns=columns)


def check_output(out) -> Path:
    """``out`` if predictions can be written there (a .csv or .json file in a writable folder);
    otherwise a ValueError that says why, before any clip is predicted."""
    out = Path(out)
    output_format(out)
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; give a file name ending with .csv or .json")
    folder = out.parent
    if not folder.is_dir():
        raise ValueError(f"{out}: the folder {folder} does not exist")
    if not _writable(folder) or (out.exists() and not os.access(out, os.W_OK)):
        raise ValueError(f"{out}: not writable (no permission to write in {folder})")
    return out


def output_format(out: Path) -> str:
    """The predictions file's format by its extension: "csv" or "json"."""
    if out.suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"{out}: the output file must end with .csv or .json")
    return out.suffix.lower().lstrip(".")


def check_workdir(workdir) -> Path:
    """``workdir``, made if missing, if intermediate artifacts can be written there; otherwise a
    ValueError that says why, before any clip is prepared."""
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"{workdir}: is a file; --workdir names a folder to keep the artifacts in")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{workdir}: cannot make this folder ({error.strerror or error})") from error
    if not _writable(workdir):
        raise ValueError(f"{workdir}: not writable (no permission to write in it)")
    return workdir


def _writable(folder: Path) -> bool:
    """Whether a file can be made in ``folder``: tried, since permission bits do not tell for root,
    a read-only file system or a full disk's quota."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".avemotion-check-"):
            return True
    except OSError:
        return False


def write_predictions(table: pd.DataFrame, out) -> None:
    """CSV or JSON (a list of records) by the file's extension. Called after each group of clips:
    the folder was checked once, before any work (:func:`check_output`)."""
    out = Path(out)
    fmt = output_format(out)
    with atomic_path(out) as tmp:
        if fmt == "csv":
            table.to_csv(tmp, index=False)
        else:
            records = json.loads(table.to_json(orient="records", double_precision=8))
            tmp.write_text(json.dumps(records, indent=2) + "\n")


def format_table(table: pd.DataFrame) -> str:
    """The predictions as a text table: clip, class, every class probability, VA, face ratio, notes."""
    shown = pd.DataFrame({"clip": table["clip"], "predicted": table["predicted_label"].fillna("-")})
    numbers = [column for column in table.columns if column.startswith("prob_")] + ["valence", "arousal"]
    for column in numbers:
        shown[column.removeprefix("prob_")] = table[column].map(lambda v: "-" if pd.isna(v) else f"{v:.3f}")
    shown["face"] = table["face_ratio"].map(lambda v: "-" if pd.isna(v) else f"{v:.0%}")
    shown["notes"] = [f"ERROR: {error}" if error else warnings for error, warnings in zip(table["error"], table["warnings"])]
    widths = [max([len(column)] + [display_width(str(value)) for value in shown[column]]) for column in shown.columns]
    rows = [list(shown.columns)] + shown.astype(str).to_numpy().tolist()
    return "\n".join("  ".join(pad(str(value), width) for value, width in zip(row, widths)).rstrip() for row in rows)


ZERO_WIDTH_CATEGORIES = ("Mn", "Me", "Cf")  # combining marks (Thai, Devanagari vowels), joiners, variation selectors


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal, composed first (macOS writes file names decomposed):
    wide (CJK) characters take two, marks and format characters none."""
    return sum(
        0 if unicodedata.category(char) in ZERO_WIDTH_CATEGORIES else 2 if unicodedata.east_asian_width(char) in "WF" else 1
        for char in unicodedata.normalize("NFC", text)
    )


def pad(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))
