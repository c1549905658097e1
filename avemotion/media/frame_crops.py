"""How sampled frames are cut to S x S: the whole frame letterboxed, or a square around the face
smoothed over time, each as an affine warp of the frame (area-averaged first where it shrinks).
"""

from __future__ import annotations

import cv2
import numpy as np

from avemotion.quarantine import ClipDefect

# How the frames stage cuts the crops of FACE_CROPS, as a revision their frames jobs carry as they carry
# SAMPLING_REVISION (absent: 0); letterboxed whole frames ("full") are cut as they were and carry none,
# so raising it recuts only face crops. 1: crops that shrink the frame are area-averaged first
# (AREA_BEFORE_WARP).
CROP_REVISION = 1


def letterbox(frame: np.ndarray, size: int, pixel_aspect: float = 1.0) -> np.ndarray:
    """The whole frame scaled to fit ``size`` x ``size`` as it is shown (its pixels ``pixel_aspect``
    times as wide as high), centred on black padding."""
    height, width = frame.shape[:2]
    new_w, new_h, left, top = letterbox_layout(width, height, size, pixel_aspect)
    shrunk = max(height, width * pixel_aspect) > size
    resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA if shrunk else cv2.INTER_LINEAR)
    out = np.zeros((size, size, 3), np.uint8)
    out[top : top + new_h, left : left + new_w] = resized
    return out


def letterbox_layout(width: int, height: int, size: int, pixel_aspect: float = 1.0) -> tuple[int, int, int, int]:
    """(width, height, left, top) of a ``width`` x ``height`` frame within :func:`letterbox`'s square."""
    scale = size / max(height, width * pixel_aspect)
    new_w, new_h = max(1, round(width * pixel_aspect * scale)), max(1, round(height * scale))
    return new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


# Crops made from the face stage's track (avemotion.face.crops gives their per-frame transforms);
# "full" letterboxes the whole frame.
FACE_CROPS = ("face", "aligned")
# Frames over which face crops are averaged: removes landmark jitter so the crop does not shake.
SMOOTHING_FRAMES = 9


def smooth_track(values: np.ndarray, window: int = SMOOTHING_FRAMES) -> np.ndarray:
    """(N, K) per-frame values (NaN rows: no face) with the gaps filled from the nearest tracked
    frames (linear interpolation) and a moving average over ``window`` frames."""
    values = np.asarray(values, float)
    valid = ~np.isnan(values).any(axis=1)
    if not valid.any():
        raise ClipDefect("no face in any frame")
    t = np.arange(len(values))
    kernel = np.ones(min(window, len(values))) / min(window, len(values))
    smooth = lambda x: np.convolve(np.pad(x, len(kernel) // 2, mode="edge"), kernel, mode="valid")[: len(x)]
    return np.stack([smooth(np.interp(t, t[valid], column[valid])) for column in values.T], axis=1)


def smooth_face_squares(boxes: np.ndarray, margin: float, window: int = SMOOTHING_FRAMES, pixel_aspect: float = 1.0) -> np.ndarray:
    """Per-frame square crops (cx, cy, side) from per-frame face boxes (x0, y0, x1, y1 in the video's
    pixels; NaN = no face), in the pixels of the frame as it is shown (x times ``pixel_aspect``),
    where a face has its own proportions (:func:`crop_square`), smoothed by :func:`smooth_track`."""
    boxes = np.asarray(boxes, float) * [pixel_aspect, 1, pixel_aspect, 1]
    squares = np.stack(
        [(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2, np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])], axis=1
    )
    smoothed = smooth_track(squares, window)
    return smoothed * [1, 1, 1 + 2 * margin]


def crop_square(frame: np.ndarray, cx: float, cy: float, side: float, size: int, pixel_aspect: float = 1.0) -> np.ndarray:
    """The square of ``side`` pixels centred on (cx, cy), resized to ``size``; outside the frame is
    black. On pixels ``pixel_aspect`` times as wide as high, the square is one as the frame is shown,
    and ``cx`` and ``side`` count its pixels' heights (x times ``pixel_aspect``, as
    :func:`smooth_face_squares` gives them)."""
    return warp_crop(frame, square_crop_matrix(cx, cy, side, size, pixel_aspect), size)


def square_crop_matrix(cx: float, cy: float, side: float, size: int, pixel_aspect: float = 1.0) -> np.ndarray:
    """The (2, 3) affine matrix taking a pixel of the video into :func:`crop_square`'s crop:
    (x_crop, y_crop) = matrix @ (x, y, 1)."""
    scale = size / side
    return np.array([[scale * pixel_aspect, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]])


# Crops that shrink the frame are area-averaged to this many times their scale before the bilinear
# warp, whose taps alone skip pixels and alias: averaging to the crop's own scale (1) blurs a second
# time in the warp, to twice it leaves a 2:1 warp that skips pixels again (benchmarks/crop_sharpness.py).
AREA_BEFORE_WARP = 1.5


def warp_crop(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` crop that the (2, 3) ``matrix`` maps ``frame``'s pixels into; outside
    the frame is black. Bilinear, as OpenFace aligns faces; where the crop shrinks the frame more
    than :data:`AREA_BEFORE_WARP` times (a face larger than the crop, as in most real video), the
    part of the frame it covers is first shrunk by area averaging to that many times the crop's scale
    (:func:`_shrunk_to_crop`): bilinear taps alone skip pixels and alias.
    """
    matrix = np.asarray(matrix, float)
    shrink = np.minimum(np.linalg.norm(matrix[:, :2], axis=0) * AREA_BEFORE_WARP, 1.0)  # per axis of the frame
    if (shrink < 1).any():
        frame, matrix = _shrunk_to_crop(frame, matrix, size, shrink)
    return cv2.warpAffine(frame, matrix.astype(np.float32), (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _shrunk_to_crop(frame: np.ndarray, matrix: np.ndarray, size: int, shrink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the part of ``frame`` that ``matrix``'s crop covers, shrunk by ``shrink`` (x, y) with
    cv2.INTER_AREA; the matrix that maps its pixels into the same crop)."""
    edges = np.array([[-0.5, -0.5, 1], [size - 0.5, -0.5, 1], [-0.5, size - 0.5, 1], [size - 0.5, size - 0.5, 1]])
    covered = edges @ cv2.invertAffineTransform(matrix).T
    margin = 2 / shrink  # frame pixels under the bilinear taps at the crop's edge
    height, width = frame.shape[:2]
    x0, y0 = np.maximum(np.floor(covered.min(axis=0) - margin).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(covered.max(axis=0) + margin).astype(int), [width, height])
    if x1 <= x0 or y1 <= y0:  # the crop lies outside the frame: black as it is
        return frame, matrix
    shrunk = cv2.resize(frame[y0:y1, x0:x1], (max(1, round((x1 - x0) * shrink[0])), max(1, round((y1 - y0) * shrink[1]))), interpolation=cv2.INTER_AREA)
    ratio_x, ratio_y = shrunk.shape[1] / (x1 - x0), shrunk.shape[0] / (y1 - y0)
    # a pixel u of the shrunk part shows the frame at x = (u + 0.5) / ratio_x - 0.5 + x0 (cv2.resize's centres)
    to_frame = np.array([[1 / ratio_x, 0, 0.5 / ratio_x - 0.5 + x0], [0, 1 / ratio_y, 0.5 / ratio_y - 0.5 + y0], [0, 0, 1]])
    return shrunk, matrix @ to_frame


def letterbox_matrix(width: int, height: int, size: int, pixel_aspect: float = 1.0) -> np.ndarray:
    """The (2, 3) affine matrix taking a pixel of a ``width`` x ``height`` frame into :func:`letterbox`'s square."""
    new_w, new_h, left, top = letterbox_layout(width, height, size, pixel_aspect)
    return np.array([[new_w / width, 0, left], [0, new_h / height, top]], float)
