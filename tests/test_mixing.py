"""Mixup / CutMix of training batches (avemotion.fusion.mixing): inputs and targets mixed with one
weight and one partner, CutMix's box and time span, soft targets in the loss, and a short training run."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from test_fusion_dataset import LABELS, S, T, constant_frames, make_clip, options, write_shard  # noqa: E402
from test_train_experiment import learnable_shards, settings_for  # noqa: E402

from avemotion.config import SCHEMA_PATH, ConfigError, prepare_config  # noqa: E402
from avemotion.fusion import dataset as D  # noqa: E402
from avemotion.fusion import mixing as M  # noqa: E402
from avemotion.fusion.schema import AUDIO_STEPS, FACE_FEATURES, MEL_BANDS  # noqa: E402
from avemotion.train.experiment import datasets_for, mixing_of, run_experiment_fold  # noqa: E402
from avemotion.train.losses import LabelSmoothedCrossEntropy  # noqa: E402
from avemotion.train.settings import model_settings  # noqa: E402
from conftest import demo_settings  # noqa: E402

SEED, BATCH, SMOOTHING = 7, 4, 0.1


def distinct_shard(tmp_path, count=8) -> str:
    """Clips that differ in every input and target: a clip's own colour, Mel level, face features,
    valence and arousal, so each mixed value tells whose it is."""
    clips = []
    band, step = np.arange(MEL_BANDS)[:, None], np.arange(AUDIO_STEPS)[None, :]
    for i in range(count):
        colour = (20 + 25 * i, 200 - 20 * i, 60 + 15 * i)
        face = np.full((T, FACE_FEATURES), i / 10, np.float32) + np.arange(T, dtype=np.float32)[:, None] / 100
        # Within 80 dB (scale_mel clips nothing) and unlike every other clip's at every step.
        mel = -60 + 0.2 * band + 0.05 * step + 5 * np.sin(0.1 * (i + 1) * step + 0.3 * band)
        clips.append(
            make_clip(
                f"c{i}", LABELS[i % len(LABELS)], frames=constant_frames([colour] * T), mel=mel.astype(np.float32),
                face=face, valence=-0.8 + 0.2 * i, arousal=0.7 - 0.15 * i,
            )
        )  # fmt: skip
    return write_shard(tmp_path / "t.tfrecord", clips)


def batches(path, mixing=None, seed=SEED, count=6, **training):
    stream = D.Training(seed=seed, mixing=mixing, **training)
    return [(
        {k: v.numpy() for k, v in inputs.items()}, {k: v.numpy() for k, v in targets.items()}
    ) for inputs, targets in D.make_dataset([path], **options(training=stream, batch_size=BATCH)).take(count)]  # fmt: skip


def smooth(labels) -> np.ndarray:
    return np.eye(len(LABELS))[labels] * (1 - SMOOTHING) + SMOOTHING / len(LABELS)


def drawn(index, mixing):
    return {k: v.numpy() for k, v in M.draw(M.batch_seed(SEED, index), mixing, BATCH, S).items()}


def test_mixup_mixes_every_input_and_target_with_one_weight_and_partner(tmp_path):
    path = distinct_shard(tmp_path)
    mixing = M.Mixing(mixup=0.8, label_smoothing=SMOOTHING)
    plain, mixed = batches(path), batches(path, mixing)
    weights = []
    for index, ((inputs, targets), (got_inputs, got_targets)) in enumerate(zip(plain, mixed)):
        draw = drawn(index, mixing)
        lam, partner = draw["lam"], draw["permutation"]
        assert not draw["cutmix"] and sorted(partner) == list(range(BATCH))
        assert not np.any(partner == np.arange(BATCH))  # timm's reversed batch: every clip mixed with another
        for name, value in inputs.items():
            np.testing.assert_allclose(got_inputs[name], lam * value + (1 - lam) * value[partner], atol=1e-6, err_msg=name)
        for name in ("valence", "arousal"):
            np.testing.assert_allclose(got_targets[name], lam * targets[name] + (1 - lam) * targets[name][partner], atol=1e-6)
        soft = smooth(targets["emotion"])
        np.testing.assert_allclose(got_targets["emotion"], lam * soft + (1 - lam) * soft[partner], atol=1e-6)
        np.testing.assert_allclose(got_targets["emotion"].sum(axis=1), 1, atol=1e-6)
        # The same weight, read back from the data: each valence says how much of the partner it holds.
        moved = targets["valence"][partner] != targets["valence"]  # another clip (the stream repeats: maybe the same)
        own, theirs = targets["valence"][moved], targets["valence"][partner][moved]
        np.testing.assert_allclose((got_targets["valence"][moved] - theirs) / (own - theirs), lam, atol=1e-4)
        weights.append(lam)
    assert len(set(np.round(weights, 4))) == len(weights) and min(weights) < 0.9  # drawn per batch, and they mix


def test_cutmix_cuts_one_box_in_all_frames_and_the_matching_time_span(tmp_path):
    path = distinct_shard(tmp_path)
    mixing = M.Mixing(cutmix=1.0, label_smoothing=SMOOTHING)
    # Unaugmented: every pixel of a clip then differs from every other clip's, so each tells whose it is.
    plain, mixed = batches(path, count=8, augment=False), batches(path, mixing, count=8, augment=False)
    cut = 0
    for index, ((inputs, targets), (got_inputs, got_targets)) in enumerate(zip(plain, mixed)):
        draw = drawn(index, mixing)
        lam, partner = draw["lam"], draw["permutation"]
        assert draw["cutmix"]
        for clip in np.flatnonzero(targets["valence"][partner] != targets["valence"]):  # another clip
            other = partner[clip]
            frames = got_inputs["frames"][clip]
            # Every pixel is its own clip's or its partner's; the partner's form one box, the same in all T frames.
            from_partner = np.all(np.isclose(frames, inputs["frames"][other]), axis=-1)
            own = np.all(np.isclose(frames, inputs["frames"][clip]), axis=-1)
            assert np.all(from_partner | own) and not np.any(from_partner & own)
            assert all(np.array_equal(from_partner[t], from_partner[0]) for t in range(T))
            rows, columns = np.flatnonzero(from_partner[0].any(axis=1)), np.flatnonzero(from_partner[0].any(axis=0))
            if len(rows):
                box = from_partner[0][rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
                assert box.all() and box.size == from_partner[0].sum()
            # lambda is 1 - the box's share of the frame (timm's correct_lam).
            assert lam == pytest.approx(1 - from_partner[0].mean(), abs=1e-6)
            # The Mel: one span of whole time steps from the partner, as wide as the box's share.
            mel = got_inputs["mel"][clip, ..., 0]
            steps = np.all(np.isclose(mel, inputs["mel"][other, ..., 0]), axis=0)
            assert np.all(np.isclose(mel[:, ~steps], inputs["mel"][clip, :, ~steps, 0].T))
            span = np.flatnonzero(steps)
            assert len(span) == round((1 - lam) * AUDIO_STEPS)
            if len(span):
                assert span[-1] - span[0] + 1 == len(span)
            # The face sequence: the frames whose centres fall in the Mel's span are the partner's.
            centres = (np.arange(T) + 0.5) / T * AUDIO_STEPS
            in_span = (centres >= (span[0] if len(span) else 0)) & (centres < (span[-1] + 1 if len(span) else 0))
            expected = np.where(in_span[:, None], inputs["face_sequence"][other], inputs["face_sequence"][clip])
            np.testing.assert_allclose(got_inputs["face_sequence"][clip], expected)
            cut += 0 < len(span) < AUDIO_STEPS
        np.testing.assert_allclose(got_inputs["face_present"], lam * inputs["face_present"] + (1 - lam) * inputs["face_present"][partner], atol=1e-6)
        for name in ("valence", "arousal"):
            np.testing.assert_allclose(got_targets[name], lam * targets[name] + (1 - lam) * targets[name][partner], atol=1e-6)
        soft = smooth(targets["emotion"])
        np.testing.assert_allclose(got_targets["emotion"], lam * soft + (1 - lam) * soft[partner], atol=1e-6)
    assert cut >= 4


def test_cutmix_box_follows_timm():
    """Side int(S * sqrt(1 - lam)), clipped at the border; under Mixup no box and the drawn weight."""
    both = M.Mixing(mixup=0.8, cutmix=1.0)
    kinds = []
    for index in range(40):
        draw = drawn(index, both)
        top, bottom, left, right = draw["box"]
        kinds.append(bool(draw["cutmix"]))
        if draw["cutmix"]:
            assert 0 <= top <= bottom <= S and 0 <= left <= right <= S
            assert draw["lam"] == pytest.approx(1 - (bottom - top) * (right - left) / S**2)
        else:
            assert (bottom - top) * (right - left) == 0 and draw["span"][0] == draw["span"][1]
    assert 10 < sum(kinds) < 30  # switch_prob 0.5
    never = M.Mixing(mixup=0.8, prob=0.0)
    assert all(drawn(index, never)["lam"] == 1 for index in range(5))


def test_mixing_is_reproducible_from_the_seed(tmp_path):
    path = distinct_shard(tmp_path)
    mixing = M.Mixing(mixup=0.8, cutmix=1.0)
    first, again, other = batches(path, mixing, count=3), batches(path, mixing, count=3), batches(path, mixing, seed=SEED + 1, count=3)
    for (inputs, targets), (inputs2, targets2) in zip(first, again):
        for name in inputs:
            np.testing.assert_array_equal(inputs[name], inputs2[name])
        np.testing.assert_array_equal(targets["emotion"], targets2["emotion"])
    assert not all(np.array_equal(a[1]["emotion"], b[1]["emotion"]) for a, b in zip(first, other))


def test_only_the_training_stream_is_mixed(tmp_path):
    path = distinct_shard(tmp_path)
    settings = settings_for("late")
    settings["training"].update(mixup=0.8, cutmix=1.0)
    ids = [f"c{i}" for i in range(8)]
    train, validation = datasets_for(settings, [path], {"train": ids, "validation": ids})
    assert train.element_spec[1]["emotion"].shape.as_list() == [6, len(settings["labels"])]
    assert validation.element_spec[1]["emotion"].dtype == tf.int32
    unmixed = D.make_dataset([path], num_frames=4, image_size=32, label_names=settings["labels"], batch_size=6, clip_ids=ids)
    for (inputs, targets), (inputs2, targets2) in zip(validation, unmixed):
        np.testing.assert_array_equal(targets["emotion"].numpy(), targets2["emotion"].numpy())
        np.testing.assert_array_equal(inputs["mel"].numpy(), inputs2["mel"].numpy())
    # Off (the default): the training stream keeps its integer labels.
    settings["training"].update(mixup=0, cutmix=0)
    assert datasets_for(settings, [path], {"train": ids, "validation": ids})[0].element_spec[1]["emotion"].dtype == tf.int32


def test_the_loss_takes_soft_targets_as_they_are():
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], np.float32)
    soft = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], np.float32)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = LabelSmoothedCrossEntropy(3, smoothing=SMOOTHING)
    assert float(loss(soft, logits)) == pytest.approx(np.mean(-(soft * log_p).sum(axis=1)), rel=1e-5)
    # Smoothed once: an unmixed batch's soft target gives the integer labels' smoothed loss.
    labels = np.array([0, 2])
    smoothed = np.eye(3)[labels] * (1 - SMOOTHING) + SMOOTHING / 3
    assert float(loss(smoothed, logits)) == pytest.approx(float(loss(labels, logits)), rel=1e-6)
    assert float(loss(labels[:, None], logits)) == pytest.approx(float(loss(labels, logits)), rel=1e-6)
    # Argmax of a mixed target is what accuracy metrics read.
    accuracy = tf.keras.metrics.CategoricalAccuracy()
    accuracy.update_state(soft, logits)
    assert float(accuracy.result()) == pytest.approx(1.0)


def test_config_keys_are_checked_and_rerun_nothing_while_off():
    config = demo_settings()
    config["training"]["mixup"] = -1
    with pytest.raises(ConfigError, match=r"training\.mixup: -1 is less than the minimum of 0"):
        prepare_config(config)
    config["training"].update(mixup=0.8, mixup_switch_prob=1.5)
    with pytest.raises(ConfigError, match=r"training\.mixup_switch_prob: 1.5 is greater than the maximum of 1"):
        prepare_config(config)
    from snakemake.utils import validate

    config = demo_settings()
    validate(config, schema=str(SCHEMA_PATH))
    name = config["experiments"][0]["name"]
    assert config["training"]["mixup"] == 0
    assert not {"mixup", "cutmix", "mixup_prob", "mixup_switch_prob"} & set(model_settings(config, name)["training"])
    config["training"].update(mixup=0.8, cutmix=1.0)
    assert {"mixup": 0.8, "cutmix": 1.0}.items() <= model_settings(config, name)["training"].items()


def test_a_short_training_run_with_mixup_and_cutmix_completes(tmp_path):
    tabular, tfrecord, _ = learnable_shards(tmp_path / "results")
    settings = settings_for("hybrid", epochs=1)
    settings["training"].update(mixup=0.8, cutmix=1.0, mixup_switch_prob=0.5, mixup_prob=1.0)
    out = tmp_path / "fold_1"
    metrics = run_experiment_fold(settings, tabular, tfrecord, 1, out)
    assert (out / "model.keras").exists() and np.isfinite(metrics["uar"])


def test_inputs_that_cannot_be_mixed_are_refused_by_name():
    draw = M.draw(M.batch_seed(SEED, 0), M.Mixing(mixup=0.8), 2, S)
    with pytest.raises(ValueError, match=r"cannot mix the input 'clip_id' \(string\)"):
        M.mix_inputs({"clip_id": tf.constant([b"a", b"b"])}, draw, S)


def test_switch_prob_sets_how_often_cutmix_is_chosen_over_mixup():
    """training.mixup_switch_prob is CutMix's share of the mixed batches when both are on."""
    for switch_prob, low, high in ((0.9, 30, 40), (0.1, 0, 10)):
        mixing = M.Mixing(mixup=0.8, cutmix=1.0, switch_prob=switch_prob)
        cut = sum(bool(drawn(index, mixing)["cutmix"]) for index in range(40))
        assert low <= cut <= high, (switch_prob, cut)


def test_a_span_drawn_up_to_the_clips_end_is_cut_whole_there():
    """Rounded to whole steps, a span that ends at the clip's end can start a step late: it is moved
    back so that the partner's share stays as wide as the box's (here 3.5 of 5 face frames: 4), not
    cut off at the end (3)."""
    face = tf.constant(np.stack([np.zeros((5, 2)), np.ones((5, 2))]), tf.float32)  # clip 0 all 0, clip 1 all 1
    draw = {
        "lam": tf.constant(0.3), "cutmix": tf.constant(True), "permutation": tf.constant([1, 0]),
        "box": tf.constant([0, 0, 0, 0]), "span": tf.constant([0.3, 1.0]),
    }  # fmt: skip
    mixed = M.mix_inputs({"face_sequence": face}, draw, S)["face_sequence"].numpy()
    assert mixed[0, :, 0].tolist() == [0, 1, 1, 1, 1] and mixed[1, :, 0].tolist() == [1, 0, 0, 0, 0]


def test_cutmix_mixes_an_input_without_a_time_axis_by_the_clips_own_share():
    """face_present has no frames to cut: under CutMix it takes lambda (the share of the frame left
    the clip's own) of its own value and the rest of its partner's, as the targets do."""
    present = tf.constant([[1.0], [0.0]])  # clip 0 found a face, clip 1 did not
    draw = {
        "lam": tf.constant(0.8), "cutmix": tf.constant(True), "permutation": tf.constant([1, 0]),
        "box": tf.constant([0, 0, 0, 0]), "span": tf.constant([0.0, 0.2]),
    }  # fmt: skip
    mixed = M.mix_inputs({"face_present": present}, draw, S)["face_present"].numpy()
    np.testing.assert_allclose(mixed[:, 0], [0.8, 0.2], atol=1e-6)
    targets = {"emotion": tf.constant([0, 1]), "valence": tf.constant([1.0, 0.0]), "arousal": tf.constant([0.0, 1.0])}
    np.testing.assert_allclose(M.mix_targets(targets, draw, len(LABELS), SMOOTHING)["valence"].numpy(), mixed[:, 0], atol=1e-6)


# ---- the speech encoder's waveform (make_dataset's "audio": int16 PCM bytes) --------------------


def waveform(i: int, seconds: float) -> np.ndarray:
    """Clip i's int16 samples: its own level and a tone, so every sample tells whose it is."""
    t = np.arange(int(seconds * 16000)) / 16000
    return np.rint((0.05 + 0.08 * i) * 32767 * (0.6 + 0.4 * np.sin(2 * np.pi * (110 + 37 * i) * t))).astype("<i2")


def speech_shard(tmp_path, count=8) -> tuple[str, dict]:
    """distinct_shard's clips with audio of different lengths (0.5 to 1.2 s)."""
    import tensorflow as tf  # noqa: F811 (the module's, imported under importorskip)

    path = distinct_shard(tmp_path, count)
    audio, records = {}, []
    for record in tf.data.TFRecordDataset(path):
        example = tf.train.Example.FromString(record.numpy())
        clip = example.features.feature["clip_id"].bytes_list.value[0]
        i = int(clip.decode()[1:])
        audio[clip] = waveform(i, 0.5 + 0.1 * i)
        example.features.feature["audio"].bytes_list.value.append(audio[clip].tobytes())
        records.append(example.SerializeToString())
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path, audio


def speech_batches(path, mixing=None, count=6, **training):
    stream = D.Training(seed=SEED, mixing=mixing, **training)
    dataset = D.make_dataset([path], **options(training=stream, batch_size=BATCH, inputs=(*D.INPUTS, D.AUDIO)))
    return [(
        {k: v.numpy() for k, v in inputs.items()}, {k: v.numpy() for k, v in targets.items()}
    ) for inputs, targets in dataset.take(count)]  # fmt: skip


def half_up(x: float) -> int:
    """x to the nearest sample, halves up."""
    return int(np.floor(x + 0.5))


def samples(batch_audio) -> list[np.ndarray]:
    return [np.frombuffer(clip, "<i2").astype(np.float64) for clip in batch_audio]


def test_mixup_mixes_the_waveform_with_the_labels_and_mels_weight(tmp_path):
    path, _ = speech_shard(tmp_path)
    mixing = M.Mixing(mixup=0.8, label_smoothing=SMOOTHING)
    plain, mixed = speech_batches(path), speech_batches(path, mixing)
    for index, ((inputs, targets), (got_inputs, got_targets)) in enumerate(zip(plain, mixed)):
        draw = drawn(index, mixing)
        lam, partner = draw["lam"], draw["permutation"]
        np.testing.assert_allclose(got_inputs["mel"], lam * inputs["mel"] + (1 - lam) * inputs["mel"][partner], atol=1e-6)
        np.testing.assert_allclose(got_targets["valence"], lam * targets["valence"] + (1 - lam) * targets["valence"][partner], atol=1e-6)
        own, got = samples(inputs["audio"]), samples(got_inputs["audio"])
        for clip, other in enumerate(partner):
            length = own[clip].size  # the clip's own length: the partner cut there or zero-padded
            assert got[clip].size == length
            a, b = own[clip], np.pad(own[other][:length], (0, max(length - own[other].size, 0)))
            weight = float(lam)  # in float64, as the mixing computes (the float32 1 - lam rounds another way)
            expected = np.clip(np.rint(weight * a + (1 - weight) * b), -32768, 32767)
            np.testing.assert_array_equal(got[clip], expected)
            # The weight read back from the samples alone is the labels' (to int16 rounding).
            moved = np.abs(a - b) > 2000
            if moved.any():
                assert np.median((got[clip][moved] - b[moved]) / (a[moved] - b[moved])) == pytest.approx(lam, abs=1e-3)


def test_mixup_of_loud_waveforms_clips_instead_of_wrapping():
    loud, quiet = np.full(10, 32767, "<i2"), np.full(6, -32768, "<i2")
    mixed = M.mix_waveforms(loud, loud, 0.3, False, [0, 0])
    assert mixed.dtype == np.dtype("<i2") and mixed.tolist() == [32767] * 10
    mixed = M.mix_waveforms(quiet, loud, 0.5, False, [0, 0])
    assert mixed.tolist() == [0] * 6  # -32768 / 2 + 32767 / 2 rounds to 0, over the clip's own length
    assert M.mix_waveforms(loud, quiet, 0.5, False, [0, 0]).tolist() == [0] * 6 + [16384] * 4  # a shorter partner: silence
    # Unmixed (lambda 1) and clips without stored audio keep what they have.
    assert M.mix_waveforms(quiet, loud, 1.0, False, [0, 0]) is quiet
    assert M.mix_waveforms(np.zeros(0, "<i2"), loud, 0.5, False, [0, 0]).size == 0


def test_waveform_mixing_follows_lambda_in_what_the_speech_branch_hears():
    """Mixup of a 1.5 s clip with a 5 s partner at lambda 0.9 made a 5 s clip, 70 % of whose frames
    were the partner alone; CutMix of 20 s clips cut a span of all 20 s while the branch hears the
    first 10 (the target said 30 % partner, the features were the clip's own)."""
    rate = 16000
    own, partner = np.full(int(1.5 * rate), 1000, "<i2"), np.full(5 * rate, -1000, "<i2")
    mixed = M.mix_waveforms(own, partner, 0.9, False, [0, 0])
    assert mixed.size == own.size and np.all(mixed == 800)  # 0.9 x 1000 + 0.1 x -1000 throughout
    long_own, long_partner = np.full(20 * rate, 1000, "<i2"), np.full(20 * rate, -1000, "<i2")
    cut = M.mix_waveforms(long_own, long_partner, 0.7, True, [0.6, 0.9], window=10 * rate)
    heard = cut[: 10 * rate]
    assert (heard == -1000).mean() == pytest.approx(0.3, abs=1e-4) and np.all(cut[10 * rate :] == 1000)
    assert np.flatnonzero(heard == -1000)[[0, -1]].tolist() == [6 * rate, 9 * rate - 1]
    # The training stream's mixing knows the window of a Whisper branch (none for the CNN's Mel)

    training = {"label_smoothing": 0.1, "cutmix": 1.0}
    assert mixing_of(training, {"audio_encoder": "whisper", "audio_max_seconds": 10.0}).audio_window == 10 * rate
    assert mixing_of(training, {"audio_encoder": "cnn"}).audio_window == 0


def test_cutmix_replaces_the_mels_share_of_each_waveform_with_the_partners_same_moment(tmp_path):
    path, _ = speech_shard(tmp_path)
    mixing = M.Mixing(cutmix=1.0, label_smoothing=SMOOTHING)
    plain, mixed = speech_batches(path, count=8, augment=False), speech_batches(path, mixing, count=8, augment=False)
    cut = 0
    for index, ((inputs, targets), (got_inputs, _)) in enumerate(zip(plain, mixed)):
        draw = drawn(index, mixing)
        lam, partner = draw["lam"], draw["permutation"]
        own, got = samples(inputs["audio"]), samples(got_inputs["audio"])
        for clip, other in enumerate(partner):
            mel = got_inputs["mel"][clip, ..., 0]
            steps = np.flatnonzero(np.all(np.isclose(mel, inputs["mel"][other, ..., 0]), axis=0))
            a, b = own[clip], own[other]
            assert got[clip].size == a.size  # the clip keeps its own length
            if targets["valence"][other] == targets["valence"][clip] or not len(steps):  # the same clip (the stream repeats), or no cut
                np.testing.assert_array_equal(got[clip], a)
                continue
            # The Mel's span of whole steps, in the clip's own samples, is the partner's; the rest its own.
            start, end = half_up(steps[0] / AUDIO_STEPS * a.size), half_up((steps[-1] + 1) / AUDIO_STEPS * a.size)
            assert (end - start) / a.size == pytest.approx(len(steps) / AUDIO_STEPS, abs=1 / a.size)
            assert len(steps) == round((1 - lam) * AUDIO_STEPS)
            np.testing.assert_array_equal(np.delete(got[clip], np.arange(start, end)), np.delete(a, np.arange(start, end)))
            # From the partner's clip at the same relative moment (moved back where the partner is shorter).
            source = min(half_up(steps[0] / AUDIO_STEPS * b.size), max(b.size - (end - start), 0))
            piece = b[source : source + end - start]
            np.testing.assert_array_equal(got[clip][start : start + piece.size], piece)
            assert not np.any(got[clip][start + piece.size : end])  # silence only past a shorter partner's end
            cut += 1
    assert cut >= 8
