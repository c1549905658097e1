"""Skin folds read from the image: the appearance changes FACS gives for action units whose
landmarks alone do not carry them across people. Raising the brows (AU01, AU02, frontalis) furrows
the forehead with horizontal folds; lowering and drawing them together (AU04, corrugator) creates
vertical furrows between the brows; the chin raiser (AU17, mentalis) wrinkles the chin boss.

A person's brow height and brow gap at rest differ from the next person's by more than a raise or a
frown moves them, and OpenFace's static models read these AUs from appearance (HOG of the aligned
face). So each frame's face is warped level and to a fixed scale (a similarity fitted from the mesh
onto the canonical face, :data:`avemotion.face.geometry.POSE_MODEL`, 1 px per mm) and the folds are
measured as the mean gradient across them, divided by the upper face's mean brightness, so that
lighting that scales the image leaves them unchanged.
"""

from __future__ import annotations

import cv2
import numpy as np

from avemotion.face import geometry

# Boxes (x0, y0, x1, y1) in mm of the canonical face (x to the subject's left, y down; the origin
# is the centre of the 68 iBUG points, the eyes' corners at y about -38, the inner brow ends at
# about -65, the lower lip's edge at 46, the chin's tip at 77). The forehead box ends 7 mm above the
# resting inner brows, below the hairline of most faces; the glabella box spans the space between
# the inner brow ends, from the brows' top to the nose's bridge; the chin box is the chin boss
# between the lower lip and the chin's tip.
FOREHEAD = (-30, -92, 30, -72)
GLABELLA = (-12, -72, 12, -50)
CHIN = (-15, 55, 15, 72)
# The warped regions: the upper face from the top of the forehead to under the eyes (both brow
# boxes, and the brightness the folds are divided by: not the mouth, whose teeth would change it
# with a smile), and the chin box with a margin for the smoothing.
UPPER = (-60, -100, 60, 0)
LOWER = (CHIN[0] - 5, CHIN[1] - 5, CHIN[2] + 5, CHIN[3] + 5)  # the Gaussian reads 4 px, the Sobel 1 more
# The smoothing before the gradients (sigma, mm): skin pores and noise count less than folds.
BLUR_MM = 1.0
# Measured as the gradient across the folds: the forehead's run sideways (d/dy), the glabella's up
# and down (d/dx); the chin boss dimples into bumps, read as d/dx, since the lower lip's edge and
# the chin's shadow are sideways edges that move with the mouth and would read as folds.
FOLD_NAMES = ("forehead_folds", "glabella_folds", "chin_folds")


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of the similarity (turn, scale, shift) that best maps (K, 2) ``source`` onto
    ``target`` in least squares (Umeyama, without reflection)."""
    source_centre, target_centre = source.mean(0), target.mean(0)
    a, b = source - source_centre, target - target_centre
    variance = float((a**2).sum())
    # for a similarity [[s, -t], [t, s]]: s = sum(a . b) / |a|^2, t = sum(a x b) / |a|^2
    s = float((a * b).sum()) / max(variance, 1e-12)
    t = float((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()) / max(variance, 1e-12)
    linear = np.array([[s, -t], [t, s]])
    return np.concatenate([linear, (target_centre - linear @ source_centre)[:, None]], axis=1)


def warp(frame: np.ndarray, to_face: np.ndarray, region) -> np.ndarray:
    """``region`` (x0, y0, x1, y1, mm) of RGB ``frame`` at 1 px per mm, grey, float32, where
    ``to_face`` maps the frame's pixels to the canonical face's mm."""
    matrix = to_face - np.array([[0, 0, region[0]], [0, 0, region[1]]], dtype=float)
    size = (region[2] - region[0], region[3] - region[1])
    patch = cv2.warpAffine(frame, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _across(smooth: np.ndarray, region, box, dx: int, dy: int) -> float:
    """Mean |gradient| (Sobel ``dx``, ``dy``) over ``box`` of a smoothed ``region`` patch; the Sobel
    runs on the box and the one pixel around it that its 3x3 kernel reads."""
    x0, y0, x1, y1 = box[0] - region[0], box[1] - region[1], box[2] - region[0], box[3] - region[1]
    gradient = cv2.Sobel(smooth[y0 - 1:y1 + 1, x0 - 1:x1 + 1], cv2.CV_32F, dx, dy, ksize=3)
    return float(np.abs(gradient[1:-1, 1:-1]).mean())


def fold_measures(frame: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """:data:`FOLD_NAMES` of one RGB frame (H, W, 3) with its (468, 2+) mesh in pixels: the mean
    gradient across each kind of fold over its box, after a :data:`BLUR_MM` Gaussian, over the upper
    face's mean brightness, so that lighting that scales the image leaves them unchanged."""
    to_face = similarity(np.asarray(mesh, dtype=np.float64)[geometry.POSE_INDICES, :2], geometry.POSE_MODEL[:, :2])
    upper, lower = warp(frame, to_face, UPPER), warp(frame, to_face, LOWER)
    brightness = max(float(upper.mean()), 1.0)
    upper, lower = (cv2.GaussianBlur(patch, (0, 0), BLUR_MM) for patch in (upper, lower))
    return np.array([
        _across(upper, UPPER, FOREHEAD, 0, 1), _across(upper, UPPER, GLABELLA, 1, 0), _across(lower, LOWER, CHIN, 1, 0),
    ]) / brightness


def as_measures(skin: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 3) :func:`fold_measures` rows as named measures beside geometry.measurements'."""
    return dict(zip(FOLD_NAMES, np.asarray(skin, dtype=np.float64).T))
