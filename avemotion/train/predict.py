"""Predictions of a trained fusion model for a split, as the predictions table evaluation reads
(running the model: avemotion.model.outputs; combining its branches: avemotion.model.late_fusion)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from avemotion.layout import HISTORY_FILE
from avemotion.model.fusion import BRANCHES
from avemotion.model.late_fusion import fused
from avemotion.model.outputs import raw_outputs
from avemotion.train.ensemble import fit_emotion_weights, fit_regression_weights


def late_weights(outputs: dict[str, np.ndarray], truth: pd.DataFrame, labels: list[str]) -> dict:
    """Fit on validation predictions: per task, how much each branch counts."""
    label_index = truth["label"].map({name: index for index, name in enumerate(labels)}).to_numpy()
    return {
        "emotion": fit_emotion_weights({b: outputs[f"{b}_emotion"] for b in BRANCHES}, label_index),
        "valence": fit_regression_weights({b: outputs[f"{b}_valence"] for b in BRANCHES}, truth["valence"].to_numpy()),
        "arousal": fit_regression_weights({b: outputs[f"{b}_arousal"] for b in BRANCHES}, truth["arousal"].to_numpy()),
    }


def predictions_table(
    ids, final: dict[str, np.ndarray], truth: pd.DataFrame, labels: list[str], outputs: dict[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """One row per clip: truth, the final prediction, and each branch's own (late and hybrid models)."""
    truth = truth.set_index("clip_id").loc[ids].reset_index()
    check_finite(final, "the model")
    check_finite({key: value for key, value in (outputs or {}).items() if key.startswith(tuple(BRANCHES))}, "a branch of the model")
    predicted = final["emotion"].argmax(axis=1)
    table = truth[["clip_id", "dataset", "speaker", "fold", "label"]].copy()
    table["label_index"] = truth["label"].map({name: index for index, name in enumerate(labels)}).astype(int)
    table["predicted_index"] = predicted
    table["predicted_label"] = [labels[index] for index in predicted]
    for index, name in enumerate(labels):
        table[f"prob_{name}"] = final["emotion"][:, index]
    table["valence"], table["arousal"] = truth["valence"].to_numpy(), truth["arousal"].to_numpy()
    table["valence_pred"], table["arousal_pred"] = final["valence"], final["arousal"]
    for branch in branch_names(outputs or {}):
        table[f"{branch}_predicted_index"] = outputs[f"{branch}_emotion"].argmax(axis=1)
        table[f"{branch}_predicted_label"] = [labels[index] for index in table[f"{branch}_predicted_index"]]
        for task in ("valence", "arousal"):
            if f"{branch}_{task}" in outputs:
                table[f"{branch}_{task}_pred"] = outputs[f"{branch}_{task}"]
    return table.sort_values("clip_id").reset_index(drop=True)


def check_finite(outputs: dict[str, np.ndarray], what: str) -> None:
    """A ValueError where ``outputs`` hold NaN or infinity (a diverged training, float16 overflow):
    argmax would read a NaN row as the first class and the metrics would score it."""
    for name, values in outputs.items():
        bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
        if bad.any():
            rows = int(bad.reshape(len(bad), -1).any(axis=1).sum()) if bad.ndim else 1
            raise ValueError(f"{what} gave non-finite {name} outputs for {rows} of {len(bad)} clips (its training diverged? see {HISTORY_FILE})")


def branch_names(outputs) -> list[str]:
    """The branches with their own emotion head among a model's outputs (none for early fusion)."""
    return [branch for branch in BRANCHES if f"{branch}_emotion" in outputs]


def branch_predictions(predictions: pd.DataFrame, branch: str) -> pd.DataFrame:
    """The predictions table as if ``branch`` alone had predicted (its columns in place of the fused ones)."""
    table = predictions[["clip_id", "label", "label_index", "valence", "arousal"]].copy()
    table["predicted_index"] = predictions[f"{branch}_predicted_index"]
    for task in ("valence", "arousal"):
        if f"{branch}_{task}_pred" in predictions:
            table[f"{task}_pred"] = predictions[f"{branch}_{task}_pred"]
    return table


def predict_clips(model, settings: dict, tfrecord_paths, split: dict, evaluated: str, clips: pd.DataFrame, scored: list[str] | None = None):
    """The predictions table of split ``evaluated`` and, for late fusion, the weights fitted on
    validation; over the ``scored`` labels only where given (a subset of the model's: the emotion
    probabilities renormalised over them, :func:`restrict_to`)."""
    weights = None
    if settings["fusion"] == "late":
        ids, outputs = raw_outputs(model, settings, tfrecord_paths, split["validation"])
        weights = late_weights(outputs, clips.set_index("clip_id").loc[ids].reset_index(), settings["labels"])
    ids, outputs = raw_outputs(model, settings, tfrecord_paths, split[evaluated])
    labels = scored or settings["labels"]
    if labels != settings["labels"]:
        outputs = restrict_to(outputs, settings["labels"], labels)
    return predictions_table(ids, fused(outputs, weights), clips, labels, outputs), weights


def restrict_to(outputs: dict[str, np.ndarray], labels: list[str], kept: list[str]) -> dict[str, np.ndarray]:
    """Emotion probabilities over ``kept`` only (renormalised); other outputs unchanged."""
    columns = [labels.index(label) for label in kept]
    restricted = {}
    for name, value in outputs.items():
        if name.endswith("emotion"):
            value = value[:, columns]
            value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-12)
        restricted[name] = value
    return restricted
