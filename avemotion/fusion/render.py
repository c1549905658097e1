"""Rendering a batch of frames for the model: crop, flip, resize and jitter in one XLA-compiled function.

Each clip's augmentation is drawn per clip (avemotion.fusion.augment) but applied here per batch, on
the uint8 frames, writing each float32 output once: on a CPU the input pipeline is limited by memory
traffic, and op-by-op TensorFlow needs about five passes over the largest tensors (see
benchmarks/train.py). Evaluation renders with the identity window, so its frames pass unchanged.
"""

from __future__ import annotations

import tensorflow as tf

# XLA-compiles the batch rendering (sample_frames, erase_boxes); False runs it op by op (slower; the
# same frames, but erase_boxes' noise differs: XLA draws its normals otherwise).
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
    shape start.shape + (size,), the indices int32. (avemotion.model.early_fusion.sampling_weights is
    the same sampling as a matrix.)
    """
    start = tf.cast(start, tf.float32)[..., None]
    length = tf.cast(length, tf.float32)[..., None]
    last = start + length - 1.0
    position = start + (tf.range(size, dtype=tf.float32) + 0.5) * length / size - 0.5
    position = tf.minimum(tf.maximum(position, start), last)
    lower = tf.floor(position)
    upper = tf.minimum(lower + 1.0, last)
    return tf.cast(lower, tf.int32), tf.cast(upper, tf.int32), position - lower


def _sample_clip(images, window, flip, scale, offset, size: int) -> tf.Tensor:
    """sample_frames for one clip: (T, H, W, 3) -> (T, S, S, 3)."""
    images = tf.cast(images, tf.float32)
    y_lower, y_upper, y_weight = sampling_grid(window[0], window[2], size)
    x_grid = sampling_grid(window[1], window[3], size)
    # Reading the columns' sample positions backwards mirrors the resized crop. (tf.cond, not
    # tf.where: XLA fuses a select into every gather, which triples the cost.)
    x_lower, x_upper, x_weight = tf.cond(flip, lambda: tuple(x[::-1] for x in x_grid), lambda: x_grid)
    rows = tf.gather(images, y_lower, axis=1) * (1.0 - y_weight)[:, None, None] + tf.gather(
        images, y_upper, axis=1
    ) * y_weight[:, None, None]
    frames = tf.gather(rows, x_lower, axis=2) * (1.0 - x_weight)[:, None] + tf.gather(rows, x_upper, axis=2) * x_weight[:, None]
    return tf.minimum(tf.maximum(frames * scale + offset, 0.0), 1.0)


def sample_frames(images, windows, flips, scales, offsets, size: int) -> tf.Tensor:
    """Crop, flip, resize and jitter a batch of clips: (B, T, H, W, 3) -> (B, T, S, S, 3) float32.

    Per clip b: ``windows[b]`` = [top, left, height, width] in pixels, the same for its T frames,
    resized to S x S like tf.image.resize (bilinear, half-pixel centres), mirrored when
    ``flips[b]``, then v -> clip(v * scales[b] + offsets[b], 0, 1). The window [0, 0, H, W] with
    H = W = S, no flip, scale 1/255 and offset 0 gives the frames unchanged, in [0, 1].
    Gathers along the clip axis (batch_dims) compile badly with XLA, so a loop (tf.map_fn) samples
    the clips one by one (as fast as unrolling it, and compiled once for any batch size).
    """
    signature = tf.TensorSpec([images.shape[1], size, size, 3], tf.float32)
    return tf.map_fn(
        lambda clip: _sample_clip(*clip, size), (images, windows, flips, scales, offsets), fn_output_signature=signature
    )


def _erase_clip(frames, box, seed, mean, std) -> tf.Tensor:
    """erase_boxes for one clip: (T, S, S, 3) with the box filled with noise, or as it was."""

    def erased():
        size = frames.shape[1]
        top, left, height, width = tf.unstack(tf.cast(box, tf.int32))
        index = tf.range(size)
        rows = (index >= top) & (index < top + height)
        columns = (index >= left) & (index < left + width)
        # Philox named: XLA's auto-selected generator on a CPU took 30 times as long (200 ms a clip).
        noise = tf.random.stateless_normal(tf.shape(frames), seed, alg="philox") * tf.constant(std) + tf.constant(mean)
        return tf.where((rows[:, None] & columns[None, :])[None, :, :, None], noise, frames)

    # Only erased clips draw noise (timm's --reprob 0.25: a quarter of them).
    return tf.cond(box[2] > 0, erased, lambda: frames)


def erase_boxes(frames, boxes, seeds, mean, std) -> tf.Tensor:
    """Random erasing of a rendered batch (B, T, S, S, 3) float32: per clip b, the pixels inside
    ``boxes[b]`` = [top, left, height, width] (height 0: none) of every frame become independent
    normal noise of channel mean ``mean`` and std ``std`` (the backbone's standardisation turns it
    into N(0, 1), timm's mode pixel), drawn from the stateless ``seeds[b]`` (shape [2])."""
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    return tf.map_fn(lambda clip: _erase_clip(*clip, mean, std), (frames, boxes, seeds), fn_output_signature=frames.dtype)


def identity(image_size: int) -> dict:
    """sample_frames' parameters that render uint8 frames of ``image_size`` unchanged, in [0, 1]
    (evaluation; augment_clip draws a training clip's)."""
    return {
        "_window": tf.constant([0.0, 0.0, image_size, image_size]),
        "_flip": tf.constant(False),
        "_scale": tf.constant(1 / 255),
        "_offset": tf.constant(0.0),
    }
