"""A voice-like signal for the demo actors: syllables of a harmonic source with a pitch contour,
shaped by two vowel formants, at a rate, loudness and brightness that depend on the emotion.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from avemotion.demo.expressions import EmotionProfile, Speaker

SAMPLE_RATE = 16000
# (F1, F2) of a few vowels, Hz, for an adult male voice; scaled by the speaker's formant_scale.
VOWELS = [(730, 1090), (270, 2290), (530, 1840), (570, 840), (300, 870), (660, 1720)]


def _resonator(frequency: float, bandwidth: float, rate: int):
    """Second-order all-pole resonator (coefficients b, a) with unit gain at its peak."""
    r = np.exp(-np.pi * bandwidth / rate)
    theta = 2 * np.pi * frequency / rate
    a = np.array([1.0, -2 * r * np.cos(theta), r * r])
    return np.array([(1 - r) * np.sqrt(1 - 2 * r * np.cos(2 * theta) + r * r)]), a


def _syllables(duration: float, rate: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """(start, length) of each syllable, with the odd pause between words."""
    syllables, t = [], rng.uniform(0.05, 0.2)
    while True:
        length = rng.uniform(0.55, 0.85) / rate
        if t + length > duration - 0.05:
            return syllables
        syllables.append((t, length))
        t += length + rng.uniform(0.15, 0.35) / rate + (rng.uniform(0.1, 0.25) if rng.random() < 0.15 else 0)


def synthesize_voice(
    profile: EmotionProfile, speaker: Speaker, intensity: float, duration: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(float32 waveform at SAMPLE_RATE in [-1, 1], 0..1 speech envelope per sample, voice parameters)."""
    strength = intensity * speaker.expressiveness
    blend = lambda emotional, neutral: neutral + strength * (emotional - neutral)
    rate = max(1.5, blend(profile.rate, 4.0) * speaker.rate_factor)
    f0_mean = speaker.f0 * blend(profile.f0_ratio, 1.0)
    f0_range = max(0.02, blend(profile.f0_range, 0.08))
    loudness = float(np.clip(blend(profile.loudness, 0.5), 0.08, 1.0))
    tilt = blend(profile.tilt, 1.3)

    n = int(round(duration * SAMPLE_RATE))
    waveform = np.zeros(n)
    envelope = np.zeros(n)
    syllables = _syllables(duration, rate, rng)
    for start, length in syllables:
        i0, m = int(start * SAMPLE_RATE), int(length * SAMPLE_RATE)
        t = np.arange(m) / SAMPLE_RATE
        rise = rng.uniform(-1, 1) * f0_range
        f0 = f0_mean * (1 + rise * np.sin(np.pi * t / length) + 0.01 * rng.standard_normal())
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        harmonics = np.arange(1, int(3800 / f0.max()) + 1)
        source = (np.sin(np.outer(phase, harmonics)) / harmonics**tilt).sum(axis=1)
        source += 0.02 * rng.standard_normal(m)  # breath
        f1, f2 = VOWELS[int(rng.integers(len(VOWELS)))]
        for formant, bandwidth in ((f1 * speaker.formant_scale, 90), (f2 * speaker.formant_scale, 120)):
            b, a = _resonator(formant, bandwidth, SAMPLE_RATE)
            source = source + 0.6 * signal.lfilter(b, a, source)
        window = np.sin(np.pi * t / length) ** 0.7
        chunk = source * window
        waveform[i0 : i0 + m] += chunk / (np.abs(chunk).max() + 1e-9) * rng.uniform(0.8, 1.0)
        envelope[i0 : i0 + m] = np.maximum(envelope[i0 : i0 + m], window)
    waveform = loudness * 0.9 * waveform + 0.003 * rng.standard_normal(n)  # room noise
    parameters = {"f0_mean": f0_mean, "f0_range": f0_range, "loudness": loudness, "rate": rate, "tilt": tilt}
    return np.clip(waveform, -1, 1).astype(np.float32), envelope.astype(np.float32), parameters


def envelope_at(envelope: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The speech envelope at frame times (mean over each frame's 40 ms neighbourhood)."""
    half = int(0.02 * SAMPLE_RATE)
    centres = np.clip((times * SAMPLE_RATE).astype(int), 0, len(envelope) - 1)
    cumulative = np.concatenate([[0.0], np.cumsum(envelope)])
    lo, hi = np.clip(centres - half, 0, len(envelope)), np.clip(centres + half, 0, len(envelope))
    return ((cumulative[hi] - cumulative[lo]) / np.maximum(hi - lo, 1)).astype(np.float32)
