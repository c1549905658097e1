# Evaluation and report: per experiment, metrics recomputed from every test fold's predictions (mean
# and std over folds, per branch), plots and baselines on the same folds; cross-corpus and
# leave-one-corpus-out tables; annotated previews per dataset; results/report/index.html.
# Every job runs in the light report environment (no TensorFlow). The paths (and which heldout_ and
# cross_ folders an experiment has) come from avemotion.layout and avemotion.evaluate.targets.

from avemotion.evaluate.targets import (
    PREVIEW_CLIPS,
    cross_corpus_entries,
    cross_corpus_inputs,
    evaluation_targets,
    final_files,
    final_folder,
    fold_files,
    fold_folders,
    report_datasets,
    report_experiments,
    report_previews,
    report_targets,
    training_targets,
)


rule evaluate_experiment:
    input:
        predictions=lambda wildcards: fold_files(config, wildcards.experiment, PREDICTIONS_FILE),
        metrics=lambda wildcards: fold_files(config, wildcards.experiment, METRICS_FILE),
        settings=lambda wildcards: fold_files(config, wildcards.experiment, SETTINGS_FILE),
        history=lambda wildcards: fold_files(config, wildcards.experiment, HISTORY_FILE),
        final=lambda wildcards: final_files(config, wildcards.experiment, PREDICTIONS_FILE),
        indexed=after_index(experiment_datasets),
        # the clips each test fold lists (the protocol figures); ancient: an index rerun that rewrites a
        # manifest unchanged evaluates nothing again (changed clips reach evaluation through the folds)
        manifests=lambda wildcards: [ancient(manifest_path(dataset)) for dataset in experiment_datasets(wildcards)],
    output:
        summary=EXPERIMENT_OUTPUTS["summary"],
        table=report(
            EXPERIMENT_OUTPUTS["table"],
            category="Experiments",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "content": "metrics per fold (CSV)"},
        ),
        confusion=report(
            EXPERIMENT_OUTPUTS["confusion"],
            category="Experiments",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "content": "confusion matrix"},
        ),
        curves=report(
            EXPERIMENT_OUTPUTS["curves"],
            category="Experiments",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "content": "training curves"},
        ),
        va=report(
            EXPERIMENT_OUTPUTS["va"],
            category="Experiments",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "content": "valence/arousal"},
        ),
    params:
        folders=lambda wildcards: fold_folders(config, wildcards.experiment),
        final=lambda wildcards: final_folder(config, wildcards.experiment),
    log:
        job_log("evaluate_experiment", "{experiment}"),
    benchmark:
        job_benchmark("evaluate_experiment", "{experiment}")
    conda:
        "../envs/report.yaml"
    script:
        "../workflow_scripts/evaluate_experiment.py"


# The baselines fit and test on each fold's own split (SPLIT_FILE, read from the fold's folder).
rule evaluate_baselines:
    input:
        tabular=experiment_shards("tabular"),
        splits=lambda wildcards: fold_files(config, wildcards.experiment, SPLIT_FILE),
    output:
        json=BASELINE_OUTPUTS["json"],
        csv=report(
            BASELINE_OUTPUTS["csv"],
            category="Experiments",
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "content": "baselines (CSV)"},
        ),
    params:
        folders=lambda wildcards: fold_folders(config, wildcards.experiment),
    log:
        job_log("evaluate_baselines", "{experiment}"),
    benchmark:
        job_benchmark("evaluate_baselines", "{experiment}")
    conda:
        "../envs/report.yaml"
    script:
        "../workflow_scripts/evaluate_baselines.py"


rule cross_corpus:
    input:
        runs=lambda wildcards: cross_corpus_inputs(config),
        indexed=after_index(lambda wildcards: DATASETS),
        # each cell's quarantined clips of its classes (ancient: as evaluate_experiment's)
        manifests=[ancient(manifest_path(dataset)) for dataset in DATASETS],
    output:
        matrix=report(CROSS_CORPUS_OUTPUTS["matrix"], category="Cross-corpus", labels={"content": "cross-corpus UAR (CSV)"}),
        matrix_png=report(CROSS_CORPUS_OUTPUTS["matrix_png"], category="Cross-corpus", labels={"content": "cross-corpus UAR"}),
        loco=report(CROSS_CORPUS_OUTPUTS["loco"], category="Cross-corpus", labels={"content": "leave-one-corpus-out UAR (CSV)"}),
        loco_png=report(CROSS_CORPUS_OUTPUTS["loco_png"], category="Cross-corpus", labels={"content": "leave-one-corpus-out UAR"}),
        json=CROSS_CORPUS_OUTPUTS["json"],
    params:
        entries=lambda wildcards: cross_corpus_entries(config),
        datasets=DATASETS,
        manifests={dataset: manifest_path(dataset) for dataset in DATASETS},
    log:
        job_log("cross_corpus", "cross_corpus"),
    benchmark:
        job_benchmark("cross_corpus", "cross_corpus")
    conda:
        "../envs/report.yaml"
    script:
        "../workflow_scripts/evaluate_cross_corpus.py"


# The previews read the chosen clips' frames, face CSV and spectrogram images; the chunk tables
# (rewritten whenever a clip's artifacts are) stand for those files as inputs.
rule dataset_previews:
    input:
        tabular=lambda wildcards: per_chunk_of(wildcards.dataset, SHARDS["tabular"]),
        frames=lambda wildcards: per_chunk_of(wildcards.dataset, STAGE_TABLE, stage="frames"),
        face=lambda wildcards: per_chunk_of(wildcards.dataset, STAGE_TABLE, stage="face"),
        indexed=after_index(lambda wildcards: [wildcards.dataset]),
    output:
        report(directory(PREVIEWS_DIR), patterns=["{clip}.png"], category="Previews", subcategory="{dataset}"),
    params:
        outdir=lambda wildcards: dataset_dir(wildcards.dataset),
        margin=lambda wildcards: preprocess_settings(config, wildcards.dataset)["frames"]["face_margin"],
        clips=PREVIEW_CLIPS,
    log:
        job_log("dataset_previews", "{dataset}"),
    benchmark:
        job_benchmark("dataset_previews", "{dataset}")
    conda:
        "../envs/report.yaml"
    script:
        "../workflow_scripts/render_previews.py"


# Inputs: everything the page reads, so it is rebuilt when any of it changes.
rule build_report:
    input:
        manifests=per_dataset(MANIFEST),
        quarantine=per_dataset(QUARANTINE),
        tabular=per_chunk(SHARDS["tabular"], stages=("fuse",)),
        previews=lambda wildcards: report_previews(config).values(),
        evaluation=lambda wildcards: evaluation_targets(config),
        cross=CROSS_CORPUS_OUTPUTS.values(),
        indexed=after_index(lambda wildcards: DATASETS),
    output:
        html=report(REPORT_OUTPUTS["html"], category="Report", labels={"content": "report page"}),
        datasets=report(REPORT_OUTPUTS["datasets"], category="Datasets", labels={"content": "clips per class (CSV)"}),
        quarantine=report(REPORT_OUTPUTS["quarantine"], category="Datasets", labels={"content": "quarantine (CSV)"}),
    params:
        datasets=lambda wildcards: report_datasets(config),
        experiments=lambda wildcards: report_experiments(config),
        cross=CROSS_CORPUS_OUTPUTS,
        previews=lambda wildcards: report_previews(config),
    log:
        job_log("build_report", "build_report"),
    benchmark:
        job_benchmark("build_report", "build_report")
    conda:
        "../envs/report.yaml"
    script:
        "../workflow_scripts/build_report.py"
