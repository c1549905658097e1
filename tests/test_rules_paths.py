"""The rules take every path under results/ from avemotion.layout, so moving a file is one line there."""

import re
from pathlib import Path

from avemotion.layout import job_benchmark, job_log

RULES = Path(__file__).resolve().parent.parent / "rules"


def test_no_rule_file_spells_a_results_path():
    """A literal results/ path in a rule (outside comments) is a second owner of that path."""
    spelled = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(RULES.glob("*.smk"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"[\"']results/", line.split("#")[0])
    ]
    assert spelled == []


def test_job_logs_and_benchmarks_keep_snakemakes_wildcards():
    assert job_log("train", "{experiment}/fold_{fold}") == "results/logs/train/{experiment}/fold_{fold}.log"
    assert job_benchmark("fuse_chunk", "{dataset}/{chunk}") == "results/benchmarks/fuse_chunk/{dataset}/{chunk}.tsv"
