# Training: one job per experiment and test fold, a final model trained on every speaker, and for
# mixtures one leave-one-corpus-out model per dataset. Final models of single-corpus experiments
# are also tested on the other corpora (cross-corpus).


rule train_fold:
    input:
        tabular=experiment_shards("tabular"),
        tfrecord=experiment_shards("tfrecord"),
    output:
        **train_outputs("fold_{fold}"),
    params:
        settings=lambda wildcards: model_settings(config, wildcards.experiment),
        fold=lambda wildcards: int(wildcards.fold),
        held_out=None,
        outdir=lambda wildcards, output: os.path.dirname(output.model),
    # Snakemake caps threads at --cores (a Slurm profile may set them per rule).
    threads: training_threads
    resources:
        gpu=training_gpus,
    log:
        "results/logs/train/{experiment}/fold_{fold}.log",
    benchmark:
        "results/benchmarks/train/{experiment}/fold_{fold}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/train_experiment.py"


use rule train_fold as train_final with:
    output:
        **train_outputs("final"),
    params:
        settings=lambda wildcards: model_settings(config, wildcards.experiment),
        fold=None,
        held_out=None,
        outdir=lambda wildcards, output: os.path.dirname(output.model),
    log:
        "results/logs/train/{experiment}/final.log",
    benchmark:
        "results/benchmarks/train/{experiment}/final.tsv"


use rule train_fold as train_heldout with:
    output:
        **train_outputs("heldout_{held_out}"),
    params:
        settings=lambda wildcards: model_settings(config, wildcards.experiment),
        fold=None,
        held_out=lambda wildcards: wildcards.held_out,
        outdir=lambda wildcards, output: os.path.dirname(output.model),
    log:
        "results/logs/train/{experiment}/heldout_{held_out}.log",
    benchmark:
        "results/benchmarks/train/{experiment}/heldout_{held_out}.tsv"


rule predict_cross_corpus:
    input:
        model="results/experiments/{experiment}/final/model.keras",
        settings="results/experiments/{experiment}/final/settings.json",
        late_weights="results/experiments/{experiment}/final/late_weights.json",
        tabular=lambda wildcards: per_chunk_of(wildcards.dataset, "results/{dataset}/shards/tabular/{chunk}.parquet"),
        tfrecord=lambda wildcards: per_chunk_of(wildcards.dataset, "results/{dataset}/shards/tfrecord/{chunk}.tfrecord"),
    output:
        predictions="results/experiments/{experiment}/cross_{dataset}/predictions.parquet",
        metrics="results/experiments/{experiment}/cross_{dataset}/metrics.json",
    params:
        model_dir=lambda wildcards, input: os.path.dirname(input.model),
        outdir=lambda wildcards, output: os.path.dirname(output.metrics),
    threads: training_threads
    resources:
        gpu=training_gpus,
    log:
        "results/logs/train/{experiment}/cross_{dataset}.log",
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/predict_cross_corpus.py"
