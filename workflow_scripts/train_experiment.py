"""Train one experiment on one test fold, on every speaker (final model) or on all but one corpus of a
mixture (rules train_fold, train_final, train_heldout), on the experiment's Keras backend."""

import contextlib
import sys

from avemotion.layout import COMPILATION_CACHE
from avemotion.logs import script_logging
from avemotion.gpus import use_gpus
from avemotion.train.backend import use_backend
from avemotion.train.settings import experiment_settings

with script_logging(snakemake.log[0]), contextlib.redirect_stdout(sys.stderr):  # Keras' epoch lines into the log
    # Keras reads its backend, and TensorFlow and JAX the GPUs, when first imported: set both first
    # (the GPUs a workstation job takes are named in the log).
    use_gpus(snakemake.resources.gpu, getattr(snakemake.resources, "gres", ""))
    backend = experiment_settings(snakemake.config, snakemake.wildcards.experiment)["training"]["backend"]
    use_backend(backend, compilation_cache=COMPILATION_CACHE)
    from avemotion.train.experiment import run_experiment_fold

    run_experiment_fold(
        snakemake.params.settings,
        snakemake.input.tabular,
        snakemake.input.tfrecord,
        snakemake.params.fold,
        snakemake.params.outdir,
        held_out_dataset=snakemake.params.held_out,
        threads=snakemake.threads,
    )
