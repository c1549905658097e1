"""Fuse one chunk's per-clip artifacts into its tabular and TFRecord shards (rule fuse_chunk)."""

from avemotion.fusion.shards import fuse_chunk
from avemotion.logs import script_logging
from avemotion.preprocess.plan import STAGE_NAMES

with script_logging(snakemake.log[0]):
    fuse_chunk(
        snakemake.input.manifest,
        snakemake.params.chunk,
        {stage: snakemake.input[stage] for stage in STAGE_NAMES},
        snakemake.params.outdir,
        snakemake.params.num_frames,
        snakemake.params.n_mfcc,
        snakemake.output.tabular,
        snakemake.output.tfrecord,
    )
