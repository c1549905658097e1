"""Late fusion: combine per-branch predictions with weights fitted on the validation split.

Weights lie on a grid over the simplex (every combination of multiples of ``step`` summing to 1),
chosen to maximise validation UAR for the emotion probabilities and validation CCC for each of
valence and arousal. A grid is enough for three branches (66 points at step 0.1) and cannot overfit
the way free weights can on a few validation speakers. Ties keep the earlier (more even) grid point.
"""

from __future__ import annotations

import itertools

import numpy as np

from avemotion.metrics import classification_metrics, regression_metrics
from avemotion.model.late_fusion import combine


def simplex_grid(parts: int, step: float = 0.1) -> list[tuple[float, ...]]:
    units = round(1 / step)
    points = [c for c in itertools.product(range(units + 1), repeat=parts) if sum(c) == units]
    # Most even first, so ties prefer combining branches over trusting one.
    points.sort(key=lambda c: (max(c), c))
    return [tuple(value / units for value in c) for c in points]


def fit_emotion_weights(probabilities: dict[str, np.ndarray], labels, step: float = 0.1) -> dict[str, float]:
    """Branch weights for averaged class probabilities that give the best validation UAR."""
    branches = sorted(probabilities)
    num_classes = next(iter(probabilities.values())).shape[1]
    best, best_score = None, -np.inf
    for point in simplex_grid(len(branches), step):
        weights = dict(zip(branches, point))
        predicted = combine(probabilities, weights).argmax(axis=1)
        score = classification_metrics(labels, predicted, num_classes)["uar"]
        if score > best_score + 1e-12:
            best, best_score = weights, score
    return best


def fit_regression_weights(predictions: dict[str, np.ndarray], target, step: float = 0.1) -> dict[str, float]:
    """Branch weights for a continuous prediction that give the best validation CCC."""
    branches = sorted(predictions)
    best, best_score = None, -np.inf
    for point in simplex_grid(len(branches), step):
        weights = dict(zip(branches, point))
        score = regression_metrics(target, combine(predictions, weights))["ccc"]
        if np.isfinite(score) and score > best_score + 1e-12:
            best, best_score = weights, score
    return best or {branch: 1 / len(branches) for branch in branches}
