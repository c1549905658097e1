# Training: one job per experiment and test fold, plus a final model trained on every speaker.


TRAIN_OUTPUTS = ("model.keras", "predictions.parquet", "metrics.json", "history.csv", "settings.json")


rule train_fold:
    input:
        tabular=experiment_shards("tabular"),
        tfrecord=experiment_shards("tfrecord"),
    output:
        **{name.split(".")[0]: f"results/experiments/{{experiment}}/fold_{{fold}}/{name}" for name in TRAIN_OUTPUTS},
    params:
        settings=lambda wildcards: experiment_settings(config, wildcards.experiment),
        fold=lambda wildcards: int(wildcards.fold),
        outdir=lambda wildcards, output: os.path.dirname(output.model),
    # Snakemake caps threads at --cores (a Slurm profile may set them per rule).
    threads: 8
    resources:
        gpu=lambda wildcards: experiment_settings(config, wildcards.experiment)["training"]["gpus"],
    log:
        "results/logs/train/{experiment}/fold_{fold}.log",
    benchmark:
        "results/benchmarks/train/{experiment}/fold_{fold}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/train_experiment.py"


rule train_final:
    input:
        tabular=experiment_shards("tabular"),
        tfrecord=experiment_shards("tfrecord"),
    output:
        **{name.split(".")[0]: f"results/experiments/{{experiment}}/final/{name}" for name in TRAIN_OUTPUTS},
    params:
        settings=lambda wildcards: experiment_settings(config, wildcards.experiment),
        fold=None,
        outdir=lambda wildcards, output: os.path.dirname(output.model),
    # Snakemake caps threads at --cores (a Slurm profile may set them per rule).
    threads: 8
    resources:
        gpu=lambda wildcards: experiment_settings(config, wildcards.experiment)["training"]["gpus"],
    log:
        "results/logs/train/{experiment}/final.log",
    benchmark:
        "results/benchmarks/train/{experiment}/final.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/train_experiment.py"
