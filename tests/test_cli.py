"""`avemotion index`: a corpus check without Snakemake."""

import pandas as pd
import pytest

from avemotion.cli import main


def test_index_command_writes_manifest_and_reports_counts(enterface_tree, tmp_path, capsys):
    assert main(["index", "enterface", str(enterface_tree), "--out", str(tmp_path), "--chunks", "8"]) == 0
    output = capsys.readouterr().out
    assert "enterface: 1287 clips, 43 speakers, 0 quarantined" in output
    assert pd.read_parquet(tmp_path / "manifest.parquet")["chunk"].max() == 7


def test_index_command_fails_clearly_on_a_missing_root(tmp_path, capsys):
    assert main(["index", "mafw", str(tmp_path / "missing")]) == 2
    assert "dataset 'mafw': root directory" in capsys.readouterr().err


def test_index_command_says_when_the_root_holds_another_corpus_and_checks_its_options(enterface_tree, tmp_path, capsys):
    assert main(["index", "crema_d", str(enterface_tree), "--out", str(tmp_path / "out")]) == 2
    said = capsys.readouterr().err
    assert "dataset 'crema_d': no VideoFlash/*.flv under" in said and "it holds the layout of enterface" in said
    assert not (tmp_path / "out").exists()  # no empty manifest written
    (tmp_path / "empty").mkdir()
    assert main(["index", "mafw", str(tmp_path / "empty")]) == 2
    assert "dataset 'mafw'" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert main(["index", "enterface", str(enterface_tree), "--out", str(tmp_path / "a_file")]) == 2
    assert f"{tmp_path / 'a_file'}: is a file; --out names the folder" in capsys.readouterr().err
    for chunks in ("0", "-4", "two"):
        with pytest.raises(SystemExit):
            main(["index", "enterface", str(enterface_tree), "--chunks", chunks])
        assert f"argument --chunks: {chunks!r} is not a whole number of 1 or more" in capsys.readouterr().err
