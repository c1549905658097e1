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
VIDEO_CHUNKS = (b"dc", b"db")  # compressed and uncompressed (DIB) video frames


def dropped_frames(path) -> int:
    """How many frames of an AVI's first video stream, between its second and last frame, are empty
    chunks in its index (idx1); 0 for other files and where the file has no index or it cannot be
    read (a cut file: avemotion.media.probe tells those). Empty chunks before the second frame are
    an encoder's B-frame delay, not drops: the first frame's chunk then yields no picture, so a
    decoder's frame times start after them, evenly spaced (tests/data/divx_packed_b_frames.avi has
    two, as libxvid wrote them; ffmpeg shows its frames at slots 3, 4, 5, ...). A few small reads:
    the header list and the index, skipping the frames' data."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"AVI ":
            return 0
        video, offset = None, 12
        while offset + 8 <= size:
            handle.seek(offset)
            kind, length = struct.unpack("<4sI", handle.read(8))
            if kind == b"LIST" and handle.read(4) == b"hdrl":
                video = _first_video_stream(handle.read(max(0, length - 4)))
            elif kind == b"idx1":
                if video is None or offset + 8 + length > size:
                    return 0
                entries = np.frombuffer(handle.read(length - length % INDEX_ENTRY.itemsize), dtype=INDEX_ENTRY)
                ids = [b"%02d" % video + suffix for suffix in VIDEO_CHUNKS]
                sizes = entries["size"][np.isin(entries["id"], ids)]
                frames = np.flatnonzero(sizes)
                return int(np.count_nonzero(sizes[frames[1] : frames[-1]] == 0)) if len(frames) > 2 else 0
            offset += 8 + length + (length & 1)  # chunks are padded to an even size
    return 0


def _first_video_stream(header: bytes) -> int | None:
    """The number of the first video stream ("vids") among the header list's stream lists (strl)."""
    number, offset = 0, 0
    while offset + 12 <= len(header):
        kind, length = struct.unpack("<4sI", header[offset : offset + 8])
        if kind == b"LIST" and header[offset + 8 : offset + 12] == b"strl":
            # a stream list opens with its header (strh), whose first field is the stream's type
            if header[offset + 12 : offset + 16] == b"strh" and header[offset + 20 : offset + 24] == b"vids":
                return number
            number += 1
        offset += 8 + length + (length & 1)
    return None
