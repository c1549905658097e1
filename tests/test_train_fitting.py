"""Fitting a model phase by phase on a model small enough to train in a second: the phases, the
epoch log, the best epoch, resuming a killed job; and cross-corpus prediction with an untrained
tiny model. test_train_experiment trains whole folds (slow); these reach the same code quickly."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import h5py
import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from test_fusion_dataset import constant_frames, make_clip, write_shard, write_tabular
from test_train_experiment import settings_for as settings_for_experiment

from avemotion.io import write_json
from avemotion.layout import PREDICTIONS_FILE, SETTINGS_FILE
from avemotion.metrics import evaluate_predictions
from avemotion.model import VideoMAEBackbone
from avemotion.model.bundle import TrainedModel, write_late_weights
from avemotion.model.fusion import SqueezeLast
from avemotion.model.outputs import raw_outputs
from avemotion.train import cross_corpus
from avemotion.train.cross_corpus import predict_other_corpus
from avemotion.train.experiment import build_model
from avemotion.train.fitting import (
    BestWeights,
    epochs_done,
    fit,
    for_model,
    phase_optimizer,
    phase_schedule,
    read_epochs,
    shard_signature,
    whole_backup,
)

LABELS = ["anger", "happiness", "sadness"]
CLIPS, BATCH = 6, 3  # two steps an epoch
STEPS = CLIPS // BATCH


def tiny_model(seed: int = 0) -> keras.Model:
    """Frames -> a VideoMAE backbone without blocks -> the emotion, valence and arousal heads."""
    keras.utils.set_random_seed(seed)
    backbone = VideoMAEBackbone(hidden_size=8, num_layers=0, num_heads=1, intermediate_size=8, num_frames=2, image_size=16, name="videomae")
    frames = keras.Input((2, 16, 16, 3), name="frames")
    features = backbone(frames)
    emotion = keras.layers.Dense(len(LABELS), name="emotion")(features)
    va = [SqueezeLast(name=task)(keras.layers.Dense(1, activation="tanh", name=f"{task}_head")(features)) for task in ("valence", "arousal")]
    return keras.Model(frames, [emotion, *va])


def settings_for(epochs: int = 2, frozen: int = 0, **training) -> dict:
    return {
        "fusion": "late", "labels": LABELS,
        "training": {
            "epochs": epochs, "frozen_backbone_epochs": frozen, "batch_size": BATCH, "learning_rate": 0.5, "warmup_epochs": 0,
            "weight_decay": 0.05, "layer_decay": 0.75, "head_lr_multiplier": 1.0, "label_smoothing": 0.1, "va_loss_weight": 1.0,
            "aux_loss_weight": 0.3, "xla": False, **training,
        },
    }  # fmt: skip


def clips(valid: bool = True) -> tuple[dict, dict]:
    labels = np.arange(CLIPS) % len(LABELS)
    frames = np.random.default_rng(0).random((CLIPS, 2, 16, 16, 3)).astype("float32") * 50 + labels[:, None, None, None, None] * 80
    if not valid:
        frames[:] = np.nan
    va = np.linspace(-0.5, 0.5, CLIPS).astype("float32")
    # An input the model does not read: for_model leaves it out.
    return {"frames": frames, "unused": np.zeros((CLIPS, 1), "float32")}, {"emotion": labels, "valence": va, "arousal": -va}


def stream(epochs: int, valid: bool = True) -> tf.data.Dataset:
    """Batches for ``epochs`` epochs (a finite stream: the steps per epoch end each epoch)."""
    return tf.data.Dataset.from_tensor_slices(clips(valid)).batch(BATCH).repeat(epochs)


def validation_valid_once() -> tf.data.Dataset:
    """Validation clips that are fine at the first epoch's end, NaN at every later one."""
    inputs, targets = clips()
    evaluations = []

    def generate():
        evaluations.append(1)
        frames = inputs["frames"] if len(evaluations) == 1 else np.full_like(inputs["frames"], np.nan)
        yield {"frames": frames, "unused": inputs["unused"]}, targets

    signature = (
        {"frames": tf.TensorSpec((CLIPS, 2, 16, 16, 3), tf.float32), "unused": tf.TensorSpec((CLIPS, 1), tf.float32)},
        {"emotion": tf.TensorSpec((CLIPS,), tf.int64), "valence": tf.TensorSpec((CLIPS,), tf.float32), "arousal": tf.TensorSpec((CLIPS,), tf.float32)},
    )
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


class Batches:
    """fit's ``batches(phase, epochs logged)``, recording each call; ``kill``: raise at that phase's
    start (a job killed between two phases)."""

    def __init__(self, epochs: int, kill: int | None = None, train=None, validation=None):
        self.epochs, self.kill, self.calls = epochs, kill, []
        self.train, self.validation = train, validation

    def __call__(self, phase: int, logged: int):
        self.calls.append((phase, logged))
        if phase == self.kill:
            raise KeyboardInterrupt("killed between the phases")
        train = self.train() if self.train else stream(self.epochs)
        return train, (self.validation() if self.validation else stream(1))


def weights_in(path: Path) -> list[np.ndarray]:
    model = tiny_model(seed=99)
    model.load_weights(path)
    return model.get_weights()


def same_weights(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def backbone_weights(weights: list[np.ndarray], model: keras.Model) -> list[np.ndarray]:
    inside = {id(variable) for variable in model.get_layer("videomae").weights}
    return [value for value, variable in zip(weights, model.weights) if id(variable) in inside]


FINISHED = settings_for(epochs=3, frozen=1, va_loss_weight=0.5)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-phase job (one frozen-backbone epoch, then two of everything): its folder,
    the model's initial weights, the calls for batches, the epoch log and the model fit leaves."""
    outdir = tmp_path_factory.mktemp("finished")
    model = tiny_model()
    initial = model.get_weights()
    batches = Batches(epochs=2)
    epochs = fit(model, FINISHED, batches, STEPS, outdir)
    return SimpleNamespace(outdir=outdir, initial=initial, calls=batches.calls, epochs=epochs, model=model)


def copy_of(finished, tmp_path) -> Path:
    shutil.copytree(finished.outdir, tmp_path / "job")
    return tmp_path / "job"


def test_each_phase_trains_its_own_epochs_with_the_backbone_frozen_only_in_the_first(finished):
    model, epochs, progress = finished.model, finished.epochs, finished.outdir / "progress"
    # Each phase's stream starts where the epoch log ends; the second phase runs epochs 1 and 2.
    assert finished.calls == [(0, 0), (1, 1)]
    assert epochs["epoch"].tolist() == [0, 1, 2] and epochs["loss"].notna().all() and np.isfinite(epochs["val_loss"]).all()
    # The total loss weighs each head's loss by its configured weight.
    np.testing.assert_allclose(epochs["loss"], epochs["emotion_loss"] + 0.5 * (epochs["valence_loss"] + epochs["arousal_loss"]), rtol=1e-4)
    # Each epoch's scheduled lr is in the log (the fine-tuning phase's cosine ends at its minimum).
    assert epochs["learning_rate"].iloc[-1] == pytest.approx(1e-6 * BATCH / 256, rel=1e-3)
    frozen_end, tuned_end = weights_in(progress / "phase_0.weights.h5"), weights_in(progress / "phase_1.weights.h5")
    assert same_weights(backbone_weights(frozen_end, model), backbone_weights(finished.initial, model))
    assert not same_weights(frozen_end, finished.initial)  # the heads trained
    assert not same_weights(backbone_weights(tuned_end, model), backbone_weights(frozen_end, model))
    # The model is left at its best epoch, which best.json names.
    best = json.loads((progress / "best.json").read_text())
    assert best["val_loss"] == pytest.approx(epochs["val_loss"].min()) and best["epoch"] == epochs["val_loss"].idxmin()
    assert epochs.loc[epochs["chosen"], "epoch"].tolist() == [best["epoch"]]  # and the log (history.csv) marks it
    assert same_weights(model.get_weights(), weights_in(progress / "best.weights.h5"))
    # The phases' backups are gone; what resumes the job stays until its outputs are written.
    assert [path for path in (finished.outdir / "resume").rglob("*") if path.is_file()] == []


def test_the_model_is_left_at_its_best_epoch_not_its_last(tmp_path):
    model = tiny_model()
    batches = Batches(epochs=3, validation=validation_valid_once)
    epochs = fit(model, settings_for(epochs=3), batches, STEPS, tmp_path)
    assert np.isfinite(epochs["val_loss"].iloc[0]) and epochs["val_loss"].iloc[1:].isna().all()
    assert json.loads((tmp_path / "progress" / "best.json").read_text())["epoch"] == 0  # a NaN loss is never the best
    assert epochs["chosen"].tolist() == [True, False, False]
    last = weights_in(tmp_path / "progress" / "phase_0.weights.h5")
    assert not same_weights(model.get_weights(), last)
    assert same_weights(model.get_weights(), weights_in(tmp_path / "progress" / "best.weights.h5"))


def test_a_finished_job_rerun_trains_nothing_and_gives_the_same_model_and_log(finished, tmp_path, monkeypatch):
    outdir = copy_of(finished, tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("the rerun trained again")

    monkeypatch.setattr(keras.Model, "fit", no_training)
    again = tiny_model(seed=1)
    pd.testing.assert_frame_equal(fit(again, FINISHED, Batches(epochs=2), STEPS, outdir), finished.epochs)
    assert same_weights(again.get_weights(), finished.model.get_weights())


def test_a_job_killed_between_phases_resumes_the_second_from_the_first_ones_end(finished, tmp_path, monkeypatch):
    """What a kill after the frozen phase leaves, its next phase's backup cut short while Keras wrote
    it (Keras would fail on it at every rerun): the rerun trains that phase from its first epoch,
    starting from the weights the first phase ended with."""
    outdir = copy_of(finished, tmp_path)
    progress = outdir / "progress"
    (progress / "phase_1.weights.h5").unlink()
    pd.read_csv(progress / "epochs.csv").iloc[:1].to_csv(progress / "epochs.csv", index=False)
    backup = outdir / "resume" / "phase_1"
    backup.mkdir(parents=True, exist_ok=True)
    (backup / "latest.weights.h5").write_bytes(b"half of an HDF5 file")
    (backup / "training_metadata.json").write_text('{"epoch": 1')
    # The killed run's best epoch, at a loss no resumed epoch reaches: its weights stay the best.
    (progress / "best.json").write_text('{"epoch": 0, "val_loss": 0.0}')
    best = (progress / "best.weights.h5").read_bytes()
    started = []
    real_fit = keras.Model.fit

    def recorded(self, *args, **kwargs):
        started.append((self.get_weights(), kwargs["initial_epoch"], kwargs["epochs"]))
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", recorded)
    batches = Batches(epochs=2)
    epochs = fit(tiny_model(seed=1), FINISHED, batches, STEPS, outdir)
    assert batches.calls == [(1, 1)] and len(started) == 1
    weights, initial_epoch, end = started[0]
    assert same_weights(weights, weights_in(progress / "phase_0.weights.h5")) and (initial_epoch, end) == (1, 3)
    assert epochs["epoch"].tolist() == [0, 1, 2]
    assert (progress / "best.weights.h5").read_bytes() == best


def test_a_job_killed_inside_a_phase_resumes_at_its_next_epoch_and_the_next_phase_at_its_own(tmp_path):
    """Killed in the second epoch of a two-epoch frozen phase: the rerun runs that epoch only, then
    the fine-tuning phase from its own first epoch (Keras' resumed epoch must not carry over)."""
    settings = settings_for(epochs=3, frozen=2)
    inputs, targets = clips()

    def killed_in_the_second_epoch():
        def generate():
            for step in range(2 * STEPS):
                if step == STEPS + 1:
                    raise KeyboardInterrupt("killed")
                rows = slice(step % STEPS * BATCH, (step % STEPS + 1) * BATCH)
                yield {name: value[rows] for name, value in inputs.items()}, {name: value[rows] for name, value in targets.items()}

        return tf.data.Dataset.from_generator(generate, output_signature=stream(1).element_spec)

    with pytest.raises(Exception, match="killed"):
        fit(tiny_model(), settings, Batches(epochs=2, train=killed_in_the_second_epoch), STEPS, tmp_path)
    assert epochs_done(tmp_path / "progress" / "epochs.csv") == 1
    batches = Batches(epochs=2)
    epochs = fit(tiny_model(seed=1), settings, batches, STEPS, tmp_path)
    assert batches.calls == [(0, 1), (1, 2)]
    # Every epoch ran once: the log holds no epoch twice.
    assert pd.read_csv(tmp_path / "progress" / "epochs.csv")["epoch"].tolist() == [0, 1, 2] == epochs["epoch"].tolist()


def test_a_job_killed_while_a_phase_end_was_written_resumes_from_the_backup_or_the_copy_before_it(tmp_path, monkeypatch):
    """Killed while the phase's end state was written (after its last epoch): Keras' backup is still
    there, so the rerun trains no epoch again; where that backup was cut short too, Keras' copy from
    the epoch before reruns the last epoch only."""
    settings = settings_for(epochs=2)
    real_save = keras.Model.save_weights

    def killed_at_the_phase_end(self, filepath, *args, **kwargs):
        if Path(filepath).name.startswith(".phase_0"):
            raise KeyboardInterrupt("killed")
        return real_save(self, filepath, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(keras.Model, "save_weights", killed_at_the_phase_end)
        with pytest.raises(KeyboardInterrupt):
            fit(tiny_model(), settings, Batches(epochs=2), STEPS, tmp_path / "job")
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "job", cut)
    latest = cut / "resume" / "phase_0" / "latest.weights.h5"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    for outdir, rerun in ((tmp_path / "job", []), (cut, [1])):
        epochs = fit(tiny_model(seed=1), settings, Batches(epochs=2), STEPS, outdir)
        assert pd.read_csv(outdir / "progress" / "epochs.csv")["epoch"].tolist() == [0, 1, *rerun]
        assert epochs["epoch"].tolist() == [0, 1]


def test_a_job_interrupted_while_h5py_wrote_an_epochs_backup_resumes_from_the_backup_before(tmp_path, monkeypatch):
    """Ctrl-C inside h5py leaves a cleanly closed file with part of the model in it, which reads to
    its end: written in place, every rerun failed to load it. The backup is written aside, so the
    rerun finds the whole one of the epoch before and runs the interrupted epoch's end again."""
    settings = settings_for(epochs=2)
    real_save, saves = keras.Model.save_weights, []

    def interrupted_in_the_second_backup(self, filepath, *args, **kwargs):
        if "latest.weights.h5" in Path(filepath).name:
            saves.append(filepath)
            if len(saves) == 2:
                with h5py.File(filepath, "w") as partial:  # what h5py leaves: a few groups, closed
                    partial.create_group("layers/dense/vars")
                raise KeyboardInterrupt("interrupted")
        return real_save(self, filepath, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(keras.Model, "save_weights", interrupted_in_the_second_backup)
        with pytest.raises(KeyboardInterrupt):
            fit(tiny_model(), settings, Batches(epochs=2), STEPS, tmp_path)
    backup = tmp_path / "resume" / "phase_0"
    assert sorted(path.name for path in backup.iterdir()) == sorted(
        ["latest.weights.h5", "latest.weights.h5.bkp", "training_metadata.json", "training_metadata.json.bkp"]
    )  # the interrupted write left nothing beside them
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1
    batches = Batches(epochs=1)
    epochs = fit(tiny_model(seed=1), settings, batches, STEPS, tmp_path)
    assert epochs["epoch"].tolist() == [0, 1]
    assert pd.read_csv(tmp_path / "progress" / "epochs.csv")["epoch"].tolist() == [0, 1, 1]  # the second epoch again


def test_a_job_killed_before_a_finished_phases_backup_was_removed_starts_the_next_phase_afresh(tmp_path, monkeypatch):
    """The frozen phase's backup outlives its end state by a moment: the fine-tuning phase must not
    resume from it (another phase's optimizer, its epochs and steps)."""
    settings = settings_for(epochs=2, frozen=1)
    real_rmtree = shutil.rmtree

    def killed_before_removing(path, *args, **kwargs):
        if Path(path).name.startswith("phase_"):
            raise KeyboardInterrupt("killed")
        return real_rmtree(path, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(shutil, "rmtree", killed_before_removing)
        with pytest.raises(KeyboardInterrupt):
            fit(tiny_model(), settings, Batches(epochs=1), STEPS, tmp_path)
    assert (tmp_path / "progress" / "phase_0.weights.h5").exists() and any((tmp_path / "resume").rglob("*.h5"))
    batches = Batches(epochs=1)
    epochs = fit(tiny_model(seed=1), settings, batches, STEPS, tmp_path)
    assert batches.calls == [(1, 1)] and epochs["epoch"].tolist() == [0, 1]
    # The fine-tuning phase's own schedule: it ends at the minimum lr after its own steps.
    assert epochs["learning_rate"].iloc[-1] == pytest.approx(1e-6 * BATCH / 256, rel=1e-3)


def test_a_job_killed_while_an_epoch_was_logged_runs_that_epoch_again(tmp_path, monkeypatch):
    """Keras' backup is written after the epoch log and the best weights: a kill between them runs
    the epoch again instead of leaving it out of the history."""
    settings = settings_for(epochs=2)
    real_log = keras.callbacks.CSVLogger.on_epoch_end

    def killed_at_the_second_epoch(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("killed")
        return real_log(self, epoch, logs)

    with monkeypatch.context() as patched:
        patched.setattr(keras.callbacks.CSVLogger, "on_epoch_end", killed_at_the_second_epoch)
        with pytest.raises(KeyboardInterrupt):
            fit(tiny_model(), settings, Batches(epochs=2), STEPS, tmp_path)
    assert epochs_done(tmp_path / "progress" / "epochs.csv") == 1
    batches = Batches(epochs=1)
    epochs = fit(tiny_model(seed=1), settings, batches, STEPS, tmp_path)
    assert batches.calls == [(0, 1)] and epochs["epoch"].tolist() == [0, 1]


def test_a_validation_stream_of_unknown_length_given_its_batches_ends_without_a_ran_out_of_data_warning(tmp_path):
    """The shards' validation stream is filtered by clip id, so tf.data cannot count it, and Keras
    3.15 warns "Your input ran out of data; interrupting training" in the first epoch of every
    fit() that has to find its length out: every training log carried it, alarming for nothing.
    Given the stream's batches, fit ends it there."""

    def uncounted():
        return stream(1).filter(lambda inputs, targets: True)

    logs = []
    for steps, expected in ((None, True), (STEPS, False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            logs.append(fit(tiny_model(), settings_for(epochs=2), Batches(epochs=2, validation=uncounted), STEPS, tmp_path / str(steps), validation_steps=steps))
        assert any("ran out of data" in str(warning.message) for warning in caught) == expected
    # every epoch validated on the whole stream, as without the count (Keras restarts it each epoch)
    assert len(logs[1]) == 2 and np.isfinite(logs[1]["val_loss"]).all()
    np.testing.assert_allclose(logs[1]["val_loss"], logs[0]["val_loss"], rtol=1e-6)


def test_a_diverged_run_raises_and_leaves_nothing_to_resume(tmp_path):
    batches = Batches(epochs=2, validation=lambda: stream(1, valid=False))
    with pytest.raises(ValueError, match=r"training diverged: no epoch had a finite validation loss \(last epoch: loss .*, val_loss nan\)"):
        fit(tiny_model(), settings_for(epochs=2), batches, STEPS, tmp_path)
    assert not (tmp_path / "progress").exists() and not (tmp_path / "resume").exists()


def test_a_run_without_a_training_step_raises_and_leaves_nothing_to_resume(tmp_path):
    batches = Batches(epochs=1, train=lambda: stream(1).take(0))
    with pytest.raises(ValueError, match=r"no training step ran \(the training stream was empty\)"):
        fit(tiny_model(), settings_for(epochs=1), batches, STEPS, tmp_path)
    assert not (tmp_path / "progress").exists() and not (tmp_path / "resume").exists()


def test_training_xla_compiles_the_training_step(tmp_path, monkeypatch):
    compiled = []

    def first_step(self, *args, **kwargs):
        compiled.append(self.jit_compile)
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "fit", first_step)
    for xla in (True, False):
        with pytest.raises(KeyboardInterrupt):
            fit(tiny_model(), settings_for(epochs=1, xla=xla), Batches(epochs=1), STEPS, tmp_path / str(xla))
    assert compiled == [True, False]


def test_every_head_gets_its_tasks_target_and_the_model_only_its_own_inputs():
    model = SimpleNamespace(inputs=[SimpleNamespace(name="frames")], output_names=["video_emotion", "emotion", "audio_valence", "arousal"])
    inputs, targets = clips()
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(CLIPS)
    ((got_inputs, got_targets),) = list(for_model(dataset, model).as_numpy_iterator())
    assert list(got_inputs) == ["frames"]
    assert list(got_targets) == model.output_names
    np.testing.assert_array_equal(got_targets["video_emotion"], targets["emotion"])
    np.testing.assert_array_equal(got_targets["emotion"], targets["emotion"])
    np.testing.assert_array_equal(got_targets["audio_valence"], targets["valence"])
    np.testing.assert_array_equal(got_targets["arousal"], targets["arousal"])


def test_the_best_weights_take_only_a_strictly_lower_finite_validation_loss(tmp_path):
    path = tmp_path / "best.weights.h5"
    model = tiny_model()
    best = BestWeights(path, best=0.4)  # resumed: the killed run's best is the one to beat
    best.set_model(model)
    best.on_epoch_end(3, {"val_loss": 0.5})
    best.on_epoch_end(4, {"loss": 0.1})  # an epoch without validation
    best.on_epoch_end(5, {"val_loss": float("nan")})
    assert not path.exists() and best.best == 0.4
    best.on_epoch_end(6, {"val_loss": 0.3})
    saved = path.read_bytes()
    model.get_layer("emotion").kernel.assign(np.zeros((8, 3), "float32"))
    best.on_epoch_end(7, {"val_loss": 0.3})  # as good, not better: the earlier epoch stays
    assert path.read_bytes() == saved and json.loads((tmp_path / "best.json").read_text()) == {"epoch": 6, "val_loss": 0.3}


def test_an_empty_or_out_of_order_epoch_log_reads_as_one_row_per_epoch_in_order(tmp_path):
    log = tmp_path / "epochs.csv"
    log.write_text("")  # CSVLogger opens it before the first epoch ends
    assert epochs_done(log) == 0 and read_epochs(log).empty
    # Killed twice: epochs 1 and 2 rerun after the first kill, then the job killed after epoch 1 again.
    log.write_text("epoch,loss,val_loss\n0,2.0,1.5\n1,1.5,0.9\n2,1.2,1.0\n1,1.4,1.1\n")
    epochs = read_epochs(log)
    assert epochs["epoch"].tolist() == [0, 1, 2] and epochs["val_loss"].tolist() == [1.5, 1.1, 1.0]
    assert epochs.index.tolist() == [0, 1, 2]


def test_the_shards_signature_does_not_depend_on_their_order(tmp_path):
    paths = []
    for name in ("b.tfrecord", "a.tfrecord"):
        (tmp_path / name).write_bytes(name.encode())
        paths.append(tmp_path / name)
    assert shard_signature(paths) == shard_signature(paths[::-1])
    assert [row[0] for row in shard_signature(paths)] == sorted(map(str, paths))


def test_a_backup_whose_metadata_names_no_epoch_is_not_whole(tmp_path):
    weights, metadata = tmp_path / "latest.weights.h5", tmp_path / "training_metadata.json"
    tiny_model().save_weights(weights)
    metadata.write_text('{"epoch": 2, "batch": 0}')
    assert whole_backup(weights, metadata)
    for broken in ('{"batch": 0}', '{"epoch": null}', '{"epoch": "2"}', "[2]"):
        metadata.write_text(broken)
        assert not whole_backup(weights, metadata), broken


def test_a_phases_optimizer_takes_the_training_weight_decay_layer_decay_and_head_lr():
    model = tiny_model()
    training = settings_for()["training"] | {"weight_decay": 0.2, "layer_decay": 0.5, "head_lr_multiplier": 3.0}
    optimizer = phase_optimizer(model, training, 0, 2, STEPS)
    assert optimizer.weight_decay == pytest.approx(0.2)
    patch = next(variable.path for variable in model.get_layer("videomae").get_layer("patch_embed").weights)
    head = model.get_layer("emotion").kernel.path
    assert optimizer.lr_scales[patch] == pytest.approx(0.5) and optimizer.lr_scales[head] == pytest.approx(3.0)


def test_the_warm_up_is_the_nearest_whole_number_of_steps():
    assert phase_schedule({"warmup_epochs": 0.7}, 0, 2, steps_per_epoch=4) == (3, 8)


CREMA_LABELS = ["anger", "happiness", "neutral", "sadness"]  # neutral: not one of eNTERFACE's classes


def test_a_model_tested_on_another_corpus_scores_the_shared_labels_renormalised_and_counts_the_rest(tmp_path, monkeypatch):
    """An untrained CREMA-D model (hybrid: its branches' own predictions too) on eNTERFACE: the
    neutral column goes, the other probabilities are renormalised, the surprise clip is left out."""
    settings = {**settings_for_experiment("hybrid"), "labels": CREMA_LABELS}
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    build_model(settings).save(model_dir / "model.keras")
    write_json(settings, model_dir / SETTINGS_FILE)
    write_late_weights(None, model_dir)
    labels = ["anger", "happiness", "sadness", "surprise", "anger", "sadness"]
    shades = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (90, 90, 90), (160, 90, 40), (40, 160, 160)]
    clips = [
        make_clip(f"enterface_{index}", label, dataset="enterface", frames=constant_frames([shade] * 4), speaker=str(index))
        for index, (label, shade) in enumerate(zip(labels, shades, strict=True))
    ]
    tfrecord = write_shard(tmp_path / "enterface" / "shards" / "tfrecord" / "0.tfrecord", clips)
    tabular, _ = write_tabular(tmp_path, clips, "enterface")
    network_outputs = []
    monkeypatch.setattr(cross_corpus, "raw_outputs", lambda *args: network_outputs.append(raw_outputs(*args)) or network_outputs[-1])
    metrics = predict_other_corpus(model_dir, [tabular], [tfrecord], "enterface", tmp_path / "cross")
    shared = ["anger", "happiness", "sadness"]
    assert metrics["labels"] == shared and metrics["outside_label_set"] == 1
    assert metrics["experiment"] == "test_hybrid" and metrics["trained_on"] == ["crema_d"] and metrics["tested_on"] == "enterface"
    assert set(metrics["branches"]) == {"video", "audio", "face"}
    predictions = pd.read_parquet(tmp_path / "cross" / PREDICTIONS_FILE)
    scored = [clip["clip_id"] for clip in clips if clip["label"] != "surprise"]
    assert sorted(predictions["clip_id"]) == scored
    assert [column for column in predictions if column.startswith("prob_")] == [f"prob_{label}" for label in shared]
    ((ids, outputs),) = network_outputs  # the network's own probabilities over its four classes
    full = pd.DataFrame(TrainedModel.load(model_dir).fused(outputs)["emotion"], index=ids, columns=CREMA_LABELS).loc[predictions["clip_id"], shared]
    np.testing.assert_allclose(predictions[[f"prob_{label}" for label in shared]], full.div(full.sum(axis=1), axis=0), atol=1e-5)
    assert metrics["n_clips"] == len(scored) and metrics["uar"] == pytest.approx(evaluate_predictions(predictions, shared)["uar"])
