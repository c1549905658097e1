"""The Slurm profile on a real one-node Slurm cluster started by the test (tests/slurm_cluster.py):
preprocessing and fusion run as sbatch jobs and give the local run's results, and a failing job
fails the run within a bounded time, naming the rule."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, demo_config, job_blocks
from slurm_cluster import SlurmCluster, SlurmUnavailable

PROFILE = REPO / "profiles" / "slurm"
# One corpus keeps the test within a few minutes on 2 cores (every job pays two Snakemake start-ups
# inside Slurm); CREMA-D has quarantined clips from the index and from every preprocessing stage.
DATASET = "crema_d"
# What this one-node cluster needs on top of the profile: its 2 CPUs as the per-job cap, and status
# checks every few seconds instead of the profile's 40 (the cluster keeps finished jobs for 600 s).
MACHINE_OVERRIDES = ("--cores", "2", "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except SlurmUnavailable as reason:
        pytest.skip(f"no Slurm cluster: {reason}")
    try:
        yield cluster
    finally:
        cluster.stop()


def snakemake(workdir: Path, *args: str, timeout: float, snakefile: Path = REPO / "Snakefile"):
    command = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--profile", str(PROFILE), *MACHINE_OVERRIDES, *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout)


def test_preprocessing_and_fusion_run_as_slurm_jobs_and_match_the_local_run(slurm, demo_run, tmp_path):
    # A fresh working directory with the demo run's generated corpus (hard links: the generator is
    # seeded, so regenerating it gives the same files) and the demo run's config, one corpus only.
    work = tmp_path / "work"
    (work / "resources" / "demo").mkdir(parents=True)
    shutil.copytree(demo_run / "resources" / "demo" / DATASET, work / "resources" / "demo" / DATASET, copy_function=os.link)
    os.link(demo_run / "resources" / "demo" / f"{DATASET}_truth.parquet", work / "resources" / "demo" / f"{DATASET}_truth.parquet")
    shutil.copy(demo_config(demo_run), demo_config(work))
    only = work / "one_dataset.yaml"
    others = {name: {"enabled": False} for name in ("crema_d", "enterface", "mafw") if name != DATASET}
    only.write_text(yaml.safe_dump({"experiments": [], "datasets": others}))

    run = snakemake(work, "fuse", "--configfile", demo_config(work), str(only), timeout=480)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]

    # Every job but the `fuse` target (no action) was submitted, and ran in a Slurm job of its own
    # (Snakemake 9.27's job groups put every fuse job in one and ran each twice): each Slurm job's
    # log shows the job it ran, and slurmctld lists it COMPLETED.
    submitted = sorted(job_blocks(log, "rule"))
    assert [job for job in job_blocks(log, "localrule")] == [("fuse", "")]
    rules = {rule for rule, _ in submitted}
    assert {"index_dataset", "preprocess_chunk", "collect_quarantine", "fuse_chunk"} <= rules, submitted
    assert len([job for job in submitted if job[0] == "preprocess_chunk"]) == 12  # 3 stages x 4 chunks
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    slurm_jobs = {job["id"]: job for job in slurm.jobs() if job["name"] == run_id}
    submissions = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", log)
    assert submissions and len(slurm_jobs) == len(submissions)
    ran_in_slurm, kinds = [], set()
    for slurm_id, slurm_log in submissions:
        job = slurm_jobs[slurm_id]
        assert job["state"] == "COMPLETED", job
        ran = job_blocks(Path(slurm_log).read_text(), "localrule")
        ran_in_slurm += ran
        # the profile's requests: 4 GB for an index, a preprocessing chunk and a fuse job, the
        # default 2 GB for collecting a quarantine table
        kind = Path(slurm_log).relative_to(work / ".snakemake" / "slurm_logs").parts[0]  # rule_<rule>
        kinds.add(kind)
        memory = "2000M" if kind == "rule_collect_quarantine" else "4000M"
        assert len(ran) == 1 and job["cpus"] == "1" and job["memory"] == memory, (kind, job)
    assert sorted(ran_in_slurm) == submitted and len(submissions) == len(submitted)
    assert kinds == {"rule_index_dataset", "rule_preprocess_chunk", "rule_collect_quarantine", "rule_fuse_chunk"}, kinds

    # The same results as the local run of the demo_run fixture.
    ours, local = work / "results" / DATASET, demo_run / "results" / DATASET
    pd.testing.assert_frame_equal(pd.read_parquet(ours / "manifest.parquet"), pd.read_parquet(local / "manifest.parquet"))
    pd.testing.assert_frame_equal(pd.read_csv(ours / "quarantine.csv"), pd.read_csv(local / "quarantine.csv"))
    chunks = sorted(path.name for path in (local / "shards" / "tabular").glob("*.parquet"))
    assert chunks and sorted(path.name for path in (ours / "shards" / "tabular").glob("*.parquet")) == chunks
    for name in chunks:
        pd.testing.assert_frame_equal(pd.read_parquet(ours / "shards" / "tabular" / name), pd.read_parquet(local / "shards" / "tabular" / name))
        record = name.replace(".parquet", ".tfrecord")
        assert (ours / "shards" / "tfrecord" / record).read_bytes() == (local / "shards" / "tfrecord" / record).read_bytes(), record


FAILING = """
rule all:
    input: "done.txt"

rule fails_on_purpose:
    output: "done.txt"
    shell: "echo 'failing on purpose' >&2; exit 1"
"""


def test_a_failing_job_fails_the_run_and_names_the_rule(slurm, tmp_path):
    (tmp_path / "Snakefile").write_text(FAILING)
    # without the profile's retry, which would only resubmit it once more
    run = snakemake(tmp_path, "--retries", "0", timeout=180, snakefile=tmp_path / "Snakefile")
    log = run.stdout + run.stderr
    assert run.returncode != 0, log[-4000:]
    assert "Error in rule fails_on_purpose" in log, log[-4000:]
    assert not (tmp_path / "done.txt").exists()
    # It ran as a Slurm job, which Slurm marks FAILED, and the plugin kept its log.
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    states = [job["state"] for job in slurm.jobs() if job["name"] == run_id]
    assert states == ["FAILED"], states
    logs = list((tmp_path / ".snakemake" / "slurm_logs" / "rule_fails_on_purpose").glob("*.log"))
    assert logs and "failing on purpose" in "".join(path.read_text() for path in logs)
