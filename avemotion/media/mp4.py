"""What an MP4/MOV file's boxes say about its video's display: a mirror in its display matrix.

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
    path = Path(path)
    if not is_movie(path):
        return False
    size = path.stat().st_size
    with open(path, "rb") as handle:
        offset = 0
        while offset + 8 <= size:
            handle.seek(offset)
            header = _box_header(handle.read(16), size - offset)
            if header is None:
                return False
            kind, start, length = header
            if kind == b"moov":
                handle.seek(offset + start)
                return _first_video_mirrored(handle.read(min(length - start, MOOV_LIMIT)))
            offset += length
    return False


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


def _first_video_mirrored(moov: bytes) -> bool:
    boxes = list(_boxes(moov))
    movie = next((_determinant(body, MVHD_MATRIX) for kind, body in boxes if kind == b"mvhd"), 1)
    for kind, trak in boxes:
        if kind != b"trak":
            continue
        children = dict(_boxes(trak))
        handler = dict(_boxes(children.get(b"mdia", b""))).get(b"hdlr", b"")
        if handler[8:12] != b"vide" or b"tkhd" not in children:
            continue
        return movie * _determinant(children[b"tkhd"], TKHD_MATRIX) < 0
    return False


def _determinant(header: bytes, offsets: tuple[int, int]) -> int:
    """The determinant of the 2x2 part (a, b; c, d) of a header's display matrix, whose fixed-point
    values are stored from ``offsets[version]`` on (1 where the header is too short to hold one)."""
    at = offsets[0] if header[:1] == b"\x00" else offsets[1]  # version 0: 32-bit times; version 1: 64-bit
    if len(header) < at + 36:
        return 1
    a, b, _, c, d, *_ = struct.unpack(">9i", header[at : at + 36])
    return a * d - b * c
