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
# the face, the cheekbones and the nose; brows, lips and jaw move with expressions and would read as
# rotation. Each row: (mesh index on the subject's right, its mirror image on the left, |x|, y, z);
# the point on the subject's right (the image's left) sits at x = -|x|.
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
# The nose's midline, bridge to tip: the points furthest in front of the eyes, so a nod moves them
# most against the rest (with them, pitch r against OpenFace on the reference faces 0.49 -> 0.54).
POSE_MIDLINE = [(168, -32.7, -52.4), (6, -24.7, -57.9), (197, -17.3, -63.2), (195, -10.6, -67.7), (5, -3.7, -72.4), (4, 4.6, -75.9), (1, 11.3, -74.8)]
# The head position (pose_T*) is reported at the centroid of the canonical model's 68 iBUG points,
# as OpenFace reports the centre of its 68-point shape model.
POSE_ORIGIN = np.array([0.0, 11.7, -35.3])
POSE_INDICES = np.array([p[0] for p in POSE_POINT_PAIRS] + [p[1] for p in POSE_POINT_PAIRS] + [p[0] for p in POSE_MIDLINE])
POSE_MODEL = np.array(
    [(-x, y, z) for *_, x, y, z in POSE_POINT_PAIRS] + [(x, y, z) for *_, x, y, z in POSE_POINT_PAIRS] + [(0.0, y, z) for _, y, z in POSE_MIDLINE]
) - POSE_ORIGIN
_RIGHT_EYE_ROWS = [int(np.flatnonzero(POSE_INDICES == i)[0]) for i in (33, 133)]
_LEFT_EYE_ROWS = [int(np.flatnonzero(POSE_INDICES == i)[0]) for i in (362, 263)]
MODEL_EYE_DISTANCE = 63.0  # mm between the eye centres of the canonical model
DEFAULT_FOCAL = 500.0  # OpenFace's focal length guess for a 640x480 image without calibration


def camera_matrix(width: int, height: int) -> np.ndarray:
    """OpenFace's default intrinsics (its SequenceCapture::SetCameraIntrinsics): fx = fy, the mean of
    500 * width / 640 and 500 * height / 480, principal point at the centre. With the width's guess
    alone, pose_Tz read 14% far on 16:9 frames and 14% near on square ones against OpenFace's."""
    f = DEFAULT_FOCAL * (width / 640 + height / 480) / 2
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])


def head_pose(points: np.ndarray, width: int, height: int, near=None) -> tuple[np.ndarray, np.ndarray]:
    """Translation (mm) and rotation matrix of the head from the image positions (pixels) of the
    mesh points :data:`POSE_INDICES`, by cv2.solvePnP against the generic face.

    ``near``, a (translation, rotation) close to the answer (the frame before's), is where the
    iterative solver starts; without it, it starts from a frontal face at the distance its eye
    spacing implies. From the frame before it needs about half the time (0.09 against 0.15 ms a
    frame) and lands within 2e-5 rad of the same pose.
    """
    K = camera_matrix(width, height)
    image_points = np.ascontiguousarray(points[:, :2], dtype=np.float64)
    if near is None:
        right_eye, left_eye = image_points[_RIGHT_EYE_ROWS].mean(0), image_points[_LEFT_EYE_ROWS].mean(0)
        z = K[0, 0] * MODEL_EYE_DISTANCE / max(float(np.linalg.norm(left_eye - right_eye)), 1e-6)
        centre = image_points.mean(0)
        rvec, tvec = np.zeros(3), np.array([(centre[0] - K[0, 2]) * z / K[0, 0], (centre[1] - K[1, 2]) * z / K[1, 1], z])
    else:
        rvec, tvec = cv2.Rodrigues(near[1])[0].reshape(3), np.array(near[0], dtype=np.float64)
    _, rvec, tvec = cv2.solvePnP(POSE_MODEL, image_points, K, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE)
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


# --- face measurements and action units ---------------------------------------------------------

# The AU estimates are linear in one or two measures, each chosen for the muscle the AU names (FACS),
# and are calibrated against OpenFace 2.0.6 in static mode (-au_static) on real faces
# (tests/data/openface_reference/, fitted and checked by benchmarks/face_agreement.py): distances
# between mesh points here, or skin folds read from the image (avemotion.face.folds). Distances are
# taken in 3D between mesh points and divided by the 3D distance between the eye centres (IOD), so
# head rotation and face size leave them unchanged; the lid opening comes from the iris model's eye
# contour, which follows blinks far better than the face mesh's lids, measured in iris diameters
# (:func:`measurements`). Where a muscle moves the skin
# up or down the face (the cheeks, the lower lip, the jaw), the measure is that height in the face's
# own frame (:func:`head_frame`) instead: a 3D distance mixes in the sideways motion of a smile.
MEASURE_PAIRS = {
    # inner brow ends to inner eye corners: no AU model reads it (AU01 reads brow_outer); kept so that
    # the reason stays checked (tests/test_face_agreement.py)
    "brow_inner": [(107, 133), (66, 133), (336, 362), (296, 362)],
    "brow_outer": [(70, 33), (46, 33), (300, 263), (276, 263)],  # outer brows to outer eye corners
    "nose_length": [(2, 168)],  # nose base to the bridge between the eyes
    "upper_lip": [(2, 0)],  # nose base to the top of the upper lip
    "mouth_width": [(61, 291)],
    "lower_lip": [(17, 2)],  # bottom of the lower lip to the nose base
}
# Heights in the face's frame, in IOD: (upper points, lower points), the lower points' mean height
# below the upper points' mean.
HEIGHTS = {
    "cheek_raise": ([33, 133, 362, 263], [117, 346, 118, 347]),  # cheeks below the eye corners
    "lip_gap": ([13], [14]),  # between the lips' inner edges, mid-mouth
    "jaw": ([2], [152]),  # chin below the nose base
}
# the points that heights read, and the eye corners for the face's IOD
_HEIGHT_POINTS = sorted({i for pair in HEIGHTS.values() for side in pair for i in side} | {33, 133, 362, 263})
# Iris-model eye contour: points 0 and 8 are the corners, 3-5 and 10-12 the middle thirds of the
# lower and upper lid.
# Iris: the centre, then four points round its edge (1 and 3, 2 and 4 opposite).
LOWER_LID_MIDDLE, UPPER_LID_MIDDLE = [3, 4, 5], [10, 11, 12]


def head_frame(mesh: np.ndarray, points=slice(None)) -> np.ndarray:
    """(N, 468, 3) meshes moved, turned and scaled onto the canonical face (:data:`POSE_MODEL`, mm,
    camera frame of a face looking straight into the camera) by the similarity that best fits their
    expression-free points :data:`POSE_INDICES` (Umeyama's least squares), so that y runs down the
    face whatever the head's rotation. Only the mesh ``points`` are returned (all by default)."""
    mesh = np.asarray(mesh, dtype=np.float64)
    anchors = mesh[:, POSE_INDICES]
    centre = anchors.mean(1, keepdims=True)
    model_centre = POSE_MODEL.mean(0)
    covariance = np.einsum("nki,kj->nij", anchors - centre, POSE_MODEL - model_centre)
    u, s, vt = np.linalg.svd(covariance)
    reflect = np.sign(np.linalg.det(u @ vt))  # a proper rotation even where the best fit would mirror
    u[:, :, 2] *= reflect[:, None]
    s[:, 2] *= reflect
    scale = s.sum(1) / np.maximum(((anchors - centre) ** 2).sum((1, 2)), 1e-12)
    return scale[:, None, None] * np.einsum("nki,nij->nkj", mesh[:, points] - centre, u @ vt) + model_centre


def measurements(mesh: np.ndarray, eye_contours: np.ndarray, irises: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame measures the AU estimates use: :data:`MEASURE_PAIRS` distances and :data:`HEIGHTS`
    in IOD, and ``eye_opening``, the lids' distance in iris diameters, both eyes averaged. The iris is
    the ruler since it is about 11.7 mm across in every adult, while the eye's width differs from one
    person to the next (against OpenFace held out, in eye widths: AU45 presence 74 %, AU05 r 0.05).

    ``mesh`` (N, 468, 3), ``eye_contours`` (N, 2, 71, 3) and ``irises`` (N, 2, 5, 3) from the iris
    model, all in pixels.
    """
    mesh = np.asarray(mesh, dtype=np.float64)
    right_eye = (mesh[:, 33] + mesh[:, 133]) / 2
    left_eye = (mesh[:, 362] + mesh[:, 263]) / 2
    iod = np.maximum(np.linalg.norm(left_eye - right_eye, axis=1), 1e-6)
    out = {}
    for name, pairs in MEASURE_PAIRS.items():
        first, second = (np.array(side) for side in zip(*pairs))
        out[name] = np.linalg.norm(mesh[:, first] - mesh[:, second], axis=-1).mean(1) / iod
    face = dict(zip(_HEIGHT_POINTS, np.moveaxis(head_frame(mesh, _HEIGHT_POINTS), 1, 0)))
    face_iod = np.linalg.norm((face[362] + face[263] - face[33] - face[133]) / 2, axis=1)
    for name, (upper, lower) in HEIGHTS.items():
        height = np.mean([face[i][:, 1] for i in lower], axis=0) - np.mean([face[i][:, 1] for i in upper], axis=0)
        out[name] = height / np.maximum(face_iod, 1e-6)
    # an iris seen at an angle shrinks along one axis only (a turned head's sideways): the longer of
    # its two diameters is its size
    edge = irises[:, :, 1:, :2]
    diameter = np.maximum(np.linalg.norm(edge[:, :, 0] - edge[:, :, 2], axis=-1), np.linalg.norm(edge[:, :, 1] - edge[:, :, 3], axis=-1))
    lids = eye_contours[:, :, LOWER_LID_MIDDLE, :2].mean(2) - eye_contours[:, :, UPPER_LID_MIDDLE, :2].mean(2)
    out["eye_opening"] = (np.linalg.norm(lids, axis=-1) / np.maximum(diameter, 1e-6)).mean(1)
    return out


# Per AU, the measures it is linear in and the sign each weight must have (the direction the muscle
# moves the measure). A fit may shrink a weight to zero but not turn it round: a reversed sign would
# copy what these few reference faces happen to do together, not the muscle. The ``*_folds`` are
# read from the image (avemotion.face.folds), the others from the landmarks.
AU_MEASURES = {
    # inner brow raiser: the brows rise, the forehead folds. The brows' height is read at their outer
    # part: the inner ends are also what the brow lowerer (AU04) pulls down and together, and given
    # both, the fit puts weight 0 on the inner ends with any one person left out
    "01": {"brow_outer": +1, "forehead_folds": +1},
    "02": {"brow_outer": +1},  # outer brow raiser (forehead folds do not help it held out)
    # brow lowerer: the vertical furrows between the brows. The brows' gap and height differ between
    # people more than a frown moves them: with them in the model, held-out r falls below zero.
    "04": {"glabella_folds": +1},
    "05": {"eye_opening": +1},  # upper lid raiser
    "06": {"cheek_raise": -1},  # cheek raiser: the cheeks rise towards the eyes
    "09": {"nose_length": -1},  # nose wrinkler: the nose shortens
    "10": {"upper_lip": -1},  # upper lip raiser
    "12": {"mouth_width": +1},  # lip corner puller: the corners move up and out
    "17": {"lower_lip": -1, "chin_folds": +1},  # chin raiser: pushes the lower lip up, wrinkles the chin
    "25": {"lip_gap": +1},  # lips part
    "26": {"jaw": +1},  # jaw drop
    "45": {"eye_opening": -1},  # blink
}
# AU_MODELS, fitted by `benchmarks/face_agreement.py --fit`: per AU the weights of its measures (in
# AU_MEASURES order), the bias, and the intensity from which OpenFace's AU*_c most often reads 1.
AU_MODELS: dict[str, tuple[tuple[float, ...], float, float]] = {
    "01": ((20.636, 10.668,), -5.7291, 0.20),
    "02": ((21.468,), -5.0683, 0.05),
    "04": ((11.398,), -1.4265, 0.50),
    "05": ((5.9619,), -3.9883, 1.05),
    "06": ((-22.096,), 6.6698, 1.00),
    "09": ((-12.477,), 10.344, 0.55),
    "10": ((-28.251,), 7.2164, 1.10),
    "12": ((11.336,), -9.1273, 0.85),
    "17": ((-1.8156, 2.2325,), 1.1337, 0.50),
    "25": ((10.849,), -0.15808, 0.70),
    "26": ((3.2421,), -2.7432, 0.25),
    "45": ((-10.677,), 8.1412, 0.90),
}


def action_units(measures: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """AU*_r intensities (0..5) and AU*_c presence (0/1) for every AU in :data:`AU_MODELS`."""
    out = {}
    for au, (weights, bias, threshold) in AU_MODELS.items():
        linear = bias + sum(w * measures[name] for w, name in zip(weights, AU_MEASURES[au]))
        intensity = np.clip(linear, 0.0, 5.0)
        out[f"AU{au}_r"] = intensity
        out[f"AU{au}_c"] = (intensity >= threshold).astype(np.int64)
    return out


# --- gaze ----------------------------------------------------------------------------------------

EYEBALL_RADIUS = 12.0  # mm, adult average
EYE_HALF_WIDTH = 15.0  # mm, half the corner-to-corner width of an open eye
# The iris centre of an eye looking straight ahead sits above the line between the eye's corners, so
# the raw across-offset reads a camera-facing gaze as looking up. This shift of the vertical sine
# puts ours where OpenFace 2.0.6 reads it: the median over the six reference people of the mean
# difference (benchmarks/face_agreement.py prints gaze_angle_y_person_median_diff).
IRIS_RISE = 0.345


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
    sin_y = np.clip(np.einsum("ned,ned->ne", offset, across) * scale + IRIS_RISE, -1, 1)
    cos_x, cos_y = np.sqrt(1 - sin_x**2), np.sqrt(1 - sin_y**2)
    direction = np.stack([sin_x * cos_y, sin_y, -cos_x * cos_y], axis=-1).mean(1)  # head frame, both eyes
    gaze = np.einsum("nij,nj->ni", rotations, direction)
    return np.stack([np.arctan2(gaze[:, 0], -gaze[:, 2]), np.arctan2(gaze[:, 1], -gaze[:, 2])], axis=1)
