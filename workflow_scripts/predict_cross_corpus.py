"""Test a single-corpus experiment's final model on another corpus (rule predict_cross_corpus)."""

import contextlib
import sys

from avemotion.logs import script_logging
from avemotion.train.cross_corpus import predict_other_corpus

with script_logging(snakemake.log[0]), contextlib.redirect_stdout(sys.stderr):
    predict_other_corpus(
        snakemake.params.model_dir,
        snakemake.input.tabular,
        snakemake.input.tfrecord,
        snakemake.wildcards.dataset,
        snakemake.params.outdir,
        threads=snakemake.threads,
    )
