"""Canonical emotion labels and the label-derived valence/arousal targets.

None of the supported corpora has dimensional annotations, so valence and arousal are derived from
categories: each class has coordinates (NRC-VAD lexicon v1, on its 0..1 scale, configurable in
config.yaml under ``labels.coordinates``) that are mapped to [-1, 1] by 2x - 1. Where per-class
votes exist, the target is the vote-weighted mean of the class coordinates.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# Order used everywhere a label needs an index: a dataset's label_index is the position of its label
# among that dataset's classes taken in this order.
CANONICAL_LABELS = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
)

# Each corpus' classes, in canonical order. Plain data here, not only in the dataset readers (which
# take LABELS from it), because resolving an experiment's labels is config work that must not need
# the data layer.
CORPUS_LABELS = {
    "crema_d": ("anger", "disgust", "fear", "happiness", "neutral", "sadness"),
    "enterface": ("anger", "disgust", "fear", "happiness", "sadness", "surprise"),
    "mafw": CANONICAL_LABELS,
}

# NRC-VAD lexicon v1 (valence, arousal) on its own 0..1 scale; non-commercial research licence.
NRC_VAD_COORDINATES = {
    "anger": (0.167, 0.865),
    "disgust": (0.052, 0.775),
    "fear": (0.073, 0.840),
    "happiness": (0.960, 0.732),
    "neutral": (0.469, 0.184),
    "sadness": (0.052, 0.288),
    "surprise": (0.875, 0.875),
    "contempt": (0.206, 0.635),
    "anxiety": (0.146, 0.865),
    "helplessness": (0.087, 0.480),
    "disappointment": (0.115, 0.490),
}


def coordinates_from_config(coordinates: Mapping | None) -> dict[str, tuple[float, float]]:
    """Per-class (valence, arousal) in [-1, 1] from config's 0..1 coordinates (defaults: NRC-VAD)."""
    merged = {name: {"valence": v, "arousal": a} for name, (v, a) in NRC_VAD_COORDINATES.items()}
    for name, value in (coordinates or {}).items():
        merged[name] = {**merged.get(name, {}), **value}
    return {name: (2 * c["valence"] - 1, 2 * c["arousal"] - 1) for name, c in merged.items()}


def vote_weighted_va(
    votes: np.ndarray, vote_labels: list[str], coordinates: Mapping[str, tuple[float, float]]
) -> np.ndarray:
    """(N, 2) valence/arousal: the vote-weighted mean of class coordinates; NaN where no votes.

    ``votes`` is an (N, C) array of vote counts for the classes named by ``vote_labels``.
    """
    votes = np.asarray(votes, dtype=float)
    table = np.array([coordinates[name] for name in vote_labels], dtype=float)  # (C, 2)
    totals = votes.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        weighted = votes @ table / totals
    weighted[totals[:, 0] <= 0] = np.nan
    return weighted
