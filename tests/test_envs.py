"""The per-rule conda environments repeat the pin file's versions, and every job names one."""

import re

import pytest
import yaml

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


@pytest.mark.parametrize("env", ENVS, ids=lambda path: path.name)
def test_every_env_pins_exactly_the_versions_of_requirements_txt(env):
    spec = yaml.safe_load(env.read_text())
    pip = next(entry["pip"] for entry in spec["dependencies"] if isinstance(entry, dict) and "pip" in entry)
    pinned = pins_of(pip)
    assert len(pinned) == len(pip), f"{env.name}: every pip entry must be pinned with =="
    drifted = {name: (version, REQUIREMENTS.get(name)) for name, version in pinned.items() if REQUIREMENTS.get(name) != version}
    assert drifted == {}, f"{env.name} disagrees with requirements.txt (env, requirements): {drifted}"
    assert "python=3.11" in spec["dependencies"]


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
