# Predictions for new clips: every video under predict.input_dir, by each chosen experiment's final
# model, with the preprocessing that model was trained with (as `avemotion predict` does).

rule predict_clips:
    input:
        **final_model_files("{experiment}"),
        clips=new_clips,  # common.smk
    output:
        PREDICTIONS,
    params:
        model_dir=lambda wildcards, input: os.path.dirname(input.model),
    threads: training_threads
    resources:
        gpu=training_gpus,
    log:
        job_log("predict", "{experiment}"),
    benchmark:
        job_benchmark("predict", "{experiment}")
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/predict_clips.py"
