"""Merge the quarantine parts of every stage into results/{dataset}/quarantine.csv."""

from avemotion.io import write_csv
from avemotion.logs import script_logging
from avemotion.quarantine import merge_quarantine

with script_logging(snakemake.log[0]):
    write_csv(merge_quarantine(snakemake.input), snakemake.output[0])
