"""Annotated previews of a few clips of one dataset (rule dataset_previews)."""

from avemotion.evaluate.previews import dataset_previews
from avemotion.logs import script_logging

with script_logging(snakemake.log[0]):
    dataset_previews(
        snakemake.input.tabular,
        snakemake.input.frames,
        snakemake.input.face,
        snakemake.params.outdir,
        snakemake.params.margin,
        snakemake.output[0],
        snakemake.params.clips,
    )
