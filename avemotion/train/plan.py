"""The training runs each experiment plans and the sizes of their splits, from the indexed manifests
alone (before any clip is preprocessed): the config check compares them with the batch size, and
benchmarks/recipe_cost.py turns them into GPU hours."""

from __future__ import annotations

import pandas as pd

from avemotion.config import ConfigError
from avemotion.train.settings import experiment_names, experiment_settings, heldout_datasets
from avemotion.train.splits import speaker_splits


def planned_runs(settings: dict) -> list[tuple[str, int | None, str | None]]:
    """(run folder, test fold, held-out dataset) of each training job of one experiment."""
    runs = [(f"fold_{fold}", fold, None) for fold in settings["folds"]]
    runs += [("final", None, None)] if settings["final"] else []
    return runs + [(f"heldout_{dataset}", None, dataset) for dataset in heldout_datasets(settings)]


def training_runs(config: dict, manifests: dict[str, pd.DataFrame], experiments=None) -> list[dict]:
    """Per training job of every experiment (of ``experiments``, where given) whose datasets are all
    in ``manifests``: its clip counts (train, validation, test) inside the experiment's labels, split
    as the job will split them."""
    found = []
    for name in experiment_names(config) if experiments is None else experiments:
        settings = experiment_settings(config, name)
        if not all(dataset in manifests for dataset in settings["datasets"]):
            continue
        clips = pd.concat([manifests[dataset] for dataset in settings["datasets"]], ignore_index=True)
        clips = clips[clips["label"].isin(settings["labels"])]
        training = settings["training"]
        for run, fold, held_out in planned_runs(settings):
            split = speaker_splits(clips, fold, training["validation_fraction"], training["seed"], held_out)
            found.append({"experiment": name, "run": run, **{part: len(ids) for part, ids in split.items()}})
    return found


def batch_size_error(batch_size: int, train_clips: int, experiment: str, run: str) -> ConfigError | None:
    """A batch larger than a run's training clips would train one short step per epoch with an lr
    scaled for the full batch: the error, with the numbers (None when the batch fits)."""
    if train_clips >= batch_size:
        return None
    return ConfigError(
        f"config: training.batch_size: {batch_size} is larger than the {train_clips} training clips of "
        f"experiment {experiment!r}, {run}; allowed values: at most {train_clips} "
        "(set it under experiments[].training for this experiment)"
    )


def check_batch_sizes(config: dict, manifests: dict[str, pd.DataFrame], experiments=None) -> None:
    """Before any job, once the corpora are indexed (results/*/manifest.parquet): every run's batch
    fits its training clips. The training job checks its own split again (quarantined clips)."""
    for run in training_runs(config, manifests, experiments):
        batch_size = experiment_settings(config, run["experiment"])["training"]["batch_size"]
        error = batch_size_error(batch_size, run["train"], run["experiment"], run["run"])
        if error:
            raise error
