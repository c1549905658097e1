"""Temporal test views: shards holding V windows of each clip (avemotion.fusion.schema). Evaluation
takes the window it is asked for, training draws one per clip, and raw_outputs (evaluation and
avemotion predict) averages the V windows x the spatial views, so prediction still equals evaluation."""

from __future__ import annotations

import copy

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from test_fusion_dataset import LABELS, S, T, constant_frames, make_clip, mel_ramp, options, serialize, write_shard, write_tabular
from test_fusion_shards import chunk  # noqa: F401 (a fixture)
from test_train_experiment import COLOUR, VA, settings_for
from test_train_experiment import LABELS as TRAIN_LABELS

from avemotion.cli import main
from avemotion.config import SCHEMA_PATH, config_errors
from avemotion.demo.encode import write_video
from avemotion.fusion import dataset as D
from avemotion.fusion import features as F
from avemotion.fusion import records as R
from avemotion.fusion.dataset import evaluation_windows
from avemotion.fusion.schema import FACE_COLUMNS, FACE_FEATURES, feature_spec, record_windows
from avemotion.fusion.shards import iterate_examples
from avemotion.fusion.views import evaluation_views
from avemotion.job_params import preprocess_settings
from avemotion.media.frame_picks import sample_indices, window_indices, window_spans
from avemotion.media.frames import sample_clip_frames
from avemotion.model.bundle import MODEL_FILE
from avemotion.model.outputs import raw_outputs, view_outputs
from avemotion.train.experiment import run_experiment_fold
from conftest import demo_settings, run_snakemake, write_demo_config

WINDOW_COLOURS = [(30, 60, 200), (220, 120, 40), (90, 200, 90)]


def window_mel(window: int) -> np.ndarray:
    """A Mel per window that stays distinct after scale_mel (which removes a constant offset)."""
    return mel_ramp()[:, ::-1].copy() if window % 2 else mel_ramp() * (1 + 0.1 * window)


def windowed(clip_id: str, label: str, windows: int, *, frames=None, face=None, **extra) -> dict:
    """make_clip's clip with ``windows`` temporal windows: window w's frames WINDOW_COLOURS[w] (or
    ``frames(w)``), its own Mel and face features (``face(w)``, default w + step / 10)."""
    frames = frames or (lambda w: constant_frames([WINDOW_COLOURS[w]] * T))
    face = face or (lambda w: np.full((T, FACE_FEATURES), w, np.float32) + np.arange(T, dtype=np.float32)[:, None] / 10)
    clip = make_clip(clip_id, label, frames=frames(0), mel=window_mel(0), face=face(0), **extra)
    clip["frames"] = np.concatenate([frames(w) for w in range(windows)])
    clip["mel"] = np.stack([window_mel(w) for w in range(windows)])
    clip["face_sequence"] = np.concatenate([face(w) for w in range(windows)])
    return clip


def serialize_windows(clip: dict, windows: int) -> bytes:
    example = tf.train.Example.FromString(serialize(clip))
    example.features.feature["mfcc"].float_list.value.extend(list(example.features.feature["mfcc"].float_list.value) * (windows - 1))
    example.features.feature["windows"].int64_list.value.append(windows)
    return example.SerializeToString()


def write_windows(path, clips, windows: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for clip in clips:
            writer.write(serialize_windows(clip, windows))
    return str(path)


def test_a_clip_without_the_windows_feature_is_one_window_and_one_of_no_windows_is_refused(tmp_path):
    """Shards fused before temporal windows existed read as V = 1, as records and as parsed examples;
    a record that says it holds 0 windows (and so 0 frames) is no clip a model can read."""
    old = write_shard(tmp_path / "old.tfrecord", [make_clip("o0", "anger")])
    assert next(iterate_examples(old, T))["windows"] == 1
    assert int(R.parse_record(tf.constant(serialize(make_clip("o1", "anger"))), T)["windows"]) == 1
    assert tf.io.parse_single_example(serialize(make_clip("o2", "anger")), feature_spec(T))["frames"].shape == (T,)  # one window unless told
    example = tf.train.Example.FromString(serialize(make_clip("z0", "anger")))
    del example.features.feature["frames"].bytes_list.value[:]
    example.features.feature["windows"].int64_list.value.append(0)
    with pytest.raises(ValueError, match=r"zero.tfrecord: a clip holds 0 frames in 0 temporal window\(s\)"):
        record_windows(example.SerializeToString(), T, "zero.tfrecord")


def which_window(frames: np.ndarray) -> list[int]:
    """The window each frame (float in [0, 1], unaugmented) comes from, by its colour."""
    colours = np.array(WINDOW_COLOURS) / 255
    return [int(np.argmin(np.abs(colours - frame.mean(axis=(0, 1))).sum(axis=1))) for frame in frames]


def test_the_shards_say_how_many_windows_they_hold_and_refuse_a_mismatch(tmp_path):
    clips = [windowed(f"c{i}", LABELS[i], 2) for i in range(3)]
    path = write_windows(tmp_path / "two.tfrecord", clips, 2)
    assert R.shard_windows([path], T) == 2
    assert R.shard_windows(path, T) == R.shard_windows({"crema_d": [path]}, T) == 2  # one path, or {dataset: paths}
    example = next(iterate_examples(path, T))
    assert example["frames"].shape == (2, T, S, S, 3) and example["mel"].shape[0] == 2 and example["face_sequence"].shape == (2, T, FACE_FEATURES)
    one = write_windows(tmp_path / "one.tfrecord", [make_clip("d0", "anger")], 1)
    assert R.shard_windows([one], T) == 1  # a shard of one window reads as before
    # The first record is read from the file's framing, as tf.data reads it; an empty shard says nothing.
    assert R.first_record(path) == next(iter(tf.data.TFRecordDataset(path))).numpy()
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    assert R.first_record(tmp_path / "empty.tfrecord") is None and R.shard_windows([str(tmp_path / "empty.tfrecord"), path], T) == 2
    assert R.shard_windows([str(tmp_path / "empty.tfrecord")], T) == 1  # shards without a clip: 1
    (tmp_path / "cut.tfrecord").write_bytes((tmp_path / "two.tfrecord").read_bytes()[:100])
    with pytest.raises(ValueError, match="cut.tfrecord: the TFRecord file ends inside its first record"):
        R.first_record(tmp_path / "cut.tfrecord")
    (tmp_path / "header.tfrecord").write_bytes((tmp_path / "two.tfrecord").read_bytes()[:5])  # cut inside the length
    with pytest.raises(ValueError, match="header.tfrecord: the TFRecord file ends inside its first record's header"):
        R.shard_windows([str(tmp_path / "header.tfrecord"), path], T)
    with pytest.raises(ValueError, match=r"different numbers of temporal windows per clip \(.*one.tfrecord 1, .*two.tfrecord 2\)"):
        R.shard_windows([one, path], T)
    with pytest.raises(ValueError, match=rf"holds {2 * T} frames in 2 temporal window\(s\), not {T // 2} per window"):
        R.shard_windows([path], T // 2)


def test_evaluation_takes_the_window_asked_for_the_middle_one_by_default(tmp_path):
    clips = [windowed(f"c{i}", LABELS[i], 3, valence=0.1 * i) for i in range(4)]
    path = write_windows(tmp_path / "0.tfrecord", clips, 3)
    for window in (None, 0, 1, 2):
        inputs, _ = next(iter(D.make_dataset([path], **options(window=window))))
        expected = 1 if window is None else window  # the middle of 3
        assert set(which_window(inputs["frames"].numpy().reshape(-1, S, S, 3))) == {expected}
        np.testing.assert_allclose(inputs["mel"].numpy()[0, ..., 0], D.scale_mel(window_mel(expected)).numpy(), atol=1e-6)
        face = inputs["face_sequence"].numpy()[:, :, 0]
        np.testing.assert_allclose(face, np.broadcast_to(expected + np.arange(T) / 10, face.shape), atol=1e-6)
    for window in (3, -1):
        with pytest.raises(ValueError, match=f"window {window} is outside the shards' 3 temporal window"):
            D.make_dataset([path], **options(window=window))
    with pytest.raises(ValueError, match="is for evaluation"):
        D.make_dataset([path], **options(window=0, training=D.Training()))


def test_training_draws_one_window_per_clip_and_epoch_reproducibly(tmp_path):
    clips = [windowed(f"c{i}", LABELS[i % 2], 2, valence=0.1 * i) for i in range(6)]
    path = write_windows(tmp_path / "0.tfrecord", clips, 2)

    def drawn(seed):
        stream = D.Training(seed=seed, augment=False)
        seen = []
        for inputs, targets in D.make_dataset([path], **options(training=stream, batch_size=3)).take(12):
            for frames, mel, face, valence in zip(inputs["frames"].numpy(), inputs["mel"].numpy(), inputs["face_sequence"].numpy(), targets["valence"].numpy()):
                window = which_window(frames)
                # One window per clip: all its frames, its Mel and its face sequence are that window's.
                assert len(set(window)) == 1
                np.testing.assert_allclose(mel[..., 0], D.scale_mel(window_mel(window[0])).numpy(), atol=1e-6)
                np.testing.assert_allclose(face[:, 0], window[0] + np.arange(T) / 10, atol=1e-6)
                seen.append((round(float(valence), 2), window[0]))
        return seen

    seen = drawn(3)
    assert drawn(3) == seen and drawn(4) != seen
    by_clip = {}
    for clip, window in seen:
        by_clip.setdefault(clip, set()).add(window)
    assert len(by_clip) == 6 and sum(len(windows) == 2 for windows in by_clip.values()) >= 4  # jittered across epochs


def linear_model():
    """Outputs that are linear in the inputs (so averaging the outputs averages the inputs' means)."""
    inputs = {
        "frames": keras.Input((T, S, S, 3), name="frames"),
        "mel": keras.Input((128, 256, 1), name="mel"),
        "face_sequence": keras.Input((T, FACE_FEATURES), name="face_sequence"),
        "face_present": keras.Input((FACE_FEATURES,), name="face_present"),
    }
    left = keras.ops.mean(inputs["frames"][:, :, :, : S // 2], axis=(1, 2, 3, 4))
    logits = keras.ops.stack([left * 4] + [keras.ops.zeros_like(left)] * 5, axis=1)
    face = keras.ops.mean(inputs["face_sequence"][..., 0], axis=1)
    return keras.Model(inputs, {"emotion": logits, "valence": face, "arousal": keras.ops.mean(inputs["mel"], axis=(1, 2, 3))})


def test_evaluation_averages_the_windows_times_the_spatial_views(tmp_path):
    clips = [windowed(f"c{i}", LABELS[i], 2) for i in range(5)]
    path = write_windows(tmp_path / "0.tfrecord", clips, 2)
    model = linear_model()
    settings = {"num_frames": T, "image_size": S, "labels": LABELS, "training": {"batch_size": 2, "test_views": 2}}
    ids, averaged = raw_outputs(model, settings, [path], None)
    parts = [view_outputs(model, settings, [path], None, False, view, window)[1] for window in (0, 1) for view in evaluation_views(2)]
    assert ids == [f"c{i}" for i in range(5)]
    for name in ("emotion", "valence", "arousal"):
        np.testing.assert_allclose(averaged[name], np.mean([part[name] for part in parts], axis=0), rtol=1e-6)
    # The windows differ (their face features are 0.15 and 1.15 on average) and both count alike.
    np.testing.assert_allclose(averaged["valence"], 0.65, atol=1e-5)
    assert np.abs(parts[0]["emotion"] - parts[2]["emotion"]).max() > 0.05


def test_evaluation_windows_are_evenly_spread_the_first_and_last_among_them():
    assert evaluation_windows(8, 2) == [0, 7]  # HiCMAE's two test windows of a store of 8
    assert evaluation_windows(8, None) == list(range(8)) and evaluation_windows(3, 8) == [0, 1, 2]
    assert evaluation_windows(8, 4) == [0, 2, 5, 7] and evaluation_windows(4, 1) == [1]  # 1: the middle one
    with pytest.raises(ValueError, match="at least 1"):
        evaluation_windows(4, 0)


@pytest.mark.parametrize("test_windows, valence", [(None, 1.65), (1, 1.15), (3, (0 + 2 + 3) / 3 + 0.15)])
def test_evaluation_averages_the_test_windows_it_is_told(tmp_path, test_windows, valence):
    """Four stored windows (face features w + 0.15 on average in window w): all of them, the middle
    one, or three of them evenly spread (0, 2, 3)."""
    frames = lambda w: constant_frames([WINDOW_COLOURS[w % len(WINDOW_COLOURS)]] * T)
    path = write_windows(tmp_path / "0.tfrecord", [windowed(f"c{i}", LABELS[i], 4, frames=frames) for i in range(3)], 4)
    settings = {"num_frames": T, "image_size": S, "labels": LABELS, "training": {"batch_size": 2, "test_windows": test_windows}}
    _, averaged = raw_outputs(linear_model(), settings, [path], None)
    np.testing.assert_allclose(averaged["valence"], valence, atol=1e-5)


def windowed_shards(root, windows=2, speakers=6):
    """test_train_experiment's learnable clips (the class in the colour and the face features), in
    ``windows`` windows that differ a little (a brighter frame, a shifted face feature)."""
    rng = np.random.default_rng(0)
    clips = []
    for speaker in range(speakers):
        for label in TRAIN_LABELS:
            index = TRAIN_LABELS.index(label)

            def frames(w, index=index, label=label):
                noisy = constant_frames([COLOUR[label]] * T).astype(int) + rng.integers(-20, 20, (T, S, S, 3)) + 15 * w
                return np.clip(noisy, 0, 255).astype(np.uint8)

            clips.append(
                windowed(
                    f"crema_d_{speaker}_{label}", label, windows, frames=frames, face=lambda w, index=index: np.full((T, FACE_FEATURES), index + 0.3 * w, np.float32),
                    speaker=str(1000 + speaker), fold=1 + speaker % 3, label_index=index, valence=VA[label][0], arousal=VA[label][1],
                )
            )  # fmt: skip
    tfrecord = write_windows(root / "crema_d" / "shards" / "tfrecord" / "0.tfrecord", clips, windows)
    return [write_tabular(root, clips)[0]], [tfrecord]


def test_prediction_equals_evaluation_with_two_windows_and_two_spatial_views(tmp_path):
    tabular, tfrecord = windowed_shards(tmp_path / "results")
    settings = copy.deepcopy(settings_for("hybrid", epochs=1))
    settings["training"]["test_views"] = 2
    out = tmp_path / "fold_1"
    metrics = run_experiment_fold(settings, tabular, tfrecord, 1, out)
    assert np.isfinite(metrics["uar"])
    predictions = pd.read_parquet(out / "predictions.parquet")
    model = keras.saving.load_model(out / MODEL_FILE)
    ids, outputs = raw_outputs(model, settings, tfrecord, predictions["clip_id"].tolist())
    probabilities = pd.DataFrame(outputs["emotion"], index=ids, columns=[f"prob_{name}" for name in TRAIN_LABELS])
    expected = predictions.set_index("clip_id")[probabilities.columns]
    np.testing.assert_allclose(probabilities.loc[expected.index].to_numpy(), expected.to_numpy(), atol=1e-5)
    # And the evaluation did average the windows: one window alone predicts otherwise.
    single = view_outputs(model, settings, tfrecord, predictions["clip_id"].tolist(), False, evaluation_views(1)[0], 0)[1]["emotion"]
    assert np.abs(single - outputs["emotion"]).max() > 1e-4


# ---- writing the windows: the frames stage's indices and the fuse stage's shards ----------------


def test_window_indices_spread_the_windows_over_the_clip():
    for sampling in ("segments", "dense"):
        for total in (3, 40, 100):
            np.testing.assert_array_equal(window_indices(total, 8, sampling, 4, 1), sample_indices(total, 8, sampling, 4)[None])
    # Segments: window v takes the frame at (v + 1/2) / V of each segment (25 frames long here).
    assert window_indices(100, 4, "segments", windows=2).tolist() == [[6, 31, 56, 81], [18, 43, 68, 93]]
    # Dense: 8 frames 4 apart (a 32-frame window), the first window at the start, the last at the end.
    dense = window_indices(100, 8, "dense", 4, 2)
    assert dense.tolist() == [list(range(2, 32, 4)), list(range(70, 100, 4))]
    assert window_spans(dense, 100) == [(0, 33), (68, 100)]
    assert window_indices(100, 8, "dense", 4, 3)[1].tolist() == list(range(36, 66, 4))  # the middle one: dense_window's
    # A clip no longer than one window: the same window each time.
    short = window_indices(20, 8, "dense", 4, 2)
    np.testing.assert_array_equal(short[0], short[1])
    with pytest.raises(ValueError, match="at least 1"):
        window_indices(100, 8, "dense", 4, 0)


def test_window_spans_stay_within_the_clip_and_cover_each_windows_frames():
    """A short clip's dense window whose first frame is 0 spans from 0 (not -1, which would slice the
    face table and the Mel from their end); one-frame windows (frames.num_frames 1) span their frame."""
    short = window_indices(3, 2, "dense", 2, 1)
    assert short.tolist() == [[0, 2]] and window_spans(short, 3) == [(0, 3)]
    assert window_spans(sample_indices(100, 8, "dense", 4), 100) == [(34, 67)]  # one window's picks, (T,)
    single = window_indices(20, 1, "dense", 4, 2)
    assert single.tolist() == [[2], [18]] and window_spans(single, 20) == [(2, 3), (18, 19)]
    for total in (3, 8, 20, 41):
        for windows in (1, 2, 3):
            picks = window_indices(total, 8, "dense", 4, windows)
            for window, (start, end) in zip(picks, window_spans(picks, total)):
                assert 0 <= start <= window.min() and window.max() < end <= total


def test_window_indices_default_to_one_window_of_segment_middles():
    """frames.sampling's and frames.windows' defaults: the middle frame of each segment, once."""
    assert window_indices(100, 4).tolist() == [[12, 37, 62, 87]] == [sample_indices(100, 4).tolist()]


def test_an_unknown_sampling_is_refused_with_one_window_or_several():
    for windows in (1, 3):
        with pytest.raises(ValueError, match="frames.sampling must be 'segments' or 'dense', got 'uniform'"):
            window_indices(100, 8, "uniform", 4, windows)


def test_the_frames_stage_reads_every_windows_frames_once_and_records_their_spans(tmp_path):
    frames = np.stack([np.full((64, 96, 3), 2 * i, np.uint8) for i in range(100)])
    video = tmp_path / "clip.mp4"
    write_video(video, frames, 25, "mp4", None, 16000)
    out, info = sample_clip_frames(video, 8, 32, "full", sampling="dense", rate=4, windows=2)
    assert info["source_frames"] == list(range(2, 32, 4)) + list(range(70, 100, 4)) and info["windows"] == 2
    assert (info["window_starts"], info["window_ends"]) == ([0, 68], [33, 100]) and "window_start" not in info
    assert out.shape == (16, 32, 32, 3) and np.abs(out[:, 16, 16, 0] / 2 - info["source_frames"]).max() <= 1
    out, info = sample_clip_frames(video, 4, 32, "full", windows=2)  # segments
    assert info["source_frames"] == [6, 31, 56, 81, 18, 43, 68, 93] and "window_starts" not in info
    assert np.abs(out[:, 16, 16, 0] / 2 - info["source_frames"]).max() <= 1  # H.264 keeps the level within a step or two


def test_the_fuse_stage_stores_each_windows_frames_face_sequence_and_mel(chunk, tmp_path):  # noqa: F811
    """Clip a (20 video frames) in two dense windows (frames 0-7 and 12-19), clip b (12 frames) in two
    segment windows: each window's face sequence and Mel follow its span (b's: the whole clip), the
    frames are every window's, and the input pipeline reads the shard as two windows."""
    from test_fusion_shards import T as FT
    from test_fusion_shards import face_table, fuse, linear_mel, smooth_frames

    outdir = chunk["outdir"]
    for clip_id in ("a", "b", "c"):
        np.save(outdir / "frames" / f"{clip_id}.npy", np.concatenate([smooth_frames(ord(clip_id)), smooth_frames(ord(clip_id) + 20)]))
    table = pd.read_parquet(chunk["tables"]["frames"])
    table["windows"] = 2
    table["window_starts"] = [[0, 12] if clip == "a" else None for clip in table["clip_id"]]
    table["window_ends"] = [[8, 20] if clip == "a" else None for clip in table["clip_id"]]
    table.to_parquet(chunk["tables"]["frames"], index=False)
    tabular, tfrecord = fuse(chunk, tmp_path)
    examples = {e["clip_id"]: e for e in iterate_examples(tfrecord, FT)}
    assert set(examples) == {"a", "b"} and examples["a"]["windows"] == 2
    face = face_table(20, failed=range(10, 16))
    for window, span in enumerate([(0, 8), (12, 20)]):
        expected = np.nan_to_num(F.face_sequence(face, 20, FT, span))
        np.testing.assert_allclose(examples["a"]["face_sequence"][window], expected, rtol=1e-6)
        mel = F.resize_2d(F.time_window(linear_mel(128, 300), 20, span), (128, 256))
        np.testing.assert_allclose(examples["a"]["mel"][window], mel, atol=1e-4)
        np.testing.assert_allclose(examples["a"]["frames"][window], smooth_frames(ord("a") + 20 * window), atol=8)
    b = examples["b"]
    np.testing.assert_array_equal(b["mel"][0], b["mel"][1])  # segments: each window's Mel is the whole clip's
    au12 = examples["a"]["face_sequence"][:, :, FACE_COLUMNS.index("AU12_r")]
    assert au12[0].mean() < au12[1].mean()  # the windows' faces differ
    # The tabular shard keeps the middle window's face sequence (the first of two).
    shard = pd.read_parquet(tabular).set_index("clip_id")
    np.testing.assert_allclose(np.stack(shard.loc["a", "face_sequence"]), F.face_sequence(face, 20, FT, (0, 8)), rtol=1e-6, equal_nan=True)
    assert R.shard_windows([str(tfrecord)], FT) == 2
    inputs, _ = next(iter(D.make_dataset([str(tfrecord)], num_frames=FT, image_size=32, label_names=["anger", "happiness"], batch_size=2, window=1)))
    assert inputs["frames"].shape == (2, FT, 32, 32, 3)


def test_frames_windows_is_checked_and_reruns_nothing_at_one():
    from snakemake.utils import validate

    config = demo_settings()
    validate(config, schema=str(SCHEMA_PATH))
    before = preprocess_settings(config, "crema_d")["frames"]
    assert config["frames"]["windows"] == 1 and "windows" not in before  # the frames and fuse jobs' params as before
    config["datasets"]["crema_d"]["frames"] = {"windows": 2}
    assert preprocess_settings(config, "crema_d")["frames"] == {**before, "windows": 2}
    config["frames"]["windows"] = 0
    assert any("frames.windows: 0 is less than the minimum of 1" in error for error in config_errors(config))


@pytest.mark.slow
def test_the_workflow_and_predict_with_two_windows_and_two_views_agree(tmp_path):
    """The demo workflow with frames.windows 2 (dense, 1 frame apart: the clip's first and last
    frames) and training.test_views 2: `avemotion predict` on the evaluated clips gives the
    evaluation's predictions (the frames stage, the fuse stage and predict's own preprocessing of
    the same videos all hold two windows)."""
    import json

    overrides = {
        "frames": {"windows": 2, "sampling": "dense", "sampling_rate": 1},
        "training": {"epochs": 1, "threads": 1, "test_views": 2},
        "experiments": [{"name": "pair_late", "datasets": ["crema_d", "enterface"], "fusion": "late", "folds": [2], "final": False}],
    }
    config = write_demo_config(tmp_path / "windows.yaml", overrides)
    run_snakemake(tmp_path, "--cores", "2", "--configfile", config)
    model = tmp_path / "results" / "experiments" / "pair_late" / "fold_2"
    shard = sorted((tmp_path / "results" / "enterface" / "shards" / "tfrecord").glob("*.tfrecord"))[0]
    assert R.shard_windows([str(shard)], json.loads((model / "settings.json").read_text())["num_frames"]) == 2
    evaluated = pd.read_parquet(model / "predictions.parquet")
    evaluated = evaluated[evaluated["dataset"] == "enterface"].set_index("clip_id")
    manifest = pd.read_parquet(tmp_path / "results" / "enterface" / "manifest.parquet").set_index("clip_id")
    clips = [str(tmp_path / "resources" / "demo" / "enterface" / manifest.loc[clip, "path"]) for clip in evaluated.index]
    out = tmp_path / "predictions.json"
    assert main(["predict", "--model", str(model), *clips, "--out", str(out), "--quiet"]) == 0
    predicted = pd.DataFrame(json.loads(out.read_text()))
    labels = json.loads((model / "settings.json").read_text())["labels"]
    probabilities = [f"prob_{label}" for label in labels]
    np.testing.assert_allclose(predicted[probabilities].to_numpy(), evaluated[probabilities].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(predicted["valence"], evaluated["valence_pred"], atol=1e-5)
