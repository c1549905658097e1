"""`avemotion index`: a corpus check without Snakemake."""

import pandas as pd
import pytest

from avemotion.cli import main
from avemotion.datasets.mafw import SPLIT_DIR
from conftest import touch


def test_index_command_writes_manifest_and_reports_counts(enterface_tree, tmp_path, capsys):
    assert main(["index", "enterface", str(enterface_tree), "--out", str(tmp_path), "--chunks", "8"]) == 0
    output = capsys.readouterr().out
    assert "enterface: 1287 clips, 43 speakers, 0 quarantined" in output
    assert pd.read_parquet(tmp_path / "manifest.parquet")["chunk"].max() == 7


def test_index_command_indexes_as_the_workflow_does(enterface_tree, tmp_path, capsys):
    """Without --chunks a corpus gets the workflow's chunk count (clips in the same chunks as the
    workflow's manifest); the config's mfaw alias is read; MAFW's clips are not called speakers."""
    assert main(["index", "enterface", str(enterface_tree), "--out", str(tmp_path / "e")]) == 0
    assert "(chunks: 13)" in capsys.readouterr().out
    assert pd.read_parquet(tmp_path / "e" / "manifest.parquet")["chunk"].max() == 12
    mafw = tmp_path / "mafw"
    for number in (1, 2):
        touch(mafw / "data" / "clips" / f"{number:05d}.mp4")
    for k in range(1, 6):
        touch(mafw / SPLIT_DIR / f"set_{k}" / "test.txt", "00001.mp4 anger\n" if k == 1 else "00002.mp4 fear\n" if k == 2 else "")
        touch(mafw / SPLIT_DIR / f"set_{k}" / "train.txt", "")
    assert main(["index", "mfaw", str(mafw), "--out", str(tmp_path / "m")]) == 0
    assert "mafw: 2 clips, no speaker ids, 0 quarantined (chunks: 100)" in capsys.readouterr().out


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
