"""Per-clip features for the fused shards: fixed-shape resizing, face summaries and face sequences,
audio descriptors. NumPy only; every function takes one clip's arrays.

Conventions:
- Resizing is separable: enlarging is linear interpolation with aligned end points (output index j
  of m samples input position j * (n - 1) / (m - 1) of n, so the first and last rows/columns are
  kept exactly); shrinking averages each output sample's span of the input (area resampling); an
  unchanged size is the identity.
- Face features are summarised and resampled over the frames where OpenFace's ``success`` is 1.
- A face column the backend does not estimate is NaN in the tabular shard's summaries and
  sequence, and zero (with ``face_present`` 0) in the TFRecord shard.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from avemotion.fusion.schema import FACE_COLUMNS, MEL_BANDS, MFCC_COEFFICIENTS
from avemotion.media.frame_picks import segment_middles

FACE_STATS = ("mean", "std", "min", "max")
# Log-Mel band summaries: per-band mean and std over time of the MEL_BANDS-band log-Mel, each
# averaged over groups of MEL_BANDS // MEL_SUMMARY_BANDS adjacent bands (low to high frequency).
MEL_SUMMARY_BANDS = 32
ENERGY_STATS = ("mean", "std", "max")

FACE_SUMMARY_COLUMNS = [f"face_{column}_{stat}" for column in FACE_COLUMNS for stat in FACE_STATS]
MFCC_COLUMNS = [f"mfcc_{i}_{stat}" for i in range(MFCC_COEFFICIENTS) for stat in ("mean", "std")]
MEL_COLUMNS = [f"mel_band_{i}_{stat}" for i in range(MEL_SUMMARY_BANDS) for stat in ("mean", "std")]
ENERGY_COLUMNS = [f"energy_{stat}" for stat in ENERGY_STATS]


def resize_axis(array: np.ndarray, size: int, axis: int) -> np.ndarray:
    """``array`` resampled to ``size`` samples along ``axis``: enlarged by linear interpolation
    (aligned end points), shrunk by averaging each output sample's share of the input (area
    resampling), so that a short event (a 30 ms plosive among 1,000 Mel columns shrunk to 256) is
    kept in proportion instead of falling between the points a linear resize reads."""
    array = np.asarray(array, dtype=np.float32)
    count = array.shape[axis]
    if count == size:
        return array
    if size < count:
        return _area_resize(array, size, axis)
    positions = np.arange(size) * (count - 1) / (size - 1) if size > 1 else np.zeros(1)
    lower = np.minimum(np.floor(positions).astype(int), count - 1)
    upper = np.minimum(lower + 1, count - 1)
    shape = [1] * array.ndim
    shape[axis] = size
    weight = (positions - lower).astype(np.float32).reshape(shape)
    return np.take(array, lower, axis=axis) * (1 - weight) + np.take(array, upper, axis=axis) * weight


def _area_resize(array: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Output sample j: the mean of the input over [j, j + 1) * count / size, input sample i
    covering [i, i + 1) (fractional samples weighted by their share), from a running sum."""
    count = array.shape[axis]
    moved = np.moveaxis(array, axis, 0).astype(np.float64)
    running = np.concatenate([np.zeros((1, *moved.shape[1:])), np.cumsum(moved, axis=0)])
    bounds = np.arange(size + 1) * (count / size)
    whole = np.minimum(np.floor(bounds).astype(int), count - 1)
    # The integral of the input from 0 to each bound: whole samples, then the started one's share
    shape = (-1,) + (1,) * (moved.ndim - 1)
    integral = running[whole] + (bounds - whole).reshape(shape) * moved[whole]
    means = (integral[1:] - integral[:-1]) / (count / size)
    return np.moveaxis(means, 0, axis).astype(np.float32)


def resize_2d(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A (rows, columns) array resized to ``shape``, rows then columns."""
    return resize_axis(resize_axis(array, shape[0], 0), shape[1], 1)


def face_present(table: pd.DataFrame) -> np.ndarray:
    """1.0 for each FACE_COLUMNS entry the face CSV holds, else 0.0."""
    return np.array([column in table.columns for column in FACE_COLUMNS], dtype=np.float32)


def face_values(table: pd.DataFrame) -> np.ndarray:
    """The FACE_COLUMNS of every CSV row, float64 (rows, len(FACE_COLUMNS)), NaN where absent."""
    return table.reindex(columns=FACE_COLUMNS).to_numpy(dtype=np.float64)


def successful(table: pd.DataFrame) -> np.ndarray:
    return (table["success"] == 1).to_numpy()


def face_summaries(table: pd.DataFrame) -> dict[str, float]:
    """face_success_ratio and mean/std/min/max of each FACE_COLUMNS entry over successful frames."""
    ok = successful(table)
    values = face_values(table)[ok]
    summary = {"face_success_ratio": float(ok.mean()) if len(ok) else 0.0}
    if not len(values):
        return summary | dict.fromkeys(FACE_SUMMARY_COLUMNS, np.nan)
    stats = np.stack([values.mean(0), values.std(0), values.min(0), values.max(0)], axis=1)
    return summary | dict(zip(FACE_SUMMARY_COLUMNS, stats.ravel().tolist()))


def face_sequence(
    table: pd.DataFrame, total_frames: int, steps: int, window: tuple[int, int] | None = None, slots=None
) -> np.ndarray:
    """FACE_COLUMNS over ``steps`` equal segments of the clip's ``total_frames`` video frames (the
    segments whose middle frames the frames stage sampled), float32 (steps, len(FACE_COLUMNS)).
    With ``window`` (start, end) frame slots (dense sampling), the segments divide that span
    instead and frames outside it are left out.

    Frames are placed by their ``slots`` on the clip's time axis (avemotion.media.frames.frame_slots,
    one per source frame; None: each frame in its own index's slot, a constant frame rate), so the
    segments are equal stretches of time, as the frames stage samples them and the audio runs.

    A segment is the mean of its successful frames; a segment without one takes the successful frame
    nearest its middle frame. A CSV row's frame is its ``frame`` column (1-based, as OpenFace writes
    it) or its position; rows past ``total_frames`` belong to the last segment. Without any
    successful frame (a new clip predicted without a face) every value is NaN.
    """
    ok = successful(table)
    if not ok.any():
        return np.full((steps, len(FACE_COLUMNS)), np.nan, np.float32)
    index = table["frame"].to_numpy(dtype=np.int64) - 1 if "frame" in table else np.arange(len(table))
    index, values = on_time_axis(index[ok], slots), face_values(table)[ok]
    first, inside = 0, np.ones(len(index), bool)
    if window is not None:
        first, end = int(window[0]), int(window[1])
        inside = (index >= first) & (index < end)
        if inside.any():  # else a window the face has left: the nearest face frames stand in, step by step
            index, values, inside = index[inside], values[inside], inside[inside]
        total_frames = end - first
    total = max(int(total_frames), 1)
    index = index - first
    # only frames inside the window are averaged (not every face frame before a window the face has
    # left, into its first step)
    segment = np.clip(index[inside] * steps // total, 0, steps - 1)
    sums = np.zeros((steps, len(FACE_COLUMNS)))
    np.add.at(sums, segment, values[inside])
    counts = np.bincount(segment, minlength=steps)
    out = sums / np.maximum(counts, 1)[:, None]
    for step in np.flatnonzero(counts == 0):
        middle = segment_middles(total, steps)[step]
        out[step] = values[np.argmin(np.abs(index - middle))]
    return out.astype(np.float32)


def on_time_axis(index: np.ndarray, slots) -> np.ndarray:
    """Source frame indices as frame slots on the clip's time axis (see :func:`face_sequence`);
    a frame past the slots' end keeps its distance from the last one."""
    if slots is None or len(slots) == 0:
        return index
    slots = np.asarray(slots, dtype=np.int64)
    inside = np.clip(index, 0, len(slots) - 1)
    return slots[inside] + (index - inside)


def time_window(values: np.ndarray, total_frames: int, window: tuple[int, int] | None) -> np.ndarray:
    """The columns (time steps) of ``values`` (features x time, spanning the clip's ``total_frames``
    video frames, as the audio stage aligns them) that fall in the ``window`` of frame slots (the
    time axis, avemotion.media.frames.frame_slots); all of them without a window. At least one column is kept."""
    if window is None:
        return values
    columns = values.shape[1]
    start = int(np.floor(window[0] / max(total_frames, 1) * columns))
    end = int(np.ceil(window[1] / max(total_frames, 1) * columns))
    start = min(max(start, 0), columns - 1)
    return values[:, start : max(end, start + 1)]


def mfcc_summaries(coefficients: np.ndarray) -> dict[str, float]:
    """Mean and std over time of each MFCC coefficient; NaN past the dataset's n_mfcc."""
    stats = np.full((MFCC_COEFFICIENTS, 2), np.nan)
    count = min(len(coefficients), MFCC_COEFFICIENTS)
    stats[:count, 0] = coefficients[:count].mean(1)
    stats[:count, 1] = coefficients[:count].std(1)
    return dict(zip(MFCC_COLUMNS, stats.ravel().tolist()))


def mel_summaries(mel_db: np.ndarray) -> dict[str, float]:
    """Log-Mel band means and stds over time, on MEL_BANDS bands pooled to MEL_SUMMARY_BANDS groups."""
    bands = resize_axis(mel_db, MEL_BANDS, 0).astype(np.float64)
    group = MEL_BANDS // MEL_SUMMARY_BANDS
    means = bands.mean(1).reshape(MEL_SUMMARY_BANDS, group).mean(1)
    stds = bands.std(1).reshape(MEL_SUMMARY_BANDS, group).mean(1)
    return dict(zip(MEL_COLUMNS, np.stack([means, stds], axis=1).ravel().tolist()))


def frame_energy(mel_db: np.ndarray) -> np.ndarray:
    """Per-frame log-Mel energy in dB: 10 log10 of the summed Mel power of each frame."""
    mel = np.asarray(mel_db, dtype=np.float64)
    peak = mel.max(0)
    return peak + 10 * np.log10(np.sum(10 ** ((mel - peak) / 10), axis=0))


def energy_summaries(mel_db: np.ndarray) -> dict[str, float]:
    energy = frame_energy(mel_db)
    return dict(zip(ENERGY_COLUMNS, [float(energy.mean()), float(energy.std()), float(energy.max())]))
