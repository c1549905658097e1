"""training.backend: a training job on Keras' JAX backend trains what the TensorFlow one trains, and
writes a model that loads under TensorFlow (evaluation, cross-corpus and `avemotion predict` run there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import demo_settings
from test_train_experiment import learnable_shards, settings_for

from avemotion.config import prepare_config
from avemotion.train.backend import BackendError, use_backend
from avemotion.train.experiment import experiment_clips
from avemotion.train.predict import predict_clips
from avemotion.train.settings import experiment_settings, model_settings

RUNNER = Path(__file__).parent / "train_fold_on_backend.py"
# Measured: the same fold (9 steps over 3 epochs, two phases) on JAX (its step XLA-compiled) and on
# TensorFlow (not compiled) from the same initial weights and batches differs by at most 2.6e-3 in
# any epoch's training loss and 2.1e-3 in its validation loss. One forward pass agrees to 1e-6
# (float32 sums in another order, XLA's fusions); AdamW divides each gradient by its running RMS, so
# rounding differences become weight updates of relative size ~1e-5, which nine steps grow to ~1e-3
# in the losses. The tolerance is 4x the largest seen. A real difference is 10-20x larger: training
# on another order of the same batches moved the first epoch's loss by 0.2, dropout masks drawn by
# each backend's RNG by 0.1.
LOSS_TOLERANCE = 1e-2


def test_a_backend_is_chosen_before_keras_and_cannot_be_switched_after():
    with pytest.raises(BackendError, match=r"training.backend: 'torch' is not allowed; allowed values: tensorflow, jax"):
        use_backend("torch")
    use_backend(keras.backend.backend())  # the backend Keras already runs on: nothing to do
    other = "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"
    with pytest.raises(BackendError, match=f"'{other}' asked for, but Keras was imported on"):
        use_backend(other)


def test_a_backend_chosen_before_keras_is_the_one_keras_and_jax_are_told(tmp_path, monkeypatch):
    """Keras reads KERAS_BACKEND when first imported, JAX its cache folder when it starts: a job
    sets both before either is imported (only a JAX job names a cache)."""
    monkeypatch.delitem(sys.modules, "keras")  # as in a fresh job; put back after the test
    for variable in ("KERAS_BACKEND", "JAX_COMPILATION_CACHE_DIR"):
        # set, then removed, through monkeypatch: it restores what it first changed, so what
        # use_backend sets is undone too (a KERAS_BACKEND=jax left behind reaches later tests' jobs)
        monkeypatch.setenv(variable, "")
        monkeypatch.delenv(variable)
    use_backend("tensorflow", tmp_path / "jax")
    assert os.environ["KERAS_BACKEND"] == "tensorflow" and "JAX_COMPILATION_CACHE_DIR" not in os.environ
    use_backend("jax", tmp_path / "jax")
    assert os.environ["KERAS_BACKEND"] == "jax" and os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "jax")


def test_each_experiment_names_its_backend_and_switching_it_is_not_a_new_model():
    config = demo_settings({"training": {"backend": "jax"}})
    config["experiments"][1]["training"] = {"backend": "tensorflow"}
    prepare_config(config)
    first, second = (experiment["name"] for experiment in config["experiments"][:2])
    assert experiment_settings(config, first)["training"]["backend"] == "jax"
    assert experiment_settings(config, second)["training"]["backend"] == "tensorflow"
    assert "backend" not in model_settings(config, first)["training"]


def train_on(backend: str, root: Path, tabular: str, tfrecord: str) -> Path:
    outdir = root / backend
    run = subprocess.run(
        [sys.executable, str(RUNNER), str(root / "settings.json"), tabular, tfrecord, str(outdir), str(root / "initial.weights.h5")],
        env={**os.environ, "KERAS_BACKEND": backend},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert f"replica(s) on {backend}" in run.stderr
    return outdir


@pytest.mark.slow
def test_a_fold_trained_on_jax_has_the_losses_of_tensorflow_and_its_model_loads_under_tensorflow(tmp_path):
    tabular, tfrecord, _ = learnable_shards(tmp_path / "results")
    settings = settings_for("hybrid", epochs=3)
    settings["training"]["frozen_backbone_epochs"] = 1  # both phases: a frozen warm start, then all weights
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    # TensorFlow first: it saves the initial weights that the JAX run starts from.
    histories = {
        backend: pd.read_csv(train_on(backend, tmp_path, tabular[0], tfrecord[0]) / "history.csv")
        for backend in ("tensorflow", "jax")
    }
    # Every training loss (the total and the 6 outputs'), and the validation total that selects the
    # best epoch. The outputs' own validation losses are left out: Keras on TensorFlow logs them at
    # half their value here (one validation batch counted twice, once as 0; they no longer add up to
    # val_loss), on JAX they add up.
    losses = [column for column in histories["tensorflow"] if column.endswith("loss") and not column.startswith("val_")]
    losses.append("val_loss")
    assert len(losses) == 8 and len(histories["jax"]) == 3
    difference = (histories["jax"][losses] - histories["tensorflow"][losses]).abs().to_numpy().max()
    assert difference <= LOSS_TOLERANCE, histories
    assert histories["jax"]["loss"].iloc[-1] < histories["jax"]["loss"].iloc[0]  # it learned

    # The JAX job's model file, loaded here (TensorFlow), predicts what the JAX job wrote.
    model = keras.saving.load_model(tmp_path / "jax" / "model.keras")
    split = json.loads((tmp_path / "jax" / "split.json").read_text())
    clips, _ = experiment_clips(tabular, settings["labels"])
    here, _ = predict_clips(model, settings, tfrecord, split, "test", clips)
    written = pd.read_parquet(tmp_path / "jax" / "predictions.parquet")
    numeric = written.select_dtypes("number").columns
    assert list(here["clip_id"]) == list(written["clip_id"]) and len(numeric) > 5
    np.testing.assert_allclose(here[numeric].to_numpy(float), written[numeric].to_numpy(float), atol=1e-5)


@pytest.mark.slow
def test_the_second_fold_on_jax_finds_its_steps_compiled_by_the_first(tmp_path):
    """Folds differ in their training clips' face statistics and in their step counts: both are state
    of the compiled steps, not constants in them, so one compilation serves every fold (on JAX a
    fold's compilation is minutes on a GPU: README, training.backend)."""
    run = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "train_folds_on_jax.py"), str(tmp_path)],
        # every compilation cached, however quick (JAX skips those under 1 s by default)
        env={**os.environ, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    compiled = [line for line in run.stdout.splitlines() if line.startswith("fold ")]
    assert compiled == ["fold 1 compiled: jit_predict_step jit_test_step jit_train_step", "fold 2 compiled: nothing new"], run.stdout


def test_the_models_build_and_train_where_there_is_no_tensorflow():
    """The GPU machines have JAX but no TensorFlow: the model layer (a hybrid model with a Whisper
    branch), its losses and its optimizer import and take a training step without it."""
    script = """
import sys

class NoTensorFlow:  # as on a machine without it: every import of TensorFlow fails
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError("No module named 'tensorflow'", name=name)

sys.meta_path.insert(0, NoTensorFlow())
import numpy as np
from avemotion.model.fusion import build_fusion_model, task_of
from avemotion.model.speech_branch import ENCODER_NAME
from avemotion.model.whisper import WhisperBackbone
from avemotion.presets import variant_settings
from avemotion.train.losses import CCCLoss, LabelSmoothedCrossEntropy
from avemotion.train.optimizer import build_adamw

speech = WhisperBackbone(num_mel_bins=80, d_model=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32, max_source_positions=1500, name=ENCODER_NAME)
model = build_fusion_model("hybrid", variant_settings("tiny"), 3, 4, 32, speech_encoder=speech, audio_max_seconds=1)
losses = {name: LabelSmoothedCrossEntropy(3) if task_of(name) == "emotion" else CCCLoss() for name in model.output_names}
model.compile(optimizer=build_adamw(model, base_lr=1e-3, warmup_steps=0, total_steps=2), loss=losses, jit_compile=True)
rng = np.random.default_rng(0)
inputs = {t.name: rng.random((2, *t.shape[1:])).astype(t.dtype) for t in model.inputs}
targets = {name: np.array([0, 1]) if task_of(name) == "emotion" else np.array([0.5, -0.5], "float32") for name in model.output_names}
loss = model.train_on_batch(inputs, targets)
assert np.all(np.isfinite(loss)), loss
print("trained without", "tensorflow" if "tensorflow" not in sys.modules else "?")
"""
    run = subprocess.run([sys.executable, "-c", script], env={**os.environ, "KERAS_BACKEND": "jax"}, capture_output=True, text=True)
    assert run.returncode == 0 and "trained without tensorflow" in run.stdout, run.stderr[-3000:]
