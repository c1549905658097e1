"""Train one experiment on one fold (or on every speaker for the final model) and write its outputs.

Outputs in ``outdir``: model.keras, history.csv, predictions.parquet (test clips; for the final model
the validation clips), metrics.json, settings.json, split.json, late_weights.json (null unless late
fusion): avemotion.model.bundle.RUN_FILES.
The job's CPU threads are set by avemotion.model.runtime, its devices and precision by avemotion.train.devices; the model is fitted, and a
killed job resumed, by avemotion.train.fitting.
The test fold is never used for model selection: the best epoch is chosen on validation loss.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from avemotion.config import ConfigError
from avemotion.fusion.augment import Augmentation
from avemotion.fusion.dataset import Training, make_dataset
from avemotion.fusion.mixing import Mixing
from avemotion.fusion.randaugment import RandAugment
from avemotion.fusion.records import shards_by_dataset
from avemotion.fusion.shards import read_tabular_shards
from avemotion.io import atomic_path, write_json, write_parquet
from avemotion.job_params import QUIET_TRAINING
from avemotion.layout import HISTORY_FILE, METRICS_FILE, MODEL_FILE, PREDICTIONS_FILE, SETTINGS_FILE, SPLIT_FILE
from avemotion.metrics import evaluate_predictions
from avemotion.model.bundle import write_late_weights
from avemotion.model.checkpoints import CheckpointError
from avemotion.model.fusion import BRANCHES, backbone_of, build_fusion_model, face_statistics, model_input_names, pretrained_backbone
from avemotion.model.runtime import configure_threads
from avemotion.model.speech_branch import audio_settings, speech_encoder
from avemotion.model.speech_features import feature_frames
from avemotion.model.speech_input import pipeline_inputs, with_speech_features
from avemotion.model.whisper_features import HOP_LENGTH
from avemotion.presets import variant_settings
from avemotion.train.devices import configure_precision, training_strategy
from avemotion.train.fitting import clear_progress, fit, shard_signature
from avemotion.train.plan import accumulation_error, batch_size_error, steps_per_epoch
from avemotion.train.predict import branch_predictions, predict_clips
from avemotion.train.settings import replica_batch_error
from avemotion.train.splits import speaker_splits

log = logging.getLogger(__name__)

SPLIT_COLUMNS = ["clip_id", "dataset", "speaker", "fold", "label", "valence", "arousal"]


def experiment_clips(tabular_paths, labels: list[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The mixture's clips inside its label set, and how many of each dataset's were left outside it."""
    clips = read_tabular_shards(tabular_paths)[SPLIT_COLUMNS]
    inside = clips["label"].isin(labels)
    return clips[inside].reset_index(drop=True), {str(name): int(count) for name, count in clips.loc[~inside, "dataset"].value_counts().items()}


def training_face_statistics(settings: dict, tfrecord_paths, clip_ids) -> tuple[list[float], list[float]]:
    """Mean and variance of the training clips' face features, read as the model will read them."""
    dataset = make_dataset(
        tfrecord_paths,
        num_frames=settings["num_frames"],
        image_size=settings["image_size"],
        label_names=settings["labels"],
        batch_size=64,
        clip_ids=clip_ids,
        inputs=("face_sequence",),
    )
    return face_statistics(np.concatenate([inputs["face_sequence"].numpy() for inputs, _ in dataset]))


def build_model(settings: dict, face_stats=None):
    """The experiment's fusion network (``face_stats``: training_face_statistics), its backbone's
    weights those of model.pretrained when the settings name one."""
    architecture = variant_settings(settings["model"]["variant"])
    path = settings["model"].get("pretrained")
    try:
        source = pretrained_backbone(path, architecture, settings["num_frames"], settings["image_size"]) if path else None
        speech = whisper_branch(settings["model"])
    except CheckpointError as error:  # a weights file the config check could not judge (a .pth): one line in the job's log
        raise ConfigError(f"config: model weights of experiment {settings.get('name')!r}: {error}") from None
    # Pretrained weights bring their own config (LayerNorm eps, the input mean and std they were
    # trained with), as timm's pretrained configs do: the variant's defaults would change what
    # the weights compute.
    backbone = {**(source.architecture if source else architecture), "drop_path_rate": settings["training"]["drop_path"]}
    model = build_fusion_model(
        settings["fusion"],
        backbone,
        len(settings["labels"]),
        settings["num_frames"],
        settings["image_size"],
        face_stats=face_stats,
        # Absent (settings written by hand, as in tests): the schema default.
        frame_normalization=settings["model"].get("frame_normalization", "imagenet"),
        **speech,
    )
    if source:
        backbone_of(model).set_weights(source.get_weights())
    return model


def mixing_of(training: dict, model_settings: dict | None = None) -> Mixing:
    """The training batches' Mixup/CutMix (absent keys: their defaults, QUIET_TRAINING); the loss's
    label smoothing is applied by the mixing instead (the loss takes the soft targets as they are).
    With the Whisper branch, CutMix cuts the waveform within the seconds the branch hears."""
    value = {key: training.get(key, default) for key, default in QUIET_TRAINING.items()}
    audio = audio_settings(model_settings or {})
    # The samples the branch reads: its feature frames' (avemotion.model.speech_features).
    heard = 0 if audio["audio_encoder"] == "cnn" else feature_frames(audio["audio_max_seconds"]) * HOP_LENGTH
    return Mixing(
        mixup=value["mixup"],
        cutmix=value["cutmix"],
        switch_prob=value["mixup_switch_prob"],
        prob=value["mixup_prob"],
        label_smoothing=training["label_smoothing"],
        audio_window=heard,
    )


def whisper_branch(model_settings: dict) -> dict:
    """build_fusion_model's speech-encoder arguments: none for the CNN audio branch (model.audio_encoder)."""
    audio = audio_settings(model_settings)
    if audio["audio_encoder"] == "cnn":
        return {}
    return {"speech_encoder": speech_encoder(model_settings), "audio_max_seconds": audio["audio_max_seconds"]}


def augmentation_of(training: dict, backbone=None) -> Augmentation:
    """A training clip's crop scale, random erasing and RandAugment (absent keys: their defaults,
    QUIET_TRAINING); erased pixels are noise that ``backbone``'s input standardisation (its image
    mean and std) makes N(0, 1)."""
    pixels = {"pixel_mean": backbone.image_mean, "pixel_std": backbone.image_std} if backbone is not None else {}
    policy = training.get("rand_augment", QUIET_TRAINING["rand_augment"])
    return Augmentation(
        crop_scale=tuple(training.get("crop_scale", QUIET_TRAINING["crop_scale"])),
        erasing=training.get("random_erasing", QUIET_TRAINING["random_erasing"]),
        rand_augment=RandAugment(**policy) if policy else None,
        **pixels,
    )


def datasets_for(settings: dict, tfrecord_paths, split: dict, inputs=None, training_datasets=None, start=(0, 0), backbone=None):
    """Training and validation batches; ``inputs``: the model's input names (only those are decoded).
    A mixture with dataset_weights mixes only ``training_datasets``, the corpora with training clips
    in this run (a held-out corpus, a partial copy whose speakers are all in the test fold): an
    empty stream ends the mixture, and the run would train on nothing. ``start``: (training phase,
    epochs logged) where the training stream starts (a resumed job, a later phase): its batches
    are drawn anew from there instead of repeating the first epoch's. ``backbone``: the model's
    VideoMAE backbone, whose input standardisation random erasing's noise follows."""
    training = settings["training"]
    weights, train_paths = settings.get("dataset_weights"), tfrecord_paths
    if weights and training_datasets is not None:
        left_out = sorted(set(weights) - set(training_datasets))
        if left_out:
            log.warning("dataset_weights: %s has no training clips in this run and is left out of the mixture", ", ".join(left_out))
        weights = {name: weight for name, weight in weights.items() if name in training_datasets}
        train_paths = {name: paths for name, paths in shards_by_dataset(tfrecord_paths).items() if name in training_datasets}
    common = dict(
        inputs=inputs,
        num_frames=settings["num_frames"],
        image_size=settings["image_size"],
        label_names=settings["labels"],
        batch_size=training["batch_size"],
    )
    stream = Training(
        seed=stream_seed(training["seed"], *start),
        class_balanced=training["class_balanced"],
        dataset_weights=weights,
        augment=training.get("augment", True),
        augmentation=augmentation_of(training, backbone),
        mixing=mixing_of(training, settings["model"]),
    )
    train = make_dataset(train_paths, training=stream, clip_ids=split["train"], **common)
    validation = make_dataset(tfrecord_paths, clip_ids=split["validation"], **common)
    return train, validation


def stream_seed(seed: int, phase: int = 0, epochs_logged: int = 0) -> int:
    """The training stream's seed for a stream started in ``phase`` after ``epochs_logged`` epochs
    (the run's own seed at the start)."""
    if (phase, epochs_logged) == (0, 0):
        return seed
    return int(np.random.SeedSequence([seed, phase, epochs_logged]).generate_state(1)[0] >> 1)


def run_experiment_fold(
    settings: dict,
    tabular_paths,
    tfrecord_paths,
    test_fold: int | None,
    outdir,
    held_out_dataset: str | None = None,
    threads: int | None = None,
) -> dict:
    """Train, select on validation, predict the test fold; returns the metrics written to metrics.json.

    ``test_fold`` None with no ``held_out_dataset``: the final model (every speaker trains or
    validates; its predictions are the validation clips'). ``held_out_dataset``: leave-one-corpus-out.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    configure_threads(threads)
    keras.utils.set_random_seed(settings["training"]["seed"])
    precision = configure_precision(settings["training"])
    clips, outside = experiment_clips(tabular_paths, settings["labels"])
    training = settings["training"]
    split = speaker_splits(clips, test_fold, training["validation_fraction"], training["seed"], held_out_dataset)
    run = f"held-out {held_out_dataset}" if held_out_dataset else f"fold {test_fold}"
    if not split["train"] or not split["validation"]:
        raise ValueError(f"experiment {settings['name']} {run}: no training or validation speakers left")
    scored, unlearned = settings["labels"], 0
    if held_out_dataset:
        scored = learned_labels(clips, split, settings["labels"])
        kept = set(clips.loc[clips["label"].isin(scored), "clip_id"])
        unlearned = sum(clip not in kept for clip in split["test"])
        split["test"] = [clip for clip in split["test"] if clip in kept]
        if unlearned:
            log.info("%s %s: %d test clips of classes no training corpus holds are not scored (scored: %s)", settings["name"], run, unlearned, ", ".join(scored))
    if held_out_dataset and unlearned and not split["test"]:
        raise ConfigError(
            f"experiment {settings['name']} {run}: all {unlearned} clips of {held_out_dataset} are of classes no training clip "
            f"holds (learned: {', '.join(scored)}): nothing to score"
        )
    if (test_fold is not None or held_out_dataset) and not split["test"]:
        # scoring the validation clips instead, which chose the epoch and the late-fusion weights,
        # would report optimistic numbers as a test fold's (a partial corpus copy, a fold quarantined away)
        where = f"the held-out corpus {held_out_dataset}" if held_out_dataset else f"fold {test_fold}"
        raise ConfigError(
            f"experiment {settings['name']} {run}: no test clips: no usable clip of its classes is in {where} "
            f"(set experiments.{settings['name']}.folds to the folds that hold clips)"
        )
    # The config check knows the splits only once the corpora are indexed: a first run checks here.
    error = batch_size_error(training["batch_size"], len(split["train"]), settings["name"], run) or accumulation_error(
        training, len(split["train"]), settings["name"], run
    )
    if error:
        raise error
    strategy = training_strategy()
    error = replica_batch_error(training, strategy.num_replicas_in_sync, f"training.batch_size of experiment {settings['name']!r}")
    if error:
        raise error
    log.info(
        "%s %s: %d train, %d validation, %d test clips; %d outside the label set; %s; %d replica(s) on %s",
        settings["name"], run, len(split["train"]), len(split["validation"]), len(split["test"]), sum(outside.values()), precision,
        strategy.num_replicas_in_sync, keras.backend.backend(),
    )

    unlearnable = [label for label in settings["labels"] if label not in learned_labels(clips, split, settings["labels"])]
    if unlearnable:  # a corpus copy without some of the protocol's classes: the model never predicts them
        log.warning("%s %s: no training clip of %s: the model learns %d classes from clips of %d", settings["name"], run,
                    ", ".join(unlearnable), len(settings["labels"]), len(settings["labels"]) - len(unlearnable))  # fmt: skip
    face_stats = training_face_statistics(settings, tfrecord_paths, split["train"])
    with strategy.scope():  # variables, optimizer and compiled steps live on every replica
        model = build_model(settings, face_stats)
        inputs = pipeline_inputs(model_input_names(model))
        training_datasets = set(clips.loc[clips["clip_id"].isin(split["train"]), "dataset"])

        def batches(phase: int = 0, epochs_logged: int = 0):
            streams = datasets_for(settings, tfrecord_paths, split, inputs, training_datasets, (phase, epochs_logged), backbone=backbone_of(model))
            return tuple(with_speech_features(stream, model) for stream in streams)

        batches_per_epoch = steps_per_epoch(len(split["train"]), training["batch_size"])
        # What the resumed progress was made from besides the settings: the split (a corpus changed
        # between a kill and the rerun moves speakers between training and validation) and the shards
        made_from = {"split": split, "shards": shard_signature(tfrecord_paths)}
        history = fit(model, settings, batches, batches_per_epoch, outdir, made_from, steps_per_epoch(len(split["validation"]), training["batch_size"]))
    if strategy.num_replicas_in_sync > 1:
        # Predict and save with a one-device copy: a mirrored model's predict_on_batch runs the batch
        # on every replica, and the saved model should not depend on the devices it was trained on.
        trained = model.get_weights()
        model = build_model(settings, face_stats)
        model.set_weights(trained)

    evaluated = "test" if split["test"] else "validation"
    predictions, late_weights = predict_clips(model, settings, tfrecord_paths, split, evaluated, clips, scored)
    # The rule's outputs are written only now: Snakemake takes a killed job's outputs that exist as
    # incomplete and stops a plain rerun (and a dry run) until they are removed by hand.
    write_json(split, outdir / SPLIT_FILE)
    write_json({**settings, "test_fold": test_fold, "held_out_dataset": held_out_dataset}, outdir / SETTINGS_FILE)
    with atomic_path(outdir / HISTORY_FILE) as tmp:
        history.to_csv(tmp, index=False)
    write_late_weights(late_weights, outdir)
    write_parquet(predictions, outdir / PREDICTIONS_FILE)
    metrics = {
        "experiment": settings["name"],
        "fold": test_fold,
        "held_out_dataset": held_out_dataset,
        "evaluated_split": evaluated,
        "backend": keras.backend.backend(),  # where it trained: not a setting of the model, so settings.json holds none
        "clips": {name: len(ids) for name, ids in split.items()},
        "outside_label_set": sum(outside.values()),  # of the experiment's corpora (every fold), not of this run's split
        # a held-out corpus' clips that are not scored: outside the label set, or of classes no training corpus holds
        **({"labels": scored, "unlearned_test_clips": unlearned, "unscored_test_clips": outside.get(held_out_dataset, 0) + unlearned} if held_out_dataset else {}),
        **evaluate_predictions(predictions, scored),
        "branches": branch_metrics(predictions, scored),
    }
    write_json(metrics, outdir / METRICS_FILE)
    with atomic_path(outdir / MODEL_FILE, suffix=".keras") as tmp:
        model.save(tmp)
    clear_progress(outdir)
    return metrics


def learned_labels(clips: pd.DataFrame, split: dict, labels: list[str]) -> list[str]:
    """The ``labels`` that the training clips hold, in the model's order. A held-out
    corpus is scored on these only, as the cross-corpus runs are on the labels both corpora share
    (avemotion.train.cross_corpus): a mixture with labels of its own (a union of the corpora's) has
    classes that only the held-out corpus holds, which its model never learned."""
    seen = set(clips.loc[clips["clip_id"].isin(split["train"]), "label"])
    return [label for label in labels if label in seen]


def branch_metrics(predictions: pd.DataFrame, labels: list[str]) -> dict:
    """Each branch's own metrics (late and hybrid models; empty for early fusion)."""
    present = [branch for branch in BRANCHES if f"{branch}_predicted_index" in predictions]
    return {branch: evaluate_predictions(branch_predictions(predictions, branch), labels) for branch in present}
