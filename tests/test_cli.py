"""`avemotion index`: a corpus check without Snakemake."""

import os

import numpy as np
import pandas as pd
import pytest

from avemotion import cli
from avemotion.cli import build_parser, main
from avemotion.datasets.mafw import SPLIT_DIR
from avemotion.face.openface import OpenFaceError
from avemotion.inference import write_predictions
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


def test_index_command_on_a_quoted_variable_names_the_variables_that_are_not_set(tmp_path, monkeypatch, capsys):
    """A root written with variables the shell did not expand ('$DISKS/CREMA-D', quoted): the error
    names each variable this environment lacks, and none that it has."""
    monkeypatch.setenv("CORPORA_SET_XYZ", str(tmp_path))
    for name in ("DISK_XYZ", "COPY_XYZ"):
        monkeypatch.delenv(name, raising=False)
    assert main(["index", "crema_d", "$DISK_XYZ/$CORPORA_SET_XYZ/$COPY_XYZ"]) == 2
    said = capsys.readouterr().err
    assert "does not exist; $DISK_XYZ, $COPY_XYZ is not set in this environment" in said and "$CORPORA_SET_XYZ is" not in said


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


def test_index_command_counts_clips_without_a_label_and_says_why_clips_were_quarantined(tmp_path, capsys):
    """A MAFW clip in no split file is indexed with an empty label: its count is shown as
    "(no label)", not as a blank line; each quarantine reason is printed with its count."""
    mafw = tmp_path / "mafw"
    for number in (1, 2, 3):
        touch(mafw / "data" / "clips" / f"{number:05d}.mp4")
    for k in range(1, 6):
        test = {1: "00001.mp4 anger\n00003.mp4 anger\n", 2: "00003.mp4 fear\n"}.get(k, "")  # 00003: two labels
        touch(mafw / SPLIT_DIR / f"set_{k}" / "test.txt", test)
        touch(mafw / SPLIT_DIR / f"set_{k}" / "train.txt", "")
    assert main(["index", "mafw", str(mafw), "--out", str(tmp_path / "m")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "mafw: 2 clips, no speaker ids, 1 quarantined (chunks: 100)" in lines
    assert sorted(line.rsplit(maxsplit=1) for line in lines if line.startswith(("(no label)", "anger"))) == [["(no label)", "1"], ["anger", "1"]]
    assert [line for line in lines if line.startswith("quarantined ")] == [
        "quarantined 1: conflicting labels across split files: anger in set_1/test.txt; fear in set_2/test.txt"
    ]


@pytest.mark.parametrize("gpus, expected", [("0", 0), ("2", 2), ("+3", 3)])
def test_predict_takes_a_gpu_count_of_zero_or_more(gpus, expected):
    assert build_parser().parse_args(["predict", "--model", "m", "c.mp4", "--gpus", gpus]).gpus == expected


@pytest.mark.parametrize("gpus", ["-1", "two", "1.5"])
def test_predict_refuses_a_gpu_count_that_is_not_a_whole_number_of_zero_or_more(gpus, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "--model", "m", "c.mp4", "--gpus", gpus])
    assert f"argument --gpus: {gpus!r} is not a whole number of 0 or more" in capsys.readouterr().err


def fake_predictions(monkeypatch, tables, raised=None) -> list[dict]:
    """Make `avemotion predict` predict ``tables`` (one per group of clips, given to on_rows in turn)
    without a model; return what it saw (its environment's TensorFlow log level)."""
    seen = []

    def predict_files(model, clips, dataset=None, workdir=None, progress=True, on_rows=None, openface_bin=None):
        seen.append({"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL")})
        if raised:
            raise raised
        for table in tables:
            if on_rows:
                on_rows(table)
        return tables[-1]

    monkeypatch.setattr(cli, "predict_files", predict_files)
    monkeypatch.setattr(cli, "use_gpus", lambda count: None)  # no GPU claimed by a test
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "")  # recorded, so the variable is as before after the test
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    return seen


def predictions(*errors: str) -> pd.DataFrame:
    return pd.DataFrame({"clip": [f"c{n}.mp4" for n in range(len(errors))], "predicted_label": [None if error else "anger" for error in errors],
                         "prob_anger": [np.nan if error else 1.0 for error in errors], "valence": 0.0, "arousal": 0.0, "face_ratio": 1.0,
                         "warnings": "", "error": list(errors)})


def test_predict_quiets_tensorflow_unless_the_user_set_its_level(monkeypatch, capsys):
    """TensorFlow's start-up chatter would hide the progress bar: predict runs it at level 2 unless
    TF_CPP_MIN_LOG_LEVEL says otherwise."""
    seen = fake_predictions(monkeypatch, [predictions("")])
    assert main(["predict", "--model", "m", "c0.mp4", "--quiet"]) == 0
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert main(["predict", "--model", "m", "c0.mp4", "--quiet"]) == 0
    assert [said["TF_CPP_MIN_LOG_LEVEL"] for said in seen] == ["2", "0"]


def test_predict_says_how_many_clips_failed_and_exits_1(monkeypatch, tmp_path, capsys):
    fake_predictions(monkeypatch, [predictions("", "no such file", "")])
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", "m", "c0.mp4", "c1.mp4", "c2.mp4", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"wrote 3 predictions to {out}" in err and "avemotion predict: 1 of 3 clips could not be predicted (see their error)" in err
    written = pd.read_csv(out, keep_default_na=False)
    assert list(written.columns) == list(predictions("").columns) and written["error"].tolist() == ["", "no such file", ""]
    fake_predictions(monkeypatch, [predictions("")])
    assert main(["predict", "--model", "m", "c0.mp4", "--out", str(out), "--quiet"]) == 0
    assert f"wrote 1 prediction to {out}" in capsys.readouterr().err


def test_a_write_that_failed_once_but_succeeded_later_is_no_failure(monkeypatch, tmp_path, capsys):
    """Predictions are rewritten after each group: a disk that was full for the first write but not
    for the last leaves the whole table written, exit status 0 and no complaint."""
    fake_predictions(monkeypatch, [predictions(""), predictions("", "")])
    writes = []

    def full_once(table, out):
        writes.append(len(table))
        if len(writes) == 1:
            raise OSError(28, "No space left on device")
        write_predictions(table, out)

    monkeypatch.setattr(cli, "write_predictions", full_once)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", "m", "c0.mp4", "c1.mp4", "--out", str(out), "--quiet"]) == 0
    assert writes == [1, 2] and len(pd.read_csv(out)) == 2
    err = capsys.readouterr().err
    assert "could not write" not in err and f"wrote 2 predictions to {out}" in err


def test_predict_whose_last_write_failed_prints_the_table_and_exits_1(monkeypatch, tmp_path, capsys):
    fake_predictions(monkeypatch, [predictions("")])

    def full(table, out):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "write_predictions", full)
    assert main(["predict", "--model", "m", "c0.mp4", "--out", str(tmp_path / "p.csv"), "--quiet"]) == 1
    printed = capsys.readouterr()
    assert f"could not write {tmp_path / 'p.csv'} ([Errno 28] No space left on device)" in printed.err and printed.out.splitlines()[1].startswith("c0.mp4 ")


def test_a_broken_openface_install_ends_predict_with_one_line(monkeypatch, capsys):
    """OpenFace failing fails every clip: one line and exit status 2, not a traceback."""
    fake_predictions(monkeypatch, [], raised=OpenFaceError("FeatureExtraction exited with status 1 on 1 videos"))
    assert main(["predict", "--model", "m", "c0.mp4", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == "avemotion: FeatureExtraction exited with status 1 on 1 videos"
