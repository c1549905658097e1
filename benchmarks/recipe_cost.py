"""What a config's experiments cost: training jobs, preprocessing jobs and GPU hours, from the
corpora's indexed manifests (run `snakemake index` with the same config files first).

GPU time per training job = epochs x (training clips / CLIPS_PER_S + validation clips / (3 x
CLIPS_PER_S)): a training step costs about three forward passes, and validation runs one forward
pass per clip per epoch. CLIPS_PER_S is a measured training step throughput (README, "Throughput":
VideoMAE base hybrid, bf16, batch 8, one H100, 16 frames of 224 px: 79.6); at 160 px the step
handles half the tokens, so the figure is an upper bound there.

    .venv/bin/python benchmarks/recipe_cost.py [--clips-per-s 79.6] CONFIG...   # in the working directory

Prints `name: value` lines only.
"""

from __future__ import annotations

import argparse

from snakemake.utils import validate

from avemotion.config import SCHEMA_PATH, enabled_datasets, load_config, prepare_config
from avemotion.layout import manifest_path
from avemotion.preprocess.plan import STAGE_NAMES, read_manifest
from avemotion.train.plan import training_runs
from avemotion.train.settings import experiment_settings

MEASURED_BASE_CLIPS_PER_S = 79.6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", help="config files, in the order given to --configfile")
    parser.add_argument("--clips-per-s", type=float, default=MEASURED_BASE_CLIPS_PER_S)
    args = parser.parse_args()
    config = load_config(*args.configs)
    prepare_config(config, warn=lambda message: None)
    validate(config, schema=str(SCHEMA_PATH))
    datasets = enabled_datasets(config)
    manifests = {name: read_manifest(manifest_path(name)).copy() for name in datasets}
    chunks = sum(config["datasets"][name]["chunks"] for name in datasets)
    print(f"clips: {sum(len(manifest) for manifest in manifests.values())}")
    print(f"preprocess_jobs: {len(STAGE_NAMES) * chunks}")
    print(f"fuse_jobs: {chunks}")
    runs = training_runs(config, manifests)
    seconds = 0.0
    for run in runs:
        epochs = experiment_settings(config, run["experiment"])["training"]["epochs"]
        seconds += epochs * (run["train"] + run["validation"] / 3) / args.clips_per_s
    print(f"training_jobs: {len(runs)}")
    print(f"training_clips_per_s: {args.clips_per_s}")
    print(f"gpu_hours: {seconds / 3600:.1f}")


if __name__ == "__main__":
    main()
