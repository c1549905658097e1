"""Evaluation and report: per-experiment summaries against hand-computed values, baselines, the
cross-corpus tables, previews, the report page, and the workflow's evaluate/report rules on a
working directory of fake experiment folders (no training)."""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image
from snakemake.utils import validate

from avemotion import layout
from avemotion.config import SCHEMA_PATH
from avemotion.evaluate import plots, previews, report, targets
from avemotion.evaluate.baselines import (
    LogisticRegression,
    Standardiser,
    _objective,
    evaluate_baselines,
    experiment_baselines,
    fold_baselines,
    majority_class,
)
from avemotion.evaluate.cross_corpus import (
    LOCO_COLUMNS,
    LONG_COLUMNS,
    cross_corpus_table,
    folder_metrics,
    leave_one_corpus_out_table,
    write_cross_corpus,
)
from avemotion.evaluate.previews import au_intensities, choose_clips, crop_transforms, frame_annotations
from avemotion.evaluate.history import chosen_epoch, read_history
from avemotion.evaluate.report import VA_NOTE, build_report, cross_corpus_section, dataset_statistics, datasets_section, quarantine_summary
from avemotion.evaluate.summary import (
    branch_predictions,
    evaluate_experiment,
    fold_labels,
    format_mean_std,
    protocol_scores,
    summarise_experiment,
    summary_table,
)
from conftest import demo_settings, run_snakemake, write_demo_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FEATURES = ["face_AU01_r_mean", "face_AU12_r_mean", "mfcc_0_mean", "energy_mean"]


# ---- fake artifacts --------------------------------------------------------------------------------


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def predictions_table(labels, true, predicted, dataset="crema_d", fold=1, **extra) -> pd.DataFrame:
    """A predictions.parquet table: true and predicted label names, one-hot probabilities."""
    index = {name: i for i, name in enumerate(labels)}
    table = pd.DataFrame(
        {
            "clip_id": [f"{dataset}_{fold}_{i:03d}" for i in range(len(true))],
            "dataset": dataset,
            "speaker": [f"s{fold}{i % 2}" for i in range(len(true))],
            "fold": fold,
            "label": true,
            "label_index": [index[t] for t in true],
            "predicted_index": [index[p] for p in predicted],
            "predicted_label": predicted,
        }
    )
    for name in labels:
        table[f"prob_{name}"] = [float(p == name) for p in predicted]
    for key, values in extra.items():
        table[key] = values
    return table


def write_fold(folder: Path, labels, predictions: pd.DataFrame, history=None, split=None, recorded=None, **settings):
    folder.mkdir(parents=True, exist_ok=True)
    predictions.to_parquet(folder / "predictions.parquet")
    write_json(folder / "settings.json", {"labels": list(labels), **settings})
    write_json(folder / "metrics.json", recorded or {"labels": list(labels)})
    write_json(folder / "split.json", split or {"train": [], "validation": [], "test": list(predictions["clip_id"])})
    (history if history is not None else pd.DataFrame({"epoch": [0, 1], "loss": [1.0, 0.5], "val_loss": [1.1, 0.7]})).to_csv(
        folder / "history.csv", index=False
    )
    (folder / "model.keras").write_bytes(b"")


LABELS2 = ["anger", "happiness"]


def two_folds(root: Path) -> dict[int, Path]:
    """Fold 1: true a a h h, predicted a h h h; fold 2: true a h h, predicted a a h (a = anger, h = happiness).
    Valence predicted exactly, arousal predicted constant; the video branch is always right."""
    folds = {}
    cases = {1: (["anger", "anger", "happiness", "happiness"], ["anger", "happiness", "happiness", "happiness"]),
             2: (["anger", "happiness", "happiness"], ["anger", "anger", "happiness"])}  # fmt: skip
    for fold, (true, predicted) in cases.items():
        valence = [-0.5 if t == "anger" else 0.8 for t in true]
        arousal = [0.7 if t == "anger" else 0.5 for t in true]
        table = predictions_table(
            LABELS2, true, predicted, fold=fold, valence=valence, arousal=arousal, valence_pred=valence,
            arousal_pred=[0.25] * len(true), video_predicted_label=true, video_valence_pred=valence,
            video_arousal_pred=arousal,
        )  # fmt: skip
        folds[fold] = root / f"fold_{fold}"
        write_fold(folds[fold], LABELS2, table, name="exp", fusion="late", datasets=["crema_d"])
    return folds


# ---- per-experiment summary --------------------------------------------------------------------------


def test_summary_metrics_equal_hand_computed_values(tmp_path):
    folds = two_folds(tmp_path / "exp")
    outputs = {key: tmp_path / "out" / name for key, name in
               {"summary": "summary.json", "table": "summary.csv", "confusion": "c.png", "curves": "t.png", "va": "v.png"}.items()}  # fmt: skip
    evaluate_experiment(folds, "exp", outputs)
    summary = json.loads(outputs["summary"].read_text())
    metrics = summary["overall"]["metrics"]
    # fold 1: recalls a 1/2, h 2/2 -> UAR .75, WAR 3/4; F1 a (p 1, r .5) 2/3, h (p 2/3, r 1) .8
    # fold 2: recalls a 1/1, h 1/2 -> UAR .75, WAR 2/3; F1 a (p .5, r 1) 2/3, h (p 1, r .5) 2/3
    assert metrics["uar"]["per_fold"] == pytest.approx({"1": 0.75, "2": 0.75})
    assert metrics["uar"]["mean"] == pytest.approx(0.75) and metrics["uar"]["std"] == pytest.approx(0.0)
    assert metrics["war"]["mean"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert metrics["war"]["std"] == pytest.approx(abs(3 / 4 - 2 / 3) / math.sqrt(2))  # sample std of two values
    assert metrics["macro_f1"]["per_fold"] == pytest.approx({"1": (2 / 3 + 0.8) / 2, "2": 2 / 3})
    assert summary["overall"]["confusion_matrix"] == [[2, 1], [1, 3]]  # [[1,1],[0,2]] + [[1,0],[1,1]]
    assert metrics["valence.ccc"]["mean"] == pytest.approx(1.0)
    assert metrics["arousal.ccc"]["mean"] == pytest.approx(0.0)  # a constant prediction has no covariance
    assert metrics["arousal.pearson"]["mean"] is None  # undefined (constant side): null, not a number
    assert summary["clips"] == {"1": 4, "2": 3} and summary["labels"] == LABELS2 and summary["fusion"] == "late"
    # the branch's own predictions, evaluated alike
    assert summary["branches"]["video"]["metrics"]["uar"]["mean"] == pytest.approx(1.0)
    assert summary["branches"]["video"]["metrics"]["arousal.ccc"]["mean"] == pytest.approx(1.0)

    table = pd.read_csv(outputs["table"])
    row = table[(table["scope"] == "all") & (table["metric"] == "war")].iloc[0]
    assert row["fold_1"] == pytest.approx(0.75) and row["fold_2"] == pytest.approx(2 / 3)
    assert set(table["scope"]) == {"all", "branch:video"}
    for key in ("confusion", "curves", "va"):
        assert outputs[key].read_bytes()[:8] == PNG_MAGIC
    assert format_mean_std(metrics["war"]) == f"{(3 / 4 + 2 / 3) / 2:.3f} ± {abs(3 / 4 - 2 / 3) / math.sqrt(2):.3f}"
    # a metric undefined in a fold (a class absent from it) says over how many folds it is the mean
    assert format_mean_std({"mean": 0.5, "std": float("nan"), "per_fold": {"1": 0.5, "2": float("nan")}}) == "0.500 (1 of 2 folds)"
    assert format_mean_std({"mean": 0.5, "std": 0.1, "per_fold": {"1": 0.4, "2": 0.6, "3": None}}) == "0.500 ± 0.100 (2 of 3 folds)"


def test_the_plots_show_the_summed_confusion_and_every_folds_clips_and_a_disagreeing_record_is_logged(tmp_path, monkeypatch, caplog):
    """The confusion plot gets the matrix summed over folds (rows true, columns predicted), the VA
    scatter the test clips of every fold, the training curves every fold's history; training's
    metrics.json that disagrees with the figures recomputed from its predictions is named in the log
    (the figures are the recomputed ones)."""
    folds = two_folds(tmp_path / "exp")
    true, predicted = ["anger", "happiness", "happiness"], ["anger", "anger", "anger"]  # fold 2 again: confusion [[1, 0], [2, 0]]
    valence = [-0.5, 0.8, 0.8]
    table = predictions_table(
        LABELS2, true, predicted, fold=2, valence=valence, arousal=[0.7, 0.5, 0.5], valence_pred=valence, arousal_pred=[0.25] * 3,
        video_predicted_label=true, video_valence_pred=valence, video_arousal_pred=[0.7, 0.5, 0.5],
    )  # fmt: skip
    write_fold(folds[2], LABELS2, table, recorded={"labels": LABELS2, "uar": 0.99, "war": 1 / 3}, name="exp", fusion="late", datasets=["crema_d"])
    drawn = {}

    def confusion(matrix, labels, title=""):
        drawn["confusion"] = (matrix, labels)
        return Figure()

    def scatter(predictions, title=""):
        drawn["va"] = predictions
        return Figure()

    def curves(histories, title=""):
        drawn["curves"] = histories
        return Figure()

    monkeypatch.setattr(plots, "confusion_figure", confusion)
    monkeypatch.setattr(plots, "va_scatter_figure", scatter)
    monkeypatch.setattr(plots, "training_curves_figure", curves)
    outputs = {key: tmp_path / "out" / name for key, name in
               {"summary": "summary.json", "table": "summary.csv", "confusion": "c.png", "curves": "t.png", "va": "v.png"}.items()}  # fmt: skip
    with caplog.at_level("WARNING"):
        evaluate_experiment(folds, "exp", outputs)
    assert drawn["confusion"] == ([[2, 1], [2, 2]], LABELS2)  # [[1, 1], [0, 2]] + [[1, 0], [2, 0]]: rows are the true classes
    assert len(drawn["va"]) == 7 and set(drawn["va"]["fold"]) == {1, 2}
    assert {fold: len(history) for fold, history in drawn["curves"].items()} == {1: 2, 2: 2}  # every fold's history.csv
    assert [record.getMessage() for record in caplog.records if "recomputed" in record.getMessage()] == [
        f"fold 2: {folds[2] / 'metrics.json'} has uar 0.990000, recomputed 0.500000"
    ]


def test_protocol_figures_count_the_clips_a_stage_quarantined_as_errors(tmp_path):
    """Published figures are measured on every clip a protocol lists: beside the scores of the clips
    that were preprocessed, the summary counts the quarantined clips of each test fold (with one of
    the experiment's labels) as errors, and the report shows that row and how many were left out."""
    folds = two_folds(tmp_path / "exp")
    listed = pd.concat([pd.read_parquet(folder / "predictions.parquet")[["clip_id", "fold", "label"]] for folder in folds.values()])
    quarantined = pd.DataFrame({"clip_id": ["q1", "q2", "x1"], "fold": [1, 1, 1], "label": ["anger", "happiness", "fear"]})
    pd.concat([listed, quarantined]).to_parquet(tmp_path / "manifest.parquet")
    outputs = {key: tmp_path / "out" / name for key, name in
               {"summary": "summary.json", "table": "summary.csv", "confusion": "c.png", "curves": "t.png", "va": "v.png"}.items()}  # fmt: skip
    evaluate_experiment(folds, "exp", outputs, manifests=[tmp_path / "manifest.parquet"])
    summary = json.loads(outputs["summary"].read_text())
    protocol = summary["protocol"]["metrics"]
    # fold 1: anger 1 of 3, happiness 2 of 3 (q1, q2 unscored; fear is not the experiment's) -> UAR 1/2, WAR 3/6;
    # fold 2: every clip scored, as the model's own figures: UAR 3/4, WAR 2/3
    assert protocol["uar"]["per_fold"] == pytest.approx({"1": 0.5, "2": 0.75})
    assert protocol["war"]["per_fold"] == pytest.approx({"1": 0.5, "2": 2 / 3})
    assert protocol["listed_clips"]["per_fold"] == {"1": 6, "2": 3} and protocol["scored_clips"]["per_fold"] == {"1": 4, "2": 3}
    assert summary["overall"]["metrics"]["uar"]["mean"] == pytest.approx(0.75)  # the scored clips' figures are unchanged
    assert "protocol" in set(pd.read_csv(outputs["table"])["scope"])
    page = report.experiment_section({"summary": outputs["summary"], "name": "exp"}, tmp_path)
    assert '(quarantined ones as errors)</td><td class="num">0.625 ± 0.177</td><td class="num">0.583 ± 0.118</td>' in page
    assert "The test folds list 9 clips of these classes; 2 of them a preprocessing stage quarantined" in page
    assert "2 classes (anger, happiness; chance UAR 0.500); test folds 1, 2" in page  # what the figures compare with
    assert "protocol" not in summarise_experiment(folds, "exp")  # without manifests (results made before): no such figures
    # with nothing quarantined, the page says every listed clip of its classes was scored (fear, listed, is no class of it)
    pd.concat([listed, quarantined[quarantined["label"] == "fear"]]).to_parquet(tmp_path / "manifest.parquet")
    evaluate_experiment(folds, "exp", outputs, manifests=[tmp_path / "manifest.parquet"])
    page = report.experiment_section({"summary": outputs["summary"], "name": "exp"}, tmp_path)
    assert "Every one of the 7 clips of these classes that the test folds list was scored." in page


def test_mixture_summary_breaks_down_per_dataset_and_folds_must_share_labels(tmp_path):
    table = pd.concat(
        [
            predictions_table(LABELS2, ["anger", "happiness"], ["anger", "happiness"], dataset="crema_d"),
            predictions_table(LABELS2, ["anger", "happiness"], ["happiness", "happiness"], dataset="enterface"),
        ]
    )
    write_fold(tmp_path / "fold_1", LABELS2, table)
    summary = summarise_experiment({1: tmp_path / "fold_1"}, "mix")
    assert summary["per_dataset"]["crema_d"]["metrics"]["uar"]["mean"] == pytest.approx(1.0)
    assert summary["per_dataset"]["enterface"]["metrics"]["uar"]["mean"] == pytest.approx(0.5)
    assert math.isnan(summary["overall"]["metrics"]["uar"]["std"])  # one fold: no spread
    rows = summary_table(summary)
    assert {"all", "dataset:crema_d", "dataset:enterface"} <= set(rows["scope"])  # summary.csv breaks the mixture down too
    uar = rows[rows["metric"] == "uar"].set_index("scope")["fold_1"]
    assert (uar["dataset:crema_d"], uar["dataset:enterface"]) == pytest.approx((1.0, 0.5))
    write_fold(tmp_path / "fold_2", ["anger", "sadness"], predictions_table(["anger", "sadness"], ["anger"], ["anger"]))
    with pytest.raises(ValueError, match="label set"):
        summarise_experiment({1: tmp_path / "fold_1", 2: tmp_path / "fold_2"}, "mix")


def test_a_folds_labels_come_from_its_settings_then_its_metrics_then_its_probability_columns(tmp_path):
    """settings.json names the labels a fold was trained on (a held-out run's metrics.json only the
    ones it scored); a folder without either still names them by its prob_ columns, in their order."""
    folder = tmp_path / "fold_1"
    write_fold(folder, LABELS2, predictions_table(LABELS2, ["anger"], ["anger"]), recorded={"labels": ["anger"]})
    assert fold_labels(folder) == LABELS2
    (folder / "settings.json").unlink()
    assert fold_labels(folder) == ["anger"]
    (folder / "metrics.json").unlink()
    predictions_table(["sadness", "anger"], ["anger"], ["anger"]).to_parquet(folder / "predictions.parquet")
    assert fold_labels(folder) == ["sadness", "anger"]


def test_an_empty_or_missing_history_gives_a_curves_plot_that_says_no_loss_was_recorded(tmp_path):
    """A run that logged no epoch leaves an empty history.csv: the evaluation still draws its plot."""
    (tmp_path / "history.csv").write_bytes(b"")
    for path in (tmp_path / "history.csv", tmp_path / "missing.csv"):
        assert read_history(path).empty
    axes = plots.training_curves_figure({1: read_history(tmp_path / "history.csv")}).axes[0]
    assert [text.get_text() for text in axes.texts] == ["no loss recorded"] and not axes.get_lines()


def test_the_curves_dot_and_the_summarys_chosen_epoch_are_the_same_marked_row(tmp_path):
    """A log whose rows before a kill-and-resume have no mark (empty cells) still has one chosen epoch:
    the plot draws one dot there and summary.json names the same epoch (an empty cell is not chosen)."""
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss,chosen\n0,1.0,0.9,\n1,0.8,0.5,True\n2,0.7,0.6,\n")
    history = read_history(tmp_path / "history.csv")
    (dot,) = [line for line in plots.training_curves_figure({1: history}).axes[0].get_lines() if line.get_marker() == "o"]
    assert list(dot.get_xdata()) == [2] and list(dot.get_ydata()) == [0.5]
    assert chosen_epoch(history) == {"epoch": 2, "of": 3}
    history = history.drop(columns=["chosen"])  # a run trained before the mark: no dot, no epoch
    assert chosen_epoch(history) is None
    assert not [line for line in plots.training_curves_figure({1: history}).axes[0].get_lines() if line.get_marker() == "o"]


def test_a_branch_predicting_a_label_outside_the_experiments_is_an_error_naming_it():
    table = predictions_table(LABELS2, ["anger", "happiness"], ["anger", "happiness"], video_predicted_label=["anger", "fear"])
    with pytest.raises(ValueError, match=r"video_predicted_label holds labels outside the experiment's: \['fear'\]"):
        branch_predictions(table, "video", LABELS2)


def test_a_branch_in_some_folds_only_is_summarised_over_those_and_blank_in_the_others(tmp_path):
    """Folds trained before a branch's predictions were kept have no column for it: its figures are
    over the folds that have one, and summary.csv leaves the other folds' cells empty (not 0)."""
    folds = two_folds(tmp_path / "exp")
    table = pd.read_parquet(folds[2] / "predictions.parquet")
    table.drop(columns=[c for c in table if c.startswith("video_")]).to_parquet(folds[2] / "predictions.parquet")
    summary = summarise_experiment(folds, "exp")
    assert summary["branches"]["video"]["metrics"]["uar"]["per_fold"] == {1: pytest.approx(1.0)}
    row = summary_table(summary).set_index(["scope", "metric"]).loc[("branch:video", "uar")]
    assert row["fold_1"] == pytest.approx(1.0) and np.isnan(row["fold_2"])


def test_protocol_figures_are_over_the_listed_clips_and_the_classes_the_fold_lists():
    """A fold whose protocol lists no clip of a class has no recall for it (not a recall of 0, nor an
    error); a predicted clip the fold's manifests do not list is not one of its protocol's clips."""
    predictions = predictions_table(LABELS2, ["anger", "anger", "happiness"], ["anger", "happiness", "happiness"])
    listed = predictions[["clip_id", "fold", "label"]].iloc[:2]  # fold 1 lists two anger clips, no happiness clip
    scores = protocol_scores(predictions, listed, 1, LABELS2)
    assert scores == {"listed_clips": 2, "scored_clips": 2, "uar": 0.5, "war": 0.5}


def test_a_recorded_macro_f1_a_hundredth_off_the_recomputed_one_is_logged(tmp_path, caplog):
    folds = two_folds(tmp_path / "exp")
    recorded = {"labels": LABELS2, "uar": 0.75, "war": 0.75, "macro_f1": (2 / 3 + 0.8) / 2 + 0.01}  # fold 1's, macro-F1 off
    write_json(folds[1] / "metrics.json", recorded)
    with caplog.at_level("WARNING"):
        summarise_experiment(folds, "exp")
    assert [record.getMessage().split(": ", 1)[1] for record in caplog.records if "recomputed" in record.getMessage()] == [
        f"{folds[1] / 'metrics.json'} has macro_f1 0.743333, recomputed 0.733333"
    ]


def test_an_undefined_mean_or_spread_reads_n_a_or_no_spread():
    assert format_mean_std(None) == "n/a" and format_mean_std({"mean": None}) == "n/a"
    assert format_mean_std({"mean": float("nan"), "std": float("nan"), "per_fold": {"1": float("nan")}}) == "n/a"
    assert format_mean_std({"mean": 0.5, "std": float("nan"), "per_fold": {"1": 0.5}}) == "0.500"  # one fold: no ± part


# ---- plots -----------------------------------------------------------------------------------------


def test_the_confusion_plot_shows_each_true_class_row_as_shares_and_counts():
    """Rows are the true classes, columns the predicted: a cell's first number is its share of the row
    (its colour), the second its clip count; a class without clips shows "-"."""
    axes = plots.confusion_figure([[1, 3], [0, 0]], LABELS2).axes[0]
    cells = {text.get_position(): text.get_text() for text in axes.texts}  # (column, row)
    assert cells == {(0, 0): "0.25\n(1)", (1, 0): "0.75\n(3)", (0, 1): "-", (1, 1): "-"}
    assert [text.get_color() for text in axes.texts] == ["black", "white", "black", "black"]  # legible on the dark cell
    assert axes.get_xlabel() == "predicted" and axes.get_ylabel() == "true"


def test_training_curves_draw_each_folds_loss_solid_and_val_loss_dashed_from_epoch_1():
    histories = {
        2: pd.DataFrame({"epoch": [0, 1, 2], "loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.7, 0.6]}),
        1: pd.DataFrame({"loss": [1.0, 0.9], "val_loss": [np.nan, np.nan]}),  # no epoch column; never validated
    }
    lines = {line.get_label(): line for line in plots.training_curves_figure(histories).axes[0].get_lines()}
    assert set(lines) == {"fold 1 loss", "fold 2 loss", "fold 2 val_loss"}
    assert list(lines["fold 2 loss"].get_xdata()) == [1, 2, 3] and list(lines["fold 1 loss"].get_xdata()) == [1, 2]
    assert [lines[name].get_linestyle() for name in ("fold 2 loss", "fold 2 val_loss")] == ["-", "--"]
    assert lines["fold 2 loss"].get_color() == lines["fold 2 val_loss"].get_color() != lines["fold 1 loss"].get_color()


def test_the_epoch_each_folds_model_is_reaches_the_summary_the_report_and_the_curves(tmp_path):
    """history.csv marks the epoch of lowest validation loss, whose weights the model holds (often
    not the last): the summary and the report say which it was, the curves put a dot on it; a
    history from before the mark says nothing."""
    folds = two_folds(tmp_path / "exp")
    history = pd.DataFrame({"epoch": [0, 1, 2], "loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.6, 0.7], "chosen": [False, True, False]})
    history.to_csv(folds[1] / "history.csv", index=False)
    outputs = {key: tmp_path / "out" / name for key, name in
               {"summary": "summary.json", "table": "summary.csv", "confusion": "c.png", "curves": "t.png", "va": "v.png"}.items()}  # fmt: skip
    evaluate_experiment(folds, "exp", outputs)
    assert json.loads(outputs["summary"].read_text())["chosen_epochs"] == {"1": {"epoch": 2, "of": 3}, "2": None}
    page = report.experiment_section({"name": "exp", "summary": outputs["summary"]}, tmp_path)
    assert "Each fold's model is its epoch of lowest validation loss (a dot on the training curves): fold 1: 2 of 3." in page
    (dot,) = [line for line in plots.training_curves_figure({1: read_history(folds[1] / "history.csv")}).axes[0].get_lines() if line.get_marker() == "o"]
    assert list(dot.get_xdata()) == [2] and list(dot.get_ydata()) == [0.6]
    # no fold with the mark: no sentence
    for fold in folds.values():
        pd.DataFrame({"epoch": [0], "loss": [1.0], "val_loss": [1.1]}).to_csv(fold / "history.csv", index=False)
    evaluate_experiment(folds, "exp", outputs)
    assert "lowest validation loss" not in report.experiment_section({"name": "exp", "summary": outputs["summary"]}, tmp_path)


def test_the_report_names_the_folds_whose_test_clips_lack_some_classes(tmp_path):
    """A fold without test clips of a class averages its UAR over fewer classes (a small or partial
    corpus): the page says which folds; with every class in every fold it says nothing."""
    folds = two_folds(tmp_path / "exp")
    outputs = {key: tmp_path / "out" / name for key, name in
               {"summary": "summary.json", "table": "summary.csv", "confusion": "c.png", "curves": "t.png", "va": "v.png"}.items()}  # fmt: skip
    evaluate_experiment(folds, "exp", outputs)
    assert "Not every class" not in report.experiment_section({"name": "exp", "summary": outputs["summary"]}, tmp_path)
    only_happy = predictions_table(LABELS2, ["happiness", "happiness"], ["happiness", "anger"], fold=2)
    write_fold(folds[2], LABELS2, only_happy, name="exp", fusion="late", datasets=["crema_d"])
    evaluate_experiment(folds, "exp", outputs)
    page = report.experiment_section({"name": "exp", "summary": outputs["summary"]}, tmp_path)
    assert "Not every class has test clips in every fold (fold 2: 1 of 2 classes)" in page


def test_the_va_scatter_titles_each_panel_with_the_pooled_ccc_or_says_there_is_none():
    true, pred = [0.1, 0.5, -0.3], [0.2, 0.4, 0.0]
    # means 0.1 and 0.2; variances 0.32/3 and 0.08/3, covariance 0.16/3 -> CCC 2 * 0.16 / (0.32 + 0.08 + 0.03) = 0.744
    valence, arousal = plots.va_scatter_figure(pd.DataFrame({"valence": true, "valence_pred": pred})).axes
    assert valence.get_title() == "valence: CCC 0.744 (all clips pooled)"
    assert [text.get_text() for text in arousal.texts] == ["no arousal predictions"]
    empty = plots.va_scatter_figure(pd.DataFrame({"valence": [], "valence_pred": []}))
    assert [text.get_text() for axes in empty.axes for text in axes.texts] == ["no valence predictions", "no arousal predictions"]


def test_a_heatmap_colours_on_the_scale_asked_for_and_marks_missing_cells():
    """UAR heatmaps share one scale (0 to 1), whatever the values drawn."""
    axes = plots.heatmap_figure(pd.DataFrame({"x": [0.25, np.nan]}, index=["r1", "r2"]), vmin=0, vmax=0.5).axes[0]
    assert axes.images[0].get_clim() == (0, 0.5)
    assert [(text.get_text(), text.get_color()) for text in axes.texts] == [("0.250", "white"), ("n/a", "black")]


def test_a_png_carries_no_software_version_so_the_same_figure_gives_the_same_file(tmp_path):
    for name in ("a.png", "b.png"):
        plots.save_png(plots.message_figure("nothing to draw"), tmp_path / name)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    with Image.open(tmp_path / "a.png") as image:
        assert "Software" not in image.info


# ---- baselines -------------------------------------------------------------------------------------


def tabular(labels, features, clip_ids=None) -> pd.DataFrame:
    clip_ids = clip_ids or [f"c{i:04d}" for i in range(len(labels))]
    table = pd.DataFrame({"clip_id": clip_ids, "label": labels})
    for index, column in enumerate(FEATURES[: features.shape[1]]):
        table[column] = features[:, index]
    return table


def test_majority_baseline_equals_the_hand_count():
    assert majority_class([0, 0, 1, 2, 2, 2], 3) == 2
    assert majority_class([1, 0, 1, 0], 3) == 0  # a tie goes to the lowest label index
    labels = ["anger", "anger", "anger", "happiness", "happiness", "anger", "happiness", "happiness", "happiness"]
    clips = tabular(labels, np.zeros((9, 2)))
    split = {"train": ["c0000", "c0001", "c0003"], "validation": ["c0002", "c0004"], "test": ["c0005", "c0006", "c0007", "c0008"]}
    result = fold_baselines(clips, split, LABELS2, FEATURES)
    majority = result["majority"]
    # fitting clips: 3 anger, 2 happiness -> always anger; test: 1 anger, 3 happiness
    assert majority["class"] == "anger"
    assert majority["war"] == pytest.approx(1 / 4)
    assert majority["uar"] == pytest.approx(0.5)  # recalls 1 and 0
    assert majority["macro_f1"] == pytest.approx((2 * 0.25 * 1 / 1.25 + 0) / 2)  # anger p 1/4, r 1
    assert result["clips"] == {"fit": 5, "test": 4}
    assert result["logistic_regression"]["features"] == 0  # constant columns are dropped


def synthetic_folds(tmp_path, labels, features, folds=5):
    """A tabular shard and one split.json per fold (clips dealt to folds in turn)."""
    clips = tabular(list(labels), features)
    path = tmp_path / "tabular.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    clips.to_parquet(path)
    fold_of = np.arange(len(clips)) % folds + 1
    splits = {}
    for fold in range(1, folds + 1):
        test = clips.loc[fold_of == fold, "clip_id"].tolist()
        rest = clips.loc[fold_of != fold, "clip_id"].tolist()
        splits[fold] = tmp_path / f"split_{fold}.json"
        write_json(splits[fold], {"train": rest[: len(rest) * 4 // 5], "validation": rest[len(rest) * 4 // 5 :], "test": test})
    return [path], splits


def test_logistic_regression_separates_a_separable_set_and_is_at_chance_on_shuffled_labels(tmp_path):
    rng = np.random.default_rng(0)
    labels3 = ["anger", "happiness", "sadness"]
    y = np.repeat(np.arange(3), 60)
    features = rng.normal(size=(180, 4))
    features[:, 0] += 6 * y  # classes 6 standard deviations apart along one column
    features[:, 1] -= 4 * (y == 1)
    features[rng.random(180) < 0.1, 2] = np.nan  # missing values (in a noise column) take the fitting mean
    features[:, 3] = 5.0  # constant: dropped
    paths, splits = synthetic_folds(tmp_path / "separable", np.array(labels3)[y], features)
    result = experiment_baselines(paths, splits, labels3)
    logistic = result["logistic_regression"]["metrics"]
    assert logistic["uar"]["mean"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in logistic["uar"]["per_fold"].values())
    assert result["majority"]["metrics"]["uar"]["mean"] == pytest.approx(1 / 3)
    # every fold fits on 48 clips of each class: the tie goes to the first label (the report names it)
    assert result["majority_class"] == {fold: "anger" for fold in range(1, 6)} and result["folds"] == [1, 2, 3, 4, 5]

    shuffled = np.array(labels3)[rng.permutation(y)]
    noise = rng.normal(size=(180, 4))
    paths, splits = synthetic_folds(tmp_path / "shuffled", shuffled, noise)
    chance = experiment_baselines(paths, splits, labels3)["logistic_regression"]["metrics"]["uar"]["mean"]
    assert abs(chance - 1 / 3) < 0.1


def test_features_are_standardised_with_the_fitting_clips_mean_and_std_and_missing_values_take_the_mean():
    fitting = np.array([[0.0, 5.0, np.nan], [4.0, 5.0, np.nan], [np.nan, 5.0, np.nan]])  # mean 2, std 2; constant; all missing
    standardise = Standardiser(fitting)
    assert standardise.keep.tolist() == [True, False, False]
    np.testing.assert_allclose(standardise(np.array([[6.0, 1.0, 2.0], [np.nan, 0.0, 0.0]])), [[2.0], [0.0]])


def test_logistic_regression_gradient_matches_finite_differences():
    from scipy.optimize import check_grad

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 3)), rng.integers(0, 3, 20)
    onehot = np.eye(3)[y]
    params = rng.normal(size=3 * 3 + 3)
    error = check_grad(lambda p: _objective(p, x, onehot, 0.5)[0], lambda p: _objective(p, x, onehot, 0.5)[1], params)
    assert error < 1e-4
    model = LogisticRegression().fit(x, y, 3)
    assert np.allclose(model.predict_proba(x).sum(axis=1), 1.0)


def test_baselines_leave_out_clips_outside_the_labels_or_the_shards_and_say_how_many(caplog):
    """An experiment on a subset of a corpus's labels shares the tabular shards with the whole
    corpus: clips of other labels are not the baselines' (they would otherwise be fitted and tested
    on classes the model never saw), and a split clip the shards lack is left out with a warning."""
    labels = ["anger", "anger", "neutral", "neutral", "neutral", "happiness", "anger", "happiness"]
    clips = tabular(labels, np.zeros((8, 2)))
    split = {"train": ["c0000", "c0001", "c0002", "c0003"], "validation": ["c0004", "c0005"], "test": ["c0006", "c0007", "c9999"]}
    with caplog.at_level("WARNING"):
        result = fold_baselines(clips, split, LABELS2, FEATURES)
    # fitting: 2 anger, 1 happiness (the 3 neutral clips left out); test: 1 anger, 1 happiness
    assert result["clips"] == {"fit": 3, "test": 2}
    assert result["majority"]["class"] == "anger" and result["majority"]["war"] == pytest.approx(0.5)
    assert any("4 clips of the split are not in the tabular shards" in record.getMessage() for record in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING"):
        fold_baselines(clips, {"train": ["c0000", "c0001"], "validation": ["c0005"], "test": ["c0006", "c9999"]}, LABELS2, FEATURES)
    assert any("1 clips of the split are not in the tabular shards" in record.getMessage() for record in caplog.records)


def test_a_clip_twice_in_the_shards_is_scored_once():
    """Shards written again (a rerun chunk) can hold a clip twice: the baselines count each clip
    once, as the model's evaluation does."""
    clips = tabular(["anger", "anger", "happiness", "anger", "happiness"], np.zeros((5, 2)))
    clips = pd.concat([clips, clips.iloc[[3, 3]]], ignore_index=True)  # the test clip c0003 three times
    split = {"train": ["c0000", "c0001"], "validation": ["c0002"], "test": ["c0003", "c0004"]}
    majority = fold_baselines(clips, split, LABELS2, FEATURES)["majority"]
    assert majority["class"] == "anger" and majority["war"] == pytest.approx(0.5)  # not 3 of 4


def test_a_fold_without_test_or_fitting_clips_is_refused():
    clips = tabular(["anger", "happiness", "anger"], np.zeros((3, 2)))
    for split in ({"train": ["c0000", "c0001"], "validation": [], "test": ["c9999"]}, {"train": ["c9999"], "validation": [], "test": ["c0002"]}):
        with pytest.raises(ValueError, match="a fold needs fitting and test clips for the baselines"):
            fold_baselines(clips, split, LABELS2, FEATURES)


def test_the_l2_penalty_asked_for_is_the_one_fitted(tmp_path):
    """baselines.l2 reaches every fold's fit: a penalty that dwarfs the data leaves only the class
    priors (the most frequent class everywhere, at chance), where the default separates the classes."""
    rng = np.random.default_rng(2)
    labels3 = ["anger", "happiness", "sadness"]
    y = np.repeat(np.arange(3), [40, 25, 25])
    features = rng.normal(size=(90, 2))
    features[:, 0] += 6 * y
    paths, splits = synthetic_folds(tmp_path, np.array(labels3)[y], features, folds=3)
    assert experiment_baselines(paths, splits, labels3)["logistic_regression"]["metrics"]["uar"]["mean"] > 0.9
    strong = experiment_baselines(paths, splits, labels3, l2=1e9)
    assert strong["l2"] == 1e9 and strong["logistic_regression"]["metrics"]["uar"]["mean"] == pytest.approx(1 / 3)


def test_baselines_csv_has_each_baselines_uar_war_and_macro_f1_per_fold(tmp_path):
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(2), 20)
    features = rng.normal(size=(40, 2))
    features[:, 0] += 6 * y
    paths, splits = synthetic_folds(tmp_path / "data", np.array(LABELS2)[y], features, folds=2)
    folders = {}
    for fold, split in splits.items():
        folders[fold] = tmp_path / f"fold_{fold}"
        write_json(folders[fold] / layout.SPLIT_FILE, json.loads(split.read_text()))
        write_json(folders[fold] / layout.SETTINGS_FILE, {"labels": LABELS2})
    result = evaluate_baselines(paths, folders, tmp_path / "baselines.json", tmp_path / "baselines.csv")
    assert json.loads((tmp_path / "baselines.json").read_text())["labels"] == LABELS2
    table = pd.read_csv(tmp_path / "baselines.csv")
    assert list(zip(table["baseline"], table["metric"])) == [
        (name, metric) for name in ("majority", "logistic_regression") for metric in ("uar", "war", "macro_f1")
    ]
    assert list(table.columns) == ["baseline", "metric", "mean", "std", "fold_1", "fold_2"]
    row = table.set_index(["baseline", "metric"]).loc[("logistic_regression", "macro_f1")]
    per_fold = result["logistic_regression"]["metrics"]["macro_f1"]["per_fold"]
    assert [row["fold_1"], row["fold_2"]] == pytest.approx([per_fold[1], per_fold[2]])
    assert row["mean"] == pytest.approx(np.mean([per_fold[1], per_fold[2]]))


# ---- cross-corpus ----------------------------------------------------------------------------------


def write_summary(path: Path, uar_per_fold: dict, labels) -> None:
    mean = float(np.mean(list(uar_per_fold.values())))
    write_json(
        path,
        {"labels": labels, "clips": {str(f): 10 for f in uar_per_fold},
         "overall": {"metrics": {"uar": {"mean": mean, "std": 0.1, "per_fold": uar_per_fold}, "war": {"mean": 0.5}, "macro_f1": {"mean": 0.4}}}},
    )  # fmt: skip


def test_cross_corpus_matrix_layout_and_recomputed_cells(tmp_path):
    crema = ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]
    common = ["anger", "happiness", "sadness"]
    write_summary(tmp_path / "c" / "summary.json", {"1": 0.6, "2": 0.7}, crema)
    write_summary(tmp_path / "e" / "summary.json", {"1": 0.8}, common)
    # the final model on eNTERFACE's common-label clips: recalls 1, 1/2, 1/2 -> UAR 2/3, WAR 3/5;
    # F1 1/2 (anger: precision 1/3), 2/3, 2/3 -> macro-F1 11/18
    cross = predictions_table(
        common, ["anger", "happiness", "happiness", "sadness", "sadness"], ["anger", "happiness", "anger", "anger", "sadness"], dataset="enterface"
    )
    cross.to_parquet(tmp_path / "cross.parquet")
    write_json(tmp_path / "cross.json", {"labels": common, "uar": 0.99})  # recorded value is not trusted
    # the mixture's model on the held-out corpus: every clip called anger -> UAR 1/2, WAR 3/4
    heldout = predictions_table(LABELS2, ["anger", "anger", "anger", "happiness"], ["anger"] * 4, dataset="crema_d")
    heldout.to_parquet(tmp_path / "heldout.parquet")
    write_json(tmp_path / "heldout.json", {"unscored_test_clips": 3})  # labels from the prob_ columns
    outputs = {key: tmp_path / "report" / name for key, name in
               {"matrix": "m.csv", "matrix_png": "m.png", "loco": "l.csv", "loco_png": "l.png", "json": "c.json"}.items()}  # fmt: skip
    write_cross_corpus(
        [{"experiment": "e", "dataset": "enterface", "summary": tmp_path / "e" / "summary.json"},
         {"experiment": "c", "dataset": "crema_d", "summary": tmp_path / "c" / "summary.json"}],
        [{"experiment": "c", "train_dataset": "crema_d", "test_dataset": "enterface", "predictions": tmp_path / "cross.parquet", "metrics": tmp_path / "cross.json"}],
        [{"experiment": "mix", "datasets": ["crema_d", "enterface"], "heldout_dataset": "crema_d", "predictions": tmp_path / "heldout.parquet", "metrics": tmp_path / "heldout.json"}],
        ["crema_d", "enterface", "mafw"],
        outputs,
    )  # fmt: skip
    matrix = pd.read_csv(outputs["matrix"])
    assert list(matrix.columns) == ["train_dataset", "experiment", "crema_d", "enterface", "mafw"]
    assert matrix["train_dataset"].tolist() == ["crema_d", "enterface"]  # the config's order of corpora, not the entries'
    assert matrix.loc[0, "crema_d"] == pytest.approx(0.65) and matrix.loc[1, "enterface"] == pytest.approx(0.8)
    assert matrix.loc[0, "enterface"] == pytest.approx(2 / 3) and np.isnan(matrix.loc[0, "mafw"])
    loco = pd.read_csv(outputs["loco"])
    assert list(loco.columns) == ["experiment", "crema_d", "enterface", "mafw"]
    assert loco.loc[0, "crema_d"] == pytest.approx(0.5) and np.isnan(loco.loc[0, "enterface"])  # UAR, not WAR's 3/4
    details = json.loads(outputs["json"].read_text())
    within = next(r for r in details["cross_corpus"] if r["experiment"] == "c" and r["test_dataset"] == "crema_d")
    assert (within["uar"], within["uar_std"], within["war"], within["macro_f1"]) == pytest.approx((0.65, 0.1, 0.5, 0.4))
    assert (within["n_clips"], within["n_classes"]) == (20, 6)
    cell = next(r for r in details["cross_corpus"] if r["test_dataset"] == "enterface" and r["experiment"] == "c")
    assert (cell["uar"], cell["war"], cell["macro_f1"]) == pytest.approx((2 / 3, 3 / 5, 11 / 18))
    assert cell["n_classes"] == 3 and cell["n_clips"] == 5
    (left_out,) = details["leave_one_corpus_out"]
    assert (left_out["uar"], left_out["war"], left_out["n_clips"]) == (pytest.approx(0.5), pytest.approx(0.75), 4)
    assert left_out["trained_on"] == "enterface"
    assert left_out["unscored_clips"] == 3  # the held-out corpus' clips left out are counted
    # a cross_corpus.json written before the column existed (its rule does not rerun on new code) still makes a page
    del details["leave_one_corpus_out"][0]["unscored_clips"]
    outputs["json"].write_text(json.dumps(details))
    assert "<th>clips not scored</th>" in cross_corpus_section(outputs, tmp_path / "report")
    for key in ("matrix_png", "loco_png"):
        assert outputs[key].read_bytes()[:8] == PNG_MAGIC


def test_a_folders_label_set_is_the_one_its_metrics_name_in_their_order(tmp_path):
    """label_index counts in metrics.json's labels (the model's order); prob_ columns name them only
    where metrics.json does not, and a table with neither cannot be scored."""
    labels = ["happiness", "anger"]
    table = predictions_table(labels, ["anger", "happiness", "happiness"], ["anger", "anger", "happiness"])
    table = table[["clip_id", "label", "label_index", "predicted_index", "prob_anger", "prob_happiness"]]
    table.to_parquet(tmp_path / "predictions.parquet")
    write_json(tmp_path / "metrics.json", {"labels": labels})
    metrics = folder_metrics(tmp_path / "predictions.parquet", tmp_path / "metrics.json")
    assert metrics["labels"] == labels and metrics["uar"] == pytest.approx(0.75)  # recalls: happiness 1/2, anger 1
    table.drop(columns=["prob_anger", "prob_happiness"]).to_parquet(tmp_path / "predictions.parquet")
    write_json(tmp_path / "metrics.json", {})
    with pytest.raises(ValueError, match="predictions have no prob_<label> columns and metrics.json names no labels"):
        folder_metrics(tmp_path / "predictions.parquet", tmp_path / "metrics.json")


def test_the_long_table_lists_corpora_in_the_configs_order_and_others_after(tmp_path):
    """Within a train corpus' row the test corpora come in the config's order too (the diagonal is not
    always first); a corpus the config no longer lists comes last. An undefined mean is NaN."""
    write_summary(tmp_path / "c.json", {"1": 0.6}, LABELS2)
    write_summary(tmp_path / "m.json", {"1": 0.4}, LABELS2)
    summary = json.loads((tmp_path / "m.json").read_text())
    summary["overall"]["metrics"]["macro_f1"]["mean"] = None  # undefined (null in summary.json)
    write_json(tmp_path / "m.json", summary)
    cross = predictions_table(LABELS2, ["anger", "happiness"], ["anger", "anger"], dataset="enterface")
    cross.to_parquet(tmp_path / "cross.parquet")
    write_json(tmp_path / "cross.json", {"labels": LABELS2})
    table = cross_corpus_table(
        [{"experiment": "m", "dataset": "mafw", "summary": tmp_path / "m.json"}, {"experiment": "c", "dataset": "crema_d", "summary": tmp_path / "c.json"}],
        [{"experiment": "c", "train_dataset": "crema_d", "test_dataset": "enterface", "predictions": tmp_path / "cross.parquet", "metrics": tmp_path / "cross.json"}],
        ["enterface", "crema_d"],
    )  # fmt: skip
    assert table[["train_dataset", "test_dataset"]].values.tolist() == [["crema_d", "enterface"], ["crema_d", "crema_d"], ["mafw", "mafw"]]
    assert np.isnan(table.loc[2, "macro_f1"]) and table.loc[2, "uar"] == pytest.approx(0.4)


def test_a_heldout_run_recorded_before_unscored_clips_were_counted_shows_them_unknown(tmp_path):
    heldout = predictions_table(LABELS2, ["anger", "happiness"], ["anger", "anger"])
    heldout.to_parquet(tmp_path / "heldout.parquet")
    write_json(tmp_path / "heldout.json", {"labels": LABELS2})
    (row,) = leave_one_corpus_out_table(
        [{"experiment": "mix", "datasets": ["crema_d", "enterface", "mafw"], "heldout_dataset": "enterface",
          "predictions": tmp_path / "heldout.parquet", "metrics": tmp_path / "heldout.json"}]
    ).to_dict("records")  # fmt: skip
    assert row["unscored_clips"] is None and row["trained_on"] == "crema_d+mafw" and row["uar"] == pytest.approx(0.5)


def test_each_cross_corpus_cell_counts_the_clips_of_its_classes_a_stage_quarantined(tmp_path):
    """A quarantined clip is in no shard, so no cell scores it: the tables count those of the cell's
    classes (not those of other classes, nor unlabelled ones) from the test corpus' manifest; the
    diagonal from its protocol figures; unknown (None) without a manifest."""
    common = ["anger", "happiness"]
    cross = predictions_table(common, ["anger", "happiness"], ["anger", "anger"], dataset="enterface")
    cross.to_parquet(tmp_path / "cross.parquet")
    write_json(tmp_path / "cross.json", {"labels": common})
    extra = pd.DataFrame({"clip_id": ["q1", "q2", "other", "unlabelled"], "label": ["anger", "happiness", "sadness", ""]})
    pd.concat([cross[["clip_id", "label"]], extra]).to_parquet(tmp_path / "enterface.parquet")
    write_summary(tmp_path / "c.json", {"1": 0.6}, common)
    summary = json.loads((tmp_path / "c.json").read_text())
    summary["protocol"] = {"metrics": {"listed_clips": {"per_fold": {"1": 12}}, "scored_clips": {"per_fold": {"1": 11}}}}
    write_json(tmp_path / "c.json", summary)
    diagonal = [{"experiment": "c", "dataset": "crema_d", "summary": tmp_path / "c.json"}]
    cells = [{"experiment": "c", "train_dataset": "crema_d", "test_dataset": "enterface", "predictions": tmp_path / "cross.parquet", "metrics": tmp_path / "cross.json"}]
    table = cross_corpus_table(diagonal, cells, ["crema_d", "enterface"], {"enterface": tmp_path / "enterface.parquet"})
    assert table.set_index("test_dataset")["quarantined_clips"].to_dict() == {"crema_d": 1, "enterface": 2}
    assert cross_corpus_table(diagonal, cells, ["crema_d", "enterface"])["quarantined_clips"].tolist() == [1, None]
    heldout = [{"experiment": "mix", "datasets": ["crema_d", "enterface"], "heldout_dataset": "enterface",
                "predictions": tmp_path / "cross.parquet", "metrics": tmp_path / "cross.json"}]  # fmt: skip
    (row,) = leave_one_corpus_out_table(heldout, {"enterface": tmp_path / "enterface.parquet"}).to_dict("records")
    assert row["quarantined_clips"] == 2


def test_without_cross_corpus_or_heldout_runs_the_tables_are_empty_and_the_figures_say_why(tmp_path):
    outputs = {key: tmp_path / name for key, name in
               {"matrix": "m.csv", "matrix_png": "m.png", "loco": "l.csv", "loco_png": "l.png", "json": "c.json"}.items()}  # fmt: skip
    result = write_cross_corpus([], [], [], ["crema_d", "enterface"], outputs)
    assert result == {"datasets": ["crema_d", "enterface"], "cross_corpus": [], "leave_one_corpus_out": []}
    assert pd.read_csv(outputs["matrix"]).columns.tolist() == ["train_dataset", "experiment", "crema_d", "enterface"]
    assert pd.read_csv(outputs["loco"]).columns.tolist() == ["experiment", "crema_d", "enterface"]
    for key in ("matrix_png", "loco_png"):
        with Image.open(outputs[key]) as image:  # the message figure's size (5 x 2 inches), not a heatmap's
            assert image.size == (5 * plots.DPI, 2 * plots.DPI)


def test_the_report_labels_exactly_the_cross_corpus_tables_columns():
    # The page reads a row's scores with .get (a table written before a column existed shows "n/a"),
    # so a column renamed in the tables or in the page's labels alone would show "n/a" for good.
    for columns, text_labels in ((LONG_COLUMNS, report.CROSS_LABELS), (LOCO_COLUMNS, report.LOCO_LABELS)):
        assert set(text_labels) <= set(columns)
        assert set(text_labels).isdisjoint(report.SCORE_LABELS)
    assert set(report.SCORE_LABELS) <= set(LONG_COLUMNS) | set(LOCO_COLUMNS)
    # a new column is shown, or left out here on purpose
    assert set(LONG_COLUMNS) - set(report.CROSS_LABELS) - set(report.SCORE_LABELS) == {"uar_std"}
    assert set(LOCO_COLUMNS) - set(report.LOCO_LABELS) - set(report.SCORE_LABELS) == set()


def test_heldout_and_cross_folders_follow_the_config():
    config = demo_settings()
    config["datasets"]["mafw"]["enabled"] = False
    config["experiments"] = [
        {"name": "c", "datasets": ["crema_d"], "fusion": "hybrid"},
        {"name": "c_nofinal", "datasets": ["crema_d"], "fusion": "early", "final": False},
        {"name": "c_two", "datasets": ["crema_d"], "fusion": "early", "labels": ["anger", "neutral"]},
        {"name": "mix", "datasets": ["crema_d", "enterface"], "fusion": "late", "folds": [1, 2], "final": False},
    ]
    validate(config, schema=str(SCHEMA_PATH))  # fills the defaults as the Snakefile does
    assert targets.cross_folders(config, "c") == {"enterface": "results/experiments/c/cross_enterface"}
    assert targets.cross_folders(config, "c_nofinal") == {}
    assert targets.cross_folders(config, "c_two") == {}  # eNTERFACE has no neutral: one label in common
    assert targets.heldout_folders(config, "c") == {}
    assert targets.heldout_folders(config, "mix") == {
        "crema_d": "results/experiments/mix/heldout_crema_d",
        "enterface": "results/experiments/mix/heldout_enterface",
    }
    assert targets.fold_folders(config, "mix") == {1: "results/experiments/mix/fold_1", 2: "results/experiments/mix/fold_2"}
    entries = targets.cross_corpus_entries(config)
    assert [e["experiment"] for e in entries["diagonal"]] == ["c", "c_nofinal", "c_two"]
    assert [(e["experiment"], e["train_dataset"], e["test_dataset"]) for e in entries["cross"]] == [("c", "crema_d", "enterface")]
    assert entries["cross"][0]["predictions"] == "results/experiments/c/cross_enterface/predictions.parquet"
    assert [e["heldout_dataset"] for e in entries["heldout"]] == ["crema_d", "enterface"]
    evaluation = targets.evaluation_targets(config)
    assert "results/experiments/mix/summary.json" in evaluation and "results/experiments/c/baselines.json" in evaluation
    assert "results/report/previews/enterface" in targets.report_targets(config)
    assert "results/report/previews/mafw" not in targets.report_targets(config)


def test_the_report_reads_every_chunks_shards_and_the_cross_corpus_tables_every_run():
    """The report counts usable clips over all of a dataset's chunks; the cross-corpus tables wait for
    the cross_ and the heldout_ runs alike; an experiment with final: false has no final model."""
    config = demo_settings()
    config["datasets"]["mafw"]["enabled"] = False
    config["datasets"]["enterface"]["chunks"] = 3
    config["experiments"] = [
        {"name": "c", "datasets": ["crema_d"], "fusion": "hybrid"},
        {"name": "mix", "datasets": ["crema_d", "enterface"], "fusion": "late", "folds": [1], "final": False},
    ]
    validate(config, schema=str(SCHEMA_PATH))
    shards = {entry["name"]: entry["tabular"] for entry in targets.report_datasets(config)}
    assert shards == {
        "crema_d": [f"results/crema_d/shards/tabular/{chunk}.parquet" for chunk in range(4)],
        "enterface": ["results/enterface/shards/tabular/0.parquet", "results/enterface/shards/tabular/1.parquet", "results/enterface/shards/tabular/2.parquet"],
    }
    runs = "results/experiments"
    assert sorted(targets.cross_corpus_inputs(config)) == sorted(
        [f"{runs}/c/summary.json"]
        + [f"{runs}/{run}/{name}" for run in ("c/cross_enterface", "mix/heldout_crema_d", "mix/heldout_enterface") for name in ("predictions.parquet", "metrics.json")]
    )
    assert targets.final_files(config, "c", "model.keras") == [f"{runs}/c/final/model.keras"]
    assert targets.final_files(config, "mix", "model.keras") == []
    # the train stage: every fold's metrics, c's final model and cross-corpus run, mix's held-out runs
    assert sorted(targets.training_targets(config)) == sorted(
        [f"{runs}/c/fold_{fold}/metrics.json" for fold in range(1, 6)] + [f"{runs}/c/final/model.keras", f"{runs}/c/cross_enterface/metrics.json"]
        + [f"{runs}/mix/fold_1/metrics.json", f"{runs}/mix/heldout_crema_d/metrics.json", f"{runs}/mix/heldout_enterface/metrics.json"]
    )


def test_evaluation_waits_for_every_folds_files_and_a_mixtures_heldout_runs_name_all_its_datasets():
    """The evaluate rules declare each test fold's files as inputs, so a fold retrained (or not yet
    trained) reruns (or holds back) the evaluation; the leave-one-corpus-out table names the corpora
    a heldout_ model was trained on from the mixture's datasets."""
    config = demo_settings()
    config["datasets"]["mafw"]["enabled"] = False
    config["experiments"] = [
        {"name": "c", "datasets": ["crema_d"], "fusion": "hybrid", "folds": [1, 3]},
        {"name": "mix", "datasets": ["crema_d", "enterface"], "fusion": "late", "folds": [1, 2], "final": False},
    ]
    validate(config, schema=str(SCHEMA_PATH))
    runs = "results/experiments"
    assert targets.fold_files(config, "c", "split.json") == [f"{runs}/c/fold_1/split.json", f"{runs}/c/fold_3/split.json"]
    assert targets.fold_files(config, "mix", "predictions.parquet") == [f"{runs}/mix/fold_{k}/predictions.parquet" for k in (1, 2)]
    assert targets.final_folder(config, "c") == f"{runs}/c/final" and targets.final_folder(config, "mix") is None
    assert targets.cross_corpus_entries(config) == {
        "diagonal": [{"experiment": "c", "dataset": "crema_d", "summary": f"{runs}/c/summary.json"}],
        "cross": [
            {"experiment": "c", "train_dataset": "crema_d", "test_dataset": "enterface",
             "predictions": f"{runs}/c/cross_enterface/predictions.parquet", "metrics": f"{runs}/c/cross_enterface/metrics.json"},
        ],
        "heldout": [
            {"experiment": "mix", "datasets": ["crema_d", "enterface"], "heldout_dataset": held_out,
             "predictions": f"{runs}/mix/heldout_{held_out}/predictions.parquet", "metrics": f"{runs}/mix/heldout_{held_out}/metrics.json"}
            for held_out in ("crema_d", "enterface")
        ],
    }  # fmt: skip


def test_the_report_reads_and_the_stages_target_every_experiments_and_enabled_datasets_files():
    config = demo_settings()
    config["datasets"]["mafw"]["enabled"] = False
    config["datasets"]["enterface"]["chunks"] = 2
    config["experiments"] = [
        {"name": "c", "datasets": ["crema_d"], "fusion": "hybrid", "folds": [1]},
        {"name": "e", "datasets": ["enterface"], "fusion": "early", "folds": [1], "final": False},
    ]
    validate(config, schema=str(SCHEMA_PATH))
    datasets = {entry["name"]: entry for entry in targets.report_datasets(config)}
    assert list(datasets) == ["crema_d", "enterface"]  # mafw is disabled
    assert datasets["enterface"] == {
        "name": "enterface",
        "manifest": "results/enterface/manifest.parquet",
        "quarantine": "results/enterface/quarantine.csv",  # every stage's, not the index's alone
        "tabular": ["results/enterface/shards/tabular/0.parquet", "results/enterface/shards/tabular/1.parquet"],
    }
    experiments = "results/experiments"
    assert targets.report_experiments(config) == [
        {
            "name": name,
            "summary": f"{experiments}/{name}/summary.json",
            "baselines": f"{experiments}/{name}/baselines.json",
            "plots": {
                "confusion": f"{experiments}/{name}/plots/confusion_matrix.png",
                "curves": f"{experiments}/{name}/plots/training_curves.png",
                "va": f"{experiments}/{name}/plots/va_scatter.png",
            },
        }
        for name in ("c", "e")
    ]
    assert targets.report_previews(config) == {dataset: f"results/report/previews/{dataset}" for dataset in ("crema_d", "enterface")}
    per_experiment = ["summary.json", "summary.csv", "plots/confusion_matrix.png", "plots/training_curves.png", "plots/va_scatter.png", "baselines.json", "baselines.csv"]
    assert sorted(targets.evaluation_targets(config)) == sorted(f"{experiments}/{name}/{file}" for name in ("c", "e") for file in per_experiment)
    report_files = ["index.html", "datasets.csv", "quarantine_summary.csv", "cross_corpus.csv", "cross_corpus.png", "leave_one_corpus_out.csv", "leave_one_corpus_out.png", "cross_corpus.json"]
    assert sorted(targets.report_targets(config)) == sorted([f"results/report/{file}" for file in report_files] + [f"results/report/previews/{dataset}" for dataset in ("crema_d", "enterface")])


# ---- previews --------------------------------------------------------------------------------------


def test_previews_choose_one_clip_per_class_then_fill_up():
    clips = pd.DataFrame({"clip_id": ["b2", "a1", "c1", "a2", "b1"], "label": ["b", "a", "a", "a", "b"], "label_index": [1, 0, 0, 0, 1]})
    assert choose_clips(clips, 3)["clip_id"].tolist() == ["a1", "b1", "a2"]
    assert choose_clips(clips, 1)["clip_id"].tolist() == ["a1"]


def face_table(points_x, points_y, success=1, frames=1):
    row = {"frame": 1, "success": success, **{f"x_{i}": points_x[i] for i in range(68)}, **{f"y_{i}": points_y[i] for i in range(68)}}
    return pd.DataFrame([{**row, "frame": f + 1} for f in range(frames)])


def test_landmarks_map_into_the_crop_the_frames_stage_cut():
    xs, ys = np.linspace(100, 200, 68), np.linspace(50, 250, 68)
    # full frame 400 x 200 letterboxed into 100 px: scale 1/4, 50 px tall, 25 px padding on top
    (points, box), = frame_annotations(face_table(xs, ys), [0], "full", 100, 0.25, width=400, height=200)
    assert box == pytest.approx((25, 25 + 12.5, 50, 25 + 62.5))
    transforms = crop_transforms(face_table(xs, ys), [0, 0], "full", 100, 0.25, 400, 200)
    assert len(transforms) == 2 and all(np.array_equal(t, [[0.25, 0, 0], [0, 0.25, 25]]) for t in transforms)
    # face crop: the landmarks' box (side 200) with 25 % margin each side -> a 300 px square around its centre
    table = face_table(xs, ys, frames=3)
    (points, box), *_ = frame_annotations(table, [1, 1, 2], "face", 60, 0.25)
    assert box == pytest.approx((20, 10, 40, 50))  # scale 60 / 300 around the centre (150, 150)
    assert frame_annotations(face_table(xs, ys, success=0), [0], "full", 100, 0.25, 400, 200) == [(None, None)]
    assert frame_annotations(face_table(xs, ys).iloc[:0], [0, 2], "full", 100, 0.25, 400, 200) == [(None, None)] * 2  # a table without rows


def test_a_source_frame_past_the_face_tables_end_is_cut_with_its_last_row_as_the_frames_stage_does():
    """The face stage may have tracked fewer frames than the frames stage decoded (a clip's last frames)."""
    table = face_table(np.linspace(100, 200, 68), np.linspace(50, 250, 68), frames=2)
    table.loc[1, [f"x_{i}" for i in range(68)]] += 40  # the face moved right in the last row
    past, last = crop_transforms(table, [0, 5], "aligned", 60, 0.25)[1], crop_transforms(table, [1], "aligned", 60, 0.25)[0]
    assert np.array_equal(past, last) and not np.array_equal(past, crop_transforms(table, [0], "aligned", 60, 0.25)[0])


def test_action_unit_bars_are_the_mean_intensity_over_the_frames_with_a_face():
    """Rows without a face hold no measurement; AU*_c columns are presence (0/1), not an intensity."""
    face = pd.DataFrame({"success": [1, 0, 1], "AU01_r": [1.0, 5.0, 2.0], "AU12_r": [2.0, 0.0, 4.0], "AU12_c": [1.0, 0.0, 1.0]})
    assert au_intensities(face).to_dict() == {"AU01_r": 1.5, "AU12_r": 3.0}
    assert au_intensities(face.assign(success=0)).empty
    # a backend that writes no success column: every row is a frame with a face
    assert au_intensities(face.drop(columns="success")).to_dict() == {"AU01_r": 8 / 3, "AU12_r": 2.0}


def test_previews_take_the_classes_in_label_index_order_whatever_their_clip_ids():
    clips = pd.DataFrame({"clip_id": ["a1", "b1", "c1", "c2"], "label": ["z", "x", "y", "y"], "label_index": [2, 0, 1, 1]})
    assert choose_clips(clips, 3)["clip_id"].tolist() == ["b1", "c1", "a1"]
    assert choose_clips(clips, 2)["clip_id"].tolist() == ["b1", "c1"]


def test_landmarks_map_into_the_letterbox_of_the_frame_as_shown_and_a_faceless_table_into_no_face_crop():
    """Non-square pixels: a 400 x 200 frame of pixel aspect 2 is shown 800 x 200, letterboxed into
    100 px at scale 1/8 (25 px tall, 37 px padding on top); a face crop of a table without rows is unknown."""
    xs, ys = np.linspace(100, 200, 68), np.linspace(50, 250, 68)
    (points, box), = frame_annotations(face_table(xs, ys), [0], "full", 100, 0.25, 400, 200, pixel_aspect=2.0)
    np.testing.assert_allclose(points, np.stack([xs / 4, 37 + ys / 8], axis=1))
    assert box == pytest.approx((25, 37 + 6.25, 50, 37 + 31.25))
    for crop in ("face", "aligned"):
        assert frame_annotations(face_table(xs, ys).iloc[:0], [0, 2], crop, 100, 0.25) == [(None, None)] * 2


def preview_files(root: Path, clip_id: str):
    return root / "frames" / f"{clip_id}.npy", root / "openface" / f"{clip_id}.csv", root / "spectrograms" / f"{clip_id}_mel.png"


def drawn_previews(monkeypatch):
    """The figures the previews save, instead of their PNG files."""
    figures = []
    monkeypatch.setattr(plots, "save_png", lambda figure, path: figures.append(figure))
    return figures


def test_a_preview_shows_the_clips_frames_marks_action_units_and_spectrograms(tmp_path, monkeypatch):
    """Frames of the stored size, each with the face box where its landmarks are known (the letterbox
    of the frame as shown), the AU bars over the frames with a face, log-Mel then MFCC with band 0
    at the bottom, and a title naming the clip, its label, speaker and label-derived targets."""
    results = tmp_path / "results"
    _, usable = fake_dataset(results, "enterface", ["anger", "disgust"], speakers=1, per_class=1, steps=8, crop="full")
    root = results / "enterface"
    clip = usable.iloc[1].to_dict()
    figures = drawn_previews(monkeypatch)
    previews.render_preview(clip, root, "full", list(range(0, 16, 2)), 0.25, 64.0, 48.0, tmp_path / "p.png", pixel_aspect=2.0)
    (figure,) = figures
    assert tuple(figure.get_size_inches()) == pytest.approx((12, 5.6))  # 1.5 in a frame
    assert figure._suptitle.get_text() == "enterface enterface_0_di_0: disgust (speaker enterface0), target valence +0.10 / arousal -0.10 (label-derived)"
    top, bottom = figure.subfigs
    assert len(top.axes) == 8
    for axes in top.axes:
        assert axes.get_xlim() == (-0.5, 31.5) and axes.get_ylim() == (31.5, -0.5)
        (box,) = axes.patches  # 64 x 48 at pixel aspect 2: shown 128 x 48, scale 1/4, 12 px tall from y = 10
        assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == pytest.approx((0, 10 + 9 / 4, 20, 30 / 4), abs=0.02)
    au_axes, mel_axes, mfcc_axes = bottom.axes
    assert [bar.get_width() for bar in au_axes.patches] == [1.5, 3.0]
    assert [label.get_text() for label in au_axes.get_yticklabels()] == ["AU01", "AU12"]
    for axes, bands, name in ((mel_axes, 32, "log-Mel"), (mfcc_axes, 12, "MFCC")):
        (image,) = axes.images
        assert axes.get_title() == name and image.get_array().shape == (bands, 50) and list(image.get_extent()) == [0, 50, 0, bands]
    figures.clear()
    previews.render_preview({**clip, "valence": np.nan}, root, "full", list(range(0, 16, 2)), 0.25, 64.0, 48.0, tmp_path / "p.png")
    assert figures[0]._suptitle.get_text() == "enterface enterface_0_di_0: disgust (speaker enterface0)"


def test_a_preview_without_a_clips_marks_face_table_or_spectrogram_says_so(tmp_path, monkeypatch):
    """Sampled frames that do not match the stored ones get no marks; a missing face table no marks
    and a note instead of the AU bars; a missing spectrogram image a note."""
    results = tmp_path / "results"
    _, usable = fake_dataset(results, "enterface", ["anger"], speakers=1, per_class=1, crop="full")
    root = results / "enterface"
    clip = usable.iloc[0].to_dict()
    figures = drawn_previews(monkeypatch)
    previews.render_preview(clip, root, "full", [0, 2, 4], 0.25, 64.0, 48.0, tmp_path / "p.png")  # 4 frames stored
    assert not any(axes.patches for axes in figures[0].subfigs[0].axes)
    _, face_csv, mel_png = preview_files(root, clip["clip_id"])
    face_csv.unlink()
    mel_png.unlink()
    previews.render_preview(clip, root, "full", [0, 2, 4, 6], 0.25, 64.0, 48.0, tmp_path / "p.png")
    top, bottom = figures[1].subfigs
    assert not any(axes.patches for axes in top.axes)
    au_axes, mel_axes, mfcc_axes = bottom.axes
    assert [text.get_text() for text in au_axes.texts] == ["no AU intensities\nfrom this face backend"]
    assert [text.get_text() for text in mel_axes.texts] == ["no log-Mel image"] and not mel_axes.images and mfcc_axes.images


def test_dataset_previews_draw_as_many_clips_as_asked(tmp_path, monkeypatch):
    """``count`` clips, one per class first, each PNG named after its clip and listed in previews.json."""
    _, usable = fake_dataset(tmp_path, "enterface", ["anger", "disgust", "fear"], crop="full")
    root = tmp_path / "enterface"
    monkeypatch.setattr(previews, "render_preview", lambda clip, *args: Path(args[6]).write_bytes(PNG_MAGIC))
    folder = tmp_path / "previews"
    listed = previews.dataset_previews([root / "shards" / "tabular" / "0.parquet"], [root / "preprocess" / "frames" / "0.parquet"],
                                       [root / "preprocess" / "face" / "0.parquet"], root, 0.25, folder, count=2)  # fmt: skip
    chosen = ["enterface_0_an_0", "enterface_0_di_0"]
    assert listed == [{"clip_id": c, "label": label, "speaker": "enterface0", "png": f"{c}.png"} for c, label in zip(chosen, ["anger", "disgust"])]
    assert json.loads((folder / "previews.json").read_text()) == {"clips": listed}
    assert sorted(path.name for path in folder.glob("*.png")) == [f"{c}.png" for c in chosen]


# ---- report page -----------------------------------------------------------------------------------


def fake_dataset(results: Path, dataset: str, labels, speakers=4, per_class=2, quarantined=(), size=32, steps=4, crop="face"):
    """A dataset folder as preprocessing and fuse leave it (manifest, quarantine, tabular shard, chunk
    tables, per-clip frames, face CSV and spectrogram images), small and synthetic."""
    rng = np.random.default_rng(len(dataset))
    root = results / dataset
    rows = []
    for speaker in range(speakers):
        for index, label in enumerate(labels):
            for take in range(per_class):
                clip_id = f"{dataset}_{speaker}_{label[:2]}_{take}"
                rows.append({"clip_id": clip_id, "dataset": dataset, "path": f"{clip_id}.avi", "speaker": f"{dataset}{speaker}",
                             "label": label, "label_index": index, "valence": 0.1 * index, "arousal": -0.1 * index,
                             "fold": speaker % 2 + 1, "chunk": 0})  # fmt: skip
    manifest = pd.DataFrame(rows)
    root.mkdir(parents=True, exist_ok=True)
    manifest.to_parquet(root / "manifest.parquet")
    entries = [{"clip_id": c, "path": f"{c}.avi", "stage": s, "reason": r} for c, s, r in quarantined]
    pd.DataFrame(entries, columns=["clip_id", "path", "stage", "reason"]).to_csv(root / "quarantine.csv", index=False)
    usable = manifest[~manifest["clip_id"].isin({c for c, _, _ in quarantined})].copy()
    for column in FEATURES:
        usable[column] = usable["label_index"] * 3.0 + rng.normal(size=len(usable))
    (root / "shards" / "tabular").mkdir(parents=True)
    usable.to_parquet(root / "shards" / "tabular" / "0.parquet")
    for stage in ("audio", "face", "frames"):
        (root / "preprocess" / stage).mkdir(parents=True)
    pd.DataFrame({"clip_id": usable["clip_id"], "status": "ok", "source_frames": [list(range(0, 2 * steps, 2))] * len(usable), "crop": crop}).to_parquet(
        root / "preprocess" / "frames" / "0.parquet"
    )
    pd.DataFrame({"clip_id": usable["clip_id"], "status": "ok", "width": 64.0, "height": 48.0}).to_parquet(root / "preprocess" / "face" / "0.parquet")
    pd.DataFrame({"clip_id": usable["clip_id"], "status": "ok"}).to_parquet(root / "preprocess" / "audio" / "0.parquet")
    xs, ys = 20 + 20 * np.cos(np.linspace(0, 6, 68)), 24 + 15 * np.sin(np.linspace(0, 6, 68))
    face = face_table(xs, ys, frames=2 * steps).assign(AU01_r=1.5, AU12_r=3.0)
    for clip_id in usable["clip_id"]:
        for kind in ("frames", "openface", "spectrograms"):
            (root / kind).mkdir(exist_ok=True)
        np.save(root / "frames" / f"{clip_id}.npy", rng.integers(0, 255, (steps, size, size, 3), dtype=np.uint8))
        face.to_csv(root / "openface" / f"{clip_id}.csv", index=False)
        Image.fromarray(rng.integers(0, 255, (32, 50), dtype=np.uint8)).save(root / "spectrograms" / f"{clip_id}_mel.png")
        Image.fromarray(rng.integers(0, 255, (12, 50), dtype=np.uint8)).save(root / "spectrograms" / f"{clip_id}_mfcc.png")
    return manifest, usable


def test_quarantine_counts_unique_clips_per_stage_and_reason():
    quarantine = pd.DataFrame(
        {"clip_id": ["a", "a", "b", "b", "c"], "path": "", "stage": ["audio", "face", "face", "face", "index"],
         "reason": ["zero-length file: a.avi", "zero-length file: a.avi", "no face in any frame", "no face in any frame", "bad name"]}
    )  # fmt: skip
    summary = quarantine_summary(quarantine)
    assert summary[["stage", "reason", "clips"]].values.tolist() == [
        ["audio", "zero-length file", 1], ["face", "no face in any frame", 1], ["face", "zero-length file", 1], ["index", "bad name", 1]
    ]  # fmt: skip


def test_final_models_validation_clips_are_summarised_and_reported(tmp_path):
    folds = two_folds(tmp_path / "exp")
    final = tmp_path / "exp" / "final"  # validation clips: true a h h, predicted a a h -> recalls 1, 1/2
    write_fold(final, LABELS2, predictions_table(LABELS2, ["anger", "happiness", "happiness"], ["anger", "anger", "happiness"]))
    plots = {key: tmp_path / "plots" / f"{key}.png" for key in ("confusion", "curves", "va")}
    outputs = {"summary": tmp_path / "exp" / "summary.json", "table": tmp_path / "s.csv", **plots}
    evaluate_experiment(folds, "exp", outputs, final=final)
    summary = json.loads(outputs["summary"].read_text())
    assert summary["final_validation"]["clips"] == 3
    assert summary["final_validation"]["metrics"]["uar"]["mean"] == pytest.approx(0.75)
    assert summary["final_validation"]["metrics"]["war"]["mean"] == pytest.approx(2 / 3)
    assert summary["overall"]["metrics"]["war"]["per_fold"].keys() == {"1", "2"}  # the test folds alone
    page = build_report([], [{"name": "exp", "summary": outputs["summary"], "plots": plots}], None, {},
                        tmp_path / "report" / "index.html", tmp_path / "d.csv", tmp_path / "q.csv")  # fmt: skip
    row = re.search(r"<tr><td class=\"\">final model, its 3 validation clips</td>(.*?)</tr>", page).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', row)[:2] == ["0.750", "0.667"]
    assert "lean optimistic" in page
    evaluate_experiment(folds, "exp", outputs)  # no final model: no row
    assert "final_validation" not in json.loads(outputs["summary"].read_text())


def test_report_page_shows_the_computed_numbers_and_the_va_note(tmp_path):
    results = tmp_path / "results"
    fake_dataset(results, "crema_d", LABELS2, quarantined=[("crema_d_0_an_0", "face", "no face in any frame"),
                                                           ("crema_d_0_an_0", "audio", "no audio stream"),
                                                           ("crema_d_9_xx_0", "index", "unknown emotion code: XX")])  # fmt: skip
    folds = two_folds(results / "experiments" / "exp")
    plots = {key: results / "experiments" / "exp" / "plots" / f"{key}.png" for key in ("confusion", "curves", "va")}
    summary_path = results / "experiments" / "exp" / "summary.json"
    evaluate_experiment(folds, "exp", {"summary": summary_path, "table": tmp_path / "s.csv", **plots})
    baselines_path = results / "experiments" / "exp" / "baselines.json"
    write_json(baselines_path, {"l2": 1.0, "majority_class": {"1": "anger"},
                                "majority": {"metrics": {"uar": {"mean": 0.5, "std": 0.0}}},
                                "logistic_regression": {"metrics": {"uar": {"mean": 0.8125, "std": 0.0625}}}})  # fmt: skip
    datasets = [{"name": "crema_d", "manifest": results / "crema_d" / "manifest.parquet", "quarantine": results / "crema_d" / "quarantine.csv",
                 "tabular": [results / "crema_d" / "shards" / "tabular" / "0.parquet"]}]  # fmt: skip
    experiments = [{"name": "exp", "summary": summary_path, "baselines": baselines_path, "plots": plots}]
    html_path = results / "report" / "index.html"
    page = build_report(datasets, experiments, None, {}, html_path, results / "report" / "d.csv", results / "report" / "q.csv")

    assert VA_NOTE in page and "label-derived" in page
    assert '<li><a href="#exp-exp">exp</a></li>' in page and '<h3 id="exp-exp">exp</h3>' in page  # the contents link each experiment
    war = (3 / 4 + 2 / 3) / 2
    assert f"{war:.3f} ± {abs(3 / 4 - 2 / 3) / math.sqrt(2):.3f}" in page  # the model's WAR over folds
    assert "0.750 ± 0.000" in page  # UAR
    assert "0.812 ± 0.062" in page and "0.500 ± 0.000" in page  # baselines
    assert "video branch" in page
    assert '<img src="../experiments/exp/plots/confusion.png"' in page  # relative to the page
    # 16 clips indexed; quarantine: crema_d_0_an_0 in two stages counts once, the index entry is not indexed
    stats = pd.read_csv(results / "report" / "d.csv")
    assert stats[stats["label"] == "anger"][["indexed", "usable"]].values.tolist() == [[8, 7]]
    assert re.search(r"crema_d: 2 unique clips quarantined", page)
    cells = re.findall(r'<td class="num">([^<]*)</td>', page.split("<h3>Clips per class")[0])
    assert cells[:9] == ["17", "1", "16", "4", "0", "1", "2", "15", "4"]


def test_report_without_experiments_says_why_there_are_no_models_or_baselines(tmp_path):
    results = tmp_path / "results"
    fake_dataset(results, "enterface", ["anger", "surprise"])
    datasets = [{"name": "enterface", "manifest": results / "enterface" / "manifest.parquet",
                 "quarantine": results / "enterface" / "quarantine.csv", "tabular": [results / "enterface" / "shards" / "tabular" / "0.parquet"]}]  # fmt: skip
    page = build_report(datasets, [], None, {}, results / "report" / "index.html", tmp_path / "d.csv", tmp_path / "q.csv")
    assert "No experiments are configured" in page and "baselines" in page
    assert "enterface: no clip quarantined" in page


# ---- the workflow --------------------------------------------------------------------------------------

def complete_upstream(workdir: Path, datasets, experiments) -> None:
    """The remaining outputs of the stages before evaluation (demo corpus, index, preprocessing,
    fuse, training), with modification times in stage order, so that Snakemake finds them up to date."""
    layers = [
        [f"resources/demo/{d}" for d in datasets] + [f"resources/demo/{d}_truth.parquet" for d in datasets],
        [f"results/{d}/{name}" for d in datasets for name in ("manifest.parquet", "quarantine/index.csv")],
        [f"results/{d}/{kind}/{stage}/0.{ext}" for d in datasets for stage in ("audio", "face", "frames")
         for kind, ext in (("preprocess", "parquet"), ("quarantine", "csv"))],
        [f"results/{d}/{name}" for d in datasets for name in ("quarantine.csv", "shards/tabular/0.parquet", "shards/tfrecord/0.tfrecord")],
        [str(path.relative_to(workdir)) for e in experiments for path in (workdir / "results" / "experiments" / e).rglob("*")],
    ]  # fmt: skip
    start = time.time() - 60
    for index, layer in enumerate(layers):
        for name in layer:
            path = workdir / name
            if name.startswith("resources/demo/") and not name.endswith(".parquet"):
                path.mkdir(parents=True, exist_ok=True)
                path = path / ".snakemake_timestamp"  # where Snakemake keeps a directory output's time
                path.write_bytes(b"")
            elif not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
            os.utime(path, (start + 5 * index, start + 5 * index))


EVALUATION_RULES = {"evaluate_experiment", "evaluate_baselines", "cross_corpus", "dataset_previews", "build_report"}


def fake_experiment_workdir(workdir: Path) -> str:
    """Datasets as fuse leaves them and experiments as training leaves them (no corpus, no model)."""
    results = workdir / "results"
    crema = ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]
    enterface = ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    _, crema_usable = fake_dataset(results, "crema_d", crema, quarantined=[("crema_d_0_ne_1", "face", "no face in any frame")])
    _, enterface_usable = fake_dataset(results, "enterface", enterface, crop="full")
    config = {
        "datasets": {"crema_d": {"chunks": 1}, "enterface": {"chunks": 1}, "mafw": {"enabled": False}},
        "experiments": [
            {"name": "crema_hybrid", "datasets": ["crema_d"], "fusion": "hybrid", "folds": [1, 2]},
            {"name": "mix_late", "datasets": ["crema_d", "enterface"], "fusion": "late", "folds": [1, 2], "final": False},
        ],
    }
    path = write_demo_config(workdir / "config.yaml", config)

    def fold_predictions(clips, labels, branches=False):
        clips = clips[clips["label"].isin(labels)].reset_index(drop=True)
        predicted = [label if i % 3 else labels[(labels.index(label) + 1) % len(labels)] for i, label in enumerate(clips["label"])]
        table = predictions_table(labels, clips["label"].tolist(), predicted)
        table["clip_id"], table["dataset"], table["speaker"] = clips["clip_id"], clips["dataset"], clips["speaker"]
        table["valence"], table["arousal"] = clips["valence"].to_numpy(), clips["arousal"].to_numpy()
        table["valence_pred"], table["arousal_pred"] = table["valence"] * 0.5, table["arousal"] * 0.5
        if branches:
            for branch in ("video", "audio", "face"):
                table[f"{branch}_predicted_label"] = clips["label"] if branch == "video" else predicted
        return table

    for name, clips, labels, branches in (
        ("crema_hybrid", crema_usable, crema, True),
        ("mix_late", pd.concat([crema_usable, enterface_usable]), ["anger", "disgust", "fear", "happiness", "sadness"], False),
    ):
        experiment = results / "experiments" / name
        for fold in (1, 2):
            test = clips[clips["fold"] == fold]
            rest = clips[(clips["fold"] != fold) & clips["label"].isin(labels)]
            split = {"train": rest["clip_id"].tolist()[2:], "validation": rest["clip_id"].tolist()[:2], "test": test[test["label"].isin(labels)]["clip_id"].tolist()}
            write_fold(experiment / f"fold_{fold}", labels, fold_predictions(test, labels, branches), split=split, name=name, fusion=name.split("_")[1])
        if name == "crema_hybrid":
            common = ["anger", "disgust", "fear", "happiness", "sadness"]
            write_fold(experiment / "final", crema, fold_predictions(crema_usable, crema))
            cross = experiment / "cross_enterface"
            write_fold(cross, common, fold_predictions(enterface_usable, common), recorded={"labels": common})
        else:
            for heldout, usable in (("crema_d", crema_usable), ("enterface", enterface_usable)):
                write_fold(experiment / f"heldout_{heldout}", labels, fold_predictions(usable, labels))
    complete_upstream(workdir, ["crema_d", "enterface"], ["crema_hybrid", "mix_late"])
    return path


def test_workflow_evaluates_and_reports_fake_experiments(tmp_path):
    config = fake_experiment_workdir(tmp_path)
    # Modification times decide (a workflow script edited after the fake upstream was written must
    # not count as a code change here).
    options = ("--configfile", config, "--rerun-triggers", "mtime")
    dry = run_snakemake(tmp_path, "report", "-n", *options).stdout
    planned = set(re.findall(r"^\s*(?:local)?rule (\w+):", dry, re.M)) - {"report"}
    assert planned == EVALUATION_RULES, dry  # only evaluation: every earlier stage is up to date
    run_snakemake(tmp_path, "report", "--cores", "2", *options)
    results = tmp_path / "results"
    for name in ("crema_hybrid", "mix_late"):
        for path in (*layout.EXPERIMENT_OUTPUTS.values(), *layout.BASELINE_OUTPUTS.values()):
            assert Path(tmp_path / path.format(experiment=name)).is_file(), path
    summary = json.loads((results / "experiments" / "crema_hybrid" / "summary.json").read_text())
    assert set(summary["branches"]) == {"video", "audio", "face"}
    assert summary["branches"]["video"]["metrics"]["uar"]["mean"] == pytest.approx(1.0)
    # the rule reads the corpus' manifest: fold 1 lists the clip the face stage quarantined, unscored
    protocol = summary["protocol"]["metrics"]
    assert protocol["listed_clips"]["per_fold"] == {"1": 24, "2": 24} and protocol["scored_clips"]["per_fold"] == summary["clips"] == {"1": 23, "2": 24}
    mix = json.loads((results / "experiments" / "mix_late" / "summary.json").read_text())
    assert set(mix["per_dataset"]) == {"crema_d", "enterface"}
    assert "final_validation" in summary and "final_validation" not in mix  # mix_late has final: false

    matrix = pd.read_csv(results / "report" / "cross_corpus.csv")
    assert matrix[["train_dataset", "experiment"]].values.tolist() == [["crema_d", "crema_hybrid"]]
    assert matrix.loc[0, "crema_d"] == pytest.approx(summary["overall"]["metrics"]["uar"]["mean"])
    assert not np.isnan(matrix.loc[0, "enterface"])
    loco = pd.read_csv(results / "report" / "leave_one_corpus_out.csv")
    assert loco["experiment"].tolist() == ["mix_late"] and loco[["crema_d", "enterface"]].notna().all(axis=None)

    page = (results / "report" / "index.html").read_text()
    assert "label-derived" in page and "crema_hybrid" in page and "baseline: logistic regression" in page
    assert "The test folds list 48 clips of these classes; 1 of them a preprocessing stage quarantined" in page
    assert "<th>clips not scored</th>" in page and "one over the class count" in page  # leave-one-corpus-out says what it scored
    assert page.count("final model, its") == 1
    uar = format_mean_std(summary["overall"]["metrics"]["uar"])
    assert uar in page
    for dataset in ("crema_d", "enterface"):
        previews = json.loads((results / "report" / "previews" / dataset / "previews.json").read_text())["clips"]
        assert len(previews) == 3 and len({clip["label"] for clip in previews}) == 3
        for clip in previews:
            assert (results / "report" / "previews" / dataset / clip["png"]).read_bytes()[:8] == PNG_MAGIC
            assert f'previews/{dataset}/{clip["png"]}' in page
    # nothing left to do; snakemake's own report collects the registered outputs
    assert "Nothing to be done" in run_snakemake(tmp_path, "report", "-n", *options).stdout
    run_snakemake(tmp_path, "report", "--report", "snakemake_report.html", *options)
    assert (tmp_path / "snakemake_report.html").stat().st_size > 0


def test_the_datasets_table_counts_usable_clips_kept_with_a_flag():
    manifest = pd.DataFrame({"clip_id": ["a", "b", "c"], "label": ["anger"] * 3, "label_index": [0] * 3, "speaker": ["s1", "s1", "s2"]})
    usable = manifest.assign(audio_misaligned=[True, False, True], short=[False, False, True], truncated=[False] * 3)
    quarantine = pd.DataFrame({"clip_id": [], "path": [], "stage": [], "reason": []})
    statistics = dataset_statistics("mafw", manifest, quarantine, usable)
    assert (statistics["usable_audio_misaligned"], statistics["usable_short"], statistics["usable_truncated"]) == (2, 1, 0)
    # Shards from before the flags existed count none.
    assert dataset_statistics("mafw", manifest, quarantine, manifest)["usable_short"] == 0
    html = datasets_section([statistics])
    assert "usable with misaligned audio" in html and "usable, fewer frames than num_frames" in html


def test_the_datasets_table_counts_speakers_only_where_the_corpus_names_them():
    """MAFW names no speakers (each clip is its own group): its 10,045 clips are not 10,045 speakers."""
    manifest = pd.DataFrame({"clip_id": ["a", "b", "c"], "label": ["anger"] * 3, "label_index": [0] * 3, "speaker": ["a", "b", "c"]})
    quarantine = pd.DataFrame({"clip_id": [], "path": [], "stage": [], "reason": []})
    mafw = dataset_statistics("mafw", manifest, quarantine, manifest)
    crema_d = dataset_statistics("crema_d", manifest.assign(speaker=["1001", "1001", "1002"]), quarantine, manifest)
    assert (mafw["speakers"], mafw["usable_speakers"]) == (None, None)
    assert (crema_d["speakers"], crema_d["usable_speakers"]) == (2, 3)
    rows = {row.split("</td>")[0]: row.split("</tr>")[0] for row in datasets_section([mafw, crema_d]).split("<tr>")}
    assert "<td class=\"num\">n/a</td>" in rows['<td class="">mafw'] and "n/a" not in rows['<td class="">crema_d']


def test_the_datasets_table_counts_the_files_the_index_left_out_beside_a_clip_of_their_id():
    """A stray copy (CREMA-D's VideoFlash/backup/<clip>.flv) or a duplicate is quarantined under the
    id of a clip the index keeps: it is one more file found and left out, not the kept clip lost."""
    manifest = pd.DataFrame({"clip_id": ["a", "b"], "label": ["anger"] * 2, "label_index": [0] * 2, "speaker": ["s1", "s2"]})
    quarantine = pd.DataFrame({
        "clip_id": ["a", "a", "b", "c"],
        "path": ["VideoFlash/backup/a.flv", "AudioWAV/a.mp3", "b.avi", "c.avi"],
        "stage": ["index", "index", "face", "index"],
        "reason": ["in a folder below VideoFlash", "not a .wav file", "no face in any frame", "bad name"],
    })  # fmt: skip
    statistics = dataset_statistics("crema_d", manifest, quarantine, manifest[manifest["clip_id"] == "a"])
    assert {key: statistics[key] for key in ("found", "quarantined_at_index", "indexed", "quarantined_indexed", "quarantined", "usable")} == {
        "found": 5, "quarantined_at_index": 3, "indexed": 2, "quarantined_indexed": 1, "quarantined": 4, "usable": 1
    }  # fmt: skip
    assert quarantine_summary(quarantine)["clips"].sum() == 4


def test_the_quarantine_summary_counts_each_file_the_index_left_out_under_one_clip_id():
    """Two stray copies of one clip (VideoFlash/backup/, VideoFlash/old/) are two files the index left
    out, under the id of the clip it keeps."""
    quarantine = pd.DataFrame({
        "clip_id": ["a", "a", "b"],
        "path": ["VideoFlash/backup/a.flv", "VideoFlash/old/a.flv", "b.flv"],
        "stage": ["index", "index", "face"],
        "reason": ["in a folder below VideoFlash; CREMA-D keeps its clips directly in VideoFlash/"] * 2 + ["no face in any frame"],
    })  # fmt: skip
    assert quarantine_summary(quarantine)[["stage", "reason", "clips"]].values.tolist() == [
        ["face", "no face in any frame", 1], ["index", "in a folder below VideoFlash; CREMA-D keeps its clips directly in VideoFlash/", 2]
    ]  # fmt: skip


def test_the_classes_are_counted_in_label_index_order():
    """The per-class table lists a corpus' classes in its label order (anger first), whatever order
    the manifest's rows come in."""
    manifest = pd.DataFrame({"clip_id": ["a", "b", "c"], "label": ["sadness", "", "anger"], "label_index": [5, -1, 0], "speaker": ["1001"] * 3})
    quarantine = pd.DataFrame({"clip_id": [], "path": [], "stage": [], "reason": []})
    statistics = dataset_statistics("crema_d", manifest, quarantine, manifest.iloc[[0]])
    assert statistics["classes"] == {"anger": {"indexed": 1, "usable": 0}, "sadness": {"indexed": 1, "usable": 1}}
    assert list(statistics["classes"]) == ["anger", "sadness"] and statistics["unlabelled"] == 1


def test_the_previews_section_shows_each_listed_clip_or_says_there_is_none(tmp_path):
    page_dir = tmp_path / "report"
    folders = {name: page_dir / "previews" / name for name in ("crema_d", "enterface", "mafw")}
    write_json(folders["crema_d"] / "previews.json", {"clips": [{"clip_id": "1001_DFA_ANG_XX", "label": "anger", "speaker": "1001", "png": "1001_DFA_ANG_XX.png"}]})
    write_json(folders["enterface"] / "previews.json", {"clips": []})  # mafw: none written
    section = report.previews_section({name: str(folder) for name, folder in folders.items()}, page_dir)
    assert '<img src="previews/crema_d/1001_DFA_ANG_XX.png"' in section and "<figcaption>1001_DFA_ANG_XX: anger</figcaption>" in section
    assert section.count("No usable clip to preview.") == 2


def test_previews_draw_each_clip_with_its_frames_tables_crop_and_pixel_aspect(tmp_path, monkeypatch):
    """An anamorphic clip's landmarks are mapped as the frames stage letterboxed it (its pixel_aspect);
    frames tables written before that column was added count as square pixels."""
    _, usable = fake_dataset(tmp_path, "enterface", ["anger", "surprise"], crop="full")
    drawn = {}
    monkeypatch.setattr(previews, "render_preview", lambda clip, outdir, crop, source, margin, width, height, path, aspect: drawn.update(
        {clip["clip_id"]: (crop, source, width, height, Path(path).name, aspect)}))  # fmt: skip
    table = tmp_path / "enterface" / "preprocess" / "frames" / "0.parquet"
    frames = pd.read_parquet(table)
    frames.assign(pixel_aspect=np.where(frames["clip_id"] == "enterface_0_an_0", 4 / 3, 1.0)).to_parquet(table)
    shown = lambda: previews.dataset_previews([tmp_path / "enterface" / "shards" / "tabular" / "0.parquet"], [table],
                                              [tmp_path / "enterface" / "preprocess" / "face" / "0.parquet"], tmp_path / "enterface", 0.25, tmp_path / "previews")  # fmt: skip
    listed = shown()
    assert [clip["clip_id"] for clip in listed] == ["enterface_0_an_0", "enterface_0_su_0", "enterface_0_an_1"]
    assert drawn["enterface_0_an_0"] == ("full", [0, 2, 4, 6], 64.0, 48.0, "enterface_0_an_0.png", 4 / 3)
    assert drawn["enterface_0_su_0"][-1] == 1.0
    assert json.loads((tmp_path / "previews" / "previews.json").read_text())["clips"] == listed
    frames.to_parquet(table)  # no pixel_aspect column
    shown()
    assert drawn["enterface_0_an_0"][-1] == 1.0
