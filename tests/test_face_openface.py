"""OpenFace FeatureExtraction runner and CSV reader, against a stand-in executable with OpenFace's CLI."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from avemotion.config import openface_executable
from avemotion.face.columns import ALL_COLUMNS, REQUESTED_COLUMNS
from avemotion.face.openface import (
    OpenFaceError,
    feature_extraction_command,
    read_openface_csv,
    run_feature_extraction,
)

# Parses argv like FeatureExtraction: repeated -f, -out_dir, -of, output flags, unknown flags ignored.
# Appends its argv to a log, and per -f writes <out_dir>/<stem>.csv with the header OpenFace writes for
# -aus -pose -gaze -2Dfp: in the Windows ", " dialect when the stem contains "windows", else ",". Like
# OpenFace, it writes nothing for a video it cannot open. Frame 2 has no face: success 0, zeroed values.
STAND_IN = '''#!{python}
import json, os, sys
argv_log, columns = {argv_log!r}, {columns!r}
with open(argv_log, "a") as log:
    log.write(json.dumps(sys.argv) + "\\n")
videos, out_dir, outputs, args = [], ".", [], sys.argv[1:]
i = 0
while i < len(args):
    if args[i] in ("-f", "-out_dir", "-of") and i + 1 < len(args):
        if args[i] == "-f":
            videos.append(args[i + 1])
        elif args[i] == "-out_dir":
            out_dir = args[i + 1]
        i += 2
        continue
    outputs.append(args[i])
    i += 1
assert outputs == ["-aus", "-pose", "-gaze", "-2Dfp"], outputs
for video in videos:
    if not os.path.isfile(video):
        print("WARNING: could not open " + video)
        continue
    stem = os.path.splitext(os.path.basename(video))[0]
    separator = ", " if "windows" in stem else ","
    rows = []
    for frame in (1, 2, 3):
        success = 0 if frame == 2 else 1
        values = {{"frame": frame, "face_id": 0, "timestamp": "%.3f" % ((frame - 1) / 30), "success": success,
                  "confidence": "0.98" if success else "0.03"}}
        for j, name in enumerate(columns[5:]):
            values[name] = "%.6f" % (success * ((frame * 7 + j) % 97) / 13)
        rows.append(separator.join(str(values[c]) for c in columns))
    with open(os.path.join(out_dir, stem + ".csv"), "w") as csv:
        csv.write(separator.join(columns) + "\\n" + "\\n".join(rows) + "\\n")
'''


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def openface(tmp_path) -> Path:
    text = STAND_IN.format(python=sys.executable, argv_log=str(tmp_path / "argv.jsonl"), columns=REQUESTED_COLUMNS)
    (tmp_path / "bin").mkdir()
    return executable(tmp_path / "bin" / "FeatureExtraction", text)


def calls(tmp_path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "argv.jsonl").read_text().splitlines()]


def videos(folder: Path, *names: str) -> list[Path]:
    paths = [folder / name for name in names]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return paths


def test_command_repeats_f_per_video_then_out_dir_and_outputs():
    assert feature_extraction_command("/opt/FeatureExtraction", ["a.mp4", Path("b c.flv")], "out") == [
        "/opt/FeatureExtraction", "-f", "a.mp4", "-f", "b c.flv", "-out_dir", "out", "-aus", "-pose", "-gaze", "-2Dfp",
    ]  # fmt: skip


def test_one_call_for_the_whole_chunk(openface, tmp_path):
    chunk = videos(tmp_path / "clips", "1001_DFA_ANG_XX.flv", "1001_DFA_HAP_XX.flv", "s1_an_1.avi")
    out = tmp_path / "openface"
    csvs = run_feature_extraction(openface, chunk, out)

    [argv] = calls(tmp_path)
    assert argv[0] == str(openface)
    assert argv[1:7] == ["-f", str(chunk[0]), "-f", str(chunk[1]), "-f", str(chunk[2])]
    assert argv[7] == "-out_dir" and Path(argv[8]).parent == out  # a staging folder inside out_dir
    assert argv[9:] == ["-aus", "-pose", "-gaze", "-2Dfp"]
    assert csvs == {video: out / f"{video.stem}.csv" for video in chunk}
    assert sorted(p.name for p in out.iterdir()) == ["1001_DFA_ANG_XX.csv", "1001_DFA_HAP_XX.csv", "s1_an_1.csv"]


def test_both_csv_dialects_read_the_same(openface, tmp_path):
    chunk = videos(tmp_path, "clip_windows.mp4", "clip_linux.mp4")
    csvs = run_feature_extraction(openface, chunk, tmp_path / "out")
    windows, linux = csvs[chunk[0]], csvs[chunk[1]]
    assert windows.read_text().startswith("frame, face_id, timestamp, confidence, success, gaze_0_x")
    assert linux.read_text().startswith("frame,face_id,timestamp,confidence,success,gaze_0_x")

    frame = read_openface_csv(windows)
    pd.testing.assert_frame_equal(frame, read_openface_csv(linux))
    assert list(frame.columns) == REQUESTED_COLUMNS and len(frame.columns) == 470
    assert {frame[c].dtype.name for c in ("frame", "face_id", "success")} == {"int64"}
    assert frame["frame"].tolist() == [1, 2, 3] and frame["success"].tolist() == [1, 0, 1]
    assert (frame.loc[1, "gaze_0_x":] == 0).all() and frame.loc[0, "AU01_r"] != 0


def test_reader_keeps_known_columns_in_openface_order(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text(" AU45_c, extra, frame, success, face_id, pose_Rx\n1.00, 7, 4, 1, 0, 0.25\n")
    frame = read_openface_csv(path)
    assert list(frame.columns) == ["frame", "face_id", "success", "pose_Rx", "AU45_c"]
    assert frame.iloc[0].tolist() == [4, 0, 1, 0.25, 1.0]
    assert set(frame.columns) <= set(ALL_COLUMNS)


def test_missing_or_non_executable_binary_names_the_config_key(tmp_path):
    not_executable = tmp_path / "FeatureExtraction"
    not_executable.write_text("#!/bin/sh\n")
    for binary in (tmp_path / "missing" / "FeatureExtraction", not_executable, tmp_path, "NoSuchOpenFaceBinary", ""):
        with pytest.raises(ValueError, match=r"face\.openface_bin"):
            openface_executable(binary)
    with pytest.raises(ValueError, match=r"face\.openface_bin"):
        run_feature_extraction(not_executable, videos(tmp_path, "a.mp4"), tmp_path / "out")


def test_failing_binary_raises_with_its_stderr(tmp_path):
    script = f"#!{sys.executable}\nimport sys\nprint('ERROR: could not find the landmark model', file=sys.stderr)\nsys.exit(3)\n"
    failing = executable(tmp_path / "FeatureExtraction", script)
    with pytest.raises(OpenFaceError, match="could not find the landmark model") as error:
        run_feature_extraction(failing, videos(tmp_path, "a.mp4"), tmp_path / "out")
    assert "status 3" in str(error.value)
    assert list((tmp_path / "out").iterdir()) == []  # no staging folder left behind


def test_timeout_raises_openface_error(tmp_path):
    hanging = executable(tmp_path / "FeatureExtraction", f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    with pytest.raises(OpenFaceError, match="timed out"):
        run_feature_extraction(hanging, videos(tmp_path, "a.mp4"), tmp_path / "out", timeout=0.5)


def test_video_without_a_csv_maps_to_none(openface, tmp_path):
    [readable] = videos(tmp_path, "ok.mp4")
    unreadable = tmp_path / "gone.mp4"  # OpenFace cannot open it and writes no CSV
    out = tmp_path / "out"
    out.mkdir()
    (out / "gone.csv").write_text("frame\n1\n")  # from an earlier run: must not be mistaken for this one's
    csvs = run_feature_extraction(openface, [readable, unreadable], out)
    assert csvs == {readable: out / "ok.csv", unreadable: None}
    assert not (out / "gone.csv").exists()
    assert len(calls(tmp_path)) == 1


def test_videos_sharing_a_stem_run_in_separate_calls(openface, tmp_path):
    first, second, other = videos(tmp_path, "a/clip.mp4", "b/clip.avi", "a/other.mp4")
    out = tmp_path / "out"
    csvs = run_feature_extraction(openface, [first, second, other], out)

    assert [[arg for prev, arg in zip(argv, argv[1:]) if prev == "-f"] for argv in calls(tmp_path)] == [
        [str(first), str(other)],
        [str(second)],
    ]
    assert csvs == {first: out / "clip.csv", other: out / "other.csv", second: out / "same_stem_1" / "clip.csv"}
    assert all(path.is_file() for path in csvs.values())


def test_face_stage_runs_openface_once_per_chunk_and_quarantines_what_it_cannot_read(openface, tmp_path):
    import numpy as np

    from avemotion.demo.encode import write_video
    from avemotion.preprocess.chunk import run_chunk
    from avemotion.preprocess.stages import FaceStage

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a", "b"):
        write_video(corpus / f"{name}.mp4", np.zeros((6, 32, 32, 3), np.uint8), 25, "mp4", None, 16000)
    (corpus / "empty.mp4").write_bytes(b"")
    (corpus / "text.mp4").write_text("not a video")
    clips = [{"clip_id": n, "path": f"{n}.mp4", "audio_path": ""} for n in ("a", "b", "empty", "text")]
    settings = {"backend": "openface", "openface_bin": str(openface), "detection_threshold": 0.5}
    out = tmp_path / "results"
    table = run_chunk(FaceStage(corpus, out, settings), clips, out / "t.parquet", out / "q.csv").set_index("clip_id")
    (call,) = calls(tmp_path)  # one FeatureExtraction call for the chunk, readable videos only
    assert [call[i + 1] for i, arg in enumerate(call) if arg == "-f"] == [str(corpus / "a.mp4"), str(corpus / "b.mp4")]
    assert table.loc["a", "status"] == "ok" and table.loc["a", "face_ratio"] == pytest.approx(2 / 3)
    assert list(read_openface_csv(out / "openface" / "a.csv").columns) == REQUESTED_COLUMNS
    reasons = pd.read_csv(out / "q.csv").set_index("clip_id")["reason"]
    assert "zero-length" in reasons["empty"] and "unreadable video" in reasons["text"]
    assert not list(out.glob("openface-*"))  # OpenFace's scratch folder is removed
