"""Multi-view testing: what each spatial view renders, and that averaging views is what evaluation
and prediction both do."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from avemotion.fusion.augment import MIRROR_ORDER, MIRROR_SIGN
from avemotion.fusion.render import sample_frames
from avemotion.fusion.schema import FACE_COLUMNS
from avemotion.fusion.views import CENTRE_CROP, VIEWS, View, apply_view, evaluation_views

SIZE = 32


def render(example: dict) -> np.ndarray:
    batch = {name: tf.expand_dims(example[name], 0) for name in ("frames", "_window", "_flip", "_scale", "_offset")}
    return sample_frames(batch["frames"], batch["_window"], batch["_flip"], batch["_scale"], batch["_offset"], SIZE)[0].numpy()


@pytest.fixture
def example():
    rng = np.random.default_rng(0)
    return {
        "frames": tf.constant(rng.integers(0, 256, (4, SIZE, SIZE, 3)), tf.uint8),
        "face_sequence": tf.constant(rng.normal(size=(4, len(FACE_COLUMNS))), tf.float32),
    }


def test_the_views_are_the_frames_mirrored_and_centre_cropped(example):
    frames = example["frames"].numpy() / 255
    np.testing.assert_allclose(render(apply_view(example, View(), SIZE)), frames, atol=1e-6)
    np.testing.assert_allclose(render(apply_view(example, View(flip=True), SIZE)), frames[:, :, ::-1], atol=1e-6)
    side = round(SIZE * CENTRE_CROP)  # 28: pixels 2..29 resized to 32, as tf.image.resize does
    start = (SIZE - side) // 2
    expected = tf.image.resize(frames[:, start : start + side, start : start + side], (SIZE, SIZE)).numpy()
    np.testing.assert_allclose(render(apply_view(example, View(crop=CENTRE_CROP), SIZE)), expected, atol=1e-5)
    np.testing.assert_allclose(render(apply_view(example, View(crop=CENTRE_CROP, flip=True), SIZE)), expected[:, :, ::-1], atol=1e-5)


def test_a_mirrored_view_mirrors_the_face_features_too(example):
    face = example["face_sequence"].numpy()
    mirrored = apply_view(example, View(flip=True), SIZE)["face_sequence"].numpy()
    np.testing.assert_allclose(mirrored, face[:, MIRROR_ORDER] * np.array(MIRROR_SIGN), rtol=1e-6)
    assert mirrored[:, FACE_COLUMNS.index("pose_Ry")] == pytest.approx(-face[:, FACE_COLUMNS.index("pose_Ry")])
    np.testing.assert_array_equal(apply_view(example, View(crop=CENTRE_CROP), SIZE)["face_sequence"].numpy(), face)


def test_spatial_views_take_the_first_views_and_refuse_others():
    assert evaluation_views(1) == (View(),) and evaluation_views(4) == VIEWS
    with pytest.raises(ValueError, match="1 to 4"):
        evaluation_views(5)
