"""The per-rule conda environments repeat the pin file's versions, and every job names one."""

import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from avemotion.envs import SOURCE_VARIABLE, export_source
from conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)")


def pins_of(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = PIN.match(line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1).lower())] = match.group(2)
    return pins


REQUIREMENTS = pins_of((REPO / "requirements.txt").read_text().splitlines())
ENVS = sorted((REPO / "envs").glob("*.yaml"))


def pip_section(env) -> list[str]:
    spec = yaml.safe_load(env.read_text())
    assert "python=3.11" in spec["dependencies"]
    return next(entry["pip"] for entry in spec["dependencies"] if isinstance(entry, dict) and "pip" in entry)


def avemotion_requirements(extra: str) -> set[str]:
    """The distribution names avemotion[extra] needs (pyproject.toml: core and the extra)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"]) + project["optional-dependencies"][extra]
    return {re.sub(r"[-_.]+", "-", re.split(r"[<>=\[;]", name)[0].strip().lower()) for name in names}


@pytest.mark.parametrize("env", ENVS, ids=lambda path: path.name)
def test_every_env_installs_avemotion_from_the_workflow_folder_with_its_extra(env):
    """Under --software-deployment-method conda every script imports avemotion: the env's first pip
    entry is the workflow folder (pip expands the variable that avemotion.envs exports) with the
    extra named like the env, and every package that extra needs is pinned beside it."""
    first, *rest = pip_section(env)
    assert first == f"${{{SOURCE_VARIABLE}}}[{env.stem}]"
    export_source(REPO)
    path = os.path.expandvars(first.split("[")[0])
    assert (Path(path) / "pyproject.toml").is_file() and (Path(path) / "avemotion" / "__init__.py").is_file()
    assert avemotion_requirements(env.stem) <= set(pins_of(rest)), f"{env.name}: unpinned requirements of avemotion[{env.stem}]"


@pytest.mark.parametrize("env", ENVS, ids=lambda path: path.name)
def test_every_env_pins_exactly_the_versions_of_requirements_txt(env):
    pip = pip_section(env)[1:]
    pinned = pins_of(pip)
    assert len(pinned) == len(pip), f"{env.name}: every pip entry but avemotion itself must be pinned with =="
    drifted = {name: (version, REQUIREMENTS.get(name)) for name, version in pinned.items() if REQUIREMENTS.get(name) != version}
    assert drifted == {}, f"{env.name} disagrees with requirements.txt (env, requirements): {drifted}"


def test_requirements_txt_pins_every_package_that_pyproject_names():
    """requirements.txt is the one place for versions: every dependency of every extra has a pin
    there, and nothing is pinned that no extra asks for."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    named = set().union(*(avemotion_requirements(extra) for extra in project["optional-dependencies"]))
    assert named - {"avemotion"} == set(REQUIREMENTS)


def test_every_rule_that_runs_code_names_an_existing_env():
    checked = []
    for rules in sorted((REPO / "rules").glob("*.smk")):
        # split into rule blocks; a block with script: or shell: must carry conda:
        for block in re.split(r"\n(?=(?:rule|checkpoint|use rule) )", rules.read_text()):
            header = block.split("\n", 1)[0]
            if not header.startswith(("rule", "checkpoint")) or not re.search(r"^\s+(script|shell):", block, re.M):
                continue
            env = re.search(r'^\s+conda:\s*\n\s+"\.\./(envs/[\w.]+)"', block, re.M)
            assert env, f"{rules.name}: {header} names no conda env"
            assert (REPO / env.group(1)).is_file(), f"{rules.name}: {header} names the missing {env.group(1)}"
            checked.append(header)
    assert len(checked) >= 10, checked  # the parser found the rules (index, preprocess, fuse, train, evaluate, ...)
