"""The product config and the protocol recipes plan the right jobs on the real corpora's layouts
(name-only trees of the real file lists): a real index, then a dry run of everything after it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import pytest
import yaml

from avemotion.model.checkpoints import ARCHITECTURE_ATTRIBUTE
from avemotion.presets import variant_settings
from avemotion.recipes import DEMO_CONFIG, RECIPES_DIR, protocol_recipes
from conftest import run_snakemake


def user_config(workdir: Path, roots: dict[str, Path], pretrained: bool = True) -> str:
    """What a user writes: the corpus roots, and the pretrained weights (a stand-in: a dry run reads
    only a converted file's architecture record, here VideoMAE base's)."""
    config = {"datasets": {name: {"root": str(root)} for name, root in roots.items()}}
    if pretrained:
        weights = workdir / "videomae-base.weights.h5"
        with h5py.File(weights, "w") as handle:
            handle.attrs[ARCHITECTURE_ATTRIBUTE] = json.dumps({"backbone": variant_settings("base"), "num_classes": 0, "label_names": None})
        config["model"] = {"pretrained": str(weights)}
    path = workdir / "my_paths.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def plan(workdir: Path, *configs: str):
    """Index for real (names only, seconds), then the dry run's job counts per rule, the GPUs each
    training job requests and the notices."""
    run_snakemake(workdir, "index", "--cores", "2", "--configfile", *configs)
    result = run_snakemake(workdir, "-n", "--cores", "2", "--configfile", *configs)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, re.M))
    blocks = re.split(r"\n(?=\S*rule \w+:)", result.stdout)
    gpus = {re.search(r"gpu=(\d+)", block).group(1) for block in blocks if re.match(r"\S*rule train_", block.strip())}
    folds = sorted(set(re.findall(r"experiments/(\w+)/(fold_\d|final|heldout_\w+)/metrics\.json", result.stdout)))
    return {rule: int(count) for rule, count in counts.items()}, gpus, folds, result.stderr


@pytest.fixture(scope="module")
def roots(crema_d_tree, enterface_tree, mafw_tree):
    return {"crema_d": crema_d_tree, "enterface": enterface_tree, "mafw": mafw_tree}


def test_every_protocol_has_a_recipe():
    assert [path.name for path in protocol_recipes()] == ["crema_d.yaml", "enterface.yaml", "mafw.yaml", "mixture.yaml"]
    assert DEMO_CONFIG.parent == RECIPES_DIR


def test_a_config_with_only_a_crema_d_root_plans_the_product_defaults(tmp_path, crema_d_tree):
    jobs, gpus, runs, notices = plan(tmp_path, user_config(tmp_path, {"crema_d": crema_d_tree}, pretrained=False))
    assert jobs["preprocess_chunk"] == 3 * 64 and jobs["fuse_chunk"] == 64
    assert jobs["train_fold"] == 5 and jobs["train_final"] == 1 and "train_heldout" not in jobs
    assert set(runs) == {("crema_d_hybrid", f"fold_{k}") for k in range(1, 6)} | {("crema_d_hybrid", "final")}
    assert gpus == {"1"}
    # The product config's other experiments are left out with a notice, never an error.
    assert "experiment 'enterface_hybrid' left out" in notices and "experiment 'mafw_hybrid' left out" in notices
    assert "trains VideoMAE base from random weights" in notices
    assert not (tmp_path / "results" / "experiments").exists()  # a dry run trains nothing


EXPECTED = {
    # recipe: (chunks over its corpora, training jobs per rule)
    "crema_d.yaml": (64, {"train_fold": 5, "train_final": 1}),
    "enterface.yaml": (13, {"train_fold": 5, "train_final": 1}),
    "mafw.yaml": (100, {"train_fold": 5, "train_final": 1}),
    "mixture.yaml": (64 + 13 + 100, {"train_fold": 20, "train_final": 4, "train_heldout": 3}),
}


@pytest.mark.parametrize("recipe", sorted(EXPECTED))
def test_each_recipe_dry_runs_on_the_real_layouts(recipe, tmp_path, roots):
    wanted = yaml.safe_load((RECIPES_DIR / recipe).read_text())["datasets"]
    used = {name: root for name, root in roots.items() if wanted[name].get("enabled")}
    jobs, gpus, runs, notices = plan(tmp_path, str(RECIPES_DIR / recipe), user_config(tmp_path, used))
    chunks, training = EXPECTED[recipe]
    assert jobs["preprocess_chunk"] == 3 * chunks and jobs["fuse_chunk"] == chunks
    assert {rule: jobs.get(rule, 0) for rule in training} == training
    assert gpus == {"1"} and "random weights" not in notices
    for experiment in {name for name, _ in runs}:
        assert [run for name, run in runs if name == experiment and run.startswith("fold_")] == [f"fold_{k}" for k in range(1, 6)]
