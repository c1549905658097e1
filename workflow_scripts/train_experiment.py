"""Train one experiment on one test fold, on every speaker (final model) or on all but one corpus of a
mixture (rules train_fold, train_final, train_heldout)."""

import contextlib
import sys

from avemotion.logs import script_logging
from avemotion.train.experiment import run_experiment_fold

with script_logging(snakemake.log[0]), contextlib.redirect_stdout(sys.stderr):  # Keras' epoch lines into the log
    run_experiment_fold(
        snakemake.params.settings,
        snakemake.input.tabular,
        snakemake.input.tfrecord,
        snakemake.params.fold,
        snakemake.params.outdir,
        held_out_dataset=snakemake.params.held_out,
        threads=snakemake.threads,
    )
