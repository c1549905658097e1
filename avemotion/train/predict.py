"""Predictions of a trained fusion model for a split, as the predictions table evaluation reads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from avemotion.train.ensemble import combine, fit_emotion_weights, fit_regression_weights
from avemotion.train.models import BRANCHES, model_input_names


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def raw_outputs(model, settings: dict, tfrecord_paths, clip_ids, unlabelled: bool = False) -> tuple[list[str], dict[str, np.ndarray]]:
    """Clip ids and every model output (emotion outputs as probabilities) for the given clips
    (``unlabelled``: also those without a label of the model, as new clips are)."""
    from avemotion.fusion.dataset import make_dataset

    names = model_input_names(model)
    dataset = make_dataset(
        tfrecord_paths,
        num_frames=settings["num_frames"],
        image_size=settings["image_size"],
        label_names=settings["labels"],
        batch_size=settings["training"]["batch_size"],
        training=False,
        clip_ids=clip_ids,
        with_ids=True,
        inputs=names,
        unlabelled=unlabelled,
    )
    ids, collected = [], {}
    for inputs, _, meta in dataset:
        ids.extend(value.decode() for value in meta["clip_id"].numpy())
        for name, value in model.predict_on_batch({key: inputs[key] for key in names}).items():
            value = np.asarray(value, dtype=np.float64)
            collected.setdefault(name, []).append(softmax(value) if name.endswith("emotion") else value)
    return ids, {name: np.concatenate(parts) for name, parts in collected.items()}


def late_weights(outputs: dict[str, np.ndarray], truth: pd.DataFrame, labels: list[str]) -> dict:
    """Fit on validation predictions: per task, how much each branch counts."""
    label_index = truth["label"].map({name: index for index, name in enumerate(labels)}).to_numpy()
    return {
        "emotion": fit_emotion_weights({b: outputs[f"{b}_emotion"] for b in BRANCHES}, label_index),
        "valence": fit_regression_weights({b: outputs[f"{b}_valence"] for b in BRANCHES}, truth["valence"].to_numpy()),
        "arousal": fit_regression_weights({b: outputs[f"{b}_arousal"] for b in BRANCHES}, truth["arousal"].to_numpy()),
    }


def fused(outputs: dict[str, np.ndarray], weights: dict | None) -> dict[str, np.ndarray]:
    """The final emotion probabilities and VA predictions (late fusion combines the branches)."""
    if weights is None:
        return {task: outputs[task] for task in ("emotion", "valence", "arousal")}
    return {task: combine({b: outputs[f"{b}_{task}"] for b in BRANCHES}, weights[task]) for task in weights}


def predictions_table(
    ids, final: dict[str, np.ndarray], truth: pd.DataFrame, labels: list[str], outputs: dict[str, np.ndarray] | None = None
) -> pd.DataFrame:
    """One row per clip: truth, the final prediction, and each branch's own (late and hybrid models)."""
    truth = truth.set_index("clip_id").loc[ids].reset_index()
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


def predict_clips(model, settings: dict, tfrecord_paths, split: dict, evaluated: str, clips: pd.DataFrame):
    """The predictions table of split ``evaluated`` and, for late fusion, the weights fitted on validation."""
    weights = None
    if settings["fusion"] == "late":
        ids, outputs = raw_outputs(model, settings, tfrecord_paths, split["validation"])
        weights = late_weights(outputs, clips.set_index("clip_id").loc[ids].reset_index(), settings["labels"])
    ids, outputs = raw_outputs(model, settings, tfrecord_paths, split[evaluated])
    return predictions_table(ids, fused(outputs, weights), clips, settings["labels"], outputs), weights
