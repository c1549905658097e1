"""Sampled video frames per clip: T frames, each the middle frame of one of T equal segments
(segment-based sampling as in TSN/VideoMAE fine-tuning), decoded with decord reading only those
frames, then cropped around the face or letterboxed, and resized to S x S.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avemotion.media.probe import cut_short, decoder_tail, explain, sniff, truncation
from avemotion.quarantine import ClipDefect


def open_video(path):
    """A decord VideoReader, or :class:`ClipDefect` with one line that names the file and what is
    wrong with it (empty, a still image, an audio file, text, truncated: avemotion.media.probe)."""
    from decord import VideoReader, cpu  # decord is imported here so that modules importing this one stay light

    path = Path(path)
    if sniff(path).kind != "media":  # the first bytes already tell: no decoder needs to try
        raise ClipDefect(explain(path))
    try:
        reader = VideoReader(str(path), ctx=cpu(0), num_threads=1)
    except Exception as error:  # decord raises a bare RuntimeError/DECORDError for anything it cannot open
        raise ClipDefect(explain(path, error)) from error
    if len(reader) == 0:
        raise ClipDefect(f"unreadable video: {path.name} has a video stream without frames")
    return reader


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


def decode_frames(path, reader, pick, end: int) -> tuple[np.ndarray, list[int], int]:
    """(frames (N, H, W, 3) uint8, their indices, ``end``) for the indices ``pick(end)`` chooses
    among the first ``end`` frames of ``reader``.

    A cut file's last frames lie in the packet the file ends inside, and decoding near them fails (a
    few frames earlier or later from one run to the next: the decoder reads ahead). For such a file
    (avemotion.media.probe.cut_short) ``end`` moves back by 1, 2, 4... frames until what ``pick``
    chooses decodes, so a truncated clip that is kept keeps the frames it holds. Any other failure
    is a :class:`ClipDefect` that names the file, not decord's source files.
    """
    back = 0
    while True:
        indices = list(pick(end - back))
        if not indices:
            return np.zeros((0, 0, 0, 3), np.uint8), indices, end - back
        try:
            return reader.get_batch(indices).asnumpy(), indices, end - back
        except Exception as error:
            if 2 * back + 1 >= end or cut_short(path) is None:
                reason = explain(path, error)
                if reason.startswith("unreadable video"):
                    reason = f"unreadable video: {Path(path).name}: frames {indices[0]}-{indices[-1]} could not be decoded ({decoder_tail(error)})"
                raise ClipDefect(reason) from error
            back = 2 * back or 1


def segment_middles(total_frames: int, num_segments: int) -> np.ndarray:
    """Index of the middle frame of each of ``num_segments`` equal segments of ``total_frames``.

    Clips shorter than ``num_segments`` frames repeat frames rather than fail (the frames stage
    flags them ``short``; ``frames.short_clips: quarantine`` leaves them out instead).
    """
    if total_frames < 1:
        raise ValueError("a clip needs at least one frame")
    edges = np.arange(num_segments) * total_frames / num_segments
    return np.minimum(np.floor(edges + total_frames / num_segments / 2).astype(int), total_frames - 1)


def letterbox(frame: np.ndarray, size: int) -> np.ndarray:
    """The whole frame scaled to fit ``size`` x ``size``, aspect ratio kept, centred on black padding."""
    height, width = frame.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out


def smooth_face_squares(boxes: np.ndarray, margin: float, window: int = 9) -> np.ndarray:
    """Per-frame square crops (cx, cy, side) from per-frame face boxes (x0, y0, x1, y1; NaN = no face).

    Frames without a face take the nearest tracked values (linear interpolation); a moving average
    over ``window`` frames removes landmark jitter so the crop does not shake.
    """
    boxes = np.asarray(boxes, float)
    valid = ~np.isnan(boxes).any(axis=1)
    if not valid.any():
        raise ClipDefect("no face in any frame")
    t = np.arange(len(boxes))
    centre_x = np.interp(t, t[valid], (boxes[valid, 0] + boxes[valid, 2]) / 2)
    centre_y = np.interp(t, t[valid], (boxes[valid, 1] + boxes[valid, 3]) / 2)
    side = np.interp(t, t[valid], np.maximum(boxes[valid, 2] - boxes[valid, 0], boxes[valid, 3] - boxes[valid, 1]))
    kernel = np.ones(min(window, len(boxes))) / min(window, len(boxes))
    smooth = lambda x: np.convolve(np.pad(x, len(kernel) // 2, mode="edge"), kernel, mode="valid")[: len(x)]
    return np.stack([smooth(centre_x), smooth(centre_y), smooth(side) * (1 + 2 * margin)], axis=1)


def crop_square(frame: np.ndarray, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """The square of ``side`` pixels centred on (cx, cy), resized to ``size``; outside the frame is black."""
    scale = size / side
    matrix = np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]], np.float32)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(frame, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT)


def sample_clip_frames(
    path, num_frames: int, size: int, crop: str, face_boxes: np.ndarray | None = None, margin: float = 0.25, reader=None
) -> tuple[np.ndarray, dict]:
    """(uint8 frames (T, S, S, 3) RGB, info with the source frame indices, frame count and fps).

    ``face_boxes`` holds one box per source frame (from the face features) when ``crop`` is "face";
    ``reader``, when given, is the clip's open :func:`open_video` reader.
    """
    reader = reader if reader is not None else open_video(path)
    frames, indices, total = decode_frames(path, reader, lambda end: segment_middles(end, num_frames).tolist(), len(reader))
    indices = np.array(indices)
    if crop == "face":
        if face_boxes is None or len(face_boxes) == 0:
            raise ClipDefect("no face track for a face crop")
        # Face tracks can be a frame or two shorter or longer than decord's count (container edge frames).
        squares = smooth_face_squares(face_boxes, margin)[np.minimum(indices, len(face_boxes) - 1)]
        out = np.stack([crop_square(f, *square, size) for f, square in zip(frames, squares)])
    elif crop == "full":
        out = np.stack([letterbox(f, size) for f in frames])
    else:
        raise ValueError(f"frames.crop must be 'face' or 'full', got {crop!r}")
    return out, {"source_frames": indices.tolist(), "total_frames": total, "fps": float(reader.get_avg_fps())}


def decode_all(path, batch: int = 256):
    """Every frame of a clip in (T, H, W, 3) uint8 RGB batches, with the clip's fps (for face analysis).

    Batches bound memory on long clips; a batch of 256 frames holds a typical clip whole, so face
    tracking and pose smoothing run over the clip without restarting.
    """
    reader = open_video(path)
    fps = float(reader.get_avg_fps()) or 25.0
    end = len(reader)  # moves back where a cut file's last frames do not decode (decode_frames)
    for start in range(0, len(reader), batch):
        if start >= end:
            return
        frames, _, end = decode_frames(path, reader, lambda end: range(start, min(start + batch, end)), end)
        if len(frames):
            yield frames, start, fps
