"""Fitting a built fusion model: its losses and targets per output, its training phases, and
resuming a killed job.

A killed job resumes from its last completed epoch: Keras BackupAndRestore per training phase under
``outdir/resume``; the epoch log, best weights so far and each finished phase's weights under
``outdir/progress``. Both folders stay until every output of the job is written (clear_progress),
so a job killed after its last epoch reruns no epoch: it goes straight to prediction. The progress
records the settings it was made with: a job rerun with other settings starts from epoch 1.
The best epoch is chosen on validation loss; its weights are replaced atomically, so a kill while
they are written leaves the previous best.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import h5py
import keras
import pandas as pd

from avemotion.io import atomic_path, plain, read_json, write_json
from avemotion.layout import CHOSEN_EPOCH_COLUMN
from avemotion.model.fusion import model_input_names, task_of
from avemotion.train.losses import CCCLoss, LabelSmoothedCrossEntropy
from avemotion.train.optimizer import build_adamw, set_backbone_trainable
from avemotion.train.plan import accumulation_steps, training_phases

log = logging.getLogger(__name__)


def losses_for(model, settings: dict):
    """(loss, weight) per output, as two dicts: label-smoothed cross-entropy on emotion outputs (a
    hybrid model's per-branch ones weighted aux_loss_weight), 1 - CCC on valence and arousal."""
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


def best_so_far(best_path: Path) -> float | None:
    """The validation loss of the best weights a resumed job already saved (their record, written
    beside them: the epoch log may hold a rerun epoch's row instead of the killed run's that chose
    them), None when there are none.

    Without it the best-weights callback would start from infinity after a restart, and the first resumed
    epoch would overwrite the best weights even when it is worse.
    """
    record = best_record(best_path)
    if not record.exists() or not best_path.exists():
        return None
    return float(read_json(record)["val_loss"])


def best_record(best_path: Path) -> Path:
    """The record of the best weights' epoch and validation loss (best.json beside best.weights.h5)."""
    return best_path.with_name(best_path.name.removesuffix(".weights.h5") + ".json")


# What a running job's progress/ folder was made from (settings and data), so a rerun resumes only
# the same job. Not the run's settings.json (avemotion.layout.SETTINGS_FILE), one folder up, despite
# the name: renaming this file would stop the runs now in progress from resuming.
PROGRESS_RECORD_FILE = "settings.json"
# What a job's saved weights and optimizer state hold; raised when that changes, so a job killed
# under older code starts afresh instead of loading a checkpoint that no longer fits (Keras skips
# optimizer state of another length with only a warning). 2: the face standardisation's statistics
# and the lr schedule's numbers became variables.
TRAINING_STATE_REVISION = 2


def training_progress(outdir: Path, settings: dict, made_from: dict | None = None) -> Path:
    """Where a running job keeps its epoch log and best weights: not among the rule's outputs, so
    Snakemake does not delete them when it reruns a killed job. A fresh start (no Keras backup to
    resume from) clears what an earlier, finished or abandoned, run left there, and so does a rerun
    with other ``settings`` than the killed job's, or other data (``made_from``: its split and
    shards): its epochs belong to another model."""
    progress = outdir / "progress"
    # A Keras backup (killed inside a phase) or a finished phase's weights (killed between phases).
    resuming = any((outdir / "resume").glob("*/*")) or any(progress.glob("phase_*.weights.h5"))
    recorded = progress / PROGRESS_RECORD_FILE
    record = {"settings": settings, "made_from": made_from, "state_revision": TRAINING_STATE_REVISION}
    same = recorded.exists() and read_json(recorded) == plain(record)
    if not (resuming and same):
        clear_progress(outdir)
    progress.mkdir(parents=True, exist_ok=True)
    write_json(record, recorded)
    return progress


def shard_signature(paths) -> list:
    """(path, size, mtime) of each shard: rewritten shards are other training data."""
    return [[str(path), *((stat := Path(path).stat()).st_size, stat.st_mtime_ns)] for path in sorted(map(str, paths))]


def epochs_done(epochs_path: Path) -> int:
    """How many epochs the job's epoch log holds (a resumed job's stream starts after them)."""
    return len(read_epochs(epochs_path))


def read_epochs(epochs_path: Path) -> pd.DataFrame:
    """The epoch log, one row per epoch: an epoch run again after a kill (logged, then killed before
    Keras' backup held it) keeps its last row."""
    if not epochs_path.exists() or not epochs_path.stat().st_size:
        return pd.DataFrame({"epoch": []})
    epochs = pd.read_csv(epochs_path)
    return epochs.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest validation loss in ``path``, written to a
    temporary file and renamed (Keras' ModelCheckpoint writes in place: a kill while it writes
    leaves a broken file that the resumed job would load). ``best`` is the loss to beat."""

    def __init__(self, path: Path, best: float | None):
        super().__init__()
        self.path, self.best = Path(path), float("inf") if best is None else best

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss")
        if loss is None or not loss < self.best:
            return
        with atomic_path(self.path, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)
        write_json({"epoch": epoch, "val_loss": float(loss)}, best_record(self.path))
        self.best = float(loss)


def learning_rate_logger():
    """A callback that adds the optimizer's scheduled lr at each epoch's end to the epoch log
    (history.csv), so a schedule can be checked after the fact."""

    class LogLearningRate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["learning_rate"] = float(self.model.optimizer.learning_rate)

    return LogLearningRate()


def phase_schedule(training: dict, start: int, end: int, steps_per_epoch: int) -> tuple[int, int]:
    """(warm-up steps, total steps) of one phase's WarmupCosine. Each phase gets a fresh optimizer,
    whose step count starts at 0, so its schedule must span that phase alone: warm-up, then cosine
    down to the minimum at the phase's last step (a schedule over all epochs would leave the
    fine-tuning phase's lr cut off mid-cosine)."""
    total_steps = (end - start) * steps_per_epoch
    return min(round(training["warmup_epochs"] * steps_per_epoch), total_steps), total_steps


# The lr the cosine ends at for a batch of 256 (VideoMAE's --min_lr), scaled by the batch as the lr is
MIN_LR = 1e-6


def phase_optimizer(model, training: dict, start: int, end: int, steps_per_epoch: int):
    """A phase's fresh AdamW (phase_schedule). Its lr and the lr its cosine ends at (MIN_LR) are
    scaled by the batch an update sees, as VideoMAE scales them by batch x update frequency / 256:
    with ``accumulation_steps`` N, Keras averages N batches' gradients into one update (so the lr of
    batch x N), and the schedule still counts batches."""
    warmup_steps, total_steps = phase_schedule(training, start, end, steps_per_epoch)
    accumulated = accumulation_steps(training)
    batch_scale = training["batch_size"] * accumulated / 256
    return build_adamw(
        model,
        base_lr=training["learning_rate"] * batch_scale,
        min_lr=MIN_LR * batch_scale,
        warmup_steps=warmup_steps,
        total_steps=total_steps,
        weight_decay=training["weight_decay"],
        layer_decay=training["layer_decay"],
        head_lr_multiplier=training["head_lr_multiplier"],
        gradient_accumulation_steps=accumulated if accumulated > 1 else None,
    )


def fit(
    model, settings: dict, batches, steps_per_epoch: int, outdir: Path, made_from: dict | None = None, validation_steps: int | None = None
) -> pd.DataFrame:
    """Train ``model`` phase by phase (training_phases) on ``batches(phase, epochs logged)``'
    (training, validation) streams, resuming what a killed job left under ``outdir`` (``made_from``: see training_progress);
    leaves the model at its best validation epoch and returns the epoch log (history.csv), that epoch
    marked in its CHOSEN_EPOCH_COLUMN. A run without a finite
    validation loss (diverged) or without a training step raises, and leaves nothing to resume.
    ``validation_steps``: the validation stream's batches, where known (Keras 3.15 warns "Your input
    ran out of data" in the first epoch of every fit() whose validation length it has to find out)."""
    training = settings["training"]
    losses, loss_weights = losses_for(model, settings)
    progress = training_progress(outdir, settings, made_from)
    epochs_path, best_path = progress / "epochs.csv", progress / "best.weights.h5"
    callbacks = [
        learning_rate_logger(),  # before CSVLogger, which writes what it adds
        BestWeights(best_path, best_so_far(best_path)),
        keras.callbacks.CSVLogger(str(epochs_path), append=True),
    ]
    for index, (start, end, backbone_trainable) in enumerate(training_phases(training)):
        set_backbone_trainable(model, backbone_trainable)
        # Keras' backup resumes inside one fit(), so a finished phase leaves its end state here: a
        # job killed in a later phase skips the phases done before.
        phase_done = progress / f"phase_{index}.weights.h5"
        if phase_done.exists():
            model.load_weights(phase_done)
            continue
        # The backup stays until the phase's end state is saved (a kill between the two would
        # otherwise find neither and start over), and is written twice (a kill while it is written
        # leaves the previous one to resume from).
        backup_dir = outdir / "resume" / f"phase_{index}"
        backup = WholeBackup(str(backup_dir), double_checkpoint=True, delete_checkpoint=False)
        repair_backup(backup)
        optimizer = phase_optimizer(model, training, start, end, steps_per_epoch)
        # Keras on JAX without jit runs the step op by op (2.5x slower to its first epoch here, and
        # nothing for the compilation cache to keep): JAX always compiles.
        jit = training["xla"] or keras.backend.backend() == "jax"
        model.compile(optimizer=optimizer, loss=losses, loss_weights=loss_weights, jit_compile=jit)
        # Keras' BackupAndRestore resumes by setting the private model._initial_epoch (Keras 3 has no
        # public way), and fit() prefers it to initial_epoch and never clears it: a phase resumed
        # inside would make the next phase start at its epoch.
        model._initial_epoch = None
        # Each fit() reads its stream from the start: a stream started where the log ends, in this
        # phase, draws new batches for a resumed job or a later phase instead of the first epoch's again.
        train, validation = (for_model(stream, model) for stream in batches(index, epochs_done(epochs_path)))
        model.fit(
            train,
            initial_epoch=start,
            epochs=end,
            steps_per_epoch=steps_per_epoch,
            validation_data=validation,
            validation_steps=validation_steps,
            # The backup last: an epoch it holds is in the log and the best weights (a kill between
            # them makes the resumed job run that epoch again, rather than leave it out of the log).
            callbacks=[*callbacks, backup],
            verbose=2,
        )
        with atomic_path(phase_done, suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
        shutil.rmtree(backup_dir, ignore_errors=True)
    epochs = read_epochs(epochs_path)
    check_trained(epochs, best_path, outdir)
    model.load_weights(best_path)
    # The log says which epoch the model is: the evaluation reports it, the curves mark it
    record = best_record(best_path)
    epochs[CHOSEN_EPOCH_COLUMN] = epochs["epoch"] == (read_json(record)["epoch"] if record.exists() else None)
    # The progress stays until the job's outputs are written (clear_progress): a job killed while it
    # predicts or saves then finds every phase done on its rerun instead of training from epoch 1.
    return epochs


class WholeBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore whose files are each replaced whole (written aside, then renamed).
    Keras writes its latest weights in place, and a Ctrl-C inside h5py closes the file cleanly with
    part of the model in it: it reads to its end, so repair_backup cannot tell, and every rerun
    failed to load it ("Layer 'attention' expected 2 variables, but received 0"). A kill between the
    two renames leaves the new weights beside the epoch before's metadata: that epoch runs again."""

    def _save_model(self):
        latest = ((self._weights_path, self._prev_weights_path), (self._training_metadata_path, self._prev_training_metadata_path))
        for path, before in latest if self.double_checkpoint else ():
            if Path(path).exists():  # a copy cut short by a kill leaves the latest whole
                shutil.copyfile(path, before)
        with atomic_path(self._weights_path, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)
        write_json({"epoch": self._current_epoch, "batch": self._last_batch_seen}, self._training_metadata_path)


def repair_backup(backup: keras.callbacks.BackupAndRestore) -> None:
    """Make Keras' backup of a phase one it can resume from. Keras falls back on its copies from the
    epoch before only when the latest weights fail to load, and it writes both files in place: a
    job killed while it wrote its metadata, or a phase's first weights (no copy before them), left a
    backup every rerun failed on. The latest pair, unless whole, is replaced by the copies before
    it where those are whole; else the phase starts over (its logged epochs and best weights stay).
    The files are the callback's own (Keras names them; no public way to ask)."""
    latest = (Path(backup._weights_path), Path(backup._training_metadata_path))
    before = (Path(backup._prev_weights_path), Path(backup._prev_training_metadata_path))
    folder = Path(backup.backup_dir)
    if not folder.exists() or whole_backup(*latest):
        return
    if whole_backup(*before):
        for copy, path in zip(before, latest):
            shutil.copyfile(copy, path)
        log.warning("%s: the latest backup was cut short (a kill while it was written): resuming from the one before", folder)
    else:
        shutil.rmtree(folder)
        log.warning("%s: the backup was cut short (a kill while it was written) and none before it is whole: the phase starts over", folder)


def whole_backup(weights: Path, metadata: Path) -> bool:
    """Whether Keras' backup files read to the end: every array of the weights, the metadata's epoch."""

    def read(_, item):
        if isinstance(item, h5py.Dataset):
            item[()]  # read and dropped: a value returned here would stop visititems

    try:
        with h5py.File(weights, "r") as stored:
            stored.visititems(read)
        return isinstance(json.loads(metadata.read_text())["epoch"], int)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def check_trained(epochs: pd.DataFrame, best: Path, outdir: Path) -> None:
    """Raise when the run trained nothing usable (no epoch with a training loss: its stream was
    empty; no finite validation loss: it diverged), removing its progress so that a rerun trains
    again instead of finding every phase done."""
    problem = None
    if "loss" not in epochs:  # Keras logs no loss for an epoch without a step
        problem = "no training step ran (the training stream was empty); check the run's training clips"
    elif not best.exists():
        last = epochs.iloc[-1]
        problem = (
            f"training diverged: no epoch had a finite validation loss (last epoch: loss {last['loss']}, "
            f"val_loss {last.get('val_loss')}); lower training.learning_rate, then rerun"
        )
    if problem:
        clear_progress(outdir)
        raise ValueError(f"{outdir}: {problem}")


def clear_progress(outdir: Path) -> None:
    """Remove what resumes a killed job, once all of its outputs are written."""
    shutil.rmtree(outdir / "progress", ignore_errors=True)
    shutil.rmtree(outdir / "resume", ignore_errors=True)  # the phases' backups are gone already
