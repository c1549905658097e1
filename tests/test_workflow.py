"""The workflow end to end: demo run, reruns that do nothing, per-dataset incrementality, config
errors before any job, and a clean lint."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import PurePath

import h5py
import numpy as np
import pandas as pd
import yaml

from avemotion.model.checkpoints import ARCHITECTURE_ATTRIBUTE
from avemotion.presets import variant_settings
from avemotion.quarantine import read_quarantine
from avemotion.recipes import DEMO_CONFIG
from conftest import REPO, demo_config, job_blocks, run_snakemake, write_demo_config

DEMO_CLIPS = {"crema_d": 60, "enterface": 48, "mafw": 91}
STAGES = ("index", "preprocess", "fuse", "train", "evaluate", "report")


def planned_jobs(workdir, *args):
    """(rule, dataset) of every job a dry run would execute; dataset "" for a job of no dataset
    (training, evaluation, the report, the target rule)."""
    result = run_snakemake(workdir, *args, "-n", "--cores", "2")
    jobs = [(rule, (re.search(r"\bdataset=(\w+)", wildcards) or ["", ""])[1]) for rule, wildcards in job_blocks(result.stdout)]
    return sorted(set(jobs)), result.stdout


def write_config(workdir, config):
    """A config file over the defaults; without experiments unless given (these tests are about preprocessing)."""
    return write_demo_config(workdir / "test_config.yaml", {"experiments": [], **config})


def test_default_run_indexes_every_demo_corpus(demo_run):
    for dataset, clips in DEMO_CLIPS.items():
        manifest = pd.read_parquet(demo_run / "results" / dataset / "manifest.parquet")
        quarantine = pd.read_csv(demo_run / "results" / dataset / "quarantine" / "index.csv")
        assert list(quarantine.columns) == ["clip_id", "path", "stage", "reason"]
        # every generated file is a manifest row or an index quarantine entry
        assert len(manifest) + len(quarantine) == clips
        assert manifest["fold"].max() == 5 and manifest["clip_id"].is_unique
        for rule in ("demo_corpus", "index_dataset", "collect_quarantine"):
            assert (demo_run / "results" / "logs" / rule / f"{dataset}.log").is_file()
    crema_d = pd.read_csv(demo_run / "results" / "crema_d" / "quarantine" / "index.csv")
    assert set(crema_d["clip_id"]) == {"1064_TIE_SAD_XX", "1076_MTI_SAD_XX"}  # the known defects
    mafw = pd.read_parquet(demo_run / "results" / "mafw" / "manifest.parquet")
    assert (mafw["label"] == "").sum() == 3  # compound-only clips, indexed without a label


ARTIFACTS = ("audio/{}.wav", "spectrograms/{}_mel.png", "spectrograms/{}_mfcc.png", "spectrograms/{}_mel.npy", "openface/{}.csv", "frames/{}.npy")
DEFECT_REASONS = {
    "no_audio": ("audio", "no audio stream"),
    "empty": ("face", "zero-length file"),
    "not_video": ("face", "not a media file"),
    "no_face": ("face", "no face in any frame"),
}


def test_preprocessing_writes_every_artifact_or_a_quarantine_row(demo_run):
    for dataset in DEMO_CLIPS:
        results = demo_run / "results" / dataset
        manifest = pd.read_parquet(results / "manifest.parquet")
        quarantine = read_quarantine(results / "quarantine.csv")
        quarantined = set(quarantine["clip_id"])
        for clip_id in manifest["clip_id"]:
            missing = [a for a in ARTIFACTS if not (results / a.format(clip_id)).is_file()]
            assert clip_id in quarantined or not missing, (dataset, clip_id, missing)
        assert np.load(results / "frames" / f"{manifest['clip_id'].iloc[0]}.npy").shape == (4, 64, 64, 3)
        # each deliberate defect is quarantined by the stage that meets it, with its reason
        truth = pd.read_parquet(demo_run / "resources" / "demo" / f"{dataset}_truth.parquet").groupby("path").first()
        by_path = quarantine.groupby("path")
        for path, defect in truth["defect"].items():
            if defect in DEFECT_REASONS and path in set(manifest["path"]):
                stage, reason = DEFECT_REASONS[defect]
                rows = by_path.get_group(path)
                assert ((rows["stage"] == stage) & rows["reason"].str.contains(reason)).any(), (path, rows)
        # and every stage's reason names the clip's file (the report shows one reason per kind)
        staged = quarantine[quarantine["stage"] != "index"]
        assert all(PurePath(path).stem in reason for path, reason in zip(staged["path"], staged["reason"])), staged
        assert quarantine["clip_id"].nunique() < len(manifest) / 4  # the rest went through


def test_rerun_does_nothing_and_every_stage_target_exists(demo_run):
    for stage in ("all",) + STAGES:
        jobs, output = planned_jobs(demo_run, stage, "--configfile", demo_config(demo_run))
        assert jobs == [], output


def test_the_report_names_each_folds_epoch_and_each_cross_corpus_cells_quarantined_clips(demo_run):
    """From training's history.csv to the page: which epoch each fold's model is; and the cross-corpus
    and leave-one-corpus-out cells count the clips of their classes that a stage quarantined (every
    demo corpus has some)."""
    experiments = demo_run / "results" / "experiments"
    for name in ("crema_d_hybrid", "pair_late"):
        summary = json.loads((experiments / name / "summary.json").read_text())
        for fold, chosen in summary["chosen_epochs"].items():
            history = pd.read_csv(experiments / name / f"fold_{fold}" / "history.csv")
            # no epoch ran twice in this run, so the mark is the lowest validation loss of the log
            assert history["chosen"].tolist() == [epoch == history["val_loss"].idxmin() for epoch in history.index]
            assert chosen == {"epoch": int(history.loc[history["val_loss"].idxmin(), "epoch"]) + 1, "of": len(history)}
    assert "Each fold's model is its epoch of lowest validation loss" in (demo_run / "results" / "report" / "index.html").read_text()
    tables = json.loads((demo_run / "results" / "report" / "cross_corpus.json").read_text())
    cells = [row for row in tables["cross_corpus"] if row["kind"].startswith("cross")] + tables["leave_one_corpus_out"]
    assert len(cells) == 4 and all(type(row["quarantined_clips"]) is int for row in cells), cells
    assert sum(row["quarantined_clips"] for row in cells) > 0


def copy_subset(demo_run, corpora):
    """Real-layout corpora (not demo roots) with a few speakers each, to keep reruns quick."""
    source = demo_run / "resources" / "demo"
    crema_d = corpora / "crema_d"
    shutil.copytree(source / "crema_d" / "processedResults", crema_d / "processedResults")
    shutil.copy(source / "crema_d" / "VideoDemographics.csv", crema_d / "VideoDemographics.csv")
    for folder in ("VideoFlash", "AudioWAV"):
        (crema_d / folder).mkdir()
        for file in (source / "crema_d" / folder).glob("10[02][53]_*"):  # actors 1005 and 1023
            shutil.copy(file, crema_d / folder / file.name)
    for subject in ("subject 3", "subject 6"):
        shutil.copytree(source / "enterface" / subject, corpora / "enterface" / subject)


def test_a_new_clip_or_a_setting_reruns_only_the_jobs_it_affects(demo_run, tmp_path):
    corpora = tmp_path / "corpora"
    copy_subset(demo_run, corpora)
    datasets = {
        "crema_d": {"root": str(corpora / "crema_d"), "chunks": 4},
        "enterface": {"root": str(corpora / "enterface"), "chunks": 4},
        "mafw": {"enabled": False},
    }
    config = write_config(tmp_path, {"datasets": datasets})
    result = run_snakemake(tmp_path, "--cores", "2", "--configfile", config)
    assert "avemotion: datasets.crema_d:" not in result.stderr  # a copy with CREMA-D's side files: no notice
    assert planned_jobs(tmp_path, "--configfile", config)[0] == []

    # A new clip: its dataset's index reruns; once indexed, only the chunk holding it, in every stage.
    videos = corpora / "crema_d" / "VideoFlash"
    video = next(videos.glob("1023_*_ANG_XX.flv"))
    new_clip = next(f"1023_{s}_ANG_XX" for s in ("WSI", "TSI", "ITS", "DFA") if not (videos / f"1023_{s}_ANG_XX.flv").exists())
    shutil.copy(video, videos / f"{new_clip}.flv")
    # Before the index reruns, a dry run can only say the dataset's chunks wait for it; no other dataset.
    jobs, _ = planned_jobs(tmp_path, "--configfile", config)
    assert {dataset for _, dataset in jobs} - {""} == {"crema_d"} and ("index_dataset", "crema_d") in jobs
    run_snakemake(tmp_path, "index", "--cores", "2", "--configfile", config)
    manifest = pd.read_parquet(tmp_path / "results" / "crema_d" / "manifest.parquet").set_index("clip_id")
    chunk = manifest.loc[new_clip, "chunk"]
    expected = [("crema_d", stage, chunk) for stage in ("audio", "face", "frames")]
    assert planned_chunk_jobs(tmp_path, "--configfile", config) == expected
    result = run_snakemake(tmp_path, "--cores", "2", "--configfile", config)
    assert chunk_jobs_in(result.stdout + result.stderr) == expected
    assert (tmp_path / "results" / "crema_d" / "frames" / f"{new_clip}.npy").is_file()
    # In one plain run, the index checkpoint reruns and then only the new clip's chunk jobs run.
    second = next(f"1023_{s}_HAP_XX" for s in ("WSI", "TSI", "ITS", "DFA") if not (videos / f"1023_{s}_HAP_XX.flv").exists())
    shutil.copy(video, videos / f"{second}.flv")
    result = run_snakemake(tmp_path, "--cores", "2", "--configfile", config)
    chunk = pd.read_parquet(tmp_path / "results" / "crema_d" / "manifest.parquet").set_index("clip_id").loc[second, "chunk"]
    assert chunk_jobs_in(result.stdout + result.stderr) == [("crema_d", stage, chunk) for stage in ("audio", "face", "frames")]

    # A dataset's own audio setting: only that dataset's audio chunks.
    datasets["enterface"]["audio"] = {"n_mels": 64}
    config = write_config(tmp_path, {"datasets": datasets})
    assert planned_chunk_jobs(tmp_path, "--configfile", config) == [("enterface", "audio", c) for c in range(4)]
    # Its face setting: its face chunks and the frames cut around those faces.
    datasets["enterface"]["face"] = {"detection_threshold": 0.6}
    config = write_config(tmp_path, {"datasets": datasets})
    jobs = planned_chunk_jobs(tmp_path, "--configfile", config)
    assert {(d, s) for d, s, _ in jobs} == {("enterface", "audio"), ("enterface", "face"), ("enterface", "frames")}

    # A copy without the raters' votes: the run says, before any job, that its targets are the classes'.
    shutil.rmtree(corpora / "crema_d" / "processedResults")
    result = run_snakemake(tmp_path, "index", "-n", "--configfile", config)
    assert "avemotion: datasets.crema_d: no processedResults/tabulatedVotes.csv under" in result.stderr


def chunk_jobs_in(output):
    found = re.findall(r"wildcards: dataset=(\w+), stage=(\w+), chunk=(\d+)", output)
    return sorted({(dataset, stage, int(chunk)) for dataset, stage, chunk in found})


def planned_chunk_jobs(workdir, *args):
    """(dataset, stage, chunk) of every preprocessing job a dry run would execute."""
    return chunk_jobs_in(run_snakemake(workdir, *args, "-n", "--cores", "2").stdout)


def test_a_run_killed_mid_chunk_finishes_only_what_was_incomplete(demo_run, tmp_path):
    corpora = tmp_path / "corpora"
    copy_subset(demo_run, corpora)
    config = write_config(
        tmp_path,
        {"datasets": {"crema_d": {"root": str(corpora / "crema_d"), "chunks": 1}, "enterface": {"enabled": False}, "mafw": {"enabled": False}}},
    )
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1", "--configfile", config]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    receipts = tmp_path / "results" / "crema_d" / "preprocess" / "face" / "receipts"
    deadline = time.time() + 300
    while len(list(receipts.glob("*.json"))) < 5 and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # kill -9 the whole run, job processes included
    process.wait()
    finished_before = len(list(receipts.glob("*.json")))
    assert 5 <= finished_before < 24, "the run should have been killed inside the face chunk"
    table_path = tmp_path / "results" / "crema_d" / "preprocess" / "face" / "0.parquet"
    assert not table_path.exists()
    # As a job killed after writing one of its outputs leaves it (an evaluation killed while it drew
    # its plots): Snakemake marked the job's outputs incomplete when it started, and a plain rerun
    # redoes the job (profiles/default: rerun-incomplete) rather than stop and ask for the flag.
    table_path.write_bytes(b"cut off")

    run_snakemake(tmp_path, "--unlock", "--configfile", config)  # a killed run leaves Snakemake's lock behind
    run_snakemake(tmp_path, "--cores", "2", "--configfile", config)
    log = (tmp_path / "results" / "logs" / "preprocess_chunk" / "crema_d" / "face" / "0.log").read_text()
    reused = int(re.search(r"face: \d+ clips \((\d+) reused", log)[1])
    assert reused >= finished_before
    table = pd.read_parquet(table_path)
    assert len(table) == 24 and set(table["status"]) <= {"ok", "quarantined"}
    assert planned_jobs(tmp_path, "--configfile", config)[0] == []


def test_other_threads_or_gpus_retrain_nothing(demo_run, tmp_path):
    config = yaml.safe_load(open(demo_config(demo_run)))
    config["training"].update(threads=2, gpus=1)
    changed = tmp_path / "threads.yaml"
    changed.write_text(yaml.safe_dump(config))
    result = run_snakemake(demo_run, "train", "-n", "--cores", "2", "--configfile", str(changed))
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]
    # Keys written with the value that means unset: no index reruns (and after it every evaluation).
    for dataset in config["datasets"].values():
        dataset["leave_out_speakers"] = []
    changed.write_text(yaml.safe_dump(config))
    result = run_snakemake(demo_run, "-n", "--cores", "2", "--configfile", str(changed))
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]


def test_pretrained_weights_are_inputs_of_the_trainings_that_start_from_them(demo_run, tmp_path):
    """A model's settings hold only the weights' path: weights converted again to the same file
    retrained nothing, and every result built on the old ones stayed as if current. As an input, a
    newer file reruns the trainings that read it (Snakemake's mtime trigger)."""
    weights = tmp_path / "videomae-tiny.weights.h5"
    with h5py.File(weights, "w") as handle:  # what the config check reads of a converted file: its architecture record
        handle.attrs[ARCHITECTURE_ATTRIBUTE] = json.dumps({"backbone": variant_settings("tiny"), "num_classes": 0, "label_names": None})
    config = yaml.safe_load(open(demo_config(demo_run)))
    config["experiments"][0].setdefault("model", {})["pretrained"] = str(weights)
    changed = tmp_path / "pretrained.yaml"
    changed.write_text(yaml.safe_dump(config))
    result = run_snakemake(demo_run, "train", "-n", "--cores", "2", "--configfile", str(changed))
    inputs = re.findall(r"rule (train_\w+):\n(?:    .*\n)*?    input: (.*)\n(?:    .*\n)*?    wildcards: experiment=(\w+)", result.stdout)
    reading = {(rule, experiment) for rule, files, experiment in inputs if str(weights) in files.split(", ")}
    assert reading and all(experiment == config["experiments"][0]["name"] for _, experiment in reading), result.stdout[-3000:]

def test_invalid_config_fails_before_any_job_naming_key_and_allowed_values(tmp_path):
    config = write_config(tmp_path, {"datasets": {"crema_d": {"votes": "both"}}})
    result = run_snakemake(tmp_path, "-n", "--configfile", config, check=False)
    assert result.returncode != 0
    assert "datasets.crema_d.votes: 'both' is not allowed; allowed values: 'audiovisual', 'face', 'voice', 'none'" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
    # the message alone, as README promises: not followed by Snakemake's traceback lines
    said = result.stdout + result.stderr  # Snakemake writes its errors to stdout, sys.exit to stderr
    assert 'File "' not in said and "Error in file" not in said, said


def test_missing_root_is_a_clear_error_naming_dataset_and_path(tmp_path):
    config = write_config(tmp_path, {"datasets": {"enterface": {"root": "/data/eNTERFACE05"}}})
    result = run_snakemake(tmp_path, "-n", "--configfile", config, check=False)
    assert result.returncode != 0
    assert "dataset 'enterface': root directory '/data/eNTERFACE05' does not exist" in result.stdout + result.stderr
    said = (result.stdout + result.stderr).strip().splitlines()
    assert said[-1].startswith("dataset 'enterface': root directory") and not any(line.startswith("  File") for line in said), said


def test_mfaw_alias_is_accepted_with_a_warning(tmp_path):
    config = write_config(tmp_path, {"datasets": {"mfaw": {"enabled": False}}})
    result = run_snakemake(tmp_path, "index", "-n", "--configfile", config)
    assert "datasets.mfaw is read as datasets.mafw" in result.stdout + result.stderr
    assert "dataset=mafw" not in result.stdout
    # the demo config sets its root: the run says why it is left out (as a recipe's enabled: false would)
    assert "avemotion: datasets.mafw takes no part: its root is set but datasets.mafw.enabled is false" in result.stderr


def test_a_fresh_clone_with_no_corpus_configured_says_which_keys_to_set(tmp_path):
    result = run_snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0 and not (tmp_path / "results").exists()
    assert "no corpus configured: set datasets.crema_d.root, datasets.enterface.root and/or datasets.mafw.root" in result.stdout + result.stderr
    assert "`make demo` runs the workflow on the bundled demo corpora" in result.stdout + result.stderr


def test_a_yaml_error_in_a_config_file_names_the_file_and_line(tmp_path):
    """Snakemake reads --configfile files before the workflow; the .pth that `make setup` installs
    (avemotion.config_errors) makes its error say where."""
    broken = tmp_path / "my.yaml"
    broken.write_text("datasets:\n  crema_d:\n    root: /data/CREMA-D\n   chunks: 64\n")
    result = run_snakemake(tmp_path, "-n", "--configfile", str(broken), check=False)
    assert result.returncode != 0
    assert f"Config file {broken}, line 4, column 4: not valid YAML" in result.stdout + result.stderr
    assert 'File "' not in result.stdout + result.stderr  # the message alone, no frame of the wrapper under it
    # a key written twice: YAML keeps the second block and drops the first without a word
    broken.write_text("datasets:\n  crema_d: {root: /data/CREMA-D}\ndatasets:\n  mafw: {root: /data/MAFW}\n")
    result = run_snakemake(tmp_path, "-n", "--configfile", str(broken), check=False)
    assert result.returncode != 0
    assert f"Config file {broken}, line 3: datasets repeats the key of line 1 (YAML keeps only the last; merge them)" in result.stdout + result.stderr
    assert 'File "' not in result.stdout + result.stderr


def test_lint_is_clean():
    result = run_snakemake(REPO, "--lint", "--configfile", str(DEMO_CONFIG))
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr
