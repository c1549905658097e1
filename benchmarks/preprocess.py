"""Preprocessing performance figures, printed as `name: value` lines (issue 3 targets in brackets).

- spectrogram_speedup_vs_matplotlib   [>= 20]   see spectrogram_speed.py
- face_fps_per_core                   [>= 40]   see face_speed.py
- frames_ms_per_clip / decode_all_ms_per_clip   [ratio <= 1.2]  on the demo corpora's clips
- preprocess_dry_run_s               [<= 15]   `snakemake -n preprocess` of a 10,045-clip dataset
- overhead_fraction                   [<= 0.10] a whole preprocessing run of a 1,000-clip corpus:
  (cores x wall time - per-clip compute measured inside the scripts) / (cores x wall time)

    .venv/bin/python benchmarks/preprocess.py [--demo-run DIR] [--skip-corpus]

--demo-run names a working directory where the default workflow already ran (resources/demo/);
without it the demo corpora are generated in a temporary directory first.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # index_speed's corpus builder

CORPUS_CLIPS = 1000
CORES = 2


def snakemake(workdir: Path, *args: str) -> float:
    started = time.perf_counter()
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), *args]
    subprocess.run(command, cwd=workdir, check=True, capture_output=True)
    return time.perf_counter() - started


def frames_versus_decode_all(demo: Path) -> dict:
    """Sampling 8 frames (decord, reading only those) against decoding every frame, same clips."""
    from decord import VideoReader, cpu

    from avemotion.media.frames import sample_clip_frames

    clips = sorted((demo / "mafw" / "data" / "clips").glob("*.mp4")) + sorted((demo / "crema_d" / "VideoFlash").glob("*.flv"))
    clips = [c for c in clips if c.stat().st_size > 1000][:40]
    sample, decode = [], []
    for clip in clips:
        try:
            started = time.perf_counter()
            sample_clip_frames(clip, 8, 224, "full")
            sample.append(time.perf_counter() - started)
        except Exception:
            continue
        started = time.perf_counter()
        reader = VideoReader(str(clip), ctx=cpu(0), num_threads=1)
        reader.get_batch(list(range(len(reader)))).asnumpy()
        decode.append(time.perf_counter() - started)
    frames_ms, decode_ms = 1000 * float(np.median(sample)), 1000 * float(np.median(decode))
    return {
        "frames_clips": len(sample),
        "frames_ms_per_clip": round(frames_ms, 2),
        "decode_all_ms_per_clip": round(decode_ms, 2),
        "frames_to_decode_all_ratio": round(frames_ms / decode_ms, 3),
    }


def thousand_clip_corpus(demo: Path, root: Path) -> None:
    """A MAFW-layout corpus of 1,000 clips, copies of the demo's MAFW clips under new numbers."""
    sources = sorted(p for p in (demo / "mafw" / "data" / "clips").glob("*.mp4") if p.stat().st_size > 1000)
    labels = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    (root / "data" / "clips").mkdir(parents=True)
    lines = {k: [] for k in range(1, 6)}
    for n in range(1, CORPUS_CLIPS + 1):
        name = f"{n:05d}.mp4"
        shutil.copy(sources[n % len(sources)], root / "data" / "clips" / name)
        lines[n % 5 + 1].append(f"{name} {labels[n % len(labels)]}\n")
    for k in range(1, 6):
        split = root / "Train & Test Set" / "single" / "no_caption" / f"set_{k}"
        split.mkdir(parents=True)
        (split / "test.txt").write_text("".join(lines[k]))
        (split / "train.txt").write_text("".join(line for j in lines if j != k for line in lines[j]))


def overhead_fraction(demo: Path, scratch: Path) -> dict:
    corpus = scratch / "corpus"
    thousand_clip_corpus(demo, corpus)
    config = scratch / "bench.yaml"
    datasets = {"crema_d": {"enabled": False}, "enterface": {"enabled": False}, "mafw": {"root": str(corpus), "chunks": 8}}
    config.write_text(yaml.safe_dump({"datasets": datasets}))
    snakemake(scratch, "index", "--cores", "1", "--configfile", str(config))
    wall = snakemake(scratch, "preprocess", "--cores", str(CORES), "--configfile", str(config))
    tables = [pd.read_parquet(p) for p in (scratch / "results" / "mafw" / "preprocess").glob("*/*.parquet")]
    compute = float(sum(t["seconds"].sum() for t in tables))
    return {
        "corpus_clips": CORPUS_CLIPS,
        "preprocess_wall_s": round(wall, 1),
        "per_clip_compute_s": round(compute, 1),
        "cores": CORES,
        "overhead_fraction": round((CORES * wall - compute) / (CORES * wall), 3),
    }


def dry_run_10k(scratch: Path) -> dict:
    """`snakemake -n preprocess` after indexing a 10,045-clip MAFW-size corpus (names only)."""
    from index_speed import mafw_tree

    corpus = scratch / "corpus10k"
    mafw_tree(corpus)
    config = scratch / "dry.yaml"
    datasets = {"crema_d": {"enabled": False}, "enterface": {"enabled": False}, "mafw": {"root": str(corpus), "chunks": 96}}
    config.write_text(yaml.safe_dump({"datasets": datasets}))
    snakemake(scratch, "index", "--cores", "1", "--configfile", str(config))
    seconds = snakemake(scratch, "preprocess", "-n", "--cores", str(CORES), "--configfile", str(config))
    return {"dry_run_clips": 10_045, "dry_run_jobs": 3 * 96, "preprocess_dry_run_s": round(seconds, 2), "dry_run_target_ratio": round(seconds / 15, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-run", type=Path, help="working directory of a finished demo run")
    parser.add_argument("--skip-corpus", action="store_true", help="skip the 1,000-clip run (takes minutes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        workdir = args.demo_run or scratch / "demo"
        if not args.demo_run:
            workdir.mkdir()
            snakemake(workdir, "index", "--cores", str(CORES))
        demo = workdir / "resources" / "demo"
        # Separate processes: face_speed pins itself to one core, which must not leak into the rest.
        for title, script in (("spectrograms", "spectrogram_speed.py"), ("face backend", "face_speed.py")):
            print(f"# {title}", flush=True)
            subprocess.run([sys.executable, str(HERE / script)], check=True)
        print("# DAG of a 10,000-clip dataset")
        (scratch / "dry").mkdir()
        for name, value in dry_run_10k(scratch / "dry").items():
            print(f"{name}: {value}")
        print("# frames")
        for name, value in frames_versus_decode_all(demo).items():
            print(f"{name}: {value}")
        if not args.skip_corpus:
            print("# 1,000-clip corpus")
            (scratch / "bench").mkdir()
            for name, value in overhead_fraction(demo, scratch / "bench").items():
                print(f"{name}: {value}")


if __name__ == "__main__":
    main()
