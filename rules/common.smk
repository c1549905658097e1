# Config validation (before any job runs) and the helpers that rules share.

from pathlib import Path

from snakemake.utils import validate

from avemotion.config import SCHEMA_PATH, check_dataset_roots, enabled_datasets, prepare_config
from avemotion.datasets import READERS, source_files
from avemotion.demo.corpora import DEMO_DIR

# Friendly errors first (key and allowed values), then Snakemake's validation fills in defaults.
prepare_config(config)
validate(config, schema=str(SCHEMA_PATH))

DATASETS = enabled_datasets(config)
DEMO_ROOTS = {name: DEMO_DIR / name for name in READERS}
check_dataset_roots(config, generated_roots=DEMO_ROOTS.values())


wildcard_constraints:
    dataset="|".join(READERS),


def dataset_settings(dataset):
    return config["datasets"][dataset]


def dataset_root(dataset):
    return Path(dataset_settings(dataset)["root"])


def is_demo(dataset):
    """Roots at resources/demo/<dataset> are demo corpora that the workflow generates."""
    return dataset_root(dataset) == DEMO_ROOTS[dataset]


def index_inputs(wildcards):
    """A demo corpus is the generator's output; a real corpus is the files its index depends on."""
    if is_demo(wildcards.dataset):
        return [str(DEMO_ROOTS[wildcards.dataset])]
    return [str(path) for path in source_files(wildcards.dataset, dataset_root(wildcards.dataset))]


def per_dataset(pattern):
    return expand(pattern, dataset=DATASETS)


# What each stage adds to the targets of the stages before it. Stages whose rules have not been
# written yet add nothing.
STAGE_OUTPUTS = {
    "index": lambda: per_dataset("results/{dataset}/manifest.parquet")
    + per_dataset("results/{dataset}/quarantine.csv"),
    "preprocess": lambda: [],
    "fuse": lambda: [],
    "train": lambda: [],
    "evaluate": lambda: [],
    "report": lambda: [],
}


def stage_targets(stage):
    """Every output of the stages up to and including ``stage``, for the enabled datasets."""
    stages = list(STAGE_OUTPUTS)
    return [path for name in stages[: stages.index(stage) + 1] for path in STAGE_OUTPUTS[name]()]
