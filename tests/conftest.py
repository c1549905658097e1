"""Shared fixtures: corpus trees materialised from the real name lists as empty files."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def crema_d_names() -> list[str]:
    return (DATA / "crema_d_clip_names.txt").read_text().split()


def enterface_paths() -> list[str]:
    """The published list with its original spaces in folder names and .avi extensions restored."""
    paths = []
    for line in (DATA / "enterface_clip_paths.txt").read_text().split():
        subject, emotion, sentence, name = line.split("/")
        name = name if name.endswith("avi") else f"{name}.avi"  # s16_su_3avi is the real file name
        paths.append("/".join([subject.replace("_", " "), emotion, sentence.replace("_", " "), name]))
    return paths


@pytest.fixture(scope="session")
def crema_d_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crema_d")
    for name in crema_d_names():
        touch(root / "VideoFlash" / f"{name}.flv")
        touch(root / "AudioWAV" / f"{name}.wav")
    return root


@pytest.fixture(scope="session")
def enterface_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("enterface")
    for rel in enterface_paths():
        touch(root / rel)
    return root
