"""Train one fold of test_train_experiment's learnable shards on the Keras backend that KERAS_BACKEND
names (run as a subprocess: a process has one backend), so tests can compare backends step for step.

The two backends draw random numbers differently (initial weights, dropout masks), so the first run
saves its model's initial weights to INIT and later runs start from them, and dropout is off; what
is left to differ is the arithmetic. The input pipeline is tf.data with the same seeds on both.

    KERAS_BACKEND=jax python tests/train_fold_on_backend.py SETTINGS.json TABULAR TFRECORD OUTDIR INIT
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

from avemotion.train import experiment


def from_initial_weights(build, init: Path):
    """``build`` (experiment.build_model) that saves the first model's initial weights to ``init``
    when it does not exist yet, and otherwise loads them."""

    @functools.wraps(build)
    def built(*args, **kwargs):
        model = build(*args, **kwargs)
        if init.exists():
            model.load_weights(init)
        else:
            model.save_weights(init)
        return model

    return built


def main(settings_path, tabular, tfrecord, outdir, init) -> None:
    logging.basicConfig(level=logging.INFO, force=True)  # the job's own lines (its backend among them) on stderr
    experiment.build_fusion_model = functools.partial(experiment.build_fusion_model, dropout=0.0)
    experiment.build_model = from_initial_weights(experiment.build_model, Path(init))
    settings = json.loads(Path(settings_path).read_text())
    experiment.run_experiment_fold(settings, [tabular], [tfrecord], 1, outdir)


if __name__ == "__main__":
    main(*sys.argv[1:])
