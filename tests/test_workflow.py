"""The workflow end to end: demo run, reruns that do nothing, per-dataset incrementality, config
errors before any job, and a clean lint."""

import re
import shutil

import pandas as pd
import yaml

from conftest import REPO, run_snakemake

DEMO_CLIPS = {"crema_d": 60, "enterface": 48, "mafw": 45}
STAGES = ("index", "preprocess", "fuse", "train", "evaluate", "report")


def planned_jobs(workdir, *args):
    """(rule, dataset) of every job a dry run would execute."""
    result = run_snakemake(workdir, *args, "-n", "--cores", "2")
    jobs = re.findall(r"^\s*(?:local)?rule (\w+):\n(?:.*\n)*?\s*wildcards: dataset=(\w+)", result.stdout, re.M)
    return sorted(set(jobs)), result.stdout


def write_config(workdir, config):
    path = workdir / "test_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_default_run_indexes_every_demo_corpus(demo_run):
    for dataset, clips in DEMO_CLIPS.items():
        manifest = pd.read_parquet(demo_run / "results" / dataset / "manifest.parquet")
        quarantine = pd.read_csv(demo_run / "results" / dataset / "quarantine.csv")
        assert list(quarantine.columns) == ["clip_id", "path", "stage", "reason"]
        # every generated file is a manifest row or a quarantine entry (defects found later by decoding)
        assert len(manifest) + len(quarantine) == clips
        assert manifest["fold"].max() == 5 and manifest["clip_id"].is_unique
        for rule in ("demo_corpus", "index_dataset", "collect_quarantine"):
            assert (demo_run / "results" / "logs" / rule / f"{dataset}.log").is_file()
    crema_d = pd.read_csv(demo_run / "results" / "crema_d" / "quarantine.csv")
    assert set(crema_d["clip_id"]) == {"1064_TIE_SAD_XX", "1076_MTI_SAD_XX"}  # the known defects
    mafw = pd.read_parquet(demo_run / "results" / "mafw" / "manifest.parquet")
    assert (mafw["label"] == "").sum() == 3  # compound-only clips, indexed without a label


def test_rerun_does_nothing_and_every_stage_target_exists(demo_run):
    for stage in ("all",) + STAGES:
        jobs, output = planned_jobs(demo_run, stage)
        assert jobs == [], output


def test_a_new_clip_reruns_only_its_dataset_and_a_setting_only_its_dataset(demo_run, tmp_path):
    corpora = tmp_path / "corpora"
    for dataset in ("crema_d", "enterface"):
        shutil.copytree(demo_run / "resources" / "demo" / dataset, corpora / dataset)
    config = write_config(
        tmp_path,
        {
            "datasets": {
                "crema_d": {"root": str(corpora / "crema_d")},
                "enterface": {"root": str(corpora / "enterface")},
                "mafw": {"enabled": False},
            }
        },
    )
    run_snakemake(tmp_path, "index", "--cores", "2", "--configfile", config)
    assert planned_jobs(tmp_path, "--configfile", config)[0] == []

    video = next((corpora / "crema_d" / "VideoFlash").glob("1023_*_ANG_XX.flv"))
    shutil.copy(video, video.with_name("1023_WSI_ANG_XX.flv" if "WSI" not in video.name else "1023_TSI_ANG_XX.flv"))
    jobs, _ = planned_jobs(tmp_path, "--configfile", config)
    assert jobs == [("collect_quarantine", "crema_d"), ("index_dataset", "crema_d")]
    run_snakemake(tmp_path, "--cores", "2", "--configfile", config)
    manifest = pd.read_parquet(tmp_path / "results" / "crema_d" / "manifest.parquet")
    assert manifest["clip_id"].str.match(r"1023_(WSI|TSI)_ANG_XX").sum() >= 1

    config = write_config(
        tmp_path,
        {
            "datasets": {
                "crema_d": {"root": str(corpora / "crema_d")},
                "enterface": {"root": str(corpora / "enterface"), "chunks": 8},
                "mafw": {"enabled": False},
            }
        },
    )
    jobs, _ = planned_jobs(tmp_path, "--configfile", config)
    assert {dataset for _, dataset in jobs} == {"enterface"}


def test_invalid_config_fails_before_any_job_naming_key_and_allowed_values(tmp_path):
    config = write_config(tmp_path, {"datasets": {"crema_d": {"votes": "both"}}})
    result = run_snakemake(tmp_path, "-n", "--configfile", config, check=False)
    assert result.returncode != 0
    assert "datasets.crema_d.votes: 'both' is not allowed; allowed values: 'audiovisual', 'face', 'voice', 'none'" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_missing_root_is_a_clear_error_naming_dataset_and_path(tmp_path):
    config = write_config(tmp_path, {"datasets": {"enterface": {"root": "/data/eNTERFACE05"}}})
    result = run_snakemake(tmp_path, "-n", "--configfile", config, check=False)
    assert result.returncode != 0
    assert "dataset 'enterface': root directory '/data/eNTERFACE05' does not exist" in result.stdout + result.stderr


def test_mfaw_alias_is_accepted_with_a_warning(tmp_path):
    config = write_config(tmp_path, {"datasets": {"mfaw": {"enabled": False}}})
    result = run_snakemake(tmp_path, "index", "-n", "--configfile", config)
    assert "datasets.mfaw is read as datasets.mafw" in result.stdout + result.stderr
    assert "dataset=mafw" not in result.stdout


def test_lint_is_clean():
    result = run_snakemake(REPO, "--lint")
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr
