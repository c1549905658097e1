# Per-chunk preprocessing: audio + spectrograms, face features, sampled frames.

from avemotion.preprocess.sources import sources_digest


# A corpus copied without its times gives every clip a new mtime and the same bytes. So a real
# corpus' files (chunk_inputs' paths outside results/: not the demo folder, not the face chunk table
# that frames wait for) are ancient() inputs, and the digest of their content is a param: a clip
# reruns its chunk jobs (and the fusion and trainings after them) when its content changes, and
# only then. The digests are cached per file under results/{dataset}/preprocess/.
rule preprocess_chunk:
    input:
        lambda wildcards: [
            path if is_demo(wildcards.dataset) or path.startswith("results/") else ancient(path)
            for path in chunk_inputs(wildcards)
        ],
    output:
        table="results/{dataset}/preprocess/{stage}/{chunk}.parquet",
        quarantine="results/{dataset}/quarantine/{stage}/{chunk}.csv",
    params:
        stage=lambda wildcards: wildcards.stage,
        root=lambda wildcards: str(dataset_root(wildcards.dataset)),
        outdir=lambda wildcards: f"results/{wildcards.dataset}",
        settings=lambda wildcards: preprocess_settings(config, wildcards.dataset)[wildcards.stage],
        clips=lambda wildcards: clips_of_chunk(wildcards.dataset, wildcards.chunk),
        sources=lambda wildcards: sources_digest(
            [] if is_demo(wildcards.dataset) else [path for path in chunk_inputs(wildcards) if not path.startswith("results/")],
            f"results/{wildcards.dataset}/preprocess/source_digests.json",
        ),
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
