"""The rules take every path under results/ from avemotion.layout, so moving a file is one line there;
the paths themselves are README's table of outputs and what runs already on disk hold."""

import re
from pathlib import Path

from avemotion.layout import (
    BASELINE_OUTPUTS,
    COMPILATION_CACHE,
    CROSS_CORPUS_OUTPUTS,
    EXPERIMENT_OUTPUTS,
    FINAL_RUN,
    HISTORY_FILE,
    INDEX_QUARANTINE,
    LATE_WEIGHTS_FILE,
    MANIFEST,
    METRICS_FILE,
    MODEL_FILE,
    PREDICTIONS,
    PREDICTIONS_FILE,
    PREVIEWS_DIR,
    QUARANTINE,
    REPORT_OUTPUTS,
    SETTINGS_FILE,
    SHARDS,
    SOURCE_DIGESTS,
    SPLIT_FILE,
    STAGE_QUARANTINE,
    STAGE_TABLE,
    ClipArtifacts,
    chunk_paths,
    cross_run,
    dataset_dir,
    fold_run,
    heldout_run,
    job_benchmark,
    job_log,
    manifest_path,
    run_dir,
    run_file,
    source_digests,
    stage_table,
)

RULES = Path(__file__).resolve().parent.parent / "rules"


def test_no_rule_file_spells_a_results_path():
    """A literal results/ path in a rule (outside comments) is a second owner of that path."""
    spelled = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(RULES.glob("*.smk"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"[\"']results/", line.split("#")[0])
    ]
    assert spelled == []


def test_every_job_has_a_log_and_a_benchmark():
    """README: results/logs and results/benchmarks hold the log, run time and memory of every job
    (every rule that runs a script; the stage targets run nothing)."""
    missing = []
    for path in sorted(RULES.glob("*.smk")):
        for rule in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            name, body = rule.split(":", 1)[0], rule.split("\n\n\n")[0]
            if re.search(r"^\s+script:", body, re.M):
                missing += [f"{name}: {directive}" for directive in ("log", "benchmark") if not re.search(rf"^\s+{directive}:", body, re.M)]
    assert missing == []


def test_job_logs_and_benchmarks_keep_snakemakes_wildcards():
    assert job_log("train", "{experiment}/fold_{fold}") == "results/logs/train/{experiment}/fold_{fold}.log"
    assert job_benchmark("fuse_chunk", "{dataset}/{chunk}") == "results/benchmarks/fuse_chunk/{dataset}/{chunk}.tsv"


# ---- the paths themselves: README's table of outputs, and what runs already on disk hold ----------


def test_a_datasets_files_are_where_readme_lists_them():
    assert dataset_dir("crema_d") == "results/crema_d"
    assert manifest_path("crema_d") == "results/crema_d/manifest.parquet" == MANIFEST.format(dataset="crema_d")
    assert QUARANTINE.format(dataset="mafw") == "results/mafw/quarantine.csv"
    assert INDEX_QUARANTINE.format(dataset="mafw") == "results/mafw/quarantine/index.csv"
    assert stage_table("enterface", "face", 3) == "results/enterface/preprocess/face/3.parquet"
    assert STAGE_QUARANTINE.format(dataset="enterface", stage="face", chunk=3) == "results/enterface/quarantine/face/3.csv"
    assert SOURCE_DIGESTS.format(dataset="crema_d") == "results/crema_d/preprocess/source_digests.json"
    assert source_digests(Path("results/crema_d")) == Path(SOURCE_DIGESTS.format(dataset="crema_d"))


def test_chunk_paths_name_every_chunk_from_zero():
    assert chunk_paths(SHARDS["tabular"], "crema_d", 3) == [f"results/crema_d/shards/tabular/{chunk}.parquet" for chunk in (0, 1, 2)]
    assert chunk_paths(SHARDS["tfrecord"], "mafw", 1) == ["results/mafw/shards/tfrecord/0.tfrecord"]
    assert chunk_paths(STAGE_TABLE, "enterface", 2, stage="audio") == [stage_table("enterface", "audio", chunk) for chunk in (0, 1)]
    assert chunk_paths(SHARDS["tabular"], "crema_d", 0) == []


def test_a_clips_artifacts_are_where_readme_lists_them_in_any_folder():
    clip = ClipArtifacts(Path("results/crema_d"), "1001_DFA_ANG_XX")
    assert {name: str(getattr(clip, name)) for name in ("wav", "mel_npy", "mel_png", "mfcc_png", "face_csv", "frames")} == {
        "wav": "results/crema_d/audio/1001_DFA_ANG_XX.wav",
        "mel_npy": "results/crema_d/spectrograms/1001_DFA_ANG_XX_mel.npy",
        "mel_png": "results/crema_d/spectrograms/1001_DFA_ANG_XX_mel.png",
        "mfcc_png": "results/crema_d/spectrograms/1001_DFA_ANG_XX_mfcc.png",
        "face_csv": "results/crema_d/openface/1001_DFA_ANG_XX.csv",
        "frames": "results/crema_d/frames/1001_DFA_ANG_XX.npy",
    }
    # one receipt per stage: a clip the audio stage finished is not one the face stage did
    assert clip.receipt("face") == Path("results/crema_d/preprocess/face/receipts/1001_DFA_ANG_XX.json")
    assert clip.receipt("audio") != clip.receipt("face")
    assert ClipArtifacts("/scratch/predict", "a").wav == Path("/scratch/predict/audio/a.wav")  # a str folder too


def test_a_runs_files_keep_the_names_runs_on_disk_have():
    assert (MODEL_FILE, SETTINGS_FILE, LATE_WEIGHTS_FILE) == ("model.keras", "settings.json", "late_weights.json")
    assert (PREDICTIONS_FILE, METRICS_FILE, HISTORY_FILE, SPLIT_FILE) == ("predictions.parquet", "metrics.json", "history.csv", "split.json")
    runs = "results/experiments/exp"
    assert run_file("exp", fold_run(2), MODEL_FILE) == f"{runs}/fold_2/model.keras"
    assert run_file("exp", FINAL_RUN, SETTINGS_FILE) == f"{runs}/final/settings.json"
    assert run_file("exp", heldout_run("mafw"), METRICS_FILE) == f"{runs}/heldout_mafw/metrics.json"
    assert run_dir("exp", cross_run("enterface")) == f"{runs}/cross_enterface"
    assert PREDICTIONS.format(experiment="exp") == "results/predictions/exp.csv"
    assert COMPILATION_CACHE == "results/cache/jax"


def test_an_experiments_summary_plots_baselines_and_the_report_are_where_readme_lists_them():
    experiment = {key: path.format(experiment="exp") for key, path in {**EXPERIMENT_OUTPUTS, **{f"baselines_{k}": v for k, v in BASELINE_OUTPUTS.items()}}.items()}
    assert experiment == {
        "summary": "results/experiments/exp/summary.json",
        "table": "results/experiments/exp/summary.csv",
        "confusion": "results/experiments/exp/plots/confusion_matrix.png",
        "curves": "results/experiments/exp/plots/training_curves.png",
        "va": "results/experiments/exp/plots/va_scatter.png",
        "baselines_json": "results/experiments/exp/baselines.json",
        "baselines_csv": "results/experiments/exp/baselines.csv",
    }
    assert {**REPORT_OUTPUTS, **CROSS_CORPUS_OUTPUTS} == {
        "html": "results/report/index.html",
        "datasets": "results/report/datasets.csv",
        "quarantine": "results/report/quarantine_summary.csv",
        "matrix": "results/report/cross_corpus.csv",
        "matrix_png": "results/report/cross_corpus.png",
        "loco": "results/report/leave_one_corpus_out.csv",
        "loco_png": "results/report/leave_one_corpus_out.png",
        "json": "results/report/cross_corpus.json",
    }
    assert PREVIEWS_DIR.format(dataset="mafw") == "results/report/previews/mafw"
