"""Writing demo clips in each corpus' own container and codecs with the ffmpeg that the
imageio-ffmpeg wheel ships (no system ffmpeg). Output is bit-exact for the same input.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from avemotion.io import atomic_path
from avemotion.media.audio import write_wav

# Container and codecs of each corpus' originals, at demo-sized resolutions.
FORMATS = {
    # CREMA-D VideoFlash: Flash video (Sorenson H.263) with MP3 audio
    "flv": {"format": "flv", "video": ["-c:v", "flv1", "-q:v", "4"], "audio": ["-c:a", "libmp3lame", "-b:a", "64k", "-ar", "22050"]},
    # eNTERFACE'05: AVI, MPEG-4 part 2 video, PCM audio
    "avi": {"format": "avi", "video": ["-c:v", "mpeg4", "-q:v", "4"], "audio": ["-c:a", "pcm_s16le", "-ar", "48000"]},
    # MAFW: MP4, H.264 video, AAC audio
    "mp4": {
        "format": "mp4",
        "video": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"],
        "audio": ["-c:a", "aac", "-b:a", "64k", "-ar", "44100"],
    },
}
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]


def write_video(path, frames: np.ndarray, fps: float, kind: str, audio: np.ndarray | None, sample_rate: int) -> None:
    """Encode RGB frames (T, H, W, 3) and optional mono audio into ``path`` as a ``kind`` clip."""
    spec = FORMATS[kind]
    height, width = frames.shape[1:3]
    with tempfile.TemporaryDirectory() as scratch, atomic_path(path) as tmp:
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-threads", "1"]
        command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:0"]
        maps = ["-map", "0:v"]
        if audio is not None:
            wav = Path(scratch) / "audio.wav"
            write_wav(wav, audio, sample_rate)
            command += ["-i", str(wav)]
            maps += ["-map", "1:a"] + spec["audio"] + ["-ac", "1"]
        command += maps + spec["video"] + BITEXACT + ["-f", spec["format"], str(tmp)]
        result = subprocess.run(command, input=np.ascontiguousarray(frames, np.uint8).tobytes(), capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg failed writing {path}: {result.stderr.decode(errors='replace')}")
