"""What an MP4/MOV file's boxes say about its video: a mirror in its display matrix, and whether it
may be HDR video.

The movie header (mvhd) and the track header (tkhd) each hold a 3x3 display matrix, which players
apply, one after the other, to the decoded frames: phones store a rotation there, and some writers
a mirror (``ffmpeg -display_hflip``; front cameras that record what the preview showed). decord
0.6.0 reads only the matrix's rotation angle, so a mirrored clip comes out turned instead: one
flipped left to right reads as a half turn, the face upside down (the face mesh still follows it,
but on WolfgangLanger AU01 read 2.4 off, AU12 1.7, pitch 0.34 rad, and the frames stage's crops were
upside down); one turned a quarter and flipped reads as the opposite quarter turn. ffmpeg applies
the whole matrix (avemotion.media.transcode copies such a clip).
"""

from __future__ import annotations

import struct
from pathlib import Path

MOOV_LIMIT = 64 << 20  # a movie box is KBs to a few MB; a damaged size must not read the whole file
# the top-level boxes an MP4/MOV may open with (QuickTime's "wide" and preview boxes among them)
FIRST_BOXES = (b"ftyp", b"moov", b"wide", b"mdat", b"free", b"skip", b"pnot", b"PICT", b"uuid")
MVHD_MATRIX, TKHD_MATRIX = (36, 48), (40, 52)  # where the matrix starts in version 0 / 1 headers


def is_movie(path) -> bool:
    """Whether ``path`` opens as an MP4/MOV (ISO base media) file does: with one of its top-level boxes."""
    with open(path, "rb") as handle:
        return handle.read(8)[4:8] in FIRST_BOXES


def mirrored(path) -> bool:
    """Whether the display matrices of an MP4/MOV file's movie and first video track together mirror
    the frames (their determinants' product is negative); False for other files and where the boxes
    cannot be read."""
    moov = _movie_box(path)
    if moov is None:
        return False
    boxes = list(_boxes(moov))
    movie = next((_determinant(body, MVHD_MATRIX) for kind, body in boxes if kind == b"mvhd"), 1)
    track = _first_video_track(boxes)
    return track is not None and b"tkhd" in track and movie * _determinant(track[b"tkhd"], TKHD_MATRIX) < 0


# sample descriptions of codecs that carry HDR video: HEVC (and Dolby Vision in it), AV1, VP9, VVC,
# ProRes; H.264 only in its profiles of more than 8 bits
HDR_CODECS = {
    b"hvc1", b"hev1", b"dvh1", b"dvhe", b"av01", b"dav1", b"vp09", b"vvc1", b"vvi1",
    b"apco", b"apcs", b"apcn", b"apch", b"ap4h", b"ap4x",
}  # fmt: skip
H264_CODECS = {b"avc1", b"avc3"}
# H.264's profiles of more than 8 bits (avcC's profile indication): High 10, High 4:2:2, High 4:4:4,
# CAVLC 4:4:4 Intra
H264_DEEP_PROFILES = {110, 122, 244, 44}
VISUAL_SAMPLE_ENTRY_BYTES = 78  # a video sample description's own fields, before its boxes
# transfer characteristics (ITU-T H.273) in a sample description's colour box (colr, nclx or nclc)
HDR_TRANSFER_CODES = {16, 18}  # PQ, HLG
UNSTATED_TRANSFER_CODES = {0, 2}  # reserved, unspecified


def may_hold_hdr(path) -> bool:
    """Whether an MP4/MOV file's first video track may be HDR video: its sample description's colour
    box says so where it states a transfer (phones write one, ffmpeg where the stream states its
    primaries, transfer and matrix; 8-bit H.264 HLG is told only so), else its codec can carry HDR
    (:data:`HDR_CODECS`; H.264 in :data:`H264_DEEP_PROFILES`). False for other files and where the
    boxes cannot be read."""
    entry = _video_sample_entry(path)
    if entry is None:
        return False
    kind, body = entry
    boxes = list(_boxes(body[VISUAL_SAMPLE_ENTRY_BYTES:]))
    # the colour box that states code points: an entry may hold an ICC profile's colour box too
    colour = next((box for name, box in boxes if name == b"colr" and box[:4] in (b"nclx", b"nclc") and len(box) >= 10), None)
    if colour is not None:
        transfer = struct.unpack(">H", colour[6:8])[0]  # after the colour type and the primaries
        if transfer not in UNSTATED_TRANSFER_CODES:
            return transfer in HDR_TRANSFER_CODES
    if kind in H264_CODECS:
        config = dict(boxes).get(b"avcC", b"")
        return len(config) > 1 and config[1] in H264_DEEP_PROFILES
    return kind in HDR_CODECS


def _video_sample_entry(path) -> tuple[bytes, bytes] | None:
    """(kind, body) of an MP4/MOV file's first video track's first sample description, whose four
    letters name its codec as the file stores it (b"avc1", b"hvc1", b"av01", ...)."""
    moov = _movie_box(path)
    track = None if moov is None else _first_video_track(list(_boxes(moov)))
    if track is None:
        return None
    stbl = dict(_boxes(dict(_boxes(dict(_boxes(track.get(b"mdia", b""))).get(b"minf", b""))).get(b"stbl", b"")))
    entries = stbl.get(b"stsd", b"")[8:]  # after the version, flags and entry count
    return next(_boxes(entries), None)


def _movie_box(path) -> bytes | None:
    """The body of an MP4/MOV file's movie box (moov); None for other files and where none is found."""
    path = Path(path)
    if not is_movie(path):
        return None
    size = path.stat().st_size
    with open(path, "rb") as handle:
        offset = 0
        while offset + 8 <= size:
            handle.seek(offset)
            header = _box_header(handle.read(16), size - offset)
            if header is None:
                return None
            kind, start, length = header
            if kind == b"moov":
                handle.seek(offset + start)
                return handle.read(min(length - start, MOOV_LIMIT))
            offset += length
    return None


def _box_header(header: bytes, room: int) -> tuple[bytes, int, int] | None:
    """(kind, where its body starts, its length) of the box whose first (up to 16) bytes are
    ``header``, ``room`` bytes before the end of what holds it (a length of 0: up to that end);
    None where no box header stands there."""
    if len(header) < 8:
        return None
    length, kind = struct.unpack(">I4s", header[:8])
    start = 8
    if length == 1 and len(header) >= 16:  # a 64-bit length follows the kind
        length, start = struct.unpack(">Q", header[8:16])[0], 16
    elif length == 0:
        length = room
    return (kind, start, length) if length >= start else None


def _boxes(data: bytes):
    """(kind, body) of each box in ``data``, stopping at one that runs past its end."""
    offset = 0
    while offset + 8 <= len(data):
        header = _box_header(data[offset : offset + 16], len(data) - offset)
        if header is None or offset + header[2] > len(data):
            return
        kind, start, length = header
        yield kind, data[offset + start : offset + length]
        offset += length


def track_kinds(path) -> list[bytes] | None:
    """The handler type of each track in an MP4/MOV file's movie box, in file order (b"vide",
    b"soun", b"text", ...); None for other files and where no movie box is found. A movie box cut
    short lists the tracks before the cut."""
    moov = _movie_box(path)
    return None if moov is None else [_handler(dict(_boxes(trak))) for kind, trak in _boxes(moov) if kind == b"trak"]


def _handler(track: dict) -> bytes:
    """The handler type of a track, given as {kind: body} of its children: its media box's hdlr
    names it after version, flags and a field that QuickTime fills with b"mhlr" and MP4 with zeros."""
    return dict(_boxes(track.get(b"mdia", b""))).get(b"hdlr", b"")[8:12]


def _first_video_track(boxes: list) -> dict | None:
    """{kind: body} of the children of the first video track among a movie box's ``boxes``."""
    for kind, trak in boxes:
        if kind == b"trak" and _handler(children := dict(_boxes(trak))) == b"vide":
            return children
    return None


def _determinant(header: bytes, offsets: tuple[int, int]) -> int:
    """The determinant of the 2x2 part (a, b; c, d) of a header's display matrix, whose fixed-point
    values are stored from ``offsets[version]`` on (1 where the header is too short to hold one)."""
    at = offsets[0] if header[:1] == b"\x00" else offsets[1]  # version 0: 32-bit times; version 1: 64-bit
    if len(header) < at + 36:
        return 1
    a, b, _, c, d, *_ = struct.unpack(">9i", header[at : at + 36])
    return a * d - b * c
