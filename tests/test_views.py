"""Multi-view testing: what each spatial view renders, and that averaging views is what evaluation
and prediction both do."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_fusion_dataset import LABELS, make_clip, pattern_frames, shard_path, write_shard

from avemotion.fusion.augment import MIRROR_ORDER, MIRROR_SIGN
from avemotion.fusion.dataset import Training, make_dataset
from avemotion.fusion.render import sample_frames
from avemotion.fusion.schema import FACE_COLUMNS
from avemotion.fusion.views import CENTRE_CROP, VIEWS, View, apply_view, evaluation_views
from avemotion.model.outputs import raw_outputs, softmax, view_outputs

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
    # In order: as they are, mirrored, the centre crop, and it mirrored.
    assert evaluation_views(2) == (View(), View(flip=True)) and evaluation_views(3)[2] == View(crop=CENTRE_CROP)
    for views in (0, 5):
        with pytest.raises(ValueError, match="1 to 4"):
            evaluation_views(views)


def test_the_centre_crop_is_the_usual_224_of_256(example):
    """The third view renders the middle 224 x 224 of 256 x 256 frames."""
    window = apply_view(example, evaluation_views(3)[2], 256)["_window"].numpy()
    np.testing.assert_array_equal(window, [16, 16, 224, 224])


def test_the_centre_crop_of_frames_not_a_multiple_of_8_is_the_nearest_whole_side_centred(example):
    """frames.input_size 50: 7/8 of it is 43.75 pixels; the crop is 44, 3 pixels in from each side."""
    window = apply_view(example, View(crop=CENTRE_CROP), 50)["_window"].numpy()
    np.testing.assert_array_equal(window, [3, 3, 44, 44])
    np.testing.assert_array_equal(apply_view(example, View(crop=CENTRE_CROP), 33)["_window"].numpy(), [2, 2, 29, 29])


def test_evaluation_averages_the_outputs_of_its_test_views(tmp_path):
    """raw_outputs (evaluation and avemotion predict) with test_views 2: the mean of the outputs of
    the clips as they are and mirrored; a mirrored view really differs (left-right frames, yaw)."""
    rng = np.random.default_rng(1)
    clips = [make_clip(f"c{i}", LABELS[i], frames=pattern_frames(), face=rng.normal(size=(4, len(FACE_COLUMNS))).astype(np.float32)) for i in range(5)]
    path = write_shard(shard_path(tmp_path), clips)
    inputs = {
        "frames": keras.Input((4, 32, 32, 3), name="frames"),
        "mel": keras.Input((128, 256, 1), name="mel"),
        "face_sequence": keras.Input((4, len(FACE_COLUMNS)), name="face_sequence"),
        "face_present": keras.Input((len(FACE_COLUMNS),), name="face_present"),
    }
    left = keras.ops.mean(inputs["frames"][:, :, :, :16], axis=(1, 2, 3, 4))
    right = keras.ops.mean(inputs["frames"][:, :, :, 16:], axis=(1, 2, 3, 4))
    logits = keras.ops.stack([left * 4, right * 4] + [keras.ops.zeros_like(left)] * 4, axis=1)
    yaw = keras.ops.mean(inputs["face_sequence"][..., FACE_COLUMNS.index("pose_Ry")], axis=1)
    model = keras.Model(inputs, {"emotion": logits, "valence": yaw, "arousal": keras.ops.mean(inputs["mel"], axis=(1, 2, 3))})
    settings = {"num_frames": 4, "image_size": 32, "labels": LABELS, "training": {"batch_size": 2, "test_views": 2}}

    ids, averaged = raw_outputs(model, settings, [path], None)
    outputs = [view_outputs(model, settings, [path], None, False, view)[1] for view in evaluation_views(2)]
    assert ids == [f"c{i}" for i in range(5)]
    for name in ("emotion", "valence", "arousal"):
        np.testing.assert_allclose(averaged[name], (outputs[0][name] + outputs[1][name]) / 2, rtol=1e-6)
    assert np.abs(outputs[0]["emotion"] - outputs[1]["emotion"]).max() > 0.05  # the mirror swaps dark and bright
    np.testing.assert_allclose(outputs[1]["valence"], -outputs[0]["valence"], rtol=1e-5)  # yaw changes sign
    np.testing.assert_allclose(outputs[1]["arousal"], outputs[0]["arousal"])  # the audio is the same
    single = raw_outputs(model, {**settings, "training": {"batch_size": 2}}, [path], None)[1]  # older models: one view
    np.testing.assert_allclose(single["emotion"], outputs[0]["emotion"])
    assert raw_outputs(model, settings, [path], ["c3", "c1"])[0] == ["c1", "c3"]
    # a clip the split holds but the TFRecord shards lack: the model would be scored on fewer clips than the baselines
    with pytest.raises(ValueError, match=r"^1 of the 2 clips asked for are not in the TFRecord shards \(first: c9\)"):
        raw_outputs(model, settings, [path], ["c1", "c9"])
    with pytest.raises(ValueError, match="for evaluation"):
        make_dataset([path], num_frames=4, image_size=32, label_names=LABELS, batch_size=2, training=Training(), view=View(flip=True))


def test_emotion_probabilities_are_a_softmax_that_large_logits_do_not_overflow():
    """Each row of emotion logits becomes probabilities summing to 1; logits far beyond exp's range
    (an overconfident or diverged model) still give numbers, not NaN."""
    probabilities = softmax(np.array([[1000.0, 1000.0 - np.log(3.0)], [0.0, 0.0], [-2000.0, 0.0]]))
    np.testing.assert_allclose(probabilities, [[0.75, 0.25], [0.5, 0.5], [0.0, 1.0]], atol=1e-12)
