"""Small, deterministic demo corpora in the native layouts of CREMA-D, eNTERFACE'05 and MAFW.

The real dataset readers index them, so the demo exercises the same code as a real corpus,
including each corpus' irregular names and a few deliberately defective files. Beside each corpus,
``<dataset>_truth.parquet`` holds the generator's ground truth: per frame the expression parameters
of the drawn face and per clip the emotion, speaker, voice parameters and defect.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.datasets import crema_d, enterface, mafw
from avemotion.demo.encode import write_video
from avemotion.demo.expressions import PROFILES, Speaker, expression_track, make_speaker
from avemotion.demo.face import FacePainter, empty_scene
from avemotion.demo.voice import SAMPLE_RATE, envelope_at, synthesize_voice
from avemotion.io import atomic_path, write_parquet
from avemotion.media.audio import write_wav

log = logging.getLogger(__name__)

DEMO_DIR = Path("resources/demo")
DATASET_NUMBERS = {"crema_d": 1, "enterface": 2, "mafw": 3}

# Deliberate defects, as the preprocessing stage will meet them in real corpora.
NO_AUDIO, EMPTY, NO_FACE, SILENT_NO_FACE, NOT_VIDEO = "no_audio", "empty", "no_face", "silent_no_face", "not_video"


@dataclass
class ClipSpec:
    path: str  # relative to the corpus root
    label: str
    speaker: Speaker
    intensity: float
    kind: str  # flv | avi | mp4
    size: tuple[int, int]  # width, height
    fps: float
    defect: str | None = None
    wav_path: str | None = None  # CREMA-D's separate AudioWAV file


def _rng(seed: int, dataset: str, *numbers: int) -> np.random.Generator:
    return np.random.default_rng([seed, DATASET_NUMBERS[dataset], *numbers])


# --- layouts -------------------------------------------------------------------------------------

CREMA_D_ACTORS = {1005: "Male", 1023: "Female", 1040: "Male", 1064: "Female", 1076: "Male"}  # one per fold
CREMA_D_DEFECTS = {
    "1076_MTI_SAD_XX": SILENT_NO_FACE,  # known corpus defect, quarantined at indexing
    "1064_TIE_SAD_XX": EMPTY,  # known corpus defect, quarantined at indexing
    "1023_WSI_FEA_XX": NO_AUDIO,
    "1005_IWL_NEU_XX": NO_FACE,
    "1040_TAI_DIS_XX": NOT_VIDEO,
    "1064_ITS_HAP_XX": EMPTY,
}
# Clips that always take part: the defects, and the clip whose WAV has a legacy name in old copies.
CREMA_D_FIXED_CLIPS = [*CREMA_D_DEFECTS, "1040_ITH_SAD_XX"]
CREMA_D_INTENSITY = {"LO": 0.5, "MD": 0.8, "HI": 1.2, "XX": 1.0}


def crema_d_specs(seed: int) -> list[ClipSpec]:
    specs = []
    for a, (actor, sex) in enumerate(CREMA_D_ACTORS.items()):
        speaker = make_speaker(str(actor), _rng(seed, "crema_d", 1000 + a), sex)
        rng = _rng(seed, "crema_d", 2000 + a)
        fixed = {name.split("_")[2]: name.split("_")[1] for name in CREMA_D_FIXED_CLIPS if name.startswith(str(actor))}
        for code in crema_d.EMOTIONS:
            sentences = [fixed.get(code) or rng.choice(crema_d.SENTENCES[1:])]
            sentences.append(rng.choice([s for s in crema_d.SENTENCES if s not in sentences]))
            for sentence in sentences:
                level = rng.choice(["LO", "MD", "HI"]) if sentence == "IEO" and code != "NEU" else "XX"
                name = f"{actor}_{sentence}_{code}_{level}"
                wav_name = crema_d.LEGACY_WAV_NAMES.get(name, name)
                defect = CREMA_D_DEFECTS.get(name)
                has_wav = defect not in (NO_AUDIO, EMPTY)
                specs.append(
                    ClipSpec(
                        path=f"{crema_d.VIDEO_DIR}/{name}.flv",
                        label=crema_d.EMOTIONS[code],
                        speaker=speaker,
                        intensity=CREMA_D_INTENSITY[level],
                        kind="flv",
                        size=(320, 240),
                        fps=30,
                        defect=defect,
                        wav_path=f"{crema_d.AUDIO_DIR}/{wav_name}.wav" if has_wav else None,
                    )
                )
    return specs


ENTERFACE_SUBJECTS = (3, 6, 11, 12, 16, 23, 30, 40)
ENTERFACE_DEFECTS = {(30, "fe"): NO_AUDIO, (40, "di"): EMPTY, (23, "sa"): NO_FACE, (12, "an"): NOT_VIDEO}


def enterface_file_path(subject: int, emotion: str, code: str, sentence: int) -> str:
    """Where the real corpus would keep this clip, with its documented irregularities."""
    prefix = {3: "s_3" if code in ("ha", "sa", "su") else "s3", 11: "s12"}.get(subject, f"s{subject}")
    name = f"{prefix}_{code}_{sentence}.avi"
    if (subject, code, sentence) == (16, "su", 3):
        name = "s16_su_3avi"  # the real corpus' file without its dot
    if subject == 6:  # subject 6 has no "sentence K" level
        return f"subject {subject}/{emotion}/{name}"
    return f"subject {subject}/{emotion}/sentence {sentence}/{name}"


def enterface_specs(seed: int) -> list[ClipSpec]:
    specs = []
    for s, subject in enumerate(ENTERFACE_SUBJECTS):
        speaker = make_speaker(f"subject {subject}", _rng(seed, "enterface", 1000 + s))
        rng = _rng(seed, "enterface", 2000 + s)
        for code, emotion in enterface.EMOTIONS.items():
            sentence = 3 if (subject, code) == (16, "su") else int(rng.integers(1, 6))
            specs.append(
                ClipSpec(
                    path=enterface_file_path(subject, emotion, code, sentence),
                    label=emotion,
                    speaker=speaker,
                    intensity=float(rng.uniform(0.8, 1.2)),
                    kind="avi",
                    size=(320, 256),
                    fps=25,
                    defect=ENTERFACE_DEFECTS.get((subject, code)),
                )
            )
    return specs


# 8 labelled clips per class, as in the demo eNTERFACE: with under 4 per class a fold holds 7-8 test
# clips of 11 classes and about 24 training clips, too few for any model to learn from, and one clip
# moves a fold's UAR by about 0.1.
MAFW_LABELLED, MAFW_COMPOUND, MAFW_ACTORS = 88, 3, 8
MAFW_DEFECTS = {7: NO_AUDIO, 15: EMPTY, 22: NO_FACE, 31: NOT_VIDEO}


def mafw_specs(seed: int) -> tuple[list[ClipSpec], dict[str, int]]:
    """Clip specs and the fold of each single-labelled clip id."""
    rng = _rng(seed, "mafw", 0)
    speakers = [make_speaker(f"actor {i}", _rng(seed, "mafw", 1000 + i)) for i in range(MAFW_ACTORS)]
    labels = [mafw.LABELS[i % len(mafw.LABELS)] for i in range(MAFW_LABELLED)]
    rng.shuffle(labels)
    # Compound-only clips show a blend; the generator draws the first emotion of the pair.
    labels += [str(rng.choice(mafw.LABELS)) for _ in range(MAFW_COMPOUND)]
    specs, folds = [], {}
    for number, label in enumerate(labels, start=1):
        clip_id = f"{number:05d}"
        if number <= MAFW_LABELLED:
            folds[clip_id] = (number - 1) % mafw.NUM_SETS + 1
        specs.append(
            ClipSpec(
                path=f"{mafw.CLIP_DIR}/{clip_id}.mp4",
                label=label,
                speaker=speakers[int(rng.integers(MAFW_ACTORS))],
                intensity=float(rng.uniform(0.7, 1.3)),
                kind="mp4",
                size=(320, 180) if number % 2 else (320, 240),
                fps=25,
                defect=MAFW_DEFECTS.get(number),
            )
        )
    return specs, folds


# --- clips ---------------------------------------------------------------------------------------


def render_clip(spec: ClipSpec, rng: np.random.Generator):
    """(frames, audio or None, per-frame truth table) of one clip."""
    duration = float(rng.uniform(2.0, 3.0))
    frame_count = int(round(duration * spec.fps))
    times = np.arange(frame_count) / spec.fps
    profile = PROFILES[spec.label]
    audio, envelope, voice = synthesize_voice(profile, spec.speaker, spec.intensity, duration, rng)
    width, height = spec.size
    if spec.defect in (NO_FACE, SILENT_NO_FACE):
        frames = empty_scene(width, height, spec.speaker.background, rng, frame_count)
        track = {}
    else:
        track = expression_track(profile, spec.speaker, spec.intensity, times, envelope_at(envelope, times), rng)
        painter = FacePainter(spec.speaker, width, height, rng)
        drift = np.cumsum(rng.normal(0, 0.4, size=(frame_count, 2)), axis=0)
        frames = np.stack(
            [painter.draw({k: float(v[i]) for k, v in track.items()}, drift[i]) for i in range(frame_count)]
        )
    if spec.defect == SILENT_NO_FACE:
        audio = np.zeros_like(audio)
    truth = pd.DataFrame({"frame": np.arange(frame_count), "time": times, **track})
    truth["face_visible"] = bool(track)
    for key, value in voice.items():
        truth[key] = value
    return frames, (None if spec.defect == NO_AUDIO else audio), truth


def write_clip(root: Path, spec: ClipSpec, rng: np.random.Generator) -> pd.DataFrame:
    """Write one clip (and its WAV where the corpus has one); return its truth rows."""
    target = root / spec.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if spec.defect == EMPTY:
        target.write_bytes(b"")
        truth = pd.DataFrame({"frame": [-1]})
    elif spec.defect == NOT_VIDEO:
        target.write_text("This file was saved with a video extension but holds text, not video.\n")
        truth = pd.DataFrame({"frame": [-1]})
    else:
        frames, audio, truth = render_clip(spec, rng)
        write_video(target, frames, spec.fps, spec.kind, audio, SAMPLE_RATE)
        if spec.wav_path and audio is not None:
            write_wav(root / spec.wav_path, audio, SAMPLE_RATE)
    truth.insert(0, "path", spec.path)
    truth.insert(1, "label", spec.label)
    truth.insert(2, "speaker", spec.speaker.name)
    truth.insert(3, "intensity", spec.intensity)
    truth.insert(4, "defect", spec.defect or "")
    return truth


# --- metadata files ------------------------------------------------------------------------------


def write_crema_d_metadata(root: Path, specs: list[ClipSpec], seed: int) -> None:
    speakers = {spec.speaker.name: spec.speaker for spec in specs}
    races = ["Caucasian", "African American", "Asian", "Unknown"]
    demographics = pd.DataFrame(
        {
            "ActorID": [int(name) for name in speakers],
            "Age": [s.age for s in speakers.values()],
            "Sex": [s.sex for s in speakers.values()],
            "Race": [races[i % len(races)] for i in range(len(speakers))],
            "Ethnicity": ["Not Hispanic" if i % 3 else "Hispanic" for i in range(len(speakers))],
        }
    )
    with atomic_path(root / crema_d.DEMOGRAPHICS) as tmp:
        demographics.to_csv(tmp, index=False)
    with atomic_path(root / crema_d.VOTES) as tmp:
        tabulated_votes(specs, _rng(seed, "crema_d", 3000)).to_csv(tmp, index_label="")


def tabulated_votes(specs: list[ClipSpec], rng: np.random.Generator, raters: int = 10) -> pd.DataFrame:
    """Simulated ratings in tabulatedVotes.csv's layout: row key 100000 * modality + clip number."""
    codes = list(crema_d.VOTE_CODES)
    rows, keys = [], []
    for modality, reliability in ((1, 0.55), (2, 0.65), (3, 0.75)):
        for number, spec in enumerate(specs, start=1):
            true = codes.index(next(k for k, v in crema_d.VOTE_CODES.items() if v == spec.label))
            p = rng.dirichlet(np.ones(len(codes))) * (1 - reliability)
            p[true] += reliability
            counts = rng.multinomial(raters, p)
            winners = [codes[i] for i in np.flatnonzero(counts == counts.max())]
            rows.append(
                {
                    **dict(zip(codes, counts.tolist())),
                    "fileName": Path(spec.path).stem,
                    "numResponses": raters,
                    "agreement": counts.max() / raters,
                    "emoVote": ":".join(winners),
                }
            )
            keys.append(100000 * modality + number)
    return pd.DataFrame(rows, index=keys)


def write_mafw_splits(root: Path, specs: list[ClipSpec], folds: dict[str, int]) -> None:
    labels = {Path(spec.path).stem: spec.label for spec in specs}
    for k in range(1, mafw.NUM_SETS + 1):
        for part in ("train", "test"):
            clip_ids = sorted(c for c, fold in folds.items() if (fold == k) == (part == "test"))
            with atomic_path(root / mafw.SPLIT_DIR / f"set_{k}" / f"{part}.txt") as tmp:
                tmp.write_text("".join(f"{c}.mp4 {labels[c]}\n" for c in clip_ids))


# --- entry point ---------------------------------------------------------------------------------


def generate_corpus(dataset: str, root, truth_file, seed: int) -> pd.DataFrame:
    """Write the demo corpus of ``dataset`` under ``root`` and its ground truth; return the truth."""
    started = time.perf_counter()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if dataset == "crema_d":
        specs = crema_d_specs(seed)
        write_crema_d_metadata(root, specs, seed)
    elif dataset == "enterface":
        specs = enterface_specs(seed)
    elif dataset == "mafw":
        specs, folds = mafw_specs(seed)
        write_mafw_splits(root, specs, folds)
    else:
        raise KeyError(f"no demo corpus for dataset '{dataset}' (known: {', '.join(DATASET_NUMBERS)})")
    truth = pd.concat(
        [write_clip(root, spec, _rng(seed, dataset, 10_000 + i)) for i, spec in enumerate(specs)],
        ignore_index=True,
    )
    write_parquet(truth, truth_file)
    log.info("%s demo corpus: %d clips in %.1f s under %s", dataset, len(specs), time.perf_counter() - started, root)
    return truth
