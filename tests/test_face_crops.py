"""The aligned face crop (frames.crop: aligned): OpenFace's similarity alignment of each frame's
rigid landmarks onto a generic face, checked exactly on drawn landmarks and on a real recording."""

from __future__ import annotations

import subprocess

import cv2
import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest

from avemotion.face.columns import LANDMARKS_2D
from avemotion.face.crops import ALIGNED_SCALE, GENERIC_RIGID, RIGID_POINTS, aligned_crop_matrices, crop_matrices, face_landmarks
from avemotion.face.facemesh import FaceMeshBackend
from avemotion.media.frame_crops import warp_crop
from avemotion.media.frames import sample_clip_frames
from avemotion.quarantine import ClipDefect

SIZE = 128


def similar_face(scale: float, degrees: float, shift, frames: int = 1, seed: int = 0) -> np.ndarray:
    """(frames, 68, 2) landmarks whose rigid points are the generic face's, scaled, turned clockwise
    on screen by ``degrees`` and moved to ``shift``; the other points anywhere."""
    points = np.random.default_rng(seed).uniform(0, 400, (68, 2))
    angle = np.radians(degrees)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points[RIGID_POINTS] = GENERIC_RIGID @ turn.T * scale + shift
    return np.repeat(points[None], frames, axis=0)


def mapped(matrices: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    return np.einsum("nij,npj->npi", matrices[:, :, :2], landmarks) + matrices[:, None, :, 2]


def table_of(landmarks: np.ndarray) -> pd.DataFrame:
    found = ~np.isnan(landmarks).any(axis=(1, 2))
    values = np.nan_to_num(np.concatenate([landmarks[..., 0], landmarks[..., 1]], axis=1))
    return pd.DataFrame({"frame": np.arange(1, len(landmarks) + 1), "success": found.astype(int), **dict(zip(LANDMARKS_2D, values.T))})


@pytest.mark.parametrize("scale, degrees, shift", [(3.0, 0.0, (320, 240)), (1.4, 25.0, (100, 300)), (5.0, -40.0, (900, 500))])
def test_the_aligned_crop_puts_the_rigid_points_where_the_generic_face_has_them(scale, degrees, shift):
    """Whatever the face's size, roll and place: its rigid points land on the generic face at
    OpenFace's scale (0.7 px per mm at 112 px), the generic face's 68-point centre in the middle."""
    landmarks = similar_face(scale, degrees, shift)
    matrices = crop_matrices(table_of(landmarks), "aligned", SIZE, margin=0.25)
    expected = GENERIC_RIGID * ALIGNED_SCALE * SIZE + SIZE / 2
    assert mapped(matrices, landmarks)[0, RIGID_POINTS] == pytest.approx(expected, abs=1e-6)
    assert np.linalg.det(matrices[0, :, :2]) > 0  # turned and scaled, never mirrored
    # the picture follows: a white dot drawn at the right outer eye corner ends where the generic one is
    frame = np.zeros((1080, 1920, 3), np.uint8)
    cv2.circle(frame, tuple(int(round(v)) for v in landmarks[0, 36]), 4, (255, 255, 255), -1)
    crop = warp_crop(frame, matrices[0], SIZE)
    y, x = np.argwhere(crop[..., 0] > 100).mean(axis=0)
    corner = expected[list(RIGID_POINTS).index(36)]
    assert abs(x - corner[0]) < 1.5 and abs(y - corner[1]) < 1.5


def test_a_face_unlike_the_generic_one_gets_its_spread_and_centre_as_openface_fits_it():
    """A turned head (its rigid points 40 % narrower than the generic face's): OpenFace's
    AlignShapesWithScale gives them the generic face's spread (root mean square), where least squares
    would shrink them by the shapes' correlation; their centre lands on the generic one's."""
    landmarks = similar_face(2.0, 0.0, (400, 300))
    centre = landmarks[0, RIGID_POINTS].mean(axis=0)
    landmarks[0, RIGID_POINTS] = centre + (landmarks[0, RIGID_POINTS] - centre) * [0.6, 1.0]
    placed = mapped(aligned_crop_matrices(landmarks, SIZE), landmarks)[0, RIGID_POINTS]
    generic = GENERIC_RIGID * ALIGNED_SCALE * SIZE + SIZE / 2
    spread = lambda points: np.sqrt(((points - points.mean(axis=0)) ** 2).sum(axis=1).mean())
    assert spread(placed) == pytest.approx(spread(generic), rel=1e-9)
    assert placed.mean(axis=0) == pytest.approx(generic.mean(axis=0), abs=1e-9)


def test_non_square_pixels_are_aligned_as_the_frame_is_shown():
    """On pixels 64/45 as wide as high the landmarks are stored narrower; the crop is the same."""
    shown = similar_face(2.0, 10.0, (400, 300))
    stored = shown / [64 / 45, 1]
    matrices = aligned_crop_matrices(stored, SIZE, pixel_aspect=64 / 45)
    assert mapped(matrices, stored) == pytest.approx(mapped(aligned_crop_matrices(shown, SIZE), shown), abs=1e-6)


def test_frames_without_a_face_take_the_alignment_of_the_nearest_faces():
    landmarks = np.concatenate([similar_face(2.0, 0.0, (300, 200), 3), similar_face(2.0, 20.0, (340, 200), 3)])
    landmarks[[0, 3]] = np.nan
    matrices = aligned_crop_matrices(landmarks, SIZE)
    assert np.isfinite(matrices).all()
    assert matrices[0] == pytest.approx(matrices[1])
    assert matrices[3, :, :2] == pytest.approx((matrices[2, :, :2] + matrices[4, :, :2]) / 2)  # scale and turn between its neighbours
    with pytest.raises(ClipDefect, match="no face in any frame"):
        aligned_crop_matrices(np.full((4, 68, 2), np.nan), SIZE)


def test_the_generic_faces_rigid_points_are_mirror_images_across_its_midline():
    """iBUG's left points are their right counterparts mirrored (x negated, y kept); the midline ones
    sit at x = 0, so an upright frontal face is aligned upright and centred."""
    where = dict(zip(RIGID_POINTS.tolist(), GENERIC_RIGID))
    for right, left in ((1, 15), (2, 14), (3, 13), (4, 12), (31, 35), (32, 34), (36, 45), (39, 42), (40, 47), (41, 46)):
        assert where[left] == pytest.approx(where[right] * [-1, 1]), (right, left)
    assert [where[p][0] for p in (27, 28, 29, 33)] == pytest.approx([0.0] * 4)


def test_frames_the_face_stage_found_no_face_on_have_no_landmarks():
    landmarks = similar_face(2.0, 0.0, (300, 200), 3)
    table = table_of(landmarks).assign(success=[1, 0, 1])
    points = face_landmarks(table)
    assert np.isnan(points[1]).all() and points[[0, 2]] == pytest.approx(landmarks[[0, 2]])


def test_the_face_crop_is_the_landmarks_square_widened_by_the_margin_on_each_side():
    """A still face whose landmarks span 200 x 100 px: the crop is a square of 200 px plus a quarter
    of it on each side (300 px), centred on the landmarks' box."""
    landmarks = np.random.default_rng(1).uniform([300, 250], [500, 350], (68, 2))
    landmarks[0], landmarks[1] = (300, 250), (500, 350)
    matrices = crop_matrices(table_of(np.repeat(landmarks[None], 5, axis=0)), "face", 120, margin=0.25)
    corners = mapped(matrices, np.array([[[250.0, 150.0], [550.0, 450.0]]] * 5))
    assert corners == pytest.approx(np.array([[[0.0, 0.0], [120.0, 120.0]]] * 5))


def test_an_unknown_crop_is_refused():
    with pytest.raises(ValueError, match="not a face crop"):
        crop_matrices(table_of(similar_face(2.0, 0.0, (300, 200))), "full", SIZE, margin=0.25)


@pytest.fixture(scope="module")
def rolled_recording(real_media, tmp_path_factory):
    """4 s of the real WolfgangLanger recording (a person talking, moving the head), as it is and rolled
    25 degrees anticlockwise on screen (lossless)."""
    folder = tmp_path_factory.mktemp("rolled")
    made = {}
    for name, view in (("upright", []), ("rolled", ["-vf", "rotate=25*PI/180"])):
        made[name] = folder / f"{name}.mp4"
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-t", "4", "-i", str(real_media / "WolfgangLanger_Pexels.mp4"), "-an", *view]
        subprocess.run([*command, "-c:v", "libx264", "-qp", "0", str(made[name])], check=True)
    return made


def test_aligned_crops_of_a_real_face_hold_its_eyes_level_and_in_place(rolled_recording, tmp_path):
    """The built-in backend's landmarks on the aligned crops themselves: eyes level (|roll| < 4 deg
    in every frame, the clip rolled 25 deg or not), the eye corners within 1.5 px of where they were
    a frame before, on average; the rolled clip's aligned crops are the upright clip's (less than
    half the difference of its face-square crops, which turn with the head)."""
    backend = FaceMeshBackend()
    crops = {}
    for name, path in rolled_recording.items():
        table = backend.analyse_video(path)[0]
        for crop in ("face", "aligned"):
            crops[name, crop], _ = sample_clip_frames(path, 16, SIZE, crop, crop_matrices=crop_matrices(table, crop, SIZE, 0.25))
        aligned = tmp_path / f"{name}_aligned.mp4"
        writer = cv2.VideoWriter(str(aligned), cv2.VideoWriter_fourcc(*"mp4v"), 25, (SIZE, SIZE))
        for frame in crops[name, "aligned"]:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
        writer.release()
        seen = backend.analyse_video(aligned)[0]
        assert seen["success"].all(), name
        corners = face_landmarks(seen)[:, [36, 45]]  # outer eye corners, subject's right and left
        roll = np.degrees(np.arctan2(*(corners[:, 1] - corners[:, 0]).T[::-1]))
        assert np.abs(roll).max() < 4, (name, roll.round(1))
        assert np.linalg.norm(np.diff(corners, axis=0), axis=2).mean() < 1.5, name
        generic = GENERIC_RIGID[[list(RIGID_POINTS).index(36), list(RIGID_POINTS).index(45)]] * ALIGNED_SCALE * SIZE + SIZE / 2
        assert np.linalg.norm(corners.mean(axis=0) - generic, axis=1).max() < 0.06 * SIZE, name  # this face is not the generic one
    difference = {crop: np.abs(crops["rolled", crop].astype(int) - crops["upright", crop]).mean() for crop in ("face", "aligned")}
    assert difference["aligned"] < difference["face"] / 2, difference
