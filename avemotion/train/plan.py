"""The training runs each experiment plans, the sizes of their splits (from the indexed manifests
alone, before any clip is preprocessed) and the phases and steps each trains: the config check looks
for empty splits and compares them with the batch and the update, the training job checks its own
split again and trains by these phases, and benchmarks/recipe_cost.py turns them into GPU hours."""

from __future__ import annotations

import math

import pandas as pd

from avemotion.config import ConfigError
from avemotion.job_params import QUIET_TRAINING
from avemotion.layout import FINAL_RUN, fold_run, heldout_run
from avemotion.train.settings import experiment_names, experiment_settings, heldout_datasets
from avemotion.train.splits import speaker_splits


def training_phases(training: dict) -> list[tuple[int, int, bool]]:
    """(first epoch, end epoch, backbone trainable) of each phase: the frozen-backbone warm start
    (heads and the other branches only), then fine-tuning of everything."""
    frozen = min(training["frozen_backbone_epochs"], training["epochs"])
    phases = [(0, frozen, False), (frozen, training["epochs"], True)]
    return [phase for phase in phases if phase[1] > phase[0]]


def accumulation_steps(training: dict) -> int:
    """How many batches' gradients make one optimizer update (training.accumulation_steps; absent: 1)."""
    return training.get("accumulation_steps", QUIET_TRAINING["accumulation_steps"])


def steps_per_epoch(train_clips: int, batch_size: int) -> int:
    """Batches that take ``train_clips`` clips once each in batches of ``batch_size`` (the last one
    partial): a training epoch's steps, and the validation stream's batches."""
    return max(1, math.ceil(train_clips / batch_size))


def planned_runs(settings: dict) -> list[tuple[str, int | None, str | None]]:
    """(run folder, test fold, held-out dataset) of each training job of one experiment."""
    runs = [(fold_run(fold), fold, None) for fold in settings["folds"]]
    runs += [(FINAL_RUN, None, None)] if settings["final"] else []
    return runs + [(heldout_run(dataset), None, dataset) for dataset in heldout_datasets(settings)]


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
            if held_out:  # scored on the classes its training corpora hold (the job's learned_labels)
                learned = set(clips.loc[clips["clip_id"].isin(split["train"]), "label"])
                split["test"] = list(clips.loc[clips["clip_id"].isin(split["test"]) & clips["label"].isin(learned), "clip_id"])
            found.append({"experiment": name, "run": run, "held_out": held_out, **{part: len(ids) for part, ids in split.items()}})
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


def accumulation_error(training: dict, train_clips: int, experiment: str, run: str) -> ConfigError | None:
    """Keras applies the summed gradients once every training.accumulation_steps batches, and each
    training phase starts a fresh optimizer: a phase of fewer batches ends before its first update, its
    weights untouched, and the run "trains" without a word (a recipe's value on a corpus subset). The
    error, with the numbers (None when every phase updates)."""
    accumulated = accumulation_steps(training)
    batches = steps_per_epoch(train_clips, training["batch_size"])
    phases = training_phases(training)
    if not phases or accumulated <= 1:
        return None
    start, end, backbone_trainable = min(phases, key=lambda phase: phase[1] - phase[0])
    shortest = (end - start) * batches
    if accumulated <= shortest:
        return None
    phase = "fine-tuning phase" if backbone_trainable else "frozen-backbone phase (training.frozen_backbone_epochs)"
    return ConfigError(
        f"config: training.accumulation_steps: {accumulated} is more than the {shortest} batches of the "
        f"{phase} of experiment {experiment!r}, {run} ({end - start} epoch(s) of {batches} batches: {train_clips} "
        f"training clips in batches of {training['batch_size']}); each phase starts a fresh optimizer, so it would "
        f"end before its first update and leave the weights untrained; allowed values: at most {shortest} "
        "(set it under experiments[].training for this experiment)"
    )


def empty_split_error(run: dict, labels: list[str]) -> ConfigError | None:
    """A run left with no training, validation or test clip of the experiment's labels (a fold the
    leave-outs emptied, a corpus missing a set's split file, labels one corpus of a mixture lacks)
    would fail only when its job starts, after every clip is preprocessed: the error, naming what is
    empty (None when nothing is)."""
    parts = ("train", "validation") if run["run"] == FINAL_RUN else ("train", "validation", "test")
    empty = [part for part in parts if not run[part]]
    if not empty:
        return None
    name = run["experiment"]
    if empty == ["test"] and run.get("held_out"):
        return ConfigError(
            f"config: experiments.{name}.labels: its run {run['run']} has no test clips: no clip of {run['held_out']} is of a class "
            f"that its other corpora hold ({', '.join(labels)} in all), so the model left to learn without it has nothing of "
            f"it to score; allowed: labels that {run['held_out']} shares with the experiment's other corpora"
        )
    if empty == ["validation"]:
        return ConfigError(
            f"config: experiments.{name}: its run {run['run']} has no validation clips: they come from the speakers it trains "
            f"on (training.validation_fraction of each corpus' speakers), and none of its corpora has two or more of them "
            f"(a partial copy?); allowed: corpora with at least two speakers outside each test fold"
        )
    return ConfigError(
        f"config: experiments.{name}: its run {run['run']} has no {' and no '.join(empty)} clips of its labels "
        f"({', '.join(labels)}); allowed: folds that hold clips (experiments.{name}.folds) and labels its "
        f"corpora have (experiments.{name}.labels)"
    )


def absent_labels_notice(config: dict, manifests: dict[str, pd.DataFrame], experiment: str) -> str | None:
    """One line naming the experiment's labels that no clip of its indexed corpora has (a partial copy,
    a mixture's labels): the model keeps an output for each that nothing trains, and a test fold's
    UAR averages only the classes it holds. None when every label has clips."""
    settings = experiment_settings(config, experiment)
    held = set(pd.concat([manifests[dataset]["label"] for dataset in settings["datasets"]], ignore_index=True))
    absent = [label for label in settings["labels"] if label not in held]
    if not absent:
        return None
    return (
        f"avemotion: experiments.{experiment}.labels: no clip of {', '.join(settings['datasets'])} is {', '.join(absent)}: "
        f"the model keeps an output for {'it' if len(absent) == 1 else 'them'} that nothing trains (its predictions there are "
        f"errors), and UAR averages only the {len(settings['labels']) - len(absent)} classes the test clips hold; set "
        f"experiments.{experiment}.labels to the classes the corpora hold"
    )


def check_training_runs(config: dict, manifests: dict[str, pd.DataFrame], experiments=None) -> None:
    """Before any job, once the corpora are indexed (results/*/manifest.parquet): every run has
    clips to train, validate and test on, its batch fits its training clips and each of its phases
    has the batches of one update. The training job
    checks its own split again (quarantined clips)."""
    for run in training_runs(config, manifests, experiments):
        settings = experiment_settings(config, run["experiment"])
        error = (
            empty_split_error(run, settings["labels"])
            or batch_size_error(settings["training"]["batch_size"], run["train"], run["experiment"], run["run"])
            or accumulation_error(settings["training"], run["train"], run["experiment"], run["run"])
        )
        if error:
            raise error
