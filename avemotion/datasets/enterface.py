"""eNTERFACE'05: ``subject N/<emotion>/sentence K/sN_<code>_K.avi``.

The corpus is irregular: folder names contain spaces; subject 11's files are named
``s12_*``; subject 3 mixes ``s3_*`` and ``s_3_*``; ``s16_su_3avi`` has no dot; subject 6 has no
``sentence K`` level; some sentence folders hold the other sentence's file. So the speaker comes from
the ``subject N`` folder, the emotion and sentence from the file name, and the clip id is rebuilt as
``s<subject>_<code>_<sentence>`` so that it is unique across subjects.
"""

from __future__ import annotations

import re
from pathlib import Path

from avemotion.datasets.manifest import Scan
from avemotion.datasets.walk import first_file, visible, visible_files, visible_folders
from avemotion.labels import CORPUS_LABELS

LABELS = list(CORPUS_LABELS["enterface"])
SPEAKER_IDS = True  # subject folders
EMOTIONS = {"an": "anger", "di": "disgust", "fe": "fear", "ha": "happiness", "sa": "sadness", "su": "surprise"}
SUBJECT_FOLDER = re.compile(r"^\s*subject[ _-]?(\d+)\s*$", re.IGNORECASE)  # copies write "subject_1", "subject-1", "Subject 1 "
FILE_NAME = re.compile(r"^s_?(?P<subject>\d+)_(?P<code>[a-z]{2})_(?P<sentence>\d+)\.?avi$", re.IGNORECASE)
# Protocol folds: subject blocks 1-10, 11-19, 20-28, 29-37, 38-44.
FOLD_FIRST_SUBJECTS = (1, 11, 20, 29, 38)
LAST_SUBJECT = 44


def leave_out_problem(speaker) -> str | None:
    """What is wrong with ``speaker`` as an item of ``leave_out_speakers``: eNTERFACE's speakers are
    its subjects' numbers (the index writes 6 for the folder "subject 6"); "s6" or "subject 6" left
    out nothing, said in the index log only."""
    if str(speaker) not in {str(subject) for subject in range(1, LAST_SUBJECT + 1)}:
        return f"{speaker!r} is not one of eNTERFACE's speakers, its subjects' numbers 1-{LAST_SUBJECT} without leading zeros (e.g. 6 for the folder 'subject 6')"
    return None


def subject_folders(root) -> list[tuple[int, Path]]:
    root = Path(root)
    folders = []
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        match = SUBJECT_FOLDER.match(child.name)
        if match and child.is_dir():
            folders.append((int(match[1]), child))
    return folders


def other_folders(root) -> list[Path]:
    """The visible folders directly under ``root`` that are not subject folders: their videos are
    quarantined, not left out unseen."""
    subjects = {folder for _, folder in subject_folders(root)}
    return [child for child in sorted(Path(root).iterdir()) if child.is_dir() and visible(child.name) and child not in subjects]


def index_dependencies(root) -> list[Path]:
    """What the index reads: the names in the root and in every folder under it."""
    return visible_folders(root)


def layout_problem(root) -> str | None:
    """None when ``root`` holds at least one eNTERFACE video under a subject folder."""
    for _, folder in subject_folders(root):
        if first_file(folder, lambda name: name.lower().endswith("avi"), recursive=True):
            return None
    return "no 'subject N/<emotion>/sentence K/sN_<code>_K.avi'"


def fold_of_subject(subject: int) -> int:
    return sum(subject >= first for first in FOLD_FIRST_SUBJECTS)


def _parse(subject: int, rel_parts: tuple[str, ...]) -> tuple[dict | None, str | None]:
    """Record fields for a file at ``subject N/<rel_parts...>``, or the reason it cannot be used."""
    name = rel_parts[-1]
    match = FILE_NAME.match(name)
    if not match:
        return None, "name does not match sN_<code>_K.avi (e.g. s1_an_1.avi)"
    code, sentence = match["code"].lower(), int(match["sentence"])
    if code not in EMOTIONS:
        return None, f"unknown emotion code '{match['code']}' (known: {', '.join(EMOTIONS)})"
    if len(rel_parts) not in (2, 3):
        return None, "expected subject N/<emotion>/[sentence K/]<file>"
    label = EMOTIONS[code]
    if rel_parts[0].strip().lower() != label:
        return None, f"file's emotion code '{code}' ({label}) disagrees with its folder '{rel_parts[0]}'"
    if not 1 <= subject <= LAST_SUBJECT:
        return None, f"subject {subject} is outside eNTERFACE's 1-{LAST_SUBJECT}, so it has no protocol fold"
    return {
        "clip_id": f"s{subject}_{code}_{sentence}",
        "speaker": str(subject),
        "label": label,
        "fold": fold_of_subject(subject),
        "sentence": sentence,
        "file_subject": int(match["subject"]),
    }, None


def scan(root, settings: dict) -> Scan:
    root = Path(root)
    result = Scan()
    for subject, folder in subject_folders(root):
        for file in visible_files(folder, recursive=True):
            rel = file.relative_to(root).as_posix()
            record, problem = _parse(subject, file.relative_to(folder).parts)
            if problem:
                result.quarantine(file.name, rel, problem)
            else:
                result.records.append({**record, "path": rel})
    outside = [file for folder in [root, *other_folders(root)] for file in visible_files(folder, recursive=folder != root)]
    for file in outside:
        if file.suffix.lower() == ".avi" or FILE_NAME.match(file.name):
            result.quarantine(file.name, file.relative_to(root).as_posix(), "not under a 'subject N' folder")
    return result
