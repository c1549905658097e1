"""Whisper's log-Mel features in NumPy, equal to transformers' WhisperFeatureExtractor.

16 kHz mono audio -> (frames, num_mel_bins) float32, channels last (the transpose of transformers'
``input_features``), one frame per 10 ms: a 400-sample periodic Hann window every 160 samples over
the audio reflect-padded by 200 at each end, the power spectrum through Slaney-normalised Slaney-scale
Mel filters (0-8 kHz), log10 of at least 1e-10, the last frame dropped, values below the clip's
maximum - 8 raised to it, then (x + 4) / 4.

Audio longer than 30 s is cut to 30 s. With ``pad=True`` (transformers' default, what Whisper was
trained on) shorter audio is zero-padded to 30 s, 3000 frames; with ``pad=False`` it keeps its length,
len // 160 frames (the encoder takes fewer frames by slicing its position table). The two differ
beyond the padding: the padded silence counts in the maximum - 8 floor only when it is there.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLING_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
N_SAMPLES = CHUNK_SECONDS * SAMPLING_RATE  # 480000
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000
MEL_FLOOR = 1e-10


def _hertz_to_mel(hertz: np.ndarray) -> np.ndarray:
    """Slaney's scale: linear below 1 kHz, logarithmic above."""
    mels = 3.0 * hertz / 200.0
    high = hertz >= 1000.0
    mels[high] = 15.0 + np.log(hertz[high] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hertz(mels: np.ndarray) -> np.ndarray:
    hertz = 200.0 * mels / 3.0
    high = mels >= 15.0
    hertz[high] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[high] - 15.0))
    return hertz


@lru_cache(maxsize=4)
def mel_filters(num_mel_bins: int = 80) -> np.ndarray:
    """(n_fft // 2 + 1, num_mel_bins) float64 triangular filters over 0-8 kHz, each scaled by 2 / its
    bandwidth (Slaney area normalisation), as transformers' mel_filter_bank(norm="slaney", mel_scale="slaney")."""
    edges = np.array([0.0, SAMPLING_RATE / 2.0])
    mel_points = np.linspace(*_hertz_to_mel(edges), num_mel_bins + 2)
    filter_hertz = _mel_to_hertz(mel_points)
    fft_hertz = np.linspace(0, SAMPLING_RATE // 2, N_FFT // 2 + 1)
    slopes = filter_hertz[None, :] - fft_hertz[:, None]
    widths = np.diff(filter_hertz)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= (2.0 / (filter_hertz[2:] - filter_hertz[:-2]))[None, :]
    filters.setflags(write=False)
    return filters


def hann_window() -> np.ndarray:
    """The periodic Hann window of N_FFT samples (torch.hann_window's default)."""
    return np.hanning(N_FFT + 1)[:-1]


def _log_mel(audio: np.ndarray, num_mel_bins: int) -> np.ndarray:
    padded = np.pad(audio, (N_FFT // 2, N_FFT // 2), mode="reflect").astype(np.float64)
    num_frames = 1 + (padded.size - N_FFT) // HOP_LENGTH
    starts = np.arange(num_frames)[:, None] * HOP_LENGTH
    frames = padded[starts + np.arange(N_FFT)[None, :]] * hann_window()
    # transformers keeps the spectrum in complex64 before taking its power; so do we, to agree to the bit.
    spectrum = np.fft.rfft(frames, axis=-1).astype(np.complex64)
    power = np.abs(spectrum, dtype=np.float64) ** 2
    mel = np.maximum(MEL_FLOOR, mel_filters(num_mel_bins).T @ power.T)
    log_spec = np.log10(mel).astype(np.float32)[:, :-1]
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).T


def log_mel_spectrogram(audio, num_mel_bins: int = 80, pad: bool = True, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Whisper features of 16 kHz mono audio: (samples,) -> (frames, num_mel_bins), or (batch, samples)
    -> (batch, frames, num_mel_bins), or a list of 1-D clips of any lengths -> a list of (frames, bins).

    80 bins for Whisper up to large-v2, 128 for large-v3 (the checkpoint's num_mel_bins).
    """
    if sampling_rate != SAMPLING_RATE:
        raise ValueError(f"Whisper features need {SAMPLING_RATE} Hz audio, not {sampling_rate} Hz; resample it first")
    if isinstance(audio, (list, tuple)):
        return [log_mel_spectrogram(clip, num_mel_bins, pad) for clip in audio]
    audio = np.asarray(audio)
    if audio.ndim == 2:
        return np.stack([log_mel_spectrogram(clip, num_mel_bins, pad) for clip in audio])
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono, shaped (samples,) or (batch, samples), not {audio.shape}")
    if audio.size < N_FFT // 2 + 1:
        raise ValueError(f"{audio.size} samples are too few for Whisper features (at least {N_FFT // 2 + 1})")
    # float32 first, as transformers converts its input, so the float64 transform sees the same samples.
    audio = audio.astype(np.float32)[:N_SAMPLES]
    if pad and audio.size < N_SAMPLES:
        audio = np.pad(audio, (0, N_SAMPLES - audio.size))
    return _log_mel(audio, num_mel_bins)
