"""One experiment's evaluation: metrics recomputed from every test fold's predictions, their mean and
spread over folds, and the experiment's plots.

Reads each ``fold_{k}/`` folder training wrote (predictions.parquet, settings.json, history.csv,
metrics.json) and writes:

- summary.json: ``experiment, fusion, datasets, labels, folds, clips`` (test clips per fold), then
  ``overall`` (avemotion.metrics.summarise_folds over the folds: mean, std, per-fold value
  of every scalar metric, confusion matrix summed over folds), ``branches`` (the same per branch of
  late and hybrid models, from their ``{branch}_predicted_label`` and, where present,
  ``{branch}_valence_pred``/``{branch}_arousal_pred`` columns) and, for mixtures, ``per_dataset``
  (the same per dataset of the test clips), and with a final model ``final_validation`` (the same
  for the final model's validation clips), and given the manifests ``protocol`` (the same figures
  over every clip the protocol lists in the test folds, those a stage quarantined counted as errors);
  ``chosen_epochs``: per fold the epoch its model is (lowest validation loss) of how many ran.
  NaN is written as null.
- summary.csv: one row per (scope, metric): scope ``all``, ``branch:<name>``, ``dataset:<name>`` or
  ``protocol``, then mean, std and one column per fold.
- plots/confusion_matrix.png (summed over folds, row-normalised, with counts),
  plots/training_curves.png (loss and val_loss per fold), plots/va_scatter.png (true against
  predicted valence and arousal, all test clips).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.evaluate import plots
from avemotion.evaluate.history import chosen_epoch, read_history
from avemotion.io import read_json, write_csv, write_json
from avemotion.layout import HISTORY_FILE, METRICS_FILE, PREDICTIONS_FILE, SETTINGS_FILE
from avemotion.metrics import CLASS_SCORES, evaluate_predictions, summarise_folds
from avemotion.preprocess.plan import read_manifest

log = logging.getLogger(__name__)

BRANCH_COLUMN = re.compile(r"^(?P<branch>[A-Za-z0-9]+)_predicted_label$")


# ---- reading -----------------------------------------------------------------------------------


def fold_labels(folder) -> list[str]:
    """The label set a fold was trained on: settings.json, else metrics.json, else the prob_ columns."""
    folder = Path(folder)
    for name in (SETTINGS_FILE, METRICS_FILE):
        if (folder / name).is_file():
            labels = read_json(folder / name).get("labels")
            if labels:
                return list(labels)
    columns = pd.read_parquet(folder / PREDICTIONS_FILE).columns
    return [column[len("prob_") :] for column in columns if column.startswith("prob_")]


# ---- metrics -----------------------------------------------------------------------------------


def branch_names(predictions: pd.DataFrame) -> list[str]:
    """Branches with their own predictions (``{branch}_predicted_label`` columns), in column order."""
    return [m["branch"] for m in map(BRANCH_COLUMN.match, predictions.columns) if m and m["branch"] != "predicted"]


def branch_predictions(predictions: pd.DataFrame, branch: str, labels) -> pd.DataFrame:
    """A predictions table in the usual columns for one branch's own outputs."""
    index = {name: i for i, name in enumerate(labels)}
    predicted = predictions[f"{branch}_predicted_label"].map(index)
    if predicted.isna().any():
        unknown = sorted(set(predictions.loc[predicted.isna(), f"{branch}_predicted_label"].astype(str)))
        raise ValueError(f"{branch}_predicted_label holds labels outside the experiment's: {unknown}")
    table = predictions[["clip_id", "label", "label_index"]].copy()
    table["predicted_index"] = predicted.astype(int).to_numpy()
    for dimension in ("valence", "arousal"):
        if f"{branch}_{dimension}_pred" in predictions:
            table[dimension] = predictions[dimension].to_numpy()
            table[f"{dimension}_pred"] = predictions[f"{branch}_{dimension}_pred"].to_numpy()
    return table


def protocol_scores(predictions: pd.DataFrame, manifest: pd.DataFrame, fold: int, labels) -> dict:
    """A fold's UAR and WAR over every clip its protocol lists in the test fold (the manifests' clips
    of the fold with one of the experiment's labels), each clip a stage quarantined (no face, not
    decodable) counted as an error: published figures are measured on every listed clip, and scores
    over the clips that survived preprocessing alone would leave the hardest ones out."""
    listed = manifest[(manifest["fold"] == fold) & manifest["label"].isin(labels)]
    scored = predictions[predictions["clip_id"].isin(listed["clip_id"])]
    hits = scored.loc[scored["label_index"] == scored["predicted_index"], "label"].value_counts()
    per_class = listed["label"].value_counts()
    recalls = [hits.get(label, 0) / per_class[label] for label in labels if per_class.get(label, 0)]
    return {
        "listed_clips": len(listed),
        "scored_clips": len(scored),
        "uar": float(np.mean(recalls)) if recalls else float("nan"),
        "war": float(hits.sum() / len(listed)) if len(listed) else float("nan"),
    }


def summarise_experiment(folders: Mapping[int, str | Path], name: str | None = None, manifests=()) -> dict:
    """The summary.json content of one experiment from its test-fold folders ({fold: folder}) and,
    where given, the manifests of its corpora (for the ``protocol`` figures)."""
    if not folders:
        raise ValueError("an experiment needs at least one test fold to evaluate")
    folds = sorted(folders)
    labels_by_fold = {fold: fold_labels(folders[fold]) for fold in folds}
    labels = labels_by_fold[folds[0]]
    if any(other != labels for other in labels_by_fold.values()):
        raise ValueError(f"folds disagree on the label set: {labels_by_fold}")
    settings_path = Path(folders[folds[0]]) / SETTINGS_FILE
    settings = read_json(settings_path) if settings_path.is_file() else {}

    predictions = {fold: pd.read_parquet(Path(folders[fold]) / PREDICTIONS_FILE) for fold in folds}
    per_fold = {fold: evaluate_predictions(predictions[fold], labels) for fold in folds}
    _check_recorded(folders, per_fold)

    branches = {}
    for branch in dict.fromkeys(b for fold in folds for b in branch_names(predictions[fold])):
        branch_folds = {
            fold: evaluate_predictions(branch_predictions(predictions[fold], branch, labels), labels)
            for fold in folds
            if f"{branch}_predicted_label" in predictions[fold]
        }
        branches[branch] = summarise_folds(branch_folds)

    by_dataset = {}
    datasets = sorted({d for fold in folds for d in predictions[fold].get("dataset", pd.Series(dtype=str)).unique()})
    if len(datasets) > 1:
        for dataset in datasets:
            dataset_folds = {
                fold: evaluate_predictions(table[table["dataset"] == dataset], labels)
                for fold, table in predictions.items()
                if (table["dataset"] == dataset).any()
            }
            by_dataset[dataset] = summarise_folds(dataset_folds)

    summary = {
        "experiment": name or settings.get("name"),
        "fusion": settings.get("fusion"),
        "datasets": settings.get("datasets", datasets),
        "labels": labels,
        "folds": folds,
        "clips": {fold: int(len(predictions[fold])) for fold in folds},
        "overall": summarise_folds(per_fold),
        "branches": branches,
        "per_dataset": by_dataset,
    }
    if manifests:
        listed = pd.concat([read_manifest(path) for path in manifests], ignore_index=True)
        summary["protocol"] = summarise_folds({fold: protocol_scores(predictions[fold], listed, fold, labels) for fold in folds})
    return summary


def _check_recorded(folders, per_fold) -> None:
    """Training's own metrics.json should agree with the recomputation; say so in the log if not."""
    for fold, metrics in per_fold.items():
        path = Path(folders[fold]) / METRICS_FILE
        if not path.is_file():
            continue
        recorded = read_json(path)
        for key in CLASS_SCORES:
            value = recorded.get(key)
            if value is not None and not math.isclose(value, metrics[key], abs_tol=1e-6):
                log.warning("fold %s: %s has %s %.6f, recomputed %.6f", fold, path, key, value, metrics[key])


def unscored_clips(summary: Mapping) -> int | None:
    """The clips the test folds list that no fold scored (a stage quarantined them), from summary.json's
    protocol figures; None for a summary without them (no manifests given)."""
    protocol = summary.get("protocol")
    if not protocol:
        return None
    counts = protocol["metrics"]
    return int(sum(counts["listed_clips"]["per_fold"].values()) - sum(counts["scored_clips"]["per_fold"].values()))


def summary_table(summary: dict) -> pd.DataFrame:
    """summary.csv: one row per scope and metric, mean, std and the value of every fold."""
    folds = summary["folds"]
    scopes = [("all", summary["overall"])]
    scopes += [(f"branch:{b}", s) for b, s in summary.get("branches", {}).items()]
    scopes += [(f"dataset:{d}", s) for d, s in summary.get("per_dataset", {}).items()]
    scopes += [("protocol", summary["protocol"])] if "protocol" in summary else []
    rows = []
    for scope, summarised in scopes:
        for metric, values in summarised["metrics"].items():
            per_fold = {int(k): v for k, v in values["per_fold"].items()}
            rows.append(
                {
                    "scope": scope,
                    "metric": metric,
                    "mean": values["mean"],
                    "std": values["std"],
                    **{f"fold_{fold}": per_fold.get(fold, np.nan) for fold in folds},
                }
            )
    return pd.DataFrame(rows, columns=["scope", "metric", "mean", "std", *[f"fold_{fold}" for fold in folds]])


# ---- the rule's work ----------------------------------------------------------------------------


def final_validation(folder, labels) -> dict:
    """The final model (trained on every speaker but its validation ones) on its validation clips,
    in summarise_folds' form with the single run as fold "final". Those clips chose its epoch, so the
    figures lean optimistic; they show the model that `avemotion predict` uses did learn."""
    predictions = pd.read_parquet(Path(folder) / PREDICTIONS_FILE)
    return {**summarise_folds({"final": evaluate_predictions(predictions, labels)}), "clips": int(len(predictions))}


def evaluate_experiment(
    folders: Mapping[int, str | Path], name: str, outputs: Mapping[str, str | Path], final: str | Path | None = None, manifests=()
) -> dict:
    """Write summary.json, summary.csv and the three plots (``outputs`` keys: summary, table,
    confusion, curves, va). ``final``: the final model's folder, whose validation predictions are
    summarised under "final_validation"; ``manifests``: its corpora's (the protocol figures)."""
    summary = summarise_experiment(folders, name, manifests)
    histories = {fold: read_history(Path(folders[fold]) / HISTORY_FILE) for fold in summary["folds"]}
    summary["chosen_epochs"] = {str(fold): chosen_epoch(history) for fold, history in histories.items()}
    if final is not None:
        summary["final_validation"] = final_validation(final, summary["labels"])
    write_json(summary, outputs["summary"])
    write_csv(summary_table(summary), outputs["table"])
    headline = summary["overall"]["metrics"]
    log.info(
        "%s: %d folds, UAR %s, WAR %s",
        name, len(summary["folds"]), format_mean_std(headline.get("uar")), format_mean_std(headline.get("war")),
    )

    matrix = summary["overall"]["confusion_matrix"]
    title = f"{name}: test folds {', '.join(map(str, summary['folds']))} (summed)"
    plots.save_png(plots.confusion_figure(matrix, summary["labels"], title), outputs["confusion"])
    plots.save_png(plots.training_curves_figure(histories, f"{name}: training curves"), outputs["curves"])
    predictions = pd.concat([pd.read_parquet(Path(folders[f]) / PREDICTIONS_FILE) for f in summary["folds"]])
    plots.save_png(plots.va_scatter_figure(predictions, f"{name}: test clips of every fold"), outputs["va"])
    return summary


def format_mean_std(values: Mapping | None, digits: int = 3) -> str:
    """"0.512 ± 0.034" from a summarise_folds entry; "n/a" where undefined; no ± part with one fold;
    "(2 of 3 folds)" after it where the metric is undefined in some folds (a class absent from one)."""
    if not values or values.get("mean") is None or _isnan(values["mean"]):
        return "n/a"
    text = f"{values['mean']:.{digits}f}"
    std = values.get("std")
    if std is not None and not _isnan(std):
        text += f" ± {std:.{digits}f}"
    per_fold = list((values.get("per_fold") or {}).values())
    defined = sum(value is not None and not _isnan(value) for value in per_fold)
    if defined < len(per_fold):
        text += f" ({defined} of {len(per_fold)} folds)"
    return text


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
