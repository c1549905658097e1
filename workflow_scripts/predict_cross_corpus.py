"""Test a single-corpus experiment's final model on another corpus (rule predict_cross_corpus)."""

import contextlib
import sys

from avemotion.train.backend import use_gpus

use_gpus(snakemake.resources.gpu, getattr(snakemake.resources, "gres", ""))  # before TensorFlow starts: gpus 0 computes on CPUs

from avemotion.logs import script_logging  # noqa: E402
from avemotion.train.cross_corpus import predict_other_corpus  # noqa: E402

with script_logging(snakemake.log[0]), contextlib.redirect_stdout(sys.stderr):
    predict_other_corpus(
        snakemake.params.model_dir,
        snakemake.input.tabular,
        snakemake.input.tfrecord,
        snakemake.wildcards.dataset,
        snakemake.params.outdir,
        threads=snakemake.threads,
    )
