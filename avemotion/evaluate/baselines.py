"""Baselines on an experiment's own folds, so a model's numbers can be read against them.

For each test fold the baselines are fitted on the fold's split.json ``train`` + ``validation`` clips
and evaluated on its ``test`` clips (the same speakers the model was tested on):

- majority: always the most frequent class of the fitting clips (ties: the lowest label index).
- logistic_regression: multinomial logistic regression with an L2 penalty on the numeric summary
  columns of the tabular shards (avemotion.fusion.shards.FEATURE_COLUMNS: face-feature summaries,
  MFCC, log-Mel band and energy statistics). Columns are standardised with the fitting clips' mean
  and standard deviation; columns that are entirely missing or constant there are dropped, and
  remaining missing values take the mean (0 after standardising). The objective is the summed
  cross-entropy plus ``l2 / 2 * ||W||^2`` (biases unpenalised; scikit-learn's ``C = 1 / l2``),
  minimised with scipy's L-BFGS on exact gradients, in NumPy.

Results are summarised over folds like the model's (mean, std over folds) with
avemotion.metrics.summarise_folds.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import logsumexp

from avemotion.evaluate.summary import fold_labels
from avemotion.fusion.shards import FEATURE_COLUMNS, read_tabular_shards
from avemotion.io import read_json, write_csv, write_json
from avemotion.layout import SPLIT_FILE
from avemotion.metrics import CLASS_SCORES, classification_metrics, summarise_folds

log = logging.getLogger(__name__)

BASELINES = ("majority", "logistic_regression")
DEFAULT_L2 = 1.0


def feature_columns() -> list[str]:
    return list(FEATURE_COLUMNS)


# ---- majority class ----------------------------------------------------------------------------


def majority_class(label_index, num_classes: int) -> int:
    counts = np.bincount(np.asarray(label_index, dtype=int), minlength=num_classes)
    return int(np.argmax(counts))  # argmax returns the first maximum: ties go to the lowest index


# ---- logistic regression -----------------------------------------------------------------------


class Standardiser:
    """Column means and standard deviations of the fitting rows; drops unusable columns."""

    def __init__(self, features: np.ndarray):
        features = np.asarray(features, dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice" for all-NaN columns
            self.mean = np.nanmean(features, axis=0)
            self.std = np.nanstd(features, axis=0)
        self.keep = np.isfinite(self.mean) & np.isfinite(self.std) & (self.std > 0)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=float)[:, self.keep]
        scaled = (features - self.mean[self.keep]) / self.std[self.keep]
        return np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0)


def _objective(params: np.ndarray, features: np.ndarray, onehot: np.ndarray, l2: float):
    n_features, n_classes = features.shape[1], onehot.shape[1]
    weights = params[: n_features * n_classes].reshape(n_features, n_classes)
    bias = params[n_features * n_classes :]
    logits = features @ weights + bias
    log_probs = logits - logsumexp(logits, axis=1, keepdims=True)
    loss = -(onehot * log_probs).sum() + 0.5 * l2 * (weights**2).sum()
    residual = np.exp(log_probs) - onehot
    grad_w = features.T @ residual + l2 * weights
    grad_b = residual.sum(axis=0)
    return loss, np.concatenate([grad_w.ravel(), grad_b])


class LogisticRegression:
    """Multinomial logistic regression with an L2 penalty (see the module docstring)."""

    def __init__(self, l2: float = DEFAULT_L2, max_iter: int = 1000):
        self.l2 = l2
        self.max_iter = max_iter

    def fit(self, features, label_index, num_classes: int) -> LogisticRegression:
        features = np.asarray(features, dtype=float)
        label_index = np.asarray(label_index, dtype=int)
        self.num_classes = num_classes
        self.standardise = Standardiser(features)
        x = self.standardise(features)
        onehot = np.eye(num_classes)[label_index]
        start = np.zeros(x.shape[1] * num_classes + num_classes)
        result = minimize(
            _objective, start, args=(x, onehot, self.l2), jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter}
        )
        if not result.success:
            log.info("logistic regression: L-BFGS stopped after %d iterations: %s", result.nit, result.message)
        self.weights = result.x[: x.shape[1] * num_classes].reshape(x.shape[1], num_classes)
        self.bias = result.x[x.shape[1] * num_classes :]
        return self

    def decision_function(self, features) -> np.ndarray:
        return self.standardise(features) @ self.weights + self.bias

    def predict_proba(self, features) -> np.ndarray:
        logits = self.decision_function(features)
        return np.exp(logits - logsumexp(logits, axis=1, keepdims=True))

    def predict(self, features) -> np.ndarray:
        return self.decision_function(features).argmax(axis=1)


# ---- per fold and per experiment ---------------------------------------------------------------


def fold_baselines(
    clips: pd.DataFrame, split: Mapping, labels: Sequence[str], columns: Sequence[str], l2: float = DEFAULT_L2
) -> dict:
    """Both baselines' test metrics for one fold. ``clips``: the tabular rows (clip_id, label and the
    feature ``columns``); ``split``: split.json's clip id lists."""
    labels = list(labels)
    index = {name: i for i, name in enumerate(labels)}
    clips = clips[clips["label"].isin(labels)].drop_duplicates("clip_id").set_index("clip_id")
    fit_ids = [c for c in [*split["train"], *split["validation"]] if c in clips.index]
    test_ids = [c for c in split["test"] if c in clips.index]
    missing = len(split["train"]) + len(split["validation"]) + len(split["test"]) - len(fit_ids) - len(test_ids)
    if missing:
        log.warning("%d clips of the split are not in the tabular shards (or outside the labels); left out", missing)
    if not fit_ids or not test_ids:
        raise ValueError("a fold needs fitting and test clips for the baselines")
    fit_y = clips.loc[fit_ids, "label"].map(index).to_numpy(int)
    test_y = clips.loc[test_ids, "label"].map(index).to_numpy(int)
    columns = [c for c in columns if c in clips.columns]

    majority = majority_class(fit_y, len(labels))
    model = LogisticRegression(l2).fit(clips.loc[fit_ids, columns].to_numpy(float), fit_y, len(labels))
    predicted = model.predict(clips.loc[test_ids, columns].to_numpy(float))
    return {
        "majority": {
            **classification_metrics(test_y, np.full_like(test_y, majority), len(labels), labels),
            "class": labels[majority],
        },
        "logistic_regression": {
            **classification_metrics(test_y, predicted, len(labels), labels),
            "features": int(model.standardise.keep.sum()),
        },
        "clips": {"fit": len(fit_ids), "test": len(test_ids)},
    }


def experiment_baselines(
    tabular_paths, splits: Mapping[int, str | Path], labels: Sequence[str], l2: float = DEFAULT_L2
) -> dict:
    """Both baselines on every test fold ({fold: split.json path}), summarised over folds."""
    columns = feature_columns()
    clips = read_tabular_shards(tabular_paths)
    clips = clips[[c for c in ("clip_id", "label", *columns) if c in clips.columns]]
    per_fold = {}
    for fold in sorted(splits):
        split = read_json(splits[fold])
        per_fold[fold] = fold_baselines(clips, split, labels, columns, l2)
        log.info(
            "fold %s: majority UAR %.3f, logistic regression UAR %.3f (%d features)",
            fold, per_fold[fold]["majority"]["uar"], per_fold[fold]["logistic_regression"]["uar"],
            per_fold[fold]["logistic_regression"]["features"],
        )
    return {
        "labels": list(labels),
        "folds": sorted(per_fold),
        "l2": l2,
        "clips": {fold: result["clips"] for fold, result in per_fold.items()},
        "majority_class": {fold: result["majority"]["class"] for fold, result in per_fold.items()},
        **{name: summarise_folds({fold: result[name] for fold, result in per_fold.items()}) for name in BASELINES},
    }


def baselines_table(baselines: dict) -> pd.DataFrame:
    """baselines.csv: one row per baseline and metric (uar, war, macro_f1): mean, std, per fold."""
    folds = baselines["folds"]
    rows = []
    for name in BASELINES:
        for metric in CLASS_SCORES:
            values = baselines[name]["metrics"][metric]
            per_fold = {int(k): v for k, v in values["per_fold"].items()}
            rows.append(
                {
                    "baseline": name,
                    "metric": metric,
                    "mean": values["mean"],
                    "std": values["std"],
                    **{f"fold_{fold}": per_fold.get(fold) for fold in folds},
                }
            )
    return pd.DataFrame(rows)


def evaluate_baselines(tabular_paths, folders: Mapping[int, str | Path], json_path, csv_path, l2: float = DEFAULT_L2) -> dict:
    """The rule's work: baselines on the folds of an experiment ({fold: folder with split.json and
    settings.json}), written to baselines.json and baselines.csv."""
    labels = fold_labels(folders[min(folders)])
    splits = {fold: Path(folder) / SPLIT_FILE for fold, folder in folders.items()}
    baselines = experiment_baselines(tabular_paths, splits, labels, l2)
    write_json(baselines, json_path)
    write_csv(baselines_table(baselines), csv_path)
    return baselines
