"""Majority-class and logistic-regression baselines on an experiment's folds (rule evaluate_baselines)."""

from avemotion.evaluate.baselines import evaluate_baselines
from avemotion.logs import script_logging

with script_logging(snakemake.log[0]):
    evaluate_baselines(snakemake.input.tabular, snakemake.params.folders, snakemake.output.json, snakemake.output.csv)
