"""Train one experiment on one fold (or on every speaker for the final model) and write its outputs.

Outputs in ``outdir``: model.keras, history.csv, predictions.parquet (test clips; for the final model
the validation clips), metrics.json, settings.json, split.json, late_weights.json (null unless late
fusion): avemotion.model.bundle.RUN_FILES.
A killed job resumes from its last completed epoch (Keras BackupAndRestore per training phase under
``outdir/resume``; the epoch log, best weights so far and each finished phase's weights under
``outdir/progress``). Both folders stay until every output is written, so a job killed after its last
epoch reruns no epoch: it goes straight to prediction.
The test fold is never used for model selection: the best epoch is chosen on validation loss.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from avemotion.fusion.shards import read_tabular_shards
from avemotion.io import atomic_path, write_json, write_parquet
from avemotion.metrics import evaluate_predictions
from avemotion.model.bundle import MODEL_FILE, SETTINGS_FILE, write_late_weights
from avemotion.model.fusion import (
    BRANCHES,
    backbone_of,
    build_fusion_model,
    face_statistics,
    model_input_names,
    pretrained_backbone,
    task_of,
)
from avemotion.presets import variant_settings
from avemotion.train.losses import CCCLoss, LabelSmoothedCrossEntropy
from avemotion.train.optimizer import build_adamw, set_backbone_trainable
from avemotion.train.splits import speaker_splits

# TensorFlow itself (and the modules that need it: the tf.data pipeline, prediction) is imported in
# the functions that use it: benchmarks/train.py runs this module's training step under Keras' JAX
# or torch backend on machines without TensorFlow.

log = logging.getLogger(__name__)

SPLIT_COLUMNS = ["clip_id", "dataset", "speaker", "fold", "label", "valence", "arousal"]


def experiment_clips(tabular_paths, labels: list[str]) -> tuple[pd.DataFrame, int]:
    """The mixture's clips inside its label set, and how many were left outside it."""
    clips = read_tabular_shards(tabular_paths)[SPLIT_COLUMNS]
    inside = clips["label"].isin(labels)
    return clips[inside].reset_index(drop=True), int((~inside).sum())


def gpu_available() -> bool:
    """Whether Keras' backend sees a GPU (TensorFlow in the workflow; JAX or torch in benchmarks)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def configure_precision(training: dict) -> str:
    wanted = training["mixed_precision"]
    if wanted == "auto":
        wanted = "bf16" if gpu_available() else "float32"
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if wanted == "bf16" else "float32")
    return wanted


def training_strategy():
    """tf.distribute.MirroredStrategy over this process' GPUs when it sees more than one (one node,
    each batch split across them, gradients all-reduced), else over its logical CPU devices when
    it configured several (tests), else the default strategy (one device).

    ``batch_size`` stays the global batch: each of N replicas gets batch_size / N clips. The losses
    divide by the replica count (avemotion.train.losses), so N replicas take the same step as one.
    """
    import tensorflow as tf

    for kind in ("GPU", "CPU"):
        devices = [device.name for device in tf.config.list_logical_devices(kind)]
        if len(devices) > 1:
            return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def losses_for(model, settings: dict):
    training = settings["training"]
    losses, weights = {}, {}
    for name in model.output_names:
        task = task_of(name)
        if task == "emotion":
            losses[name] = LabelSmoothedCrossEntropy(len(settings["labels"]), smoothing=training["label_smoothing"])
            auxiliary = settings["fusion"] == "hybrid" and name != "emotion"
            weights[name] = training["aux_loss_weight"] if auxiliary else 1.0
        else:
            losses[name] = CCCLoss()
            weights[name] = training["va_loss_weight"]
    return losses, weights


def for_model(dataset, model):
    """The model's own inputs, and every head its task's target ({emotion, valence, arousal} -> one per output)."""
    names, outputs = model_input_names(model), model.output_names
    return dataset.map(
        lambda inputs, targets: ({key: inputs[key] for key in names}, {name: targets[task_of(name)] for name in outputs})
    )


def configure_threads(threads: int | None) -> None:
    """Use the job's CPU share (Snakemake's threads); must run before TensorFlow's first operation."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def training_face_statistics(settings: dict, tfrecord_paths, clip_ids) -> tuple[list[float], list[float]]:
    """Mean and variance of the training clips' face features, read as the model will read them."""
    from avemotion.fusion.dataset import make_dataset  # TensorFlow

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
    architecture = variant_settings(settings["model"]["variant"])
    path = settings["model"].get("pretrained")
    source = pretrained_backbone(path, architecture, settings["num_frames"], settings["image_size"]) if path else None
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
    )
    if source:
        backbone_of(model).set_weights(source.get_weights())
    return model


def datasets_for(settings: dict, tfrecord_paths, split: dict, inputs=None):
    """Training and validation batches; ``inputs``: the model's input names (only those are decoded)."""
    from avemotion.fusion.dataset import Training, make_dataset  # TensorFlow

    training = settings["training"]
    common = dict(
        inputs=inputs,
        num_frames=settings["num_frames"],
        image_size=settings["image_size"],
        label_names=settings["labels"],
        batch_size=training["batch_size"],
    )
    stream = Training(
        seed=training["seed"],
        class_balanced=training["class_balanced"],
        dataset_weights=settings.get("dataset_weights"),
        augment=training.get("augment", True),
    )
    train = make_dataset(tfrecord_paths, training=stream, clip_ids=split["train"], **common)
    validation = make_dataset(tfrecord_paths, clip_ids=split["validation"], **common)
    return train, validation


def best_so_far(epochs_path: Path) -> float | None:
    """The lowest validation loss a resumed job already saved weights for (None when there is none).

    Without it ModelCheckpoint would start from infinity after a restart, and the first resumed
    epoch would overwrite the best weights even when it is worse.
    """
    if not epochs_path.exists():
        return None
    losses = pd.read_csv(epochs_path).get("val_loss")
    return float(losses.min()) if losses is not None and losses.notna().any() else None


def training_progress(outdir: Path) -> Path:
    """Where a running job keeps its epoch log and best weights: not among the rule's outputs, so
    Snakemake does not delete them when it reruns a killed job. A fresh start (no Keras backup to
    resume from) clears what an earlier, finished or abandoned, run left there."""
    progress = outdir / "progress"
    # A Keras backup (killed inside a phase) or a finished phase's weights (killed between phases).
    resuming = any((outdir / "resume").glob("*/*")) or any(progress.glob("phase_*.weights.h5"))
    if progress.exists() and not resuming:
        shutil.rmtree(progress)
    progress.mkdir(parents=True, exist_ok=True)
    return progress


def learning_rate_logger():
    """A callback that adds the optimizer's scheduled lr at each epoch's end to the epoch log
    (history.csv), so a schedule can be checked after the fact."""

    class LogLearningRate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["learning_rate"] = float(self.model.optimizer.learning_rate)

    return LogLearningRate()


def training_phases(training: dict) -> list[tuple[int, int, bool]]:
    """(first epoch, end epoch, backbone trainable) of each phase: the frozen-backbone warm start
    (heads and the other branches only), then fine-tuning of everything."""
    frozen = min(training["frozen_backbone_epochs"], training["epochs"])
    phases = [(0, frozen, False), (frozen, training["epochs"], True)]
    return [phase for phase in phases if phase[1] > phase[0]]


def phase_schedule(training: dict, start: int, end: int, steps_per_epoch: int) -> tuple[int, int]:
    """(warm-up steps, total steps) of one phase's WarmupCosine. Each phase gets a fresh optimizer,
    whose step count starts at 0, so its schedule must span that phase alone: warm-up, then cosine
    down to the minimum at the phase's last step (a schedule over all epochs would leave the
    fine-tuning phase's lr cut off mid-cosine)."""
    total_steps = (end - start) * steps_per_epoch
    return min(round(training["warmup_epochs"] * steps_per_epoch), total_steps), total_steps


def fit(model, settings: dict, train, validation, steps_per_epoch: int, outdir: Path) -> None:
    training = settings["training"]
    losses, loss_weights = losses_for(model, settings)
    train = for_model(train, model)
    validation = for_model(validation, model)
    base_lr = training["learning_rate"] * training["batch_size"] / 256
    progress = training_progress(outdir)
    callbacks = [
        learning_rate_logger(),  # before CSVLogger, which writes what it adds
        keras.callbacks.ModelCheckpoint(
            str(progress / "best.weights.h5"),
            monitor="val_loss",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=best_so_far(progress / "epochs.csv"),
        ),
        keras.callbacks.CSVLogger(str(progress / "epochs.csv"), append=True),
    ]
    for index, (start, end, backbone_trainable) in enumerate(training_phases(training)):
        set_backbone_trainable(model, backbone_trainable)
        # Keras' backup resumes inside one fit() and is deleted when it ends, so a finished phase
        # leaves its end state here: a job killed in a later phase skips the phases done before.
        phase_done = progress / f"phase_{index}.weights.h5"
        if phase_done.exists():
            model.load_weights(phase_done)
            continue
        backup = keras.callbacks.BackupAndRestore(str(outdir / "resume" / f"phase_{index}"))
        warmup_steps, total_steps = phase_schedule(training, start, end, steps_per_epoch)
        optimizer = build_adamw(
            model,
            base_lr=base_lr,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
            weight_decay=training["weight_decay"],
            layer_decay=training["layer_decay"],
            head_lr_multiplier=training["head_lr_multiplier"],
        )
        model.compile(optimizer=optimizer, loss=losses, loss_weights=loss_weights, jit_compile=training["xla"])
        # BackupAndRestore resumes by setting this, and fit() prefers it to initial_epoch and never
        # clears it: a phase resumed inside would make the next phase start at its epoch.
        model._initial_epoch = None
        model.fit(
            train,
            initial_epoch=start,
            epochs=end,
            steps_per_epoch=steps_per_epoch,
            validation_data=validation,
            callbacks=[backup, *callbacks],
            verbose=2,
        )
        with atomic_path(phase_done, suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
    model.load_weights(progress / "best.weights.h5")
    with atomic_path(outdir / "history.csv") as tmp:
        shutil.copyfile(progress / "epochs.csv", tmp)
    # The progress stays until the job's outputs are written (clear_progress): a job killed while it
    # predicts or saves then finds every phase done on its rerun instead of training from epoch 1.


def clear_progress(outdir: Path) -> None:
    """Remove what resumes a killed job, once all of its outputs are written."""
    shutil.rmtree(outdir / "progress", ignore_errors=True)
    shutil.rmtree(outdir / "resume", ignore_errors=True)  # the phases' backups are gone already


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
    from avemotion.train.predict import predict_clips  # TensorFlow

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
    strategy = training_strategy()
    log.info(
        "%s %s: %d train, %d validation, %d test clips; %d outside the label set; %s; %d replica(s)",
        settings["name"], run, len(split["train"]), len(split["validation"]), len(split["test"]), outside, precision,
        strategy.num_replicas_in_sync,
    )
    write_json(split, outdir / "split.json")
    write_json({**settings, "test_fold": test_fold, "held_out_dataset": held_out_dataset}, outdir / SETTINGS_FILE)

    face_stats = training_face_statistics(settings, tfrecord_paths, split["train"])
    with strategy.scope():  # variables, optimizer and compiled steps live on every replica
        model = build_model(settings, face_stats)
        train, validation = datasets_for(settings, tfrecord_paths, split, model_input_names(model))
        steps_per_epoch = max(1, math.ceil(len(split["train"]) / settings["training"]["batch_size"]))
        fit(model, settings, train, validation, steps_per_epoch, outdir)
    if strategy.num_replicas_in_sync > 1:
        # Predict and save with a one-device copy: a mirrored model's predict_on_batch runs the batch
        # on every replica, and the saved model should not depend on the devices it was trained on.
        trained = model.get_weights()
        model = build_model(settings, face_stats)
        model.set_weights(trained)

    evaluated = "test" if split["test"] else "validation"
    predictions, late_weights = predict_clips(model, settings, tfrecord_paths, split, evaluated, clips)
    write_late_weights(late_weights, outdir)
    write_parquet(predictions, outdir / "predictions.parquet")
    metrics = {
        "experiment": settings["name"],
        "fold": test_fold,
        "held_out_dataset": held_out_dataset,
        "evaluated_split": evaluated,
        "clips": {name: len(ids) for name, ids in split.items()},
        "outside_label_set": outside,
        **evaluate_predictions(predictions, settings["labels"]),
        "branches": branch_metrics(predictions, settings["labels"]),
    }
    write_json(metrics, outdir / "metrics.json")
    with atomic_path(outdir / MODEL_FILE, suffix=".keras") as tmp:
        model.save(tmp)
    clear_progress(outdir)
    return metrics


def branch_metrics(predictions: pd.DataFrame, labels: list[str]) -> dict:
    """Each branch's own metrics (late and hybrid models; empty for early fusion)."""
    from avemotion.train.predict import branch_predictions  # TensorFlow

    present = [branch for branch in BRANCHES if f"{branch}_predicted_index" in predictions]
    return {branch: evaluate_predictions(branch_predictions(predictions, branch), labels) for branch in present}
