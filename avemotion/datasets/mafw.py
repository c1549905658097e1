"""MAFW: ``data/clips/NNNNN.mp4`` labelled by the official single-label split files.

``Train & Test Set/single/no_caption/set_{1..5}/{train,test}.txt`` list one clip per line
(``00025.mp4 anger``). A clip's fold is the set whose test list holds it. Clips that appear in no
single-label split file (compound-only) are indexed with an empty label and no fold: training leaves
them out and the report counts them. MAFW publishes no speaker identities, so each clip is its own
speaker group.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from avemotion.datasets.manifest import NO_FOLD, NO_LABEL, Scan
from avemotion.datasets.walk import first_file, visible_folders
from avemotion.labels import CORPUS_LABELS

# MAFW's 11 single-label classes are exactly the canonical label set.
LABELS = list(CORPUS_LABELS["mafw"])
SPEAKER_IDS = False  # MAFW publishes none: each clip is its own speaker group
CLIP_DIR = "data/clips"
SPLIT_DIR = "Train & Test Set/single/no_caption"
NUM_SETS = 5
CLIP_NAME = re.compile(r"^\d{5}\.mp4$", re.IGNORECASE)


def leave_out_problem(speaker) -> str | None:
    """What is wrong with ``speaker`` as an item of ``leave_out_speakers``: MAFW's speakers are its
    clip ids, five digits, and YAML reads 00025 unquoted as the number 21 (octal), which leaves out
    nothing; a number below 10000 cannot be one."""
    if isinstance(speaker, int) and not isinstance(speaker, bool) and speaker < 10**4:
        return f"{speaker} is a number, but MAFW's speakers are its clip ids of five digits (YAML reads 00025 unquoted as 21): quote them, e.g. '00025'"
    return None


class MafwSplitError(ValueError):
    """The official split files, which define MAFW's labels and folds, are missing."""


def split_files(root) -> list[tuple[int, str, Path]]:
    """(set number, 'train' | 'test', path) of every split file that exists."""
    root = Path(root)
    found = []
    for k in range(1, NUM_SETS + 1):
        for part in ("train", "test"):
            path = root / SPLIT_DIR / f"set_{k}" / f"{part}.txt"
            if path.is_file():
                found.append((k, part, path))
    return found


def layout_problem(root) -> str | None:
    """None when ``root`` holds MAFW clips and its official split files, else what is missing."""
    if not first_file(Path(root) / CLIP_DIR, CLIP_NAME.match):
        return f"no {CLIP_DIR}/NNNNN.mp4"
    if not split_files(root):
        return f"no official split files {SPLIT_DIR}/set_1..set_5/{{train,test}}.txt (they define MAFW's labels and folds)"
    return None


def index_dependencies(root) -> list[Path]:
    """What the index reads: the names in data/clips (and in folders below it, whose clips it
    quarantines) and the split files."""
    return visible_folders(Path(root) / CLIP_DIR) + [path for _, _, path in split_files(root)]


def _read_split_lists(root: Path, result: Scan):
    """clip id -> {label: [where]} and clip id -> test sets, from every split file line."""
    labels: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    test_sets: dict[str, list[int]] = defaultdict(list)
    for k, part, path in split_files(root):
        where = f"set_{k}/{part}.txt"
        for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            name = fields[0]
            clip_id = Path(name).stem
            if len(fields) != 2 or not CLIP_NAME.match(name):
                result.quarantine(clip_id, f"{SPLIT_DIR}/{where}", f"a line not '<NNNNN>.mp4 <label>': line {number}")
                continue
            labels[clip_id][fields[1].lower()].append(where)
            if part == "test" and k not in test_sets[clip_id]:  # a line written twice is one listing
                test_sets[clip_id].append(k)
    return labels, test_sets


def scan(root, settings: dict) -> Scan:
    root = Path(root)
    if not split_files(root):
        raise MafwSplitError(
            f"dataset 'mafw': no official split files under '{root / SPLIT_DIR}' "
            "(expected set_1..set_5/train.txt and test.txt); they define MAFW's labels and folds"
        )
    result = Scan()
    labels, test_sets = _read_split_lists(root, result)
    clips, before = {}, len(result.quarantined)
    files = result.files_directly_in(root, CLIP_DIR, "MAFW")  # MAFW's archive unpacks flat
    below = {entry["clip_id"] for entry in result.quarantined[before:]}
    for file in files:
        rel = file.relative_to(root).as_posix()
        if not CLIP_NAME.match(file.name):
            result.quarantine(file.stem, rel, "name is not <5 digits>.mp4 (e.g. 00025.mp4)")
        elif file.stem in clips:  # 00001.MP4 beside 00001.mp4
            result.quarantine(file.stem, rel, f"the same clip as {clips[file.stem]} (the names differ only in case)")
        else:
            clips[file.stem] = rel
    for clip_id in sorted(set(labels) - set(clips) - below):  # (one below is quarantined as such)
        where = ", ".join(sorted({w for ws in labels[clip_id].values() for w in ws}))
        result.quarantine(clip_id, f"{CLIP_DIR}/{clip_id}.mp4", f"listed in {where} but the file is missing")
    for clip_id, rel in sorted(clips.items()):
        record, problem = _label_and_fold(labels.get(clip_id, {}), test_sets.get(clip_id, []))
        if problem:
            result.quarantine(clip_id, rel, problem)
        else:
            result.records.append({"clip_id": clip_id, "path": rel, "speaker": clip_id, **record})
    return result


def _label_and_fold(label_sources: dict[str, list[str]], test_sets: list[int]):
    if not label_sources:
        return {"label": NO_LABEL, "fold": NO_FOLD}, None
    if len(label_sources) > 1:
        listed = "; ".join(f"{label} in {', '.join(ws)}" for label, ws in sorted(label_sources.items()))
        return None, f"conflicting labels across split files: {listed}"
    (label,) = label_sources
    if label not in LABELS:
        return None, f"unknown emotion '{label}' (known: {', '.join(LABELS)})"
    if len(test_sets) != 1:
        sets = ", ".join(f"set_{k}" for k in test_sets) or "none"
        return None, f"in the test list of exactly one set expected, found: {sets}"
    return {"label": label, "fold": test_sets[0]}, None
