"""Config validation: every error names the key and what is allowed; the mfaw alias; roots."""

import copy

import pytest
import yaml

from avemotion.config import ConfigError, check_dataset_roots, config_errors, prepare_config
from avemotion.datasets import DatasetRootError
from conftest import DATA

REPO_CONFIG = DATA.parent.parent / "config.yaml"


@pytest.fixture
def config():
    return yaml.safe_load(REPO_CONFIG.read_text())


def test_repository_config_is_valid(config):
    assert config_errors(config) == []


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda c: c["datasets"]["crema_d"].update(votes="both"), "datasets.crema_d.votes: 'both' is not allowed; allowed values: 'audiovisual', 'face', 'voice', 'none'"),
        (lambda c: c["datasets"]["mafw"].update(enabled="yes"), "datasets.mafw.enabled: 'yes' is not of type boolean"),
        (lambda c: c["datasets"]["enterface"].update(chunk=3), "datasets.enterface.chunk: unknown key; allowed keys here: enabled, root, chunks"),
        (lambda c: c["datasets"].update(iemocap={}), "datasets.iemocap: unknown key; allowed keys here: crema_d, enterface, mafw"),
        (lambda c: c["datasets"]["enterface"].pop("root"), "datasets.enterface: 'root' is a required property"),
        (lambda c: c["datasets"]["crema_d"].update(chunks=0), "datasets.crema_d.chunks: 0 is less than the minimum of 1"),
    ],
)
def test_invalid_values_name_the_key_and_allowed_values(config, change, expected):
    change(config)
    with pytest.raises(ConfigError) as error:
        prepare_config(config)
    assert expected in str(error.value)


def test_mfaw_is_an_alias_of_mafw_with_one_warning(config):
    config["datasets"]["mfaw"] = config["datasets"].pop("mafw")
    warnings = []
    prepare_config(config, warn=warnings.append)
    assert "mafw" in config["datasets"] and "mfaw" not in config["datasets"]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "datasets.mfaw" in warnings[0]


def test_mfaw_keys_win_over_mafw_keys_of_the_default_config(config):
    config["datasets"]["mfaw"] = {"root": "/data/MAFW", "chunks": 96}
    prepare_config(config, warn=lambda message: None)
    assert config["datasets"]["mafw"] == {"enabled": True, "root": "/data/MAFW", "chunks": 96}


def test_missing_root_names_the_dataset_and_path(config, tmp_path):
    config["datasets"]["enterface"]["root"] = str(tmp_path / "nowhere")
    with pytest.raises(DatasetRootError, match=r"dataset 'enterface': root directory '.*nowhere' does not exist"):
        check_dataset_roots(config, generated_roots=["resources/demo/crema_d", "resources/demo/mafw"])


def test_disabled_datasets_need_no_root(config):
    for name in ("crema_d", "enterface"):
        config["datasets"][name] = {"enabled": False}
    assert config_errors(config) == []
    check_dataset_roots(config, generated_roots=["resources/demo/mafw"])
    config["datasets"]["mafw"]["enabled"] = False
    with pytest.raises(ConfigError, match="no dataset is enabled"):
        check_dataset_roots(config)
