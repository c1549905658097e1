"""What the probe finds in a file's bytes and in ffmpeg's report: where a container says a file is
cut short, the pixel aspect it states, and the wording of the one line a bad clip gets.

Small clips are written with the demo encoder and remuxed or cut here (tests/test_bad_clips.py runs
the stages over such files; these check the probe's own answers at their edges).
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from PIL import Image

from avemotion.demo.encode import write_video
from avemotion.media.probe import Cut, cut_short, decoder_tail, describe, explain, parse_ffmpeg_report, pixel_aspect, sniffed_reason, truncation
from conftest import ffmpeg


def frames(count: int, noisy: bool = False) -> np.ndarray:
    if noisy:  # frames of noise: packets large enough that a cut falls between them
        return np.stack([np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8) for i in range(count)])
    return np.stack([np.full((48, 64, 3), 5 * i, np.uint8) for i in range(count)])


def test_an_avi_a_few_bytes_short_of_its_riff_size_is_cut_but_not_one_whose_size_was_never_set(tmp_path):
    """An AVI's RIFF header states the file's size less 8 bytes; a writer that never came back to
    set it (a live capture) leaves 0 or FFFFFFFF there: no claim about its length."""
    write_video(tmp_path / "whole.avi", frames(10), 25, "avi", None, 16000)
    whole = (tmp_path / "whole.avi").read_bytes()
    assert cut_short(tmp_path / "whole.avi") is None
    (tmp_path / "short.avi").write_bytes(whole[:-4])
    assert cut_short(tmp_path / "short.avi") == Cut(len(whole) - 4, len(whole))
    assert truncation(tmp_path / "short.avi", 10) == f"truncated: short.avi ends at 100% of its stated size ({len(whole) - 4} of {len(whole)} bytes), after frame 10"
    for unset in (0, 0xFFFFFFFF):
        (tmp_path / "live.avi").write_bytes(whole[:4] + struct.pack("<I", unset) + whole[8 : len(whole) // 2])
        assert cut_short(tmp_path / "live.avi") is None and truncation(tmp_path / "live.avi", 5) is None, unset


def test_an_mp4_that_ends_inside_a_box_header_is_cut(tmp_path):
    write_video(tmp_path / "whole.mp4", frames(10), 25, "mp4", None, 16000)
    whole = (tmp_path / "whole.mp4").read_bytes()
    last_box = whole.rfind(b"moov") - 4  # the demo encoder writes the index last
    (tmp_path / "cut.mp4").write_bytes(whole[: last_box + 4])  # the index's size, not its type
    assert cut_short(tmp_path / "whole.mp4") is None
    assert cut_short(tmp_path / "cut.mp4") is not None
    assert truncation(tmp_path / "cut.mp4", 10).startswith(f"truncated: cut.mp4 ends at 100% of its stated size ({last_box + 4} of ")


def test_a_cut_flv_whose_metadata_states_no_more_frames_than_were_read_says_where_it_ends(tmp_path):
    """A cut FLV states its frame count in its metadata: a clip read to fewer frames says which
    frame could not be read; one read to all of them only that it ends inside its last tag."""
    write_video(tmp_path / "whole.flv", frames(20), 25, "flv", None, 16000)
    whole = (tmp_path / "whole.flv").read_bytes()
    (tmp_path / "cut.flv").write_bytes(whole[: len(whole) // 2])
    assert truncation(tmp_path / "cut.flv", 8) == "truncated: cut.flv ends at 40% of its stated duration: frame 9 of 20 could not be read"
    assert truncation(tmp_path / "cut.flv", 20) == "truncated: cut.flv ends inside its last tag, after frame 20"
    assert truncation(tmp_path / "whole.flv", 20) is None


def test_an_mp4_cut_after_its_last_frame_is_said_cut_by_its_size_not_by_a_missing_frame(tmp_path):
    """Index first, then the frames: a download that stops a byte short of the end reads every frame
    its index states; its reason is the size, not a frame past the last one."""
    write_video(tmp_path / "clip.mp4", frames(20), 25, "mp4", None, 16000)
    ffmpeg("-i", str(tmp_path / "clip.mp4"), "-c", "copy", "-movflags", "+faststart", str(tmp_path / "indexed.mp4"))
    whole = (tmp_path / "indexed.mp4").read_bytes()
    (tmp_path / "end.mp4").write_bytes(whole[:-1])
    assert explain(tmp_path / "end.mp4") == f"truncated: end.mp4 ends at 100% of its stated size ({len(whole) - 1} of {len(whole)} bytes), after frame 20"


def test_a_cut_mp4_names_the_frame_count_its_index_states(tmp_path):
    """7 frames at 30 fps: ffmpeg states 0.23 s, 6.9 frames, which are 7."""
    write_video(tmp_path / "clip.mp4", frames(7, noisy=True), 30, "mp4", None, 16000)
    ffmpeg("-i", str(tmp_path / "clip.mp4"), "-c", "copy", "-movflags", "+faststart", str(tmp_path / "indexed.mp4"))
    whole = (tmp_path / "indexed.mp4").read_bytes()
    (tmp_path / "half.mp4").write_bytes(whole[: len(whole) // 2])
    assert describe(tmp_path / "half.mp4").stated_frames == 7
    assert re.fullmatch(r"truncated: half\.mp4 ends at \d+% of its stated duration \(0\.2 s\): frame [1-6] of 7 could not be read", explain(tmp_path / "half.mp4"))


def test_the_packet_count_is_ffmpegs_last_progress_line():
    """ffmpeg prints its progress while it reads a long file: the count is that of its last line."""
    report = (
        "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'clip.mp4':\n"
        "  Duration: 00:01:00.00, start: 0.000000, bitrate: 1000 kb/s\n"
        "  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p, 640x360, 900 kb/s, 25 fps, 25 tbr, 12800 tbn (default)\n"
        "Stream mapping:\n  Stream #0:0 -> #0:0 (copy)\n"
        "frame=  700 fps=0.0 q=-1.0 size=N/A time=00:00:28.00 bitrate=N/A speed=56x\r"
        "frame= 1500 fps=0.0 q=-1.0 Lsize=N/A time=00:01:00.00 bitrate=N/A speed=58x\n"
    )
    info = parse_ffmpeg_report(report)
    assert (info.packets, info.stated_frames, info.fps) == (1500, 1500, 25.0)


@pytest.mark.parametrize(
    "error, line",
    [
        ("[17:57:01] /github/workspace/src/video/video_reader.cc:486: av_read_frame failed with 1094995529", "av_read_frame failed (invalid data)"),
        ("[17:57:01] /github/workspace/src/video/video_reader.cc:486: av_read_frame failed with -1094995529", "av_read_frame failed (invalid data)"),
        ("av_read_frame failed with -5", "av_read_frame failed (input/output error)"),
        ("av_read_frame failed with 12345", "av_read_frame failed (12345)"),
    ],
    ids=["libav-error-as-decord-prints-it", "negated", "eio", "unknown-number"],
)
def test_a_decoders_error_number_is_named(error, line):
    assert decoder_tail(RuntimeError(error)) == line


def test_a_stated_pixel_aspect_is_kept_but_not_one_beyond_any_picture(tmp_path):
    """64:45 is a widescreen DVD's; 10:1 is a broken header, read as square pixels."""
    for name, sar in (("dvd.mp4", "64/45"), ("broken.mp4", "10/1")):
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=0.4", "-vf", f"setsar={sar}", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(tmp_path / name))
    assert pixel_aspect(tmp_path / "dvd.mp4") == pytest.approx(64 / 45)
    assert pixel_aspect(tmp_path / "broken.mp4") == 1.0


def test_a_bmp_is_told_by_its_stated_size_and_text_is_cut_only_past_48_characters(tmp_path):
    Image.new("RGB", (8, 6)).save(tmp_path / "picture.mp4", format="BMP")
    assert sniffed_reason(tmp_path / "picture.mp4") == "still image: picture.mp4 is a BMP image (8x6), not a video"
    (tmp_path / "bm.mp4").write_bytes(b"BM" + bytes(range(1, 200)))  # "BM" and a size that is not the file's
    assert sniffed_reason(tmp_path / "bm.mp4") is None
    line = "x" * 48
    (tmp_path / "notes.mp4").write_text(line + "\n")
    assert sniffed_reason(tmp_path / "notes.mp4") == f"not a media file: notes.mp4 holds text: '{line}'"
    (tmp_path / "notes.mp4").write_text(line + "y\n")
    assert sniffed_reason(tmp_path / "notes.mp4") == f"not a media file: notes.mp4 holds text: '{'x' * 45}...'"
