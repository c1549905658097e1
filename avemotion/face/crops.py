"""Where the frames stage cuts a clip's frames: per source frame, the affine transform from the
video's pixels into the S x S crop, made from the face stage's table (OpenFace's CSV schema, either
backend).

- ``face``: a square around the 68 landmarks, ``frames.face_margin`` of its side wider on each side,
  smoothed over time (avemotion.media.frame_crops.smooth_face_squares).
- ``aligned``: OpenFace's similarity-aligned face (FeatureExtraction ``-simalign``; its
  FaceAnalysis::AlignFace): per frame, the scale, rotation and shift that take the face's rigid
  landmarks onto a generic face's as OpenFace fits them (AlignShapesWithScale: the rotation that
  brings them closest, the scale that gives them the generic face's spread), at OpenFace's scale
  (0.7 px per mm on its 112 px default, which ``-simsize`` scales with the side), the centre of the
  rigid landmarks where the generic face has it and the generic face's 68-point centre in the middle
  (OpenFace centres its shape model's origin, which its own fit places). The eyes sit level at the
  same place in every frame whatever the head's roll, distance or position: the faces the published
  CREMA-D systems train on (HiCMAE: OpenFace ``-simalign -simsize 256 -nomask``, resized to 160). As
  OpenFace, each frame is aligned on its own (frames without a face take the transform of the
  nearest faces, interpolated between them).

The generic face is MediaPipe's canonical face model (avemotion.face.geometry's), where OpenFace
uses its shape model's mean (shipped under OpenFace's non-commercial licence): the two differ by a
few millimetres, so crops frame the face as OpenFace's do, not pixel for pixel.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from avemotion.face.columns import LANDMARKS_2D
from avemotion.face.geometry import MESH_TO_68, POSE_MIDLINE, POSE_ORIGIN, POSE_POINT_PAIRS
from avemotion.media.frame_crops import smooth_face_squares, smooth_track, square_crop_matrix

# OpenFace's alignment scale: crop pixels per millimetre of the generic face, as a fraction of the
# crop's side (-simscale 0.7 at the default -simsize 112).
ALIGNED_SCALE = 0.7 / 112

# The points OpenFace aligns on (its extract_rigid_points: the face outline beside the eyes and
# cheeks, the nose, the eye corners and lower lids; brows, lips and jaw move with expressions).
RIGID_POINTS = np.array([1, 2, 3, 4, 12, 13, 14, 15, 27, 28, 29, 31, 32, 33, 34, 35, 36, 39, 40, 41, 42, 45, 46, 47])
# Where they lie on the generic face, (x, y) in mm by face-mesh index (geometry.MESH_TO_68): the
# points of geometry's pose model, and the few it does not use, from the same canonical model
# (canonical_face_model.obj, Apache-2.0) converted as geometry converts it (x right, y down), on the
# subject's right (the image's left) and the midline; their mirror images (x negated) on the left.
_GENERIC_XY = {
    **{right: (-x, y) for right, _, x, y, _ in POSE_POINT_PAIRS},
    **{left: (x, y) for _, left, x, y, _ in POSE_POINT_PAIRS},
    **{index: (0.0, y) for index, y, _ in POSE_MIDLINE},
    # not in the pose model: the outline below the cheekbones, the nostrils, the lower lid
    **{132: (-72.7, 28.9), 58: (-67.2, 47.9), 98: (-14.1, 17.1), 97: (-6.0, 20.1), 2: (0.0, 20.9), 153: (-27.2, -23.2), 144: (-36.7, -23.6)},
}
_MIRRORED = {12: 4, 13: 3, 34: 32, 35: 31, 46: 41, 47: 40}  # iBUG points on the left as their right counterparts


def _generic_xy(point: int) -> tuple[float, float]:
    mesh = int(MESH_TO_68[point])
    if mesh in _GENERIC_XY:
        return _GENERIC_XY[mesh]
    x, y = _generic_xy(_MIRRORED[point])
    return -x, y


# relative to the centre of the generic face's 68 points, which the crop's middle shows
GENERIC_RIGID = np.array([_generic_xy(point) for point in RIGID_POINTS]) - POSE_ORIGIN[:2]


def face_landmarks(table: pd.DataFrame) -> np.ndarray:
    """(N, 68, 2) landmarks (x, y in the video's pixels) of an OpenFace-schema table; NaN rows where
    ``success`` is 0."""
    values = table[LANDMARKS_2D].to_numpy(float).reshape(len(table), 2, 68).transpose(0, 2, 1).copy()
    values[table["success"].to_numpy() == 0] = np.nan
    return values


def face_boxes(table: pd.DataFrame) -> np.ndarray:
    """Per-frame (x0, y0, x1, y1) around the 68 landmarks of an OpenFace-schema table; NaN rows
    where ``success`` is 0."""
    points = face_landmarks(table)
    return np.concatenate([points.min(axis=1), points.max(axis=1)], axis=1)


def aligned_crop_matrices(landmarks: np.ndarray, size: int, pixel_aspect: float = 1.0) -> np.ndarray:
    """(N, 2, 3) matrices taking the video's pixels into the ``size`` x ``size`` aligned crop of each
    frame (see the module docstring) from its (N, 68, 2) landmarks (NaN: no face). Fitted on the
    frame as it is shown (x times ``pixel_aspect``), where the generic face has its proportions."""
    rigid = np.asarray(landmarks, float)[:, RIGID_POINTS] * [pixel_aspect, 1.0]
    target = GENERIC_RIGID * ALIGNED_SCALE * size
    centre = rigid.mean(axis=1)
    # the similarity as a complex factor on the centred points: OpenFace's AlignShapesWithScale turns
    # them as least squares would (Kabsch) but scales them to the generic face's spread (the ratio of
    # the root mean squares), which least squares would shrink where the shapes differ (a turned head)
    points = (rigid[..., 0] - centre[:, None, 0]) + 1j * (rigid[..., 1] - centre[:, None, 1])
    goal = (target[:, 0] - target[:, 0].mean()) + 1j * (target[:, 1] - target[:, 1].mean())
    with np.errstate(invalid="ignore", divide="ignore"):
        turn = (np.conj(points) * goal).sum(axis=1)
        factor = turn / np.abs(turn) * np.sqrt((np.abs(goal) ** 2).sum() / (np.abs(points) ** 2).sum(axis=1))
    # frames without a face: the transform of the nearest faces (interpolated between them, not smoothed)
    a, b, centre_x, centre_y = smooth_track(np.stack([factor.real, factor.imag, centre[:, 0], centre[:, 1]], axis=1), window=1).T
    rotation = np.stack([np.stack([a, -b], axis=1), np.stack([b, a], axis=1)], axis=1)  # (N, 2, 2)
    shift = target.mean(axis=0) + size / 2 - np.einsum("nij,nj->ni", rotation, np.stack([centre_x, centre_y], axis=1))
    linear = rotation * [pixel_aspect, 1.0]  # applied to stored pixels: x is widened first
    return np.concatenate([linear, shift[:, :, None]], axis=2)


def crop_matrices(table: pd.DataFrame, crop: str, size: int, margin: float, pixel_aspect: float = 1.0) -> np.ndarray:
    """(N, 2, 3) per source frame: the transform the frames stage cuts a ``crop`` ("face" or
    "aligned") of ``size`` pixels with, from the clip's face table."""
    if crop == "aligned":
        return aligned_crop_matrices(face_landmarks(table), size, pixel_aspect)
    if crop == "face":
        squares = smooth_face_squares(face_boxes(table), margin, pixel_aspect=pixel_aspect)
        return np.stack([square_crop_matrix(cx, cy, side, size, pixel_aspect) for cx, cy, side in squares])
    raise ValueError(f"not a face crop: {crop!r}")
