"""Face geometry on synthetic faces (avemotion.face.geometry): the head pose of a projected canonical
face, OpenFace's angle conventions, the face's own frame, the gaze of irises placed in drawn eyes and
the AU read-out, each checked against numbers worked out independently."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avemotion.face import geometry


def axis_turn(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    """The rotation by the given angle (radians) about one camera axis, from OpenCV's Rodrigues."""
    return cv2.Rodrigues(np.array([x, y, z], dtype=np.float64))[0]


def projected(rotation: np.ndarray, translation, width: int, height: int) -> np.ndarray:
    """The pixels of the pose model's points seen by OpenFace's default camera with the head at
    ``translation`` (mm) turned by ``rotation``."""
    camera = rotation @ geometry.POSE_MODEL.T + np.asarray(translation, float)[:, None]
    f = 250.0 * (width / 640 + height / 480)
    return np.stack([f * camera[0] / camera[2] + width / 2, f * camera[1] / camera[2] + height / 2], axis=1)


def test_the_default_camera_is_openfaces_guess_for_the_frames_size():
    """fx = fy = the mean of 500 px per 640 px of width and 500 px per 480 px of height (OpenFace's
    SequenceCapture), the principal point at the image's centre: 875 px for 1280x720, not 1000."""
    np.testing.assert_allclose(geometry.camera_matrix(1280, 720), [[875, 0, 640], [0, 875, 360], [0, 0, 1]])
    np.testing.assert_allclose(geometry.camera_matrix(640, 480), [[500, 0, 320], [0, 500, 240], [0, 0, 1]])
    np.testing.assert_allclose(geometry.camera_matrix(320, 480), [[375, 0, 160], [0, 375, 240], [0, 0, 1]])


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (480, 854)])
@pytest.mark.parametrize("angles, translation", [((0.0, 0.0, 0.0), (0.0, 0.0, 600.0)), ((0.25, -0.35, 0.15), (-80.0, 40.0, 700.0)), ((-0.2, 0.3, -0.3), (120.0, -60.0, 450.0))])
def test_head_pose_recovers_the_pose_a_face_was_projected_with(size, angles, translation):
    """The generic face projected at a known place and rotation, off the image's centre and on
    frames of any shape: the solve gives that translation (mm) and rotation back."""
    rotation = geometry.rotation_matrices(np.array(angles))
    found_t, found_r = geometry.head_pose(projected(rotation, translation, *size), *size)
    np.testing.assert_allclose(found_t, translation, atol=1e-3)
    np.testing.assert_allclose(geometry.euler_angles(found_r), angles, atol=1e-6)


def test_rotations_compose_as_openface_does_pitch_then_yaw_then_roll():
    """R = Rx @ Ry @ Rz of the three turns about the camera's axes, and euler_angles takes it back."""
    angles = np.array([[0.3, -0.5, 0.7], [-1.1, 0.2, -2.5], [0.0, 1.2, 0.0]])
    expected = np.stack([axis_turn(x=a) @ axis_turn(y=b) @ axis_turn(z=c) for a, b, c in angles])
    np.testing.assert_allclose(geometry.rotation_matrices(angles), expected, atol=1e-12)
    np.testing.assert_allclose(geometry.euler_angles(expected), angles, atol=1e-12)


def test_the_signs_of_pitch_yaw_and_roll_are_openfaces():
    """Rx > 0 moves the nose tip down in the image, Ry > 0 towards the image's left, and Rz > 0
    turns the face clockwise on screen (the right eye's outer corner moves up)."""
    nose, eye = list(geometry.POSE_INDICES).index(4), list(geometry.POSE_INDICES).index(33)
    frontal = projected(np.eye(3), (0, 0, 600), 640, 480)
    for angles, point, axis, sign in (((0.2, 0, 0), nose, 1, +1), ((0, 0.2, 0), nose, 0, -1), ((0, 0, 0.2), eye, 1, -1)):
        rotation = geometry.rotation_matrices(np.array(angles))
        turned = projected(rotation, (0, 0, 600), 640, 480)
        assert np.sign(turned[point, axis] - frontal[point, axis]) == sign, angles
        assert geometry.euler_angles(geometry.head_pose(turned, 640, 480)[1]) == pytest.approx(angles, abs=1e-6)


def test_a_frontal_face_off_the_images_centre_looks_frontal_relative_to_its_view():
    """A head that faces the camera from the image's right or top has a camera-frame yaw or pitch
    (the direction in which the camera sees it); relative to the view it is frontal, and a turn of
    its own stays."""
    translation = np.array([[200.0, 0.0, 500.0], [0.0, -150.0, 600.0], [0.0, 0.0, 500.0]])
    facing = np.array([[0.0, np.arctan2(200, 500), 0.0], [np.arctan2(150, 600), 0.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(geometry.view_relative_angles(facing, translation), 0.0, atol=1e-12)
    turned = facing + [0.0, 0.3, 0.0]
    np.testing.assert_allclose(geometry.view_relative_angles(turned[[0, 2]], translation[[0, 2]]), [[0.0, 0.3, 0.0]] * 2, atol=1e-12)


def test_head_frame_puts_a_moved_turned_and_scaled_face_back_on_the_canonical_face():
    """The face's own frame is the canonical face's, in its millimetres and at its place."""
    face = np.zeros((468, 3))
    face[geometry.POSE_INDICES] = geometry.POSE_MODEL
    seen = 2.5 * face @ geometry.rotation_matrices(np.array([0.3, -0.4, 0.5])).T + [320.0, 240.0, 50.0]
    back = geometry.head_frame(seen[None], geometry.POSE_INDICES)[0]
    np.testing.assert_allclose(back, geometry.POSE_MODEL, atol=1e-9)


def test_head_frame_turns_a_mirrored_face_without_mirroring_it():
    """A mirror image of the face (a flipped video) is best fitted by a reflection; the face's frame
    is still reached by a proper rotation, so left and right are not swapped."""
    face = np.zeros((468, 3))
    face[geometry.POSE_INDICES] = geometry.POSE_MODEL * [-1.0, 1.0, 1.0] + np.random.default_rng(0).normal(0, 0.5, geometry.POSE_MODEL.shape)
    back = geometry.head_frame(face[None], geometry.POSE_INDICES)[0]
    seen = face[geometry.POSE_INDICES]
    linear = np.linalg.lstsq(np.c_[seen, np.ones(len(seen))], back, rcond=None)[0][:3]
    assert np.linalg.det(linear) > 0


def eyes(iris_offsets, width: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Two level eyes ``width`` px wide (one contour from the image's left corner, the other from its
    right, as the iris model gives them) and their irises at (x, y) px from each eye's middle."""
    contours, irises = np.zeros((1, 2, 71, 3)), np.zeros((1, 2, 5, 3))
    for e, (middle, (dx, dy)) in enumerate(zip((200.0, 300.0), iris_offsets)):
        corners = [middle - width / 2, middle + width / 2][:: 1 if e == 0 else -1]
        contours[0, e, 0, :2], contours[0, e, 8, :2] = (corners[0], 150.0), (corners[1], 150.0)
        irises[0, e, 0, :2] = (middle + dx, 150.0 + dy)
    return contours, irises


def gaze(iris_offsets, rotation=np.eye(3)) -> np.ndarray:
    return geometry.gaze_angles(*eyes(iris_offsets), rotation[None])[0]


def test_an_iris_halfway_to_the_corner_has_turned_about_39_degrees():
    """Towards the image's right reads as gaze_angle_x > 0, towards its left < 0."""
    assert np.degrees(gaze([(7.5, 0.0), (7.5, 0.0)])[0]) == pytest.approx(np.degrees(np.arcsin(0.5 * 15 / 12)), abs=1e-9)
    assert np.degrees(gaze([(-7.5, 0.0), (-7.5, 0.0)])[0]) == pytest.approx(-38.68, abs=0.01)


def test_an_iris_lower_in_the_eye_looks_down():
    assert gaze([(0.0, 3.0), (0.0, 3.0)])[1] > gaze([(0.0, 0.0), (0.0, 0.0)])[1] + 0.2
    assert abs(gaze([(0.0, 3.0), (0.0, 3.0)])[1]) < np.pi / 2  # still looking at the camera's side


def test_both_eyes_count_towards_the_gaze():
    """Eyes turned towards each other (looking at something near) read as looking straight ahead."""
    assert gaze([(7.5, 0.0), (-7.5, 0.0)])[0] == pytest.approx(0.0, abs=1e-12)
    assert 0.1 < gaze([(7.5, 0.0), (0.0, 0.0)])[0] < gaze([(7.5, 0.0), (7.5, 0.0)])[0] - 0.1


def test_eyes_held_still_in_a_turned_head_look_where_the_head_turns():
    """A head turned towards the image's left (pose_Ry > 0) with its eyes centred looks to the
    image's left by as much."""
    assert gaze([(0.0, 0.0), (0.0, 0.0)], geometry.rotation_matrices(np.array([0.0, 0.3, 0.0])))[0] == pytest.approx(-0.3, abs=1e-9)


def test_distances_are_in_eye_spacings_and_averaged_over_their_pairs():
    """Mouth corners 0.8 eye spacings apart read 0.8 however large the face; the outer brows, 12 and
    18 mm above the outer eye corners on each side, read their mean height."""
    face = np.zeros((468, 3))
    face[geometry.POSE_INDICES] = geometry.POSE_MODEL
    eye_centres = (face[[33, 133]].mean(0), face[[362, 263]].mean(0))
    spacing = np.linalg.norm(eye_centres[1] - eye_centres[0])
    face[61], face[291] = [-0.4 * spacing, 30.0, -40.0], [0.4 * spacing, 30.0, -40.0]
    for brow, corner, rise in ((70, 33, 12.0), (46, 33, 18.0), (300, 263, 12.0), (276, 263, 18.0)):
        face[brow] = face[corner] - [0.0, rise, 0.0]
    contours, irises = np.zeros((1, 2, 71, 3)), np.zeros((1, 2, 5, 3))
    for scale in (1.0, 3.0):
        measured = geometry.measurements(scale * face[None], contours, irises)
        assert measured["mouth_width"][0] == pytest.approx(0.8) and measured["brow_outer"][0] == pytest.approx(15.0 / spacing)


def test_the_eyes_opening_is_both_eyes_averaged():
    """One eye half closed: the opening is the mean of the two eyes' lid gaps in iris diameters."""
    mesh = np.zeros((1, 468, 3))
    mesh[0, geometry.POSE_INDICES] = geometry.POSE_MODEL
    contours, irises = np.zeros((1, 2, 71, 3)), np.zeros((1, 2, 5, 3))
    irises[..., 1:, :2] = [(6.0, 0.0), (0.0, -6.0), (-6.0, 0.0), (0.0, 6.0)]  # 12 px across
    contours[0, :, geometry.LOWER_LID_MIDDLE, 1] = 3.0
    contours[0, 0, geometry.UPPER_LID_MIDDLE, 1] = -3.0  # 6 px: half an iris
    contours[0, 1, geometry.UPPER_LID_MIDDLE, 1] = 0.0  # 3 px: a quarter
    assert geometry.measurements(mesh, contours, irises)["eye_opening"][0] == pytest.approx(0.375)


def test_action_units_are_clipped_to_openfaces_scale_and_present_from_their_threshold(monkeypatch):
    """AU*_r stays within 0..5 however far a measure goes; AU*_c is 1 from the threshold on,
    the threshold itself included."""
    monkeypatch.setitem(geometry.AU_MODELS, "25", ((1.0,), 0.0, 0.5))
    measures = {name: np.zeros(4) for au in geometry.AU_MEASURES for name in geometry.AU_MEASURES[au]}
    measures["lip_gap"] = np.array([-3.0, 0.25, 0.5, 9.0])
    out = geometry.action_units(measures)
    assert out["AU25_r"].tolist() == [0.0, 0.25, 0.5, 5.0]
    assert out["AU25_c"].tolist() == [0, 0, 1, 1]
    measures["lip_gap"] = np.array([1e3])
    measures["eye_opening"] = np.array([1e3])
    extreme = geometry.action_units({k: v[:1] for k, v in measures.items()})
    assert extreme["AU05_r"][0] == 5.0 and extreme["AU45_r"][0] == 0.0
