"""Predict every new clip with one final model (rule predict_clips); unreadable clips get error rows."""

import contextlib
import logging
import sys

from avemotion.gpus import use_gpus
from avemotion.logs import script_logging

with script_logging(snakemake.log[0]), contextlib.redirect_stdout(sys.stderr):
    # Before TensorFlow starts: gpus 0 computes on CPUs, N takes N GPUs of a workstation (in the log).
    use_gpus(snakemake.resources.gpu, getattr(snakemake.resources, "gres", ""))
    from avemotion.inference import predict_files, write_predictions
    from avemotion.model.runtime import configure_threads

    configure_threads(snakemake.threads)
    table = predict_files(snakemake.params.model_dir, snakemake.input.clips)
    write_predictions(table, snakemake.output[0])
    failed = table.loc[table["error"] != "", ["clip", "error"]]
    logging.getLogger("predict").info("%d clips predicted, %d not: %s", len(table) - len(failed), len(failed), failed.to_dict("records"))
