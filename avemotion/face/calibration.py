"""Fitting the built-in backend's AU estimates to OpenFace, and the figures of how well they agree.

An AU model (:data:`avemotion.face.geometry.AU_MODELS`) is ``clip(bias + weights . measures, 0, 5)``
with a presence threshold. :func:`fit_au_model` fits it to OpenFace's intensities by least squares
on the clipped output (OpenFace's 0 floor is most frames' value, which an unclipped line would chase)
with each weight's sign fixed by the muscle (:data:`~avemotion.face.geometry.AU_MEASURES`); the
threshold is the one that agrees most often with OpenFace's AU*_c. :func:`held_out_predictions`
refits with each person left out, so the figures describe faces the fit has not seen.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from avemotion.face.geometry import AU_MEASURES
from avemotion.metrics import regression_metrics

THRESHOLDS = np.round(np.arange(0.05, 5.0, 0.05), 2)


def fit_au_model(au: str, measures: dict[str, np.ndarray], intensity, presence) -> tuple[tuple[float, ...], float, float]:
    """(weights, bias, threshold) of AU ``au`` fitted to OpenFace's ``intensity`` and ``presence``."""
    names = list(AU_MEASURES[au])
    signs = np.array([AU_MEASURES[au][n] for n in names], dtype=float)
    x = np.stack([np.asarray(measures[n], dtype=float) for n in names], axis=1)
    y = np.asarray(intensity, dtype=float)
    centre, spread = x.mean(0), np.maximum(x.std(0), 1e-9)
    z = (x - centre) / spread  # standardised, so one scale suits every measure

    def residuals(params):
        return np.clip(params[0] + z @ (signs * params[1:]), 0.0, 5.0) - y

    start = np.concatenate([[y.mean()], np.full(len(names), max(y.std(), 0.1) / len(names))])
    lower = np.concatenate([[-np.inf], np.zeros(len(names))])
    fit = least_squares(residuals, start, bounds=(lower, np.inf), method="trf")
    weights = signs * fit.x[1:] / spread
    bias = float(fit.x[0] - weights @ centre)
    predicted = np.clip(bias + x @ weights, 0.0, 5.0)
    return tuple(float(w) for w in weights), bias, best_threshold(predicted, presence)


def best_threshold(intensity, presence) -> float:
    """The intensity from which AU*_c = 1 agrees most often with ``presence`` (the lowest of ties)."""
    presence = np.asarray(presence) > 0
    agreement = [np.mean((np.asarray(intensity) >= t) == presence) for t in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmax(agreement))])


def predict(model, au: str, measures: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Intensity and presence of AU ``au`` under ``model`` (weights, bias, threshold)."""
    weights, bias, threshold = model
    linear = bias + sum(w * np.asarray(measures[n], dtype=float) for w, n in zip(weights, AU_MEASURES[au]))
    intensity = np.clip(linear, 0.0, 5.0)
    return intensity, (intensity >= threshold).astype(np.int64)


def fit_models(measures: dict[str, np.ndarray], reference: pd.DataFrame, aus=None) -> dict:
    """{au: model} fitted on every frame of ``measures`` against the aligned OpenFace rows."""
    return {
        au: fit_au_model(au, measures, reference[f"AU{au}_r"], reference[f"AU{au}_c"])
        for au in (aus or AU_MEASURES)
    }


def held_out_predictions(measures: dict[str, np.ndarray], reference: pd.DataFrame, groups) -> pd.DataFrame:
    """AU*_r and AU*_c of every frame from models fitted without its group (person)."""
    groups = np.asarray(groups)
    out = pd.DataFrame(index=range(len(groups)))
    for au in AU_MEASURES:
        intensity, presence = np.zeros(len(groups)), np.zeros(len(groups), dtype=np.int64)
        for group in np.unique(groups):
            train = groups != group
            model = fit_au_model(
                au, {k: v[train] for k, v in measures.items()}, reference[f"AU{au}_r"].to_numpy()[train],
                reference[f"AU{au}_c"].to_numpy()[train],
            )
            intensity[~train], presence[~train] = predict(model, au, {k: v[~train] for k, v in measures.items()})
        out[f"AU{au}_r"], out[f"AU{au}_c"] = intensity, presence
    return out


def presence_from_own_intensity(reference: pd.DataFrame, groups) -> dict[str, float]:
    """Per AU, the share of frames where OpenFace's own ``AU*_r``, cut at the threshold fitted
    without the frame's group (as :func:`held_out_predictions` cuts ours), agrees with its ``AU*_c``:
    OpenFace computes the two with separate models, so this is what cutting an intensity gives even
    where the intensity is OpenFace's own: the yardstick for our presence agreement."""
    groups = np.asarray(groups)
    out = {}
    for au in AU_MEASURES:
        intensity, presence = reference[f"AU{au}_r"].to_numpy(float), reference[f"AU{au}_c"].to_numpy() > 0
        agrees = np.zeros(len(groups), dtype=bool)
        for group in np.unique(groups):
            held = groups == group
            threshold = best_threshold(intensity[~held], presence[~held])
            agrees[held] = (intensity[held] >= threshold) == presence[held]
        out[au] = float(agrees.mean())
    return out


def agreement(ours: pd.DataFrame, reference: pd.DataFrame, clips) -> pd.DataFrame:
    """One row per compared column: Pearson r pooled over frames, mean absolute difference, and for
    AUs the share of frames where presence agrees and the clips where ours is constant but OpenFace
    varies (``constant_clips``). ``ours`` and ``reference`` are aligned frame by frame."""
    clips = np.asarray(clips)
    rows = []
    for column in [c for c in ours.columns if c in reference.columns and not c.endswith("_c")]:
        a, b = ours[column].to_numpy(float), reference[column].to_numpy(float)
        row = {"column": column, "r": regression_metrics(b, a)["pearson"], "mean_abs_diff": float(np.mean(np.abs(a - b)))}
        if column.startswith("AU"):
            presence = column[:-2] + "_c"
            row["presence_agreement"] = float(np.mean(ours[presence].to_numpy() == reference[presence].to_numpy()))
            row["constant_clips"] = int(sum(
                np.ptp(a[clips == c]) == 0 and np.ptp(b[clips == c]) > 0.1 for c in np.unique(clips)
            ))
        rows.append(row)
    return pd.DataFrame(rows).set_index("column")
