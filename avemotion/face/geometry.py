"""Face geometry from the 468-point face mesh in OpenFace 2's conventions: the 68-point iBUG layout,
head pose, gaze angles and facial action unit (AU) estimates.

Frames: OpenCV's camera frame, as OpenFace uses it: x to the right of the image, y down, z away from
the camera, in millimetres. A face looking straight into the camera has rotation zero.

- ``pose_Rx, pose_Ry, pose_Rz`` are the Euler angles of the head rotation R = Rx @ Ry @ Rz in the
  camera frame (pitch, yaw, roll), OpenFace's convention. Rx > 0 pitches the face down (the nose
  moves down in the image), Ry > 0 turns it towards the image's left (the subject's right), Rz > 0
  rolls it clockwise on screen.
- ``gaze_angle_x, gaze_angle_y`` are OpenFace's atan2(g_x, -g_z) and atan2(g_y, -g_z) of the mean
  gaze direction g of both eyes in the camera frame: x > 0 looks towards the image's right (the
  subject's left), y > 0 looks down.
- Being camera-frame angles, both include the direction in which the camera sees the head: a face
  drawn frontal but off the image centre (as the demo clips draw it) reads as slightly turned.
  :func:`view_relative_angles` removes that part.
"""

from __future__ import annotations

import cv2
import numpy as np

# --- 68-point layout -----------------------------------------------------------------------------

# iBUG/dlib 68-point scheme (OpenFace's x_0..x_67, y_0..y_67) as face-mesh indices. "Right" is the
# subject's right, on the image's left.
MESH_TO_68 = np.array([
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,  # 0-16 jaw line, right ear to left ear
    70, 63, 105, 66, 107,  # 17-21 right brow, outer to inner
    336, 296, 334, 293, 300,  # 22-26 left brow, inner to outer
    168, 197, 5, 4,  # 27-30 nose bridge, top to tip
    98, 97, 2, 326, 327,  # 31-35 nostrils and nose base, right to left
    33, 160, 158, 133, 153, 144,  # 36-41 right eye: outer corner, upper lid, inner corner, lower lid
    362, 385, 387, 263, 373, 380,  # 42-47 left eye: inner corner, upper lid, outer corner, lower lid
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # 48-59 outer lip line from the right corner
    78, 82, 13, 312, 308, 317, 14, 87,  # 60-67 inner lip line from the right corner
])

# --- head pose -----------------------------------------------------------------------------------

# Generic adult face in mm: vertices of MediaPipe's canonical face model
# (mediapipe/modules/face_geometry/data/canonical_face_model.obj, metric, Apache-2.0), converted from
# centimetres with y up and z towards the viewer into the camera frame above (x 10, y -10, z -10).
# Only points that stay put when the expression changes are used: eye corners, temples, the sides of
# the face and the cheekbones; brows, lips and jaw move with expressions and would read as rotation.
# Each row: (mesh index on the subject's right, its mirror image on the left, |x|, y, z); the point
# on the subject's right (the image's left) sits at x = -|x|.
POSE_POINT_PAIRS = [
    (33, 263, 44.5, -26.6, -31.7),  # outer eye corners
    (133, 362, 18.6, -25.9, -37.6),  # inner eye corners
    (54, 284, 62.8, -66.2, -14.3),  # temples
    (21, 251, 70.9, -54.3, -1.0),
    (103, 332, 51.3, -74.9, -26.6),
    (162, 389, 75.6, -41.1, 9.9),  # face outline beside the eyes
    (127, 356, 77.4, -23.6, 20.1),
    (234, 454, 76.6, -6.7, 24.4),
    (93, 323, 75.4, 10.5, 24.3),
    (116, 345, 64.7, -9.4, -16.9),  # cheekbones
    (117, 346, 52.6, -9.5, -29.7),
    (123, 352, 63.4, 5.3, -18.8),
    (50, 280, 47.7, 7.0, -35.3),
    (36, 266, 28.4, 7.2, -44.3),
    (205, 425, 38.3, 15.4, -41.4),
]
# The head position (pose_T*) is reported at the centroid of the canonical model's 68 iBUG points,
# as OpenFace reports the centre of its 68-point shape model.
POSE_ORIGIN = np.array([0.0, 11.7, -35.3])
POSE_INDICES = np.array([p[0] for p in POSE_POINT_PAIRS] + [p[1] for p in POSE_POINT_PAIRS])
POSE_MODEL = np.array([(-x, y, z) for *_, x, y, z in POSE_POINT_PAIRS] + [(x, y, z) for *_, x, y, z in POSE_POINT_PAIRS]) - POSE_ORIGIN
_RIGHT_EYE_ROWS = [int(np.flatnonzero(POSE_INDICES == i)[0]) for i in (33, 133)]
_LEFT_EYE_ROWS = [int(np.flatnonzero(POSE_INDICES == i)[0]) for i in (362, 263)]
MODEL_EYE_DISTANCE = 63.0  # mm between the eye centres of the canonical model
DEFAULT_FOCAL = 500.0  # OpenFace's focal length guess for a 640-pixel-wide image without calibration


def camera_matrix(width: int, height: int) -> np.ndarray:
    """OpenFace's default intrinsics: fx = fy = 500 * width / 640, principal point at the centre."""
    f = DEFAULT_FOCAL * width / 640
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])


def head_pose(points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Translation (mm) and rotation matrix of the head from the image positions (pixels) of the
    mesh points :data:`POSE_INDICES`, by cv2.solvePnP against the generic face."""
    K = camera_matrix(width, height)
    image_points = np.ascontiguousarray(points[:, :2], dtype=np.float64)
    # start from a frontal face at the distance its eye spacing implies (the iterative solver needs a guess)
    right_eye, left_eye = image_points[_RIGHT_EYE_ROWS].mean(0), image_points[_LEFT_EYE_ROWS].mean(0)
    z = K[0, 0] * MODEL_EYE_DISTANCE / max(float(np.linalg.norm(left_eye - right_eye)), 1e-6)
    centre = image_points.mean(0)
    guess = np.array([(centre[0] - K[0, 2]) * z / K[0, 0], (centre[1] - K[1, 2]) * z / K[1, 1], z])
    _, rvec, tvec = cv2.solvePnP(POSE_MODEL, image_points, K, None, np.zeros(3), guess, True, cv2.SOLVEPNP_ITERATIVE)
    return tvec.reshape(3), cv2.Rodrigues(rvec)[0]


def euler_angles(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices to (..., 3) angles (Rx, Ry, Rz) with R = Rx @ Ry @ Rz (OpenFace)."""
    r = rotation
    return np.stack([
        np.arctan2(-r[..., 1, 2], r[..., 2, 2]),
        np.arcsin(np.clip(r[..., 0, 2], -1.0, 1.0)),
        np.arctan2(-r[..., 0, 1], r[..., 0, 0]),
    ], axis=-1)


def rotation_matrices(angles: np.ndarray) -> np.ndarray:
    """(..., 3) angles (Rx, Ry, Rz) to (..., 3, 3) matrices Rx @ Ry @ Rz."""
    cx, cy, cz = np.cos(angles).T
    sx, sy, sz = np.sin(angles).T
    one, zero = np.ones_like(cx), np.zeros_like(cx)
    rx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(-1, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    rz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return (rx @ ry @ rz).reshape(np.shape(angles)[:-1] + (3, 3))


def view_relative_angles(angles: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Head rotation relative to the ray from the camera to the head instead of the optical axis.

    ``angles`` (N, 3) are pose_Rx..Rz, ``translation`` (N, 3) pose_Tx..Tz. This is how turned the
    face looks, whatever its place in the image: the convention of orthographic drawings such as the
    demo clips, where a frontal face off the image centre is still drawn frontal.
    """
    translation = np.asarray(translation, float)
    ray = translation / np.linalg.norm(translation, axis=1, keepdims=True)
    side = np.cross(np.array([0.0, 1.0, 0.0]), ray)
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    view = np.stack([side, np.cross(ray, side), ray], axis=2)  # columns: the view's x, y, z axes
    return euler_angles(np.transpose(view, (0, 2, 1)) @ rotation_matrices(np.asarray(angles, float)))


# --- face-aligned measurements -------------------------------------------------------------------


def face_frame(mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates of every mesh point in a frame fixed to the face, in units of the distance
    between the eye centres (inter-ocular distance, IOD).

    Origin midway between the eyes, x along the line through the eye centres (towards the image's
    right), y perpendicular to it, down the face, so head roll does not change a measure. The IOD is
    taken in 3D (the mesh's z has the scale of its x), so turning the head does not shrink it.
    ``mesh`` is (N, 468, 3); returns x, y of shape (N, 468), the IOD in pixels (N,) and the unit
    vector of the eye line in the image (N, 2).
    """
    right_eye = (mesh[:, 33] + mesh[:, 133]) / 2
    left_eye = (mesh[:, 362] + mesh[:, 263]) / 2
    iod = np.maximum(np.linalg.norm(left_eye - right_eye, axis=1), 1e-6)
    axis = (left_eye - right_eye)[:, :2]
    axis /= np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-9)
    rel = mesh[..., :2] - ((right_eye + left_eye) / 2)[:, None, :2]
    x = np.einsum("nkd,nd->nk", rel, axis) / iod[:, None]
    y = (rel[..., 1] * axis[:, None, 0] - rel[..., 0] * axis[:, None, 1]) / iod[:, None]
    return x, y, iod, axis


# Mesh points of the brows: inner and outer halves of the upper and lower brow contours, both sides.
INNER_BROW = [107, 66, 55, 65, 336, 296, 285, 295]
OUTER_BROW = [70, 63, 46, 53, 300, 293, 276, 283]
# Iris-model eye contour: points 0-8 run along the lower lid from one corner to the other, 9-15 along
# the upper lid; 3-5 and 10-12 are the middle thirds of the lower and upper lid.
LOWER_LID_MIDDLE, UPPER_LID_MIDDLE = [3, 4, 5], [10, 11, 12]


def measurements(mesh: np.ndarray, eye_contours: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame distances the AU formulas use, in IOD (see :func:`face_frame`).

    ``mesh`` (N, 468, 3), ``eye_contours`` (N, 2, 71, 3) from the iris model, all in pixels.
    """
    x, y, _, axis = face_frame(mesh)
    corners = eye_contours[:, :, [0, 8], :2]
    eye_width = np.linalg.norm(corners[:, :, 1] - corners[:, :, 0], axis=-1)
    down = np.stack([-axis[:, 1], axis[:, 0]], axis=1)  # lid distances are taken across the face
    lids = eye_contours[:, :, LOWER_LID_MIDDLE, :2].mean(2) - eye_contours[:, :, UPPER_LID_MIDDLE, :2].mean(2)
    opening = np.einsum("ned,nd->ne", lids, down) / np.maximum(eye_width, 1e-6)
    return {
        "brow_inner": -y[:, INNER_BROW].mean(1),  # brow height above the eye line
        "brow_outer": -y[:, OUTER_BROW].mean(1),
        "brow_gap": x[:, [336, 285]].mean(1) - x[:, [107, 55]].mean(1),  # between the inner brow ends
        # mouth corners above the middle of the upper lip's inner edge, plus a share of the mouth's widening
        "lip_corners": y[:, 13] - y[:, [61, 291]].mean(1) + LIP_WIDTH_SHARE * (x[:, 291] - x[:, 61] - NEUTRAL["mouth_width"]),
        "lip_gap": y[:, 14] - y[:, 13],  # between the inner edges of the lips, mid-mouth
        "eye_opening": opening.mean(1),  # lid distance over corner distance, both eyes averaged
    }


# --- action units --------------------------------------------------------------------------------

# Neutral face values of the measures (IOD units; lid opening as a fraction of the eye's width):
# what the mesh gives for neutral demo faces, close to MediaPipe's canonical face (in brackets),
# whose lips are slightly parted and whose upper lip rises above the mouth corners.
NEUTRAL = {
    "brow_inner": 0.34,  # (0.33)
    "brow_outer": 0.28,  # (0.27)
    "brow_gap": 0.43,  # (0.42)
    "mouth_width": 0.85,  # (0.78)
    "lip_corners": 0.02,  # (-0.08)
    "eye_opening": 0.34,
}
# Smiles also widen the mouth. Opening the mouth widens it a little too but lowers the corners; at
# this share of the widening the two cancel, so lip_corners follows smiles, not speech.
LIP_WIDTH_SHARE = 0.3

# intensity = clip(signed change from the neutral value / unit, 0, 5): the units are sized so that the
# demo actors' strongest expressions reach intensities of about 3 to 4.
AU_FORMULAS = {
    # AU01 inner brow raiser: inner brow height above its neutral height
    "01": lambda m: (m["brow_inner"] - NEUTRAL["brow_inner"]) / 0.025,
    # AU02 outer brow raiser: outer brow height above its neutral height
    "02": lambda m: (m["brow_outer"] - NEUTRAL["brow_outer"]) / 0.02,
    # AU04 brow lowerer: inner brows lowered below neutral plus drawn together
    "04": lambda m: ((NEUTRAL["brow_inner"] - m["brow_inner"]) + (NEUTRAL["brow_gap"] - m["brow_gap"])) / 0.025,
    # AU05 upper lid raiser: lids opened wider than neutral, beyond a 0.02 margin for lid noise
    "05": lambda m: (m["eye_opening"] - NEUTRAL["eye_opening"] - 0.02) / 0.03,
    # AU12 lip corner puller: mouth corners raised (and mouth widened) beyond neutral
    "12": lambda m: (m["lip_corners"] - NEUTRAL["lip_corners"]) / 0.03,
    # AU15 lip corner depressor: mouth corners lowered below neutral
    "15": lambda m: (NEUTRAL["lip_corners"] - m["lip_corners"]) / 0.03,
    # AU25 lips part: inner lip gap beyond 0.02 (closed lips)
    "25": lambda m: (m["lip_gap"] - 0.02) / 0.03,
    # AU26 jaw drop: inner lip gap beyond 0.08, a mouth open wider than parted lips
    "26": lambda m: (m["lip_gap"] - 0.08) / 0.03,
    # AU45 blink: lid opening below 0.26 of the eye width (neutral 0.34, a shut eye 0.2 or less)
    "45": lambda m: (0.26 - m["eye_opening"]) / 0.02,
}
PRESENCE_THRESHOLD = 1.0  # an AU counts as present (AU*_c = 1) from intensity 1, a trace on the 0-5 scale


def action_units(measures: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """AU*_r intensities (0..5) and AU*_c presence (0/1) for every AU in :data:`AU_FORMULAS`."""
    out = {}
    for au, formula in AU_FORMULAS.items():
        intensity = np.clip(formula(measures), 0.0, 5.0)
        out[f"AU{au}_r"] = intensity
        out[f"AU{au}_c"] = (intensity >= PRESENCE_THRESHOLD).astype(np.int64)
    return out


# --- gaze ----------------------------------------------------------------------------------------

EYEBALL_RADIUS = 12.0  # mm, adult average
EYE_HALF_WIDTH = 15.0  # mm, half the corner-to-corner width of an open eye


def gaze_angles(eye_contours: np.ndarray, irises: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """(N, 2) gaze_angle_x, gaze_angle_y from the iris centres within the eye contours.

    In each eye the iris centre's offset from the midpoint between the corners, along and across the
    corner line, in half eye widths, times half eye width over eyeball radius (15 / 12 mm) is the
    sine of the eye's turn: an iris halfway to a corner has turned about 39 degrees. The two eyes' directions are
    averaged in the head's frame, turned by the head rotation into the camera frame, and reported as
    OpenFace does: atan2(g_x, -g_z), atan2(g_y, -g_z).
    ``eye_contours`` (N, 2, 71, 3), ``irises`` (N, 2, 5, 3) in pixels, ``rotations`` (N, 3, 3).
    """
    start, end = eye_contours[:, :, 0, :2], eye_contours[:, :, 8, :2]
    # the contour runs outer -> inner corner on one eye and inner -> outer on the other: order by x
    flip = start[..., 0] > end[..., 0]
    start, end = np.where(flip[..., None], end, start), np.where(flip[..., None], start, end)
    half = np.maximum(np.linalg.norm(end - start, axis=-1), 1e-6) / 2
    along = (end - start) / (2 * half[..., None])
    across = np.stack([-along[..., 1], along[..., 0]], axis=-1)
    offset = irises[:, :, 0, :2] - (start + end) / 2
    scale = EYE_HALF_WIDTH / EYEBALL_RADIUS / half
    sin_x = np.clip(np.einsum("ned,ned->ne", offset, along) * scale, -1, 1)
    sin_y = np.clip(np.einsum("ned,ned->ne", offset, across) * scale, -1, 1)
    cos_x, cos_y = np.sqrt(1 - sin_x**2), np.sqrt(1 - sin_y**2)
    direction = np.stack([sin_x * cos_y, sin_y, -cos_x * cos_y], axis=-1).mean(1)  # head frame, both eyes
    gaze = np.einsum("nij,nj->ni", rotations, direction)
    return np.stack([np.arctan2(gaze[:, 0], -gaze[:, 2]), np.arctan2(gaze[:, 1], -gaze[:, 2])], axis=1)
