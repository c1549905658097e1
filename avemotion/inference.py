"""Predictions for new clips (``avemotion predict``, rule predict_clips).

A new clip goes through exactly what the model's training clips went through, with the settings
saved beside the model (settings.json: preprocessing per dataset, frames, fusion, labels): the
three preprocessing stages (avemotion.preprocess.stages), the fuse stage's encoding into a TFRecord
shard (avemotion.fusion.shards) and the evaluation input pipeline (avemotion.fusion.dataset), all in
a scratch folder. Sharing that code, not re-implementing it, is what keeps predictions equal to the
evaluation predictions of the same clips (a test checks it).

Differences from the workflow, on purpose: a clip without audio is predicted with silent audio
(``audio.missing: silent``) and a clip without a face with its whole picture and zero face
features (``face.no_face: keep``), each with a warning; a clip that cannot be read gets a row with
its error and the others are still predicted.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.fusion.shards import fuse_chunk
from avemotion.io import atomic_path
from avemotion.model.bundle import MODEL_FILE, SETTINGS_FILE, TrainedModel
from avemotion.preprocess.chunk import run_chunk
from avemotion.preprocess.plan import STAGE_NAMES
from avemotion.preprocess.stages import STAGES
from avemotion.quarantine import merge_quarantine

VIDEO_SUFFIXES = (".mp4", ".avi", ".flv", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
DATASET = "new"  # the dataset name of new clips in the scratch shard
LOW_FACE_RATIO = 0.5  # below this fraction of frames with a face, a warning says so
RESULT_COLUMNS = ["clip", "predicted_label", "valence", "arousal", "face_ratio", "warnings", "error"]


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
    """The video files under ``folder`` (recursively, by suffix), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (predict.input_dir)")
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES)


def load_model_settings(model_dir, dataset: str | None = None) -> tuple[TrainedModel, dict]:
    """(the trained model in ``model_dir``, the preprocessing settings of ``dataset``, one the model
    was trained on; default its first)."""
    model_dir = Path(model_dir)
    if not (model_dir / MODEL_FILE).exists() or not (model_dir / SETTINGS_FILE).exists():
        raise FileNotFoundError(f"{model_dir}: not a trained model folder ({MODEL_FILE} and {SETTINGS_FILE} expected)")
    trained = TrainedModel.load(model_dir)
    preprocess = trained.settings.get("preprocess")
    if not preprocess:
        raise ValueError(f"{model_dir / SETTINGS_FILE} does not record the preprocessing settings (a model trained before they were saved): retrain it")
    dataset = dataset or trained.settings["datasets"][0]
    if dataset not in preprocess:
        raise ValueError(f"--dataset {dataset!r}: the model was trained on {', '.join(preprocess)}; allowed values: {', '.join(preprocess)}")
    return trained, preprocess[dataset]


def clip_records(paths) -> list[dict]:
    """One record per clip path: a unique id made from its file name, and its absolute path."""
    records, seen = [], set()
    for path in paths:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem) or "clip"
        clip_id, number = stem, 1
        while clip_id in seen:
            number += 1
            clip_id = f"{stem}_{number}"
        seen.add(clip_id)
        records.append({"clip_id": clip_id, "path": str(Path(path).resolve()), "audio_path": "", "given": str(path)})
    return records


def stage_settings(preprocess: dict) -> dict[str, dict]:
    """The model's preprocessing settings, made to keep clips without audio or face."""
    return {
        "audio": {**preprocess["audio"], "missing": "silent"},
        "face": {**preprocess["face"], "no_face": "keep"},
        "frames": dict(preprocess["frames"]),
    }


def prepare_clips(clips: list[dict], preprocess: dict, workdir: Path, progress: Progress | None = None) -> dict:
    """Run the three preprocessing stages and the fuse stage on ``clips`` in ``workdir``.

    Returns {"tfrecord": path, "usable": clips in it, "tables": {stage: DataFrame}, "quarantine": DataFrame}.
    """
    settings = stage_settings(preprocess)
    tables, quarantine_parts = {}, []
    jobs = [{key: clip[key] for key in ("clip_id", "path", "audio_path")} for clip in clips]
    for stage_name in ("audio", "face", "frames"):  # frames crop to the face stage's boxes
        stage = STAGES[stage_name](Path("/"), workdir, settings[stage_name])
        tables[stage_name] = workdir / "preprocess" / f"{stage_name}.parquet"
        quarantine_parts.append(workdir / "quarantine" / f"{stage_name}.csv")
        run_chunk(stage, jobs, tables[stage_name], quarantine_parts[-1], progress.advance if progress else None)
    manifest = pd.DataFrame(
        {
            "clip_id": [clip["clip_id"] for clip in clips],
            "dataset": DATASET,
            "path": [clip["path"] for clip in clips],
            "speaker": "",
            "label": "",
            "label_index": -1,
            "valence": np.nan,
            "arousal": np.nan,
            "fold": 0,
            "chunk": 0,
        }
    )
    manifest.to_parquet(workdir / "manifest.parquet", index=False)
    tfrecord = workdir / "shards" / "tfrecord" / "0.tfrecord"
    shard = fuse_chunk(
        workdir / "manifest.parquet",
        0,
        tables,
        workdir,
        preprocess["frames"]["num_frames"],
        preprocess["audio"]["n_mfcc"],
        workdir / "shards" / "tabular" / "0.parquet",
        tfrecord,
        labelled_only=False,
    )
    return {
        "tfrecord": tfrecord,
        "usable": shard.num_rows,
        "tables": {name: pd.read_parquet(path).set_index("clip_id") for name, path in tables.items()},
        "quarantine": merge_quarantine(quarantine_parts),
    }


def warnings_of(clip_id: str, tables: dict[str, pd.DataFrame]) -> list[str]:
    """What a user should know about a predicted clip: no audio, silence, no or little face."""
    warnings = []
    audio, face = tables["audio"].loc[clip_id], tables["face"].loc[clip_id]
    if bool(audio.get("audio_missing", False)):
        warnings.append("no audio stream: predicted with silent audio")
    elif bool(audio.get("silent", False)):
        warnings.append("audio is silent")
    ratio = float(face["face_ratio"])
    if ratio == 0:
        warnings.append("no face found: frames show the whole picture and face features are zeros")
    elif ratio < LOW_FACE_RATIO:
        warnings.append(f"a face in only {ratio:.0%} of the frames")
    return warnings


def error_of(clip_id: str, quarantine: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> str:
    """Why a clip was not predicted (the stages' quarantine reasons)."""
    reasons = quarantine.loc[quarantine["clip_id"] == clip_id, ["stage", "reason"]]
    if len(reasons):
        return "; ".join(f"{stage}: {reason}" for stage, reason in reasons.itertuples(index=False))
    statuses = {name: table.loc[clip_id, "status"] for name, table in tables.items() if clip_id in table.index}
    return "not processed: " + ", ".join(f"{name} {status}" for name, status in statuses.items())


def predict_files(model_dir, paths, dataset: str | None = None, workdir=None, progress: bool = True) -> pd.DataFrame:
    """One row per clip path, in the given order: RESULT_COLUMNS plus ``prob_<label>`` per class.

    Rows of clips that could not be predicted hold their ``error`` and no prediction. ``workdir``
    keeps the intermediate artifacts (default: a temporary folder, removed afterwards).
    """
    # TensorFlow, so not at the top: the workflow imports this module when it parses its rules. It
    # also registers the fusion model's layers, which load_model needs.
    from avemotion.model.outputs import raw_outputs

    model_dir = Path(model_dir)
    trained, preprocess = load_model_settings(model_dir, dataset)
    settings, labels = trained.settings, trained.labels
    clips = clip_records(paths)
    if not clips:
        raise ValueError("no clips to predict")
    missing = {clip["clip_id"] for clip in clips if not Path(clip["path"]).is_file()}
    readable = [clip for clip in clips if clip["clip_id"] not in missing]
    with tempfile.TemporaryDirectory(prefix="avemotion-predict-") as scratch:
        workdir = Path(workdir) if workdir else Path(scratch)
        ids, final = [], {}
        if readable:
            bar = Progress(len(readable) * len(STAGE_NAMES), "preparing", minimum=3 * len(STAGE_NAMES)) if progress else None
            prepared = prepare_clips(readable, preprocess, workdir, bar)
        if readable and prepared["usable"]:
            ids, outputs = raw_outputs(trained.network(), settings, [str(prepared["tfrecord"])], None, unlabelled=True)
            final = trained.fused(outputs)
    position = {clip_id: index for index, clip_id in enumerate(ids)}
    rows = []
    for clip in clips:
        row = {"clip": clip["given"]}
        index = position.get(clip["clip_id"])
        if clip["clip_id"] in missing:
            row["error"] = "no such file"
        elif index is None:
            row["error"] = error_of(clip["clip_id"], prepared["quarantine"], prepared["tables"])
        else:
            probabilities = final["emotion"][index]
            row.update(
                predicted_label=labels[int(np.argmax(probabilities))],
                valence=float(final["valence"][index]),
                arousal=float(final["arousal"][index]),
                face_ratio=float(prepared["tables"]["face"].loc[clip["clip_id"], "face_ratio"]),
                warnings="; ".join(warnings_of(clip["clip_id"], prepared["tables"])),
                error="",
            )
            row.update({f"prob_{label}": float(p) for label, p in zip(labels, probabilities)})
        rows.append(row)
    columns = RESULT_COLUMNS[:2] + [f"prob_{label}" for label in labels] + RESULT_COLUMNS[2:]
    table = pd.DataFrame.from_records(rows, columns=columns)
    table["warnings"] = table["warnings"].fillna("")
    table["error"] = table["error"].fillna("")
    return table


def write_predictions(table: pd.DataFrame, out) -> None:
    """CSV or JSON (a list of records) by the file's extension."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ValueError(f"{out}: the output file must end with .csv or .json")
    with atomic_path(out) as tmp:
        if suffix == ".csv":
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
    widths = [max([len(column)] + [len(str(value)) for value in shown[column]]) for column in shown.columns]
    rows = [list(shown.columns)] + shown.astype(str).to_numpy().tolist()
    return "\n".join("  ".join(str(value).ljust(width) for value, width in zip(row, widths)).rstrip() for row in rows)
