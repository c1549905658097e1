"""Training building blocks: CCC, label-smoothed CE, WarmupCosine, layer-decay AdamW."""

from __future__ import annotations

import math
from types import SimpleNamespace

import jax
import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from avemotion.model import VideoMAEBackbone, VideoMAEClassifier
from avemotion.model.speech_head import WeightedLayerPooling
from avemotion.model.whisper import WhisperBackbone
from avemotion.train import devices
from avemotion.train.devices import OneJaxDevice, configure_precision, gpu_available, training_strategy
from avemotion.train.experiment import build_model
from avemotion.train.fitting import losses_for, phase_optimizer
from avemotion.train.losses import (
    CCCLoss,
    LabelSmoothedCrossEntropy,
    ccc,
    smoothed_cross_entropy,
)
from avemotion.train.optimizer import (
    LayerDecayAdamW,
    WarmupCosine,
    build_adamw,
    find_backbone,
    layer_ids,
    layer_scales,
    no_weight_decay_paths,
    set_backbone_trainable,
    speech_layer_scales,
)

SMALL = dict(num_frames=4, image_size=32)
NUM_LAYERS = 4  # the tiny variant


def tiny_backbone():
    return VideoMAEBackbone.from_variant("tiny", **SMALL)


def tiny_classifier(num_classes=3):
    return VideoMAEClassifier(tiny_backbone(), num_classes=num_classes)


def value(x) -> np.ndarray:
    return np.asarray(x.numpy() if hasattr(x, "numpy") else keras.ops.convert_to_numpy(x))


# ---------------------------------------------------------------- CCC


def test_ccc_matches_hand_computed_value():
    # t = [1, 2, 3], p = [1, 3, 5]: mean t = 2, mean p = 3.
    # var t = (1 + 0 + 1) / 3 = 2/3; var p = (4 + 0 + 4) / 3 = 8/3;
    # cov = ((-1)(-2) + 0 + (1)(2)) / 3 = 4/3; (mean t - mean p)^2 = 1.
    # ccc = 2 * 4/3 / (2/3 + 8/3 + 1) = (8/3) / (13/3) = 8/13.
    assert value(ccc([1.0, 2.0, 3.0], [1.0, 3.0, 5.0])) == pytest.approx(8 / 13, rel=1e-6)
    # (batch, 1) columns give the same scalar; (batch, 2) one value per column.
    column = value(ccc([[1.0], [2.0], [3.0]], [[1.0], [3.0], [5.0]]))
    assert column.shape == () and column == pytest.approx(8 / 13, rel=1e-6)
    both = value(ccc([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], [[1.0, 1.0], [3.0, 2.0], [5.0, 3.0]]))
    np.testing.assert_allclose(both, [8 / 13, 1.0], rtol=1e-6)


def test_ccc_loss_is_zero_for_perfect_and_one_for_constant_predictions():
    targets = np.array([-0.5, 0.1, 0.4, 0.9], np.float32)
    loss = CCCLoss()
    assert value(loss(targets, targets)) == pytest.approx(0.0, abs=1e-6)
    assert value(loss(targets, np.full(4, 0.2, np.float32))) == pytest.approx(1.0, abs=1e-6)
    centred = targets - targets.mean()  # mirrored around the common mean: ccc = -1
    assert value(loss(centred, -centred)) == pytest.approx(2.0, abs=1e-6)


def test_ccc_weights_leave_clips_out():
    full = value(ccc([1.0, 2.0, 3.0, 9.0], [1.0, 3.0, 5.0, -4.0], sample_weight=[1.0, 1.0, 1.0, 0.0]))
    assert full == pytest.approx(8 / 13, rel=1e-6)
    loss = CCCLoss()([1.0, 2.0, 3.0, 9.0], [1.0, 3.0, 5.0, -4.0], [1, 1, 1, 0])
    assert value(loss) == pytest.approx(5 / 13, rel=1e-5)


def test_ccc_weights_leave_a_clip_out_of_every_column_and_the_loss_averages_the_columns():
    """(batch, k) targets with sample weights (batch,): a weight-0 clip is out of each column's
    moments, and the loss is 1 - the mean of the columns' CCCs (not their sum)."""
    targets = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [9.0, -7.0]], np.float32)
    predictions = np.array([[1.0, 1.0], [3.0, 2.0], [5.0, 3.0], [-4.0, 8.0]], np.float32)
    both = value(ccc(targets, predictions, sample_weight=[1.0, 1.0, 1.0, 0.0]))
    np.testing.assert_allclose(both, [8 / 13, 1.0], rtol=1e-6)
    loss = CCCLoss()(targets, predictions, [1.0, 1.0, 1.0, 0.0])
    assert value(loss) == pytest.approx(1.0 - (8 / 13 + 1.0) / 2, rel=1e-5)


def test_ccc_loss_stays_finite_for_a_constant_batch_and_a_batch_without_weight():
    """A batch whose targets and predictions are one constant, and one whose clips all weigh 0 (no
    clip of the batch has valence/arousal labels), give loss 1 (CCC 0) instead of NaN."""
    assert value(CCCLoss()(np.full(4, 0.5, np.float32), np.full(4, 0.5, np.float32))) == pytest.approx(1.0)
    unweighted = CCCLoss()([1.0, 2.0, 3.0], [1.0, 3.0, 5.0], [0.0, 0.0, 0.0])
    assert value(unweighted) == pytest.approx(1.0)


def test_losses_are_divided_by_the_replica_count_as_keras_divides_its_own(monkeypatch):
    """Under tf.distribute each replica's loss is its share (Keras sums the replicas' gradients):
    with 2 replicas both losses are halved, as Keras' own MeanSquaredError is."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute exists on the TensorFlow backend only")
    # (batch, 1) columns: Keras leaves a rank-1 MSE, a scalar already, unscaled.
    targets, predictions = [[1.0], [2.0], [3.0]], [[1.0], [3.0], [5.0]]
    logits = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], np.float32)
    cases = (
        (CCCLoss(), targets, predictions),
        (LabelSmoothedCrossEntropy(3), [0, 2], logits),
        (keras.losses.MeanSquaredError(), targets, predictions),
    )
    single = [value(loss(y, p)) for loss, y, p in cases]
    monkeypatch.setattr("tensorflow.distribute.get_strategy", lambda: SimpleNamespace(num_replicas_in_sync=2))
    halved = [value(loss(y, p)) for loss, y, p in cases]
    np.testing.assert_allclose(halved, np.array(single) / 2, rtol=1e-6)


def test_losses_compute_in_float32_from_bfloat16_inputs():
    targets = keras.ops.cast(np.linspace(-1, 1, 64), "bfloat16")
    predictions = keras.ops.cast(np.linspace(-1, 1, 64) * 0.5 + 0.1, "bfloat16")
    result = ccc(targets, predictions)
    assert keras.backend.standardize_dtype(result.dtype) == "float32"
    reference = ccc(value(keras.ops.cast(targets, "float32")), value(keras.ops.cast(predictions, "float32")))
    assert value(result) == pytest.approx(value(reference), rel=1e-6)
    logits = keras.ops.cast([[1.0, 2.0, 3.0]], "bfloat16")
    assert keras.backend.standardize_dtype(smoothed_cross_entropy([0], logits).dtype) == "float32"


# ---------------------------------------------------------------- cross-entropy


def test_label_smoothed_cross_entropy_matches_hand_computed_value():
    # logits [1, 2, 3]: logsumexp = 3 + log(1 + e^-1 + e^-2) = 3 + log(1.5032147) = 3.4076059,
    # so log p = [-2.4076059, -1.4076059, -0.4076059]. Label 0, s = 0.1, K = 3:
    # loss = (1 - s) * 2.4076059 + s * mean(2.4076059, 1.4076059, 0.4076059) = 2.1668453 + 0.1407606 = 2.3076059.
    loss = LabelSmoothedCrossEntropy(num_classes=3, smoothing=0.1)
    assert value(loss([0], [[1.0, 2.0, 3.0]])) == pytest.approx(2.3076059, rel=1e-6)
    probabilities = value(keras.ops.softmax(np.array([[1.0, 2.0, 3.0]], np.float32)))
    from_probabilities = LabelSmoothedCrossEntropy(3, 0.1, from_logits=False)
    assert value(from_probabilities([[0]], probabilities)) == pytest.approx(2.3076059, rel=1e-5)


def test_label_smoothed_cross_entropy_agrees_with_keras():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 1, 0])
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert value(LabelSmoothedCrossEntropy(4, smoothing=0.0)(labels, logits)) == pytest.approx(value(plain), rel=1e-6)
    dense = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    expected = dense(np.eye(4, dtype=np.float32)[labels], logits)
    smoothed = LabelSmoothedCrossEntropy(4, smoothing=0.1)(labels, logits)
    assert value(smoothed) == pytest.approx(value(expected), rel=1e-6)


def test_ignored_labels_contribute_nothing():
    logits = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [9.0, -9.0, 0.0]], np.float32)
    loss = LabelSmoothedCrossEntropy(num_classes=3)
    kept = value(loss([0, 2], logits[:2]))
    assert value(loss([0, 2, -1], logits)) == pytest.approx(kept, rel=1e-6)
    assert value(loss([[0], [2], [-1]], logits, sample_weight=[1.0, 1.0, 5.0])) == pytest.approx(kept, rel=1e-6)
    assert value(loss([-1, -1, -1], logits)) == 0.0
    assert value(smoothed_cross_entropy([0, -1, 2], logits))[1] == 0.0


def test_an_all_zero_soft_target_is_an_ignored_clip():
    """Soft targets: an all-zero row is no distribution; like a label < 0 it adds nothing and does not
    dilute the mean over the clips that count."""
    logits = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [9.0, -9.0, 0.0]], np.float32)
    soft = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5], [0.0, 0.0, 0.0]], np.float32)
    loss = LabelSmoothedCrossEntropy(num_classes=3)
    assert value(loss(soft, logits)) == pytest.approx(value(loss(soft[:2], logits[:2])), rel=1e-6)


def test_probabilities_of_zero_give_a_finite_loss():
    """from_logits=False: a class predicted with probability 0 still gets its smoothed share of the
    target; the loss stays finite (log of a clipped probability) instead of inf or NaN."""
    loss = LabelSmoothedCrossEntropy(3, smoothing=0.1, from_logits=False)
    result = value(loss([0], np.array([[1.0, 0.0, 0.0]], np.float32)))
    assert np.isfinite(result) and result > 0


def test_the_loss_refuses_a_smoothing_of_one_and_predictions_of_another_class_count():
    """Smoothing 1 would make every target uniform (nothing to learn); logits for 4 classes scored
    against 3 labels would mean a model built for other labels."""
    with pytest.raises(ValueError, match=r"label smoothing must be in \[0, 1\), got 1.0"):
        LabelSmoothedCrossEntropy(3, smoothing=1.0)
    with pytest.raises(ValueError, match=r"label smoothing must be in \[0, 1\), got -0.1"):
        LabelSmoothedCrossEntropy(3, smoothing=-0.1)
    with pytest.raises(ValueError, match="predictions have 4 classes, the loss expects 3"):
        LabelSmoothedCrossEntropy(3)([0, 1], np.zeros((2, 4), np.float32))


def test_sample_weights_give_a_weighted_mean():
    logits = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], np.float32)
    each = value(smoothed_cross_entropy([0, 2], logits))
    weighted = LabelSmoothedCrossEntropy(3)([0, 2], logits, sample_weight=[3.0, 1.0])
    assert value(weighted) == pytest.approx((3 * each[0] + each[1]) / 4, rel=1e-6)


def test_losses_serialise():
    for loss in (CCCLoss(), LabelSmoothedCrossEntropy(num_classes=5, smoothing=0.2, from_logits=False)):
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    # The clone computes the same loss: smoothing 0.2 and probabilities, not the defaults.
    probabilities = np.array([[0.6, 0.1, 0.1, 0.1, 0.1], [0.2, 0.2, 0.2, 0.3, 0.1]], np.float32)
    assert value(clone([0, 3], probabilities)) == pytest.approx(value(loss([0, 3], probabilities)), rel=1e-6)


def test_each_output_gets_its_tasks_loss_and_configured_weight():
    """Emotion outputs: cross-entropy with training.label_smoothing, weight 1, except a hybrid
    model's per-branch heads (aux_loss_weight); a late model's per-branch heads are its predictions,
    weight 1. Valence and arousal: 1 - CCC at va_loss_weight."""
    training = {"label_smoothing": 0.2, "aux_loss_weight": 0.3, "va_loss_weight": 0.7}
    hybrid = SimpleNamespace(output_names=["emotion", "valence", "arousal", "video_emotion", "audio_emotion", "face_emotion"])
    losses, weights = losses_for(hybrid, {"fusion": "hybrid", "labels": ["anger", "happiness", "sadness"], "training": training})
    assert weights == {"emotion": 1.0, "valence": 0.7, "arousal": 0.7, "video_emotion": 0.3, "audio_emotion": 0.3, "face_emotion": 0.3}
    assert isinstance(losses["valence"], CCCLoss) and isinstance(losses["arousal"], CCCLoss)
    assert all(losses[name].smoothing == 0.2 and losses[name].num_classes == 3 for name in hybrid.output_names if name.endswith("emotion"))
    late = SimpleNamespace(output_names=[f"{branch}_{task}" for branch in ("video", "audio", "face") for task in ("emotion", "valence", "arousal")])
    _, weights = losses_for(late, {"fusion": "late", "labels": ["anger", "happiness"], "training": training})
    assert weights == {name: 1.0 if name.endswith("emotion") else 0.7 for name in late.output_names}


# ---------------------------------------------------------------- schedule


def test_warmup_cosine_values():
    schedule = WarmupCosine(peak_lr=1e-3, warmup_steps=10, total_steps=110, min_lr=1e-5)
    expected = {0: 0.0, 5: 5e-4, 10: 1e-3, 60: (1e-3 + 1e-5) / 2, 110: 1e-5, 500: 1e-5}
    for step, lr in expected.items():
        assert value(schedule(step)) == pytest.approx(lr, rel=1e-5, abs=1e-9), step
    # A quarter into the cosine: min + (peak - min) * (1 + cos(pi / 4)) / 2.
    assert value(schedule(35)) == pytest.approx(1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi / 4)) / 2, rel=1e-5)
    assert value(WarmupCosine(1e-3, 0, 10)(0)) == pytest.approx(1e-3)
    clone = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert clone.get_config() == schedule.get_config()
    for step in (0, 5, 35, 110, 500):  # the clone's schedule, min_lr included
        assert value(clone(step)) == pytest.approx(value(schedule(step)), rel=1e-6), step
    with pytest.raises(ValueError):
        WarmupCosine(1e-3, warmup_steps=20, total_steps=10)


def test_warmup_cosine_refuses_a_negative_warmup_and_an_empty_schedule():
    with pytest.raises(ValueError, match="need 0 <= warmup_steps"):
        WarmupCosine(1e-3, warmup_steps=-1, total_steps=10)
    with pytest.raises(ValueError, match="need 0 <= warmup_steps"):
        WarmupCosine(1e-3, warmup_steps=0, total_steps=0)


def test_a_schedule_that_is_all_warm_up_reaches_its_peak_at_the_end():
    """warmup_steps == total_steps (warm-up over every epoch) is allowed: linear up to the peak at
    the last step, min_lr after it."""
    schedule = WarmupCosine(1e-3, warmup_steps=10, total_steps=10, min_lr=1e-5)
    assert value(schedule(5)) == pytest.approx(5e-4, rel=1e-5)
    assert value(schedule(10)) == pytest.approx(1e-3, rel=1e-5)
    assert value(schedule(11)) == pytest.approx(1e-5, rel=1e-5)


# ---------------------------------------------------------------- layer decay and weight decay


def test_layer_scales_follow_the_beit_layer_ids():
    backbone = tiny_backbone()
    scales = layer_scales(backbone, layer_decay=0.5)
    top = NUM_LAYERS + 1
    assert layer_ids(backbone)["patch_embed/kernel"] == 0
    assert scales["patch_embed/kernel"] == scales["patch_embed/bias"] == 0.5**top
    for index in range(NUM_LAYERS):
        assert layer_ids(backbone)[f"block_{index}/attention/qkv/kernel"] == index + 1
        assert scales[f"block_{index}/attention/q_bias"] == 0.5 ** (top - index - 1)
        assert scales[f"block_{index}/fc2/kernel"] == 0.5 ** (top - index - 1)
    assert scales["fc_norm/gamma"] == 1.0
    assert len(scales) == len(backbone.weights)
    model = VideoMAEClassifier(backbone, num_classes=3)
    with_head = layer_scales(model, layer_decay=0.5)
    assert with_head["head/kernel"] == with_head["head/bias"] == 1.0
    assert with_head["block_0/fc1/kernel"] == 0.5**NUM_LAYERS
    assert set(layer_scales(model, layer_decay=1.0).values()) == {1.0}
    heads_faster = layer_scales(model, layer_decay=0.5, head_lr_multiplier=4.0)
    assert heads_faster["head/kernel"] == heads_faster["head/bias"] == 4.0
    assert heads_faster["fc_norm/gamma"] == 1.0 and heads_faster["block_0/fc1/kernel"] == 0.5**NUM_LAYERS


def test_layer_ids_put_the_heads_at_the_top_layer():
    """Variables outside the backbone (the heads) have layer id L + 1, as fc_norm has."""
    ids = layer_ids(tiny_classifier())
    assert ids["head/kernel"] == ids["head/bias"] == ids["fc_norm/gamma"] == NUM_LAYERS + 1


def test_a_backbone_without_blocks_has_the_embedding_at_id_0_and_the_norm_at_the_top():
    backbone = VideoMAEBackbone(hidden_size=8, num_layers=0, num_heads=1, intermediate_size=8, num_frames=4, image_size=32)
    scales = layer_scales(backbone, layer_decay=0.5)
    assert scales == {"patch_embed/kernel": 0.5, "patch_embed/bias": 0.5, "fc_norm/gamma": 1.0, "fc_norm/beta": 1.0}


def test_a_head_variable_on_a_backbone_variables_path_is_refused():
    """lr multipliers are looked up by variable path: a head whose path is a backbone layer's would
    silently train at that layer's lr, so layer_ids refuses it."""
    frames = keras.Input((4, 32, 32, 3))
    model = keras.Model(frames, keras.layers.Dense(3, name="patch_embed")(tiny_backbone()(frames)))
    with pytest.raises(ValueError, match="two variables share the path 'patch_embed/kernel' but sit in different layers"):
        layer_ids(model)


def test_a_model_without_a_videomae_backbone_is_refused_by_name():
    features = keras.Input((None, 8))
    model = keras.Model(features, keras.layers.Dense(2)(features), name="audio_only")
    with pytest.raises(ValueError, match="model 'audio_only' holds 0 VideoMAE backbones; expected exactly one"):
        find_backbone(model)


def test_whisper_layers_take_the_layer_decay_from_the_convolutions_to_the_final_norm():
    """Convolutions and positions at id 0, layers_i at i + 1, the final layer_norm at L + 1 (lr x 1)."""
    encoder = WhisperBackbone(d_model=8, encoder_layers=3, encoder_attention_heads=2, encoder_ffn_dim=16, name="whisper")
    features = keras.Input((None, 80))
    scales = speech_layer_scales(keras.Model(features, encoder(features)), layer_decay=0.5)
    assert scales["conv1/kernel"] == scales["conv2/bias"] == scales["embed_positions/embeddings"] == 0.5**4
    for index in range(3):
        assert scales[f"layers_{index}/fc1/kernel"] == scales[f"layers_{index}/self_attn/q_proj/bias"] == 0.5 ** (3 - index)
    assert scales["layer_norm/gamma"] == scales["layer_norm/beta"] == 1.0


def test_no_weight_decay_on_biases_norms_and_qv_biases():
    names = set(no_weight_decay_paths(tiny_classifier()))
    assert {"patch_embed/bias", "block_0/attention/q_bias", "block_0/attention/v_bias", "block_2/norm1/gamma",
            "block_2/norm2/beta", "block_3/fc1/bias", "fc_norm/gamma", "fc_norm/beta", "head/bias"} <= names
    assert not any(path.endswith("kernel") for path in names)


def test_no_weight_decay_on_any_1d_variable_or_one_named_like_a_bias_or_norm():
    """Every 1-D variable is exempt whatever its name (the Whisper head's per-layer logits), and a
    variable named bias, gamma or beta is exempt whatever its rank."""

    class Matrices(keras.layers.Layer):
        def build(self, input_shape):
            self.gamma = self.add_weight(name="gamma", shape=(2, 2))
            self.beta = self.add_weight(name="beta", shape=(2, 2))
            self.bias = self.add_weight(name="bias", shape=(2, 2))
            self.kernel = self.add_weight(name="kernel", shape=(2, 2))

        def call(self, inputs):
            return inputs @ self.gamma @ self.beta @ self.bias @ self.kernel

    hidden = [keras.Input((3, 2)), keras.Input((3, 2))]
    pooling, matrices = WeightedLayerPooling(name="pooling"), Matrices(name="matrices")
    model = keras.Model(hidden, matrices(pooling(hidden)))
    exempt = set(no_weight_decay_paths(model))
    assert {pooling.layer_weights.path, matrices.gamma.path, matrices.beta.path, matrices.bias.path} <= exempt
    assert matrices.kernel.path not in exempt


def test_keras_exclude_from_weight_decay_is_honoured_too():
    kept, decayed = keras.Variable(np.ones((2, 2), np.float32), name="kept"), keras.Variable(np.ones((2, 2), np.float32), name="decayed")
    optimizer = LayerDecayAdamW(learning_rate=0.1, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["kept"])
    optimizer.apply([np.zeros((2, 2), np.float32)] * 2, [kept, decayed])  # zero gradients: only decay moves
    np.testing.assert_allclose(value(kept), 1.0)
    np.testing.assert_allclose(value(decayed), 1.0 - 0.5 * 0.1, rtol=1e-6)


def test_weight_decay_comes_before_the_adam_step_as_in_pytorchs_adamw():
    """torch.optim.AdamW: x <- x (1 - lr wd), then x <- x - lr m_hat / (sqrt(v_hat) + eps). With
    lr 0.5 and wd 0.5 the order shows: 1 -> 0.75 -> 0.25 (decaying after the step gives 0.375)."""
    variable = keras.Variable(np.ones((2, 2), np.float32), name="kernel")
    LayerDecayAdamW(learning_rate=0.5, weight_decay=0.5, epsilon=1e-8).apply([np.ones((2, 2), np.float32)], [variable])
    np.testing.assert_allclose(value(variable), 0.25, rtol=1e-4)


def test_weight_decay_shrinks_kernels_only_with_the_layer_lr():
    model = tiny_classifier()
    for variable in model.trainable_variables:
        if len(variable.shape) == 1:  # biases start at 0: set them to 1 so that decay would show
            variable.assign(np.ones(variable.shape, np.float32))
    before = {variable.path: value(variable) for variable in model.trainable_variables}
    optimizer = build_adamw(model, base_lr=0.1, weight_decay=0.5, layer_decay=0.5, warmup_steps=0, total_steps=100)
    zeros = [np.zeros(variable.shape, np.float32) for variable in model.trainable_variables]
    optimizer.apply(zeros, model.trainable_variables)  # Adam's step is 0 for zero gradients: only decay moves
    scales = layer_scales(model, 0.5)
    for variable in model.trainable_variables:
        factor = 1.0 if len(variable.shape) == 1 else 1.0 - 0.5 * 0.1 * scales[variable.path]
        np.testing.assert_allclose(value(variable), before[variable.path] * factor, rtol=1e-6, err_msg=variable.path)
    assert 1.0 - 0.5 * 0.1 * scales["patch_embed/kernel"] != 1.0 - 0.5 * 0.1  # the check above tells layers apart


@pytest.mark.parametrize("graph", [False, True])
def test_adam_first_step_moves_each_variable_by_its_layer_lr(graph):
    model = tiny_classifier()
    optimizer = build_adamw(
        model, base_lr=1e-2, weight_decay=0.0, layer_decay=0.5, head_lr_multiplier=3.0, warmup_steps=0, total_steps=100
    )
    expected = {"patch_embed/kernel": 0.5**5, "block_0/attention/qkv/kernel": 0.5**4, "block_3/norm1/gamma": 0.5,
                "fc_norm/beta": 1.0, "head/kernel": 3.0}
    variables = [variable for variable in model.trainable_variables if variable.path in expected]
    before = {variable.path: value(variable) for variable in variables}
    ones = [np.ones(variable.shape, np.float32) for variable in variables]  # identical gradients everywhere
    if graph and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        optimizer.build(variables)
        tf.function(lambda grads: optimizer.apply(grads, variables))(ones)
    else:
        optimizer.apply(ones, variables)
    # First Adam step: m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1, so the step is lr * scale * sign(g).
    for variable in variables:
        scale = expected[variable.path]
        step = before[variable.path] - value(variable)
        np.testing.assert_allclose(step, 1e-2 * scale, rtol=1e-4, err_msg=variable.path)
        assert optimizer.lr_scale_of(variable) == scale


def test_optimizer_serialises_and_trains_a_compiled_model():
    model = tiny_classifier()
    optimizer = build_adamw(model, base_lr=1e-3, warmup_steps=2, total_steps=10)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(clone, LayerDecayAdamW) and clone.lr_scales == optimizer.lr_scales
    assert clone.no_decay_paths == optimizer.no_decay_paths
    assert clone.get_config()["learning_rate"] == optimizer.get_config()["learning_rate"]
    # Eager: tracing the training step costs 13 s on a CPU; the graph path is tested above.
    model.compile(optimizer=optimizer, loss={"logits": LabelSmoothedCrossEntropy(3)}, run_eagerly=True)
    rng = np.random.default_rng(0)
    frames = rng.random((4, 4, 32, 32, 3), dtype=np.float32)
    labels = np.array([0, 1, 2, -1])
    history = model.fit(frames, {"logits": labels}, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert int(value(optimizer.iterations)) == 1


def test_the_built_optimizer_reads_its_schedule_from_its_state_so_folds_share_a_compiled_step():
    """Folds of one experiment have other step counts: once built, the optimizer's lr is the schedule
    computed from a variable among its own (an input of the compiled step, not a constant of it),
    and it equals the schedule's at every step; before building it is the schedule itself."""
    model = tiny_classifier()
    optimizer = build_adamw(model, base_lr=1e-3, warmup_steps=10, total_steps=110)
    schedule = optimizer.get_config()["learning_rate"]
    assert value(optimizer.learning_rate) == pytest.approx(0.0)
    optimizer.build(model.trainable_variables)
    (state,) = [variable for variable in optimizer.variables if variable.name == "schedule"]
    np.testing.assert_allclose(value(state), [1e-3, 10, 110, 1e-6])
    reference = WarmupCosine(1e-3, 10, 110, 1e-6)
    for step in (0, 5, 10, 35, 60, 110, 500):
        optimizer.iterations.assign(step)
        assert value(optimizer.learning_rate) == pytest.approx(value(reference(step)), rel=1e-6, abs=1e-12), step
    state.assign([2e-3, 0, 20, 0.0])  # another fold's numbers, in the same compiled step
    optimizer.iterations.assign(10)
    assert value(optimizer.learning_rate) == pytest.approx(1e-3, rel=1e-5)
    assert schedule == optimizer.get_config()["learning_rate"]  # the config still names the schedule


def test_the_optimizer_has_the_recipes_defaults_and_pytorchs_epsilon():
    """AdamW (0.9, 0.999), weight decay 0.05, layer decay 0.75 and min_lr 1e-6 as VideoMAE fine-tunes,
    epsilon 1e-8 as PyTorch's AdamW (Keras' default is 1e-7)."""
    backbone = tiny_backbone()
    optimizer = build_adamw(backbone, base_lr=1e-3, warmup_steps=0, total_steps=10)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.999, 1e-8)
    assert optimizer.weight_decay == 0.05
    embedding = 0.75 ** (NUM_LAYERS + 1)
    assert optimizer.lr_scales["patch_embed/kernel"] == layer_scales(backbone)["patch_embed/kernel"] == pytest.approx(embedding)
    assert value(optimizer.learning_rate) == pytest.approx(1e-3)
    assert value(optimizer._learning_rate(10)) == pytest.approx(1e-6)


def test_set_backbone_trainable_freezes_only_the_backbone():
    model = tiny_classifier()
    set_backbone_trainable(model, False)
    assert {variable.path for variable in model.trainable_variables} == {"head/kernel", "head/bias"}
    set_backbone_trainable(model, True)
    assert len(model.trainable_variables) == len(model.weights)


def test_accumulated_batches_make_one_update_at_the_lr_of_the_larger_batch():
    """training.accumulation_steps 2 on batches of 6: the weights change once per two batches (Keras
    averages their gradients), at the peak lr of batch_size 12, on a schedule that counts batches."""
    from test_train_experiment import settings_for

    settings = settings_for("late")
    accumulated = {**settings["training"], "batch_size": 6, "accumulation_steps": 2, "warmup_epochs": 1}
    large = {**settings["training"], "batch_size": 12, "warmup_epochs": 1}
    model = build_model(settings)
    optimizer = phase_optimizer(model, accumulated, 0, 3, steps_per_epoch=4)
    schedule, reference = optimizer._learning_rate, phase_optimizer(model, large, 0, 3, steps_per_epoch=4)._learning_rate
    assert optimizer.gradient_accumulation_steps == 2
    assert float(schedule(4)) == pytest.approx(float(reference(4))) == pytest.approx(0.05 * 12 / 256)  # the peak, after 1 epoch of 4 batches
    # ...and the cosine ends at VideoMAE's min_lr 1e-6 scaled the same way (not 1e-6 at any batch)
    assert float(schedule(12)) == pytest.approx(float(reference(12))) == pytest.approx(1e-6 * 12 / 256)
    variables = model.trainable_variables
    start = [np.array(v) for v in variables]
    rng = np.random.default_rng(0)
    optimizer.apply([rng.normal(size=v.shape).astype("float32") for v in variables], variables)
    assert all(np.array_equal(before, np.asarray(v)) for before, v in zip(start, variables))
    optimizer.apply([rng.normal(size=v.shape).astype("float32") for v in variables], variables)
    assert not np.allclose(start[0], np.asarray(variables[0]))
    assert phase_optimizer(model, settings["training"], 0, 3, 4).gradient_accumulation_steps is None  # absent: every batch


def test_accumulated_updates_are_adamw_steps_on_the_averaged_gradient():
    """With accumulation_steps N, each update is one AdamW step on the mean of N batches' gradients,
    its bias correction counting updates (as PyTorch's AdamW on the larger batch), not batches: with
    the batch count, Adam's steps would be half as large at the first update and more than twice as
    large through the warm-up."""
    lr, decay, beta_1, beta_2, eps = 1e-2, 0.05, 0.9, 0.999, 1e-8
    variable = keras.Variable(np.array([0.5, -1.0, 2.0], np.float32), name="kernel")
    optimizer = LayerDecayAdamW(
        learning_rate=lr, weight_decay=decay, beta_1=beta_1, beta_2=beta_2, epsilon=eps, gradient_accumulation_steps=3
    )
    rng = np.random.default_rng(0)
    batches = rng.normal(size=(4, 3, 3)).astype(np.float32)  # 4 updates of 3 batches each
    expected, m, v = np.array([0.5, -1.0, 2.0], np.float64), 0.0, 0.0
    for update, gradients in enumerate(batches, start=1):
        for gradient in gradients:
            optimizer.apply([gradient], [variable])
        mean = gradients.mean(axis=0).astype(np.float64)
        expected -= lr * decay * expected  # decoupled weight decay, then Adam (torch.optim.AdamW's order)
        m, v = beta_1 * m + (1 - beta_1) * mean, beta_2 * v + (1 - beta_2) * mean**2
        m_hat, v_hat = m / (1 - beta_1**update), v / (1 - beta_2**update)
        expected -= lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(value(variable), expected, rtol=2e-5, atol=1e-6)


# ---------------------------------------------------------------- precision


def test_auto_precision_is_bf16_on_a_gpu_and_float32_without_one(monkeypatch):
    """training.mixed_precision auto: bf16 on a GPU, float32 on CPUs; an explicit float32 stays
    float32 on a GPU."""
    try:
        for gpu, wanted, policy in ((False, "float32", "float32"), (True, "bf16", "mixed_bfloat16")):
            monkeypatch.setattr(devices, "gpu_available", lambda gpu=gpu: gpu)
            assert configure_precision({"mixed_precision": "auto"}) == wanted
            assert keras.mixed_precision.global_policy().name == policy
        assert configure_precision({"mixed_precision": "float32"}) == "float32"
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ---------------------------------------------------------------- devices


def test_a_gpu_is_the_one_the_backend_keras_runs_sees(monkeypatch):
    """gpu_available asks the backend in use: JAX's devices, torch's CUDA, TensorFlow's GPUs (a CPU
    alone is no GPU)."""
    fake_devices = {"GPU": [], "CPU": ["/physical_device:CPU:0"]}
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: fake_devices[kind] if kind else sum(fake_devices.values(), []))
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    assert gpu_available() is False
    fake_devices["GPU"] = ["/physical_device:GPU:0"]
    assert gpu_available() is True
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    for platforms, gpu in ((["cpu"], False), (["gpu"], True)):
        monkeypatch.setattr(jax, "devices", lambda platforms=platforms: [SimpleNamespace(platform=p) for p in platforms])
        assert gpu_available() is gpu
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    for gpu in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda gpu=gpu: gpu)
        assert gpu_available() is gpu


@pytest.mark.parametrize(
    "gpus, cpus, mirrored",
    [
        (2, 1, ["GPU:0", "GPU:1"]),  # a node's GPUs
        (2, 2, ["GPU:0", "GPU:1"]),  # GPUs before logical CPUs
        (0, 2, ["CPU:0", "CPU:1"]),  # logical CPU devices a test configured
        (1, 1, None),  # one device: the default strategy
        (0, 1, None),
    ],
)
def test_a_tensorflow_job_mirrors_over_several_gpus_else_trains_on_one_device(monkeypatch, gpus, cpus, mirrored):
    """training_strategy on TensorFlow: MirroredStrategy over every GPU it sees where there are two
    or more, else over several logical CPUs, else the default strategy."""
    logical = {"GPU": [f"GPU:{i}" for i in range(gpus)], "CPU": [f"CPU:{i}" for i in range(cpus)]}
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind: [SimpleNamespace(name=name) for name in logical[kind]])
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", lambda devices=None: ("mirrored", devices))
    monkeypatch.setattr(tf.distribute, "get_strategy", lambda: "default")
    assert training_strategy() == (("mirrored", mirrored) if mirrored else "default")


def test_a_jax_job_trains_on_its_first_device_as_one_replica_and_says_so_when_given_more(monkeypatch, caplog):
    """On JAX the strategy is one replica (the losses divide by it) whose scope changes nothing; a
    job that sees several devices is told it uses the first."""
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(jax, "devices", lambda: ["gpu:0"])
    with caplog.at_level("WARNING", logger=devices.__name__):
        strategy = training_strategy()
    assert isinstance(strategy, OneJaxDevice) and strategy.num_replicas_in_sync == 1 and not caplog.records
    with strategy.scope():
        pass
    with caplog.at_level("WARNING", logger=devices.__name__):
        OneJaxDevice(["gpu:0", "gpu:1"])
    assert [record.getMessage() for record in caplog.records] == ["training.backend jax trains on one device: gpu:0 of 2 (use tensorflow for several GPUs)"]
