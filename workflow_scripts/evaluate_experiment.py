"""Metrics over an experiment's test folds, summary.json/.csv and plots (rule evaluate_experiment)."""

from avemotion.evaluate.summary import evaluate_experiment
from avemotion.layout import EXPERIMENT_OUTPUTS
from avemotion.logs import script_logging

with script_logging(snakemake.log[0]):
    evaluate_experiment(
        snakemake.params.folders,
        snakemake.wildcards.experiment,
        {key: snakemake.output[key] for key in EXPERIMENT_OUTPUTS},
        final=snakemake.params.final,
        manifests=snakemake.input.manifests,
    )
