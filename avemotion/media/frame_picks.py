"""Which source frames a clip's T frames come from: segment-based sampling (the middle frame of
each of T equal segments, as TSN and VideoMAE fine-tuning sample) or dense sampling (T frames a
fixed stride apart, as VideoMAE, MAE-DFER and HiCMAE fine-tune), and V temporal windows of either
for test views. Positions are frame slots on the clip's time axis (avemotion.media.frames.frame_slots
places the frames there); reading them is avemotion.media.frames' concern.
"""

from __future__ import annotations

import numpy as np


def segment_middles(total_frames: int, num_segments: int) -> np.ndarray:
    """Index of the middle frame of each of ``num_segments`` equal segments of ``total_frames``.

    Clips shorter than ``num_segments`` frames repeat frames rather than fail (the frames stage
    flags them ``short``; ``frames.short_clips: quarantine`` leaves them out instead).
    """
    if total_frames < 1:
        raise ValueError("a clip needs at least one frame")
    edges = np.arange(num_segments) * total_frames / num_segments
    return np.minimum(np.floor(edges + total_frames / num_segments / 2).astype(int), total_frames - 1)


def dense_window(total_frames: int, num_frames: int, rate: int) -> np.ndarray:
    """``num_frames`` frames ``rate`` apart from the middle of the clip (dense sampling, as VideoMAE,
    MAE-DFER and HiCMAE fine-tune): consecutive motion at a fixed frame rate, not one frame per
    segment of the whole clip.

    A clip shorter than the window is spread over with the largest stride that fits (at least 1),
    so a short clip gives its frames in order rather than repeating its last one; a clip with
    fewer frames than ``num_frames`` repeats frames as :func:`segment_middles` does.
    """
    if total_frames < 1:
        raise ValueError("a clip needs at least one frame")
    if rate < 1:
        raise ValueError(f"the sampling rate must be at least 1, got {rate}")
    stride = max(min(float(rate), total_frames / num_frames), 1.0) if total_frames >= num_frames else total_frames / num_frames
    start = (total_frames - stride * num_frames) / 2
    return np.clip(np.floor(start + stride * (np.arange(num_frames) + 0.5)).astype(int), 0, total_frames - 1)


def window_indices(total_frames: int, num_frames: int, sampling: str = "segments", rate: int = 4, windows: int = 1) -> np.ndarray:
    """The source frames of ``windows`` temporal windows of a clip, (windows, num_frames): one
    window is :func:`sample_indices`' frames; V > 1 windows spread over the clip (temporal test views).

    ``segments``: window v takes the frame at (v + 1/2) / V of each of the equal segments (V = 1:
    the middle frames). ``dense``: V windows of :func:`dense_window`'s stride, the first at the
    clip's start and the last at its end, the others evenly between (as VideoMAE's test-time temporal
    clips); a clip no longer than one window gives the same window V times.
    """
    if windows < 1:
        raise ValueError(f"the temporal windows must be at least 1, got {windows}")
    if windows == 1:
        return sample_indices(total_frames, num_frames, sampling, rate)[None]
    if total_frames < 1:
        raise ValueError("a clip needs at least one frame")
    if sampling == "segments":
        edges = np.arange(num_frames) * total_frames / num_frames
        offsets = (np.arange(windows) + 0.5) / windows * total_frames / num_frames
        return np.minimum(np.floor(edges[None, :] + offsets[:, None]).astype(int), total_frames - 1)
    if sampling != "dense":
        raise ValueError(f"frames.sampling must be 'segments' or 'dense', got {sampling!r}")
    if rate < 1:
        raise ValueError(f"the sampling rate must be at least 1, got {rate}")
    middle = dense_window(total_frames, num_frames, rate)
    stride = max(min(float(rate), total_frames / num_frames), 1.0) if total_frames >= num_frames else total_frames / num_frames
    free = total_frames - stride * num_frames
    if free <= 0:
        return np.stack([middle] * windows)
    starts = free * np.arange(windows) / (windows - 1)
    picks = np.floor(starts[:, None] + stride * (np.arange(num_frames)[None, :] + 0.5)).astype(int)
    return np.clip(picks, 0, total_frames - 1)


def window_spans(indices: np.ndarray, total_frames: int) -> list[tuple[int, int]]:
    """(start, end) source frames, end exclusive, that each window of densely sampled ``indices``
    (windows, T) covers: half a stride either side of its first and last frames."""
    spans = []
    for window in np.atleast_2d(indices):
        step = (window[-1] - window[0]) / max(len(window) - 1, 1)
        spans.append((int(max(window[0] - step / 2, 0)), int(min(window[-1] + step / 2, total_frames - 1)) + 1))
    return spans


def sample_indices(total_frames: int, num_frames: int, sampling: str = "segments", rate: int = 4) -> np.ndarray:
    """The source frames a clip's ``num_frames`` come from: ``segments`` (the middle frame of each
    of equal segments of the whole clip) or ``dense`` (:func:`dense_window`)."""
    if sampling == "segments":
        return segment_middles(total_frames, num_frames)
    if sampling == "dense":
        return dense_window(total_frames, num_frames, rate)
    raise ValueError(f"frames.sampling must be 'segments' or 'dense', got {sampling!r}")
