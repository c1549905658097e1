"""Run one preprocessing stage over one chunk of clips (rule preprocess_chunk)."""

from avemotion.logs import script_logging
from avemotion.preprocess.chunk import run_chunk
from avemotion.preprocess.stages import STAGES

with script_logging(snakemake.log[0]):
    stage = STAGES[snakemake.params.stage](snakemake.params.root, snakemake.params.outdir, snakemake.params.settings)
    run_chunk(stage, snakemake.params.clips, snakemake.output.table, snakemake.output.quarantine)
