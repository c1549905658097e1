"""Fusion models: each mode's inputs, outputs and pretrained-backbone loading."""

import keras
import numpy as np
import pytest

from avemotion.config import ConfigError
from avemotion.fusion.schema import AUDIO_STEPS, FACE_FEATURES, MEL_BANDS
from avemotion.model import build_classifier
from avemotion.model import fusion as fusion_module
from avemotion.model.early_fusion import EarlyFusionSequence
from avemotion.model.fusion import (
    SaturationPenalty,
    StepEmbedding,
    TemporalStatistics,
    backbone_of,
    build_fusion_model,
    face_statistics,
    heads,
    load_pretrained_backbone,
    pretrained_backbone,
    task_of,
)
from avemotion.model.layers import ClipStandardization
from avemotion.presets import variant_settings
from avemotion.train.experiment import build_model
from avemotion.train.predict import restrict_to

TINY = variant_settings("tiny")


def batch_for(model, size=2):
    return {tensor.name: np.random.default_rng(0).random((size, *tensor.shape[1:]), dtype=np.float32) for tensor in model.inputs}


@pytest.mark.parametrize(
    "fusion, inputs, outputs",
    [
        ("early", {"frames", "mel", "face_sequence", "face_present"}, {"emotion", "valence", "arousal"}),
        ("late", {"frames", "mel", "face_sequence", "face_present"},
         {f"{b}_{t}" for b in ("video", "audio", "face") for t in ("emotion", "valence", "arousal")}),
        ("hybrid", {"frames", "mel", "face_sequence", "face_present"},
         {"emotion", "valence", "arousal", "video_emotion", "audio_emotion", "face_emotion"}),
    ],
)  # fmt: skip
def test_fusion_modes(fusion, inputs, outputs):
    model = build_fusion_model(fusion, TINY, num_classes=6, num_frames=4, image_size=32)
    assert {tensor.name for tensor in model.inputs} == inputs
    predictions = model(batch_for(model))
    assert set(predictions) == outputs
    for name, value in predictions.items():
        value = np.asarray(value)
        assert value.shape == ((2, 6) if task_of(name) == "emotion" else (2,))
        if task_of(name) != "emotion":
            assert np.all(np.abs(value) <= 1)  # tanh: arousal/valence in [-1, 1]
    # Early fusion: the backbone sees 2T frames (video then audio tiles); the others see T.
    assert backbone_of(model).num_frames == (8 if fusion == "early" else 4)
    shapes = {tensor.name: tuple(tensor.shape[1:]) for tensor in model.inputs}
    assert shapes["mel"] == (MEL_BANDS, AUDIO_STEPS, 1) and shapes["face_sequence"] == (4, FACE_FEATURES)


def test_early_fusion_encoder_attends_over_patch_and_face_tokens(tmp_path):
    """Early fusion is one sequence: the 2T-frame patch tokens (frames, then spectrogram tiles), then
    one face token per sampled frame; the face features change the prediction, and the saved model
    keeps the sequence and face-token layers."""
    import keras

    model = build_fusion_model("early", TINY, 6, num_frames=4, image_size=32)
    backbone = backbone_of(model)
    assert backbone.extra_tokens == 4
    patch_tokens = (8 // 2) * (32 // 16) ** 2
    assert tuple(backbone.get_layer("append_tokens").output.shape[1:]) == (patch_tokens + 4, TINY["hidden_size"])
    batch = batch_for(model)
    moved = {**batch, "face_sequence": batch["face_sequence"] + 1.0}
    assert not np.allclose(np.asarray(model(batch)["emotion"]), np.asarray(model(moved)["emotion"]))
    # The model builds the frames-then-tiles sequence from its frames and mel inputs.
    sequence = keras.Model(model.inputs, model.get_layer("early_sequence").output)(batch)
    expected = EarlyFusionSequence()([batch["frames"], batch["mel"]])
    np.testing.assert_allclose(np.asarray(sequence), np.asarray(expected), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(sequence)[:, :4], batch["frames"])
    model.save(tmp_path / "early.keras")
    reloaded = keras.models.load_model(tmp_path / "early.keras", compile=False)
    np.testing.assert_allclose(np.asarray(reloaded(moved)["emotion"]), np.asarray(model(moved)["emotion"]), atol=1e-5)


def test_each_face_token_step_gets_its_own_learned_embedding():
    """StepEmbedding tells the encoder which step a token stands for: the same token at two steps
    differs, every clip gets the same table, and the table is added to the tokens."""
    layer = StepEmbedding()
    tokens = np.zeros((2, 4, 8), np.float32)
    embedded = np.asarray(layer(tokens))
    np.testing.assert_array_equal(embedded[0], embedded[1])
    assert not any(np.allclose(embedded[0, i], embedded[0, j]) for i in range(4) for j in range(i + 1, 4))
    np.testing.assert_allclose(np.asarray(layer(tokens + 1.0)), embedded + 1.0, rtol=1e-6)


def test_unknown_fusion_names_the_allowed_values():
    with pytest.raises(ValueError, match="allowed values: early, late, hybrid"):
        build_fusion_model("middle", TINY, 6, 4, 32)


def test_unknown_frame_normalization_names_the_allowed_values():
    with pytest.raises(ValueError, match="allowed values: imagenet, clip"):
        build_fusion_model("late", TINY, 6, 4, 32, frame_normalization="frame")


def test_clip_standardization_gives_each_clip_channel_the_target_mean_and_std():
    """The clip's own lighting (each channel scaled and shifted) is taken out; a flat clip (a black
    screen) comes out at the target mean, not as blown-up noise or NaN."""

    mean, std = TINY["image_mean"], TINY["image_std"]
    layer = ClipStandardization(mean, std)
    clips = np.random.default_rng(0).random((2, 4, 8, 8, 3), dtype=np.float32)
    standardized = np.asarray(layer(clips))
    np.testing.assert_allclose(standardized.mean(axis=(1, 2, 3)), [mean, mean], atol=1e-5)
    np.testing.assert_allclose(standardized.std(axis=(1, 2, 3)), [std, std], atol=1e-5)
    relit = (clips * np.float32([0.5, 0.8, 0.6]) + np.float32([0.3, 0.1, 0.2])).astype(np.float32)
    np.testing.assert_allclose(np.asarray(layer(relit)), standardized, atol=1e-4)
    flat = np.full((1, 4, 8, 8, 3), 0.2, np.float32)
    np.testing.assert_allclose(np.asarray(layer(flat)), np.broadcast_to(np.float32(mean), flat.shape), atol=1e-3)


@pytest.mark.parametrize("fusion", ["early", "late", "hybrid"])
def test_clip_frame_normalization_makes_the_model_blind_to_a_clips_lighting(fusion, tmp_path):
    """With frame_normalization clip the same clip under other lighting gets the same prediction,
    also after saving and loading (the standardisation is a layer of the saved model)."""
    import keras

    output = "video_emotion" if fusion == "late" else "emotion"
    model = build_fusion_model(fusion, TINY, 6, num_frames=4, image_size=32, frame_normalization="clip")
    batch = batch_for(model)
    relit = {**batch, "frames": batch["frames"] * np.float32(0.6) + np.float32(0.2)}
    expected = np.asarray(model(batch)[output])
    np.testing.assert_allclose(np.asarray(model(relit)[output]), expected, atol=1e-4)
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    np.testing.assert_allclose(np.asarray(reloaded(relit)[output]), expected, atol=1e-4)
    # The default (VideoMAE's fixed ImageNet statistics) sees the lighting.
    plain = build_fusion_model(fusion, TINY, 6, num_frames=4, image_size=32)
    assert not np.allclose(np.asarray(plain(relit)[output]), np.asarray(plain(batch)[output]), atol=1e-4)


def test_clip_and_face_standardization_compute_in_float32_under_mixed_precision():
    """bfloat16 keeps 8 bits of mantissa: a head 401 mm away, against a mean of 400 mm, read as 400
    before the mean was taken off (standardised 0.0, not 0.02)."""
    mean, variance = [400.0] * FACE_FEATURES, [2500.0] * FACE_FEATURES
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_fusion_model("late", TINY, 6, num_frames=4, image_size=32, frame_normalization="clip", face_stats=(mean, variance))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("clip_standardize").compute_dtype == "float32"
    assert backbone_of(model).get_layer("block_0").compute_dtype == "bfloat16"
    layer = model.get_layer("face_standardize")
    assert layer.compute_dtype == "float32"
    standardized = np.asarray(layer(np.full((1, 4, FACE_FEATURES), 401.0, np.float32)))
    np.testing.assert_allclose(standardized, 0.02, rtol=1e-5)


def test_pretrained_backbone_is_loaded_and_must_fit_the_variant(tmp_path):
    source = build_classifier(TINY, 0, num_frames=2, image_size=32)
    source.save_weights(tmp_path / "tiny.weights.h5")
    model = build_fusion_model("early", TINY, 6, num_frames=4, image_size=32)
    load_pretrained_backbone(model, tmp_path / "tiny.weights.h5")
    for mine, theirs in zip(backbone_of(model).get_weights(), source.backbone.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    wider = build_classifier({**TINY, "hidden_size": 96, "num_heads": 3, "intermediate_size": 384}, 0, num_frames=2, image_size=32)
    wider.save_weights(tmp_path / "wider.weights.h5")
    with pytest.raises(ValueError, match="does not fit model.variant.*hidden_size 192 vs 96"):
        load_pretrained_backbone(model, tmp_path / "wider.weights.h5")


def test_a_pretrained_backbone_of_another_depth_is_refused_naming_it(tmp_path):
    shallower = build_classifier({**TINY, "num_layers": 2}, 0, num_frames=2, image_size=32)
    shallower.save_weights(tmp_path / "shallow.weights.h5")
    with pytest.raises(ValueError, match=r"does not fit model\.variant \(num_layers 4 vs 2\)"):
        pretrained_backbone(tmp_path / "shallow.weights.h5", TINY, num_frames=4, image_size=32)
    # in a training job: a config error, which the job's log gives as its one line (avemotion.logs)
    settings = {
        "name": "e", "fusion": "late", "labels": ["anger", "happiness"], "num_frames": 4, "image_size": 32,
        "model": {"variant": "tiny", "pretrained": str(tmp_path / "shallow.weights.h5")}, "training": {"drop_path": 0.0},
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"^config: model weights of experiment 'e': \S+shallow\.weights\.h5 does not fit model\.variant \(num_layers 4 vs 2\)$"):
        build_model(settings)


def test_a_pretrained_backbone_brings_its_own_config_into_the_fine_tuned_model(tmp_path):
    """A checkpoint's LayerNorm eps and input mean/std (Hugging Face VideoMAE: eps 1e-12 and its
    preprocessor's statistics) are part of what its weights compute: the fusion model keeps them."""

    own = {**TINY, "layer_norm_eps": 1e-12, "image_mean": (0.5, 0.5, 0.5), "image_std": (0.25, 0.25, 0.25)}
    source = build_classifier(own, 0, num_frames=4, image_size=32)
    source.save_weights(tmp_path / "source.weights.h5")
    settings = {
        "fusion": "late", "labels": ["anger", "happiness"], "num_frames": 4, "image_size": 32,
        "model": {"variant": "tiny", "pretrained": str(tmp_path / "source.weights.h5"), "frame_normalization": "imagenet"},
        "training": {"drop_path": 0.0},
    }  # fmt: skip
    backbone = backbone_of(build_model(settings))
    assert backbone.layer_norm_eps == 1e-12 and backbone.image_mean == (0.5, 0.5, 0.5) and backbone.image_std == (0.25, 0.25, 0.25)
    frames = np.random.default_rng(0).uniform(0, 1, (2, 4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(backbone(frames).numpy(), source.backbone(frames).numpy(), atol=1e-5)


def test_face_features_are_standardised_with_training_statistics_kept_in_the_saved_model(tmp_path):
    import keras

    rng = np.random.default_rng(0)
    sequences = rng.normal(270.0, 6.0, (10, 4, FACE_FEATURES))  # head translation scale, in mm
    sequences[..., 5] = 0.0  # an absent column: constant
    mean, variance = face_statistics(sequences)
    assert mean[0] == pytest.approx(sequences[..., 0].mean()) and variance[0] == pytest.approx(sequences[..., 0].var())
    assert variance[5] == 1.0 and mean[5] == 0.0  # constant columns are centred, not blown up
    model = build_fusion_model("late", TINY, 6, num_frames=4, image_size=32, face_stats=(mean, variance))
    standardize = keras.Model(model.get_layer("face_sequence").output, model.get_layer("face_standardize").output)
    standardized = np.asarray(standardize(sequences.astype(np.float32))).reshape(-1, FACE_FEATURES)
    np.testing.assert_allclose(standardized.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(standardized[:, :5].std(axis=0), 1, atol=1e-3)
    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    batch = batch_for(model)
    for name, value in model(batch).items():
        np.testing.assert_allclose(np.asarray(reloaded(batch)[name]), np.asarray(value), atol=1e-6)
    # The statistics are the layer's weights, not trained (on JAX, constants recompiled every fold's
    # step): a model built without them takes them from the saved weights.
    layer = model.get_layer("face_standardize")
    assert not layer.trainable_weights and [w.name for w in layer.non_trainable_weights] == ["mean", "variance"]
    model.save_weights(tmp_path / "model.weights.h5")
    rebuilt = build_fusion_model("late", TINY, 6, num_frames=4, image_size=32)
    rebuilt.load_weights(tmp_path / "model.weights.h5")
    for name, value in model(batch).items():
        np.testing.assert_allclose(np.asarray(rebuilt(batch)[name]), np.asarray(value), atol=1e-6)


def test_a_model_saved_with_the_earlier_face_standardisation_loads_and_predicts_as_saved(tmp_path, monkeypatch):
    """Models trained before the statistics became weights hold keras' Normalization with them in
    its config: such a file loads as it was saved."""
    mean, variance = face_statistics(np.random.default_rng(2).normal(3.0, 2.0, (6, 4, FACE_FEATURES)))

    def earlier(sequence, statistics, name):
        return keras.layers.Normalization(axis=-1, mean=statistics[0], variance=statistics[1], name=f"{name}_standardize")(sequence)

    monkeypatch.setattr(fusion_module, "standardized", earlier)
    model = build_fusion_model("hybrid", TINY, 6, num_frames=4, image_size=32, face_stats=(mean, variance))
    assert isinstance(model.get_layer("face_standardize"), keras.layers.Normalization)
    model.save(tmp_path / "model.keras")
    monkeypatch.undo()
    reloaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    batch = batch_for(model)
    for name, value in model(batch).items():
        np.testing.assert_allclose(np.asarray(reloaded(batch)[name]), np.asarray(value), atol=1e-6)


def test_cross_corpus_scores_only_the_shared_labels_renormalised():
    outputs = {"emotion": np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]), "valence": np.array([0.1, -0.2])}
    restricted = restrict_to(outputs, ["anger", "neutral", "sadness"], ["anger", "sadness"])
    np.testing.assert_allclose(restricted["emotion"], [[0.5 / 0.7, 0.2 / 0.7], [0.1 / 0.9, 0.8 / 0.9]])
    np.testing.assert_array_equal(restricted["valence"], outputs["valence"])


def test_face_branch_sees_each_standardised_features_mean_std_min_and_max_over_the_clip():
    import keras

    rng = np.random.default_rng(1)
    sequences = rng.normal(0.0, 1.0, (3, 4, FACE_FEATURES)).astype(np.float32)
    statistics = np.asarray(TemporalStatistics()(sequences))
    expected = np.concatenate([sequences.mean(1), sequences.std(1), sequences.min(1), sequences.max(1)], axis=-1)
    np.testing.assert_allclose(statistics, expected, rtol=1e-5, atol=1e-6)
    model = build_fusion_model("hybrid", TINY, 6, num_frames=4, image_size=32)
    layer = model.get_layer("face_statistics")
    assert layer.input is model.get_layer("face_standardize").output  # summaries of the standardised features
    assert any(tensor is layer.output for tensor in model.get_layer("face_pools").input)  # beside the temporal convolution's pools
    probe = keras.Model(model.get_layer("face_sequence").output, layer.output)
    np.testing.assert_allclose(np.asarray(probe(sequences)), expected, rtol=1e-5, atol=1e-5)


def test_valence_and_arousal_heads_are_penalised_beyond_the_tanh_limit_on_either_side_only():
    """A pre-activation past +-2.5 (tanh flat there, no 1 - CCC gradient) is penalised, by its
    squared excess, whichever its sign; inside the limit the penalty is zero."""
    penalty = SaturationPenalty(limit=2.5, weight=0.1)
    assert float(penalty(np.array([[4.0], [-4.0], [2.0], [-2.5]], np.float32))) == pytest.approx(0.1 * (1.5**2 + 1.5**2) / 4)
    features = keras.Input((2,))
    model = keras.Model(features, heads(features, num_classes=3))
    for task in ("valence", "arousal"):
        model.get_layer(f"{task}_head").kernel.assign(np.full((2, 1), 5.0, np.float32))
    model(np.array([[1.0, 1.0]], np.float32))  # pre-activation 10 in each head
    assert sum(float(loss) for loss in model.losses) == pytest.approx(2 * 0.1 * 7.5**2)
    model(np.array([[-0.1, -0.1]], np.float32))  # pre-activation -1
    assert sum(float(loss) for loss in model.losses) == 0.0


# A backbone of one narrow block: the fusion wiring is what these tests look at, not the encoder.
NARROW = {**TINY, "hidden_size": 24, "num_layers": 1, "num_heads": 2, "intermediate_size": 48}


def outputs_moved_by(model, moves: dict) -> dict:
    """{input: the outputs that change when that input of a clip moves by the given amount}, from one
    call on a batch of the clip and its variants (the clips of a batch are predicted independently)."""
    base = batch_for(model, size=1)
    rows = [base] + [{**base, name: base[name] + np.float32(delta)} for name, delta in moves.items()]
    outputs = {name: np.asarray(value) for name, value in model({name: np.concatenate([row[name] for row in rows]) for name in base}).items()}
    return {
        name: {output for output, value in outputs.items() if not np.allclose(value[0], value[1 + index], atol=1e-6)}
        for index, name in enumerate(moves)
    }


MOVES = {"frames": 0.3, "mel": 0.3, "face_sequence": 1.0, "face_present": -1.0}


def test_late_fusion_branches_each_predict_from_their_own_input_only():
    """Late fusion's branches are independent networks: the video heads read the frames, the audio
    heads the Mel, the face heads the face features and which of them exist."""
    moved = outputs_moved_by(build_fusion_model("late", NARROW, 3, num_frames=4, image_size=32), MOVES)
    tasks = ("emotion", "valence", "arousal")
    assert moved == {
        "frames": {f"video_{t}" for t in tasks}, "mel": {f"audio_{t}" for t in tasks},
        "face_sequence": {f"face_{t}" for t in tasks}, "face_present": {f"face_{t}" for t in tasks},
    }


def test_hybrid_fusions_shared_heads_read_every_branch_and_its_auxiliary_heads_their_own():
    moved = outputs_moved_by(build_fusion_model("hybrid", NARROW, 3, num_frames=4, image_size=32), MOVES)
    shared = {"emotion", "valence", "arousal"}
    assert moved == {
        "frames": shared | {"video_emotion"}, "mel": shared | {"audio_emotion"},
        "face_sequence": shared | {"face_emotion"}, "face_present": shared | {"face_emotion"},
    }


def test_early_fusion_reads_every_input_and_which_face_features_exist():
    moved = outputs_moved_by(build_fusion_model("early", NARROW, 3, num_frames=4, image_size=32), MOVES)
    assert moved == {name: {"emotion", "valence", "arousal"} for name in MOVES}


def test_the_face_branch_sees_the_order_of_the_steps():
    """Beside order-free summaries (means, extremes) the face branch convolves over time: the same
    face features played backwards are another clip."""
    model = build_fusion_model("late", NARROW, 3, num_frames=4, image_size=32)
    batch = batch_for(model)
    backwards = {**batch, "face_sequence": batch["face_sequence"][:, ::-1]}
    assert not np.allclose(np.asarray(model(batch)["face_emotion"]), np.asarray(model(backwards)["face_emotion"]), atol=1e-6)


def test_emotion_heads_give_logits_and_valence_and_arousal_heads_saturate_within_minus_one_and_one():
    features = keras.Input((2,))
    model = keras.Model(features, heads(features, num_classes=3))
    model.get_layer("emotion").set_weights([np.array([[2.0, -3.0, 0.5], [1.0, 1.0, 0.0]], np.float32), np.zeros(3, np.float32)])
    for task, sign in (("valence", 1.0), ("arousal", -1.0)):
        model.get_layer(f"{task}_head").set_weights([np.full((2, 1), sign * 5.0, np.float32), np.zeros(1, np.float32)])
    outputs = model(np.array([[1.0, 2.0], [0.01, 0.0]], np.float32))
    np.testing.assert_allclose(np.asarray(outputs["emotion"]), [[4.0, -1.0, 0.5], [0.02, -0.03, 0.005]], rtol=1e-5)  # no softmax
    np.testing.assert_allclose(np.asarray(outputs["valence"]), np.tanh([15.0, 0.05]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(outputs["arousal"]), np.tanh([-15.0, -0.05]), rtol=1e-5)
    # The regression outputs are declared (B,) too, as their scalar targets are.
    assert {name: tuple(tensor.shape) for name, tensor in zip(model.output_names, model.outputs)} == {
        "emotion": (None, 3), "valence": (None,), "arousal": (None,)
    }


def test_the_task_heads_compute_in_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_fusion_model("hybrid", NARROW, 3, num_frames=4, image_size=32)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(value.dtype == "float32" for value in model(batch_for(model)).values())


def test_the_saturation_penalty_keeps_its_limit_and_weight_through_a_saved_model(tmp_path):
    penalty = SaturationPenalty.from_config(SaturationPenalty(limit=1.5, weight=0.3).get_config())
    assert float(penalty(np.array([[2.0]], np.float32))) == pytest.approx(0.3 * 0.5**2)
    model = build_fusion_model("early", NARROW, 3, num_frames=4, image_size=32)
    model.save(tmp_path / "early.keras")
    reloaded = keras.models.load_model(tmp_path / "early.keras", compile=False)
    regularizer = reloaded.get_layer("valence_head").activity_regularizer
    assert isinstance(regularizer, SaturationPenalty) and (regularizer.limit, regularizer.weight) == (2.5, 0.1)


@pytest.mark.parametrize("fusion", ["early", "late", "hybrid"])
def test_the_dropout_asked_for_reaches_every_dropout_layer(fusion):
    model = build_fusion_model(fusion, NARROW, 3, num_frames=4, image_size=32, dropout=0.3)
    rates = {layer.name: layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)}
    assert rates and set(rates.values()) == {0.3}
    assert "video_dropout" in rates and ("fusion_dropout" in rates) == (fusion == "hybrid")


def test_clip_normalization_brings_each_clip_to_the_backbones_own_mean_and_std():
    """The backbone's fixed standardisation then leaves every clip at mean 0 and std 1."""
    own = {**NARROW, "image_mean": (0.3, 0.5, 0.7), "image_std": (0.1, 0.2, 0.4)}
    model = build_fusion_model("late", own, 3, num_frames=4, image_size=32, frame_normalization="clip")
    batch = batch_for(model)
    probe = keras.Model(model.get_layer("frames").output, model.get_layer("clip_standardize").output)
    standardized = np.asarray(probe(batch["frames"]))
    np.testing.assert_allclose(standardized.mean(axis=(1, 2, 3)), [own["image_mean"]] * 2, atol=1e-5)
    np.testing.assert_allclose(standardized.std(axis=(1, 2, 3)), [own["image_std"]] * 2, atol=1e-5)


def test_early_fusions_face_tokens_are_standardised_with_the_training_statistics():
    rng = np.random.default_rng(0)
    sequences = rng.normal(270.0, 6.0, (10, 4, FACE_FEATURES))
    model = build_fusion_model("early", NARROW, 3, num_frames=4, image_size=32, face_stats=face_statistics(sequences))
    probe = keras.Model(model.get_layer("face_sequence").output, model.get_layer("face_tokens_standardize").output)
    standardized = np.asarray(probe(sequences.astype(np.float32))).reshape(-1, FACE_FEATURES)
    np.testing.assert_allclose(standardized.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(standardized.std(axis=0), 1, atol=1e-3)


def test_a_pretrained_backbone_of_another_patch_or_tubelet_size_is_refused_naming_it(tmp_path):
    for key, value in (("patch_size", 8), ("tubelet_size", 1)):
        other = build_classifier({**NARROW, key: value}, 0, num_frames=4, image_size=32)
        other.save_weights(tmp_path / f"{key}.weights.h5")
        with pytest.raises(ValueError, match=rf"does not fit model\.variant \({key} {NARROW[key]} vs {value}\)"):
            pretrained_backbone(tmp_path / f"{key}.weights.h5", NARROW, num_frames=4, image_size=32)
