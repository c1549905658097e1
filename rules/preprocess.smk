# Per-chunk preprocessing: audio + spectrograms, face features, sampled frames.


rule preprocess_chunk:
    input:
        chunk_inputs,
    output:
        table="results/{dataset}/preprocess/{stage}/{chunk}.parquet",
        quarantine="results/{dataset}/quarantine/{stage}/{chunk}.csv",
    params:
        stage=lambda wildcards: wildcards.stage,
        root=lambda wildcards: str(dataset_root(wildcards.dataset)),
        outdir=lambda wildcards: f"results/{wildcards.dataset}",
        settings=lambda wildcards: preprocess_settings(config, wildcards.dataset)[wildcards.stage],
        clips=lambda wildcards: clips_of_chunk(wildcards.dataset, wildcards.chunk),
    # Face chunks are the long jobs and frames wait for them: start them first, so the short audio
    # chunks fill the cores at the end instead of one core idling behind the last face chunk.
    priority: lambda wildcards: {"face": 2, "frames": 1, "audio": 0}[wildcards.stage]
    log:
        "results/logs/preprocess_chunk/{dataset}/{stage}/{chunk}.log",
    benchmark:
        "results/benchmarks/preprocess_chunk/{dataset}/{stage}/{chunk}.tsv"
    conda:
        "../envs/preprocess.yaml"
    script:
        "../workflow_scripts/preprocess_chunk.py"
