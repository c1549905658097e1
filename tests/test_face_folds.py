"""The face's skin folds (avemotion.face.folds): a frown's vertical furrows between the brows, raised
brows' horizontal forehead folds and a raised chin's dimples are each read in their own place,
whatever the face's position, size and turn in the image and however bright the light."""

from __future__ import annotations

import numpy as np
import pytest

from avemotion.face import folds, geometry


def face_image(lines: str, scale: float = 2.0, angle: float = 0.0, brightness: float = 1.0):
    """A plain skin-coloured face (RGB, 640x640) at ``scale`` px per mm, turned by ``angle`` degrees,
    with dark folds (0.7 mm Gaussian profile) at canonical places, and a mesh whose expression-free
    points sit where that face has them. ``lines``: "forehead" draws horizontal folds over the
    forehead, "glabella" vertical furrows between the brows, "chin" dimples over the chin boss,
    "chin_shadow" sideways lines across it, "" none. The image is the same
    continuous face sampled anew, whatever the scale and turn."""
    turn = np.deg2rad(angle)
    linear = scale * np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    centre = np.array([320.4, 330.7])
    ys, xs = np.mgrid[0:640, 0:640].astype(float)
    x, y = np.moveaxis((np.stack([xs, ys], -1) - centre) @ np.linalg.inv(linear).T, -1, 0)  # canonical mm
    depth = np.zeros_like(x)
    if lines == "forehead":
        for y0 in (-89, -84, -79, -74):
            depth = np.maximum(depth, np.exp(-(((y - y0) / 0.7) ** 2)) * (np.abs(x) < 28))
    if lines == "glabella":
        for x0 in (-5, 5):
            depth = np.maximum(depth, np.exp(-(((x - x0) / 0.7) ** 2)) * ((y > -70) & (y < -52)))
    if lines == "chin_shadow":  # sideways edges across the chin boss: a lower lip's edge, the chin's shadow
        for y0 in (58, 63, 68):
            depth = np.maximum(depth, np.exp(-(((y - y0) / 0.7) ** 2)) * (np.abs(x) < 25))
    if lines == "chin":
        for x0 in range(-12, 13, 4):
            for y0 in (58, 63, 68):
                depth = np.maximum(depth, np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / 1.5**2))
    image = np.array([200.0, 160.0, 140.0]) * (1 - 0.4 * depth[..., None]) * brightness
    mesh = np.zeros((468, 3))
    mesh[geometry.POSE_INDICES, :2] = geometry.POSE_MODEL[:, :2] @ linear.T + centre
    return np.clip(image, 0, 255).astype(np.uint8), mesh


def test_each_fold_is_read_where_its_muscle_makes_it():
    assert folds.fold_measures(*face_image("")).max() < 0.005  # smooth skin: no folds
    for place, lines in enumerate(("forehead", "glabella", "chin")):
        measured = folds.fold_measures(*face_image(lines))
        assert measured[place] > 0.05, lines
        assert np.delete(measured, place).max() < 0.2 * measured[place], (lines, measured)


@pytest.mark.parametrize("lines", ["forehead", "glabella", "chin"])
def test_folds_do_not_depend_on_the_faces_place_size_turn_or_the_light(lines):
    upright = folds.fold_measures(*face_image(lines))
    for kwargs in ({"scale": 1.5}, {"scale": 3.0}, {"angle": 20.0}, {"angle": -15.0, "scale": 2.7}, {"brightness": 0.5}):
        np.testing.assert_allclose(folds.fold_measures(*face_image(lines, **kwargs)), upright, rtol=0.2, atol=0.01, err_msg=str(kwargs))


def test_the_similarity_fit_recovers_a_known_turn_scale_and_shift():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(30, 2)) * 50
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -40.0])
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = folds.similarity(source, source @ linear.T + shift)
    np.testing.assert_allclose(matrix, np.concatenate([linear, shift[:, None]], axis=1), atol=1e-9)


@pytest.mark.parametrize("lines", ["forehead", "glabella"])
def test_light_on_the_lower_face_leaves_the_brows_folds_as_they_are(lines):
    """The folds are divided by the upper face's brightness, not the mouth's or chin's (teeth in a
    smile, a lit chin): brightening the face below the nose changes no reading of the brows."""
    image, mesh = face_image(lines)
    lit = image.copy()
    lit[420:] = np.clip(lit[420:] * 1.4, 0, 255).astype(np.uint8)  # from 45 mm below the face's centre down
    np.testing.assert_array_equal(folds.fold_measures(lit, mesh)[:2], folds.fold_measures(image, mesh)[:2])


def test_sideways_edges_across_the_chin_are_not_read_as_its_dimples():
    """The lower lip's edge and the chin's shadow run sideways and move with the mouth: the chin's
    dimples are read across them (d/dx), so lines along them read next to nothing."""
    assert folds.fold_measures(*face_image("chin_shadow"))[2] < 0.1 * folds.fold_measures(*face_image("chin"))[2]


def test_the_fold_measures_are_named_in_fold_names_order():
    skin = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    named = folds.as_measures(skin)
    assert list(named) == ["forehead_folds", "glabella_folds", "chin_folds"]
    assert named["forehead_folds"].tolist() == [0.1, 0.4] and named["chin_folds"].tolist() == [0.3, 0.6]
