"""Cross-corpus matrix and leave-one-corpus-out table with their heatmaps (rule cross_corpus)."""

from avemotion.evaluate.cross_corpus import write_cross_corpus
from avemotion.layout import CROSS_CORPUS_OUTPUTS
from avemotion.logs import script_logging

with script_logging(snakemake.log[0]):
    entries = snakemake.params.entries
    write_cross_corpus(
        entries["diagonal"],
        entries["cross"],
        entries["heldout"],
        snakemake.params.datasets,
        {key: snakemake.output[key] for key in CROSS_CORPUS_OUTPUTS},
        snakemake.params.manifests,
    )
