# Per-chunk fusion: one chunk's per-clip artifacts into a tabular (Parquet) and a TFRecord shard.

from avemotion.fusion.shards import FUSION_REVISION, chunk_rows_digest


# Inputs are the chunk's preprocessing tables, which are rewritten whenever a clip's artifacts are,
# and the manifest as ancient(): a manifest rewritten by the index reruns only the chunks whose own
# rows changed (manifest_rows, a digest of them, is a param, and params changes rerun a job).
rule fuse_chunk:
    input:
        manifest=ancient(MANIFEST),
        **{stage: STAGE_TABLE.replace("{stage}", stage) for stage in STAGE_NAMES},
    output:
        **SHARDS,
    params:
        chunk=lambda wildcards: int(wildcards.chunk),
        outdir=lambda wildcards: dataset_dir(wildcards.dataset),
        num_frames=lambda wildcards: preprocess_settings(config, wildcards.dataset)["frames"]["num_frames"],
        n_mfcc=lambda wildcards: preprocess_settings(config, wildcards.dataset)["audio"]["n_mfcc"],
        manifest_rows=lambda wildcards: chunk_rows_digest(read_manifest(manifest_of(wildcards.dataset)), wildcards.chunk),
        fusion_revision=FUSION_REVISION,
    log:
        job_log("fuse_chunk", "{dataset}/{chunk}"),
    benchmark:
        job_benchmark("fuse_chunk", "{dataset}/{chunk}")
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/fuse_chunk.py"
