# Demo corpora and dataset indexing.


rule demo_corpus:
    output:
        corpus=directory(str(DEMO_DIR / "{dataset}")),  # where is_demo() looks for a generated corpus
        truth=str(DEMO_DIR / "{dataset}_truth.parquet"),
    params:
        seed=config["demo"]["seed"],
    log:
        job_log("demo_corpus", "{dataset}"),
    benchmark:
        job_benchmark("demo_corpus", "{dataset}")
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/make_demo_corpus.py"


# A checkpoint: which clips each preprocessing chunk holds is known only once the manifest exists.
checkpoint index_dataset:
    input:
        index_inputs,
    output:
        manifest=MANIFEST,
        quarantine=INDEX_QUARANTINE,
    params:
        root=lambda wildcards: str(dataset_root(wildcards.dataset)),
        settings=lambda wildcards: index_settings(wildcards.dataset),
        coordinates=sorted_keys(config["labels"]["coordinates"]),  # the same classes in another order: the same index
    log:
        job_log("index_dataset", "{dataset}"),
    benchmark:
        job_benchmark("index_dataset", "{dataset}")
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/index_dataset.py"


rule collect_quarantine:
    input:
        quarantine_parts,
    output:
        QUARANTINE,
    log:
        job_log("collect_quarantine", "{dataset}"),
    benchmark:
        job_benchmark("collect_quarantine", "{dataset}")
    conda:
        "../envs/data.yaml"
    script:
        "../workflow_scripts/collect_quarantine.py"
