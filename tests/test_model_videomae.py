"""The Keras VideoMAE itself: layers, registry, serialisation, parameter counts, bf16 and XLA."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from avemotion.model import VideoMAEBackbone, VideoMAEClassifier, build_classifier, variant_settings
from avemotion.model.layers import DropPath, TubeletEmbedding, VideoMAEAttention, sinusoid_table
from avemotion.presets import IMAGENET_MEAN, IMAGENET_STD, VARIANTS, variant_of

SMALL = dict(num_frames=4, image_size=32)


def tiny_classifier(num_classes=3, **overrides):
    return build_classifier(variant_settings("tiny"), num_classes, [f"c{i}" for i in range(num_classes)], **{**SMALL, **overrides})


def clips(batch=2, frames=4, size=32, seed=0):
    return np.random.default_rng(seed).random((batch, frames, size, size, 3), dtype=np.float32)


def test_sinusoid_table_is_the_reference_formula():
    table = sinusoid_table(50, 12)
    position, column = 37, 7  # odd column: cos of pos / 10000^(2*(7//2)/12)
    assert table[position, column] == pytest.approx(np.cos(position / 10000 ** (6 / 12)), abs=1e-7)
    assert table[position, 6] == pytest.approx(np.sin(position / 10000 ** (6 / 12)), abs=1e-7)
    transformers = pytest.importorskip("transformers.models.videomae.modeling_videomae")
    reference = transformers.get_sinusoid_encoding_table(1568, 768).numpy()[0]
    np.testing.assert_array_equal(sinusoid_table(1568, 768), reference)


def test_tubelet_embedding_is_conv3d_with_kernel_equal_to_stride():
    frames = clips(frames=4, size=32)
    embedding = TubeletEmbedding(8, patch_size=16, tubelet_size=2)
    tokens = np.asarray(embedding(frames))
    conv = keras.layers.Conv3D(8, (2, 16, 16), strides=(2, 16, 16))
    conv.build(frames.shape)
    conv.set_weights([np.asarray(embedding.kernel), np.asarray(embedding.bias) + 0.5])
    embedding.bias.assign(np.asarray(embedding.bias) + 0.5)
    expected = np.asarray(conv(frames)).reshape(2, -1, 8)  # (t, h, w) token order
    np.testing.assert_allclose(np.asarray(embedding(frames)), expected, atol=1e-5)
    assert tokens.shape == (2, 2 * 2 * 2, 8)


def test_frames_that_do_not_split_into_tubelets_are_refused():
    with pytest.raises(ValueError, match="does not split into tubelets of 2 frames and 16x16 patches"):
        build_classifier(variant_settings("tiny"), 0, num_frames=5, image_size=32)


def test_non_square_frames_whose_width_does_not_split_into_patches_are_refused():
    with pytest.raises(ValueError, match="input of 4 frames of 32x24 pixels does not split into tubelets of 2 frames and 16x16 patches"):
        TubeletEmbedding(8, patch_size=16, tubelet_size=2)(np.zeros((1, 4, 32, 24, 3), np.float32))


def test_a_width_that_the_heads_do_not_divide_is_refused_when_the_layer_is_made():
    with pytest.raises(ValueError, match="hidden size 10 is not a multiple of 3 heads"):
        VideoMAEAttention(10, 3)


def test_label_names_must_name_every_class():
    with pytest.raises(ValueError, match="2 label names given for 3 classes"):
        build_classifier(dict(hidden_size=24, num_layers=1, num_heads=2, intermediate_size=40), 3, ["a", "b"], num_frames=2, image_size=16)
    with pytest.raises(ValueError, match="3 label names given for 2 classes"):
        build_classifier(dict(hidden_size=24, num_layers=1, num_heads=2, intermediate_size=40), 2, ["a", "b", "c"], num_frames=2, image_size=16)


def test_a_one_class_head_is_a_head():
    model = tiny_classifier(num_classes=1, num_layers=1)
    assert model.head is not None and model(clips())["logits"].shape == (2, 1)


def test_the_clip_shape_asked_for_wins_over_the_architectures():
    """load_videomae rebuilds a saved network at another clip length this way."""
    saved = {**variant_settings("tiny"), "num_layers": 1, "num_frames": 16, "image_size": 224}
    model = build_classifier(saved, 2, ["a", "b"], num_frames=4, image_size=32)
    assert (model.backbone.num_frames, model.backbone.image_size) == (4, 32)
    assert model(clips())["logits"].shape == (2, 2)


def test_a_backbones_config_rebuilds_every_constructor_argument():
    """get_config / architecture (what .keras files and the .weights.h5 record hold) carry every
    argument, non-default ones included: a reloaded model is the network that was saved."""
    arguments = dict(
        hidden_size=24, num_layers=1, num_heads=2, intermediate_size=40, patch_size=8, tubelet_size=1, num_frames=2,
        image_size=16, qkv_bias=False, layer_norm_eps=1e-5, fc_norm_eps=1e-4, drop_path_rate=0.1,
        image_mean=(0.5, 0.4, 0.3), image_std=(0.2, 0.25, 0.3), extra_tokens=3,
    )  # fmt: skip
    backbone = VideoMAEBackbone(**arguments)
    assert backbone.architecture == arguments
    clone = VideoMAEBackbone.from_config(backbone.get_config())
    assert clone.architecture == arguments
    assert clone.get_layer("fc_norm").epsilon == 1e-4 and [tuple(tensor.shape) for tensor in clone.inputs] == [(None, 2, 16, 16, 3), (None, 3, 24)]


def test_a_variant_with_overrides_takes_the_overrides():
    backbone = VideoMAEBackbone.from_variant("tiny", num_layers=1, num_frames=2, image_size=16)
    assert (backbone.num_layers, backbone.hidden_size, backbone.num_frames) == (1, 192, 2)


def test_registry_holds_architecture_and_normalisation():
    assert list(VARIANTS) == ["tiny", "small", "base", "large", "huge"]
    sizes = {name: (v["hidden_size"], v["num_layers"], v["num_heads"]) for name, v in VARIANTS.items()}
    assert sizes["small"] == (384, 12, 6) and sizes["base"] == (768, 12, 12)
    assert sizes["large"] == (1024, 24, 16) and sizes["huge"] == (1280, 32, 16)
    backbone = VideoMAEBackbone.from_variant("tiny", **SMALL)
    assert backbone.image_mean == IMAGENET_MEAN and backbone.image_std == IMAGENET_STD
    # The model standardises its [0, 1] input itself: a clip of the mean colour is all zeros inside.
    standardize = backbone.get_layer("standardize")
    mean_clip = np.broadcast_to(np.asarray(IMAGENET_MEAN, np.float32), (1, 4, 32, 32, 3))
    assert np.abs(np.asarray(standardize(mean_clip))).max() < 1e-6


def test_variants_are_found_by_width_and_depth_and_handed_out_as_copies():
    """A checkpoint's tensor shapes name its variant: ViT-B is 768 wide and 12 deep, a 768-wide network
    of another depth is no registered one; the settings a caller gets are its own to change."""
    assert variant_of(768) == variant_of(768, 12) == "base" and variant_of(1024, 24) == "large"
    assert variant_of(768, 24) is None and variant_of(500) is None
    settings = variant_settings("base")
    settings["num_layers"] = 2
    assert variant_settings("base")["num_layers"] == 12 and VARIANTS["base"]["num_layers"] == 12
    with pytest.raises(ValueError, match="unknown VideoMAE variant 'giant'; allowed values: tiny, small, base, large, huge"):
        variant_settings("giant")


def test_a_backbone_given_no_clip_shape_is_built_for_the_published_checkpoints_clips():
    """VideoMAE's checkpoints were trained on 16 frames of 224 px: what one means when it does not say."""
    backbone = VideoMAEBackbone.from_variant("tiny")
    assert (backbone.num_frames, backbone.image_size) == (16, 224)
    keras.backend.clear_session()


@pytest.mark.parametrize("variant, low, high", [("base", 86.0e6, 87.0e6), ("large", 303.5e6, 304.5e6)])
def test_published_parameter_counts(variant, low, high):
    """ViT-B about 86-87 M and ViT-L 304 M, each with a 400-class (Kinetics) head, built without weights."""
    model = build_classifier(variant_settings(variant), 400, num_frames=2, image_size=16)
    assert low <= model.count_params() <= high
    keras.backend.clear_session()


def test_config_round_trip_and_keras_archive(tmp_path):
    model = tiny_classifier()
    clone = VideoMAEClassifier.from_config(model.get_config())
    assert clone.backbone.get_config() == model.backbone.get_config()
    assert clone.label_names == ["c0", "c1", "c2"]
    model.save(tmp_path / "tiny.keras")
    loaded = keras.saving.load_model(tmp_path / "tiny.keras")
    batch = clips()
    for key in ("features", "logits"):
        np.testing.assert_array_equal(np.asarray(loaded(batch)[key]), np.asarray(model(batch)[key]))


def test_a_mixed_precision_backbone_is_rebuilt_in_its_precision_from_its_config_and_archive(tmp_path):
    """A backbone built with dtype="mixed_bfloat16" (without a global policy) stays so when a
    .keras archive or its config rebuilds it: float32 weights, bfloat16 features."""
    backbone = VideoMAEBackbone.from_variant("tiny", dtype="mixed_bfloat16", **SMALL)
    batch = clips()
    assert backbone(batch).dtype == "bfloat16"
    backbone.save(tmp_path / "mixed.keras")
    for rebuilt in (VideoMAEBackbone.from_config(backbone.get_config()), keras.saving.load_model(tmp_path / "mixed.keras")):
        assert rebuilt.dtype_policy.name == "mixed_bfloat16" and rebuilt(batch).dtype == "bfloat16"
        assert all(weight.dtype == "float32" for weight in rebuilt.weights)


def test_drop_path_drops_whole_samples_only_in_training():
    layer = DropPath(0.5, seed=1)
    x = np.ones((64, 5, 3), np.float32)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    dropped = np.asarray(layer(x, training=True))
    per_sample = dropped.reshape(64, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}  # kept samples are scaled by 1 / keep
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))  # a sample is dropped whole
    assert 10 < (per_sample[:, 0] == 0).sum() < 54


def test_drop_path_rates_grow_with_depth():
    backbone = VideoMAEBackbone.from_variant("tiny", drop_path_rate=0.3, **SMALL)
    rates = [backbone.get_layer(f"block_{i}").drop_path.rate for i in range(backbone.num_layers)]
    np.testing.assert_allclose(rates, [0.0, 0.1, 0.2, 0.3])


@pytest.fixture()
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_bfloat16_training_step_under_xla(mixed_bfloat16):
    model = tiny_classifier(drop_path_rate=0.1)
    assert all(weight.dtype == "float32" for weight in model.weights)  # float32 master weights
    batch = clips(batch=4)
    outputs = model(batch)
    assert outputs["features"].dtype == "bfloat16" and outputs["logits"].dtype == "float32"

    trainer = keras.Model(model.input, model.output["logits"])
    trainer.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    before = np.asarray(model.backbone.get_layer("block_0").attention.q_bias).copy()
    history = trainer.fit(batch, np.array([0, 1, 2, 0]), epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert not np.array_equal(before, np.asarray(model.backbone.get_layer("block_0").attention.q_bias))


def test_xla_compiled_forward_matches_eager():
    import tensorflow as tf

    model = tiny_classifier()
    batch = clips()
    eager = np.asarray(model(batch)["logits"])
    compiled = tf.function(lambda x: model(x, training=False)["logits"], jit_compile=True)
    np.testing.assert_allclose(np.asarray(compiled(batch)), eager, atol=1e-5)
