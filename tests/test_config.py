"""Config validation: every error names the key and what is allowed; the mfaw alias; roots."""

import json
import os
import re
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import h5py
import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

import avemotion
from avemotion import config_errors as config_file_errors
from avemotion.config import SCHEMA_PATH, ConfigError, config_errors, dataset_notices, load_config, load_schema, merge_config, prepare_config
from avemotion.config_checks import check_model, check_openface, openface_executable
from avemotion.config_errors import SNAKEMAKE_LOADER, ConfigFileError, watch_snakemake
from avemotion.config_errors import install as install_pth
from avemotion.datasets import DatasetRootError, check_datasets, index_dataset, index_dependencies, indexed_keys, walk
from avemotion.datasets.mafw import SPLIT_DIR
from avemotion.job_params import AUDIO_MODEL_KEYS, QUIET_DEFAULTS, QUIET_TRAINING, audio_model_settings, preprocess_settings
from avemotion.labels import CANONICAL_LABELS
from avemotion.layout import heldout_run
from avemotion.model.speech_branch import AUDIO_DEFAULTS
from avemotion.preprocess.plan import job_settings
from avemotion.presets import VARIANTS, variant_settings
from avemotion.train.plan import absent_labels_notice, check_training_runs, planned_runs, training_runs
from avemotion.train.settings import check_experiments, cross_corpus_datasets, default_labels, experiment_names, experiment_settings, heldout_datasets, model_settings
from avemotion.train.splits import speaker_splits
from conftest import demo_settings, touch


@pytest.fixture
def config():
    """The demo's config (the demo recipe over config.yaml)."""
    return demo_settings()


def test_repository_config_is_valid(config):
    assert config_errors(config) == []


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda c: c["datasets"]["crema_d"].update(votes="both"), "datasets.crema_d.votes: 'both' is not allowed; allowed values: 'audiovisual', 'face', 'voice', 'none'"),
        (lambda c: c["datasets"]["mafw"].update(enabled="maybe"), "datasets.mafw.enabled: 'maybe' is not of type boolean"),
        (lambda c: c["datasets"]["enterface"].update(chunk=3), "datasets.enterface.chunk: unknown key; allowed keys here: enabled, root, chunks"),
        (lambda c: c["datasets"].update(iemocap={}), "datasets.iemocap: unknown key; allowed keys here: crema_d, enterface, mafw"),
        # a key at the wrong level: where it belongs (a misspelt key, as chunk above, gets no hint)
        (lambda c: c.update(dataset_weights={"crema_d": 1}), "dataset_weights: unknown key; allowed keys here: datasets, frames, audio, face, labels, model, training, experiments, predict, demo (dataset_weights belongs under experiments[])"),
        (lambda c: c["frames"].update(chunks=3), "(chunks belongs under datasets.crema_d or datasets.enterface or datasets.mafw)"),
        (lambda c: c["datasets"]["crema_d"].update(chunks=0), "datasets.crema_d.chunks: 0 is less than the minimum of 1"),
        (lambda c: c["model"].update(variant="giant"), "model.variant: 'giant' is not allowed; allowed values: 'tiny', 'small', 'base', 'large', 'huge'"),
        (lambda c: c["model"].update(frame_normalization="frame"), "model.frame_normalization: 'frame' is not allowed; allowed values: 'imagenet', 'clip'"),
        (lambda c: c["face"].update(openface_args="-mloc model/main_clnf_general.txt"), "face.openface_args: '-mloc model/main_clnf_general.txt' is not of type array"),
        (lambda c: c["datasets"]["mafw"].update(face={"openface_args": ["-sigma", 1.5]}), "datasets.mafw.face.openface_args.1: 1.5 is not of type string"),
        (lambda c: c["frames"].update(short_clips="drop"), "frames.short_clips: 'drop' is not allowed; allowed values: 'keep', 'quarantine'"),
        (lambda c: c["frames"].update(sampling="uniform"), "frames.sampling: 'uniform' is not allowed; allowed values: 'segments', 'dense'"),
        (lambda c: c["datasets"]["crema_d"].update(frames={"truncated_clips": True}), "datasets.crema_d.frames.truncated_clips: True is not allowed; allowed values: 'keep', 'quarantine'"),
        (lambda c: c["audio"].update(misaligned="drop"), "audio.misaligned: 'drop' is not allowed; allowed values: 'keep', 'quarantine'"),
        (lambda c: c["datasets"]["mafw"].update(audio={"min_coverage": 1.5}), "datasets.mafw.audio.min_coverage: 1.5 is greater than the maximum of 1"),
        (lambda c: c["audio"].update(max_overrun_s=-1), "audio.max_overrun_s: -1 is less than the minimum of 0"),
        # the loss refuses smoothing 1 (every target uniform): refused here, not in training after preprocessing
        (lambda c: c["training"].update(label_smoothing=1), "training.label_smoothing: 1 is greater than or equal to the maximum of 1; allowed: at least 0 and less than 1"),
        # a bound error says the whole allowed range; a list of the wrong length its length and its meaning
        (lambda c: c["frames"].update(windows=9), "frames.windows: 9 is greater than the maximum of 8; allowed: 1 to 8"),
        (lambda c: c["training"].update(crop_scale=[0, 1]), "training.crop_scale.0: 0 is less than or equal to the minimum of 0; allowed: more than 0 and at most 1"),
        (lambda c: c["training"].update(crop_scale=[0.5]), "training.crop_scale: [0.5] has 1 item; allowed: exactly 2 items ([low, high]: the area of a training clip's random resized crop"),
        # what a type error allows; an experiment named by its name, as the later checks name it
        (lambda c: c["datasets"].update(crema_d=None), "datasets.crema_d: None is not of type object; allowed: a mapping (key: value lines, or {} for none)"),
        (lambda c: c["datasets"]["enterface"].update(leave_out_speakers=6), "datasets.enterface.leave_out_speakers: 6 is not of type array; allowed: a list, e.g. [a, b] (one item: [a])"),
        (lambda c: c["experiments"][0].update(folds=[1, 1]), "experiments.crema_d_early.folds: [1, 1] is not allowed; allowed: \"all\", or a list of the test folds to run, each one of the protocol's folds 1-5 and named once"),
        (lambda c: c["experiments"][0].update(labels=["anger", "anger", "sadness"]), "experiments.crema_d_early.labels: ['anger', 'anger', 'sadness'] repeats 'anger'; allowed: each item once"),
        (lambda c: c["experiments"][0].pop("fusion"), "experiments.crema_d_early: fusion missing; required keys here: name, datasets, fusion"),
        (lambda c: c["experiments"][0].update(name="crema d early"), "experiments.0.name: 'crema d early' is not allowed; allowed: letters, digits, _ . and - (it names"),
    ],
)
def test_invalid_values_name_the_key_and_allowed_values(config, change, expected):
    change(config)
    with pytest.raises(ConfigError) as error:
        prepare_config(config)
    assert expected in str(error.value)


def test_each_unknown_key_is_a_line_of_its_own(config):
    config["training"].update(epoch=3, batchsize=4)
    assert sorted(error.split(":")[0] for error in config_errors(config)) == ["training.batchsize", "training.epoch"]


def test_several_missing_keys_are_one_line(config):
    """jsonschema reports each missing key apart; the user reads one line naming both, not that line twice."""
    config["training"].update(rand_augment={"ops": 4})
    assert config_errors(config) == ["training.rand_augment: magnitude, magnitude_std missing; required keys here: ops, magnitude, magnitude_std"]


def test_mfaw_is_an_alias_of_mafw_with_one_warning(config):
    config["datasets"]["mfaw"] = config["datasets"].pop("mafw")
    warnings = []
    prepare_config(config, warn=warnings.append)
    assert "mafw" in config["datasets"] and "mfaw" not in config["datasets"]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "datasets.mfaw" in warnings[0]


def test_mfaw_keys_win_over_mafw_keys_of_the_default_config(config):
    config["datasets"]["mfaw"] = {"root": "/data/MAFW", "chunks": 96}
    prepare_config(config, warn=lambda message: None)
    assert config["datasets"]["mafw"] == {"root": "/data/MAFW", "chunks": 96}


def test_missing_root_names_the_dataset_and_path(config, tmp_path):
    config["datasets"]["enterface"]["root"] = str(tmp_path / "nowhere")
    with pytest.raises(DatasetRootError, match=r"dataset 'enterface': root directory '.*nowhere' does not exist"):
        check_datasets(config, generated_roots=["resources/demo/crema_d", "resources/demo/mafw"])


def test_a_missing_relative_root_names_the_folder_it_was_read_from_and_how_to_leave_the_corpus_out(tmp_path, monkeypatch):
    """A relative root is read from wherever Snakemake was started: the error names that folder, and
    the key that leaves the corpus out instead."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetRootError) as error:
        check_datasets(product_config(crema_d="data/CREMA-D"))
    said = str(error.value)
    assert said.startswith("dataset 'crema_d': root directory 'data/CREMA-D' does not exist")
    assert f"read from the working directory '{tmp_path}'" in said and "set datasets.crema_d.enabled: false" in said


@pytest.mark.parametrize("dataset", ["crema_d", "enterface"])
def test_a_root_gone_after_the_config_check_stops_the_index_rather_than_indexing_nothing(dataset, tmp_path):
    """A disk unmounted between the config check and the index job: the job and the index rule's
    inputs stop with the root's error, where listing nothing wrote an empty manifest (no clips, no
    quarantine, no word of why)."""
    gone = tmp_path / "unmounted" / dataset
    for index in (lambda: index_dataset(dataset, gone, {"chunks": 4}), lambda: index_dependencies(dataset, gone)):
        with pytest.raises(DatasetRootError, match=rf"^dataset '{dataset}': root directory '{re.escape(str(gone))}' does not exist \(config key datasets\.{dataset}\.root"):
            index()


def test_disabled_datasets_need_no_root(config):
    for name in ("crema_d", "enterface"):
        config["datasets"][name] = {"enabled": False}
    assert config_errors(config) == []
    check_datasets(config, generated_roots=["resources/demo/mafw"])
    config["datasets"]["mafw"]["root"] = None
    with pytest.raises(ConfigError, match="no corpus configured"):
        check_datasets(config)


def test_a_root_a_recipe_switches_off_is_said_and_all_switched_off_is_not_called_unconfigured(config):
    """A recipe turns off the corpora it does not use (enabled: false), which overrides a root the
    user sets in their own file: README says a corpus takes part when its root is set, so the run
    says why that corpus is left out; and with every corpus switched off it does not ask for roots
    that are set."""
    assert dataset_notices(config) == []
    config["datasets"]["enterface"]["enabled"] = False
    assert dataset_notices(config) == [
        "avemotion: datasets.enterface takes no part: its root is set but datasets.enterface.enabled is false "
        "(as a recipe sets it for the corpora it does not use); set enabled: true to include it"
    ]
    config["datasets"]["crema_d"]["enabled"] = config["datasets"]["mafw"]["enabled"] = False
    with pytest.raises(ConfigError, match=r"^config: no corpus takes part: datasets\.crema_d\.enabled, datasets\.enterface\.enabled, datasets\.mafw\.enabled: false although their roots are set"):
        check_datasets(config)


@pytest.mark.parametrize(
    "dataset, written, meant, allowed",
    [
        ("enterface", "s6", 6, "its subjects' numbers 1-44 without leading zeros (e.g. 6 for the folder 'subject 6')"),
        ("enterface", "subject 6", "6", "its subjects' numbers 1-44"),
        ("enterface", "06", 6, "its subjects' numbers 1-44 without leading zeros"),
        ("enterface", 0, 1, "its subjects' numbers 1-44"),
        ("enterface", 45, 44, "its subjects' numbers 1-44"),
        ("crema_d", 1092, 1091, "its actor ids 1001-1091"),
        ("crema_d", 1, 1001, "its actor ids 1001-1091 (a clip name's first part, e.g. 1001)"),
        ("crema_d", "1001_DFA", "1001", "its actor ids 1001-1091"),
    ],
)
def test_leave_out_speakers_that_cannot_be_the_corpus_speakers_stop_the_run(config, dataset, written, meant, allowed):
    """A speaker written as the corpus does not name them left out nothing, said only in the index
    log (as MAFW's unquoted ids did)."""
    demo_roots = [f"resources/demo/{name}" for name in ("crema_d", "enterface", "mafw")]
    config["datasets"][dataset]["leave_out_speakers"] = [written]
    with pytest.raises(ConfigError, match=rf"^config: datasets\.{dataset}\.leave_out_speakers: {re.escape(repr(written))} is not one of .*'s speakers, {re.escape(allowed)}"):
        check_datasets(config, generated_roots=demo_roots)
    config["datasets"][dataset]["leave_out_speakers"] = [meant]
    check_datasets(config, generated_roots=demo_roots)


def test_an_enabled_dataset_without_root_names_the_key(config):
    config["datasets"]["enterface"] = {"enabled": True, "root": None}
    assert config_errors(config) == []
    with pytest.raises(ConfigError, match=r"datasets\.enterface\.root: not set, but datasets\.enterface\.enabled is true"):
        check_datasets(config, generated_roots=["resources/demo/crema_d", "resources/demo/mafw"])


def test_dataset_overrides_change_only_that_dataset(config):
    config["datasets"]["mafw"]["frames"] = {"crop": "full"}
    config.update(frames={"num_frames": 8, "input_size": 224, "crop": "face", "face_margin": 0.25})
    assert preprocess_settings(config, "mafw")["frames"] == {"num_frames": 8, "input_size": 224, "crop": "full", "face_margin": 0.25}
    assert preprocess_settings(config, "crema_d")["frames"]["crop"] == "face"


@pytest.mark.parametrize("where", ["global", "dataset"])
def test_openface_backend_needs_an_executable_before_any_job(config, tmp_path, where):
    missing = str(tmp_path / "OpenFace" / "FeatureExtraction")
    face = {"backend": "openface", "openface_bin": missing}
    config["face"] = {"backend": "facemesh", "openface_bin": None, "detection_threshold": 0.5}
    if where == "global":
        config["face"].update(face)
        key = "face.openface_bin"
    else:
        config["datasets"]["enterface"]["face"] = face
        key = "datasets.enterface.face.openface_bin"
    for section, values in (("frames", {}), ("audio", {})):
        config.setdefault(section, values)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_openface(config)
    script = tmp_path / "OpenFace" / "FeatureExtraction"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match="not an executable"):
        check_openface(config)
    script.chmod(0o755)
    check_openface(config)


def openface_config(config, tmp_path, args, where) -> str:
    """``config`` with the OpenFace backend, a FeatureExtraction that exists and ``args`` set globally
    or for enterface only; the key the args are set under."""
    binary = tmp_path / "FeatureExtraction"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    config["face"] = {"backend": "openface", "openface_bin": str(binary), "openface_args": [], "detection_threshold": 0.5}
    if where == "global":
        config["face"]["openface_args"] = args
        return "face.openface_args"
    config["datasets"]["enterface"]["face"] = {"openface_args": args}
    return "datasets.enterface.face.openface_args"


@pytest.mark.parametrize("where", ["global", "dataset"])
def test_openface_args_are_set_globally_or_per_dataset(config, tmp_path, where):
    args = ["-mloc", "model/main_clnf_general.txt", "-au_static"]
    openface_config(config, tmp_path, args, where)
    assert config_errors(config) == []
    check_openface(config)
    assert preprocess_settings(config, "enterface")["face"]["openface_args"] == args
    # a dataset's own list replaces the global one, as any other face setting does
    assert preprocess_settings(config, "mafw")["face"]["openface_args"] == (args if where == "global" else [])


@pytest.mark.parametrize("where", ["global", "dataset"])
@pytest.mark.parametrize(
    "args, expected",
    [
        ("-mloc model/main_clnf_general.txt", "'-mloc model/main_clnf_general.txt' is not a list; allowed: a list of strings"),
        (["-sigma", 1.5], "item 1.5 of ['-sigma', 1.5] is not a string; allowed: a list of strings"),
        (["-mloc", "model/main_clnf_general.txt", "-out_dir", "/tmp/elsewhere"], "'-out_dir' is set by avemotion"),
        (["-f", "/data/other.mp4"], "'-f' is set by avemotion"),
        (["-of", "renamed"], "'-of' is set by avemotion"),
    ],
)
def test_openface_args_that_are_not_strings_or_are_avemotions_own_stop_the_run(config, tmp_path, where, args, expected):
    key = openface_config(config, tmp_path, args, where)
    with pytest.raises(ConfigError) as error:
        check_openface(config)
    assert str(error.value).startswith(f"config: {key}: {expected}")
    if "set by avemotion" in expected:
        assert "-f, -fdir, -device, -root, -inroot, -out_dir, -of are not allowed" in str(error.value)
    else:
        assert "e.g. ['-mloc', 'model/main_clnf_general.txt']" in str(error.value)


def test_schema_variants_are_the_registry():
    assert load_schema()["properties"]["model"]["properties"]["variant"]["enum"] == list(VARIANTS)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda c, tmp: c["model"].update(pretrained=str(tmp / "videomae-base")), "model.pretrained: '{tmp}/videomae-base' does not exist"),
        (lambda c, tmp: c["frames"].update(num_frames=7), "frames.num_frames: 7 is not allowed with model.variant 'tiny'; allowed values: multiples of 2"),
        (lambda c, tmp: c["datasets"]["mafw"].update(frames={"input_size": 200}), "datasets.mafw.frames.input_size: 200 is not allowed with model.variant 'tiny'; allowed values: multiples of 16"),
        # both at once, not one per run
        (lambda c, tmp: c["frames"].update(num_frames=15, input_size=150), "config: frames.num_frames: 15 is not allowed with model.variant 'tiny'; allowed values: multiples of 2 (the VideoMAE tubelet size)\nconfig: frames.input_size: 150 is not allowed"),
    ],
)
def test_model_settings_are_checked_before_any_job(config, tmp_path, change, expected):
    validate(config, schema=str(SCHEMA_PATH))  # fills defaults as the Snakefile does
    check_model(config)
    change(config, tmp_path)
    with pytest.raises(ConfigError) as error:
        check_model(config)
    assert expected.format(tmp=tmp_path) in str(error.value)
    assert len(str(error.value).splitlines()) == len(set(str(error.value).splitlines()))  # a global key named once


def filled(config) -> dict:
    validate(config, schema=str(SCHEMA_PATH))
    return config


def test_experiment_settings_merge_defaults_and_pick_shared_labels(config):
    config["experiments"] = [
        {"name": "mix", "datasets": ["crema_d", "enterface"], "fusion": "hybrid", "training": {"epochs": 3}, "model": {"variant": "small"}},
    ]
    settings = experiment_settings(filled(config), "mix")
    # CREMA-D has neutral, eNTERFACE surprise: the mixture learns the five both have.
    assert settings["labels"] == ["anger", "disgust", "fear", "happiness", "sadness"]
    assert settings["folds"] == [1, 2, 3, 4, 5] and settings["final"] is True
    assert settings["training"]["epochs"] == 3 and settings["training"]["batch_size"] == 8
    assert settings["model"] == {"variant": "small", "pretrained": None, "frame_normalization": "clip"}  # the demo config's
    assert (settings["num_frames"], settings["image_size"]) == (4, 64)  # the demo's frames


def test_default_labels_are_the_classes_every_corpus_has_in_canonical_order():
    """The labels' order is the model's class order (its probability columns): the canonical one
    for every experiment, not alphabetical (MAFW's contempt, anxiety, ... come after surprise)."""
    assert default_labels(["mafw"]) == list(CANONICAL_LABELS)
    assert default_labels(["mafw", "enterface"]) == ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]


@pytest.mark.parametrize(
    "experiments, expected",
    [
        ([{"name": "a", "datasets": ["crema_d"], "fusion": "early"}] * 2, "names must be unique; repeated: a"),
        ([{"name": "m", "datasets": ["crema_d", "mafw"], "fusion": "late"}], "experiment 'm' mixes crema_d (4 frames of 64 px, 1 window(s)) and mafw (16 of 64, 1)"),
        ([{"name": "e", "datasets": ["enterface"], "fusion": "early", "labels": ["anger"]}], "leaves fewer than two classes"),
    ],
)
def test_experiment_mistakes_stop_the_run_before_any_job(config, experiments, expected):
    config["experiments"] = experiments
    config["datasets"]["mafw"]["frames"] = {"num_frames": 16}
    with pytest.raises(ConfigError) as error:
        check_experiments(filled(config))
    assert expected in str(error.value)


def test_mixtures_leave_each_corpus_out_and_single_corpora_are_tested_on_the_others(config):
    config["experiments"] = [
        {"name": "mix", "datasets": ["crema_d", "enterface"], "fusion": "hybrid"},
        {"name": "cd", "datasets": ["crema_d"], "fusion": "late"},
        {"name": "cd_no_final", "datasets": ["crema_d"], "fusion": "late", "final": False},
    ]
    config["datasets"]["mafw"]["frames"] = {"num_frames": 16}  # sampled unlike CREMA-D's model input
    config = filled(config)
    assert heldout_datasets(experiment_settings(config, "mix")) == ["crema_d", "enterface"]
    assert heldout_datasets(experiment_settings(config, "cd")) == []
    # Cross-corpus needs the final model, shared labels and the same frame sampling.
    assert cross_corpus_datasets(config, "cd") == ["enterface"]
    assert cross_corpus_datasets(config, "cd_no_final") == [] and cross_corpus_datasets(config, "mix") == []


def test_an_experiment_without_a_final_model_plans_no_final_run():
    """final: false trains no final model: its run is neither checked before the jobs nor costed."""
    runs = planned_runs({"folds": [1, 3], "final": False, "datasets": ["crema_d", "enterface"]})
    assert runs == [("fold_1", 1, None), ("fold_3", 3, None), (heldout_run("crema_d"), None, "crema_d"), (heldout_run("enterface"), None, "enterface")]
    assert [run for run, _, _ in planned_runs({"folds": [2], "final": True, "datasets": ["crema_d"]})] == ["fold_2", "final"]


def product_config(**datasets) -> dict:
    """config.yaml with the given dataset roots, defaults filled in as the workflow fills them."""

    config = merge_config(load_config(), {"datasets": {name: {"root": str(root)} for name, root in datasets.items()}})
    prepare_config(config)
    return filled(config)


def test_product_config_states_the_schema_defaults():
    """config.yaml and the schema's defaults agree, so a key left out of a hand-written config means
    the same as in config.yaml."""

    config = load_config()
    defaults = filled({"datasets": {name: {} for name in config["datasets"]}})
    for section in ("frames", "audio", "face", "model", "training"):
        assert {key: defaults[section][key] for key in config[section]} == config[section], section
    assert {name: defaults["datasets"][name]["chunks"] for name in config["datasets"]} == {
        name: settings["chunks"] for name, settings in config["datasets"].items()
    }


def test_the_quiet_keys_hold_the_schema_defaults():
    """A key left out of the jobs' params while it holds its quiet value (what results made before the
    key existed were computed with) means the same as a config that leaves it out: its default. A
    default changed in the schema must be a decision about those results too."""
    defaults = filled({"datasets": {}})
    for section, quiet in QUIET_DEFAULTS.items():
        assert {key: defaults[section][key] for key in quiet} == quiet, section
    assert {key: defaults["training"][key] for key in QUIET_TRAINING} == QUIET_TRAINING
    # the audio branch's keys: those a CNN model's params leave out, and their values in models trained before them
    assert set(AUDIO_DEFAULTS) == set(AUDIO_MODEL_KEYS)
    assert {key: defaults["model"][key] for key in AUDIO_DEFAULTS} == AUDIO_DEFAULTS


def test_a_root_without_the_corpus_layout_names_the_dataset_path_and_what_was_expected(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetRootError, match=rf"dataset 'crema_d': no VideoFlash/\*\.flv under '{empty}'"):
        check_datasets(product_config(crema_d=empty))
    with pytest.raises(DatasetRootError, match=r"dataset 'enterface': no 'subject N/<emotion>/sentence K/sN_<code>_K\.avi' under"):
        check_datasets(product_config(enterface=empty))
    with pytest.raises(DatasetRootError, match=r"dataset 'mafw': no data/clips/NNNNN\.mp4 under"):
        check_datasets(product_config(mafw=empty))


def test_a_root_holding_another_corpus_says_which(mafw_tree, crema_d_tree):
    with pytest.raises(DatasetRootError, match=r"dataset 'crema_d': no VideoFlash/\*\.flv under '.*'; it holds the layout of mafw"):
        check_datasets(product_config(crema_d=mafw_tree))
    with pytest.raises(DatasetRootError, match=r"dataset 'mafw': no data/clips/NNNNN\.mp4 under '.*'; it holds the layout of crema_d"):
        check_datasets(product_config(mafw=crema_d_tree))
    check_datasets(product_config(crema_d=crema_d_tree, mafw=mafw_tree))


def test_a_root_holding_two_other_corpora_names_both(tmp_path):
    """One folder that gathers several corpora (CREMA-D's VideoFlash beside MAFW's data/clips), set
    as another corpus' root: the error names every corpus it holds, not the first one found."""
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv", "FLV")
    touch(tmp_path / "data" / "clips" / "00001.mp4")
    touch(tmp_path / SPLIT_DIR / "set_1" / "test.txt", "00001.mp4 anger\n")
    with pytest.raises(DatasetRootError, match=r"dataset 'enterface': no 'subject N/.*' under '.*'; it holds the layout of crema_d and mafw \(config key datasets\.enterface\.root"):
        check_datasets(product_config(enterface=tmp_path))


def test_a_root_inside_the_corpus_a_file_or_an_unset_variable_says_so(mafw_tree, crema_d_tree, tmp_path, monkeypatch):
    """A root set to the corpus' media folder (CREMA-D's VideoFlash, MAFW's data/clips), to a file of
    the corpus, or through a variable the shell does not have: each says what to set instead."""
    with pytest.raises(DatasetRootError, match=rf"no VideoFlash/\*\.flv under '.*VideoFlash'; '{crema_d_tree}' above it holds crema_d's layout: set the root to that folder"):
        check_datasets(product_config(crema_d=crema_d_tree / "VideoFlash"))
    with pytest.raises(DatasetRootError, match=rf"'{mafw_tree}' above it holds mafw's layout"):
        check_datasets(product_config(mafw=mafw_tree / "data" / "clips"))
    table = tmp_path / "VideoDemographics.csv"
    table.write_text("ActorID,Age,Sex,Race,Ethnicity\n")
    with pytest.raises(DatasetRootError, match=r"^dataset 'crema_d': root '.*VideoDemographics\.csv' is a file, not the corpus' folder \(config key datasets\.crema_d\.root\)$"):
        check_datasets(product_config(crema_d=table))
    monkeypatch.delenv("CORPORA_XYZ", raising=False)
    with pytest.raises(DatasetRootError, match=r"root directory '\$CORPORA_XYZ/CREMA-D' does not exist; \$CORPORA_XYZ is not set in this environment"):
        check_datasets(product_config(crema_d="$CORPORA_XYZ/CREMA-D"))


def test_mafw_without_its_split_files_is_an_error_before_any_job(tmp_path):
    (tmp_path / "data" / "clips").mkdir(parents=True)
    (tmp_path / "data" / "clips" / "00001.mp4").touch()
    with pytest.raises(DatasetRootError, match="no official split files"):
        check_datasets(product_config(mafw=tmp_path))


def test_experiments_of_unconfigured_corpora_are_left_out_with_a_notice(crema_d_tree):
    config = product_config(crema_d=crema_d_tree)
    assert experiment_names(config) == ["crema_d_hybrid"]
    notices = check_experiments(config)
    assert [n for n in notices if "left out" in n] == [
        "avemotion: experiment 'enterface_hybrid' left out: none of its corpora takes part (it has no root: set datasets.enterface.root)",
        "avemotion: experiment 'mafw_hybrid' left out: none of its corpora takes part (it has no root: set datasets.mafw.root)",
    ]
    assert all("\n" not in notice for notice in notices)


def test_an_experiment_mixing_configured_and_unconfigured_corpora_says_which_to_set(crema_d_tree):
    config = product_config(crema_d=crema_d_tree)
    config["experiments"] = [{"name": "pair", "datasets": ["crema_d", "enterface"], "fusion": "late"}]
    with pytest.raises(ConfigError, match=r"experiment 'pair' uses enterface, which has no root: set datasets\.enterface\.root, or remove enterface"):
        check_experiments(config)
    # a corpus whose root is set but that is disabled says so, not to set the root it has
    config["datasets"]["enterface"] = {"root": str(crema_d_tree), "enabled": False}
    with pytest.raises(ConfigError, match=r"uses enterface, which is disabled: set datasets\.enterface\.enabled: true, or remove enterface"):
        check_experiments(config)


def weights_record(path: Path, **backbone) -> Path:
    """An avemotion .weights.h5 as far as the config check reads it: its architecture record."""
    with h5py.File(path, "w") as handle:
        handle.attrs["avemotion_videomae"] = json.dumps({"backbone": {**variant_settings("tiny"), **backbone}, "num_classes": 0, "label_names": None})
    return path


def test_weight_files_that_cannot_be_what_the_model_settings_ask_for_stop_the_run_before_any_job(enterface_tree, tmp_path):
    """Training loads its weights only after every clip is preprocessed: a file of another variant,
    a Whisper file as VideoMAE weights and the reverse, or no weights at all stop the run at once,
    naming the key, the file and why; a file that fits passes, with a notice where frames are
    standardised per clip (the weights learnt ImageNet-standardised ones)."""
    config = product_config(enterface=enterface_tree)
    config["experiments"] = [{"name": "e", "datasets": ["enterface"], "fusion": "late"}]
    config["model"] = {**config["model"], "variant": "tiny", "pretrained": str(weights_record(tmp_path / "tiny.weights.h5"))}
    assert not any("weights" in notice for notice in check_experiments(config))
    config["model"]["frame_normalization"] = "clip"
    assert any("model.frame_normalization: clip" in notice for notice in check_experiments(config))
    whisper = tmp_path / "whisper"
    touch(whisper / "config.json", json.dumps({"model_type": "whisper"}))
    hf = tmp_path / "videomae"
    touch(hf / "config.json", json.dumps({"model_type": "videomae", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12}))
    text = tmp_path / "notes.weights.h5"
    text.write_text("not weights")
    cases = [
        (str(weights_record(tmp_path / "two.weights.h5", num_layers=2)), "does not fit model.variant 'tiny' (num_layers 2 where tiny has 4)"),
        (str(hf), "does not fit model.variant 'tiny' (hidden_size 768 where tiny has 192, num_layers 12 where tiny has 4"),
        (str(whisper), "holds a Whisper encoder (set it as model.audio_weights, with model.audio_encoder: whisper)"),
        (str(text), "unrecognised checkpoint format"),
    ]
    for path, reason in cases:
        config["model"]["pretrained"] = path
        with pytest.raises(ConfigError) as error:
            check_experiments(config)
        assert str(error.value).startswith(f"config: model.pretrained: {path!r} ") and reason in str(error.value), error.value
    # the experiment's own model keys name its own key; VideoMAE weights as the Whisper encoder's
    config["model"]["pretrained"] = None
    config["experiments"][0]["model"] = {"audio_encoder": "whisper", "audio_weights": str(hf)}
    with pytest.raises(ConfigError) as error:
        check_experiments(config)
    assert str(error.value).startswith(f"config: experiments.e.model.audio_weights: {str(hf)!r}: ")
    assert "not whisper (VideoMAE weights go in model.pretrained)" in str(error.value)
    config["experiments"][0]["model"]["audio_weights"] = str(whisper)
    check_experiments(config)  # a Whisper folder passes (its tensors are checked as training loads them)
    # any other Keras archive, a trained avemotion model say, is no Whisper encoder
    archive = tmp_path / "trained.keras"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("config.json", json.dumps({"class_name": "Functional"}))
        handle.writestr("model.weights.h5", b"")
    config["experiments"][0]["model"]["audio_weights"] = str(archive)
    with pytest.raises(ConfigError, match="is a Keras archive of another model, not a Whisper encoder"):
        check_experiments(config)
    # the keys named are those the config sets: the model section's weights, the experiment's variant;
    # and a folder of another kind of model is refused by its config.json
    config["experiments"][0]["model"] = {"variant": "small"}
    config["model"]["pretrained"] = str(hf)
    with pytest.raises(ConfigError) as error:
        check_experiments(config)
    assert str(error.value).startswith(f"config: model.pretrained: {str(hf)!r} does not fit experiments.e.model.variant 'small' (")
    touch(hf / "config.json", json.dumps({"model_type": "vit"}))
    with pytest.raises(ConfigError, match="config.json describes a 'vit' model, not videomae"):
        check_experiments(config)


@pytest.mark.parametrize(
    "experiment, expected",
    [
        ({"folds": [1, 7]}, "experiments.e.folds: [7] is not allowed; allowed values: 'all' or a list of the protocol's folds 1-5 of enterface"),
        ({"labels": ["anger", "contempt"]}, "experiments.e.labels: 'contempt' is not a class of enterface; allowed values: anger, disgust, fear, happiness, sadness, surprise"),
    ],
)
def test_folds_and_labels_outside_the_corpus_protocol_stop_the_run(experiment, expected, enterface_tree):
    config = product_config(enterface=enterface_tree)
    config["experiments"] = [{"name": "e", "datasets": ["enterface"], "fusion": "late", **experiment}]
    with pytest.raises(ConfigError) as error:
        check_experiments(config)
    assert expected in str(error.value)


def test_a_mixtures_labels_may_come_from_any_of_its_corpora(crema_d_tree, enterface_tree):
    config = product_config(crema_d=crema_d_tree, enterface=enterface_tree)
    config["experiments"] = [{"name": "m", "datasets": ["crema_d", "enterface"], "fusion": "late", "labels": ["neutral", "surprise"]}]
    assert experiment_settings(config, "m")["labels"] == ["neutral", "surprise"]


def test_a_batch_larger_than_a_training_split_stops_with_the_numbers(enterface_tree):
    config = product_config(enterface=enterface_tree)
    manifest, _ = index_dataset("enterface", enterface_tree, config["datasets"]["enterface"])
    runs = training_runs(config, {"enterface": manifest})
    assert [run["run"] for run in runs] == ["fold_1", "fold_2", "fold_3", "fold_4", "fold_5", "final"]
    assert all(run["train"] + run["validation"] + run["test"] == len(manifest) for run in runs)
    smallest = min(run["train"] for run in runs)
    config["training"]["batch_size"] = smallest
    check_training_runs(config, {"enterface": manifest})
    config["training"]["batch_size"] = smallest + 1
    with pytest.raises(ConfigError, match=rf"training\.batch_size: {smallest + 1} is larger than the {smallest} training clips of experiment 'enterface_hybrid', fold_\d; allowed values: at most {smallest}"):
        check_training_runs(config, {"enterface": manifest})


def test_gradient_accumulation_longer_than_a_training_phase_stops_with_the_numbers(enterface_tree):
    """Each phase starts a fresh optimizer, which applies gradients once per training.accumulation_steps
    batches: a recipe's value on a small copy would end a phase before its first update, the weights
    untouched and the run "trained". The check names the key, the phase and how many it allows."""
    config = product_config(enterface=enterface_tree)
    manifest, _ = index_dataset("enterface", enterface_tree, config["datasets"]["enterface"])
    smallest = min(run["train"] for run in training_runs(config, {"enterface": manifest}))
    config["training"].update(batch_size=smallest, epochs=3, frozen_backbone_epochs=1)  # phases of 1 and 2 one-batch epochs
    config["training"]["accumulation_steps"] = 1
    check_training_runs(config, {"enterface": manifest})
    config["training"]["accumulation_steps"] = 2
    with pytest.raises(ConfigError, match=(
        rf"training\.accumulation_steps: 2 is more than the 1 batches of the frozen-backbone phase \(training\.frozen_backbone_epochs\) "
        rf"of experiment 'enterface_hybrid', fold_\d \(1 epoch\(s\) of 1 batches: {smallest} training clips in batches of {smallest}\).*allowed values: at most 1"
    )):
        check_training_runs(config, {"enterface": manifest})
    config["training"]["frozen_backbone_epochs"] = 0  # one phase of three batches: three batches make an update
    config["training"]["accumulation_steps"] = 3
    check_training_runs(config, {"enterface": manifest})
    config["training"]["accumulation_steps"] = 4
    with pytest.raises(ConfigError, match=r"accumulation_steps: 4 is more than the 3 batches of the fine-tuning phase .*allowed values: at most 3"):
        check_training_runs(config, {"enterface": manifest})


def test_a_run_left_without_clips_stops_once_indexed_naming_the_run_and_what_is_empty(enterface_tree):
    """A fold the leave-outs emptied, or labels the training corpora lack, failed only when the
    training job started, after every clip was preprocessed; and the second showed as a batch
    'larger than the 0 training clips', asking for a batch of at most 0."""

    config = product_config(enterface=enterface_tree)
    manifest, _ = index_dataset("enterface", enterface_tree, config["datasets"]["enterface"])
    check_training_runs(config, {"enterface": manifest})
    without_fold_5 = manifest[manifest["fold"] != 5]  # e.g. every subject of fold 5 left out
    with pytest.raises(ConfigError, match=r"^config: experiments\.enterface_hybrid: its run fold_5 has no test clips of its labels \(anger, .*\); allowed: folds that hold clips \(experiments\.enterface_hybrid\.folds\)"):
        check_training_runs(config, {"enterface": without_fold_5})
    only_in_fold_1 = manifest.assign(label=manifest["label"].where(manifest["fold"] == 1, "surprise"))
    next(e for e in config["experiments"] if e["name"] == "enterface_hybrid")["labels"] = ["anger", "disgust"]
    with pytest.raises(ConfigError, match=r"its run fold_1 has no train and no validation clips of its labels \(anger, disgust\);.* and labels its corpora have \(experiments\.enterface_hybrid\.labels\)$"):
        check_training_runs(config, {"enterface": only_in_fold_1})
    # a partial copy: one subject outside fold 1 trains, and none is left to validate on
    two_subjects = manifest[manifest["speaker"].isin(sorted(manifest.loc[manifest["fold"] == 1, "speaker"])[:1] + sorted(manifest.loc[manifest["fold"] == 2, "speaker"])[:1])]
    next(e for e in config["experiments"] if e["name"] == "enterface_hybrid").update(labels=None, folds=[1])
    with pytest.raises(ConfigError, match=r"its run fold_1 has no validation clips: they come from the speakers it trains on .*none of its corpora has two or more of them"):
        check_training_runs(config, {"enterface": two_subjects})


def test_labels_no_indexed_clip_has_are_named_once_indexed(enterface_tree):
    """A partial copy (or labels from another corpus) leaves classes no clip trains: the run says so
    before any job, naming them and the key that sets the labels; a full corpus says nothing."""
    config = product_config(enterface=enterface_tree)
    manifest, _ = index_dataset("enterface", enterface_tree, config["datasets"]["enterface"])
    assert absent_labels_notice(config, {"enterface": manifest}, "enterface_hybrid") is None
    partial = manifest[~manifest["label"].isin(["disgust", "fear"])]
    check_training_runs(config, {"enterface": partial})  # trains, with the notice
    notice = absent_labels_notice(config, {"enterface": partial}, "enterface_hybrid")
    assert notice.startswith("avemotion: experiments.enterface_hybrid.labels: no clip of enterface is disgust, fear: ")
    assert "UAR averages only the 4 classes the test clips hold; set experiments.enterface_hybrid.labels" in notice


def test_labels_no_indexed_clip_of_a_mixtures_corpora_has_are_the_ones_named(tmp_path):
    """A mixture's label is held when any of its corpora has clips of it: only those that no corpus
    has are named, one of them as "it"."""
    config = product_config(crema_d=tmp_path / "crema_d", enterface=tmp_path / "enterface")
    config["experiments"] = [{"name": "mix", "datasets": ["crema_d", "enterface"], "fusion": "late"}]
    assert experiment_settings(config, "mix")["labels"] == ["anger", "disgust", "fear", "happiness", "sadness"]
    manifests = {"crema_d": pd.DataFrame({"label": ["anger", "disgust", "fear"]}), "enterface": pd.DataFrame({"label": ["happiness", "anger"]})}
    notice = absent_labels_notice(config, manifests, "mix")
    assert notice.startswith("avemotion: experiments.mix.labels: no clip of crema_d, enterface is sadness: the model keeps an output for it that nothing trains")
    assert "UAR averages only the 4 classes the test clips hold" in notice


def test_a_mixtures_runs_are_counted_once_all_its_corpora_are_indexed_each_held_out_corpus_tested_whole(crema_d_tree, enterface_tree):
    """The runs counted are split as their jobs split them (the experiment's validation fraction
    and seed); a mixture waits for every corpus' manifest, and the workflow asks for one experiment."""
    config = product_config(crema_d=crema_d_tree, enterface=enterface_tree)
    config["experiments"] = [{"name": "mix", "datasets": ["crema_d", "enterface"], "fusion": "late"}, {"name": "e", "datasets": ["enterface"], "fusion": "late"}]
    config["training"].update(validation_fraction=0.3, seed=7)
    manifests = {name: index_dataset(name, root, config["datasets"][name])[0] for name, root in (("crema_d", crema_d_tree), ("enterface", enterface_tree))}
    assert {run["experiment"] for run in training_runs(config, {"enterface": manifests["enterface"]})} == {"e"}
    runs = training_runs(config, manifests, ["mix"])
    assert [run["run"] for run in runs] == ["fold_1", "fold_2", "fold_3", "fold_4", "fold_5", "final", heldout_run("crema_d"), heldout_run("enterface")]
    labels = experiment_settings(config, "mix")["labels"]
    clips = {name: manifest[manifest["label"].isin(labels)] for name, manifest in manifests.items()}
    for held_out, other in (("crema_d", "enterface"), ("enterface", "crema_d")):
        run = next(run for run in runs if run["run"] == heldout_run(held_out))
        assert run["test"] == len(clips[held_out]) and run["train"] + run["validation"] == len(clips[other])
    mixed = pd.concat(clips.values(), ignore_index=True)
    for run, fold in zip(runs, [1, 2, 3, 4, 5, None]):
        split = speaker_splits(mixed, fold, 0.3, 7)
        assert run == {"experiment": "mix", "run": run["run"], "held_out": None, **{part: len(ids) for part, ids in split.items()}}
    assert len(speaker_splits(mixed, 1, 0.3, 7)["train"]) != len(speaker_splits(mixed, 1, 0.3, 0)["train"])  # the seed matters here
    # labels the corpora do not share: a held-out corpus has nothing its model could learn to score;
    # said before any job (it showed as a batch larger than the training clips, then failed in the job)
    config["experiments"][0]["labels"] = ["neutral", "surprise"]  # neutral only in CREMA-D, surprise only in eNTERFACE
    with pytest.raises(ConfigError, match=r"^config: experiments\.mix\.labels: its run heldout_crema_d has no test clips: no clip of crema_d is of a class that its other corpora hold"):
        check_training_runs(config, manifests, ["mix"])


def test_a_batch_of_one_clip_per_device_is_refused_where_valence_and_arousal_are_learned(config):
    """The CCC loss of one clip is constant (no gradient): batch_size 1, or 8 on 8 GPUs, left the
    valence/arousal heads at their initial output, silently."""

    config = filled(config)
    name = config["experiments"][0]["name"]
    config["training"].update(batch_size=1, gpus=1)
    with pytest.raises(ConfigError, match=r"^config: training\.batch_size: 1 gives 1 clip\(s\) per batch on each of 1 device\(s\).*allowed values: at least 2"):
        experiment_settings(config, name)
    own = config["experiments"][0].setdefault("training", {})
    own["batch_size"] = 1  # the key named is the one the user wrote
    with pytest.raises(ConfigError, match=rf"^config: experiments\.{name}\.training\.batch_size: 1 gives 1 clip\(s\)"):
        experiment_settings(config, name)
    del own["batch_size"]
    config["training"].update(batch_size=8, gpus=8)
    with pytest.raises(ConfigError, match=r"allowed values: at least 16"):
        experiment_settings(config, name)
    config["training"].update(batch_size=16)
    assert experiment_settings(config, name)["training"]["batch_size"] == 16
    config["training"].update(batch_size=8, backend="jax")  # a JAX job trains on one device
    assert experiment_settings(config, name)["training"]["batch_size"] == 8
    config["training"].update(batch_size=1, gpus=0, backend="tensorflow")
    with pytest.raises(ConfigError, match=r"1 clip\(s\) per batch on each of 1 device\(s\)"):
        experiment_settings(config, name)
    config["training"].update(va_loss_weight=0)  # nothing learned from the CCC
    assert experiment_settings(config, name)["training"]["batch_size"] == 1


def test_settings_a_training_would_quietly_cut_stop_the_run(config):
    """More frozen-backbone epochs than epochs, or more test windows than the frames stage stores,
    were cut to what there is without a word."""

    config = filled(config)
    name = config["experiments"][0]["name"]
    config["training"].update(epochs=3, frozen_backbone_epochs=3)  # a linear probe: allowed
    experiment_settings(config, name)
    config["training"]["frozen_backbone_epochs"] = 10
    with pytest.raises(ConfigError, match=r"^config: training\.frozen_backbone_epochs: 10 is more than the 3 epochs of training; allowed values: at most 3"):
        experiment_settings(config, name)
    config["training"]["frozen_backbone_epochs"] = 0
    config["frames"]["windows"] = 2
    config["training"]["test_windows"] = 2
    experiment_settings(config, name)
    config["training"]["test_windows"] = 4
    with pytest.raises(ConfigError, match=r"^config: training\.test_windows: 4 is more than the 2 temporal window\(s\) the frames stage stores \(frames\.windows\); allowed values: at most 2, or null"):
        experiment_settings(config, name)
    # the keys named are the ones written: a corpus' own windows, an experiment's own epochs
    config["datasets"]["crema_d"]["frames"] = {"windows": 3}
    with pytest.raises(ConfigError, match=r"4 is more than the 3 temporal window\(s\) the frames stage stores \(datasets\.crema_d\.frames\.windows\)"):
        experiment_settings(config, name)
    config["training"]["test_windows"] = None
    config["experiments"][0]["training"] = {**config["experiments"][0].get("training", {}), "epochs": 2, "frozen_backbone_epochs": 5}
    with pytest.raises(ConfigError, match=rf"^config: experiments\.{name}\.training\.frozen_backbone_epochs: 5 is more than the 2 epochs.*at most 2 \(experiments\.{name}\.training\.epochs\)$"):
        experiment_settings(config, name)


def test_a_mixture_of_corpora_storing_different_windows_stops_the_run(config):
    """The shards of a mixture are read as one stream: corpora storing different numbers of temporal
    windows failed in the training job, after all preprocessing."""

    config = filled(config)
    config["experiments"] = [{"name": "mix", "datasets": ["crema_d", "enterface"], "fusion": "hybrid"}]
    config["datasets"]["crema_d"]["frames"] = {"windows": 2}
    with pytest.raises(ConfigError, match=r"experiment 'mix' mixes crema_d \(4 frames of 64 px, 2 window\(s\)\) and enterface \(4 of 64, 1\); set datasets\.<name>\.frames\.num_frames, input_size and windows alike"):
        experiment_settings(config, "mix")
    config["datasets"]["enterface"]["frames"] = {"windows": 2}
    experiment_settings(config, "mix")


def test_where_a_training_job_runs_is_not_part_of_what_it_learns(config):
    """The training rules' settings parameter leaves out threads and gpus: changing how many a job
    gets must not retrain every model (Snakemake reruns a job whose params changed)."""

    config = filled(config)
    before = model_settings(config, "crema_d_early")
    config["training"].update(threads=8, gpus=2)
    assert model_settings(config, "crema_d_early") == before
    assert experiment_settings(config, "crema_d_early")["training"]["threads"] == 8
    config["training"]["epochs"] += 1
    assert model_settings(config, "crema_d_early") != before


def test_the_keras_backend_a_job_trains_on_is_not_part_of_what_it_learns(config):
    """training.backend (TensorFlow or JAX) is where a job computes: switching it must not retrain
    every model."""
    config = filled(config)
    before = model_settings(config, "crema_d_early")
    config["training"]["backend"] = "jax"
    assert model_settings(config, "crema_d_early") == before
    assert experiment_settings(config, "crema_d_early")["training"]["backend"] == "jax"


def test_a_single_corpus_model_is_tested_only_on_corpora_sharing_two_labels_and_its_frame_size(config):
    """Cross-corpus testing needs at least two shared classes (one class leaves nothing to tell
    apart) and the same frame count and picture size the model reads."""
    config["experiments"] = [{"name": "cd", "datasets": ["crema_d"], "fusion": "late", "labels": ["anger", "neutral"]}]
    config = filled(config)
    # eNTERFACE has no neutral: one class shared; MAFW has both
    assert cross_corpus_datasets(config, "cd") == ["mafw"]
    config["experiments"][0]["labels"] = None
    assert cross_corpus_datasets(config, "cd") == ["enterface", "mafw"]
    config["datasets"]["mafw"]["frames"] = {"input_size": 32}  # same frame count, other picture size
    assert cross_corpus_datasets(config, "cd") == ["enterface"]
    # a corpus's own crop and sampling are its preprocessing, as within a mixture: still tested
    config["datasets"]["mafw"]["frames"] = {"crop": "full", "sampling": "dense", "sampling_rate": 2}
    assert cross_corpus_datasets(config, "cd") == ["enterface", "mafw"]


def test_a_fixed_crop_scale_and_the_augmentation_keys_of_an_unaugmented_model(config):
    """crop_scale [s, s] (one crop area) is allowed; with training.augment: false no augmentation
    key (rand_augment either) is part of what a model learns, so changing one retrains nothing."""
    config = filled(config)
    config["training"].update(augment=True, crop_scale=[0.8, 0.8])
    assert experiment_settings(config, "crema_d_early")["training"]["crop_scale"] == [0.8, 0.8]
    config["training"]["augment"] = False
    before = model_settings(config, "crema_d_early")
    config["training"].update(rand_augment={"ops": 2, "magnitude": 9, "magnitude_std": 0.5}, crop_scale=[0.5, 1.0], random_erasing=0.25)
    assert model_settings(config, "crema_d_early") == before
    config["training"]["augment"] = True
    assert model_settings(config, "crema_d_early")["training"]["rand_augment"] == {"ops": 2, "magnitude": 9, "magnitude_std": 0.5}


def test_adding_a_fold_or_dropping_the_final_model_retrains_no_run_already_trained(config):
    """Which runs an experiment trains is not what any one of them learns: a user who adds fold 3
    to folds [1, 2] (or turns the final model off) gets one new job, not three retrained models."""

    config = filled(config)
    experiment = next(e for e in config["experiments"] if e["name"] == "crema_d_early")
    experiment.update(folds=[1, 2], final=True)
    before = model_settings(config, "crema_d_early")
    experiment.update(folds=[1, 2, 3], final=False)
    assert model_settings(config, "crema_d_early") == before
    assert experiment_settings(config, "crema_d_early")["folds"] == [1, 2, 3]
    experiment["labels"] = experiment_settings(config, "crema_d_early")["labels"][:3]
    assert model_settings(config, "crema_d_early") != before


def test_short_and_truncated_clip_policies_are_set_globally_or_per_dataset_and_keep_rerun_nothing(config):
    """frames.short_clips and frames.truncated_clips reach the frames stage globally or per dataset;
    at their default (keep) they stay out of the settings, which are job params: results made before
    the keys existed are not redone (Snakemake reruns a job whose params changed)."""

    config = filled(config)
    assert config["frames"]["short_clips"] == config["frames"]["truncated_clips"] == "keep"
    before = preprocess_settings(config, "crema_d")["frames"]
    assert before == {key: config["frames"][key] for key in ("num_frames", "input_size", "crop", "face_margin")}
    trained = model_settings(config, "crema_d_early")
    config["datasets"]["mafw"]["frames"] = {"short_clips": "quarantine"}
    assert preprocess_settings(config, "mafw")["frames"]["short_clips"] == "quarantine"
    assert preprocess_settings(config, "crema_d")["frames"] == before and model_settings(config, "crema_d_early") == trained
    config["frames"]["truncated_clips"] = "quarantine"
    assert preprocess_settings(config, "crema_d")["frames"] == {**before, "truncated_clips": "quarantine"}
    config["datasets"]["crema_d"]["frames"] = {"truncated_clips": "keep"}  # a dataset's own default wins too
    assert preprocess_settings(config, "crema_d")["frames"] == before


def test_a_setting_that_only_another_choice_reads_reruns_nothing(config):
    """face_margin is read by the face-square crop only, openface_* by the OpenFace backend only:
    changed under another choice they changed the chunk jobs' params and reran every face and frames
    chunk, fusion and training. They hold their default there, so results made before keep theirs."""

    config = filled(config)
    config["datasets"]["crema_d"]["frames"] = {"crop": "aligned"}
    before = {stage: job_settings(config, "crema_d", stage) for stage in ("face", "frames")}
    trained = model_settings(config, "crema_d_early")
    config["frames"]["face_margin"] = 0.4  # read by the other corpora's face crops
    config["face"]["openface_args"] = ["-mloc", "model/main_clnf_general.txt"]  # the backend is facemesh
    assert {stage: job_settings(config, "crema_d", stage) for stage in ("face", "frames")} == before
    assert model_settings(config, "crema_d_early") == trained
    assert job_settings(config, "mafw", "frames")["face_margin"] == 0.4
    config["datasets"]["crema_d"]["frames"] = {"crop": "face"}
    assert job_settings(config, "crema_d", "frames")["face_margin"] == 0.4


def test_a_setting_held_at_its_default_is_the_callers_own_copy(config):
    """openface_args under the facemesh backend holds its default ([]) in the settings: a caller
    that changes the settings it got changes no other dataset's or later call's settings."""
    config = filled(config)
    config["face"]["openface_args"] = ["-wild"]  # the backend is facemesh: nothing reads it
    settings = preprocess_settings(config, "crema_d")
    assert settings["face"]["openface_args"] == []
    settings["face"]["openface_args"].append("-wild")
    assert preprocess_settings(config, "mafw")["face"]["openface_args"] == []
    assert preprocess_settings(config, "crema_d")["face"]["openface_args"] == []


def test_whispers_keys_are_left_out_of_a_cnn_audio_branchs_model_settings():
    """The audio_* keys change nothing a CNN audio branch computes, so they are left out of its model
    settings (training params): also where audio_encoder is absent, the CNN being the default. A
    Whisper branch keeps them all, in a dict of its own."""
    cnn = {"variant": "small", "audio_preset": "base", "audio_max_seconds": 4.0}
    assert audio_model_settings(cnn) == {"variant": "small"}
    assert audio_model_settings({**cnn, "audio_encoder": "cnn"}) == {"variant": "small"}
    whisper = {**cnn, "audio_encoder": "whisper"}
    kept = audio_model_settings(whisper)
    assert kept == whisper and kept is not whisper


def test_audio_alignment_keys_at_their_defaults_rerun_nothing(config):
    """audio.min_coverage, audio.max_overrun_s and audio.misaligned reach the audio stage globally or
    per dataset; at their defaults they stay out of the settings (job params and receipt
    fingerprints), so audio chunks and trainings made before the keys existed are not redone."""

    config = filled(config)
    assert {key: config["audio"][key] for key in QUIET_DEFAULTS["audio"]} == QUIET_DEFAULTS["audio"]
    before = preprocess_settings(config, "crema_d")["audio"]
    assert before == {key: config["audio"][key] for key in ("window_ms", "hop_ms", "n_mels", "n_mfcc", "missing")}
    trained = model_settings(config, "crema_d_early")
    config["datasets"]["mafw"]["audio"] = {"misaligned": "quarantine", "min_coverage": 0.5}
    assert preprocess_settings(config, "mafw")["audio"] == {**before, "misaligned": "quarantine", "min_coverage": 0.5}
    assert preprocess_settings(config, "crema_d")["audio"] == before and model_settings(config, "crema_d_early") == trained
    config["audio"]["max_overrun_s"] = 1.0
    assert preprocess_settings(config, "crema_d")["audio"] == {**before, "max_overrun_s": 1.0}


def test_keeping_clips_without_a_face_reaches_the_face_stage_and_the_default_reruns_nothing(config):
    """face.no_face: keep (a test fold that holds every clip of the protocol) reaches a dataset's face
    settings, globally or per dataset; at its default (quarantine) it is not in them, so face chunks
    made before the key existed are not redone."""

    config = filled(config)
    before = preprocess_settings(config, "mafw")["face"]
    assert "no_face" not in before
    config["datasets"]["mafw"]["face"] = {"no_face": "keep"}
    assert preprocess_settings(config, "mafw")["face"] == {**before, "no_face": "keep"}
    assert "no_face" not in preprocess_settings(config, "crema_d")["face"]
    config["datasets"]["mafw"]["face"] = {"no_face": "drop"}
    with pytest.raises(ConfigError, match=r"datasets\.mafw\.face\.no_face.*'drop'.*quarantine.*keep"):
        prepare_config(config)


def test_dense_sampling_reaches_the_frames_stage_and_segments_rerun_nothing(config):
    """frames.sampling: dense (with frames.sampling_rate) changes a dataset's frames settings; at its
    default (segments) neither key is in them, whatever the rate, so older results are not redone."""

    config = filled(config)
    before = preprocess_settings(config, "crema_d")["frames"]
    assert "sampling" not in before and "sampling_rate" not in before
    config["frames"]["sampling_rate"] = 2  # read only by dense sampling
    assert preprocess_settings(config, "crema_d")["frames"] == before
    config["datasets"]["mafw"]["frames"] = {"sampling": "dense"}
    assert preprocess_settings(config, "mafw")["frames"] == {**before, "sampling": "dense", "sampling_rate": 2}
    assert preprocess_settings(config, "crema_d")["frames"] == before


def test_test_views_reach_the_model_settings_and_one_view_retrains_nothing(config):
    """training.test_views is a setting of the trained model (evaluation and predict read it from
    there); at its default (1) it stays out of the training jobs' params."""

    config = filled(config)
    before = model_settings(config, "crema_d_early")
    assert "test_views" not in before["training"]
    config["training"]["test_views"] = 2
    assert model_settings(config, "crema_d_early")["training"] == {**before["training"], "test_views": 2}
    config["training"]["test_views"] = 5
    assert any("training.test_views: 5 is greater than the maximum of 4" in error for error in config_errors(config))


def test_test_windows_reach_the_model_settings_and_all_windows_retrain_nothing(config):
    """training.test_windows travels with the trained model as test_views does; unset (all stored
    windows, what evaluation did before the key) it stays out of the training jobs' params."""

    config = filled(config)
    config["frames"]["windows"] = 2
    before = model_settings(config, "crema_d_early")
    assert config["training"]["test_windows"] is None and "test_windows" not in before["training"]
    config["training"]["test_windows"] = 2
    assert model_settings(config, "crema_d_early")["training"] == {**before["training"], "test_windows": 2}
    config["training"]["test_windows"] = 0
    assert any("training.test_windows: 0" in error for error in config_errors(config))


def test_whispers_window_below_one_feature_frame_is_a_config_error(config):
    """0.004 s passed the check and then failed every training job (Whisper's frames are 10 ms)."""
    config["model"]["audio_max_seconds"] = 0.004
    assert any("model.audio_max_seconds: 0.004 is less than the minimum of 0.01" in error for error in config_errors(config))
    config["model"]["audio_max_seconds"] = 0.01
    assert config_errors(config) == []


@pytest.mark.parametrize(
    "change, key, value",
    [
        # YAML 1.1 (PyYAML) reads a number without a point as text, the way papers write rates
        (lambda c: c["training"].update(learning_rate="1e-3"), ("training", "learning_rate"), 0.001),
        (lambda c: c["training"].update(weight_decay="5E-2"), ("training", "weight_decay"), 0.05),
        # snakemake --config 'training={epochs: 3}' passes nested values as text
        (lambda c: c["training"].update(epochs="3"), ("training", "epochs"), 3),
        (lambda c: c["datasets"]["mafw"].update(enabled="false"), ("datasets", "mafw", "enabled"), False),
        (lambda c: c["model"].update(pretrained="null"), ("model", "pretrained"), None),
        # JSON Schema counts 4.0 as an integer; range() and fold folders do not
        (lambda c: c["datasets"]["crema_d"].update(chunks=4.0), ("datasets", "crema_d", "chunks"), 4),
        (lambda c: c["experiments"][0].update(folds=[1.0, "2"]), ("experiments", 0, "folds"), [1, 2]),
        (lambda c: c["training"].update(learning_rate=2), ("training", "learning_rate"), 2),
        (lambda c: c["training"].update(seed="123456789012345678901"), ("training", "seed"), 123456789012345678901),  # exactly
    ],
)
def test_scalars_written_as_text_or_with_a_point_are_read_as_their_keys_take_them(config, change, key, value):
    change(config)
    prepare_config(config)
    found = config
    for part in key:
        found = found[part]
    assert found == value and type(found) is type(value)


def test_what_cannot_be_its_keys_type_is_still_named(config):
    config["training"].update(learning_rate="fast", epochs="3.5")
    config["experiments"][0]["folds"] = "1-3"
    with pytest.raises(ConfigError) as error:
        prepare_config(config)
    assert "training.learning_rate: 'fast' is not of type number" in str(error.value)
    assert "training.epochs: 3.5 is not of type integer" in str(error.value)
    assert "experiments.crema_d_early.folds: '1-3' is not allowed; allowed: \"all\", or a list of the test folds to run" in str(error.value)


def test_home_and_variables_in_paths_are_expanded(config, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CORPORA", str(tmp_path / "corpora"))
    config["datasets"]["crema_d"]["root"] = "~/CREMA-D"
    config["datasets"]["mafw"]["root"] = "$CORPORA/MAFW"
    config["model"]["pretrained"] = "${CORPORA}/videomae.weights.h5"
    config["experiments"][0]["model"] = {"pretrained": "~/own.weights.h5"}
    prepare_config(config)
    assert config["datasets"]["crema_d"]["root"] == str(tmp_path / "CREMA-D")
    assert config["datasets"]["mafw"]["root"] == str(tmp_path / "corpora" / "MAFW")
    assert config["model"]["pretrained"] == str(tmp_path / "corpora" / "videomae.weights.h5")
    assert config["experiments"][0]["model"]["pretrained"] == str(tmp_path / "own.weights.h5")


def test_an_experiments_own_pretrained_weights_must_exist(config, tmp_path):
    config["experiments"][0]["model"] = {"pretrained": str(tmp_path / "nope.weights.h5")}
    with pytest.raises(ConfigError, match=r"experiments\.\w+\.model\.pretrained: '.*nope\.weights\.h5' does not exist"):
        check_model(filled(config))


def test_mfaw_is_read_as_mafw_in_experiments_and_their_weights(config):
    config["experiments"] = [{"name": "mix", "datasets": ["crema_d", "mfaw"], "fusion": "late", "dataset_weights": {"crema_d": 1, "mfaw": 2}}]
    warnings = []
    prepare_config(config, warn=warnings.append)
    assert config["experiments"][0]["datasets"] == ["crema_d", "mafw"] and config["experiments"][0]["dataset_weights"] == {"crema_d": 1, "mafw": 2}
    assert len(warnings) == 2 and all("'MFAW' is a misspelling of MAFW" in warning for warning in warnings)


@pytest.mark.parametrize(
    "weights, expected",
    [
        ({"crema_d": 1, "enterfce": 2}, "experiments.mix.dataset_weights: 'enterfce' is not a dataset of the experiment; no weight for enterface; allowed: a weight > 0 for each of crema_d, enterface"),
        ({"crema_d": 1}, "experiments.mix.dataset_weights: no weight for enterface; allowed"),
        # every dataset weighted, plus one the experiment does not mix (a leftover from an edited recipe)
        ({"crema_d": 1, "enterface": 1, "mafw": 2}, "experiments.mix.dataset_weights: 'mafw' is not a dataset of the experiment; allowed"),
    ],
)
def test_dataset_weights_name_the_experiments_datasets_before_any_job(config, weights, expected):
    config["experiments"] = [{"name": "mix", "datasets": ["crema_d", "enterface"], "fusion": "late", "dataset_weights": weights}]
    with pytest.raises(ConfigError) as error:
        check_experiments(filled(config))
    assert expected in str(error.value)


def test_a_key_written_twice_in_a_config_file_is_an_error_naming_the_lines(tmp_path):
    """YAML loaders keep the second and drop the first without a word: two datasets: blocks lost
    the first block's corpora."""

    path = tmp_path / "mine.yaml"
    path.write_text("datasets:\n  crema_d: {root: /data/CREMA-D}\ntraining: {epochs: 3}\ndatasets:\n  mafw: {root: /data/MAFW}\n")
    with pytest.raises(ConfigFileError, match=r"mine\.yaml, line 4: datasets repeats the key of line 1 \(YAML keeps only the last; merge them\)"):
        load_config(path)
    # a merge key (<<: *anchor) repeats nothing, and a repeat after one is still found
    path.write_text("base: &base {epochs: 3}\ntraining:\n  <<: *base\n  batch_size: 8\n  batch_size: 16\n")
    with pytest.raises(ConfigFileError, match=r"line 5: batch_size repeats the key of line 4"):
        load_config(path)


def test_a_yaml_syntax_error_in_a_config_file_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("training:\n  epochs: 3\n  batch_size: [8, 16\nmodel: {variant: tiny}\n")
    with pytest.raises(ConfigFileError) as error:
        load_config(path)
    assert str(error.value) == f"config file {path}, line 4, column 6: not valid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence)"


def test_an_empty_config_file_changes_nothing(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("# nothing set here yet\n")
    assert load_config(path) == load_config()


def snakemake_loader():
    """A stand-in for snakemake.common.configfile: its loader's errors name neither line nor column."""

    class WorkflowError(Exception):
        pass

    def _load_configfile(configpath_or_obj, filetype="Config"):
        try:
            with open(configpath_or_obj, encoding="utf-8") as handle:
                return yaml.safe_load(handle)
        except yaml.YAMLError:
            raise WorkflowError(f"{filetype} file is not valid JSON or YAML.") from None
        except FileNotFoundError:
            raise WorkflowError(f"{filetype} file {configpath_or_obj} not found.") from None

    return types.SimpleNamespace(WorkflowError=WorkflowError, _load_configfile=_load_configfile)


def test_snakemakes_config_and_schema_errors_name_the_file_and_line(tmp_path, monkeypatch):
    """With the loader module already imported, watch_snakemake wraps it at once: a syntax error says
    where (for --configfile files and for the schema Snakemake's validate reads), a key written twice
    is an error, a missing file keeps Snakemake's own message and a good file loads as before."""
    loader = snakemake_loader()
    monkeypatch.setitem(sys.modules, SNAKEMAKE_LOADER, loader)
    watch_snakemake()
    broken = tmp_path / "mine.yaml"
    broken.write_text("training:\n  epochs: 3\n  batch_size: [8, 16\nmodel: {variant: tiny}\n")
    with pytest.raises(loader.WorkflowError, match=rf"^Config file {re.escape(str(broken))}, line 4, column 6: not valid YAML: expected"):
        loader._load_configfile(str(broken))
    with pytest.raises(loader.WorkflowError, match=rf"^Schema file {re.escape(str(broken))}, line 4, column 6: not valid YAML"):
        loader._load_configfile(broken, filetype="Schema")
    with pytest.raises(loader.WorkflowError, match=r"^Schema file .*nowhere\.yaml not found\.$"):
        loader._load_configfile(str(tmp_path / "nowhere.yaml"), filetype="Schema")
    broken.write_text("datasets:\n  crema_d: {root: /data/CREMA-D}\ndatasets:\n  mafw: {root: /data/MAFW}\n")
    with pytest.raises(loader.WorkflowError, match=r"^Config file .*mine\.yaml, line 3: datasets repeats the key of line 1 \(YAML keeps only the last"):
        loader._load_configfile(str(broken))
    broken.write_text("training: {epochs: 3}\n")
    assert loader._load_configfile(str(broken)) == {"training": {"epochs": 3}}


def test_the_installed_pth_file_makes_snakemake_name_the_line_of_a_yaml_error(tmp_path, monkeypatch):
    """`make setup` installs a .pth file that runs after the editable install's (so avemotion is
    importable) and wraps Snakemake's loader when a later import loads it."""
    monkeypatch.setattr(config_file_errors.sysconfig, "get_paths", lambda: {"purelib": str(tmp_path)})
    pth = install_pth()
    assert pth.parent == tmp_path and sorted([pth.name, f"__editable__.avemotion-{avemotion.__version__}.pth"])[-1] == pth.name
    broken = tmp_path / "mine.yaml"
    broken.write_text("training:\n  epochs: 3\n  batch_size: [8, 16\nmodel: {variant: tiny}\n")
    script = (
        "import site, sys\n"
        "sys.meta_path[:] = [finder for finder in sys.meta_path if type(finder).__name__ != '_WrapOnImport']\n"  # a venv's own .pth
        "site.addsitedir(sys.argv[1])\n"
        "from snakemake.common.configfile import load_configfile\n"
        "load_configfile(sys.argv[2])\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(broken)], capture_output=True, text=True, timeout=60)
    assert f"Config file {broken}, line 4, column 6: not valid YAML: expected ',' or ']'" in result.stderr, result.stderr


def test_openface_backend_without_a_binary_says_to_name_one(config):
    config["datasets"]["enterface"]["face"] = {"backend": "openface", "openface_bin": None}
    with pytest.raises(ConfigError, match=r"^config: datasets\.enterface\.face\.openface_bin must name OpenFace's FeatureExtraction when face\.backend is 'openface'$"):
        check_openface(config)
    for unset in (None, ""):  # a trained model's preprocessor asks with its own hint
        with pytest.raises(ValueError, match=r"^no OpenFace FeatureExtraction binary configured \(config key face\.openface_bin\)$"):
            openface_executable(unset)


def test_openface_settings_of_a_disabled_dataset_are_not_checked(config, tmp_path):
    config["datasets"]["enterface"].update(enabled=False, face={"backend": "openface", "openface_bin": str(tmp_path / "missing")})
    check_openface(config)


def test_frames_of_a_disabled_dataset_are_not_checked_against_the_variant(config):
    filled(config)
    config["datasets"]["enterface"]["frames"] = {"num_frames": 7}
    with pytest.raises(ConfigError, match=r"datasets\.enterface\.frames\.num_frames: 7 is not allowed"):
        check_model(config)
    config["datasets"]["enterface"]["enabled"] = False
    check_model(config)


def test_pretrained_videomae_weights_may_be_a_folder(config, tmp_path):
    (tmp_path / "videomae-base").mkdir()
    config["model"]["pretrained"] = str(tmp_path / "videomae-base")
    check_model(filled(config))


def test_a_root_holding_braces_is_refused_before_snakemake_reads_them_as_wildcards(tmp_path):
    root = tmp_path / "{v1}" / "CREMA-D"
    (root / "VideoFlash").mkdir(parents=True)
    (root / "VideoFlash" / "1001_DFA_ANG_XX.flv").touch()
    with pytest.raises(DatasetRootError, match=r"dataset 'crema_d': root directory '.*\{v1\}/CREMA-D' holds \{ or \}, which Snakemake reads as wildcards"):
        check_datasets(product_config(crema_d=root))


def test_crema_d_cloned_without_its_lfs_files_is_said_at_once(tmp_path):
    """CREMA-D's media are Git LFS objects: a clone without `git lfs pull` holds 130-byte pointers,
    which preprocessing would quarantine one by one after a whole run."""
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 1167916\n"
    (tmp_path / "VideoFlash").mkdir()
    (tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv").write_text(pointer)
    with pytest.raises(DatasetRootError, match=r"dataset 'crema_d': VideoFlash/1001_DFA_ANG_XX\.flv is a Git LFS pointer, not the file itself \(`git lfs pull`"):
        check_datasets(product_config(crema_d=tmp_path))
    (tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv").write_bytes(b"FLV\x01\x05")
    (tmp_path / "AudioWAV").mkdir()
    (tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav").write_text(pointer)
    with pytest.raises(DatasetRootError, match=r"AudioWAV/1001_DFA_ANG_XX\.wav is a Git LFS pointer"):
        check_datasets(product_config(crema_d=tmp_path))


def test_the_layout_check_answers_the_same_whatever_order_the_disk_lists_files_in(tmp_path, monkeypatch):
    """The check reads one clip; which one must not depend on the file system (a partly pulled
    clone, one real file beside a pointer, passed on one machine and stopped on another)."""
    (tmp_path / "VideoFlash").mkdir()
    (tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv").write_bytes(b"FLV\x01\x05")
    (tmp_path / "VideoFlash" / "1001_DFA_DIS_XX.flv").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 1167916\n")
    listing = os.walk
    for order in (lambda names: names, lambda names: names[::-1]):
        monkeypatch.setattr(walk.os, "walk", lambda *args, order=order, **kwargs: ((d, s, order(sorted(f))) for d, s, f in listing(*args, **kwargs)))
        check_datasets(product_config(crema_d=tmp_path))  # the first clip by name is the real one


def test_a_corpus_on_a_disk_that_is_gone_does_not_crash_the_layout_check(tmp_path):
    (tmp_path / "VideoFlash").mkdir()
    (tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv").symlink_to(tmp_path / "unmounted" / "1001_DFA_ANG_XX.flv")
    (tmp_path / "VideoFlash" / "1001_DFA_HAP_XX.flv").write_bytes(b"FLV\x01\x05")
    check_datasets(product_config(crema_d=tmp_path))  # the index quarantines the broken link


def test_the_index_params_hold_only_what_the_index_reads_written_one_way():
    """A dataset block's root (its own param), enabled flag, preprocessing overrides and empty keys do
    not rerun the index; speakers left out as numbers or strings, in any order, are one setting."""

    plain = {"chunks": 13, "leave_out_speakers": ["6", "7"]}
    assert indexed_keys({"root": "/data/enterface", "enabled": True, "chunks": 13, "leave_out_speakers": [7, 6], "frames": {"crop": "full"}}) == plain
    assert indexed_keys({"chunks": 13, "leave_out_speakers": ["7", 6, "6"], "audio": {}, "face": {"backend": "openface"}}) == plain
    assert indexed_keys({"chunks": 13, "leave_out_speakers": []}) == {"chunks": 13}
    assert list(indexed_keys({"votes": "face", "chunks": 64})) == ["chunks", "votes"]  # keys in one order
