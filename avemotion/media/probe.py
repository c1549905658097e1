"""What a media file is, found before a decoder reads it, and one readable line when it is no clip.

Decoders report a bad file in their own terms ("video_reader.cc:270: Failed to measure
duration/frame-count due to broken metadata", "Invalid data found when processing input"). A
clip's quarantine reason (results/{dataset}/quarantine.csv) and ``avemotion predict``'s error
column need one line that says what is wrong and names the file, in the form the report groups
on (avemotion.evaluate.report: the text before the first ": "), e.g.

    still image: single_face.jpg is a JPEG image (572x562), not a video
    no video stream: song.m4a is an audio file (aac, 2.0 s)
    not a media file: clip.mp4 holds text: 'This file was saved with a video extension...'
    truncated: clip.mp4 ends at 17% of its stated duration (19.7 s): frame 83 of 472 could not be read

Three checks, cheapest first:

- :func:`sniff`: the file's size and first bytes (microseconds): empty, a still image, an
  audio-only format, text, an archive, or a possible video.
- :func:`cut_short`: whether the container's own structure says the file is cut short (MP4/MOV
  top-level boxes, AVI/WAV RIFF size, Matroska/WebM Segment size, FLV's last tag): a few small
  reads. Decoders that index the packets they find (decord) read a cut FLV, AVI, MKV or WebM
  without complaint, as a shorter clip.
- :func:`describe` (through :func:`explain`): what ffmpeg (the binary that imageio-ffmpeg ships)
  says about the file's streams and how many video packets it can read: a subprocess of about
  25 ms, run only for a file a decoder has refused. A cut FLV that decodes asks OpenCV for the
  frame count its metadata states (:func:`stated_frames`, a few ms).

A good clip costs the first two: about 0.05 ms (tests/test_bad_clips.py measures it against the
frames stage's decoding, 80-1000 ms on the real test videos). One module: the three checks share
the container readers and the wording of their lines. How a video is shown (:func:`display`: its
pixels' aspect and its turn; :func:`hdr`: whether its colours are HDR) is read here too, from the
same container facts.
"""

from __future__ import annotations

import math
import re
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import imageio_ffmpeg
import numpy as np
from PIL import Image

from avemotion.io import LFS_POINTER_START
from avemotion.media.mp4 import is_movie, may_hold_hdr

# OpenCV warns on stderr about every file its FFmpeg backend cannot open (an audio file, text): the
# clip's own error row or quarantine entry says what is wrong, once; its errors still show.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

HEAD_BYTES = 512

# First bytes -> (kind, label). Formats that may hold video (MP4/MOV, AVI, FLV, MKV/WebM, Ogg, ASF,
# MPEG) are not here: they are "media" and the decoders decide.
IMAGE_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF"}
AUDIO_BRANDS = {b"M4A ": "M4A", b"M4B ": "M4B", b"M4P ": "M4P"}
ARCHIVES = {b"PK\x03\x04": "a ZIP archive", b"\x1f\x8b": "a gzip archive", b"Rar!\x1a\x07": "a RAR archive", b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive", b"%PDF": "a PDF document"}
# libav error codes that decord prints as numbers ("av_read_frame failed with 1094995529"): FFERRTAG's
# four letters ("INDA", "EOF ", "EXIT", 0xF8 "DEC"), read as a little-endian number, negated by libav
DECODER_NOT_FOUND = 1128613112
AVERRORS = {1094995529: "invalid data", 541478725: "end of file", 1414092869: "immediate exit requested", DECODER_NOT_FOUND: "decoder not found", 5: "input/output error"}


def ffmpeg_input(path) -> str:
    """``path`` as FFmpeg-based readers (ffmpeg, decord, OpenCV) should get it: absolute, since they
    read a relative name with a colon ("Interview: John.mp4", "talk:1.mkv") as a protocol and fail
    with "Protocol not found"."""
    return str(Path(path).absolute())


@dataclass(frozen=True)
class Sniff:
    """What a file's first bytes say: ``kind`` is empty, image, audio, text, archive or media
    (possibly a video: the decoders decide); ``label`` names the format or the text's start."""

    kind: str
    label: str = ""


def sniff(path) -> Sniff:
    """What ``path``'s first :data:`HEAD_BYTES` bytes say it is (its size too, for a BMP)."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    if not head:
        return Sniff("empty")
    brand = head[8:12] if head[4:8] == b"ftyp" else b""
    if head.startswith(b"\xff\xd8\xff"):
        return Sniff("image", "JPEG")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniff("image", "PNG")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Sniff("image", "TIFF")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniff("image", "WebP")
    if head[:2] == b"BM" and len(head) >= 6 and struct.unpack("<I", head[2:6])[0] == path.stat().st_size:
        return Sniff("image", "BMP")
    if brand in IMAGE_BRANDS:
        return Sniff("image", IMAGE_BRANDS[brand])
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Sniff("audio", "WAV")
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return Sniff("audio", "AIFF")
    if head[:4] == b"fLaC":
        return Sniff("audio", "FLAC")
    if head[:2] in (b"\xff\xf1", b"\xff\xf9"):  # ADTS: sync word, layer 0
        return Sniff("audio", "AAC")
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return Sniff("audio", "MP3")  # an ID3 tag, or an MPEG audio frame's sync word and layer
    if head[:5] == b"#!AMR" or head[:4] == b"caff":
        return Sniff("audio", "AMR" if head[:5] == b"#!AMR" else "CAF")
    if brand in AUDIO_BRANDS:
        return Sniff("audio", AUDIO_BRANDS[brand])
    for signature, label in ARCHIVES.items():
        if head.startswith(signature):
            return Sniff("archive", label)
    text = _text(head)
    if text is not None:
        return Sniff("text", text)
    return Sniff("media")


def _text(head: bytes) -> str | None:
    """The start of ``head`` when it reads as text (UTF-8, no control characters), else None."""
    if b"\x00" in head:
        return None
    for cut in range(4):  # the read may end inside a multi-byte character
        try:
            text = head[: len(head) - cut].decode("utf-8-sig")
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    if any(not (ch.isprintable() or ch in "\t\n\r\f\v") for ch in text):
        return None
    return text.strip()


def _excerpt(text: str, limit: int = 48) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return repr(line if len(line) <= limit else line[: limit - 3] + "...")


def sniffed_reason(path, wanted: str = "video") -> str | None:
    """The reason ``path`` cannot be a clip's ``wanted`` medium ("video" or "audio"), from its first
    bytes alone; None when it may be one. An audio file asked for its video gets its reason from
    :func:`explain` (which adds its codec and length)."""
    path = Path(path)
    found = sniff(path)
    name = path.name
    if found.kind == "empty":
        return f"zero-length file: {name}"
    if found.kind == "image":
        return f"still image: {name} is a {found.label} image{_image_size(path)}, not {'a video' if wanted == 'video' else 'an audio file'}"
    if found.kind == "archive":
        return f"not a media file: {name} is {found.label}"
    if found.kind == "text":
        if found.label.lower().startswith(("<!doctype html", "<html")):
            return f"not a media file: {name} is an HTML page (what a failed download often saves)"
        if found.label.startswith(LFS_POINTER_START):
            return f"not a media file: {name} is a Git LFS pointer, not the file itself (`git lfs pull` fetches it)"
        return f"not a media file: {name} holds text: {_excerpt(found.label)}"
    return None


def _image_size(path: Path) -> str:
    try:
        with Image.open(path) as image:  # Pillow reads the header only
            return f" ({image.width}x{image.height})"
    except Exception:  # an image Pillow cannot read still is an image: say so without its size
        return ""


# ---- the container's own length ------------------------------------------------------------------


@dataclass(frozen=True)
class Cut:
    """A file its container says is cut short: ``size`` bytes are there, ``stated`` were announced
    (None where the container announces no length, as FLV, whose last tag is cut instead)."""

    size: int
    stated: int | None = None


def cut_short(path) -> Cut | None:
    """The :class:`Cut` when the container's structure says ``path`` ends early: an MP4/MOV
    top-level box (mdat, moov) runs past the end of the file, an AVI's or WAV's RIFF size or a
    Matroska/WebM Segment's size is larger than the file, or an FLV ends inside a tag. None for a
    whole file, and where the format states no length of its own (MPEG-TS, MKV/WebM of unknown
    size, as browsers record it) or the structure is not recognised."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(16)
        if head[4:8] == b"ftyp":
            end = _boxes_end(handle, size)
            return Cut(size, end) if end > size else None
        if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"WAVE"):
            stated = struct.unpack("<I", head[4:8])[0]  # 0/FFFFFFFF: a writer that never came back to set it
            return Cut(size, stated + 8) if stated not in (0, 0xFFFFFFFF) and stated + 8 > size else None
        if head[:3] == b"FLV" and size > 13 and not _flv_last_tag_whole(handle, size):
            return Cut(size)
        if head[:4] == EBML_HEADER:
            handle.seek(0)
            end = _matroska_segment_end(handle.read(EBML_SEARCHED_BYTES))
            return Cut(size, end) if end is not None and end > size else None
    return None


EBML_HEADER = bytes.fromhex("1a45dfa3")  # Matroska and WebM open with it
MATROSKA_SEGMENT = bytes.fromhex("18538067")  # the element holding everything after the header
EBML_SEARCHED_BYTES = 4096


def _matroska_segment_end(head: bytes) -> int | None:
    """Where a Matroska/WebM file's Segment says the file ends: the EBML header, then the Segment's
    ID and size; None where the size is unknown (as browsers' MediaRecorder and writers to a pipe
    leave it) or the structure is not as expected."""
    header = _ebml_size(head, 4)
    if header is None or header[0] is None:
        return None
    offset = 4 + header[1] + header[0]
    if head[offset : offset + 4] != MATROSKA_SEGMENT:
        return None
    segment = _ebml_size(head, offset + 4)
    if segment is None or segment[0] is None:
        return None
    return offset + 4 + segment[1] + segment[0]


def _ebml_size(data: bytes, offset: int) -> tuple[int | None, int] | None:
    """(an EBML element's data size, None when stated unknown; the size field's length) at
    ``offset``: a variable-length integer whose leading zero bits give its length in bytes."""
    if offset >= len(data) or data[offset] == 0:
        return None
    length = 9 - data[offset].bit_length()
    if offset + length > len(data):
        return None
    value = int.from_bytes(data[offset : offset + length], "big") & ((1 << (7 * length)) - 1)
    return (None if value == (1 << (7 * length)) - 1 else value), length


def _boxes_end(handle, size: int) -> int:
    """Where the MP4/MOV top-level boxes say the file ends (``size`` when a box runs to the end)."""
    offset = 0
    while offset < size:
        handle.seek(offset)
        header = handle.read(16)
        if len(header) < 8:
            return offset + 8  # a box header cut in two
        length, kind = struct.unpack(">I4s", header[:8])
        if length == 1:
            if len(header) < 16:
                return offset + 16
            length = struct.unpack(">Q", header[8:16])[0]
        elif length == 0:  # "to the end of the file"
            return size
        if length < 8 or not kind.isascii() or not kind.decode("ascii").isprintable():
            return size  # not a box: a structure we do not know, so no claim about its length
        offset += length
    return offset


def _flv_last_tag_whole(handle, size: int) -> bool:
    """An FLV ends with the size of its last tag (PreviousTagSize); a whole tag stands there."""
    handle.seek(size - 4)
    previous = struct.unpack(">I", handle.read(4))[0]
    if previous == 0:
        return size == 13  # the header alone
    if previous < 11 or previous + 4 > size - 9:
        return False
    handle.seek(size - 4 - previous)
    tag = handle.read(11)
    return tag[0] & 0x1F in (8, 9, 18) and int.from_bytes(tag[1:4], "big") + 11 == previous


# FLV's video codec ids whose frames are decoded in the order they are shown (no B-frames): Sorenson
# H.263 (CREMA-D's FLV1), Screen Video, VP6, VP6 with alpha, Screen Video 2; 7 is H.264
FLV_IN_ORDER_CODECS = {2: "flv1", 3: "flashsv", 4: "vp6f", 5: "vp6a", 6: "flashsv2"}
FLV_SEARCHED_BYTES = 1 << 16


def flv_video_codec(path) -> int | None:
    """The codec id of the first video tag of an FLV file (the low four bits of the tag's first
    byte); None for other files, for enhanced FLV (whose tags name a FourCC codec instead), and when
    no whole video tag lies in the first 64 KiB behind a chain of whole tags."""
    with open(path, "rb") as handle:
        head = handle.read(FLV_SEARCHED_BYTES)
    if head[:3] != b"FLV" or len(head) < 9:
        return None
    offset = struct.unpack(">I", head[5:9])[0] + 4  # the header, then PreviousTagSize0
    while offset + 12 <= len(head):
        kind, size = head[offset] & 0x1F, int.from_bytes(head[offset + 1 : offset + 4], "big")
        after = offset + 11 + size  # each tag is followed by its own size (PreviousTagSize)
        if after + 4 > len(head) or int.from_bytes(head[after : after + 4], "big") != size + 11:
            return None  # cut short, or not a chain of tags: no claim
        if kind == 9:
            first = head[offset + 11]
            return None if first & 0x80 or size == 0 else first & 0x0F
        offset = after + 4
    return None


def stated_frames(path) -> int:
    """The frame count the container states (its index, or its duration times its frame rate), as
    OpenCV's FFmpeg backend reads it without decoding; 0 when it states none."""
    capture = cv2.VideoCapture(ffmpeg_input(path), cv2.CAP_FFMPEG)
    try:
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT) if capture.isOpened() else 0
    finally:
        capture.release()
    return int(round(count)) if 0 < count < 1e9 else 0


class Display(NamedTuple):
    """How the video is shown, as its container or codec states it (OpenCV's FFmpeg backend reads it
    without decoding: 1 ms on small files, 15-18 ms on 1080p; and :func:`turning`, an ``ffmpeg
    -i`` once per file, for containers other than MP4/MOV, FLV, AVI and ASF that OpenCV reports
    unturned)."""

    pixel_aspect: float  # the width of the frames' pixels over their height (see pixel_aspect)
    turn: int  # degrees the display matrix, or a rotate tag decord applies (Turning), turns the frames (0, 90, 180 or 270)


def display(path) -> Display:
    """The video's :class:`Display`; square pixels and no turn where none is stated or the file cannot
    be read."""
    capture = cv2.VideoCapture(ffmpeg_input(path), cv2.CAP_FFMPEG)
    try:
        opened = capture.isOpened()
        num, den = (capture.get(cv2.CAP_PROP_SAR_NUM), capture.get(cv2.CAP_PROP_SAR_DEN)) if opened else (0, 0)
        turn = int(round(capture.get(cv2.CAP_PROP_ORIENTATION_META))) % 360 if opened else 0
    finally:
        capture.release()
    if opened and turn == 0:
        found = turning(path)
        turn = 0 if found.matrix else found.tag  # beside a matrix the turn is OpenCV's (the copy applies it, not the tag)
    aspect = num / den if num > 0 and den > 0 else 1.0
    if not 0.25 <= aspect <= 4:  # beyond that, a broken header, not a picture
        aspect = 1.0
    return Display(1 / aspect if turn % 180 == 90 else aspect, turn)


ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")  # the ASF header object's GUID


class Turning(NamedTuple):
    """What ffmpeg finds on a video's first video stream that turns its frames beyond what OpenCV
    reports: ``matrix``, a display matrix (a turn or a mirror; OpenCV reports only its angle, which
    is 0 for a mirror top to bottom); ``tag``, the turn of a ``rotate`` tag (:func:`_tag_turn`; 0:
    none), which ffmpeg before 6.0 wrote into Matroska when it remuxed a turned phone clip: decord
    turns the frames by it, ffmpeg 9 and OpenCV do not."""

    matrix: bool
    tag: int


def turning(path) -> Turning:
    """The video's :class:`Turning`. MP4/MOV keep their turn in the movie box
    (avemotion.media.mp4), FLV, AVI and ASF hold none: those cost no ffmpeg run; others what a plain
    ``ffmpeg -i`` says (:func:`_video_report`)."""
    if is_movie(path) or _holds_no_stream_facts(path):
        return Turning(False, 0)
    report = _video_report(path) or ""
    tag = re.search(r"^\s*rotate\s*: (.*)$", report, re.M | re.I)
    return Turning("Display Matrix" in report, _tag_turn(tag.group(1)) if tag else 0)


# ffmpeg's names of the transfer functions of HDR video (ITU-R BT.2100): PQ and HLG
HDR_TRANSFERS = ("smpte2084", "arib-std-b67")


class Hdr(NamedTuple):
    """How an HDR video's colours are stated, in ffmpeg's names ("unknown" where none is stated)."""

    transfer: str  # one of HDR_TRANSFERS
    primaries: str  # bt2020 as a rule
    matrix: str  # bt2020nc as a rule


def hdr(path) -> Hdr | None:
    """The video's :class:`Hdr` where its first video stream is HDR (PQ or HLG), else None: decoders
    that turn frames into RGB as SDR (decord, OpenCV) give such frames too flat (PQ) or pale (HLG).
    Costs no ffmpeg run for FLV, AVI and ASF (CREMA-D's and eNTERFACE's), nor for an MP4/MOV that is
    not HDR by its boxes (avemotion.media.mp4.may_hold_hdr: a colour box that states an SDR transfer,
    or 8-bit H.264 without one, what most MP4s hold); others what a plain ``ffmpeg -i`` says."""
    if _holds_no_stream_facts(path) or (is_movie(path) and not may_hold_hdr(path)):
        return None
    stated = re.search(rf"([\w-]+)/([\w-]+)/({'|'.join(HDR_TRANSFERS)})\b", video_description(path) or "")
    return Hdr(stated.group(3), stated.group(2), stated.group(1)) if stated else None


def _holds_no_stream_facts(path) -> bool:
    """Whether the file is FLV, AVI or ASF: containers that state no display matrix, rotate tag or
    HDR transfer that matters here (an AVI of HDR video is not something cameras write)."""
    with open(path, "rb") as handle:
        return handle.read(16).startswith((b"FLV", b"RIFF", ASF_HEADER))


def video_description(path) -> str | None:
    """ffmpeg's description of the file's first video stream (None: it has none), e.g. "hevc (Main 10)
    (hvc1 / 0x31637668), yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67), 1920x1080, ..." (its
    matrix/primaries/transfer, or one name for all three): the first line of :func:`_video_report`."""
    report = _video_report(path)
    return report.split("\n", 1)[0].strip() if report is not None else None


_video_reports: dict[tuple, str | None] = {}  # by file_version


def _video_report(path) -> str | None:
    """What a plain ``ffmpeg -i`` (6-10 ms: benchmarks/hdr_reading.py) says of the file's first video
    stream: its line and the lines under it up to the next stream (None: no video stream).
    Remembered per file version: a clip is opened by several stages, each more than once."""
    key = file_version(path)
    if key not in _video_reports:
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ffmpeg_input(path)]
        report = subprocess.run(command, capture_output=True, text=True, errors="replace").stderr
        video = re.search(r"^\s*Stream #0:\d+\S*: Video: (.*?$.*?)(?=^\s*Stream #|\Z)", report, re.M | re.S)
        _video_reports[key] = video.group(1) if video else None
    return _video_reports[key]


# the number a rotate tag starts with, as C's strtod reads it: decimal or hexadecimal, with a fraction
# and an exponent or not
TAG_NUMBER = re.compile(r"\s*([+-]?)(?:0[xX]([0-9a-fA-F]*\.?[0-9a-fA-F]*(?:[pP][+-]?\d+)?)|(\d*\.?\d*(?:[eE][+-]?\d+)?))")


def _tag_turn(value: str) -> int:
    """The clockwise turn decord 0.6.0 gives frames by a rotate tag's ``value``: the number it starts
    with (strtod), modulo 360 and made positive, then cut to whole degrees, if a right angle ("-90"
    and "0x10E" turn as 270, "90.9" and "450" as 90, "-89.5" as 270); none for other angles ("89.6",
    "-90.5", "45") or text (tests/test_media_transcode.py)."""
    sign, hexadecimal, decimal = TAG_NUMBER.match(value).groups()
    try:
        number = float.fromhex(hexadecimal) if hexadecimal is not None else float(decimal)
        degrees = math.fmod(-number if sign == "-" else number, 360)
        turn = int(degrees + 360 if degrees < 0 else degrees)
    except ValueError:  # no digits, or no angle (inf, nan)
        return 0
    return turn if turn in (90, 180, 270) else 0


def file_version(path) -> tuple:
    """(resolved path, size, modification time): what a remembered answer about a file is kept under."""
    status = Path(path).stat()
    return (str(Path(path).resolve()), status.st_size, status.st_mtime_ns)


def pixel_aspect(path) -> float:
    """The width of the video's pixels over their height in the frames as they are read, as the
    container or codec states it (the sample aspect ratio: 64/45 for a widescreen DVD's 720x576,
    16/15 for 4:3 PAL DV); 1.0 where none is stated. decord gives the stored pixels (a 720x576 frame
    that players show at 1024x576), turned by the display matrix or a rotate tag (:class:`Turning`;
    avemotion.media.transcode copies a clip whose matrix decord would not apply): after a quarter
    turn the stated aspect applies to the frame's height, so the frame's pixels are 1/aspect as wide."""
    return display(path).pixel_aspect


# ---- what ffmpeg says ----------------------------------------------------------------------------


@dataclass
class MediaInfo:
    """What ffmpeg reports for a file: its demuxer, length, streams, and the video packets it read."""

    format: str = ""
    duration: float | None = None
    video: list[str] = field(default_factory=list)  # one description per video stream
    audio: list[str] = field(default_factory=list)
    fps: float | None = None
    packets: int | None = None  # video packets read to the end of the file (no decoding)
    cut: bool = False  # ffmpeg met a packet the file ends inside
    error: str = ""  # ffmpeg's last error line when it could not open the file
    no_index: bool = False  # it could not, for want of an MP4 index (moov atom)

    @property
    def stated_frames(self) -> int:
        return int(round(self.duration * self.fps)) if self.duration and self.fps else 0


def describe(path) -> MediaInfo:
    """Run ``ffmpeg -i path`` copying the first video stream's packets to nowhere, and read its report."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ffmpeg_input(path)]
    command += ["-map", "0:v:0?", "-c", "copy", "-f", "null", "-"]
    result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    return parse_ffmpeg_report(result.stderr)


NO_PTS = -(2**63)  # AV_NOPTS_VALUE, as ffmpeg's framecrc prints a missing time stamp
PACKET_KEY = 0x1  # AV_PKT_FLAG_KEY: framecrc writes no "F=0x.." field for a packet with only this flag
PACKET_DISCARD = 0x4  # AV_PKT_FLAG_DISCARD: a packet decoded but not shown (an MP4 edit list hides it)


@dataclass(frozen=True)
class Packets:
    """The first video stream's packets in decode order: time stamps and durations in ``unit``
    seconds (pts NO_PTS where the container states none, as AVI), and libav's packet flags."""

    unit: float
    dts: np.ndarray
    pts: np.ndarray
    duration: np.ndarray
    flags: np.ndarray

    @property
    def times(self) -> np.ndarray:
        """Each packet's presentation time, its decode time where it states none (AVI)."""
        return np.where(self.pts != NO_PTS, self.pts, self.dts)

    @property
    def shown(self) -> np.ndarray:
        """Which packets are shown: timed, and not hidden by an edit list (flagged discard)."""
        return (self.flags & PACKET_DISCARD == 0) & (self.times != NO_PTS)


def video_packets(path) -> Packets | None:
    """The first video stream's packets as ffmpeg's demuxer reads them (stream copy to framecrc,
    no decoding, ~16 ms for a short clip); None when the file has no readable video stream."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-copyts", "-i", ffmpeg_input(path)]
    command += ["-map", "0:v:0", "-c", "copy", "-f", "framecrc", "pipe:1"]
    result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    timebase = re.search(r"^#tb 0: (\d+)/(\d+)", result.stdout, re.M)
    if not timebase:
        return None
    rows = []
    for line in result.stdout.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if line.startswith("#") or len(fields) < 4 or fields[0] != "0":
            continue
        flags = next((int(field[2:], 16) for field in fields[6:] if field.startswith("F=")), PACKET_KEY)
        rows.append((int(fields[1]), int(fields[2]), int(fields[3]), flags))
    dts, pts, duration, flags = np.array(rows, dtype=np.int64).reshape(-1, 4).T
    return Packets(int(timebase.group(1)) / int(timebase.group(2)), dts, pts, duration, flags)


def parse_ffmpeg_report(report: str) -> MediaInfo:
    info = MediaInfo()
    opened = re.search(r"^Input #0, (.+?), from ", report, re.M)
    if not opened:
        lines = [line.strip() for line in report.splitlines() if line.strip()]
        info.error = lines[-1] if lines else "ffmpeg could not open it"
        info.no_index = "moov atom not found" in report
        return info
    info.format = opened.group(1)
    input_part = report[opened.start() :].split("\nStream mapping:", 1)[0].split("\nOutput #0", 1)[0]
    if duration := re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", input_part):
        hours, minutes, seconds = duration.groups()
        info.duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    for kind, description in re.findall(r"^\s*Stream #0:\d+\S*: (Video|Audio): (.+)$", input_part, re.M):
        (info.video if kind == "Video" else info.audio).append(description)
    if info.video and (fps := re.search(r"([\d.]+) fps", info.video[0])):
        info.fps = float(fps.group(1))
    if info.video and (frames := re.findall(r"frame=\s*(\d+)", report)):
        info.packets = int(frames[-1])
    info.cut = bool(re.search(r"partial file|corrupt input packet|Packet corrupt|truncat", report, re.I))
    return info


def codec(description: str) -> str:
    """The codec name a stream description starts with ("aac (LC) (mp4a / ...), 44100 Hz" -> "aac")."""
    return description.split(",", 1)[0].split(" ", 1)[0]


# ---- one line per unusable file ------------------------------------------------------------------


def decoder_tail(error) -> str:
    """A decoder's message without its source location and time stamp, cut to one short line."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", text)  # "[17:57:01] /github/.../video_reader.cc:486: "
    text = re.sub(r"^\[[^\]]*\] ", "", text)  # decord's "[path] " before its message
    text = re.sub(r"failed with (-?\d+)", lambda m: f"failed ({AVERRORS.get(abs(int(m.group(1))), m.group(1))})", text)
    return text if len(text) <= 120 else text[:117] + "..."


def explain(path, error=None, wanted: str = "video", reading: str = "video") -> str:
    """One line saying why ``path`` cannot be used as a clip's ``wanted`` medium ("video" or
    "audio"), for a file a decoder has refused with ``error`` while ``reading`` its video or audio
    (the decoder's message ends the line only when nothing better is known)."""
    path = Path(path)
    name = path.name
    found = sniffed_reason(path, wanted)
    if found:
        return found
    info = describe(path)
    if not info.format:
        with open(path, "rb") as handle:
            head = handle.read(8)
        if info.no_index and is_movie(path):
            return f"truncated: {name} has no MP4 index (moov atom): the file was cut short or its recording never finished"
        if "Invalid data" in info.error:
            return f"not a media file: {name}: no decoder recognises its format (it starts with bytes {head[:4].hex(' ')})"
        return f"unreadable {reading}: {name}: {decoder_tail(info.error)}"
    if wanted == "video":
        if not info.video:
            if info.audio:
                length = f", {info.duration:.1f} s" if info.duration else ""
                return f"no video stream: {name} is an audio file ({codec(info.audio[0])}{length})"
            return f"no video stream: {name} holds no video or audio stream ({info.format})"
        if info.format.endswith("_pipe") or info.format == "image2":
            return f"still image: {name} is a {codec(info.video[0]).upper()} image, not a video"
        cut = cut_short(path)
        if info.packets == 0 and not (info.cut or cut):  # a recording cut before its first frame, with no size that says so
            return f"unreadable video: {name} has a video stream without frames (the file ends before its first frame)"
        if info.packets is not None and (info.cut or cut):
            if info.packets < info.stated_frames:  # an MP4's index or an FLV's metadata states its length
                return truncated_reason(name, info.packets, info.stated_frames, info.duration)
            return cut_reason(name, cut or Cut(path.stat().st_size), info.packets)
    detail = decoder_tail(error) if error is not None else (info.error or "the decoder refused it")
    return f"unreadable {reading}: {name}: {detail}"


def truncated_reason(name: str, read: int, stated: int, duration: float | None = None) -> str:
    length = f" ({duration:.1f} s)" if duration else ""
    return (
        f"truncated: {name} ends at {100 * read / stated:.0f}% of its stated duration{length}: "
        f"frame {read + 1} of {stated} could not be read"
    )


def cut_reason(name: str, cut: Cut, read: int) -> str:
    """A cut file's reason from its sizes (an AVI header's frame count is not to be trusted: one
    written by a stream copy counts time-base ticks, not frames)."""
    if cut.stated:
        return f"truncated: {name} ends at {100 * cut.size / cut.stated:.0f}% of its stated size ({cut.size} of {cut.stated} bytes), after frame {read}"
    return f"truncated: {name} ends inside its last tag, after frame {read}"


def truncation(path, frames_read: int) -> str | None:
    """For a video a decoder read ``frames_read`` frames of: why it is truncated when its container
    says it ends early, else None. A few small reads, and an OpenCV open when it is an FLV cut short."""
    path = Path(path)
    cut = cut_short(path)
    if cut is None:
        return None
    if cut.stated is None:  # FLV: its metadata's duration and frame rate state its frame count
        stated = stated_frames(path)
        if stated > frames_read:
            return truncated_reason(path.name, frames_read, stated)
    return cut_reason(path.name, cut, frames_read)
