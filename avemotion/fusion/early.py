"""Early fusion: one clip as a sequence of 2T images, the T video frames then T spectrogram tiles.

VideoMAE sees the audio as T extra "frames". The frames are the middle frames of T equal segments
of the clip and the log-Mel covers the whole clip, so the Mel is cut into T equal windows along time
(window i = time steps [floor(i L / T), floor((i + 1) L / T)) of L): tile i is the sound of the
segment that frame i shows. Each window is resized to S x S (bilinear, half-pixel centres: the
sampling of tf.image.resize) with frequency on the vertical axis and the low bands at the bottom (as
in the spectrogram PNGs, avemotion.media.spectrogram.to_image), and repeated on the three channels.

VideoMAE embeds tubelets of 2 consecutive frames, so T must be even: then tubelet k holds either
two video frames (k < T / 2) or two tiles, never one of each.

The resampling is written as gathers and multiply-adds, which XLA fuses so that the sequence, the
largest tensor of the input pipeline, is written once (tf.image.resize compiles badly with XLA, and
op by op the concatenation and the channel repeat cost extra passes over it). The tiles are one
program (spectrogram_tiles), their concatenation with the frames another (fuse), both under
``tf.function(jit_compile=JIT_COMPILE)``; set JIT_COMPILE = False to run them op by op (same
values, slower).
"""

from __future__ import annotations

import tensorflow as tf

JIT_COMPILE = True
_COMPILED: dict = {}


def compiled(function, shared: bool = True):
    """``function`` as a tf.function, XLA-compiled when JIT_COMPILE is set.

    Shared ones are cached per function and setting. A tf.function reuses a trace made for an
    unknown batch size when later called with a known one (the result then loses its static
    shape), so an input pipeline takes its own (``shared=False``).
    """
    if not shared:
        return tf.function(function, jit_compile=JIT_COMPILE)
    key = (function, JIT_COMPILE)
    if key not in _COMPILED:
        _COMPILED[key] = tf.function(function, jit_compile=JIT_COMPILE)
    return _COMPILED[key]


def sampling_grid(start, length, size: int):
    """Where ``size`` output samples read when [start, start + length) is resized to ``size``.

    Bilinear with half-pixel centres and edge clamping, like tf.image.resize: output j reads
    position start + (j + 0.5) * length / size - 0.5, clamped to the window. ``start`` and
    ``length`` are float tensors of any shape; returns (lower, upper, weight of upper), each of
    shape start.shape + (size,), the indices int32.
    """
    start = tf.cast(start, tf.float32)[..., None]
    length = tf.cast(length, tf.float32)[..., None]
    last = start + length - 1.0
    position = start + (tf.range(size, dtype=tf.float32) + 0.5) * length / size - 0.5
    position = tf.minimum(tf.maximum(position, start), last)
    lower = tf.floor(position)
    upper = tf.minimum(lower + 1.0, last)
    return tf.cast(lower, tf.int32), tf.cast(upper, tf.int32), position - lower


def _check_even(num_frames) -> None:
    if num_frames % 2:
        raise ValueError(
            f"early fusion needs an even number of frames (VideoMAE tubelets hold 2 frames, and one must "
            f"never mix a video frame with a spectrogram tile), got {num_frames}"
        )


def grey_tiles(mel, num_tiles: int, size: int) -> tf.Tensor:
    """spectrogram_tiles without checks, for use inside compiled functions: (B, bands, steps) ->
    (B, T, S, S) float32, highest band in row 0."""
    bands, steps = mel.shape[1], mel.shape[2]
    # Rows: the bands resized to S, read backwards so that row 0 holds the highest band.
    lower, upper, weight = (tf.reverse(x, [0]) for x in sampling_grid(0.0, float(bands), size))
    rows = tf.gather(mel, lower, axis=1) * (1.0 - weight)[:, None] + tf.gather(mel, upper, axis=1) * weight[:, None]
    # Columns: window i resized to S, for every tile at once.
    bounds = [i * steps // num_tiles for i in range(num_tiles + 1)]
    starts = tf.constant(bounds[:-1], tf.float32)
    lengths = tf.constant([end - start for start, end in zip(bounds[:-1], bounds[1:])], tf.float32)
    lower, upper, weight = (tf.reshape(x, [-1]) for x in sampling_grid(starts, lengths, size))  # (T * S,)
    tiles = tf.gather(rows, lower, axis=2) * (1.0 - weight) + tf.gather(rows, upper, axis=2) * weight  # (B, S, T*S)
    return tf.transpose(tf.reshape(tiles, [-1, size, num_tiles, size]), [0, 2, 1, 3])


def _as_mel_batch(mel_scaled) -> tf.Tensor:
    mel = tf.convert_to_tensor(mel_scaled, dtype=tf.float32)
    if mel.shape.rank == 4 and mel.shape[-1] == 1:
        mel = mel[..., 0]
    if mel.shape.rank != 3:
        raise ValueError(f"expected a batch of log-Mels (B, bands, steps[, 1]), got shape {mel.shape}")
    if mel.shape[1] is None or mel.shape[2] is None:
        raise ValueError(f"the Mel's bands and time steps must be known statically, got shape {mel.shape}")
    return mel


def spectrogram_tiles(mel_scaled, num_tiles: int, size: int) -> tf.Tensor:
    """T grey tiles of a batch of scaled log-Mels: (B, bands, steps[, 1]) -> (B, T, S, S) float32.

    ``mel_scaled`` has band 0 (the lowest) in row 0, as stored in the shards; in a tile the highest
    band is row 0 and time runs left to right. A tile's values stay within its window's. One
    channel: fuse() repeats it on the three.
    """
    mel = _as_mel_batch(mel_scaled)
    if mel.shape[2] < num_tiles:
        raise ValueError(f"{num_tiles} tiles need at least {num_tiles} Mel time steps, got {mel.shape[2]}")
    return compiled(grey_tiles)(mel, num_tiles, int(size))


def fuse(frames, tiles) -> tf.Tensor:
    """(B, T, S, S, 3) frames and (B, T, S, S) tiles -> (B, 2T, S, S, 3), the tiles grey on 3 channels.

    No checks: for use inside compiled functions; early_fusion_sequence is the checked entry point.
    The tiles are computed by a separate program (spectrogram_tiles): computed here, XLA would fuse
    their gathers into the three channels' writes and do them three times.
    """
    return tf.concat([frames, tf.stack([tiles, tiles, tiles], axis=-1)], axis=1)


def early_fusion_sequence(frames, mel_scaled) -> tf.Tensor:
    """The T video frames followed by their T spectrogram tiles, (2T, S, S, 3), float32.

    Batched or not: ``frames`` (B, T, S, S, 3) with ``mel_scaled`` (B, bands, steps[, 1]) gives
    (B, 2T, S, S, 3); ``frames`` (T, S, S, 3) with ``mel_scaled`` (bands, steps[, 1]) gives
    (2T, S, S, 3). The Mel is scaled to [0, 1] already (avemotion.fusion.dataset.scale_mel), the
    frames are RGB in [0, 1]. T and S must be known statically; raises ValueError when T is odd.
    """
    frames = tf.convert_to_tensor(frames, dtype=tf.float32)
    if frames.shape.rank not in (4, 5):
        raise ValueError(f"expected frames (T, S, S, 3) or (B, T, S, S, 3), got shape {frames.shape}")
    unbatched = frames.shape.rank == 4
    mel = tf.convert_to_tensor(mel_scaled, dtype=tf.float32)
    if unbatched:
        frames, mel = frames[None], mel[None]
    mel = _as_mel_batch(mel)
    num_frames, size = frames.shape[1], frames.shape[2]
    if num_frames is None or size is None:
        raise ValueError(f"early fusion needs T and S known statically, got frames of shape {frames.shape}")
    _check_even(num_frames)
    if mel.shape[2] < num_frames:
        raise ValueError(f"{num_frames} tiles need at least {num_frames} Mel time steps, got {mel.shape[2]}")
    fused = compiled(fuse)(frames, compiled(grey_tiles)(mel, num_frames, int(size)))
    return fused[0] if unbatched else fused
