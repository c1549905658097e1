"""Where results live: every path under ``results/`` is built here and nowhere else.

The rules, the preprocessing stages, the shard writer, training, evaluation, previews and
prediction all take their paths from this module, so moving a file is a change of one line.
Paths are relative to the workflow's working directory; patterns hold ``{dataset}``, ``{stage}``,
``{chunk}``, ``{experiment}`` and ``{run}`` wildcards as the rules name them.

Per dataset (``results/{dataset}/``): the manifest and the index's quarantine part, one table and
one quarantine part per preprocessing stage and chunk, the per-clip artifacts (:class:`ClipArtifacts`),
the fused shards per chunk and the merged quarantine.csv.

Per experiment (``results/experiments/{experiment}/``): one folder per training run (``fold_{k}``,
``final``, ``heldout_{dataset}``, ``cross_{dataset}``; :func:`run_dir`) with the files named below
(``*_FILE``; one training job writes avemotion.model.bundle.RUN_FILES, a cross_ job the predictions
and metrics), then the evaluation's summary, plots and baselines.
The report is under ``results/report/`` and predictions for new clips under ``results/predictions/``;
every job's log and benchmark table under ``results/logs/`` and ``results/benchmarks/``
(:func:`job_log`, :func:`job_benchmark`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# ---- per dataset --------------------------------------------------------------------------------

DATASET_DIR = "results/{dataset}"
MANIFEST = "results/{dataset}/manifest.parquet"
INDEX_QUARANTINE = "results/{dataset}/quarantine/index.csv"
QUARANTINE = "results/{dataset}/quarantine.csv"
STAGE_TABLE = "results/{dataset}/preprocess/{stage}/{chunk}.parquet"
STAGE_QUARANTINE = "results/{dataset}/quarantine/{stage}/{chunk}.csv"
SHARDS = {
    "tabular": "results/{dataset}/shards/tabular/{chunk}.parquet",
    "tfrecord": "results/{dataset}/shards/tfrecord/{chunk}.tfrecord",
}


def chunk_paths(pattern: str, dataset: str, chunks: int, **wildcards) -> list[str]:
    """``pattern`` for every one of a dataset's ``chunks`` chunks (other wildcards as keywords)."""
    return [pattern.format(dataset=dataset, chunk=chunk, **wildcards) for chunk in range(chunks)]


_DIGESTS = "preprocess/source_digests.json"  # inside a dataset's folder
SOURCE_DIGESTS = f"{DATASET_DIR}/{_DIGESTS}"


def source_digests(dataset_folder) -> Path:
    """The cache of a dataset's source-file digests (avemotion.preprocess.sources), in its folder."""
    return Path(dataset_folder) / _DIGESTS


def dataset_dir(dataset: str) -> str:
    return DATASET_DIR.format(dataset=dataset)


def manifest_path(dataset: str) -> str:
    return MANIFEST.format(dataset=dataset)


def stage_table(dataset: str, stage: str, chunk) -> str:
    return STAGE_TABLE.format(dataset=dataset, stage=stage, chunk=chunk)


@dataclass(frozen=True)
class ClipArtifacts:
    """The files the preprocessing stages write for one clip, inside an artifact folder: a dataset's
    folder in the workflow, any folder for ``avemotion predict``."""

    folder: Path
    clip_id: str

    def _file(self, kind: str, suffix: str) -> Path:
        return Path(self.folder) / kind / f"{self.clip_id}{suffix}"

    @property
    def wav(self) -> Path:
        return self._file("audio", ".wav")

    @property
    def mel_png(self) -> Path:
        return self._file("spectrograms", "_mel.png")

    @property
    def mfcc_png(self) -> Path:
        return self._file("spectrograms", "_mfcc.png")

    @property
    def mel_npy(self) -> Path:
        """The log-Mel in dB, (bands, steps) float32: what the fuse stage and previews read."""
        return self._file("spectrograms", "_mel.npy")

    @property
    def face_csv(self) -> Path:
        """The face stage's table, in OpenFace 2's CSV schema."""
        return self._file("openface", ".csv")

    @property
    def frames(self) -> Path:
        """The sampled frames, uint8 (W·T, S, S, 3): W windows of T frames one after another."""
        return self._file("frames", ".npy")

    def receipt(self, stage: str) -> Path:
        """The record that the stage finished this clip (avemotion.preprocess.chunk)."""
        return Path(self.folder) / "preprocess" / stage / "receipts" / f"{self.clip_id}.json"


# ---- per experiment -----------------------------------------------------------------------------

RUN_DIR = "results/experiments/{experiment}/{run}"
# The files inside a run folder (run_file). The names are the contract with runs already on disk.
MODEL_FILE = "model.keras"
SETTINGS_FILE = "settings.json"  # what the model was trained with (labels, fusion, preprocessing)
LATE_WEIGHTS_FILE = "late_weights.json"
PREDICTIONS_FILE = "predictions.parquet"  # one row per evaluated clip (avemotion.metrics)
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"  # the epoch log
# history.csv's column that is true on the epoch whose weights the run's model holds (validation loss chose it)
CHOSEN_EPOCH_COLUMN = "chosen"
SPLIT_FILE = "split.json"  # the clip ids of train, validation and test
# XLA's compiled training steps, kept between the jobs of a working directory (training.backend
# jax): the folds and the final model of an experiment share shapes, so only the first compiles.
# Not a job's output: any job may add to it, none depends on it.
COMPILATION_CACHE = "results/cache/jax"
FINAL_RUN = "final"
PREDICTIONS = "results/predictions/{experiment}.csv"


def fold_run(fold) -> str:
    return f"fold_{fold}"


def heldout_run(dataset: str) -> str:
    """A mixture's model trained without ``dataset`` and tested on it (leave one corpus out)."""
    return f"heldout_{dataset}"


def cross_run(dataset: str) -> str:
    """A single-corpus final model's predictions on another corpus."""
    return f"cross_{dataset}"


def run_dir(experiment: str, run: str) -> str:
    return RUN_DIR.format(experiment=experiment, run=run)


def run_file(experiment: str, run: str, filename: str) -> str:
    return f"{run_dir(experiment, run)}/{filename}"


EXPERIMENT_OUTPUTS = {
    "summary": "results/experiments/{experiment}/summary.json",
    "table": "results/experiments/{experiment}/summary.csv",
    "confusion": "results/experiments/{experiment}/plots/confusion_matrix.png",
    "curves": "results/experiments/{experiment}/plots/training_curves.png",
    "va": "results/experiments/{experiment}/plots/va_scatter.png",
}
BASELINE_OUTPUTS = {
    "json": "results/experiments/{experiment}/baselines.json",
    "csv": "results/experiments/{experiment}/baselines.csv",
}

# ---- the report ---------------------------------------------------------------------------------

CROSS_CORPUS_OUTPUTS = {
    "matrix": "results/report/cross_corpus.csv",
    "matrix_png": "results/report/cross_corpus.png",
    "loco": "results/report/leave_one_corpus_out.csv",
    "loco_png": "results/report/leave_one_corpus_out.png",
    "json": "results/report/cross_corpus.json",
}
REPORT_OUTPUTS = {
    "html": "results/report/index.html",
    "datasets": "results/report/datasets.csv",
    "quarantine": "results/report/quarantine_summary.csv",
}
PREVIEWS_DIR = "results/report/previews/{dataset}"
PREVIEWS_LISTING = "previews.json"  # in a dataset's PREVIEWS_DIR: the clips previewed, which the report shows

# ---- every job's log and benchmark ----------------------------------------------------------------

LOGS_DIR = "results/logs"
BENCHMARKS_DIR = "results/benchmarks"


def job_log(rule: str, job: str) -> str:
    """A job's log: ``job`` names it within its rule, Snakemake wildcards included."""
    return f"{LOGS_DIR}/{rule}/{job}.log"


def job_benchmark(rule: str, job: str) -> str:
    """A job's run time and memory (Snakemake's benchmark table)."""
    return f"{BENCHMARKS_DIR}/{rule}/{job}.tsv"
