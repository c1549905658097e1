"""Train folds 1 and 2 of test_train_experiment's learnable shards on JAX with one compilation cache,
and print the compiled steps each fold added to it (run as a subprocess: a process has one backend).

Seven speakers in three folds give folds of other sizes (so other lr schedules) and other face
statistics, as a real experiment's folds have.

    python tests/train_folds_on_jax.py ROOT
"""

from __future__ import annotations

import sys
from pathlib import Path

from avemotion.train.backend import use_backend


def main(root) -> None:
    root = Path(root)
    cache = root / "cache"
    use_backend("jax", cache)  # before Keras is imported, as a training job does
    from test_train_experiment import learnable_shards, settings_for  # imports Keras

    from avemotion.train.experiment import run_experiment_fold

    tabular, tfrecord, _ = learnable_shards(root / "results", speakers=7, face_noise=1.0)
    settings = {**settings_for("hybrid", epochs=2), "folds": [1, 2]}
    seen: set[str] = set()
    for fold in (1, 2):
        run_experiment_fold(settings, tabular, tfrecord, fold, root / f"fold_{fold}")
        entries = {path.name for path in cache.iterdir()}
        steps = sorted(name.split("-")[0] for name in entries - seen if name.split("-")[0].endswith("_step"))
        print(f"fold {fold} compiled: {' '.join(steps) or 'nothing new'}", flush=True)
        seen = entries


if __name__ == "__main__":
    main(*sys.argv[1:])
