# Training: one job per experiment and test fold, a final model trained on every speaker, and for
# mixtures one leave-one-corpus-out model per dataset. Final models of single-corpus experiments
# are also tested on the other corpora (cross-corpus).


rule train_fold:
    input:
        tabular=experiment_shards("tabular"),
        tfrecord=experiment_shards("tfrecord"),
        checked=runs_checked,
        weights=model_weights,
    output:
        **train_outputs(fold_run("{fold}")),
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
        job_log("train", "{experiment}/fold_{fold}"),
    benchmark:
        job_benchmark("train", "{experiment}/fold_{fold}")
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/train_experiment.py"


use rule train_fold as train_final with:
    output:
        **train_outputs(FINAL_RUN),
    params:
        settings=lambda wildcards: model_settings(config, wildcards.experiment),
        fold=None,
        held_out=None,
        outdir=lambda wildcards, output: os.path.dirname(output.model),
    log:
        job_log("train", "{experiment}/final"),
    benchmark:
        job_benchmark("train", "{experiment}/final")


use rule train_fold as train_heldout with:
    output:
        **train_outputs(heldout_run("{held_out}")),
    params:
        settings=lambda wildcards: model_settings(config, wildcards.experiment),
        fold=None,
        held_out=lambda wildcards: wildcards.held_out,
        outdir=lambda wildcards, output: os.path.dirname(output.model),
    log:
        job_log("train", "{experiment}/heldout_{held_out}"),
    benchmark:
        job_benchmark("train", "{experiment}/heldout_{held_out}")


rule predict_cross_corpus:
    input:
        **final_model_files("{experiment}"),
        tabular=lambda wildcards: indexed_shards(wildcards.dataset, "tabular"),
        tfrecord=lambda wildcards: indexed_shards(wildcards.dataset, "tfrecord"),
        indexed=after_index(experiment_datasets),  # the model's corpora
    output:
        predictions=run_file("{experiment}", cross_run("{dataset}"), PREDICTIONS_FILE),
        metrics=run_file("{experiment}", cross_run("{dataset}"), METRICS_FILE),
    params:
        model_dir=lambda wildcards, input: os.path.dirname(input.model),
        outdir=lambda wildcards, output: os.path.dirname(output.metrics),
    threads: training_threads
    resources:
        gpu=training_gpus,
    log:
        job_log("train", "{experiment}/cross_{dataset}"),
    benchmark:
        job_benchmark("train", "{experiment}/cross_{dataset}")
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/predict_cross_corpus.py"
