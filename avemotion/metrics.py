"""Classification and regression metrics computed from a predictions table.

A predictions table has one row per clip with the columns training writes to predictions.parquet:
clip_id, dataset, speaker, fold, label, label_index, predicted_index, predicted_label,
prob_<name> per class, valence, arousal, valence_pred, arousal_pred.

Metrics:
- war: weighted average recall, i.e. accuracy.
- uar: unweighted average recall, the mean per-class recall over classes present in the true labels.
- macro_f1: mean F1 over classes present in the true or the predicted labels (F1 = 0 where
  precision + recall = 0).
- ccc: Lin's concordance correlation 2 cov / (var_t + var_p + (mean_t - mean_p)^2), population moments;
  1 when both sides are the same constant, 0 when one side is constant and the other is not.
- pearson: nan when either side is constant (up to rounding, see CONSTANT_TOLERANCE).
- rmse.

Undefined values (the recall of a class with no true clips, a Pearson correlation with a constant side)
are nan, never a made-up number. Only numpy is needed.

A core module, below training and evaluation: training scores its folds and fits late fusion's
weights with these metrics, and evaluation recomputes them over folds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

# A side whose spread is at most this fraction of its largest magnitude is constant. The mean of equal
# floats is itself rounded (np.full(3, 0.4) has np.var ~3e-33, not 0), so an exact test lets rounding
# noise through as a correlation; float64 rounding is ~1e-16 relative, far below this, and any real
# spread of valence/arousal predictions far above it.
CONSTANT_TOLERANCE = 1e-12
# classification_metrics' single-figure scores, which every table of per-fold figures reports
CLASS_SCORES = ("uar", "war", "macro_f1")


def _paired(truth, predicted, dtype, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as 1-D arrays of one length and at least one clip, or a ValueError saying which."""
    truth, predicted = np.asarray(truth, dtype=dtype), np.asarray(predicted, dtype=dtype)
    if truth.shape != predicted.shape or truth.ndim != 1:
        raise ValueError(f"{what} must be 1-D arrays of the same length")
    if truth.size == 0:
        raise ValueError("no clips to evaluate")
    return truth, predicted


def confusion_matrix(true_idx, pred_idx, num_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    for name, idx in (("true", true_idx), ("predicted", pred_idx)):
        # A float column (label_index beside a missing label reads back as float) holds whole numbers;
        # reading 1.7 or nan as an int would count it as another class without a word.
        values = np.asarray(idx)
        if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
            raise ValueError(f"{name} class indices must be whole numbers, got {values[values != np.round(values)][:3].tolist()}")
    true_idx, pred_idx = _paired(true_idx, pred_idx, int, "true and predicted indices")
    for name, idx in (("true", true_idx), ("predicted", pred_idx)):
        if idx.min() < 0 or idx.max() >= num_classes:
            raise ValueError(f"{name} class index outside 0..{num_classes - 1}")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true_idx, pred_idx), 1)
    return matrix


def classification_metrics(
    true_idx, pred_idx, num_classes: int, class_names: Sequence[str] | None = None
) -> dict:
    """WAR, UAR, macro-F1, confusion matrix, per-class recall and support.

    Per-class dicts are keyed by ``class_names`` (default: the class index as a string) in index
    order; the recall of a class with no true clips is nan.
    """
    names = [str(i) for i in range(num_classes)] if class_names is None else list(class_names)
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    matrix = confusion_matrix(true_idx, pred_idx, num_classes)
    hits = np.diag(matrix).astype(float)
    true_counts = matrix.sum(axis=1)
    pred_counts = matrix.sum(axis=0)

    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(true_counts > 0, hits / true_counts, np.nan)
        precision = np.where(pred_counts > 0, hits / pred_counts, 0.0)
        recall_or_zero = np.nan_to_num(recall, nan=0.0)
        f1 = np.where(
            precision + recall_or_zero > 0,
            2 * precision * recall_or_zero / (precision + recall_or_zero),
            0.0,
        )
    in_truth = true_counts > 0
    in_truth_or_predictions = in_truth | (pred_counts > 0)
    return {
        "n_clips": int(matrix.sum()),
        "war": float(hits.sum() / matrix.sum()),
        "uar": float(recall[in_truth].mean()),
        "macro_f1": float(f1[in_truth_or_predictions].mean()),
        "recall": {name: float(r) for name, r in zip(names, recall)},
        "support": {name: int(n) for name, n in zip(names, true_counts)},
        "confusion_matrix": matrix.tolist(),
    }


def regression_metrics(target, pred) -> dict:
    """CCC, Pearson correlation and RMSE of one continuous target."""
    target, pred = _paired(target, pred, float, "target and prediction")
    mean_t, dev_t = _deviations(target)
    mean_p, dev_p = _deviations(pred)
    var_t, var_p = (dev_t**2).mean(), (dev_p**2).mean()  # ddof=0
    cov = (dev_t * dev_p).mean()  # exactly 0 when a side is constant
    if var_t == 0 and var_p == 0:
        # Two constants agree perfectly or not at all; equal up to the same rounding as a constant side.
        scale = max(np.abs(target).max(), np.abs(pred).max())
        ccc = 1.0 if abs(mean_t - mean_p) <= CONSTANT_TOLERANCE * scale else 0.0
    else:
        ccc = 2 * cov / (var_t + var_p + (mean_t - mean_p) ** 2)
    if var_t == 0 or var_p == 0:
        pearson = float("nan")
    else:
        # Rounding can push |r| a hair past 1 for (anti)parallel sides.
        pearson = np.clip(cov / (np.sqrt(var_t) * np.sqrt(var_p)), -1.0, 1.0)
    rmse = np.sqrt(((target - pred) ** 2).mean())
    return {"ccc": float(ccc), "pearson": float(pearson), "rmse": float(rmse)}


def _deviations(values: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean and the deviations from it; the deviations are all 0 when the values are constant
    up to CONSTANT_TOLERANCE, so that rounding noise adds nothing to a variance or covariance."""
    mean = values.mean()
    deviations = values - mean
    if np.sqrt((deviations**2).mean()) <= CONSTANT_TOLERANCE * np.abs(values).max():
        deviations = np.zeros_like(values)
    return mean, deviations


def evaluate_predictions(predictions: pd.DataFrame, label_names: Sequence[str]) -> dict:
    """Classification metrics for the whole table plus ``valence`` and ``arousal`` regression entries.

    ``label_names`` is the experiment's label set in index order; it names the per-class entries and
    orders the confusion matrix. A row whose ``label`` disagrees with ``label_names[label_index]``
    raises ValueError. Valence/arousal are left out when the table has no ``*_pred`` column.
    """
    label_names = list(label_names)
    label_index = predictions["label_index"].to_numpy(dtype=int)
    if "label" in predictions:
        expected = np.asarray(label_names, dtype=object)[np.clip(label_index, 0, len(label_names) - 1)]
        if not (predictions["label"].to_numpy(dtype=object) == expected).all():
            raise ValueError("label and label_index disagree with the given label_names")
    metrics = classification_metrics(
        label_index, predictions["predicted_index"].to_numpy(dtype=int), len(label_names), label_names
    )
    for dimension in ("valence", "arousal"):
        if f"{dimension}_pred" in predictions:
            metrics[dimension] = regression_metrics(predictions[dimension], predictions[f"{dimension}_pred"])
    return metrics


def _scalar_leaves(metrics: Mapping, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested metrics dict with dotted names ("valence.ccc", "recall.anger")."""
    leaves = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            leaves.update(_scalar_leaves(value, f"{name}."))
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            leaves[name] = float(value)
    return leaves


def summarise_folds(per_fold: Mapping[int, Mapping]) -> dict:
    """Mean and spread of each scalar metric over folds; confusion matrices summed.

    Returns ``{"folds": [...], "metrics": {name: {"mean", "std", "per_fold": {fold: value}}},
    "confusion_matrix": summed counts}``. Nested metrics get dotted names ("valence.ccc",
    "recall.anger"). ``std`` is the sample standard deviation (ddof=1) over folds, the usual spread
    reported for k-fold results; with a single fold it is nan. Folds where a metric is nan (a class
    absent from that fold) are left out of its mean and std but kept in ``per_fold``.
    """
    if not per_fold:
        raise ValueError("no folds to summarise")
    folds = sorted(per_fold)
    leaves = {fold: _scalar_leaves(per_fold[fold]) for fold in folds}
    names = list(dict.fromkeys(name for fold in folds for name in leaves[fold]))
    summary = {}
    for name in names:
        values = {fold: leaves[fold].get(name, float("nan")) for fold in folds}
        defined = np.array([v for v in values.values() if not np.isnan(v)])
        summary[name] = {
            "mean": float(defined.mean()) if defined.size else float("nan"),
            "std": float(defined.std(ddof=1)) if defined.size > 1 else float("nan"),
            "per_fold": values,
        }
    result = {"folds": folds, "metrics": summary}
    matrices = [
        np.asarray(per_fold[fold]["confusion_matrix"]) for fold in folds if "confusion_matrix" in per_fold[fold]
    ]
    if matrices:
        result["confusion_matrix"] = np.sum(matrices, axis=0).tolist()
    return result
