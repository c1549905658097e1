"""Training one experiment fold end to end on small learnable shards, and resuming a killed job."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from test_fusion_dataset import constant_frames, make_clip, mel_ramp, write_shard, write_tabular

from avemotion.config import ConfigError
from avemotion.evaluate.cross_corpus import folder_metrics
from avemotion.fusion.mixing import Mixing
from avemotion.metrics import evaluate_predictions
from avemotion.model.bundle import RUN_FILES
from avemotion.train import experiment
from avemotion.train.cross_corpus import predict_other_corpus
from avemotion.train.experiment import build_model, run_experiment_fold
from avemotion.train.fitting import (
    BestWeights,
    best_so_far,
    epochs_done,
    phase_schedule,
    read_epochs,
    repair_backup,
    shard_signature,
    training_progress,
)
from avemotion.train.optimizer import WarmupCosine
from avemotion.train.plan import training_phases
from avemotion.train.predict import branch_predictions, predictions_table

LABELS = ["anger", "happiness", "sadness"]
COLOUR = {"anger": (220, 40, 40), "happiness": (40, 220, 40), "sadness": (40, 40, 220)}
VA = {"anger": (-0.6, 0.7), "happiness": (0.8, 0.5), "sadness": (-0.7, -0.4)}


def learnable_shards(root: Path, speakers=6, clips_per_class=2, dataset="crema_d", face_noise=0.0):
    """One dataset whose class shows in the frames' colour, the Mel's level and the face features
    (``face_noise``: plus noise of std face_noise * (1 + speaker), so each fold's training clips have
    their own face statistics)."""
    rng = np.random.default_rng(0)
    clips = []
    for speaker in range(speakers):
        for label in LABELS:
            for take in range(clips_per_class):
                index = LABELS.index(label)
                frames = np.clip(constant_frames([COLOUR[label]] * 4).astype(int) + rng.integers(-20, 20, (4, 32, 32, 3)), 0, 255)
                clips.append(
                    make_clip(
                        f"{dataset}_{speaker}_{label}_{take}", label, dataset=dataset, frames=frames.astype(np.uint8), mel=mel_ramp() + 20 * index,
                        face=(index + face_noise * (1 + speaker) * rng.standard_normal((4, 49)) if face_noise else np.full((4, 49), index)).astype(np.float32), speaker=str(1000 + speaker), fold=1 + speaker % 3,
                        label_index=index, valence=VA[label][0], arousal=VA[label][1],
                    )
                )  # fmt: skip
    tfrecord = write_shard(root / dataset / "shards" / "tfrecord" / "0.tfrecord", clips)
    tabular, table = write_tabular(root, clips, dataset)
    return [tabular], [tfrecord], table


def settings_for(fusion: str, epochs: int = 3) -> dict:
    training = {
        "epochs": epochs, "batch_size": 6, "learning_rate": 0.05, "warmup_epochs": 0, "weight_decay": 0.05,
        "layer_decay": 0.75, "head_lr_multiplier": 1.0, "drop_path": 0.0, "label_smoothing": 0.1, "va_loss_weight": 1.0, "aux_loss_weight": 0.3,
        "class_balanced": False, "validation_fraction": 0.2, "frozen_backbone_epochs": 0, "mixed_precision": "float32",
        "xla": False, "seed": 0, "gpus": 0,
    }  # fmt: skip
    return {
        "name": f"test_{fusion}", "datasets": ["crema_d"], "fusion": fusion, "labels": LABELS, "dataset_weights": None,
        "folds": [1], "final": False, "model": {"variant": "tiny", "pretrained": None}, "num_frames": 4, "image_size": 32,
        "training": training,
    }  # fmt: skip


@pytest.mark.parametrize("fusion", ["hybrid", "late"])
def test_fold_outputs_hold_only_test_speakers_and_metrics_match_predictions(tmp_path, fusion):
    tabular, tfrecord, table = learnable_shards(tmp_path / "results")
    out = tmp_path / "experiment" / "fold_1"
    metrics = run_experiment_fold(settings_for(fusion), tabular, tfrecord, 1, out)
    predictions = pd.read_parquet(out / "predictions.parquet")
    test_clips = table[table["fold"] == 1]
    assert sorted(predictions["clip_id"]) == sorted(test_clips["clip_id"])
    split = json.loads((out / "split.json").read_text())
    speakers = {name: set(table.set_index("clip_id").loc[ids, "speaker"]) for name, ids in split.items()}
    assert not speakers["test"] & (speakers["train"] | speakers["validation"]) and not speakers["train"] & speakers["validation"]
    assert json.loads((out / "metrics.json").read_text())["uar"] == pytest.approx(evaluate_predictions(predictions, LABELS)["uar"])
    assert metrics["evaluated_split"] == "test" and metrics["backend"] == keras.backend.backend()  # where it trained, on record
    probabilities = predictions[[f"prob_{name}" for name in LABELS]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert predictions[["valence_pred", "arousal_pred"]].abs().max().max() <= 1
    assert len(pd.read_csv(out / "history.csv")) == 3
    # Exactly the files the training rules declare (a file no rule declares would outlive a rerun).
    assert sorted(path.name for path in out.iterdir()) == sorted(RUN_FILES)
    # Each branch's own predictions are kept, and its metrics are those of its own column.
    assert set(metrics["branches"]) == {"video", "audio", "face"}
    for branch, branch_metrics in metrics["branches"].items():
        assert branch_metrics["uar"] == pytest.approx(evaluate_predictions(branch_predictions(predictions, branch), LABELS)["uar"])
    weights = json.loads((out / "late_weights.json").read_text())
    if fusion == "late":
        assert set(weights) == {"emotion", "valence", "arousal"}
        assert all(abs(sum(task.values()) - 1) < 1e-9 for task in weights.values())
    else:
        assert weights is None
    # The colours, Mel levels and face features give the class away: a real model learns it.
    assert metrics["uar"] >= 0.9


@pytest.mark.parametrize(
    "key, message",
    [
        ("batch_size", r"training\.batch_size: 10000 is larger than the \d+ training clips of experiment 'test_late', fold 1"),
        ("accumulation_steps", r"training\.accumulation_steps: 10000 is more than the \d+ batches of the .* of experiment 'test_late', fold 1"),
    ],
)
def test_a_batch_or_update_larger_than_the_jobs_split_stops_the_job_with_the_numbers(tmp_path, key, message):
    """The config check sees the splits only once the corpora are indexed, and not the clips
    quarantined after it: the job checks its own split before it trains, not after training nothing
    (a batch larger than the training clips, a phase with fewer batches than one update takes)."""
    tabular, tfrecord, _ = learnable_shards(tmp_path / "results")
    settings = settings_for("late")
    settings["training"] = {**settings["training"], key: 10_000}
    with pytest.raises(ConfigError, match=message):
        run_experiment_fold(settings, tabular, tfrecord, 1, tmp_path / "out")
    assert not (tmp_path / "out" / "model.keras").exists()


def test_a_test_fold_without_clips_stops_the_job_instead_of_scoring_the_validation_clips(tmp_path):
    """A partial corpus copy (or a fold quarantined away): the validation clips chose the epoch, so
    reporting them as that fold's test clips would be optimistic; the job says so and trains nothing."""
    tabular, tfrecord, _ = learnable_shards(tmp_path / "results")  # folds 1-3
    with pytest.raises(ValueError, match=r"experiment test_late fold 5: no test clips: no usable clip of its classes is in fold 5 \(set experiments\.test_late\.folds"):
        run_experiment_fold(settings_for("late"), tabular, tfrecord, 5, tmp_path / "out")
    assert not (tmp_path / "out" / "model.keras").exists()


def test_non_finite_outputs_are_an_error_not_the_first_class():
    """argmax reads a NaN row as the first class: a diverged model's clips would be scored as
    confident predictions of it."""
    truth = pd.DataFrame({"clip_id": ["a", "b"], "dataset": "crema_d", "speaker": "1", "fold": 1, "label": ["anger", "sadness"], "valence": 0.0, "arousal": 0.0})
    final = {"emotion": np.array([[0.1, 0.2, 0.7], [np.nan] * 3]), "valence": np.zeros(2), "arousal": np.zeros(2)}
    with pytest.raises(ValueError, match=r"the model gave non-finite emotion outputs for 1 of 2 clips"):
        predictions_table(["a", "b"], final, truth, LABELS)
    final["emotion"][1] = [0.6, 0.2, 0.2]
    assert predictions_table(["a", "b"], final, truth, LABELS)["predicted_label"].tolist() == ["sadness", "anger"]
    final["arousal"][0] = np.inf
    with pytest.raises(ValueError, match=r"non-finite arousal outputs for 1 of 2 clips"):
        predictions_table(["a", "b"], final, truth, LABELS)


def test_a_held_out_corpus_is_scored_on_the_classes_its_mixture_learned(tmp_path, caplog):
    """A mixture with labels of its own: the held-out corpus' classes that no training corpus holds
    were never learned, so it is scored on the others, as cross-corpus runs are (a learned model's
    UAR was capped by a recall of 0 on such a class)."""
    crema_tabular, crema_tfrecord, _ = learnable_shards(tmp_path / "results", speakers=6)
    table = pd.read_parquet(crema_tabular[0])
    table = table[table["label"] != "sadness"].reset_index(drop=True)  # CREMA-D's copy without sadness
    table.loc[0, "label"] = "neutral"  # outside the mixture's labels, in a training corpus: not the held-out one's
    table.to_parquet(crema_tabular[0])
    other_tabular, other_tfrecord, other = learnable_shards(tmp_path / "results", speakers=3, dataset="enterface")
    other.loc[:1, "label"] = "surprise"  # the held-out corpus' clips outside the mixture's labels
    pd.read_parquet(other_tabular[0]).assign(label=other["label"].to_numpy()).to_parquet(other_tabular[0])
    settings = {**settings_for("late"), "datasets": ["crema_d", "enterface"]}
    out = tmp_path / "experiment" / "heldout_enterface"
    metrics = run_experiment_fold(settings, crema_tabular + other_tabular, crema_tfrecord + other_tfrecord, None, out, held_out_dataset="enterface")
    sad = set(other.loc[other["label"] == "sadness", "clip_id"])
    surprised = set(other.loc[other["label"] == "surprise", "clip_id"])
    assert sorted(json.loads((out / "split.json").read_text())["test"]) == sorted(set(other["clip_id"]) - sad - surprised)
    assert metrics["labels"] == ["anger", "happiness"] and metrics["unlearned_test_clips"] == len(sad)
    # the job's log says which class it had no training clip of
    assert "test_late held-out enterface: no training clip of sadness: the model learns 3 classes from clips of 2" in caplog.text
    assert len(surprised) == 2 and metrics["unscored_test_clips"] == len(sad) + 2 and metrics["outside_label_set"] == 3
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert [column for column in predictions if column.startswith("prob_")] == ["prob_anger", "prob_happiness"]
    np.testing.assert_allclose(predictions[["prob_anger", "prob_happiness"]].sum(axis=1), 1.0, atol=1e-5)
    assert metrics["uar"] == pytest.approx(evaluate_predictions(predictions, ["anger", "happiness"])["uar"])
    assert folder_metrics(out / "predictions.parquet", out / "metrics.json")["labels"] == ["anger", "happiness"]  # the report's table


def test_a_held_out_corpus_of_unlearned_classes_only_says_so_before_training(tmp_path):
    crema_tabular, crema_tfrecord, _ = learnable_shards(tmp_path / "results", speakers=6)
    other_tabular, other_tfrecord, other = learnable_shards(tmp_path / "results", speakers=3, dataset="enterface")
    for path, kept in ((crema_tabular[0], ["anger", "happiness"]), (other_tabular[0], ["sadness"])):
        table = pd.read_parquet(path)
        table[table["label"].isin(kept)].to_parquet(path)
    settings = {**settings_for("late"), "datasets": ["crema_d", "enterface"]}
    with pytest.raises(ValueError, match=r"held-out enterface: all 6 clips of enterface are of classes no training clip holds \(learned: anger, happiness\): nothing to score"):
        run_experiment_fold(settings, crema_tabular + other_tabular, crema_tfrecord + other_tfrecord, None, tmp_path / "out", held_out_dataset="enterface")


def test_clips_outside_the_label_set_are_left_out_and_counted_per_corpus(tmp_path):
    table = pd.DataFrame({
        "clip_id": ["a", "b", "c", "d"], "dataset": ["crema_d", "crema_d", "enterface", "enterface"], "speaker": "1", "fold": 1,
        "label": ["anger", "neutral", "surprise", "surprise"], "valence": 0.0, "arousal": 0.0, "mfcc_0_mean": 1.0,
    })  # fmt: skip
    table.to_parquet(tmp_path / "tabular.parquet")
    clips, outside = experiment.experiment_clips([tmp_path / "tabular.parquet"], LABELS)
    assert clips["clip_id"].tolist() == ["a"] and outside == {"crema_d": 1, "enterface": 2}


def test_a_held_out_corpus_is_scored_on_the_labels_its_training_clips_hold_in_the_models_order():
    """Validation clips chose the epoch, they taught the model no class: a label only they (or the
    test clips) hold is not learned."""
    clips = pd.DataFrame({"clip_id": ["a", "b", "c", "d"], "label": ["sadness", "anger", "happiness", "happiness"]})
    split = {"train": ["a", "b"], "validation": ["c"], "test": ["d"]}
    assert experiment.learned_labels(clips, split, ["happiness", "sadness", "anger"]) == ["sadness", "anger"]


def test_a_runs_training_stream_starts_from_its_own_seed_and_each_later_start_from_another():
    assert experiment.stream_seed(7) == experiment.stream_seed(7, 0, 0) == 7
    later = [experiment.stream_seed(7, *start) for start in ((0, 1), (0, 2), (1, 1), (1, 2))]
    assert len(set(later)) == 4 and 7 not in later


def test_the_mixing_keys_reach_the_training_batches_and_mixing_is_off_without_them():
    training = {"label_smoothing": 0.2, "mixup": 0.8, "cutmix": 1.0, "mixup_switch_prob": 0.3, "mixup_prob": 0.6}
    assert experiment.mixing_of(training) == Mixing(mixup=0.8, cutmix=1.0, switch_prob=0.3, prob=0.6, label_smoothing=0.2)
    assert not experiment.mixing_of({"label_smoothing": 0.1}).active


def test_a_fold_that_leaves_no_validation_speaker_stops_before_training(tmp_path):
    """Two speakers, one in the test fold: the other cannot both train and choose the epoch."""
    tabular, tfrecord, _ = learnable_shards(tmp_path / "results", speakers=2)  # speaker 0 in fold 1, speaker 1 in fold 2
    with pytest.raises(ValueError, match=r"experiment test_late fold 1: no training or validation speakers left"):
        run_experiment_fold(settings_for("late"), tabular, tfrecord, 1, tmp_path / "out")
    assert not (tmp_path / "out" / "model.keras").exists()


def test_the_experiments_frame_normalization_reaches_its_model():
    settings = settings_for("late")  # like settings saved before the option existed: imagenet
    assert "clip_standardize" not in {layer.name for layer in build_model(settings).layers}
    settings["model"]["frame_normalization"] = "clip"
    assert "clip_standardize" in {layer.name for layer in build_model(settings).layers}


@pytest.mark.parametrize("weights", [None, {"crema_d": 1.0, "enterface": 1.0}])
def test_leave_one_corpus_out_tests_the_unseen_corpus_and_its_model_transfers(tmp_path, weights):
    """With dataset_weights too: the held-out corpus is not one of the mixed training streams (its
    empty stream ended the mixture, so such runs trained on nothing and still wrote a model)."""
    crema_tabular, crema_tfrecord, _ = learnable_shards(tmp_path / "results", speakers=6)
    other_tabular, other_tfrecord, other = learnable_shards(tmp_path / "results", speakers=3, dataset="enterface")
    settings = {**settings_for("late"), "datasets": ["crema_d", "enterface"], "dataset_weights": weights}
    out = tmp_path / "experiment" / "heldout_enterface"
    metrics = run_experiment_fold(
        settings, crema_tabular + other_tabular, crema_tfrecord + other_tfrecord, None, out, held_out_dataset="enterface"
    )
    split = json.loads((out / "split.json").read_text())
    assert sorted(split["test"]) == sorted(other["clip_id"])
    assert all(clip.startswith("crema_d_") for clip in split["train"] + split["validation"])
    assert metrics["held_out_dataset"] == "enterface" and metrics["n_clips"] == len(other)
    assert pd.read_csv(out / "history.csv")["loss"].notna().all()  # every epoch trained

    # The held-out model tested on that corpus again through the cross-corpus path: same clips, same
    # labels (eNTERFACE has all three), so the same predictions.
    crossed = predict_other_corpus(out, other_tabular, other_tfrecord, "enterface", tmp_path / "cross_enterface")
    assert crossed["labels"] == LABELS and crossed["tested_on"] == "enterface"
    again = pd.read_parquet(tmp_path / "cross_enterface" / "predictions.parquet")
    first = pd.read_parquet(out / "predictions.parquet")
    np.testing.assert_allclose(again[[f"prob_{n}" for n in LABELS]], first[[f"prob_{n}" for n in LABELS]], atol=1e-5)
    assert crossed["uar"] == pytest.approx(metrics["uar"])
    assert crossed["uar"] >= 0.9


def test_a_weighted_mixture_trains_on_the_corpora_that_have_training_clips_in_the_run(tmp_path):
    """A partial copy of eNTERFACE whose speakers are all in the test fold: its empty training
    stream ended the dataset_weights mixture, and the run trained on nothing yet wrote a model."""
    crema_tabular, crema_tfrecord, _ = learnable_shards(tmp_path / "results", speakers=6)
    other_tabular, other_tfrecord, _ = learnable_shards(tmp_path / "results", speakers=1, dataset="enterface")  # fold 1
    settings = {**settings_for("late", epochs=2), "datasets": ["crema_d", "enterface"], "dataset_weights": {"crema_d": 1.0, "enterface": 1.0}}
    out = tmp_path / "fold_1"
    run_experiment_fold(settings, crema_tabular + other_tabular, crema_tfrecord + other_tfrecord, 1, out)
    assert pd.read_csv(out / "history.csv")["loss"].notna().all()  # every epoch trained


def test_a_diverged_training_says_so_and_leaves_nothing_a_rerun_would_resume(tmp_path):
    """Every validation loss NaN: the job failed on a missing best.weights.h5, and its rerun found the
    phase done and failed the same way without training."""
    tabular, tfrecord, _ = learnable_shards(tmp_path / "results")
    settings = settings_for("hybrid", epochs=1)
    settings["training"]["learning_rate"] = 1e12
    out = tmp_path / "fold_1"
    with pytest.raises(ValueError, match=r"training diverged: no epoch had a finite validation loss .* lower training\.learning_rate"):
        run_experiment_fold(settings, tabular, tfrecord, 1, out)
    assert not (out / "progress").exists() and not (out / "resume").exists() and not (out / "model.keras").exists()


def test_an_epoch_logged_twice_after_a_kill_is_one_epoch_in_the_history_and_the_best_weights_keep_their_loss(tmp_path):
    """The epoch log is written before Keras' backup: a job killed between them runs that epoch again,
    and its log keeps the rerun's row; the best weights the killed run saved for that epoch (0.9) are
    still the ones to beat (read from the log, 1.0 would let a worse epoch replace them)."""

    log = tmp_path / "epochs.csv"
    log.write_text("epoch,loss,val_loss\n0,2.0,1.5\n1,1.5,0.9\n1,1.4,1.1\n2,1.2,1.0\n")
    epochs = read_epochs(log)
    assert epochs["epoch"].tolist() == [0, 1, 2] and epochs["val_loss"].tolist() == [1.5, 1.1, 1.0]
    assert epochs_done(log) == 3 and epochs_done(tmp_path / "none.csv") == 0
    best = tmp_path / "best.weights.h5"
    assert best_so_far(best) is None
    best.write_bytes(b"weights of the killed run's epoch 1")
    (tmp_path / "best.json").write_text('{"epoch": 1, "val_loss": 0.9}')
    assert best_so_far(best) == 0.9


def test_a_best_weights_record_without_its_weights_is_no_best_to_beat(tmp_path):
    """Weights removed but their record left: the resumed job must save its next epoch's weights
    (it loads them at the end), not hold out for the recorded loss."""
    (tmp_path / "best.json").write_text('{"epoch": 1, "val_loss": 0.2}')
    assert best_so_far(tmp_path / "best.weights.h5") is None


def test_the_training_stream_of_a_resumed_job_or_later_phase_draws_new_batches(tmp_path, monkeypatch):
    """Each fit() reads its stream from the start: a resumed job (or the fine-tuning phase after the
    frozen one) repeated the first epoch's batches, crops and mixing."""

    tabular, tfrecord, table = learnable_shards(tmp_path / "results")
    settings = settings_for("late")
    split = {"train": list(table["clip_id"]), "validation": list(table["clip_id"])[:6]}

    def first_batches(start):
        train, _ = experiment.datasets_for(settings, tfrecord, split, start=start)
        return [inputs["frames"].numpy() for inputs, _ in train.take(2)]

    start, again = first_batches((0, 0)), first_batches((0, 0))
    assert all(np.array_equal(a, b) for a, b in zip(start, again))  # a fresh run: the seed's own stream
    for later in ((0, 2), (1, 1), (1, 2)):
        assert not any(np.array_equal(a, b) for a, b in zip(start, first_batches(later))), later
    # fit asks for each phase's stream where the log ends: the fine-tuning phase after one frozen epoch
    started = []
    real = experiment.datasets_for
    monkeypatch.setattr(experiment, "datasets_for", lambda *args, **kwargs: started.append(args[-1]) or real(*args, **kwargs))
    settings["training"].update(epochs=2, frozen_backbone_epochs=1)
    experiment.run_experiment_fold(settings, tabular, tfrecord, 1, tmp_path / "fold_1")
    assert started == [(0, 0), (1, 1)]


def test_a_resumed_job_keeps_its_progress_and_a_fresh_one_starts_clean(tmp_path):
    settings = settings_for("hybrid", epochs=4)
    progress = training_progress(tmp_path, settings)
    pd.DataFrame({"epoch": [0, 1, 2], "val_loss": [0.9, 0.4, 0.6]}).to_csv(progress / "epochs.csv", index=False)
    (progress / "best.weights.h5").write_bytes(b"weights of epoch 1")
    (progress / "best.json").write_text('{"epoch": 1, "val_loss": 0.4}')
    # A Keras backup exists (the job was killed): the epoch log and best weights stay, and the
    # checkpoint starts from the best loss so far instead of infinity.
    (tmp_path / "resume" / "phase_0").mkdir(parents=True)
    (tmp_path / "resume" / "phase_0" / "training_metadata.json").write_text("{}")
    assert training_progress(tmp_path, settings) == progress and (progress / "best.weights.h5").exists()
    assert best_so_far(progress / "best.weights.h5") == 0.4
    # Killed between two phases: no backup yet, but the first phase's weights are kept.
    shutil.rmtree(tmp_path / "resume" / "phase_0")
    (progress / "phase_0.weights.h5").write_bytes(b"end of the frozen-backbone phase")
    assert training_progress(tmp_path, settings) == progress and (progress / "best.weights.h5").exists()
    # Rerun with other settings (the config changed after the kill): those epochs belong to another
    # model, so the job starts from nothing.
    changed = {**settings, "training": {**settings["training"], "learning_rate": 0.5}}
    (tmp_path / "resume" / "phase_1").mkdir(parents=True)
    (tmp_path / "resume" / "phase_1" / "training_metadata.json").write_text("{}")
    training_progress(tmp_path, changed)
    assert [path.name for path in progress.iterdir()] == ["settings.json"] and not (tmp_path / "resume").exists()
    # Other data with the same settings (the corpus changed after the kill: speakers moved between
    # training and validation): a fresh start too.
    (progress / "best.weights.h5").write_bytes(b"weights trained on speaker 5")
    (tmp_path / "resume" / "phase_1").mkdir(parents=True)
    (tmp_path / "resume" / "phase_1" / "training_metadata.json").write_text("{}")
    assert training_progress(tmp_path, changed, {"split": {"train": ["a"]}}) == progress
    assert [path.name for path in progress.iterdir()] == ["settings.json"]
    (progress / "phase_0.weights.h5").write_bytes(b"trained on a")
    assert training_progress(tmp_path, changed, {"split": {"train": ["a"]}}) == progress and (progress / "phase_0.weights.h5").exists()
    training_progress(tmp_path, changed, {"split": {"train": ["a", "b"]}})
    assert [path.name for path in progress.iterdir()] == ["settings.json"]
    # Killed under code whose weights and optimizer state were laid out otherwise (its record has
    # another state revision, or none): its checkpoint would not fit, so a fresh start too.
    (progress / "phase_0.weights.h5").write_bytes(b"saved by older code")
    record = json.loads((progress / "settings.json").read_text())
    (progress / "settings.json").write_text(json.dumps({key: value for key, value in record.items() if key != "state_revision"}))
    training_progress(tmp_path, changed, {"split": {"train": ["a", "b"]}})
    assert [path.name for path in progress.iterdir()] == ["settings.json"]
    # Neither backup nor phase weights (the earlier run finished, or never saved an epoch): a rerun
    # starts from nothing.
    (progress / "best.weights.h5").write_bytes(b"weights of an abandoned run")
    training_progress(tmp_path, changed)
    assert [path.name for path in progress.iterdir()] == ["settings.json"] and best_so_far(progress / "best.weights.h5") is None


def test_shards_rewritten_to_the_same_size_are_other_training_data(tmp_path):
    """A killed job resumes only on the shards it trained on: fused again (same size, new contents),
    their signature differs, so the rerun starts from epoch 1."""
    shard = tmp_path / "0.tfrecord"
    shard.write_bytes(b"clips fused before")
    os.utime(shard, ns=(1_000_000_000, 1_000_000_000))
    before = shard_signature([shard])
    assert shard_signature([str(shard)]) == before
    shard.write_bytes(b"clips fused again!")
    os.utime(shard, ns=(2_000_000_000, 2_000_000_000))
    assert shard.stat().st_size == len(b"clips fused before") and shard_signature([shard]) != before


def test_the_best_weights_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A kill while the best weights are written leaves the previous best file intact."""
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "best.weights.h5"
    best = BestWeights(path, best=None)
    best.set_model(model)
    best.on_epoch_end(0, {"val_loss": 0.5})
    saved = path.read_bytes()
    best.on_epoch_end(1, {"val_loss": 0.7})  # worse: kept
    assert path.read_bytes() == saved and best.best == 0.5
    assert json.loads((tmp_path / "best.json").read_text()) == {"epoch": 0, "val_loss": 0.5}  # their own loss, for a resumed job

    def killed_while_writing(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"half a file")
        raise KeyboardInterrupt

    model.layers[0].kernel.assign(np.ones((2, 1), np.float32))
    monkeypatch.setattr(type(model), "save_weights", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        best.on_epoch_end(2, {"val_loss": 0.1})
    assert path.read_bytes() == saved and sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "best.weights.h5"]


RESUME_SCRIPT = """
import json, sys
from avemotion.train.cross_corpus import predict_other_corpus
from avemotion.train.experiment import run_experiment_fold
from avemotion.train.predict import branch_predictions, predictions_table
settings, tabular, tfrecord, out = json.loads(sys.argv[1])
run_experiment_fold(settings, tabular, tfrecord, 1, out)
"""


def backed_up_epochs(out: Path) -> int:
    """The epochs Keras' backup of the running phase holds (its metadata, read while it may be written)."""
    held = 0
    for path in (out / "resume").glob("*/training_metadata.json"):
        with contextlib.suppress(OSError, ValueError):
            held = max(held, json.loads(path.read_text())["epoch"])
    return held


@pytest.mark.parametrize("frozen_epochs", [0, 1, 3])
def test_killed_training_resumes_from_its_last_completed_epoch(tmp_path, frozen_epochs):
    """Killed after two epochs: without a frozen-backbone phase inside the one phase; with one
    frozen epoch of 4 inside the second phase, which must not rerun the first or restart itself;
    with three inside the first phase, after which the second must start at its own epoch."""
    tabular, tfrecord, _ = learnable_shards(tmp_path / "results")
    out = tmp_path / "fold_1"
    settings = settings_for("hybrid", epochs=4)
    settings["training"]["frozen_backbone_epochs"] = frozen_epochs
    arguments = json.dumps([settings, tabular, tfrecord, str(out)])
    command = [sys.executable, "-c", RESUME_SCRIPT, arguments]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    epochs_so_far = out / "progress" / "epochs.csv"
    deadline = time.time() + 300
    while time.time() < deadline and not (epochs_so_far.exists() and len(epochs_so_far.read_text().splitlines()) >= 3 and backed_up_epochs(out) >= 2):
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # kill -9 after two completed epochs
    first.wait()
    assert not (out / "model.keras").exists() and not (out / "history.csv").exists()
    before_kill = pd.read_csv(epochs_so_far)
    second = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    # The rerun starts after the last completed epoch, not from epoch 1 (nor from the second phase's start).
    assert "Epoch 1/" not in second.stdout and "Epoch 2/4" not in second.stdout and "Epoch 4/4" in second.stdout
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2, 3]
    assert (out / "model.keras").is_file() and not (out / "progress").exists() and not (out / "resume").exists()
    # The epochs logged before the kill survive into the history (the log is not a rule output that
    # Snakemake would delete before rerunning the job).
    kept = history.set_index("epoch").loc[before_kill["epoch"], "val_loss"].to_numpy()
    np.testing.assert_allclose(kept, before_kill["val_loss"].to_numpy())
    # The optimizer state came back too: the last phase's schedule ends at its minimum lr (VideoMAE's
    # 1e-6 scaled by the batch of 6 / 256), as it does without a kill (a fresh optimizer would stop a
    # resumed epoch or more short of it).
    assert history["learning_rate"].iloc[-1] == pytest.approx(1e-6 * 6 / 256, rel=1e-3)


def test_a_backup_cut_short_by_a_kill_is_resumed_from_the_one_before_or_its_phase_starts_over(tmp_path):
    """Keras writes its backup in place and falls back on the copies before it only when the weights
    fail to load: a kill while it wrote a phase's first weights, or its metadata, left a backup that
    every rerun failed on ("bad object header version number", a JSON decode error)."""
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    backup = tmp_path / "resume" / "phase_0"
    backup.mkdir(parents=True)
    callback = keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True)
    weights, metadata = Path(callback._weights_path), Path(callback._training_metadata_path)

    def write(epoch: int, cut_weights: bool = False, cut_metadata: bool = False):
        model.save_weights(weights)
        if cut_weights:
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        metadata.write_text("" if cut_metadata else json.dumps({"epoch": epoch, "batch": 0}))

    write(1)
    repair_backup(callback)
    assert json.loads(metadata.read_text())["epoch"] == 1  # a whole backup is left as it is
    write(1, cut_weights=True)  # the phase's first save: nothing before it
    repair_backup(callback)
    assert not backup.exists()
    backup.mkdir(parents=True)
    write(2)
    shutil.copyfile(weights, callback._prev_weights_path)  # as Keras copies them before its next save
    shutil.copyfile(metadata, callback._prev_training_metadata_path)
    write(3, cut_metadata=True)  # killed between the weights and the metadata
    repair_backup(callback)
    assert json.loads(metadata.read_text())["epoch"] == 2
    model.load_weights(weights)  # what Keras' BackupAndRestore then reads


KILLED_AT_PREDICTION_SCRIPT = """
import json, os, signal, sys
import avemotion.train.experiment
from avemotion.train.experiment import run_experiment_fold
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 when training is over, before the outputs are written
avemotion.train.experiment.predict_clips = killed
settings, tabular, tfrecord, out = json.loads(sys.argv[1])
run_experiment_fold(settings, tabular, tfrecord, 1, out)
"""


def test_a_job_killed_after_its_last_epoch_reruns_without_training(tmp_path, monkeypatch):
    """Killed between its last epoch and its outputs (a day of GPU time on a real corpus): the rerun
    skips both finished phases and predicts with the weights the killed job selected."""
    import keras

    tabular, tfrecord, table = learnable_shards(tmp_path / "results")
    out = tmp_path / "fold_1"
    settings = settings_for("late", epochs=2)
    settings["training"]["frozen_backbone_epochs"] = 1
    arguments = json.dumps([settings, tabular, tfrecord, str(out)])
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.run([sys.executable, "-c", KILLED_AT_PREDICTION_SCRIPT, arguments], capture_output=True, text=True, env=environment, timeout=600)
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    trained = pd.read_csv(out / "progress" / "epochs.csv")
    assert list(trained["epoch"]) == [0, 1]
    shutil.copyfile(out / "progress" / "best.weights.h5", tmp_path / "selected.weights.h5")
    selected_epoch = json.loads((out / "progress" / "best.json").read_text())["epoch"]
    # None of the rule's outputs is there yet: Snakemake takes those of a killed job as incomplete
    # and stops a plain rerun, and a dry run, until they are removed by hand.
    assert [name for name in RUN_FILES if (out / name).exists()] == []

    def no_training(*args, **kwargs):
        raise AssertionError("the rerun trained again")

    monkeypatch.setattr(keras.Model, "fit", no_training)
    metrics = run_experiment_fold(settings, tabular, tfrecord, 1, out)
    history = pd.read_csv(out / "history.csv")  # the killed job's epochs, marked with the one it selected
    pd.testing.assert_frame_equal(history.drop(columns="chosen"), trained)
    assert history.loc[history["chosen"], "epoch"].tolist() == [selected_epoch]
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert sorted(predictions["clip_id"]) == sorted(table.loc[table["fold"] == 1, "clip_id"])
    assert json.loads((out / "metrics.json").read_text())["uar"] == pytest.approx(metrics["uar"])
    assert (out / "late_weights.json").is_file() and (out / "split.json").is_file() and (out / "settings.json").is_file()
    saved = keras.models.load_model(out / "model.keras", compile=False)
    selected = keras.models.load_model(out / "model.keras", compile=False)
    selected.load_weights(tmp_path / "selected.weights.h5")  # every variable, face statistics included
    for ours, theirs in zip(selected.get_weights(), saved.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    # Everything is written: only now does the progress go.
    assert not (out / "progress").exists() and not (out / "resume").exists()


REPLICA_SCRIPT = """
import json, logging, sys
import numpy as np
import tensorflow as tf
settings, tabular, tfrecord, split, out, replicas = json.loads(sys.argv[1])
if replicas > 1:  # before TensorFlow initialises its devices
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
logging.basicConfig(level=logging.INFO)
import keras
from avemotion.model.fusion import model_input_names
from avemotion.train.devices import training_strategy
from avemotion.train.experiment import build_model, datasets_for, run_experiment_fold
from avemotion.train.fitting import for_model, losses_for
from avemotion.train.optimizer import build_adamw
# Two optimizer steps on the same batches, from the same initial weights.
keras.utils.set_random_seed(0)
strategy = training_strategy()
with strategy.scope():
    model = build_model(settings)
    train, _ = datasets_for(settings, tfrecord, split, model_input_names(model))
    losses, weights = losses_for(model, settings)
    model.compile(optimizer=build_adamw(model, base_lr=1e-3, warmup_steps=0, total_steps=10), loss=losses, loss_weights=weights)
    batches = iter(for_model(train, model))
    steps = [model.train_on_batch(*next(batches), return_dict=True)["loss"] for _ in range(2)]
np.savez(out + "_steps.npz", losses=np.array(steps), *model.get_weights())
if replicas > 1:
    run_experiment_fold(settings, tabular, tfrecord, 1, out)
"""


def test_training_on_two_mirrored_devices_takes_the_steps_of_one_device(tmp_path):
    """MirroredStrategy over two logical CPUs: each replica gets half of every batch, and the summed
    gradients must give the single-device step (the losses divide by the replica count)."""
    tabular, tfrecord, table = learnable_shards(tmp_path / "results")
    settings = settings_for("hybrid", epochs=1)
    settings["training"]["va_loss_weight"] = 0.0  # CCC is a batch statistic: two halves differ from the whole
    split = {"train": sorted(table["clip_id"])[:24], "validation": [], "test": []}
    for replicas in (1, 2):
        out = str(tmp_path / f"replicas_{replicas}")
        arguments = json.dumps([settings, tabular, tfrecord, split, out, replicas])
        done = subprocess.run([sys.executable, "-c", REPLICA_SCRIPT, arguments], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    one, two = (np.load(tmp_path / f"replicas_{r}_steps.npz") for r in (1, 2))
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    for name in one.files:
        np.testing.assert_allclose(two[name], one[name], atol=1e-5, err_msg=name)
    # A whole training job on the two devices, as a multi-GPU node runs it.
    assert "2 replica(s)" in done.stderr
    predictions = pd.read_parquet(tmp_path / "replicas_2" / "predictions.parquet")
    assert sorted(predictions["clip_id"]) == sorted(table.loc[table["fold"] == 1, "clip_id"])
    assert (tmp_path / "replicas_2" / "model.keras").is_file()


def test_each_training_phase_warms_up_and_decays_over_its_own_steps():
    """The frozen-backbone warm start and the fine-tuning phase each get a fresh optimizer (step 0):
    each schedule must warm up at its start and reach the minimum lr at its own last step."""

    training = {"epochs": 10, "frozen_backbone_epochs": 3, "warmup_epochs": 1}
    assert training_phases(training) == [(0, 3, False), (3, 10, True)]
    assert training_phases({**training, "frozen_backbone_epochs": 0}) == [(0, 10, True)]
    assert training_phases({**training, "frozen_backbone_epochs": 12}) == [(0, 10, False)]
    steps_per_epoch = 4
    for start, end, _ in training_phases(training):
        warmup, total = phase_schedule(training, start, end, steps_per_epoch)
        assert (warmup, total) == (4, (end - start) * steps_per_epoch)
        schedule = WarmupCosine(1e-3, warmup, total, min_lr=1e-6)
        assert float(schedule(0)) == 0.0 and float(schedule(warmup)) == pytest.approx(1e-3)
        assert float(schedule(total)) == pytest.approx(1e-6)


def test_a_phase_shorter_than_the_warm_up_warms_up_over_the_whole_phase():
    """One frozen-backbone epoch with warmup_epochs 5: the warm-up is cut to the phase (its lr peaks
    at the phase's last step) instead of asking WarmupCosine for more warm-up steps than steps."""
    training = {"epochs": 10, "frozen_backbone_epochs": 1, "warmup_epochs": 5}
    assert phase_schedule(training, 0, 1, steps_per_epoch=4) == (4, 4)
    schedule = WarmupCosine(1e-3, *phase_schedule(training, 0, 1, steps_per_epoch=4))
    assert float(schedule(2)) == pytest.approx(5e-4) and float(schedule(4)) == pytest.approx(1e-3)
    assert phase_schedule({**training, "warmup_epochs": 0.5}, 1, 10, steps_per_epoch=4) == (2, 36)


def test_early_fusion_trains_through_a_frozen_backbone_warm_start(tmp_path):
    """Two phases (backbone frozen for one epoch, then everything) train one early-fusion fold: the
    epoch log spans both phases and the face tokens let the model learn the classes."""
    tabular, tfrecord, _ = learnable_shards(tmp_path / "results")
    settings = settings_for("early")
    settings["training"]["frozen_backbone_epochs"] = 1
    out = tmp_path / "experiment" / "fold_1"
    metrics = run_experiment_fold(settings, tabular, tfrecord, 1, out)
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [0, 1, 2]
    assert metrics["uar"] >= 0.9
