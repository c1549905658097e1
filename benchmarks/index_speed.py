"""Indexing speed on corpora of real size, materialised as empty files (names only, no decoding).

Target (issue 2): 10,000 clips index in seconds. Prints `name: value` lines.

    .venv/bin/python benchmarks/index_speed.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from avemotion.datasets import index_dataset
from avemotion.datasets.mafw import SPLIT_DIR

TESTS_DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
MAFW_CLIPS = 10_045
TARGET_SECONDS = 10.0


def touch(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def crema_d_tree(root: Path) -> None:
    for name in (TESTS_DATA / "crema_d_clip_names.txt").read_text().split():
        touch(root / "VideoFlash" / f"{name}.flv")
        touch(root / "AudioWAV" / f"{name}.wav")


def mafw_tree(root: Path) -> None:
    """MAFW's size: 10,045 clips, 9,172 of them single-labelled, five official sets."""
    labels = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety", "helplessness", "disappointment"]
    single = {f"{n:05d}": labels[n % len(labels)] for n in range(1, 9173)}
    for n in range(1, MAFW_CLIPS + 1):
        touch(root / "data" / "clips" / f"{n:05d}.mp4")
    for k in range(1, 6):
        test = [c for i, c in enumerate(single) if i % 5 == k - 1]
        train = [c for i, c in enumerate(single) if i % 5 != k - 1]
        touch(root / SPLIT_DIR / f"set_{k}" / "test.txt", "".join(f"{c}.mp4 {single[c]}\n" for c in test))
        touch(root / SPLIT_DIR / f"set_{k}" / "train.txt", "".join(f"{c}.mp4 {single[c]}\n" for c in train))


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        for dataset, build, chunks in (("crema_d", crema_d_tree, 64), ("mafw", mafw_tree, 96)):
            root = Path(scratch) / dataset
            build(root)
            started = time.perf_counter()
            manifest, quarantine = index_dataset(dataset, root, {"chunks": chunks})
            seconds = time.perf_counter() - started
            clips = len(manifest) + len(quarantine)
            print(f"{dataset}_clips: {clips}")
            print(f"{dataset}_index_seconds: {seconds:.2f}")
            print(f"{dataset}_seconds_per_10k_clips: {seconds / clips * 10_000:.2f}")
            print(f"{dataset}_target_ratio: {seconds / clips * 10_000 / TARGET_SECONDS:.3f}  (<= 1 meets the 10 s / 10,000 clips target)")


if __name__ == "__main__":
    main()
