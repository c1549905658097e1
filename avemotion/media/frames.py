"""Sampled video frames per clip: T frames, each the middle frame of one of T equal segments
(segment-based sampling as in TSN/VideoMAE fine-tuning), decoded with decord reading only those
frames, then cropped around the face or letterboxed, and resized to S x S.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avemotion.quarantine import ClipDefect


def open_video(path):
    """A decord VideoReader, or :class:`ClipDefect` for a file that is empty, unreadable or frameless."""
    from decord import VideoReader, cpu  # decord is imported here so that modules importing this one stay light

    path = Path(path)
    if path.stat().st_size == 0:
        raise ClipDefect(f"zero-length file: {path.name}")
    try:
        reader = VideoReader(str(path), ctx=cpu(0), num_threads=1)
    except Exception as error:  # decord raises a bare RuntimeError/DECORDError for anything it cannot open
        raise ClipDefect(f"unreadable video: {str(error).splitlines()[0][:200]}") from error
    if len(reader) == 0:
        raise ClipDefect("video has no frames")
    return reader


def segment_middles(total_frames: int, num_segments: int) -> np.ndarray:
    """Index of the middle frame of each of ``num_segments`` equal segments of ``total_frames``.

    Clips shorter than ``num_segments`` frames repeat frames rather than fail.
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
    path, num_frames: int, size: int, crop: str, face_boxes: np.ndarray | None = None, margin: float = 0.25
) -> tuple[np.ndarray, dict]:
    """(uint8 frames (T, S, S, 3) RGB, info with the source frame indices, frame count and fps).

    ``face_boxes`` holds one box per source frame (from the face features) when ``crop`` is "face".
    """
    reader = open_video(path)
    total = len(reader)
    indices = segment_middles(total, num_frames)
    frames = reader.get_batch(indices.tolist()).asnumpy()
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
    for start in range(0, len(reader), batch):
        yield reader.get_batch(list(range(start, min(start + batch, len(reader))))).asnumpy(), start, fps
