"""`avemotion index`: a corpus check without Snakemake."""

import pandas as pd

from avemotion.cli import main


def test_index_command_writes_manifest_and_reports_counts(enterface_tree, tmp_path, capsys):
    assert main(["index", "enterface", str(enterface_tree), "--out", str(tmp_path), "--chunks", "8"]) == 0
    output = capsys.readouterr().out
    assert "enterface: 1287 clips, 43 speakers, 0 quarantined" in output
    assert pd.read_parquet(tmp_path / "manifest.parquet")["chunk"].max() == 7


def test_index_command_fails_clearly_on_a_missing_root(tmp_path, capsys):
    assert main(["index", "mafw", str(tmp_path / "missing")]) == 2
    assert "dataset 'mafw': root directory" in capsys.readouterr().err
