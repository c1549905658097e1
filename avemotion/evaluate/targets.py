"""Which evaluation files a config has: the runs each experiment's evaluation reads, and the
targets of the train, evaluate and report stages (the paths themselves are avemotion.layout's).

Read (written by training), per experiment, from its run folders:
- ``fold_{fold}`` for each test fold: predictions.parquet, metrics.json, settings.json, split.json,
  history.csv (and model.keras);
- ``heldout_{dataset}`` for each dataset of a mixture (an experiment with more than one dataset):
  predictions.parquet and metrics.json of a model trained on the mixture's other datasets, on every
  clip of ``dataset`` inside the mixture's label set (leave one corpus out);
- ``cross_{dataset}`` for a single-dataset experiment with ``final: true``, for each other enabled
  dataset sharing at least two of its labels (and sampled alike): predictions.parquet and
  metrics.json of the final model on every clip of ``dataset`` with one of the common labels; the
  probability columns are the common labels only and metrics.json names them under ``labels``.
Which datasets get a heldout_/cross_ run is training's decision (avemotion.train.settings:
heldout_datasets, cross_corpus_datasets); an experiment for which a kind does not apply has none.

Written: per experiment summary.json, summary.csv, plots/*.png, baselines.json, baselines.csv;
under results/report/ the page, its tables, the cross-corpus tables and heatmaps, and previews/.
"""

from __future__ import annotations

from avemotion.config import enabled_datasets
from avemotion.layout import (
    BASELINE_OUTPUTS,
    CROSS_CORPUS_OUTPUTS,
    EXPERIMENT_OUTPUTS,
    FINAL_RUN,
    METRICS_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
    PREVIEWS_DIR,
    QUARANTINE,
    REPORT_OUTPUTS,
    SHARDS,
    chunk_paths,
    cross_run,
    fold_run,
    heldout_run,
    manifest_path,
    run_dir,
)
from avemotion.train.settings import cross_corpus_datasets, experiment_names, experiment_settings, heldout_datasets

# The files the cross-corpus tables read from a heldout_ or a cross_ folder, by role (the keys of
# an entry of cross_corpus_entries, which avemotion.evaluate.cross_corpus reads).
CROSS_CORPUS_RUN_FILES = {"predictions": PREDICTIONS_FILE, "metrics": METRICS_FILE}
PREVIEW_CLIPS = 3


# ---- which folders apply (decided by training: avemotion.train.settings) -------------------------


def heldout_folders(config: dict, name: str) -> dict[str, str]:
    """{dataset: folder} of the experiment's leave-one-corpus-out folders (none unless a mixture)."""
    return {d: run_dir(name, heldout_run(d)) for d in heldout_datasets(experiment_settings(config, name))}


def cross_folders(config: dict, name: str) -> dict[str, str]:
    """{dataset: folder} of the final model's predictions on the other corpora (none unless a
    single-dataset experiment with a final model and another enabled dataset it can be tested on)."""
    return {d: run_dir(name, cross_run(d)) for d in cross_corpus_datasets(config, name)}


def final_folder(config: dict, name: str) -> str | None:
    """The folder of the experiment's final model, None when it trains none (``final: false``)."""
    return run_dir(name, FINAL_RUN) if experiment_settings(config, name)["final"] else None


def final_files(config: dict, name: str, filename: str) -> list[str]:
    folder = final_folder(config, name)
    return [f"{folder}/{filename}"] if folder else []


def fold_folders(config: dict, name: str) -> dict[int, str]:
    """{fold: folder} of the experiment's test folds."""
    return {fold: run_dir(name, fold_run(fold)) for fold in experiment_settings(config, name)["folds"]}


def fold_files(config: dict, name: str, filename: str) -> list[str]:
    return [f"{folder}/{filename}" for folder in fold_folders(config, name).values()]


# ---- what the rules read -------------------------------------------------------------------------


def cross_corpus_entries(config: dict) -> dict[str, list[dict]]:
    """What the cross-corpus tables read: ``diagonal`` (single-dataset experiments' summary.json),
    ``cross`` (their final models' cross_ folders) and ``heldout`` (mixtures' heldout_ folders)."""
    diagonal, cross, heldout = [], [], []
    for name in experiment_names(config):
        datasets = experiment_settings(config, name)["datasets"]
        if len(datasets) == 1:
            summary = EXPERIMENT_OUTPUTS["summary"].format(experiment=name)
            diagonal.append({"experiment": name, "dataset": datasets[0], "summary": summary})
        for dataset, folder in cross_folders(config, name).items():
            files = {role: f"{folder}/{filename}" for role, filename in CROSS_CORPUS_RUN_FILES.items()}
            cross.append({"experiment": name, "train_dataset": datasets[0], "test_dataset": dataset, **files})
        for dataset, folder in heldout_folders(config, name).items():
            files = {role: f"{folder}/{filename}" for role, filename in CROSS_CORPUS_RUN_FILES.items()}
            heldout.append({"experiment": name, "datasets": list(datasets), "heldout_dataset": dataset, **files})
    return {"diagonal": diagonal, "cross": cross, "heldout": heldout}


def cross_corpus_inputs(config: dict) -> list[str]:
    entries = cross_corpus_entries(config)
    return [entry["summary"] for entry in entries["diagonal"]] + [
        entry[role] for kind in ("cross", "heldout") for entry in entries[kind] for role in CROSS_CORPUS_RUN_FILES
    ]


def report_datasets(config: dict) -> list[dict]:
    return [
        {
            "name": dataset,
            "manifest": manifest_path(dataset),
            "quarantine": QUARANTINE.format(dataset=dataset),
            "tabular": chunk_paths(SHARDS["tabular"], dataset, config["datasets"][dataset]["chunks"]),
        }
        for dataset in enabled_datasets(config)
    ]


def report_experiments(config: dict) -> list[dict]:
    return [
        {
            "name": name,
            "summary": EXPERIMENT_OUTPUTS["summary"].format(experiment=name),
            "baselines": BASELINE_OUTPUTS["json"].format(experiment=name),
            "plots": {key: EXPERIMENT_OUTPUTS[key].format(experiment=name) for key in ("confusion", "curves", "va")},
        }
        for name in experiment_names(config)
    ]


def report_previews(config: dict) -> dict[str, str]:
    return {dataset: PREVIEWS_DIR.format(dataset=dataset) for dataset in enabled_datasets(config)}


# ---- stage targets -------------------------------------------------------------------------------


def training_targets(config: dict) -> list[str]:
    """Each experiment's model per test fold, its final model (all speakers) where asked for, a
    mixture's leave-one-corpus-out models and a single corpus' cross-corpus predictions."""
    targets = []
    for name in experiment_names(config):
        targets += fold_files(config, name, METRICS_FILE) + final_files(config, name, MODEL_FILE)
        for folder in (*heldout_folders(config, name).values(), *cross_folders(config, name).values()):
            targets.append(f"{folder}/{METRICS_FILE}")
    return targets


def evaluation_targets(config: dict) -> list[str]:
    """Each experiment's summary, plots and baselines."""
    return [
        pattern.format(experiment=name)
        for name in experiment_names(config)
        for outputs in (EXPERIMENT_OUTPUTS, BASELINE_OUTPUTS)
        for pattern in outputs.values()
    ]


def report_targets(config: dict) -> list[str]:
    """The report page with its tables, the cross-corpus tables and every dataset's previews."""
    return [*REPORT_OUTPUTS.values(), *CROSS_CORPUS_OUTPUTS.values(), *report_previews(config).values()]
