# Config validation (before any job runs) and the helpers that rules share.

import functools
import sys
from pathlib import Path

from snakemake.utils import validate

from avemotion.config import SCHEMA_PATH, ConfigError, dataset_notices, enabled_datasets, prepare_config, sorted_keys
from avemotion.config_checks import check_model, check_openface
from avemotion.datasets import READERS, DatasetRootError, check_datasets, index_dependencies, indexed_keys, layout_notices
from avemotion.demo.corpora import DEMO_DIR
from avemotion.inference import workflow_clips
from avemotion.job_params import preprocess_settings
from avemotion.layout import (
    BASELINE_OUTPUTS,
    CROSS_CORPUS_OUTPUTS,
    EXPERIMENT_OUTPUTS,
    FINAL_RUN,
    HISTORY_FILE,
    INDEX_QUARANTINE,
    MANIFEST,
    METRICS_FILE,
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
    chunk_paths,
    dataset_dir,
    cross_run,
    fold_run,
    heldout_run,
    job_benchmark,
    job_log,
    manifest_path,
    run_file,
    stage_table,
)
from avemotion.media.frame_crops import FACE_CROPS
from avemotion.model.bundle import MODEL_FILES, RUN_FILES
from avemotion.preprocess.plan import STAGE_NAMES, STAGE_PRIORITY, chunk_clips, chunk_source_files, job_settings, read_manifest
from avemotion.preprocess.sources import sources_digest
from avemotion.train.plan import absent_labels_notice, check_training_runs
from avemotion.train.settings import (
    check_experiments,
    experiment_names,
    experiment_settings,
    model_settings,
    prediction_experiments,
)

# Friendly errors first (key and allowed values), then Snakemake's validation fills in defaults. A
# config or corpus-root error is the whole message: raised, Snakemake would add its traceback lines.
try:
    prepare_config(config)
    validate(config, schema=str(SCHEMA_PATH))
    DATASETS = enabled_datasets(config)
    DEMO_ROOTS = {name: DEMO_DIR / name for name in READERS}
    check_datasets(config, generated_roots=DEMO_ROOTS.values())
    check_openface(config)
    check_model(config)
    for notice in dataset_notices(config) + layout_notices(config, DEMO_ROOTS.values()) + check_experiments(config):
        print(notice, file=sys.stderr)
except (ConfigError, DatasetRootError) as error:
    sys.exit(str(error))


wildcard_constraints:
    dataset="|".join(READERS),
    stage="|".join(STAGE_NAMES),
    chunk=r"\d+",
    experiment=r"[A-Za-z0-9_.-]+",
    fold=r"\d+",
    held_out="|".join(READERS),


def dataset_settings(dataset):
    return config["datasets"][dataset]


def index_settings(dataset):
    return indexed_keys(dataset_settings(dataset))


def dataset_root(dataset):
    return Path(dataset_settings(dataset)["root"])


def is_demo(dataset):
    """Roots at resources/demo/<dataset> are demo corpora that the workflow generates."""
    return dataset_root(dataset) == DEMO_ROOTS[dataset]


def index_inputs(wildcards):
    """A demo corpus is the generator's output; a real corpus is the folders and metadata files its
    index reads (folder listings, not the thousands of clips: a folder changes when a clip is added)."""
    if is_demo(wildcards.dataset):
        return [str(DEMO_ROOTS[wildcards.dataset])]
    return [str(path) for path in index_dependencies(wildcards.dataset, dataset_root(wildcards.dataset))]


def per_dataset(pattern):
    return expand(pattern, dataset=DATASETS)


def chunks_of(dataset):
    return range(dataset_settings(dataset)["chunks"])


def per_chunk(pattern, stages=STAGE_NAMES):
    """``pattern`` for every enabled dataset, stage and chunk."""
    return [
        pattern.format(dataset=dataset, stage=stage, chunk=chunk)
        for dataset in DATASETS
        for stage in stages
        for chunk in chunks_of(dataset)
    ]


def per_chunk_of(dataset, pattern, **wildcards):
    """``pattern`` for every chunk of one dataset (other wildcards as keywords)."""
    return chunk_paths(pattern, dataset, dataset_settings(dataset)["chunks"], **wildcards)


def manifest_of(dataset):
    """The dataset's manifest: read directly once it exists, through the index checkpoint before.

    A params function that goes through checkpoints.get() while the manifest exists makes Snakemake
    (9.27) count its job as changed in the first DAG pass, and every job downstream of it (training,
    evaluation) would then rerun on every invocation. Cost: when the index reruns in the same
    invocation, a fuse job's manifest digest is the old one, so that chunk is fused once more on
    the next run.
    """
    path = manifest_path(dataset)
    return path if Path(path).exists() else checkpoints.index_dataset.get(dataset=dataset).output.manifest


def clips_of_chunk(dataset, chunk):
    """The chunk's clips, from the manifest that the index checkpoint wrote."""
    manifest = checkpoints.index_dataset.get(dataset=dataset).output.manifest
    return chunk_clips(read_manifest(manifest), int(chunk))


def chunk_clip_files(wildcards):
    """The files of a chunk's clips in a real corpus (none for a demo corpus, which is generated)."""
    if is_demo(wildcards.dataset):
        return []
    clips = clips_of_chunk(wildcards.dataset, wildcards.chunk)
    return chunk_source_files(dataset_root(wildcards.dataset), clips, wildcards.stage)


def chunk_inputs(wildcards):
    """A chunk job depends on its own clips' files only (not on the whole manifest), so a new clip
    reruns just its chunk; frames cut around faces also depend on the face stage's chunk.

    A corpus copied without its times gives every clip a new mtime and the same bytes, so a real
    corpus' clip files are ancient() inputs and the digest of their content is a param of the job
    (chunk_sources_digest): a clip reruns its chunk jobs, and the fusion and trainings after them,
    when its content changes, and only then."""
    dataset, stage, chunk = wildcards.dataset, wildcards.stage, wildcards.chunk
    # Through the index checkpoint for every corpus, the demo's too: the job's params read the
    # chunk's clips, and Snakemake wants a checkpoint that params depend on among the inputs.
    clips_of_chunk(dataset, chunk)
    inputs = [str(DEMO_ROOTS[dataset])] if is_demo(dataset) else [ancient(path) for path in chunk_clip_files(wildcards)]
    if stage == "frames" and preprocess_settings(config, dataset)["frames"]["crop"] in FACE_CROPS:
        inputs.append(stage_table(dataset, "face", chunk))
    return inputs


def chunk_sources_digest(wildcards):
    """The content digest of the chunk's clip files (cached per file, avemotion.preprocess.sources)."""
    return sources_digest(chunk_clip_files(wildcards), SOURCE_DIGESTS.format(dataset=wildcards.dataset))


def quarantine_parts(wildcards):
    """Every stage's quarantine part of one dataset."""
    dataset = wildcards.dataset
    return [INDEX_QUARANTINE.format(dataset=dataset)] + [
        path for stage in STAGE_NAMES for path in per_chunk_of(dataset, STAGE_QUARANTINE, stage=stage)
    ]


# What each stage adds to the targets of the stages before it. Stages whose rules have not been
# written yet add nothing.
STAGE_OUTPUTS = {
    "index": lambda: per_dataset(MANIFEST) + per_dataset(INDEX_QUARANTINE),
    # quarantine.csv gathers every stage's part, so it is complete once the last per-clip stage ran
    "preprocess": lambda: per_chunk(STAGE_TABLE) + per_dataset(QUARANTINE),
    "fuse": lambda: per_chunk(SHARDS["tabular"], stages=("fuse",)) + per_chunk(SHARDS["tfrecord"], stages=("fuse",)),
    "train": lambda: training_targets(config),
    "evaluate": lambda: evaluation_targets(config),
    "report": lambda: report_targets(config),
    "predict": lambda: [PREDICTIONS.format(experiment=name) for name in prediction_experiments(config)],
}


def indexed_shards(dataset, kind):
    """The dataset's fused shards of one kind (every chunk), for the jobs that read them, through
    the index checkpoint (after_index)."""
    checkpoints.index_dataset.get(dataset=dataset)
    return per_chunk_of(dataset, SHARDS[kind])


def after_index(datasets_of):
    """An input function that adds no file but goes through the index checkpoints of
    ``datasets_of(wildcards)``'s datasets, for jobs after the index whose inputs do not.

    A job whose inputs go through the checkpoint is judged again once the index has rerun. When an
    index reruns and changes no chunk (a corpus copied with new folder times), Snakemake first plans
    everything after it and then drops what the new manifest does not change, but only among the
    jobs that depend on the checkpoint: without this, evaluation, previews, cross-corpus predictions
    (GPU jobs) and the report reran on files that did not change."""

    def inputs(wildcards):
        for dataset in datasets_of(wildcards):
            checkpoints.index_dataset.get(dataset=dataset)
        return []

    return inputs


def experiment_datasets(wildcards):
    return experiment_settings(config, wildcards.experiment)["datasets"]


def model_weights(wildcards):
    """The pretrained weights an experiment's model starts from (VideoMAE's, Whisper's): inputs, so
    that weights written again at the same path retrain it (its settings hold only their paths)."""
    model = experiment_settings(config, wildcards.experiment)["model"]
    return [model[key] for key in ("pretrained", "audio_weights") if model.get(key)]


def experiment_shards(kind):
    """The fused shards (every chunk) of the experiment's datasets."""

    def inputs(wildcards):
        return [path for dataset in experiment_datasets(wildcards) for path in indexed_shards(dataset, kind)]

    return inputs


@functools.cache
def _check_runs_once(experiment, manifests_versions):
    datasets = experiment_settings(config, experiment)["datasets"]
    manifests = {name: read_manifest(manifest_path(name)) for name in datasets}
    check_training_runs(config, manifests, [experiment])
    notice = absent_labels_notice(config, manifests, experiment)
    if notice:
        print(notice, file=sys.stderr)


def runs_checked(wildcards):
    """No file: a training job's input function that, once its corpora are indexed (through the
    index checkpoints), stops the run when one of the experiment's runs would have no clips to train,
    validate or test on, or a batch larger than its training split, before any job runs (after the
    index, on a first run). Only a run that trains the
    experiment checks: a run up to fusion of part of a corpus must not stop on it. Checked once per
    state of the manifests."""
    after_index(experiment_datasets)(wildcards)
    versions = tuple((name, Path(manifest_path(name)).stat().st_mtime_ns) for name in experiment_datasets(wildcards))
    _check_runs_once(wildcards.experiment, versions)
    return []


def train_outputs(run):
    """The files of one training run; ``run`` is fold_{fold}, final or heldout_{held_out}."""
    return {name.split(".")[0]: run_file("{experiment}", run, name) for name in RUN_FILES}


def final_model_files(experiment):
    """The files of an experiment's final model that loading it needs (avemotion.model.bundle)."""
    return {name.split(".")[0]: run_file(experiment, FINAL_RUN, name) for name in MODEL_FILES}


def training_threads(wildcards):
    return experiment_settings(config, wildcards.experiment)["training"]["threads"]


def training_gpus(wildcards):
    return experiment_settings(config, wildcards.experiment)["training"]["gpus"]


def new_clips(wildcards):
    """The videos under predict.input_dir (rule predict_clips); one Snakemake cannot take as a job's
    file (wildcard braces, a name not in UTF-8) is left out with a notice."""
    clips, notices = workflow_clips(config["predict"]["input_dir"])
    for notice in notices:
        print(f"avemotion: {notice}", file=sys.stderr)
    return clips


def stage_targets(stage):
    """Every output of the stages up to and including ``stage``, for the enabled datasets."""
    stages = list(STAGE_OUTPUTS)
    return [path for name in stages[: stages.index(stage) + 1] for path in STAGE_OUTPUTS[name]()]
