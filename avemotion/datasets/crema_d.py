"""CREMA-D: clip names ``ActorID_Sentence_Emotion_Level`` under ``VideoFlash/``.

Speaker = actor; test folds are the protocol's 18-actor blocks of actors sorted by id. Audio comes
from ``AudioWAV/`` where that file exists (some FLVs have no audio track). Votes come from
``processedResults/tabulatedVotes.csv``, whose row key is ``100000 * modality + clip number``
(modality 1 voice, 2 face, 3 audio-visual); the configured modality's votes weight the
valence/arousal targets.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from avemotion.datasets.manifest import VOTE_PREFIX, Scan
from avemotion.datasets.walk import first_file, visible_folders
from avemotion.io import is_lfs_pointer
from avemotion.labels import CORPUS_LABELS

log = logging.getLogger(__name__)

LABELS = list(CORPUS_LABELS["crema_d"])
SPEAKER_IDS = True  # actor ids in the file names
EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness", "NEU": "neutral", "SAD": "sadness"}
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$")

VIDEO_DIR = "VideoFlash"
AUDIO_DIR = "AudioWAV"
DEMOGRAPHICS = "VideoDemographics.csv"
VOTES = "processedResults/tabulatedVotes.csv"

FIRST_ACTOR, LAST_ACTOR, ACTORS_PER_FOLD = 1001, 1091, 18

# Clips documented as broken in the corpus itself; they are quarantined before any decoding.
KNOWN_DEFECTS = {
    "1076_MTI_NEU_XX": "known CREMA-D defect: very short, no audio in the video",
    "1076_MTI_SAD_XX": "known CREMA-D defect: no face, silent",
    "1064_TIE_SAD_XX": "known CREMA-D defect: no duration",
    "1064_IEO_DIS_MD": "known CREMA-D defect: one minute long, shows every emotion",
}
# Older copies of the corpus name some WAV files differently.
LEGACY_WAV_NAMES = {"1040_ITH_SAD_XX": "1040_ITH_SAD_X"}

VOTE_MODALITIES = {"voice": 1, "face": 2, "audiovisual": 3}
DEFAULT_VOTES = "audiovisual"  # the config schema's default, for settings given without the key (tests, scripts)
VOTE_CODES = {"A": "anger", "D": "disgust", "F": "fear", "H": "happiness", "N": "neutral", "S": "sadness"}


def leave_out_problem(speaker) -> str | None:
    """What is wrong with ``speaker`` as an item of ``leave_out_speakers``: CREMA-D's speakers are its
    actors' ids; any other value left out nothing, said in the index log only."""
    if str(speaker) not in {str(actor) for actor in range(FIRST_ACTOR, LAST_ACTOR + 1)}:
        return f"{speaker!r} is not one of CREMA-D's speakers, its actor ids {FIRST_ACTOR}-{LAST_ACTOR} (a clip name's first part, e.g. 1001)"
    return None


def index_dependencies(root) -> list[Path]:
    """What the index reads: the names in the two media folders and the two metadata tables."""
    root = Path(root)
    folders = [folder for name in (VIDEO_DIR, AUDIO_DIR) for folder in visible_folders(root / name)]  # a stray file below is quarantined
    return folders + [p for p in (root / DEMOGRAPHICS, root / VOTES) if p.exists()]


def layout_problem(root) -> str | None:
    """None when ``root`` holds at least one CREMA-D video, else what was expected there; the media
    being Git LFS pointers (a clone without `git lfs pull`, a zip of the repository) is said at
    once, not clip by clip in preprocessing."""
    video = first_file(Path(root) / VIDEO_DIR, lambda name: name.lower().endswith(".flv"))
    if video is None:
        return f"no {VIDEO_DIR}/*.flv"
    audio = first_file(Path(root) / AUDIO_DIR, lambda name: name.lower().endswith(".wav"))
    for first, folder in ((video, VIDEO_DIR), (audio, AUDIO_DIR)):
        if first is not None and is_lfs_pointer(first):
            return f"{folder}/{first.name} is a Git LFS pointer, not the file itself (`git lfs pull` in the corpus' clone fetches {folder})"
    return None


def layout_notices(root, settings: dict) -> list[str]:
    """What a corpus folder without CREMA-D's side files gives instead, said once before any job (the
    index logs it too, where nobody reads it): many copies hold only VideoFlash."""
    root, notices = Path(root), []
    if first_file(root / AUDIO_DIR, lambda name: name.lower().endswith(".wav")) is None:
        notices.append(
            f"no {AUDIO_DIR}/*.wav under '{root}': each clip's audio is its FLV's own track (the same recording), and the "
            f"FLVs without one (28 in the corpus) are quarantined, or silent with audio.missing: silent"
        )
    if settings.get("votes", DEFAULT_VOTES) != "none" and not (root / VOTES).is_file():
        notices.append(
            f"no {VOTES} under '{root}': valence/arousal targets come from each class' coordinates, not the raters' "
            f"votes (datasets.crema_d.votes: none says so and silences this)"
        )
    if not (root / DEMOGRAPHICS).is_file():
        notices.append(f"no {DEMOGRAPHICS} under '{root}': the manifest has no age, sex, race or ethnicity columns")
    return [f"avemotion: datasets.crema_d: {notice}" for notice in notices]


def fold_of_actor(actor: int) -> int:
    """Blocks of 18 actors sorted by id; the last block (1073-1091) holds 19."""
    return min((actor - FIRST_ACTOR) // ACTORS_PER_FOLD + 1, 5)


def _parse(stem: str) -> tuple[dict | None, str | None]:
    """Record fields from a clip name, or the reason it cannot be used."""
    match = NAME.match(stem)
    if not match:
        return None, "name does not match ActorID_Sentence_Emotion_Level (e.g. 1001_DFA_ANG_XX)"
    actor, sentence, emotion, level = match["actor"], match["sentence"], match["emotion"], match["level"]
    if emotion not in EMOTIONS:
        return None, f"unknown emotion code '{emotion}' (known: {', '.join(EMOTIONS)})"
    if sentence not in SENTENCES:
        return None, f"unknown sentence code '{sentence}' (known: {', '.join(SENTENCES)})"
    if level not in LEVELS:
        return None, f"unknown intensity level '{level}' (known: {', '.join(LEVELS)})"
    if not FIRST_ACTOR <= int(actor) <= LAST_ACTOR:
        return None, f"actor {actor} is outside CREMA-D's {FIRST_ACTOR}-{LAST_ACTOR}, so it has no protocol fold"
    return {
        "clip_id": stem,
        "speaker": actor,
        "label": EMOTIONS[emotion],
        "fold": fold_of_actor(int(actor)),
        "sentence": sentence,
        "intensity": LEVELS[level],
    }, None


def _wav_for(clip_id: str, wavs: dict[str, str]) -> str:
    """``wavs``: the AudioWAV file names by their lower-case stem."""
    for stem in (clip_id, LEGACY_WAV_NAMES.get(clip_id)):
        if stem and stem.lower() in wavs:
            return f"{AUDIO_DIR}/{wavs[stem.lower()]}"
    return ""


def _metadata_table(path: Path, columns: list[str], **read) -> pd.DataFrame:
    """One of CREMA-D's metadata CSVs, or a ValueError in one line naming the file and what it lacks
    (a Git LFS pointer or a web page saved in its place holds none of its columns)."""
    try:
        table = pd.read_csv(path, skipinitialspace=True, **read)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a CSV table ({str(error).splitlines()[0]})") from error
    table.columns = [str(c).strip() for c in table.columns]
    missing = [column for column in columns if column not in table.columns]
    if missing:
        what = "a Git LFS pointer, not the file itself (`git lfs pull` fetches it)" if is_lfs_pointer(path) else f"no {', '.join(missing)} column"
        raise ValueError(f"{path}: {what}; CREMA-D's has columns {', '.join(columns)}")
    return table


def read_demographics(path: Path) -> pd.DataFrame:
    table = _metadata_table(path, ["ActorID", "Age", "Sex", "Race", "Ethnicity"])
    table = table.rename(columns={"ActorID": "speaker", "Age": "age", "Sex": "sex", "Race": "race", "Ethnicity": "ethnicity"})
    table["speaker"] = table["speaker"].astype(str)
    return table[["speaker", "age", "sex", "race", "ethnicity"]]


def read_votes(path: Path, modality: str) -> pd.DataFrame:
    """Per clip vote counts (``votes_<label>``), response count and agreement for one modality."""
    table = _metadata_table(path, ["fileName", *VOTE_CODES, "numResponses", "agreement"], index_col=0, low_memory=False)
    keys = pd.to_numeric(pd.Series(table.index), errors="coerce")
    if keys.isna().any():
        raise ValueError(f"{path}: row keys must be numbers (100000 * modality + clip number), found {table.index[keys.isna().to_numpy()][0]!r}")
    table = table[keys.to_numpy() // 100000 == VOTE_MODALITIES[modality]]
    table["fileName"] = table["fileName"].astype(str).str.strip().str.replace(r"\.\w+$", "", regex=True)
    table = table.drop_duplicates("fileName")
    votes = pd.DataFrame({"clip_id": table["fileName"].to_numpy()})
    for code, label in VOTE_CODES.items():
        votes[VOTE_PREFIX + label] = table[code].to_numpy().astype("int64")
    votes["vote_responses"] = table["numResponses"].to_numpy().astype("int64")
    votes["vote_agreement"] = table["agreement"].to_numpy().astype("float64")
    return votes


def scan(root, settings: dict) -> Scan:
    root = Path(root)
    result = Scan()
    wavs = {}
    for file in _media_files(root, AUDIO_DIR, ".wav", result):
        if file.stem.lower() in wavs:  # names that differ only in case: one clip's audio twice
            result.quarantine(file.stem, file.relative_to(root).as_posix(), f"the same clip's audio as {AUDIO_DIR}/{wavs[file.stem.lower()]} (the names differ only in case)")
            continue
        wavs[file.stem.lower()] = file.name
    videos = set()
    for file in _media_files(root, VIDEO_DIR, ".flv", result):
        rel = file.relative_to(root).as_posix()
        record, problem = _parse(file.stem)
        videos.add(file.stem.lower())
        if problem:
            result.quarantine(file.stem, rel, problem)
        elif file.stem in KNOWN_DEFECTS:
            result.quarantine(file.stem, rel, KNOWN_DEFECTS[file.stem])
        else:
            result.records.append({**record, "path": rel, "audio_path": _wav_for(file.stem, wavs)})
    legacy = {v.lower(): k.lower() for k, v in LEGACY_WAV_NAMES.items()}
    for stem, name in sorted(wavs.items()):
        if legacy.get(stem, stem) not in videos:
            result.quarantine(Path(name).stem, f"{AUDIO_DIR}/{name}", "audio only: no matching video in VideoFlash")
    _join_metadata(root, result, settings.get("votes", DEFAULT_VOTES))
    return result


def _media_files(root: Path, folder: str, suffix: str, result: Scan) -> list[Path]:
    """The ``suffix`` files (any case: .FLV, .WAV) directly in ``root/folder``; any other file there,
    or a file in a folder below it, is quarantined with where CREMA-D keeps its clips."""
    found = []
    for file in result.files_directly_in(root, folder, "CREMA-D"):
        if file.suffix.lower() != suffix:
            result.quarantine(file.stem, file.relative_to(root).as_posix(), f"not a {suffix} file; {folder} holds <clip>{suffix} files")
        else:
            found.append(file)
    return found


def _join_metadata(root: Path, result: Scan, vote_modality: str) -> None:
    """Add demographics and vote columns to the records where those tables exist."""
    if not result.records:
        return
    frame = pd.DataFrame.from_records(result.records)
    if (root / DEMOGRAPHICS).is_file():
        frame = frame.merge(read_demographics(root / DEMOGRAPHICS), on="speaker", how="left")
    else:
        log.warning("%s not found: no demographics columns", root / DEMOGRAPHICS)
    if vote_modality != "none" and (root / VOTES).is_file():
        frame = frame.merge(read_votes(root / VOTES, vote_modality), on="clip_id", how="left")
        for column in [c for c in frame.columns if c.startswith(VOTE_PREFIX)] + ["vote_responses"]:
            frame[column] = frame[column].astype("Int64")
    elif vote_modality != "none":
        log.warning("%s not found: valence/arousal from class coordinates only", root / VOTES)
    result.records = frame.to_dict("records")
