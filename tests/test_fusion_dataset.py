"""The tf.data input pipeline and the early-fusion layout, on small shards written here (T=4, S=32)."""

from __future__ import annotations

import collections

import numpy as np
import pandas as pd
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from avemotion.fusion import augment as A  # noqa: E402
from avemotion.fusion import balance as B  # noqa: E402
from avemotion.fusion import dataset as D  # noqa: E402
from avemotion.fusion import records as R  # noqa: E402
from avemotion.fusion import render  # noqa: E402
from avemotion.fusion.schema import AUDIO_STEPS, FACE_COLUMNS, FACE_FEATURES, MEL_BANDS, MFCC_COEFFICIENTS  # noqa: E402
from avemotion.media.spectrogram import to_image  # noqa: E402
from avemotion.model.early_fusion import EarlyFusionSequence  # noqa: E402

T, S = 4, 32
COLOURS = [(20, 200, 100), (60, 170, 30), (100, 140, 220), (140, 110, 160)]
LABELS = ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]


# ---- writing shards ---------------------------------------------------------------------------


def mel_ramp() -> np.ndarray:
    """A Mel in dB whose value encodes band and time step: -100 + 0.5 * band + 0.1 * step."""
    return (-100.0 + 0.5 * np.arange(MEL_BANDS)[:, None] + 0.1 * np.arange(AUDIO_STEPS)[None, :]).astype(np.float32)


def constant_frames(colours=COLOURS, size=S) -> np.ndarray:
    return np.stack([np.full((size, size, 3), colour, np.uint8) for colour in colours])


def pattern_frames(num_frames=T, size=S) -> np.ndarray:
    """T identical frames, dark on the left, bright on the right, a vertical gradient too."""
    x = np.linspace(30, 220, size)[None, :, None]
    y = np.linspace(0, 30, size)[:, None, None]
    frame = np.broadcast_to(x + y, (size, size, 3)).astype(np.uint8)
    return np.stack([frame] * num_frames)


def make_clip(clip_id: str, label: str = "anger", *, dataset: str = "crema_d", frames=None, mel=None, face=None, **extra) -> dict:
    mel = mel_ramp() if mel is None else mel
    frames = constant_frames() if frames is None else frames
    face = np.arange(len(frames) * FACE_FEATURES, dtype=np.float32).reshape(len(frames), FACE_FEATURES) / 100 if face is None else face
    return {
        "clip_id": clip_id,
        "dataset": dataset,
        "speaker": extra.get("speaker", "1001"),
        "label": label,
        "label_index": extra.get("label_index", LABELS.index(label) if label in LABELS else 7),
        "fold": extra.get("fold", 1),
        "audio_missing": 0,
        "valence": extra.get("valence", 0.25),
        "arousal": extra.get("arousal", -0.5),
        "face_ratio": 1.0,
        "frames": frames,
        "mel": mel,
        "mfcc": np.linspace(-50, 50, MFCC_COEFFICIENTS * AUDIO_STEPS, dtype=np.float32).reshape(MFCC_COEFFICIENTS, AUDIO_STEPS),
        "face_sequence": face,
        "face_present": np.ones(FACE_FEATURES, np.float32),
    }


def serialize(clip: dict) -> bytes:
    def strings(*values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(values).tolist()))

    def ints(*values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    jpegs = [tf.io.encode_jpeg(frame, quality=95).numpy() for frame in clip["frames"]]
    feature = {name: strings(clip[name].encode()) for name in ("clip_id", "dataset", "speaker", "label")}
    feature.update({name: ints(int(clip[name])) for name in ("label_index", "fold", "audio_missing")})
    feature.update({name: floats([clip[name]]) for name in ("valence", "arousal", "face_ratio")})
    feature.update({name: floats(clip[name]) for name in ("mel", "mfcc", "face_sequence", "face_present")})
    feature["frames"] = strings(*jpegs)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_shard(path, clips) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for clip in clips:
            writer.write(serialize(clip))
    return str(path)


def write_tabular(root, clips, dataset="crema_d") -> tuple[str, pd.DataFrame]:
    """The tabular shard of ``clips`` (the split columns training reads) under ``root``; its path and table."""
    table = pd.DataFrame([{key: clip[key] for key in ("clip_id", "dataset", "speaker", "fold", "label", "valence", "arousal")} for clip in clips])
    path = root / dataset / "shards" / "tabular" / "0.parquet"
    path.parent.mkdir(parents=True)
    table.to_parquet(path)
    return str(path), table


def shard_path(root, dataset="crema_d", chunk=0):
    return root / dataset / "shards" / "tfrecord" / f"{chunk}.tfrecord"


def options(**overrides) -> dict:
    return {"num_frames": T, "image_size": S, "label_names": LABELS, "batch_size": 4, **overrides}


def parsed(clip: dict) -> dict:
    """The clip's raw example (frames as JPEG bytes), as the pipeline parses it."""
    return R.parse_record(tf.constant(serialize(clip)), T)


@tf.function
def rendered(frames, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """The crop window augment_clip draws from ``seed`` for uint8 frames (T, S, S, 3) as they are
    (no JPEG in between), and the frames a training batch of one renders from its draws."""
    example = {"face_sequence": tf.zeros([T, FACE_FEATURES]), "mel": tf.constant(mel_ramp()), "mfcc": tf.zeros([MFCC_COEFFICIENTS, AUDIO_STEPS])}
    clip = A.augment_clip(example, frames, seed)
    return clip["_window"], render.sample_frames(*[clip[name][None] for name in D.RENDER], S)[0]


def training_view(raw: dict, seed) -> dict:
    """A raw example as a training batch of one shows it: the clip's augmentation drawn from
    ``seed`` (D.prepare), its frames rendered (sample_frames), the batch axis dropped."""
    clip = D.prepare(raw, T, S, tf.constant(seed, tf.int64))
    frames = render.sample_frames(*[clip[name][None] for name in D.RENDER], S)[0]
    return {**clip, "frames": frames}


# ---- one example ------------------------------------------------------------------------------


def test_parse_round_trip():
    clip = make_clip("1001_DFA_ANG_XX", "anger", speaker="1001", fold=2, valence=0.3, arousal=0.7)
    raw = parsed(clip)
    frames = R.decode_frames(raw["frames"], T, S).numpy()
    assert frames.shape == (T, S, S, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(frames, clip["frames"], atol=4)
    example = {k: v.numpy() for k, v in raw.items()}
    np.testing.assert_array_equal(example["mel"], clip["mel"])
    np.testing.assert_array_equal(example["mfcc"], clip["mfcc"])
    np.testing.assert_array_equal(example["face_sequence"], clip["face_sequence"])
    assert example["face_present"].shape == (FACE_FEATURES,)
    assert (example["clip_id"], example["dataset"], example["speaker"], example["label"]) == (
        b"1001_DFA_ANG_XX", b"crema_d", b"1001", b"anger"
    )
    assert (example["label_index"], example["fold"]) == (0, 2)
    assert example["valence"] == pytest.approx(0.3) and example["arousal"] == pytest.approx(0.7)


def test_parse_resizes_frames_stored_at_another_size():
    clip = make_clip("a", frames=constant_frames(size=48))
    frames = R.decode_frames(parsed(clip)["frames"], T, S).numpy()
    assert frames.shape == (T, S, S, 3)
    np.testing.assert_allclose(frames, constant_frames(size=S), atol=4)


def test_frames_stored_at_another_size_are_their_antialiased_resize_rounded():
    """Frames stored larger, or not square, decode to tf.image.resize of the stored JPEGs,
    antialiased and rounded to the nearest level."""
    rng = np.random.default_rng(2)
    for height, width in ((3 * S, 3 * S), (S, 2 * S)):
        frames = rng.integers(0, 256, (T, height, width, 3)).astype(np.uint8)
        raw = parsed(make_clip("a", frames=frames))
        stored = np.stack([tf.io.decode_jpeg(raw["frames"][i], channels=3, dct_method=R.DCT_METHOD).numpy() for i in range(T)])
        expected = np.round(np.clip(tf.image.resize(stored, [S, S], antialias=True).numpy(), 0, 255)).astype(np.uint8)
        np.testing.assert_array_equal(R.decode_frames(raw["frames"], T, S).numpy(), expected)


def test_a_shard_cut_inside_its_first_records_length_or_its_crc_is_cut_in_the_header(tmp_path):
    write_shard(tmp_path / "0.tfrecord", [make_clip("a")])
    for size in (8, 11):  # the 8-byte length is whole, its 4-byte CRC is not
        (tmp_path / "cut.tfrecord").write_bytes((tmp_path / "0.tfrecord").read_bytes()[:size])
        with pytest.raises(ValueError, match="ends inside its first record's header"):
            R.first_record(tmp_path / "cut.tfrecord")


def test_scale_mel_is_the_png_mapping():
    rng = np.random.default_rng(0)
    mel = rng.uniform(-120, -10, (MEL_BANDS, AUDIO_STEPS)).astype(np.float32)
    scaled = D.scale_mel(mel).numpy()
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    # to_image: the same values as 0..255 levels, highest band first.
    np.testing.assert_array_equal(np.flipud(np.rint(255 * scaled).astype(np.uint8)), to_image(mel))
    batch = D.scale_mel(np.stack([mel, mel - 30])).numpy()  # per clip, not per batch
    np.testing.assert_allclose(batch[1], scaled, atol=1e-6)
    # silence alone (a silent clip, or a window of one that holds only its padded silence) is zeros,
    # as silence beside sound is, not the loudest value
    silence = np.full((MEL_BANDS, AUDIO_STEPS), -100.0, np.float32)
    assert not D.scale_mel(np.stack([silence, mel])).numpy()[0].any() and not to_image(silence).any()
    with_sound = np.concatenate([silence, mel], axis=1)
    assert not D.scale_mel(with_sound).numpy()[:, :AUDIO_STEPS].any()


def test_spec_augment_masks_whole_bands_and_steps():
    mel, mfcc = tf.constant(mel_ramp()), tf.constant(np.ones((MFCC_COEFFICIENTS, AUDIO_STEPS), np.float32))
    masked_any = False
    for seed in range(8):
        out_mel, out_mfcc = (x.numpy() for x in A.spec_augment(mel, mfcc, tf.constant([seed, 1])))
        changed = out_mel != mel_ramp()
        assert np.all(out_mel[changed] == mel_ramp().min())
        hidden = changed.copy()
        hidden[0, 0] = True  # the ramp's minimum: masked or not, it reads the same
        rows, columns = hidden.all(axis=1), hidden.all(axis=0)
        # Every masked value lies in a fully masked band or a fully masked time step.
        expected = rows[:, None] | columns[None, :]
        expected[0, 0] = True
        assert np.array_equal(hidden, expected)
        assert rows.sum() <= 2 * int(0.15 * MEL_BANDS) and columns.sum() <= 2 * int(0.10 * AUDIO_STEPS)
        mfcc_hidden = out_mfcc == 0
        assert np.array_equal(mfcc_hidden.all(axis=0), columns)  # the same time masks on both
        masked_any |= bool(changed.any())
    assert masked_any


def test_spec_augment_masks_at_most_its_share_and_anywhere_in_the_clip():
    """On 13 bands x 10 steps a mask hides at most one band (15 %) or one step (10 %), so at most
    two of each; the masks fall anywhere, on the first and the last step too; the Mel and the MFCC
    share their time masks, not their frequency masks."""
    mel = 1 + np.random.default_rng(4).random((13, 10)).astype(np.float32)
    mel[0, 0] = 0  # the minimum, which masked Mel values become (masked MFCC values become 0)
    masked = tf.function(lambda seed: [out == 0 for out in A.spec_augment(tf.constant(mel), tf.constant(mel), seed)])
    masked_steps, same_bands = collections.Counter(), []
    for seed in range(100):
        hidden_mel, hidden_mfcc = (out.numpy() for out in masked(tf.constant([seed, 2])))
        bands, steps = hidden_mel.all(axis=1), hidden_mel.all(axis=0)
        assert bands.sum() <= 2 and steps.sum() <= 2
        masked_steps.update(np.flatnonzero(steps).tolist())
        np.testing.assert_array_equal(hidden_mfcc.all(axis=0), steps)
        same_bands.append(np.array_equal(hidden_mfcc.all(axis=1), bands))
    assert sorted(masked_steps) == list(range(10)) and not all(same_bands)


def test_augmentation_crops_and_flips_all_frames_alike():
    face = np.zeros((T, FACE_FEATURES), np.float32)
    yaw, gaze0x, gaze1y = (FACE_COLUMNS.index(name) for name in ("pose_Ry", "gaze_0_x", "gaze_1_y"))
    face[:, yaw], face[:, gaze0x], face[:, gaze1y] = 0.4, 0.2, 0.3
    raw = parsed(make_clip("p", frames=pattern_frames(), face=face))
    original = R.decode_frames(raw["frames"], T, S).numpy() / 255.0
    flips = set()
    for seed in range(12):
        example = training_view(raw, [seed, 0])
        frames = example["frames"].numpy()
        assert frames.shape == (T, S, S, 3) and frames.min() >= 0 and frames.max() <= 1
        for i in range(1, T):
            np.testing.assert_array_equal(frames[i], frames[0])
        assert not np.allclose(frames, original, atol=0.02)
        flipped = frames[0, :, : S // 2].mean() > frames[0, :, S // 2 :].mean()  # bright side moved left
        flips.add(flipped)
        out = example["face_sequence"].numpy()
        if flipped:  # yaw negated, eyes swapped (gaze_1_x = -gaze_0_x), as the mirrored face
            assert out[0, yaw] == pytest.approx(-0.4)
            assert out[0, FACE_COLUMNS.index("gaze_1_x")] == pytest.approx(-0.2)
            assert out[0, FACE_COLUMNS.index("gaze_0_y")] == pytest.approx(0.3)
        else:
            np.testing.assert_array_equal(out, face)
    assert flips == {True, False}


def test_crop_windows_follow_the_scale_and_ratio_ranges():
    params = [A.video_params(tf.constant([i, 7], tf.int64), 224, 224) for i in range(200)]
    windows = np.array([p["window"].numpy() for p in params])
    top, left, height, width = windows.T
    assert windows.min() >= 0 and np.all(top + height <= 224) and np.all(left + width <= 224)
    # The corner uniform over the places the crop fits: smaller crops touch each edge now and then.
    for start, side in ((top, height), (left, width)):
        assert (start[side < 224] == 0).any() and (start + side == 224)[side < 224].any()
    # Flipped half the time; brightness within +-0.15 and contrast 0.75-1.25, either way.
    assert np.mean([p["flip"].numpy() for p in params]) == pytest.approx(0.5, abs=0.1)
    brightness, contrast = (np.array([p[name].numpy() for p in params]) for name in ("brightness", "contrast"))
    assert -0.15 <= brightness.min() < -0.1 and 0.1 < brightness.max() <= 0.15
    assert 0.75 <= contrast.min() < 0.8 and 1.2 < contrast.max() <= 1.25
    area, aspect = height * width / 224**2, width / height
    assert 0.59 <= area.min() and area.max() <= 1 and 0.74 <= aspect.min() and aspect.max() <= 1.35
    assert area.mean() == pytest.approx(0.75, abs=0.04)  # uniform in [0.6, 1]: draws that do not fit are redrawn


def test_jitter_moves_a_uniform_clip_by_its_brightness_alone_and_reads_only_the_crop():
    """Contrast scales about the mean level of the crop: a uniform clip keeps its contrast and moves by
    the brightness alone (within +-0.15, either way, the same at any level), and what lies outside
    the crop changes nothing."""
    shifts = []
    for index in range(12):
        seed = tf.constant([index, 3], tf.int64)
        window, dark = (x.numpy() for x in rendered(tf.fill([T, S, S, 3], tf.constant(60, tf.uint8)), seed))
        bright = rendered(tf.fill([T, S, S, 3], tf.constant(180, tf.uint8)), seed)[1].numpy()
        shift = dark - 60 / 255
        np.testing.assert_allclose(shift, shift.flat[0], atol=1e-5)
        np.testing.assert_allclose(bright - 180 / 255, shift, atol=1e-5)
        shifts.append(shift.flat[0])
        top, left, height, width = window.astype(int)
        framed = np.full((T, S, S, 3), 250, np.uint8)
        framed[:, top : top + height, left : left + width] = 60
        np.testing.assert_allclose(rendered(tf.constant(framed), seed)[1].numpy(), dark, atol=1e-5)
    assert np.abs(shifts).max() <= 0.15 and min(shifts) < 0 < max(shifts)


def test_a_flip_mirrors_the_face_features_as_a_mirror_shows_the_face():
    """Yaw, roll, the x translation and the gaze's x change sign and the two eyes swap; pitch, the
    y and z, and the AUs (bilateral) stay."""
    face = np.random.default_rng(3).normal(size=(T, FACE_FEATURES)).astype(np.float32)
    column = {name: face[:, i] for i, name in enumerate(FACE_COLUMNS)}
    expected = dict(column)
    for name in ("pose_Tx", "pose_Ry", "pose_Rz", "gaze_angle_x"):
        expected[name] = -column[name]
    for axis, sign in (("x", -1), ("y", 1), ("z", 1)):
        expected[f"gaze_0_{axis}"], expected[f"gaze_1_{axis}"] = sign * column[f"gaze_1_{axis}"], sign * column[f"gaze_0_{axis}"]
    mirrored = A.mirror_face(tf.constant(face), tf.constant(True)).numpy()
    np.testing.assert_array_equal(mirrored, np.stack([expected[name] for name in FACE_COLUMNS], axis=-1))
    np.testing.assert_array_equal(A.mirror_face(tf.constant(face), tf.constant(False)).numpy(), face)


def test_sample_frames_is_tf_image_resize_of_the_crop():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, T, 40, 48, 3)).astype(np.uint8)
    windows = np.array([[3, 5, 30, 20], [0, 0, 40, 48]], np.float32)
    flips = np.array([True, False])
    scales, offsets = np.array([1.2 / 255, 1 / 255], np.float32), np.array([-0.1, 0.0], np.float32)
    got = render.compiled(render.sample_frames)(images, windows, flips, scales, offsets, S).numpy()
    for b, (top, left, height, width) in enumerate(windows.astype(int)):
        crop = images[b, :, top : top + height, left : left + width]
        crop = crop[:, :, ::-1] if flips[b] else crop
        expected = np.clip(tf.image.resize(crop, [S, S]).numpy() * scales[b] + offsets[b], 0, 1)
        np.testing.assert_allclose(got[b], expected, atol=1e-5)


def test_the_identity_view_renders_uint8_frames_unchanged_in_0_1():
    """Evaluation's parameters (render.identity) give every pixel / 255, nothing cropped or moved."""
    images = np.random.default_rng(3).integers(0, 256, (2, T, S, S, 3)).astype(np.uint8)
    params = render.identity(S)
    batch = [tf.stack([params[name]] * 2) for name in D.RENDER[1:]]
    np.testing.assert_allclose(render.sample_frames(images, *batch, S).numpy(), images / 255.0, atol=1e-6)


def test_rendering_is_compiled_once_per_setting_and_op_by_op_when_jit_is_off(monkeypatch):
    """A shared compiled function is built once per JIT_COMPILE setting (an input pipeline's own is
    new each time); with the setting off, erase_boxes runs op by op: its noise is the eager one,
    which XLA draws otherwise."""
    frames = tf.fill([1, 2, 8, 8, 3], 0.5)
    args = (frames, tf.constant([[0.0, 0.0, 8.0, 8.0]]), tf.constant([[1, 2]], tf.int64), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    eager = render.erase_boxes(*args).numpy()
    monkeypatch.setattr(render, "JIT_COMPILE", True)
    xla = render.compiled(render.erase_boxes)
    assert render.compiled(render.erase_boxes) is xla
    assert render.compiled(render.erase_boxes, shared=False) is not render.compiled(render.erase_boxes, shared=False)
    assert not np.allclose(xla(*args).numpy(), eager)
    monkeypatch.setattr(render, "JIT_COMPILE", False)
    np.testing.assert_allclose(render.compiled(render.erase_boxes)(*args).numpy(), eager, atol=1e-6)


# ---- the dataset ------------------------------------------------------------------------------


def test_labels_outside_the_set_are_dropped(tmp_path):
    clips = [make_clip("a", "anger"), make_clip("b", "contempt", dataset="mafw"), make_clip("c", "happiness")]
    path = write_shard(tmp_path / "mixed.tfrecord", clips)
    label_names = ["happiness", "anger"]
    ds = D.make_dataset([path], **options(label_names=label_names, with_ids=True))
    (inputs, targets, meta), = list(ds)
    assert [c.decode() for c in meta["clip_id"].numpy()] == ["a", "c"]
    assert targets["emotion"].numpy().tolist() == [1, 0]  # indices in label_names, not label_index
    assert targets["emotion"].dtype == tf.int32
    # unlabelled (new clips to predict): every clip, those outside the label set with emotion -1
    (_, targets, meta), = list(D.make_dataset([path], **options(label_names=label_names, with_ids=True, unlabelled=True)))
    assert [c.decode() for c in meta["clip_id"].numpy()] == ["a", "b", "c"]
    assert targets["emotion"].numpy().tolist() == [1, -1, 0]


def test_clip_ids_select_a_split(tmp_path):
    path = write_shard(tmp_path / "s.tfrecord", [make_clip(f"clip{i}", LABELS[i % 6]) for i in range(10)])
    split = ["clip1", "clip4", "clip7", "not_there"]
    ds = D.make_dataset([path], **options(clip_ids=split, with_ids=True))
    seen = [c.decode() for _, _, meta in ds for c in meta["clip_id"].numpy()]
    assert seen == ["clip1", "clip4", "clip7"]
    # A training stream that nothing passes ends instead of repeating an empty pass forever.
    empty = D.make_dataset([path], **options(clip_ids=[], training=D.Training()))
    assert list(empty.take(1)) == []


def test_evaluation_batches_keep_every_clip_and_their_ids(tmp_path):
    clips = [make_clip(f"c{i}", "fear", dataset="enterface", speaker=f"s{i}", fold=i % 5 + 1) for i in range(6)]
    path = write_shard(shard_path(tmp_path, "enterface"), clips)
    batches = list(D.make_dataset([path], **options(with_ids=True)))
    assert [b[0]["frames"].shape[0] for b in batches] == [4, 2]  # the last partial batch is kept
    meta = batches[0][2]
    assert set(meta) == {"clip_id", "dataset", "speaker", "label", "fold"}
    assert meta["dataset"].numpy().tolist() == [b"enterface"] * 4
    assert meta["fold"].numpy().tolist() == [1, 2, 3, 4]
    inputs, targets = batches[0][0], batches[0][1]
    assert set(inputs) == {"frames", "mel", "face_sequence", "face_present"}
    np.testing.assert_allclose(inputs["frames"].numpy()[0], constant_frames() / 255.0, atol=4 / 255)
    np.testing.assert_allclose(inputs["mel"].numpy()[0, ..., 0], D.scale_mel(mel_ramp()).numpy(), atol=1e-6)
    np.testing.assert_allclose(targets["valence"].numpy(), 0.25)


def test_training_batches(tmp_path):
    path = write_shard(tmp_path / "t.tfrecord", [make_clip(f"c{i}", LABELS[i % 6], frames=pattern_frames()) for i in range(10)])
    ds = D.make_dataset([path], **options(training=D.Training(seed=1), batch_size=3))
    spec_inputs, spec_targets = ds.element_spec
    assert spec_inputs["frames"].shape.as_list() == [3, T, S, S, 3]  # drop_remainder: static batch
    assert spec_inputs["mel"].shape.as_list() == [3, MEL_BANDS, AUDIO_STEPS, 1]
    assert spec_inputs["face_sequence"].shape.as_list() == [3, T, FACE_FEATURES]
    assert spec_inputs["face_present"].shape.as_list() == [3, FACE_FEATURES]
    assert {k: v.dtype for k, v in spec_inputs.items()} == {k: tf.float32 for k in spec_inputs}
    assert (spec_targets["emotion"].dtype, spec_targets["valence"].dtype) == (tf.int32, tf.float32)
    batches = list(ds.take(5))  # 15 clips from a 10-clip shard: the stream repeats
    assert len(batches) == 5
    original = pattern_frames()[0] / 255.0
    changed = 0
    for inputs, _ in batches:
        frames = inputs["frames"].numpy()
        assert 0 <= frames.min() and frames.max() <= 1
        for clip in frames:  # identical frames stay identical: one crop/flip/jitter per clip
            for i in range(1, T):
                np.testing.assert_array_equal(clip[i], clip[0])
            changed += not np.allclose(clip[0], original, atol=0.02)
        mel = inputs["mel"].numpy()
        assert 0 <= mel.min() and mel.max() <= 1
    assert changed >= 12
    # Each clip draws its own augmentation: the same clip comes out differently within a batch.
    assert len({clip.tobytes() for clip in batches[0][0]["frames"].numpy()}) == 3
    # Reproducible from the seed, different for another seed.
    again = next(iter(D.make_dataset([path], **options(training=D.Training(seed=1), batch_size=3))))
    np.testing.assert_array_equal(again[0]["frames"].numpy(), batches[0][0]["frames"].numpy())
    other = next(iter(D.make_dataset([path], **options(training=D.Training(seed=2), batch_size=3))))
    assert not np.array_equal(other[0]["frames"].numpy(), batches[0][0]["frames"].numpy())


def test_class_balanced_sampling_evens_out_an_imbalanced_shard(tmp_path):
    rng = np.random.default_rng(0)
    labels = ["anger"] * 90 + ["happiness"] * 10
    rng.shuffle(labels)
    small = constant_frames(size=8)
    clips = [make_clip(f"c{i:03d}", label, frames=small) for i, label in enumerate(labels)]
    path = write_shard(tmp_path / "imbalanced.tfrecord", clips)
    settings = options(image_size=8, batch_size=16)
    balanced = D.Training(shuffle_buffer=64, class_balanced=True)
    counts = collections.Counter()
    for _, targets in D.make_dataset([path], training=balanced, **settings).take(25):  # 400 clips
        counts.update(targets["emotion"].numpy().tolist())
    share = counts[LABELS.index("happiness")] / sum(counts.values())
    assert 0.35 <= share <= 0.65, counts
    plain = collections.Counter()
    for _, targets in D.make_dataset([path], training=D.Training(shuffle_buffer=64), **settings).take(25):
        plain.update(targets["emotion"].numpy().tolist())
    assert plain[LABELS.index("happiness")] / sum(plain.values()) < 0.2


def test_class_balancing_evens_the_classes_seen_and_keeps_the_streams_length():
    """3 of 6 classes at 70/20/10 %: each becomes about a third, and the stream stays about as long
    (rare clips repeated, frequent ones thinned; bounds about 3 sd of the resampling's own spread)."""
    labels = np.random.default_rng(5).permutation([0] * 560 + [1] * 160 + [2] * 80).astype(np.int32)
    stream = tf.data.Dataset.from_tensor_slices({"emotion": labels})
    out = np.array([example["emotion"] for example in B.class_balanced(stream, 6, seed=0).as_numpy_iterator()])
    assert len(out) == pytest.approx(800, rel=0.1)
    np.testing.assert_allclose(np.bincount(out, minlength=6) / len(out), [1 / 3] * 3 + [0] * 3, atol=0.07)


def test_dataset_weights_are_shares_of_their_sum_and_name_exactly_the_datasets():
    assert B.mixing_weights(["crema_d", "mafw"], {"mafw": 3, "crema_d": 1}) == [0.25, 0.75]
    assert B.mixing_weights(["crema_d", "mafw"], {"crema_d": 0, "mafw": 2}) == [0.0, 1.0]  # a weight may be 0
    with pytest.raises(ValueError, match=r"no weight for \[\], no shards for \['enterface'\]"):
        B.mixing_weights(["crema_d"], {"crema_d": 1, "enterface": 1})
    for weights in ({"crema_d": -1, "mafw": 2}, {"crema_d": 0, "mafw": 0}):
        with pytest.raises(ValueError, match=">= 0 with a positive sum"):
            B.mixing_weights(["crema_d", "mafw"], weights)
    # The mixture ends when one of its streams does.
    short, endless = tf.data.Dataset.range(3), tf.data.Dataset.range(100, 101).repeat()
    drawn = list(B.mixed([short, endless], [0.5, 0.5], seed=0).take(1000).as_numpy_iterator())
    assert len(drawn) < 1000 and sorted(x for x in drawn if x < 3) == [0, 1, 2]


def test_dataset_weights_mix_datasets_in_proportion(tmp_path):
    small = constant_frames(size=8)
    crema = write_shard(shard_path(tmp_path, "crema_d"), [make_clip(f"c{i}", "anger", frames=small) for i in range(12)])
    # The shards' records say which dataset they hold, wherever they lie; an empty shard holds none.
    mafw = write_shard(tmp_path / "elsewhere" / "3.tfrecord", [make_clip(f"m{i}", "sadness", dataset="mafw", frames=small) for i in range(40)])
    empty = write_shard(tmp_path / "empty.tfrecord", [])
    assert R.shards_by_dataset([crema, mafw, empty]) == {"crema_d": [crema], "mafw": [mafw]}
    settings = options(image_size=8, batch_size=16, with_ids=True)
    ds = D.make_dataset([crema, mafw, empty], training=D.Training(dataset_weights={"crema_d": 0.75, "mafw": 0.25}), **settings)
    counts = collections.Counter()
    for _, _, meta in ds.take(25):
        counts.update(d.decode() for d in meta["dataset"].numpy())
    assert 0.67 <= counts["crema_d"] / sum(counts.values()) <= 0.83, counts
    with pytest.raises(ValueError, match="no weight for \\['mafw'\\]"):
        D.make_dataset([crema, mafw], training=D.Training(dataset_weights={"crema_d": 1.0}), **settings)


def test_inputs_select_what_the_model_reads(tmp_path):
    path = write_shard(tmp_path / "i.tfrecord", [make_clip(f"c{i}") for i in range(4)])
    inputs, _ = next(iter(D.make_dataset([path], **options(inputs=("frames", "face_present")))))
    assert set(inputs) == {"frames", "face_present"}
    np.testing.assert_allclose(inputs["frames"].numpy()[0], constant_frames() / 255.0, atol=4 / 255)
    with pytest.raises(ValueError, match="inputs must be some of"):
        D.make_dataset([path], **options(inputs=("frames", "mfcc")))  # the MFCC is stored but no model reads it
    with pytest.raises(ValueError, match="inputs must be some of"):
        D.make_dataset([path], **options(inputs=()))
    with pytest.raises(ValueError, match="label_names must be distinct"):
        D.make_dataset([path], **options(label_names=["anger", "fear", "anger"]))


def test_shard_paths_come_as_one_path_a_list_or_a_mapping_which_is_taken_as_given(tmp_path):
    path = tmp_path / "0.tfrecord"
    assert R.all_paths(path) == R.all_paths(str(path)) == R.all_paths([path]) == [str(path)]
    assert R.all_paths({"crema_d": [path], "mafw": ["m.tfrecord"]}) == [str(path), "m.tfrecord"]
    # A mapping says which dataset each shard holds: nothing is read (these files do not exist).
    assert R.shards_by_dataset({"crema_d": [path], "mafw": ["m.tfrecord"]}) == {"crema_d": [str(path)], "mafw": ["m.tfrecord"]}


def stream_ids(files, count=None, **overrides) -> list[str]:
    """The clip ids R.read_stream yields (the first ``count`` of them), every clip kept unless ``keep`` says."""
    settings = {"num_frames": T, "labels": R.lookup(LABELS, -1), "keep": R.membership(None), "training": False, "seed": 0, **overrides}
    stream = R.read_stream(files, **settings)
    return [example["clip_id"].numpy().decode() for example in (stream.take(count) if count else stream)]


def small_shards(tmp_path, clips: int, names="abc") -> list[str]:
    """One shard per name, of ``clips`` clips each: a0, a1, ..., b0, ..."""
    small = constant_frames(size=8)
    return [write_shard(tmp_path / f"{name}.tfrecord", [make_clip(f"{name}{i}", frames=small) for i in range(clips)]) for name in names]


def test_an_evaluation_stream_reads_the_shards_alike_in_any_order_given(tmp_path):
    files = small_shards(tmp_path, 2)
    assert stream_ids(files[::-1]) == stream_ids(files) and sorted(stream_ids(files)) == ["a0", "a1", "b0", "b1", "c0", "c1"]


def test_a_training_stream_takes_its_shards_in_an_order_drawn_from_its_seed_anew_each_pass(tmp_path):
    files = small_shards(tmp_path, 1)
    passes = {seed: stream_ids(files, 30, training=True, seed=seed) for seed in range(6)}
    assert stream_ids(files[::-1], 30, training=True, seed=0) == passes[0]  # reproducible from the seed alone
    firsts = {tuple(ids[:3]) for ids in passes.values()}
    assert all(sorted(first) == ["a0", "b0", "c0"] for first in firsts) and len(firsts) > 1
    assert len({tuple(passes[0][i : i + 3]) for i in range(0, 30, 3)}) > 1  # shuffled again for every pass


def test_a_training_stream_mixes_clips_of_every_shard_from_the_start(tmp_path):
    """The shards are interleaved, so the shuffle buffer never holds one shard's clips alone."""
    first = stream_ids(small_shards(tmp_path, 3), 3, training=True, seed=0)
    assert sorted(name[0] for name in first) == ["a", "b", "c"]


def test_an_unlabelled_stream_still_keeps_only_its_split(tmp_path):
    path = write_shard(tmp_path / "u.tfrecord", [make_clip("a"), make_clip("b", "contempt"), make_clip("c", "fear")])
    assert stream_ids([path], keep=R.membership(["b", "c"]), unlabelled=True) == ["b", "c"]
    assert stream_ids([path], keep=R.membership(["b", "c"])) == ["c"]


def test_no_shards_is_an_error_that_says_so():
    with pytest.raises(ValueError, match="no TFRecord shards given"):
        D.make_dataset([], **options())


def test_training_options_come_only_with_a_training_stream(tmp_path):
    """class_balanced, dataset_weights, seed, shuffle_buffer and augment exist only on Training, so an
    evaluation pass cannot be given them; the old boolean and unlabelled training are refused."""
    path = write_shard(tmp_path / "b.tfrecord", [make_clip("a")])
    with pytest.raises(TypeError, match="training must be a Training"):
        D.make_dataset([path], **options(training=True))
    with pytest.raises(TypeError):
        D.make_dataset([path], **options(class_balanced=True))
    with pytest.raises(ValueError, match="unlabelled clips cannot be trained on"):
        D.make_dataset([path], **options(training=D.Training(), unlabelled=True))


# ---- early fusion -----------------------------------------------------------------------------


def time_coded_mel(batch=2, steps=AUDIO_STEPS) -> np.ndarray:
    """(B, bands, steps) whose value is the time step (plus 1000 * clip index)."""
    values = np.arange(steps, dtype=np.float32)[None, None, :] + 1000 * np.arange(batch)[:, None, None]
    return np.broadcast_to(values, (batch, MEL_BANDS, steps)).copy()


def early_fusion(frames, mel) -> np.ndarray:
    """The model's EarlyFusionSequence layer on a batch: frames (B, T, S, S, 3), mel (B, bands, steps[, 1])."""
    mel = np.asarray(mel, np.float32)
    mel = mel if mel.ndim == 4 else mel[..., None]
    return keras.ops.convert_to_numpy(EarlyFusionSequence()([np.asarray(frames, np.float32), mel]))


def spectrogram_tiles(mel, num_tiles: int, size: int) -> np.ndarray:
    """The layer's T grey tiles of a batch of Mels (B, bands, steps): (B, T, S, S)."""
    frames = np.zeros((len(mel), num_tiles, size, size, 3), np.float32)
    return early_fusion(frames, mel)[:, num_tiles:, ..., 0]


def test_early_fusion_layout():
    frames = np.random.default_rng(0).random((2, T, S, S, 3), dtype=np.float32)
    mel = time_coded_mel()
    fused = early_fusion(frames, mel)
    assert fused.shape == (2, 2 * T, S, S, 3)
    np.testing.assert_array_equal(fused[:, :T], frames)
    window = AUDIO_STEPS // T
    for b in range(2):
        for i in range(T):
            tile = fused[b, T + i]
            np.testing.assert_array_equal(tile[..., 0], tile[..., 2])  # grey: one value on 3 channels
            # Window i = steps [i L/T, (i+1) L/T): the tile covers it (to within the resize's half step).
            first, last = 1000 * b + i * window, 1000 * b + (i + 1) * window - 1
            assert first <= tile.min() <= first + 1 and last - 1 <= tile.max() <= last
            assert np.all(np.diff(tile[0, :, 0]) >= 0)  # time runs left to right


def test_spectrogram_tiles_put_low_bands_at_the_bottom():
    bands = np.broadcast_to(np.arange(MEL_BANDS, dtype=np.float32)[:, None], (MEL_BANDS, AUDIO_STEPS))[None]
    tiles = spectrogram_tiles(bands, T, S)
    assert tiles.shape == (1, T, S, S)
    tile = tiles[0, 0]
    assert tile[0, 0] >= MEL_BANDS - 3 and tile[-1, 0] <= 2  # 128 bands shrunk to 32 rows: averages of 4
    assert np.all(np.diff(tile[:, 0]) <= 0)
    # Windows of unequal width when T does not divide the steps: all steps are covered, none twice.
    uneven = spectrogram_tiles(time_coded_mel(1, steps=10), 6, 8)[0]
    assert [(t.min(), t.max()) for t in uneven] == [(0, 0), (1, 2), (3, 4), (5, 5), (6, 7), (8, 9)]


def test_spectrogram_tiles_are_tf_image_resize_of_each_window():
    """The tiles' matrix products resample exactly as tf.image.resize (bilinear, half-pixel centres)
    would resize each time window, upside down, uneven windows included."""
    mel = np.random.default_rng(1).random((2, MEL_BANDS, 10), dtype=np.float32)
    tiles = spectrogram_tiles(mel, 4, 12)
    for i, (begin, end) in enumerate([(0, 2), (2, 5), (5, 7), (7, 10)]):
        window = mel[:, ::-1, begin:end, None]
        expected = tf.image.resize(window, [12, 12], method="bilinear").numpy()[..., 0]
        np.testing.assert_allclose(tiles[:, i], expected, atol=1e-5)


def test_a_mel_of_as_many_steps_as_tiles_gives_one_step_per_tile_and_fewer_are_refused():
    """The shortest Mel early fusion takes has one time step per tile; with fewer a tile would have
    no sound of its own, and the layer says so."""
    tiles = spectrogram_tiles(time_coded_mel(1, steps=T), T, S)[0]
    assert [(tile.min(), tile.max()) for tile in tiles] == [(i, i) for i in range(T)]
    with pytest.raises(ValueError, match=f"{T} tiles need at least {T} Mel time steps, got {T - 1}"):
        spectrogram_tiles(time_coded_mel(1, steps=T - 1), T, S)


def test_early_fusion_needs_an_even_frame_count():
    with pytest.raises(ValueError, match="even number of frames"):
        early_fusion(np.zeros((1, 3, S, S, 3), np.float32), np.zeros((1, MEL_BANDS, AUDIO_STEPS), np.float32))
