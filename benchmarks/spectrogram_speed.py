"""Spectrogram images written from the arrays (Pillow) against the common matplotlib rendering.

Both sides get the same 2.5 s clips and the same log-Mel code. write_spectrograms writes the Mel PNG,
the MFCC PNG and the .npy; matplotlib draws only the Mel image with imshow and saves a PNG with Agg,
(a) as usually written (the issue's "common approach"), a default-size figure saved with a tight
bounding box (640x480 before cropping): the headline ratio, spectrogram_speedup_vs_matplotlib;
(b) the stricter comparison, a figure of the features' own size, one pixel per band per frame
(spectrogram_speedup_vs_matplotlib_same_pixels). Each time is the best of a few rounds over the clips, since a shared machine is noisy.
Target: ratio >= 20. Needs matplotlib, which the project does not depend on. Prints `name: value` lines.

    .venv/bin/python benchmarks/spectrogram_speed.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from avemotion.media.spectrogram import SpectrogramSettings, log_mel, write_spectrograms  # noqa: E402

CLIPS = 20
SECONDS = 2.5
TARGET_RATIO = 20.0
ROUNDS = 3


def synthetic_clips(settings: SpectrogramSettings) -> list[np.ndarray]:
    """Voice-like clips: a gliding harmonic tone under noise, a different pitch per clip."""
    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * settings.sample_rate)) / settings.sample_rate
    clips = []
    for k in range(CLIPS):
        pitch = 120 + 8 * k + 30 * np.sin(2 * np.pi * 0.7 * t)
        phase = 2 * np.pi * np.cumsum(pitch) / settings.sample_rate
        voice = sum(np.sin(h * phase) / h for h in range(1, 8))
        clips.append((0.3 * voice + 0.02 * rng.standard_normal(t.size)).astype(np.float32))
    return clips


def matplotlib_same_size_png(audio: np.ndarray, settings: SpectrogramSettings, path: Path) -> None:
    features = log_mel(audio, settings)
    dpi = 100
    figure = plt.figure(figsize=(features.shape[1] / dpi, features.shape[0] / dpi), dpi=dpi)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(features, origin="lower", aspect="auto", cmap="gray", vmin=features.max() - 80, vmax=features.max())
    axes.set_axis_off()
    figure.savefig(path, dpi=dpi, format="png")
    plt.close(figure)


def matplotlib_default_figure_png(audio: np.ndarray, settings: SpectrogramSettings, path: Path) -> None:
    features = log_mel(audio, settings)
    figure, axes = plt.subplots()
    axes.imshow(features, origin="lower", aspect="auto", cmap="gray", vmin=features.max() - 80, vmax=features.max())
    axes.set_axis_off()
    figure.savefig(path, format="png", bbox_inches="tight", pad_inches=0)
    plt.close(figure)


def seconds_per_clip(render, clips, folder: Path, rounds: int = ROUNDS) -> float:
    render(clips[0], folder / "warmup")  # imports, caches and the filterbank are not per-clip costs
    best = float("inf")
    for round_ in range(rounds):
        started = time.perf_counter()
        for index, audio in enumerate(clips):
            render(audio, folder / f"{round_}_{index:02d}")
        best = min(best, (time.perf_counter() - started) / len(clips))
    return best


def main() -> None:
    settings = SpectrogramSettings()
    clips = synthetic_clips(settings)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        ours = seconds_per_clip(
            lambda audio, stem: write_spectrograms(audio, settings, f"{stem}_mel.png", f"{stem}_mfcc.png", f"{stem}_mel.npy"),
            clips,
            folder,
        )
        same_size = seconds_per_clip(lambda audio, stem: matplotlib_same_size_png(audio, settings, Path(f"{stem}_a.png")), clips, folder)
        default_figure = seconds_per_clip(lambda audio, stem: matplotlib_default_figure_png(audio, settings, Path(f"{stem}_b.png")), clips, folder)
    print(f"clips: {CLIPS} x {SECONDS} s at {settings.sample_rate} Hz, best of {ROUNDS} rounds")
    print(f"matplotlib_version: {matplotlib.__version__}")
    print(f"write_spectrograms_ms_per_clip: {ours * 1000:.2f}")
    print(f"matplotlib_mel_png_ms_per_clip: {same_size * 1000:.2f}")
    print(f"matplotlib_default_figure_mel_png_ms_per_clip: {default_figure * 1000:.2f}")
    print(f"spectrogram_speedup_vs_matplotlib: {default_figure / ours:.1f}  (target >= {TARGET_RATIO:g})")
    print(f"spectrogram_speedup_vs_matplotlib_same_pixels: {same_size / ours:.1f}")


if __name__ == "__main__":
    main()
