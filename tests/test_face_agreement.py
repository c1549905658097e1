"""The built-in backend against a real OpenFace 2.0.6 on real faces (tests/data/openface_reference/):
the AU calibration shipped in avemotion.face.geometry is what fitting the references gives, its
estimates keep the agreement measured when it was fitted, and the fitting itself recovers known models."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest

from avemotion.face import calibration, geometry
from avemotion.face.columns import ROTATION
from avemotion.face.geometry import AU_MEASURES, AU_MODELS
from avemotion.face.facemesh import DECODE_LONG_SIDE
from avemotion.face.openface import read_openface_csv
from avemotion.face.reference_set import (
    BOTH_MODES,
    LOST_FIT_RADIANS,
    STATIC_CLIPS,
    load_reference_frames,
    openface_in_both_modes,
    openface_lost_fits,
    still_video,
)
from conftest import ffmpeg

REFERENCE = Path(__file__).resolve().parent / "data" / "openface_reference"


@pytest.fixture(scope="module")
def static(real_media, tmp_path_factory):
    return load_reference_frames(REFERENCE, real_media, tmp_path_factory.mktemp("stills"), "static")


def test_the_reference_frames_are_the_six_people_with_a_face(static):
    assert len(np.unique(static.persons)) == 6
    assert 650 <= len(static.clips) <= 672  # 471 + 79 + 72 + 5 x 10 frames where both see the face
    assert (static.ours["frame"].to_numpy() == static.reference["frame"].to_numpy()).all()


def test_the_shipped_au_models_are_what_fitting_the_references_gives(static):
    """A change to a measure or to the fitting must come with refitted AU_MODELS
    (benchmarks/face_agreement.py --fit)."""
    fitted = calibration.fit_models(static.measures, static.reference)
    assert set(fitted) == set(AU_MODELS) == set(AU_MEASURES)
    for au, (weights, bias, threshold) in fitted.items():
        shipped_weights, shipped_bias, shipped_threshold = AU_MODELS[au]
        np.testing.assert_allclose(weights, shipped_weights, rtol=0.02, atol=0.05, err_msg=au)
        assert bias == pytest.approx(shipped_bias, rel=0.02, abs=0.05), au
        assert threshold == pytest.approx(shipped_threshold, abs=0.1), au


def test_the_estimates_agree_with_openface_static_mode_as_measured(static):
    """Floors a little under the figures README reports, so a change that loses agreement fails."""
    aus = [c for c in static.ours.columns if c.startswith("AU")]
    shipped = calibration.agreement(static.ours[aus], static.reference, static.clips)
    held = calibration.agreement(
        calibration.held_out_predictions(static.measures, static.reference, static.persons), static.reference, static.clips
    )
    # one exception: AU04 reads 0 on the surprise photo (a smooth brow), where OpenFace's reads 0.74-0.94
    # from frame to frame of the same still image
    for table in (shipped, held):
        assert (table["constant_clips"].drop("AU04_r") == 0).all() and table.loc["AU04_r", "constant_clips"] <= 1
    assert held.loc["AU12_r", "r"] >= 0.88 and held.loc["AU45_r", "r"] >= 0.85 and held.loc["AU25_r", "r"] >= 0.72
    assert held.loc["AU25_r", "presence_agreement"] >= 0.9 and held.loc["AU10_r", "presence_agreement"] >= 0.85
    assert held.loc["AU06_r", "r"] >= 0.5 and held.loc["AU26_r", "r"] >= 0.53  # heights in the face's frame; 0.32 / 0.50 as 3D distances
    # skin folds read from the image (avemotion.face.folds); from the landmarks alone AU01 -0.42, AU04 -0.26, AU17 0.57 / 76 %.
    # AU01 with the brows' outer part, 0.50 with their inner ends
    assert held.loc["AU01_r", "r"] >= 0.68 and held.loc["AU04_r", "r"] >= 0.62 and held.loc["AU04_r", "presence_agreement"] >= 0.9
    assert held.loc["AU17_r", "r"] >= 0.72 and held.loc["AU17_r", "presence_agreement"] >= 0.87
    # the lids' gap in iris diameters; in eye widths AU45 presence 74 %, AU05 r 0.05
    assert held.loc["AU45_r", "presence_agreement"] >= 0.85 and held.loc["AU05_r", "r"] >= 0.42
    values = static.ours[[c for c in aus if c.endswith("_r")]].to_numpy()
    assert values.min() >= 0 and values.max() <= 5 and values.max() >= 3  # OpenFace's 0-5 scale, used
    angles = calibration.agreement(static.ours[["pose_Ry", "pose_Rz", "gaze_angle_x"]], static.reference, static.clips)
    assert (angles["r"] >= 0.85).all(), angles
    pitch = calibration.agreement(static.ours[["pose_Rx"]], static.reference, static.clips).loc["pose_Rx", "r"]
    assert pitch >= 0.52  # the nose's midline in the pose model; 0.49 without it
    bias = (static.ours["gaze_angle_y"] - static.reference["gaze_angle_y"]).groupby(static.persons).mean().median()
    assert abs(bias) < 0.05  # radians


def test_au01_reads_the_brows_outer_part_because_a_fit_given_the_inner_ends_drops_them(static, monkeypatch):
    """Why AU01 (inner brow raiser) reads the brows' outer part: offered the inner ends' height too,
    the fit gives it weight 0 with any one person left out (the brow lowerer pulls the inner ends
    down), and held out the outer part agrees far better than the inner ends."""
    monkeypatch.setitem(calibration.AU_MEASURES, "01", {"brow_inner": +1, "brow_outer": +1, "forehead_folds": +1})
    intensity, presence = static.reference["AU01_r"].to_numpy(), static.reference["AU01_c"].to_numpy()
    for person in np.unique(static.persons):
        train = static.persons != person
        (inner, outer, folds), _, _ = calibration.fit_au_model(
            "01", {k: v[train] for k, v in static.measures.items()}, intensity[train], presence[train]
        )
        assert abs(inner) < 1e-6 and outer > 10 and folds > 5, person
    r = {}
    for part in ("brow_inner", "brow_outer"):
        monkeypatch.setitem(calibration.AU_MEASURES, "01", {part: +1, "forehead_folds": +1})
        held = calibration.held_out_predictions(static.measures, static.reference, static.persons)
        r[part] = np.corrcoef(held["AU01_r"], intensity)[0, 1]
    assert r["brow_outer"] >= 0.68 and r["brow_inner"] <= 0.55, r


def test_openface_lost_its_fit_behind_the_womans_hand_and_only_there(static):
    """Frames 100-108 of WolfgangLanger, after OpenFace lost the face on frame 99: its pitch reads
    40 degrees up while the frames around show the head where it was. Without them pitch and the
    vertical gaze agree much better: those nine frames weigh more than the other 656."""
    lost = set(zip(static.clips[static.lost], static.reference["frame"].to_numpy()[static.lost]))
    assert lost == {("WolfgangLanger_Pexels", frame) for frame in range(100, 109)}
    sound = ~static.lost
    everywhere = calibration.agreement(static.ours[["pose_Rx", "gaze_angle_y"]], static.reference, static.clips)["r"]
    kept = calibration.agreement(static.ours[["pose_Rx", "gaze_angle_y"]][sound], static.reference[sound], static.clips[sound])["r"]
    assert kept["pose_Rx"] >= 0.67 and kept["gaze_angle_y"] >= 0.6
    assert (kept - everywhere >= 0.1).all()


def test_a_head_that_turns_is_not_a_lost_fit_and_one_that_jumps_away_and_back_is():
    frames = np.arange(100)
    rotation = np.zeros((100, 3))
    rotation[:, 1] = np.clip((frames - 40) / 25, 0, 1) * 0.8  # a turn of 0.8 rad over one second
    rotation[:, 2] = 0.15 * np.sin(frames / 25 * 4 * np.pi)  # rolling 9 degrees to and fro, twice a second
    rotation[70:79, 0] = -0.7  # nine frames of a pitch that jumps away and back
    table = pd.DataFrame(rotation, columns=ROTATION).assign(success=1)
    table.loc[20:24, "success"] = 0  # frames without a face are never lost fits
    table.loc[20:24, ROTATION] = -1.5
    assert np.flatnonzero(openface_lost_fits(table, 25.0)).tolist() == list(range(70, 79))
    assert not openface_lost_fits(table.assign(pose_Rx=rotation[:, 0] * 0.3 / 0.7), 25.0).any()  # 0.3 rad is no jump
    assert LOST_FIT_RADIANS == 0.3


def test_a_fit_recovers_a_clipped_linear_model_and_its_presence_threshold():
    rng = np.random.default_rng(0)
    measures = {"lip_gap": rng.uniform(0.0, 0.6, 2000)}
    truth = np.clip(10.0 * measures["lip_gap"] - 1.0, 0, 5)  # OpenFace-like: a floor of zeros
    weights, bias, threshold = calibration.fit_au_model("25", measures, truth + rng.normal(0, 0.05, 2000), truth >= 1.5)
    assert weights[0] == pytest.approx(10.0, rel=0.03) and bias == pytest.approx(-1.0, abs=0.05)
    assert threshold == pytest.approx(1.5, abs=0.1)


def test_a_fit_does_not_turn_a_muscle_round():
    """A target that falls as the lips part gets no weight on lip_gap, not a negative one."""
    rng = np.random.default_rng(1)
    measures = {"lip_gap": rng.uniform(0.0, 0.6, 500)}
    weights, bias, _ = calibration.fit_au_model("25", measures, 3 - 4 * measures["lip_gap"], np.zeros(500))
    assert weights[0] == pytest.approx(0.0, abs=1e-6)
    intensity, presence = calibration.predict((weights, bias, 5.0), "25", measures)
    assert np.ptp(intensity) < 1e-6 and not presence.any()


def test_heights_are_measured_in_the_faces_own_frame_whatever_the_head_does():
    """A nod, a turn, a tilt, a move or a closer camera leaves the cheek, lip and jaw heights as they
    are, and a cheek raised on the face's own vertical reads as raised on a tilted head too."""
    rng = np.random.default_rng(3)
    face = rng.normal(0.0, 30.0, (468, 3))
    face[geometry.POSE_INDICES] = geometry.POSE_MODEL
    raised = face.copy()
    raised[[118, 347], 1] -= 4.0  # the inner cheeks 4 mm up the face (117 and 346 also anchor the pose)
    contours, irises = np.zeros((1, 2, 71, 3)), np.zeros((1, 2, 5, 3))
    turn = geometry.rotation_matrices(np.array([0.35, -0.5, 0.3]))
    for shape in (face, raised):
        upright = geometry.measurements(shape[None], contours, irises)
        moved = geometry.measurements((2.5 * shape @ turn.T + [300.0, 200.0, 40.0])[None], contours, irises)
        for name in geometry.HEIGHTS:
            assert moved[name] == pytest.approx(upright[name], abs=1e-9), name
    eyes = np.linalg.norm(face[[362, 263]].mean(0) - face[[33, 133]].mean(0))
    still, lifted = (geometry.measurements((shape @ turn.T)[None], contours, irises)["cheek_raise"] for shape in (face, raised))
    assert still - lifted == pytest.approx(2.0 / eyes, rel=1e-6)  # the mean of four cheek points rose 2 mm


def test_the_presence_yardstick_cuts_openfaces_own_intensities_at_a_threshold_fitted_on_the_others():
    rng = np.random.default_rng(4)
    intensity = rng.uniform(0, 5, 600)
    groups = np.repeat(["a", "b", "c"], 200)
    columns = {f"AU{au}_r": intensity for au in AU_MEASURES}
    consistent = pd.DataFrame({**columns, **{f"AU{au}_c": (intensity >= 2.0).astype(int) for au in AU_MEASURES}})
    assert set(calibration.presence_from_own_intensity(consistent, groups).values()) == {1.0}
    unrelated = pd.DataFrame({**columns, **{f"AU{au}_c": rng.integers(0, 2, 600) for au in AU_MEASURES}})
    assert max(calibration.presence_from_own_intensity(unrelated, groups).values()) < 0.6


def test_the_presence_threshold_is_the_lowest_of_those_that_agree_best():
    intensity, presence = np.array([0.0, 0.0, 3.0, 3.0]), np.array([0, 0, 1, 1])
    assert calibration.best_threshold(intensity, presence) == 0.05  # every threshold up to 3 agrees on all four


def test_the_presence_yardstick_does_not_fit_the_threshold_on_the_frames_it_cuts():
    """Person a's AU*_c reads 1 from 1, person b's from 3: each cut at the other's threshold
    disagrees on the 40 % of frames between 1 and 3, although a threshold of its own would agree on all."""
    intensity = np.tile(np.linspace(0, 5, 501), 2)
    groups = np.repeat(["a", "b"], 501)
    presence = intensity >= np.where(groups == "a", 1.0, 3.0)
    table = pd.DataFrame({**{f"AU{au}_r": intensity for au in AU_MEASURES}, **{f"AU{au}_c": presence.astype(int) for au in AU_MEASURES}})
    assert calibration.presence_from_own_intensity(table, groups)["12"] == pytest.approx(0.6, abs=0.005)


def test_agreement_reports_the_mean_absolute_difference_and_clips_where_ours_is_flat_and_openface_is_not():
    clips = np.repeat(["flat", "both_flat", "moving"], 4)
    ours = pd.DataFrame({"AU12_r": [1.0] * 8 + [0.0, 2.0, 0.0, 2.0], "AU12_c": 0})
    reference = pd.DataFrame({"AU12_r": [0.0, 2.0, 0.0, 2.0] + [3.0] * 4 + [1.0, 1.0, 1.0, 1.0], "AU12_c": [0] * 6 + [1] * 6})
    row = calibration.agreement(ours, reference, clips).loc["AU12_r"]
    assert row["mean_abs_diff"] == pytest.approx((4 * 1.0 + 4 * 2.0 + 4 * 1.0) / 12)
    assert row["constant_clips"] == 1  # "flat" only: where OpenFace is flat too, flat is right
    assert row["presence_agreement"] == pytest.approx(0.5)


def test_models_are_fitted_for_the_aus_asked_for():
    rng = np.random.default_rng(5)
    measures = {"lip_gap": rng.uniform(0, 0.6, 200), "jaw": rng.uniform(0, 1, 200)}
    reference = pd.DataFrame({"AU25_r": 5 * measures["lip_gap"], "AU25_c": 0, "AU26_r": measures["jaw"], "AU26_c": 1})
    assert set(calibration.fit_models(measures, reference, aus=["25"])) == {"25"}


def test_openfaces_two_modes_are_compared_on_the_same_frames():
    """AU12 has no person-specific normalisation in OpenFace, so on truly the same frames its two
    modes give the same intensity; the dynamic AUs (AU02 here) differ."""
    static_rows, video_rows, clips = openface_in_both_modes(REFERENCE)
    assert set(clips) == set(BOTH_MODES) and "single_face" not in BOTH_MODES  # a photo in one mode, a video in the other
    assert (static_rows["frame"].to_numpy() == video_rows["frame"].to_numpy()).all()
    np.testing.assert_allclose(static_rows["AU12_r"], video_rows["AU12_r"], atol=1e-6)
    assert np.corrcoef(static_rows["AU02_r"], video_rows["AU02_r"])[0, 1] < 0.7


def test_the_eyes_opening_is_the_lids_gap_in_iris_diameters_whatever_the_eyes_width_or_a_turn():
    """An iris is about 11.7 mm across in every adult, so the lids' gap over its diameter reads the
    same opening on a wide eye and a narrow one, and a head turned sideways (which shortens the
    iris's width in the image, not its height) leaves it as it is."""
    mesh = np.zeros((1, 468, 3))
    mesh[0, geometry.POSE_INDICES] = geometry.POSE_MODEL

    def opening(eye_width: float, squash: float = 1.0) -> float:
        contours, irises = np.zeros((1, 2, 71, 3)), np.zeros((1, 2, 5, 3))
        contours[..., 8, 0] = eye_width
        contours[..., geometry.UPPER_LID_MIDDLE, 1] = -3.0
        contours[..., geometry.LOWER_LID_MIDDLE, 1] = 3.0  # lids 6 px apart
        irises[..., 1:, :2] = [(6.0, 0.0), (0.0, -6.0), (-6.0, 0.0), (0.0, 6.0)]  # 12 px across
        contours[..., 0] *= squash
        irises[..., 0] *= squash
        return float(geometry.measurements(mesh, contours, irises)["eye_opening"][0])

    assert opening(30.0) == pytest.approx(0.5)
    assert opening(20.0) == pytest.approx(0.5) and opening(30.0, squash=0.6) == pytest.approx(0.5)


def test_small_faces_keep_the_agreement(real_media, tmp_path):
    """The same reference frames decoded at half their width and height (faces half as wide, as in
    smaller recordings): the skin folds and the lids in iris diameters are scale-free, so the shipped
    models agree with OpenFace (which saw the whole frames) about as well as at full size."""
    small = load_reference_frames(REFERENCE, real_media, tmp_path, "static", scale=0.5)
    aus = [c for c in small.ours.columns if c.startswith("AU")]
    table = calibration.agreement(small.ours[aus], small.reference, small.clips)
    assert table.loc["AU12_r", "r"] >= 0.88 and table.loc["AU45_r", "r"] >= 0.85 and table.loc["AU17_r", "r"] >= 0.75
    assert table.loc["AU04_r", "r"] >= 0.6 and table.loc["AU04_r", "presence_agreement"] >= 0.9
    assert table.loc["AU45_r", "presence_agreement"] >= 0.85 and table.loc["AU01_r", "r"] >= 0.68


def test_a_head_turning_fast_from_the_first_frame_to_the_last_is_no_lost_fit():
    """A clip that starts and ends mid-turn (1.5 rad a second): the second around its first and
    last frames is padded with those frames, so a steady turn departs nothing from its median."""
    rotation = np.zeros((40, 3))
    rotation[:, 1] = np.linspace(-1.2, 1.2, 40)  # 1.5 rad a second at 25 fps
    table = pd.DataFrame(rotation, columns=ROTATION).assign(success=1)
    assert not openface_lost_fits(table, 25.0).any()


def test_openfaces_two_modes_give_one_row_and_one_clip_name_per_frame_both_found_the_face_in():
    static_rows, video_rows, clips = openface_in_both_modes(REFERENCE)
    assert len(static_rows) == len(video_rows) == len(clips)
    assert (static_rows["success"] == 1).all() and (video_rows["success"] == 1).all()
    for clip in BOTH_MODES:
        one, other = (read_openface_csv(REFERENCE / f"{mode}_mode" / f"{clip}.csv.gz") for mode in ("static", "video"))
        assert (clips == clip).sum() == ((one["success"] == 1) & (other["success"] == 1)).sum(), clip


def test_a_photo_becomes_a_ten_frame_25_fps_h264_still_of_even_size_made_once(real_media, tmp_path):
    """As the reference's stills were made: 10 frames at 25 fps, H.264 in 4:2:0 (yuv420p; full-range
    JPEG pixels are read as yuvj420p), which needs an even width and height, so an odd-sized photo
    loses its last row and column; a still already made is used as it is."""
    photo = tmp_path / "odd.jpg"
    ffmpeg("-i", real_media / "single_face.jpg", "-vf", "format=yuvj444p,crop=301:201", photo)  # odd-sized, unsubsampled
    out = still_video(photo, tmp_path / "odd.mp4")
    meta = next(imageio_ffmpeg.read_frames(out))
    assert meta["codec"] == "h264" and meta["pix_fmt"].split("(")[0] in ("yuv420p", "yuvj420p") and meta["fps"] == 25 and meta["size"] == (300, 200)
    assert imageio_ffmpeg.count_frames_and_secs(out)[0] == 10
    assert sorted(path.name for path in tmp_path.iterdir()) == ["odd.jpg", "odd.mp4"]  # no partial file left
    made = out.stat().st_mtime_ns
    assert still_video(photo, out) == out and out.stat().st_mtime_ns == made


class _NoFaceBackend:
    """Tracks nothing: records what it was asked to track and gives as many faceless frames as
    OpenFace has rows for the clip (``missing`` fewer)."""

    tracking_threshold = 0.5

    def __init__(self, mode: str, missing: int = 0):
        self.mode, self.missing, self.calls = mode, missing, []

    def track_video(self, path, long_side):
        self.calls.append((Path(path).name, long_side))
        n = len(read_openface_csv(REFERENCE / f"{self.mode}_mode" / f"{Path(path).stem}.csv.gz")) - self.missing
        zeros = (np.zeros(n, np.float32), np.zeros((n, 468, 3)), np.zeros((n, 2, 71, 3)), np.zeros((n, 2, 5, 3)), np.zeros((n, 3)))
        return zeros, 25.0, (360, 640)


def test_the_reference_clips_are_tracked_as_the_mode_and_scale_ask(real_media, tmp_path):
    """Static mode (the default) tracks the photos as still videos and the videos as they are, at
    the backend's usual decoding size; video mode tracks the four videos, single_face as its video;
    a scale decodes each that much smaller than its frames (OpenFace saw them whole)."""
    backend = _NoFaceBackend("static")
    frames = load_reference_frames(REFERENCE, real_media, tmp_path, backend=backend)
    expected = [f"{clip}.mp4" if source.endswith(".jpg") else source for clip, (_, source) in STATIC_CLIPS.items()]
    assert backend.calls == [(name, DECODE_LONG_SIDE) for name in expected]
    assert len(frames.clips) == 0  # no face found by the backend: no frame to compare
    assert all((tmp_path / f"{clip}.mp4").exists() for clip, (_, source) in STATIC_CLIPS.items() if source.endswith(".jpg"))
    backend = _NoFaceBackend("video")
    load_reference_frames(REFERENCE, real_media, tmp_path, "video", backend=backend, scale=0.5)
    assert backend.calls == [("WolfgangLanger_Pexels.mp4", 320), ("face_noface.mov", 480), ("noface_face.mov", 480), ("single_face.mp4", 320)]


def test_a_clip_decoded_to_another_frame_count_than_openfaces_rows_stops_the_alignment(real_media, tmp_path):
    with pytest.raises(ValueError, match=r"^WolfgangLanger_Pexels: \d+ frames decoded but OpenFace has \d+ rows$"):
        load_reference_frames(REFERENCE, real_media, tmp_path, "video", backend=_NoFaceBackend("video", missing=1))
