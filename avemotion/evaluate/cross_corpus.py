"""Cross-corpus tables, from the heldout_/cross_ folders beside an experiment's folds (their paths
and when they apply: avemotion.evaluate.targets).

- cross-corpus matrix: one row per single-dataset experiment (its train dataset), one column per test
  dataset, UAR. The diagonal is the experiment's within-corpus UAR (mean over its test folds, from
  its summary.json); off-diagonal cells are recomputed from ``cross_{dataset}/predictions.parquet``
  (the final model on another corpus, on the labels both share).
- leave-one-corpus-out: one row per mixture, one column per held-out dataset, UAR recomputed from
  ``heldout_{dataset}/predictions.parquet``.
Off-diagonal cells are measured on the common labels only, so their chance level differs from the
diagonal's; the long tables (cross_corpus.json) keep the number of classes and clips of each cell, and
how many clips of its classes a preprocessing stage quarantined (in no shard, so not scored).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.evaluate import plots
from avemotion.evaluate.summary import unscored_clips
from avemotion.io import read_json, write_csv, write_json
from avemotion.layout import METRICS_FILE
from avemotion.metrics import CLASS_SCORES, evaluate_predictions


# ---- metrics of a held-out folder ----------------------------------------------------------------


def prediction_labels(predictions: pd.DataFrame, metrics: dict | None = None) -> list[str]:
    """The label set a predictions table indexes: metrics.json's ``labels`` where written, else the
    ``prob_<label>`` columns in their order."""
    if metrics and metrics.get("labels"):
        return list(metrics["labels"])
    labels = [column[len("prob_") :] for column in predictions.columns if column.startswith("prob_")]
    if not labels:
        raise ValueError(f"predictions have no prob_<label> columns and {METRICS_FILE} names no labels")
    return labels


def folder_metrics(predictions_path, metrics_path) -> dict:
    """Metrics recomputed from a folder's predictions (the label set from its metrics.json)."""
    predictions = pd.read_parquet(predictions_path)
    labels = prediction_labels(predictions, read_json(metrics_path))
    metrics = evaluate_predictions(predictions, labels)
    return {**metrics, "labels": labels}


def quarantined_clips(manifests: dict, dataset: str, predictions_path, labels: list[str]) -> int | None:
    """The clips of ``dataset``'s manifest with one of ``labels`` that a run on every such clip did not
    score: a preprocessing stage quarantined them, so no shard holds them. None without the manifest."""
    path = manifests.get(dataset)
    if path is None or not Path(path).is_file():
        return None
    listed = pd.read_parquet(path, columns=["clip_id", "label"])
    scored = set(pd.read_parquet(predictions_path, columns=["clip_id"])["clip_id"])
    return int((listed["label"].isin(labels) & ~listed["clip_id"].isin(scored)).sum())


def cross_corpus_table(diagonal: list[dict], cross: list[dict], datasets: list[str], manifests: dict | None = None) -> pd.DataFrame:
    """Long table, one row per (experiment, test dataset).

    ``diagonal``: {experiment, dataset, summary} per single-dataset experiment (summary.json path).
    ``cross``: {experiment, train_dataset, test_dataset, predictions, metrics} per cross_ folder.
    ``manifests``: {dataset: manifest path}, to count each cell's quarantined clips of its classes.
    """
    manifests = manifests or {}
    rows = []
    for entry in diagonal:
        summary = read_json(entry["summary"])
        metrics = summary["overall"]["metrics"]
        rows.append(
            {
                "experiment": entry["experiment"],
                "train_dataset": entry["dataset"],
                "test_dataset": entry["dataset"],
                "kind": "within (fold mean)",
                "uar": _mean(metrics, "uar"),
                "uar_std": _std(metrics, "uar"),
                "war": _mean(metrics, "war"),
                "macro_f1": _mean(metrics, "macro_f1"),
                "n_clips": int(sum(summary["clips"].values())),
                "n_classes": len(summary["labels"]),
                "quarantined_clips": unscored_clips(summary),
            }
        )
    for entry in cross:
        metrics = folder_metrics(entry["predictions"], entry["metrics"])
        rows.append(
            {
                "experiment": entry["experiment"],
                "train_dataset": entry["train_dataset"],
                "test_dataset": entry["test_dataset"],
                "kind": "cross (final model)",
                "uar": metrics["uar"],
                "uar_std": np.nan,
                "war": metrics["war"],
                "macro_f1": metrics["macro_f1"],
                "n_clips": metrics["n_clips"],
                "n_classes": len(metrics["labels"]),
                "quarantined_clips": quarantined_clips(manifests, entry["test_dataset"], entry["predictions"], metrics["labels"]),
            }
        )
    table = _with_counts(rows, LONG_COLUMNS, ["quarantined_clips"])
    order = {dataset: index for index, dataset in enumerate(datasets)}
    rank = lambda column: table[column].map(lambda dataset: order.get(dataset, len(order)))
    table = table.assign(_train=rank("train_dataset"), _test=rank("test_dataset"))
    table = table.sort_values(["_train", "train_dataset", "experiment", "_test", "test_dataset"], kind="stable")
    return table.drop(columns=["_train", "_test"]).reset_index(drop=True)


LONG_COLUMNS = ["experiment", "train_dataset", "test_dataset", "kind", "uar", "uar_std", "war", "macro_f1", "n_clips", "n_classes", "quarantined_clips"]
LOCO_COLUMNS = ["experiment", "trained_on", "heldout_dataset", *CLASS_SCORES, "n_clips", "n_classes", "unscored_clips", "quarantined_clips"]


def cross_corpus_matrix(long: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """UAR with rows = (train dataset, experiment), columns = test datasets (NaN: not evaluated)."""
    matrix = pd.DataFrame(
        [
            {"train_dataset": train, "experiment": experiment, **dict(zip(group["test_dataset"], group["uar"]))}
            for (train, experiment), group in long.groupby(["train_dataset", "experiment"], sort=False)
        ],
        columns=["train_dataset", "experiment", *datasets],
    )
    return matrix


def leave_one_corpus_out_table(heldout: list[dict], manifests: dict | None = None) -> pd.DataFrame:
    """Long table: {experiment, datasets, heldout_dataset, predictions, metrics} per heldout_ folder
    (``manifests``: as for cross_corpus_table)."""
    manifests = manifests or {}
    rows = []
    for entry in heldout:
        metrics = folder_metrics(entry["predictions"], entry["metrics"])
        rows.append(
            {
                "experiment": entry["experiment"],
                "trained_on": "+".join(d for d in entry["datasets"] if d != entry["heldout_dataset"]),
                "heldout_dataset": entry["heldout_dataset"],
                "uar": metrics["uar"],
                "war": metrics["war"],
                "macro_f1": metrics["macro_f1"],
                "n_clips": metrics["n_clips"],
                "n_classes": len(metrics["labels"]),
                # the held-out corpus' clips outside the mixture's labels or of classes no training
                # corpus holds; unknown (None) for a model trained before it was recorded
                "unscored_clips": read_json(entry["metrics"]).get("unscored_test_clips"),
                "quarantined_clips": quarantined_clips(manifests, entry["heldout_dataset"], entry["predictions"], metrics["labels"]),
            }
        )
    return _with_counts(rows, LOCO_COLUMNS, ["unscored_clips", "quarantined_clips"])


def _with_counts(rows: list[dict], columns: list[str], counts: list[str]) -> pd.DataFrame:
    """The rows as a table whose ``counts`` stay whole numbers or None (unknown): a column of both
    would turn into floats and NaN, which the page would show as 3.000."""
    table = pd.DataFrame(rows, columns=columns)
    for column in counts:
        table[column] = pd.Series([row[column] for row in rows], index=table.index, dtype=object)
    return table


def leave_one_corpus_out_matrix(long: pd.DataFrame, datasets: list[str]) -> pd.DataFrame:
    """UAR with rows = mixture experiments, columns = the held-out dataset."""
    return pd.DataFrame(
        [
            {"experiment": experiment, **dict(zip(group["heldout_dataset"], group["uar"]))}
            for experiment, group in long.groupby("experiment", sort=False)
        ],
        columns=["experiment", *datasets],
    )


def _mean(metrics: dict, name: str) -> float:
    value = metrics.get(name, {}).get("mean")
    return float("nan") if value is None else float(value)


def _std(metrics: dict, name: str) -> float:
    value = metrics.get(name, {}).get("std")
    return float("nan") if value is None else float(value)


# ---- the rule's work ----------------------------------------------------------------------------


def write_cross_corpus(diagonal, cross, heldout, datasets, outputs, manifests: dict | None = None) -> dict:
    """Both tables as wide CSVs and heatmaps, and their long forms in one JSON (``outputs`` keys:
    matrix, matrix_png, loco, loco_png, json; ``manifests``: {dataset: manifest path})."""
    long = cross_corpus_table(diagonal, cross, datasets, manifests)
    matrix = cross_corpus_matrix(long, datasets)
    write_csv(matrix, outputs["matrix"])
    if matrix.empty:
        figure = plots.message_figure(
            "No cross-corpus results: they need a single-dataset experiment\n(and, off the diagonal, final: true and another enabled dataset)."
        )
    else:
        shown = matrix.set_index(matrix["train_dataset"] + " (" + matrix["experiment"] + ")")[datasets]
        figure = plots.heatmap_figure(
            shown, "Cross-corpus UAR\n(diagonal: within-corpus mean over test folds)", "test dataset", "train dataset (experiment)"
        )
    plots.save_png(figure, outputs["matrix_png"])

    loco = leave_one_corpus_out_table(heldout, manifests)
    loco_matrix = leave_one_corpus_out_matrix(loco, datasets)
    write_csv(loco_matrix, outputs["loco"])
    if loco_matrix.empty:
        figure = plots.message_figure("No leave-one-corpus-out results: they need an experiment mixing datasets.")
    else:
        figure = plots.heatmap_figure(
            loco_matrix.set_index("experiment")[datasets], "Leave-one-corpus-out UAR", "held-out dataset", "mixture"
        )
    plots.save_png(figure, outputs["loco_png"])
    result = {
        "datasets": list(datasets),
        "cross_corpus": long.to_dict("records"),
        "leave_one_corpus_out": loco.to_dict("records"),
    }
    write_json(result, outputs["json"])
    return result
