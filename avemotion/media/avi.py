"""What an AVI file's own index says about its video: the frames its writer dropped.

AVI has no frame times: a stream's frames follow one another at its steady rate, a chunk each.
Capture software that misses a frame, and ffmpeg's muxer where frame times jump (a variable frame
rate written to AVI, ``-r`` raised), write an empty chunk in its place, and players show the frame
before for it. decord gives only the frames with data; where it also gives no frame times (codecs
with B-frames: DivX, Xvid, H.264 in AVI) counting them evenly over the clip puts every frame after
a drop early (4 dropped of 100 at 25 frames/s: the last frames 0.16 s before the audio under them).
ffmpeg keeps each frame's slot as its time (avemotion.media.transcode copies such a file).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# an idx1 entry: chunk id ("00dc": stream 0's compressed video), flags, offset, size
INDEX_ENTRY = np.dtype([("id", "S4"), ("flags", "<u4"), ("offset", "<u4"), ("size", "<u4")])
# OpenDML's indexes: a super index in the stream's header list, one entry per standard index (an
# "ix00" chunk per part of the file), whose entries give each chunk's offset and size
SUPER_INDEX_ENTRY = np.dtype([("offset", "<u8"), ("size", "<u4"), ("duration", "<u4")])
STANDARD_INDEX_ENTRY = np.dtype([("offset", "<u4"), ("size", "<u4")])
INDEX_OF_INDEXES, INDEX_OF_CHUNKS = 0, 1  # bIndexType
KEY_FRAME_BIT = 0x80000000  # set in a standard index entry's size for a frame that is no keyframe
VIDEO_CHUNKS = (b"dc", b"db")  # compressed and uncompressed (DIB) video frames
HEADER_LIST_LIMIT = 1 << 20  # a header list is a few KB: a damaged size must not read the whole file


def dropped_frames(path) -> int:
    """How many frames of an AVI's first video stream, between its second and last frame, are empty
    chunks in its index; 0 for other files and where the file has no index or it cannot be read (a
    cut file: avemotion.media.probe tells those). Empty chunks before the second frame are an
    encoder's B-frame delay, not drops: the first frame's chunk then yields no picture, so a
    decoder's frame times start after them, evenly spaced (tests/data/divx_packed_b_frames.avi has
    two, as libxvid wrote them; ffmpeg shows its frames at slots 3, 4, 5, ...)."""
    sizes = video_chunk_sizes(path)
    frames = np.flatnonzero(sizes) if sizes is not None else []
    return int(np.count_nonzero(sizes[frames[1] : frames[-1]] == 0)) if len(frames) > 2 else 0


def video_chunk_sizes(path) -> np.ndarray | None:
    """The sizes of an AVI's first video stream's chunks in order, from its index: OpenDML's where it
    has one (a file over 1 GiB is written in parts, and idx1 covers only the first), else idx1; None
    for other files and where no index can be read. A few small reads: the header list and the
    indexes, skipping the frames' data."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"AVI ":
            return None
        video, offset = None, 12
        while offset + 8 <= size:
            handle.seek(offset)
            kind, length = struct.unpack("<4sI", handle.read(8))
            if kind == b"LIST" and handle.read(4) == b"hdrl":
                video, super_index = _first_video_stream(handle.read(min(max(0, length - 4), HEADER_LIST_LIMIT)))
                sizes = _opendml_sizes(handle, super_index, size) if super_index is not None else None
                if sizes is not None:
                    return sizes
            elif kind == b"idx1":
                if video is None or offset + 8 + length > size:
                    return None
                entries = np.frombuffer(handle.read(length - length % INDEX_ENTRY.itemsize), dtype=INDEX_ENTRY)
                ids = [b"%02d" % video + suffix for suffix in VIDEO_CHUNKS]
                return entries["size"][np.isin(entries["id"], ids)]
            offset += 8 + length + (length & 1)  # chunks are padded to an even size
    return None


def _first_video_stream(header: bytes) -> tuple[int | None, bytes | None]:
    """(the number of the first video stream ("vids") among the header list's stream lists (strl),
    its OpenDML super index (the "indx" chunk's data) or None)."""
    number, offset = 0, 0
    while offset + 12 <= len(header):
        kind, length = struct.unpack("<4sI", header[offset : offset + 8])
        if kind == b"LIST" and header[offset + 8 : offset + 12] == b"strl":
            # a stream list opens with its header (strh), whose first field is the stream's type
            if header[offset + 12 : offset + 16] == b"strh" and header[offset + 20 : offset + 24] == b"vids":
                return number, _sub_chunk(header[offset + 12 : offset + 8 + length], b"indx")
            number += 1
        offset += 8 + length + (length & 1)
    return None, None


def _sub_chunk(data: bytes, wanted: bytes) -> bytes | None:
    offset = 0
    while offset + 8 <= len(data):
        kind, length = struct.unpack("<4sI", data[offset : offset + 8])
        if kind == wanted:
            return data[offset + 8 : offset + 8 + length]
        offset += 8 + length + (length & 1)
    return None


def _opendml_sizes(handle, super_index: bytes, file_size: int) -> np.ndarray | None:
    """The chunk sizes the standard indexes a super index lists give, in order; None where it lists
    none or one cannot be read (then idx1 is read instead)."""
    if len(super_index) < 24:
        return None
    longs, _, kind, in_use = struct.unpack("<HBBI", super_index[:8])
    if kind != INDEX_OF_INDEXES or longs != 4:
        return None
    count = min(in_use, (len(super_index) - 24) // SUPER_INDEX_ENTRY.itemsize)
    sizes = []
    for offset in np.frombuffer(super_index, SUPER_INDEX_ENTRY, count, 24)["offset"]:
        if offset + 32 > file_size:
            return None  # a part the file no longer holds
        handle.seek(int(offset))
        header = handle.read(32)
        length, longs, _, kind, in_use = struct.unpack("<IHBBI", header[4:16])
        entries = min(in_use, (min(length, file_size - offset - 8) - 24) // STANDARD_INDEX_ENTRY.itemsize)
        if kind != INDEX_OF_CHUNKS or longs != 2 or entries < 0:
            return None
        part = np.frombuffer(handle.read(entries * STANDARD_INDEX_ENTRY.itemsize), STANDARD_INDEX_ENTRY)
        sizes.append(part["size"] & ~np.uint32(KEY_FRAME_BIT))
    return np.concatenate(sizes) if sizes else None
