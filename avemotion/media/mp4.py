"""What an MP4/MOV file's boxes say about its video's display: a mirror in its display matrix.

A track header (tkhd) holds a 3x3 display matrix that players apply to the decoded frames: phones
store a rotation there, and some writers a mirror (``ffmpeg -display_hflip``; front cameras that
record what the preview showed). decord 0.6.0 reads only the matrix's rotation angle, so a mirrored
clip comes out turned instead: one flipped left to right reads as a half turn, the face upside down
(the face mesh still follows it, but on WolfgangLanger AU01 read 2.4 off, AU12 1.7, pitch 0.34 rad,
and the frames stage's crops were upside down); one turned a quarter and flipped reads as the
opposite quarter turn. ffmpeg applies the whole matrix (avemotion.media.transcode copies such a
clip).
"""

from __future__ import annotations

import struct
from pathlib import Path

MOOV_LIMIT = 64 << 20  # a movie box is KBs to a few MB; a damaged size must not read the whole file
CONTAINERS = {b"trak", b"mdia"}  # boxes whose children are read


def mirrored(path) -> bool:
    """Whether the first video track of an MP4/MOV file has a display matrix that mirrors the frames
    (a negative determinant); False for other files and where the boxes cannot be read."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8 or head[4:8] not in (b"ftyp", b"moov", b"wide", b"mdat", b"free", b"skip"):
            return False
        offset = 0
        while offset + 8 <= size:
            handle.seek(offset)
            header = handle.read(16)
            if len(header) < 8:
                return False
            length, kind = struct.unpack(">I4s", header[:8])
            start = 8
            if length == 1 and len(header) == 16:
                length, start = struct.unpack(">Q", header[8:16])[0], 16
            elif length == 0:
                length = size - offset
            if length < start:
                return False
            if kind == b"moov":
                handle.seek(offset + start)
                return _first_video_mirrored(handle.read(min(length - start, MOOV_LIMIT)))
            offset += length
    return False


def _boxes(data: bytes):
    """(kind, body) of each box in ``data``, stopping at one that runs past its end."""
    offset = 0
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        start = 8
        if length == 1 and offset + 16 <= len(data):
            length, start = struct.unpack(">Q", data[offset + 8 : offset + 16])[0], 16
        elif length == 0:
            length = len(data) - offset
        if length < start or offset + length > len(data):
            return
        yield kind, data[offset + start : offset + length]
        offset += length


def _first_video_mirrored(moov: bytes) -> bool:
    for kind, trak in _boxes(moov):
        if kind != b"trak":
            continue
        children = dict(_boxes(trak))
        handler = dict(_boxes(children.get(b"mdia", b""))).get(b"hdlr", b"")
        if handler[8:12] != b"vide" or b"tkhd" not in children:
            continue
        matrix = _matrix(children[b"tkhd"])
        return matrix is not None and matrix[0] * matrix[4] - matrix[1] * matrix[3] < 0
    return False


def _matrix(tkhd: bytes) -> tuple | None:
    """The track header's display matrix (a, b, u, c, d, v, x, y, w), fixed-point as stored."""
    at = 40 if tkhd[:1] == b"\x00" else 52  # version 0: 32-bit times and duration; version 1: 64-bit
    if len(tkhd) < at + 36:
        return None
    return struct.unpack(">9i", tkhd[at : at + 36])
