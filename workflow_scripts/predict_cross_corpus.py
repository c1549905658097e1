"""Test a single-corpus experiment's final model on another corpus (rule predict_cross_corpus)."""

import contextlib
import sys

from avemotion.gpus import use_gpus
from avemotion.logs import script_logging

with script_logging(snakemake.log[0]), contextlib.redirect_stdout(sys.stderr):
    # Before TensorFlow starts: gpus 0 computes on CPUs, N takes N GPUs of a workstation (in the log).
    use_gpus(snakemake.resources.gpu, getattr(snakemake.resources, "gres", ""))
    from avemotion.train.cross_corpus import predict_other_corpus

    predict_other_corpus(
        snakemake.params.model_dir,
        snakemake.input.tabular,
        snakemake.input.tfrecord,
        snakemake.wildcards.dataset,
        snakemake.params.outdir,
        threads=snakemake.threads,
    )
