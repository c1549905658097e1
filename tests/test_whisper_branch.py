"""The Whisper encoder as the fusion model's audio branch (model.audio_encoder: whisper): its config
keys, the audio the shards store and the features the pipeline makes of it, frozen and fine-tuned
encoders, and a small experiment that trains, saves and predicts end to end."""

from __future__ import annotations

import copy

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from snakemake.utils import validate

from conftest import demo_settings
from test_fusion_dataset import constant_frames, make_clip, mel_ramp, serialize, write_tabular
from test_fusion_shards import T, chunk, fuse, speech  # noqa: F401 (chunk is a fixture)
from test_train_experiment import COLOUR, LABELS, VA, settings_for

from avemotion.config import SCHEMA_PATH, ConfigError, config_errors, prepare_config
from avemotion.config_checks import check_model
from avemotion.fusion.dataset import make_dataset
from avemotion.fusion.shards import iterate_examples
from avemotion.model.bundle import MODEL_FILE
from avemotion.model.fusion import build_fusion_model, model_input_names
from avemotion.model.outputs import raw_outputs
from avemotion.model.speech_branch import SpeechFrameMask, speech_encoder, speech_encoder_of
from avemotion.model.speech_features import SPEECH_FEATURES, SPEECH_FRAMES, feature_frames, whisper_features
from avemotion.model.speech_input import pipeline_inputs, with_speech_features
from avemotion.model.whisper import WhisperBackbone, encoder_frame_mask
from avemotion.model.whisper_features import log_mel_spectrogram
from avemotion.model.whisper_weights import save_whisper_weights
from avemotion.presets import variant_settings
from avemotion.train.experiment import build_model, datasets_for, run_experiment_fold
from avemotion.train.optimizer import build_adamw
from avemotion.train.settings import check_experiments, model_settings

SMALL = {"d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 64}
RATE = 16000
PITCH = {"anger": 300.0, "happiness": 600.0, "sadness": 150.0}


# ---- config -----------------------------------------------------------------------------------


def whisper_config(**model) -> dict:
    config = demo_settings({"model": {"audio_encoder": "whisper", **model}})
    prepare_config(config)
    validate(config, schema=str(SCHEMA_PATH))
    return config


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"audio_encoder": "wav2vec"}, "model.audio_encoder: 'wav2vec' is not allowed; allowed values: 'cnn', 'whisper'"),
        ({"audio_trainable": "partly"}, "model.audio_trainable: 'partly' is not allowed; allowed values: 'frozen', 'finetune'"),
        ({"audio_preset": "huge"}, "model.audio_preset: 'huge' is not allowed; allowed values: 'tiny', 'base', 'small', 'medium', 'large-v2', 'large-v3'"),
        ({"audio_max_seconds": 40}, "model.audio_max_seconds: 40 is greater than the maximum of 30"),
        ({"audio_wieghts": None}, "model.audio_wieghts: unknown key; allowed keys here:"),
    ],
)
def test_invalid_audio_keys_name_the_key_value_and_what_is_allowed(change, expected):
    config = demo_settings({"model": change})
    assert any(expected in error for error in config_errors(config)), config_errors(config)


def test_an_experiments_own_audio_keys_are_checked_too():
    config = demo_settings()
    config["experiments"][0]["model"] = {"audio_encoder": "whisper", "audio_trainable": "all"}
    errors = config_errors(config)
    assert any("audio_trainable: 'all' is not allowed; allowed values: 'frozen', 'finetune'" in error for error in errors), errors


def test_missing_whisper_weights_stop_the_run_naming_the_key(tmp_path):
    config = whisper_config(audio_weights=str(tmp_path / "whisper-tiny"))
    with pytest.raises(ConfigError, match=r"model\.audio_weights: '.*whisper-tiny' does not exist \(a Hugging Face Whisper folder"):
        check_model(config)
    config = whisper_config()
    name = config["experiments"][0]["name"]
    config["experiments"][0]["model"] = {"audio_weights": str(tmp_path / "nowhere.weights.h5")}
    with pytest.raises(ConfigError, match=rf"experiments\.{name}\.model\.audio_weights: .*does not exist"):
        check_model(config)


def test_mixed_batches_are_allowed_with_whisper_and_random_weights_are_announced():
    config = whisper_config()
    name = config["experiments"][0]["name"]
    assert any(f"experiment {name!r} uses a Whisper tiny encoder with random weights" in notice for notice in check_experiments(config))
    config["experiments"][0]["training"] = {"cutmix": 1.0}
    config["training"]["mixup"] = 0.8
    check_model(config)  # Mixup/CutMix mix the waveform too (avemotion.fusion.mixing)
    assert {"mixup": 0.8, "cutmix": 1.0}.items() <= model_settings(config, name)["training"].items()


def test_audio_keys_reach_whisper_training_jobs_and_leave_cnn_jobs_as_they_were():
    cnn = demo_settings()
    validate(cnn, schema=str(SCHEMA_PATH))
    name = cnn["experiments"][0]["name"]
    # At cnn (the default, the demo's) the training params hold no audio key: nothing retrains.
    assert not [key for key in model_settings(cnn, name)["model"] if key.startswith("audio_")]
    whisper = whisper_config(audio_trainable="finetune", audio_max_seconds=4)
    model = model_settings(whisper, name)["model"]
    assert model["audio_encoder"] == "whisper" and model["audio_trainable"] == "finetune" and model["audio_max_seconds"] == 4
    assert model_settings(whisper_config(audio_max_seconds=5), name) != model_settings(whisper, name)


# ---- data: the stored audio and its features ---------------------------------------------------


def test_the_shards_store_the_audio_stages_samples_as_they_are(chunk, tmp_path):  # noqa: F811
    _, tfrecord = fuse(chunk, tmp_path)
    for example in iterate_examples(tfrecord, T):
        expected = (np.clip(speech(example["clip_id"]), -1, 1) * 32767).astype("<i2")
        np.testing.assert_array_equal(example["audio"], expected)


@pytest.mark.parametrize("seconds, max_frames", [(0.73, 100), (2.5, 100), (3.0, 300), (31.0, 3000), (29.99, 2999)])
def test_features_equal_whisper_features_of_the_clip_cut_to_the_models_length(seconds, max_frames):
    audio = np.random.default_rng(int(seconds * 100)).normal(0, 0.1, int(seconds * RATE)).astype(np.float32)
    features, frames = whisper_features(audio, max_frames)
    expected = log_mel_spectrogram(audio[: max_frames * 160], pad=True)[:max_frames]
    assert features.shape == (max_frames, 80)
    np.testing.assert_allclose(features, expected, atol=1e-6)
    assert frames == min(int(seconds * RATE) // 160, max_frames)


def test_feature_frames_are_one_per_10_ms_within_whispers_30_s():
    """model.audio_max_seconds to frames: 2.01 s is 201 frames although 2.01 * 100 is 200.999... in floats."""
    assert [feature_frames(seconds) for seconds in (0.01, 2.01, 8.03, 10.0, 30.0)] == [1, 201, 803, 1000, 3000]
    for seconds in (0.004, 30.01):
        with pytest.raises(ValueError, match="outside Whisper's window"):
            feature_frames(seconds)


def test_a_clip_shorter_than_a_hop_still_has_one_frame_of_its_own():
    """So the pooling reads the clip's audio, not only padding."""
    features, frames = whisper_features(np.full(100, 0.1, np.float32), 50)
    assert features.shape == (50, 80) and frames == 1


def test_the_models_frame_mask_is_the_encoder_steps_that_see_the_clip():
    """SpeechFrameMask (in the saved model) equals encoder_frame_mask, odd frame counts rounding up."""
    counts = np.array([1, 6, 7, 10], np.int32)
    mask = SpeechFrameMask(10)(counts)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mask), encoder_frame_mask(counts, 10))
    assert mask.shape == (4, 5) and keras.ops.convert_to_numpy(mask).sum(axis=1).tolist() == [1, 3, 4, 5]


def test_the_shards_audio_reaches_whisper_only_at_whispers_rate(monkeypatch):
    """The audio stage's rate (the shards store its WAV as it is) is checked against Whisper's: a
    stage writing another rate would otherwise feed Whisper mistimed features without a word."""
    import avemotion.model.speech_features as speech_features

    monkeypatch.setattr(speech_features, "SPEECH_SAMPLE_RATE", 22050)
    with pytest.raises(ValueError, match="need 16000 Hz audio, not 22050 Hz"):
        whisper_features(np.zeros(RATE, np.float32), 100)


def tone(label: str, seconds: float, rng) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * PITCH[label] * t) + rng.normal(0, 0.01, t.size)).astype(np.float32)


def pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def with_audio(serialized: bytes, audio: np.ndarray) -> bytes:
    """An example of test_fusion_dataset.serialize with the shards' audio feature added."""
    example = tf.train.Example.FromString(serialized)
    example.features.feature["audio"].bytes_list.value.append(pcm(audio))
    return example.SerializeToString()


def write_records(path, records) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def small_model(fusion="late", trainable="frozen", seconds=1.0):
    encoder = WhisperBackbone(**SMALL, name="whisper")
    encoder.trainable = trainable == "finetune"
    return build_fusion_model(fusion, variant_settings("tiny"), 3, 4, 32, speech_encoder=encoder, audio_max_seconds=seconds)


def test_the_pipeline_feeds_the_model_whisper_features_of_the_shards_audio(tmp_path):
    rng = np.random.default_rng(1)
    clips = [make_clip(f"c{i}", "anger", frames=constant_frames([(200, 20, 20)] * 4, 32), face=np.zeros((4, 49), np.float32)) for i in range(3)]
    audio = [tone("anger", seconds, rng) for seconds in (0.5, 1.0, 1.7)]
    shard = write_records(tmp_path / "0.tfrecord", [with_audio(serialize(clip), a) for clip, a in zip(clips, audio)])
    model = small_model()
    names = [tensor.name for tensor in model.inputs]
    assert pipeline_inputs(names) == [name for name in names if name not in (SPEECH_FEATURES, SPEECH_FRAMES)] + ["audio"]
    dataset = make_dataset(shard, num_frames=4, image_size=32, label_names=LABELS, batch_size=3, inputs=pipeline_inputs(names))
    inputs, _ = next(iter(with_speech_features(dataset, model)))
    stored = [np.frombuffer(pcm(a), "<i2").astype(np.float32) / 32768 for a in audio]  # what the shard holds
    expected = np.stack([log_mel_spectrogram(s[:16000], pad=True)[:100] for s in stored])
    assert np.abs(inputs[SPEECH_FEATURES].numpy() - expected).max() <= 1e-4
    assert inputs[SPEECH_FRAMES].numpy().tolist() == [50, 100, 100]  # 0.5 s, then cut at 1 s
    assert pipeline_inputs(["frames", "mel"]) == ["frames", "mel"]  # no speech encoder: no audio read
    assert "mel" not in inputs and model.predict_on_batch({name: inputs[name] for name in names})["audio_emotion"].shape == (3, 3)


def test_shards_fused_before_the_audio_was_stored_say_how_to_fuse_them_again(tmp_path):
    clip = make_clip("old", "anger", frames=constant_frames([(200, 20, 20)] * 4, 32), face=np.zeros((4, 49), np.float32))
    shard = write_records(tmp_path / "0.tfrecord", [serialize(clip)])
    model = small_model()
    dataset = make_dataset(shard, num_frames=4, image_size=32, label_names=LABELS, batch_size=1, inputs=pipeline_inputs([t.name for t in model.inputs]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="fused before the shards stored audio.*--forcerun fuse_chunk"):
        next(iter(with_speech_features(dataset, model)))


# ---- model: frozen and fine-tuned encoders ------------------------------------------------------


def speech_batch() -> dict:
    return {
        "frames": np.random.default_rng(0).random((2, 4, 32, 32, 3)).astype(np.float32),
        "face_sequence": np.zeros((2, 4, 49), np.float32),
        "face_present": np.ones((2, 49), np.float32),
        SPEECH_FEATURES: np.random.default_rng(1).normal(size=(2, 100, 80)).astype(np.float32),
        SPEECH_FRAMES: np.array([100, 37], np.int32),
    }


def test_a_frozen_encoder_keeps_its_weights_and_a_fine_tuned_one_learns():
    batch, fusion, changed = speech_batch(), "late", {}
    for trainable in ("frozen", "finetune"):
        model = small_model(fusion, trainable)
        encoder = speech_encoder_of(model)
        # The position table is a constant (not trainable) either way, as in transformers.
        tracked = [variable for variable in encoder.weights if "embed_positions" not in variable.path]
        before = [variable.numpy() for variable in tracked]
        pooling = model.get_layer("audio_layer_pooling").get_weights()[0].copy()
        targets = {name: np.zeros((2,), np.int32 if name.endswith("emotion") else np.float32) for name in model.output_names}
        optimizer = build_adamw(model, base_lr=1e-2, warmup_steps=0, total_steps=10, layer_decay=0.5)
        losses = {name: "sparse_categorical_crossentropy" if name.endswith("emotion") else "mse" for name in model.output_names}
        model.compile(optimizer=optimizer, loss=losses, run_eagerly=True)  # one step: tracing would cost more than it saves
        model.train_on_batch(batch, targets)
        changed[trainable] = [not np.array_equal(a, b.numpy()) for a, b in zip(before, tracked)]
        # The layer pooling learns either way (its gradient reaches it through every mode's heads).
        assert not np.array_equal(pooling, model.get_layer("audio_layer_pooling").get_weights()[0])
        if trainable == "finetune":  # layer-wise lr decay over the encoder's layers, the top at the full lr
            top = optimizer.lr_scale_of(encoder.get_layer("layer_norm").weights[0])
            assert optimizer.lr_scale_of(encoder.get_layer("conv1").weights[0]) == pytest.approx(0.5**3 * top)
    assert not any(changed["frozen"]) and all(changed["finetune"])


@pytest.mark.parametrize("fusion", ["early", "hybrid"])
def test_early_and_hybrid_models_read_the_speech_inputs_and_reload(fusion, tmp_path):
    model = small_model(fusion)
    names = [tensor.name for tensor in model.inputs]
    assert "mel" not in names and {SPEECH_FEATURES, SPEECH_FRAMES} <= set(names)
    if fusion == "early":  # the T frames without spectrogram tiles, then T face tokens and the audio token
        assert "early_sequence" not in {layer.name for layer in model.layers}
        assert model.get_layer("early_tokens").output.shape[1] == 4 + 1
    batch = speech_batch()
    expected = model.predict_on_batch(batch)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras").predict_on_batch(batch)
    for name, value in expected.items():
        np.testing.assert_allclose(reloaded[name], value, atol=1e-5)


# A backbone of one narrow block, for tests of the model's wiring.
NARROW = {**variant_settings("tiny"), "hidden_size": 24, "num_layers": 1, "num_heads": 2, "intermediate_size": 48}


@pytest.mark.parametrize("fusion", ["early", "hybrid"])
def test_the_dropout_asked_for_reaches_the_speech_branch_too(fusion):
    encoder = WhisperBackbone(**SMALL, name="whisper")
    model = build_fusion_model(fusion, NARROW, 3, 4, 32, dropout=0.3, speech_encoder=encoder, audio_max_seconds=1.0)
    rates = {layer.name: layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)}
    assert "audio_dropout" in rates and set(rates.values()) == {0.3}


def test_early_fusions_audio_token_carries_a_learned_marker_of_its_own():
    """As the face tokens carry a per-step embedding, the Whisper token gets a learned one, the same
    for every clip, that tells it apart from the other tokens."""
    model = build_fusion_model("early", NARROW, 3, 4, 32, speech_encoder=WhisperBackbone(**SMALL, name="whisper"), audio_max_seconds=1.0)
    probe = keras.Model(model.inputs, [model.get_layer("audio_token_shape").output, model.get_layer("early_tokens").output])
    token, tokens = (np.asarray(value) for value in probe(speech_batch()))
    marker = tokens[:, -1] - token[:, 0]
    np.testing.assert_allclose(marker[0], marker[1], atol=1e-6)
    assert np.abs(marker).max() > 0
    assert any("audio_token_type" in variable.path for variable in model.trainable_weights)


def test_with_weights_the_encoder_holds_the_checkpoints_weights_and_architecture(tmp_path):
    source = WhisperBackbone(**SMALL)
    save_whisper_weights(source, tmp_path / "small.weights.h5")
    encoder = speech_encoder({"audio_encoder": "whisper", "audio_weights": str(tmp_path / "small.weights.h5"), "audio_preset": "base"})
    assert encoder.name == "whisper" and not encoder.trainable and encoder.architecture == source.architecture
    for ours, theirs in zip(encoder.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(ValueError, match="model.audio_trainable 'partly' is not allowed; allowed values: frozen, finetune"):
        speech_encoder({"audio_encoder": "whisper", "audio_trainable": "partly"})


def test_without_weights_the_preset_is_built_frozen_unless_fine_tuned():
    encoder = speech_encoder({"audio_encoder": "whisper", "audio_preset": "tiny"})
    assert encoder.architecture["d_model"] == 384 and encoder.encoder_layers == 4 and not encoder.trainable
    assert speech_encoder({"audio_encoder": "whisper", "audio_preset": "tiny", "audio_trainable": "finetune"}).trainable


# ---- end to end ---------------------------------------------------------------------------------


def speech_shards(root, speakers=6, clips_per_class=1):
    """test_train_experiment's learnable clips (colour, Mel level, face features) with a tone per
    class, of varied lengths around the model's 1 s."""
    rng = np.random.default_rng(0)
    clips, records = [], []
    for speaker in range(speakers):
        for label in LABELS:
            for take in range(clips_per_class):
                index = LABELS.index(label)
                frames = np.clip(constant_frames([COLOUR[label]] * 4, 32).astype(int) + rng.integers(-20, 20, (4, 32, 32, 3)), 0, 255)
                clip = make_clip(
                    f"crema_d_{speaker}_{label}_{take}", label, frames=frames.astype(np.uint8), mel=mel_ramp() + 20 * index,
                    face=np.full((4, 49), index, np.float32), speaker=str(1000 + speaker), fold=1 + speaker % 3,
                    label_index=index, valence=VA[label][0], arousal=VA[label][1],
                )  # fmt: skip
                clips.append(clip)
                records.append(with_audio(serialize(clip), tone(label, rng.uniform(0.6, 1.4), rng)))
    tfrecord = write_records(root / "crema_d" / "shards" / "tfrecord" / "0.tfrecord", records)
    return [write_tabular(root, clips)[0]], [tfrecord]


def test_a_whisper_experiment_trains_saves_and_predicts_as_it_evaluated(tmp_path):
    tabular, tfrecord = speech_shards(tmp_path / "results")
    weights = tmp_path / "whisper-small-random.weights.h5"
    save_whisper_weights(WhisperBackbone(**SMALL), weights)  # a converted checkpoint's format
    settings = copy.deepcopy(settings_for("hybrid", epochs=1))
    settings["model"].update(audio_encoder="whisper", audio_weights=str(weights), audio_trainable="finetune", audio_max_seconds=1.0)
    out = tmp_path / "fold_1"
    metrics = run_experiment_fold(settings, tabular, tfrecord, 1, out)
    assert set(metrics["branches"]) == {"video", "audio", "face"}
    predictions = pd.read_parquet(out / "predictions.parquet")

    # The saved bundle loads (registered layers), holds the checkpoint's encoder, and predicts the
    # test clips as training evaluated them.
    model = keras.saving.load_model(out / MODEL_FILE)
    encoder = speech_encoder_of(model)
    assert encoder.architecture["d_model"] == SMALL["d_model"] and encoder.trainable
    ids, outputs = raw_outputs(model, settings, tfrecord, predictions["clip_id"].tolist())
    probabilities = pd.DataFrame(outputs["emotion"], index=ids, columns=[f"prob_{name}" for name in LABELS])
    expected = predictions.set_index("clip_id")[probabilities.columns]
    np.testing.assert_allclose(probabilities.loc[expected.index].to_numpy(), expected.to_numpy(), atol=1e-5)

    # The same settings build the same network again (the multi-replica path rebuilds it).
    assert [tensor.name for tensor in build_model(settings).inputs] == [tensor.name for tensor in model.inputs]


def test_a_whisper_experiment_trains_on_mixed_batches_of_mixed_waveforms(tmp_path):
    tabular, tfrecord = speech_shards(tmp_path / "results")
    settings = copy.deepcopy(settings_for("late", epochs=1))
    weights = tmp_path / "whisper-small-random.weights.h5"
    save_whisper_weights(WhisperBackbone(**SMALL), weights)
    settings["model"].update(audio_encoder="whisper", audio_weights=str(weights), audio_max_seconds=1.0)
    settings["training"].update(mixup=0.8, cutmix=1.0, mixup_switch_prob=0.5, mixup_prob=1.0)
    model = build_model(settings)
    # The training stream's Whisper features are those of the mixed waveforms: Mixup's clip is as
    # long as the longer of the two (the valid frames the pooling reads), CutMix keeps the clip's.
    ids = pd.read_parquet(tabular[0])["clip_id"].tolist()
    train, _ = datasets_for(settings, tfrecord, {"train": ids, "validation": ids}, pipeline_inputs(model_input_names(model)))
    stored = {example["clip_id"]: example["audio"].size for example in iterate_examples(tfrecord[0], 4)}
    lengths = [min(size // 160, 100) for size in stored.values()]
    for inputs, targets in with_speech_features(train, model).take(4):
        frames = inputs[SPEECH_FRAMES].numpy()
        assert targets["emotion"].shape == (6, len(LABELS)) and set(frames) <= set(lengths) | {100}
        assert np.isfinite(inputs[SPEECH_FEATURES].numpy()).all()
    out = tmp_path / "fold_1"
    metrics = run_experiment_fold(settings, tabular, tfrecord, 1, out)
    assert (out / MODEL_FILE).exists() and np.isfinite(metrics["uar"])

