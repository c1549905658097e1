"""Generate one demo corpus (rule demo_corpus)."""

from avemotion.demo.corpora import generate_corpus
from avemotion.logs import script_logging

with script_logging(snakemake.log[0]):
    generate_corpus(
        snakemake.wildcards.dataset,
        root=snakemake.output.corpus,
        truth_file=snakemake.output.truth,
        seed=snakemake.params.seed,
    )
