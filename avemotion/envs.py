"""The per-rule conda environments (envs/*.yaml) install avemotion itself from the workflow's folder:
their pip sections name ``${AVEMOTION_SOURCE}[extra]``, which pip expands from the environment of
the Snakemake process that creates them (conda copies the env file elsewhere first, so a relative
path would not point at the workflow)."""

import os

SOURCE_VARIABLE = "AVEMOTION_SOURCE"


def export_source(workflow_dir) -> None:
    os.environ[SOURCE_VARIABLE] = str(workflow_dir)
