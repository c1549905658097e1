"""The demo's acceptance figures, read from a finished run's artifacts (nothing is recomputed here).

Per experiment (results/experiments/*/summary.json, written by `snakemake evaluate` from the
predictions): the fused model's UAR and valence/arousal CCC, mean over its test folds, and each
branch's UAR beside chance (1 / number of classes); the targets of the training issue: fused UAR >=
0.7, video-only and audio-only branches clearly above chance, VA CCC >= 0.5. Then the run's wall
time from Snakemake's log of the newest run that trained (first to last timestamp) and the sum of the training jobs' run times
(results/benchmarks/train/), against the 20-minute target.

    .venv/bin/python benchmarks/demo.py [WORKDIR]     # WORKDIR: where `make demo` ran (default .)

Prints `name: value` lines only.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from pathlib import Path

from avemotion.layout import EXPERIMENT_OUTPUTS, job_benchmark

TARGET_MINUTES = 20
TIMESTAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", re.M)
TRAINED = re.compile(r"^Finished jobid: \d+ \(Rule: train_fold\)", re.M)  # a job that trained a test fold's model


def report(name: str, value) -> None:
    if isinstance(value, float):
        value = f"{value:.3f}"
    print(f"{name}: {value}", flush=True)


def mean_of(metrics: dict, key: str):
    entry = metrics.get(key)
    return entry["mean"] if entry else None


def experiment_figures(summary: dict) -> None:
    name = summary["experiment"]
    chance = 1 / len(summary["labels"])
    metrics = summary["overall"]["metrics"]
    report(f"{name}.fusion", f"{summary['fusion']} on {'+'.join(summary['datasets'])}, folds {summary['folds']}")
    report(f"{name}.uar", mean_of(metrics, "uar"))
    for dimension in ("valence", "arousal"):
        report(f"{name}.{dimension}_ccc", mean_of(metrics, f"{dimension}.ccc"))
    for branch, entry in (summary.get("branches") or {}).items():
        uar = mean_of(entry["metrics"], "uar")
        report(f"{name}.{branch}_branch_uar", f"{uar:.3f} (chance {chance:.3f}, ratio {uar / chance:.2f})")


def run_minutes(workdir: Path) -> float | None:
    """Wall time of the newest Snakemake run in ``workdir`` that trained models (its log's first to
    last timestamp): the demo's, not a later predict, report or dry run's."""
    for log in sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"), reverse=True):
        text = log.read_text(errors="replace")
        if not TRAINED.search(text):
            continue
        stamps = [datetime.strptime(" ".join(s.split()), "%a %b %d %H:%M:%S %Y") for s in TIMESTAMP.findall(text)]
        return (stamps[-1] - stamps[0]).total_seconds() / 60 if len(stamps) > 1 else None
    return None


def main() -> None:
    workdir = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    summaries = sorted(workdir.glob(EXPERIMENT_OUTPUTS["summary"].format(experiment="*")))
    if not summaries:
        sys.exit(f"no results/experiments/*/summary.json under {workdir}: run `make demo` (or snakemake evaluate) first")
    for path in summaries:
        experiment_figures(json.loads(path.read_text()))
    train_seconds = 0.0
    for path in workdir.glob(job_benchmark("train", "*/*")):
        train_seconds += float(path.read_text().splitlines()[1].split("\t")[0])
    report("training_jobs_minutes_summed", train_seconds / 60)
    minutes = run_minutes(workdir)
    if minutes is not None:
        report("training_run_minutes", minutes)
        report("training_run_vs_target_ratio", minutes / TARGET_MINUTES)


if __name__ == "__main__":
    main()
