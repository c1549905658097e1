"""A speech encoder's input features from 16 kHz PCM, with NumPy only (no TensorFlow: a model with
a Whisper branch builds and trains on a machine without it, as the JAX GPU machines are).

A model with a Whisper audio branch reads ``speech_features`` (batch, F, num_mel_bins), the clip's
Whisper log-Mel cut to the model's F frames (model.audio_max_seconds, 100 frames a second), and
``speech_frames`` (batch,) int32, how many of them hold the clip's audio (the rest is padding, left
out of the pooling). The features are those of whisper_features.log_mel_spectrogram, the one owner
of that computation: as WhisperFeatureExtractor makes them for the clip (zero-padded to 30 s, the
padding counted in its floor), cut to F frames. avemotion.model.speech_input computes them per
batch in the input pipeline.
"""

from __future__ import annotations

import numpy as np

from avemotion.fusion.schema import SPEECH_SAMPLE_RATE
from avemotion.model.whisper_features import HOP_LENGTH, N_FFT, N_SAMPLES, SAMPLING_RATE, log_mel_spectrogram

SPEECH_FEATURES = "speech_features"
SPEECH_FRAMES = "speech_frames"
SPEECH_INPUTS = (SPEECH_FEATURES, SPEECH_FRAMES)
MAX_FEATURE_FRAMES = N_SAMPLES // HOP_LENGTH  # Whisper's 30 s
NO_AUDIO = (
    "a clip's shard holds no audio: it was fused before the shards stored audio for the speech encoder; "
    "fuse the experiment's datasets again (snakemake --forcerun fuse_chunk)"
)


def feature_frames(seconds: float) -> int:
    """The Whisper feature frames of ``seconds`` of audio (one per 10 ms), at most 30 s worth."""
    frames = int(round(seconds * SAMPLING_RATE / HOP_LENGTH))
    if not 1 <= frames <= MAX_FEATURE_FRAMES:
        raise ValueError(f"{seconds} s is outside Whisper's window (0.01 to {N_SAMPLES // SAMPLING_RATE} s)")
    return frames


def whisper_features(samples: np.ndarray, max_frames: int, num_mel_bins: int = 80) -> tuple[np.ndarray, int]:
    """(max_frames, num_mel_bins) float32 features of 16 kHz float samples and how many frames are the
    clip's own: log_mel_spectrogram(samples cut to max_frames, pad=True)[:max_frames].

    Only the first max_frames + 2 frames are computed (log_mel_spectrogram over the cut audio padded
    with zeros to N_FFT samples past them, pad=False): the frames after them see only the padding
    silence, the floor value, so they change neither these frames nor the clip's maximum; equal to
    the 30 s computation (a test checks it), at a third of its cost for 10 s.
    """
    samples = np.asarray(samples, np.float32)[: max_frames * HOP_LENGTH]
    span = min(max_frames * HOP_LENGTH + N_FFT, N_SAMPLES)
    padded = np.pad(samples, (0, span - samples.size))
    # the shards' rate, which log_mel_spectrogram refuses unless it is Whisper's
    features = log_mel_spectrogram(padded, num_mel_bins, pad=span == N_SAMPLES, sampling_rate=SPEECH_SAMPLE_RATE)[:max_frames]
    return features, max(1, min(samples.size // HOP_LENGTH, max_frames))


def batch_features(pcm, max_frames: int, num_mel_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch of int16 little-endian PCM byte strings -> (features (B, F, bins), frames (B,) int32)."""
    features, frames = [], []
    for clip in pcm:
        if not len(clip):
            raise ValueError(NO_AUDIO)
        values, count = whisper_features(np.frombuffer(clip, "<i2").astype(np.float32) / 32768.0, max_frames, num_mel_bins)
        features.append(values)
        frames.append(count)
    return np.stack(features).astype(np.float32), np.asarray(frames, np.int32)
