"""Index one dataset into its manifest and index-stage quarantine (rule index_dataset)."""

from avemotion.datasets import index_dataset, write_index
from avemotion.logs import script_logging

with script_logging(snakemake.log[0]):
    manifest, quarantine = index_dataset(
        snakemake.wildcards.dataset,
        snakemake.params.root,
        snakemake.params.settings,
        snakemake.params.coordinates,
    )
    write_index(manifest, quarantine, snakemake.output.manifest, snakemake.output.quarantine)
