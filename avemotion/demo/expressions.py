"""What the demo actors do: per-emotion expression and voice profiles, speaker traits, and the
per-frame expression track of one clip.

The values are chosen so that each modality alone separates the classes (a mouth curve, brow height,
eye opening and head posture per class on the face side; pitch, pitch range, loudness, speaking rate
and brightness on the voice side), while speakers differ in resting face, voice and expressiveness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Expression parameters of the drawn face, the ground truth written beside each demo corpus:
#   smile       mouth-corner curve, -1 (down, AU15) .. 1 (up, AU12)
#   mouth_open  jaw/lip opening 0 .. 1 (AU25/26), speech adds to it
#   brow_raise  -1 (lowered and knit, AU4) .. 1 (raised, AU1+2)
#   eye_open    lid opening, 1 = rest, > 1 wide (AU5), ~0 during a blink (AU45)
#   yaw, pitch, roll  head rotation in degrees (pitch > 0 = chin up)
EXPRESSION_PARAMETERS = ("smile", "mouth_open", "brow_raise", "eye_open", "yaw", "pitch", "roll")


@dataclass(frozen=True)
class EmotionProfile:
    smile: float
    mouth_open: float
    brow_raise: float
    eye_open: float
    yaw: float  # head turn offset, degrees
    pitch: float  # head tilt offset, degrees
    motion: float  # head motion amplitude, degrees
    f0_ratio: float  # mean pitch relative to the speaker's resting pitch
    f0_range: float  # relative pitch excursion within syllables
    loudness: float  # 0..1 amplitude
    rate: float  # syllables per second
    tilt: float  # spectral tilt exponent: larger is darker (softer) voice


PROFILES = {
    "neutral": EmotionProfile(0.0, 0.10, 0.0, 1.00, 0, 0, 1.0, 1.00, 0.08, 0.50, 4.0, 1.3),
    "anger": EmotionProfile(-0.45, 0.35, -0.90, 0.80, 0, -6, 2.5, 1.25, 0.22, 0.95, 4.8, 0.7),
    "disgust": EmotionProfile(-0.70, 0.15, -0.50, 0.65, 12, 5, 1.5, 0.90, 0.15, 0.55, 3.4, 1.1),
    "fear": EmotionProfile(-0.30, 0.50, 0.80, 1.45, -6, 3, 3.0, 1.45, 0.18, 0.60, 5.3, 1.0),
    "happiness": EmotionProfile(0.95, 0.40, 0.25, 0.80, 0, 5, 2.0, 1.35, 0.45, 0.85, 4.5, 0.9),
    "sadness": EmotionProfile(-0.80, 0.05, 0.40, 0.70, 0, -10, 0.8, 0.85, 0.05, 0.28, 2.9, 1.6),
    "surprise": EmotionProfile(0.10, 0.85, 1.00, 1.50, 0, 7, 2.0, 1.50, 0.50, 0.75, 4.2, 1.0),
    "contempt": EmotionProfile(0.35, 0.10, 0.15, 0.85, 14, 6, 1.0, 0.95, 0.12, 0.50, 3.6, 1.2),
    "anxiety": EmotionProfile(-0.35, 0.20, 0.55, 1.25, -3, -2, 3.5, 1.30, 0.10, 0.45, 5.6, 1.1),
    "helplessness": EmotionProfile(-0.55, 0.20, 0.60, 0.75, 0, -8, 1.0, 0.95, 0.12, 0.35, 3.0, 1.4),
    "disappointment": EmotionProfile(-0.60, 0.10, -0.15, 0.80, -4, -6, 0.8, 0.90, 0.10, 0.40, 3.2, 1.4),
}


@dataclass(frozen=True)
class Speaker:
    """A demo actor: appearance, voice and expressive style."""

    name: str
    sex: str  # "Male" | "Female"
    f0: float  # resting pitch, Hz
    formant_scale: float
    expressiveness: float
    rate_factor: float
    smile_bias: float
    brow_bias: float
    face_aspect: float  # face ellipse height / width
    skin: tuple[int, int, int]  # RGB
    hair: tuple[int, int, int]
    background: tuple[int, int, int]
    age: int


SKIN_TONES = [(236, 200, 170), (224, 172, 135), (198, 134, 96), (160, 104, 70), (110, 72, 50)]
HAIR_COLOURS = [(40, 30, 25), (90, 60, 30), (150, 110, 60), (200, 170, 110), (70, 70, 70)]


def make_speaker(name: str, rng: np.random.Generator, sex: str | None = None) -> Speaker:
    sex = sex or ("Female" if rng.random() < 0.5 else "Male")
    background = tuple(int(v) for v in rng.integers(40, 200, size=3))
    return Speaker(
        name=name,
        sex=sex,
        f0=float(rng.uniform(180, 235) if sex == "Female" else rng.uniform(95, 135)),
        formant_scale=float(rng.uniform(1.10, 1.20) if sex == "Female" else rng.uniform(0.95, 1.02)),
        expressiveness=float(rng.uniform(0.75, 1.2)),
        rate_factor=float(rng.uniform(0.85, 1.15)),
        smile_bias=float(rng.uniform(-0.15, 0.15)),
        brow_bias=float(rng.uniform(-0.15, 0.15)),
        face_aspect=float(rng.uniform(1.18, 1.38)),
        skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))],
        hair=HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))],
        background=background,
        age=int(rng.integers(20, 70)),
    )


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def expression_track(
    profile: EmotionProfile,
    speaker: Speaker,
    intensity: float,
    times: np.ndarray,
    speech_envelope: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Per-frame expression parameters of one clip.

    The expression rises from the speaker's resting face over the first 0.4 s; ``speech_envelope``
    (per frame, 0..1, from the voice) opens the mouth with each syllable so lips and voice agree.
    """
    strength = intensity * speaker.expressiveness * rng.uniform(0.85, 1.15)
    onset = smoothstep(times / 0.4)
    drift = lambda scale: scale * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * times + rng.uniform(0, 2 * np.pi))
    track = {
        "smile": speaker.smile_bias + onset * strength * profile.smile + drift(0.05),
        "mouth_open": onset * strength * profile.mouth_open + 0.45 * speech_envelope,
        "brow_raise": speaker.brow_bias + onset * strength * profile.brow_raise + drift(0.05),
        "eye_open": 1 + onset * strength * (profile.eye_open - 1) + drift(0.03),
    }
    motion = profile.motion * (0.6 + 0.4 * strength)
    track["yaw"] = onset * strength * profile.yaw + motion * np.sin(2 * np.pi * 0.7 * times + rng.uniform(0, 6.3))
    track["pitch"] = onset * strength * profile.pitch + 0.6 * motion * np.sin(2 * np.pi * 1.1 * times + rng.uniform(0, 6.3))
    track["roll"] = 0.4 * motion * np.sin(2 * np.pi * 0.5 * times + rng.uniform(0, 6.3))
    track["eye_open"] = track["eye_open"] * _blinks(times, rng)
    track["smile"] = np.clip(track["smile"], -1, 1)
    track["brow_raise"] = np.clip(track["brow_raise"], -1, 1)
    track["mouth_open"] = np.clip(track["mouth_open"], 0, 1)
    return {name: track[name].astype(np.float32) for name in EXPRESSION_PARAMETERS}


def _blinks(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lid factor: 1 open, dipping to 0.05 for 150 ms blinks every 1.5-3.5 s."""
    factor = np.ones_like(times)
    t = rng.uniform(0.3, 1.5)
    while t < times[-1] + 0.2:
        phase = np.abs(times - t) / 0.075
        factor = np.minimum(factor, np.where(phase < 1, 0.05 + 0.95 * phase, 1.0))
        t += rng.uniform(1.5, 3.5)
    return factor
