"""Log-Mel and MFCC features of a clip's audio, and their greyscale images.

NumPy/SciPy only: computing a clip's features takes a millisecond or two, so the PNGs are written
straight from the arrays with Pillow (one pixel per band per frame, no resizing, no plotting library).

Conventions:
- Mel scale: Slaney's (linear below 1 kHz, logarithmic above; librosa's default, ``htk=False``),
  with Slaney area normalisation (each triangle scaled by 2 / its width, so bands of different
  widths have comparable levels). The HTK scale would leave the lowest of 128 bands at n_fft 512
  narrower than one FFT bin, i.e. empty.
- Framing without centring: ``1 + (len - win) // hop`` frames, audio shorter than a window is
  zero-padded to one window.
- Features are (bands, frames) with band 0 the lowest; images flip that, so row 0 of an image is
  the highest band and low frequencies sit at the bottom, as in a spectrogram plot.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np
import scipy.fft
from PIL import Image

from avemotion.io import atomic_path
from avemotion.media.audio import SAMPLE_RATE

# Floor of the Mel power before the log: silence gives -100 dB instead of -inf.
POWER_FLOOR = 1e-10

# Slaney's mel scale: 200/3 Hz per mel up to 1 kHz (15 mel), then logarithmic, 27 mel per factor 6.4.
_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_LOG_START_HZ = 1000.0
_LOG_START_MEL = _LOG_START_HZ / _LINEAR_HZ_PER_MEL
_LOG_STEP = np.log(6.4) / 27.0


@dataclass(frozen=True)
class SpectrogramSettings:
    sample_rate: int = SAMPLE_RATE  # the audio stage's
    window_ms: float = 25.0
    hop_ms: float = 10.0
    n_mels: int = 128
    n_mfcc: int = 40
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2

    def __post_init__(self):
        if self.win_length < 2 or self.hop_length < 1:
            raise ValueError(f"window {self.window_ms} ms / hop {self.hop_ms} ms give fewer than 2 / 1 samples")
        if not 0 <= self.fmin < self.upper_hz <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate / 2, got {self.fmin}, {self.upper_hz}, {self.sample_rate}")
        if not 1 <= self.n_mfcc <= self.n_mels:
            raise ValueError(f"n_mfcc must be between 1 and n_mels ({self.n_mels}), got {self.n_mfcc}")

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.window_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def n_fft(self) -> int:
        """The next power of two at or above the window length."""
        return 1 << (self.win_length - 1).bit_length()

    @property
    def upper_hz(self) -> float:
        return self.sample_rate / 2 if self.fmax is None else float(self.fmax)


def hz_to_mel(hz):
    hz = np.asarray(hz, dtype=np.float64)
    log_part = _LOG_START_MEL + np.log(np.maximum(hz, _LOG_START_HZ) / _LOG_START_HZ) / _LOG_STEP
    return np.where(hz < _LOG_START_HZ, hz / _LINEAR_HZ_PER_MEL, log_part)


def mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    log_part = _LOG_START_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _LOG_START_MEL) - _LOG_START_MEL))
    return np.where(mel < _LOG_START_MEL, mel * _LINEAR_HZ_PER_MEL, log_part)


@functools.lru_cache(maxsize=8)
def mel_filterbank(settings: SpectrogramSettings) -> np.ndarray:
    """Slaney-scale, area-normalised triangular filters, float32 (n_mels, n_fft // 2 + 1).

    Filter k rises from edge k to its centre at edge k + 1 and falls to edge k + 2, where the
    n_mels + 2 edges are equally spaced in mel between fmin and fmax. Cached per settings and
    read-only, since every clip of a chunk shares it.
    """
    edges = mel_to_hz(np.linspace(hz_to_mel(settings.fmin), hz_to_mel(settings.upper_hz), settings.n_mels + 2))
    bins = np.linspace(0.0, settings.sample_rate / 2, settings.n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))
    weights = weights.astype(np.float32)
    weights.flags.writeable = False
    return weights


def _as_float_audio(audio: np.ndarray) -> np.ndarray:
    """Mono samples as float32 in [-1, 1]; signed integer PCM is scaled by its type's full range."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio (1-D samples), got shape {audio.shape}")
    if np.issubdtype(audio.dtype, np.unsignedinteger):
        raise ValueError(f"unsigned PCM ({audio.dtype}) has an offset: convert it to float samples first")
    if np.issubdtype(audio.dtype, np.signedinteger):
        return audio.astype(np.float32) / np.float32(-np.iinfo(audio.dtype).min)
    return audio.astype(np.float32, copy=False)


@functools.lru_cache(maxsize=8)
def _hann(length: int) -> np.ndarray:
    """Periodic Hann window, the usual choice for STFT analysis (cached and read-only like the filterbank)."""
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float32)
    window.flags.writeable = False
    return window


def log_mel(audio: np.ndarray, settings: SpectrogramSettings = SpectrogramSettings()) -> np.ndarray:
    """Log-Mel power in dB, float32 (n_mels, n_frames), from mono audio at ``settings.sample_rate``."""
    samples = _as_float_audio(audio)
    win, hop = settings.win_length, settings.hop_length
    if len(samples) < win:
        samples = np.pad(samples, (0, win - len(samples)))
    # Overlapping frames are a strided view (no copy); the window product writes them once, straight
    # into the zero-padded FFT buffer. float32 throughout halves the memory traffic of the FFT and product.
    frames = np.lib.stride_tricks.sliding_window_view(samples, win)[::hop]
    padded = np.zeros((len(frames), settings.n_fft), dtype=np.float32)
    np.multiply(frames, _hann(win), out=padded[:, :win])
    spectrum = scipy.fft.rfft(padded, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    mel = mel_filterbank(settings) @ power.T
    np.maximum(mel, POWER_FLOOR, out=mel)
    np.log(mel, out=mel)  # natural log, then scaled to 10 * log10: np.log is about 3x faster than np.log10
    mel *= np.float32(10.0 / np.log(10.0))
    return mel


def mfcc(log_mel_db: np.ndarray, n_mfcc: int = SpectrogramSettings.n_mfcc) -> np.ndarray:
    """The first ``n_mfcc`` orthonormal DCT-II coefficients over the Mel axis, (n_mfcc, n_frames)."""
    if not 1 <= n_mfcc <= log_mel_db.shape[0]:
        raise ValueError(f"n_mfcc must be between 1 and the number of Mel bands ({log_mel_db.shape[0]}), got {n_mfcc}")
    return scipy.fft.dct(log_mel_db, type=2, norm="ortho", axis=0)[:n_mfcc].astype(np.float32)


def to_image(features: np.ndarray, top_db: float = 80.0, scaling: str = "db") -> np.ndarray:
    """Greyscale image, uint8 (bands, frames), row 0 the highest band; normalised per clip.

    ``scaling="db"`` (log-Mel): v -> 255 * clip((v - (max - top_db)) / top_db, 0, 1), so the
    clip's loudest value is white and everything ``top_db`` or more below it is black; a constant
    log-Mel (a silent clip) is black, as silence in a clip with sound is.
    ``scaling="minmax"`` (MFCC, whose coefficients have no common unit): v -> 255 * (v - min) /
    (max - min), and a constant input gives black. Values are rounded to the nearest level.
    """
    values = np.asarray(features, dtype=np.float32)
    if scaling == "db":
        if top_db <= 0:
            raise ValueError(f"top_db must be positive, got {top_db}")
        unit = np.clip((values - (values.max() - np.float32(top_db))) / np.float32(top_db), 0.0, 1.0)
        unit = unit if values.max() > values.min() else np.zeros_like(values)
    elif scaling == "minmax":
        span = values.max() - values.min()
        unit = (values - values.min()) / span if span > 0 else np.zeros_like(values)
    else:
        raise ValueError(f"scaling must be 'db' or 'minmax', got {scaling!r}")
    return np.flipud(np.rint(np.float32(255.0) * unit).astype(np.uint8))


def _write_png(image: np.ndarray, path) -> None:
    # A 2-D uint8 array is mode 'L'. zlib's run-length strategy encodes these images about twice as
    # fast as the default strategy, within a few percent of its size.
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)


def _write_npy(array: np.ndarray, path) -> None:
    # Through a file object: np.save given a path not ending in .npy would append the suffix.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def write_spectrograms(audio: np.ndarray, settings: SpectrogramSettings, mel_png, mfcc_png, mel_npy) -> dict:
    """Compute a clip's features once; write the Mel and MFCC PNGs and the log-Mel array (dB).

    Returns the shapes written: ``{"log_mel": (n_mels, n_frames), "mfcc": (n_mfcc, n_frames)}``.
    """
    mel_db = log_mel(audio, settings)
    coefficients = mfcc(mel_db, settings.n_mfcc)
    _write_png(to_image(mel_db, scaling="db"), mel_png)
    _write_png(to_image(coefficients, scaling="minmax"), mfcc_png)
    _write_npy(mel_db, mel_npy)
    return {"log_mel": mel_db.shape, "mfcc": coefficients.shape}
