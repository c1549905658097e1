"""results/report/index.html and its dataset tables (rule build_report)."""

from avemotion.evaluate.report import build_report
from avemotion.logs import script_logging

with script_logging(snakemake.log[0]):
    build_report(
        snakemake.params.datasets,
        snakemake.params.experiments,
        snakemake.params.cross,
        snakemake.params.previews,
        snakemake.output.html,
        snakemake.output.datasets,
        snakemake.output.quarantine,
    )
