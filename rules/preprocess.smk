# Per-chunk preprocessing: audio + spectrograms, face features, sampled frames. A real corpus' clip
# files are ancient() inputs and their content digest a param (common.smk: chunk_inputs), so a clip
# copied with a new mtime reruns nothing and a clip with new content reruns its chunk.


rule preprocess_chunk:
    input:
        chunk_inputs,
    output:
        table=STAGE_TABLE,
        quarantine=STAGE_QUARANTINE,
    params:
        stage=lambda wildcards: wildcards.stage,
        root=lambda wildcards: str(dataset_root(wildcards.dataset)),
        outdir=lambda wildcards: dataset_dir(wildcards.dataset),
        settings=lambda wildcards: job_settings(config, wildcards.dataset, wildcards.stage),
        clips=lambda wildcards: clips_of_chunk(wildcards.dataset, wildcards.chunk),
        sources=chunk_sources_digest,
    priority: lambda wildcards: STAGE_PRIORITY[wildcards.stage]
    log:
        job_log("preprocess_chunk", "{dataset}/{stage}/{chunk}"),
    benchmark:
        job_benchmark("preprocess_chunk", "{dataset}/{stage}/{chunk}")
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/preprocess_chunk.py"
