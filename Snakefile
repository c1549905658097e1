# avemotion: audio-visual emotion recognition from raw corpora to evaluated models.
# Run `snakemake --cores N` (default target `all`) or name a stage: index, preprocess, fuse, train,
# evaluate, report, predict (the clips under predict.input_dir, when set). Everything is written
# under results/ in the working directory; the demo corpora (`make demo`) under resources/demo/.

import os

from snakemake.utils import min_version

from avemotion.envs import export_source

min_version("9.0")


# The repository's config.yaml holds the defaults for real corpora; `--configfile FILE` on the
# command line overrides any of its keys (targets go before it: it takes every following word as a
# file). `make demo` passes avemotion/recipes/demo.yaml.
configfile: os.path.join(workflow.basedir, "config.yaml")

# envs/*.yaml install avemotion from here (`--software-deployment-method conda`).
export_source(workflow.basedir)


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/preprocess.smk"
include: "rules/fuse.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/predict.smk"


rule all:
    default_target: True
    input:
        stage_targets("predict"),


rule index:
    input:
        stage_targets("index"),


rule preprocess:
    input:
        stage_targets("preprocess"),


rule fuse:
    input:
        stage_targets("fuse"),


rule train:
    input:
        stage_targets("train"),


rule evaluate:
    input:
        stage_targets("evaluate"),


rule report:
    input:
        stage_targets("report"),


rule predict:
    input:
        stage_targets("predict"),
