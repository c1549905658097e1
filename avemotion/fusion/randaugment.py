"""RandAugment of a training clip as VideoMAE's fine-tuning draws it (timm's ``rand-m7-n4-mstd0.5-inc1``,
which MAE-DFER and HiCMAE keep): the same operations with the same arguments on every frame of a clip.

Per clip, ``ops`` times: one of the 15 operations of timm's increasing set (OPS), drawn uniformly
with replacement, applied with probability 0.5 at a magnitude drawn from N(``magnitude``,
``magnitude_std``) clipped to [0, 10], its sign drawn where it has one. Each operation computes what
timm's PIL operation computes on a uint8 RGB frame (tests compare them with PIL): the statistics of
auto contrast, equalize and contrast are each frame's own, as PIL sees one frame at a time. The
geometric ones (rotate, shear, translate) are PIL's affine maps, sampled bilinearly (PIL's bicubic,
which VideoMAE asks for, has no TensorFlow kernel) and filled with FILL where they leave the frame.

Drawn from the clip's stateless seed, like the rest of its augmentation (avemotion.fusion.augment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

OPS = (
    "auto_contrast",
    "equalize",
    "invert",
    "rotate",
    "posterize",
    "solarize",
    "solarize_add",
    "color",
    "contrast",
    "brightness",
    "sharpness",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
MAX_LEVEL = 10.0
OP_PROBABILITY = 0.5
ROTATE_DEGREES = 30.0
SHEAR = 0.3
TRANSLATE = 0.45  # of the frame's side (timm's translate_pct)
SOLARIZE_ADD = 110
SOLARIZE_ADD_THRESHOLD = 128
ENHANCE = 0.9
FILL = 128  # timm's _FILL (128, 128, 128), where an affine map leaves the frame
# PIL's SMOOTH filter (ImageEnhance.Sharpness' degenerate image)
SMOOTH = ((1, 1, 1), (1, 5, 1), (1, 1, 1))


@dataclass(frozen=True)
class RandAugment:
    """timm's ``rand-m{magnitude}-n{ops}-mstd{magnitude_std}-inc1`` (config training.rand_augment)."""

    ops: int = 4
    magnitude: float = 7.0
    magnitude_std: float = 0.5

    def __post_init__(self):
        if self.ops < 1 or not 0 <= self.magnitude <= MAX_LEVEL or self.magnitude_std < 0:
            raise ValueError(f"RandAugment needs ops >= 1, magnitude in [0, {MAX_LEVEL:g}] and magnitude_std >= 0, got {self}")


def rand_augment(frames, seed, policy: RandAugment) -> tf.Tensor:
    """One clip's uint8 frames (T, H, W, 3) after ``policy``, drawn from the stateless ``seed`` (shape [2])."""
    seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4))
    count = policy.ops
    chosen = tf.random.stateless_uniform([count], seeds[0], minval=0, maxval=len(OPS), dtype=tf.int32)
    applied = tf.random.stateless_uniform([count], seeds[1]) < OP_PROBABILITY
    levels = tf.random.stateless_normal([count], seeds[2]) * policy.magnitude_std + policy.magnitude
    levels = tf.clip_by_value(levels, 0.0, MAX_LEVEL)
    negated = tf.random.stateless_uniform([count], seeds[3]) < 0.5
    for layer in range(count):
        level, sign = levels[layer], tf.where(negated[layer], -1.0, 1.0)
        branches = [lambda name=name, level=level, sign=sign: apply_op(frames, name, level, sign) for name in OPS]
        frames = tf.cond(applied[layer], lambda: tf.switch_case(chosen[layer], branches), lambda: frames)
    return frames


def apply_op(frames, name: str, level, sign=1.0) -> tf.Tensor:
    """timm's operation ``name`` at magnitude ``level`` (0-10), ``sign`` -1 negating its argument where
    it has a sign (rotate, shear, translate, the enhancements), on uint8 frames (T, H, W, 3)."""
    frames = tf.convert_to_tensor(frames, tf.uint8)
    strength = tf.cast(level, tf.float32) / MAX_LEVEL
    sign = tf.cast(sign, tf.float32)
    height, width = frames.shape[1], frames.shape[2]
    if name == "auto_contrast":
        return auto_contrast(frames)
    if name == "equalize":
        return equalize(frames)
    if name == "invert":
        return 255 - frames
    if name == "posterize":  # keep 4 down to 0 high bits
        return posterize(frames, 4 - tf.cast(strength * 4, tf.int32))
    if name == "solarize":  # threshold 256 down to 0
        return solarize(frames, 256 - tf.cast(strength * 256, tf.int32))
    if name == "solarize_add":
        return solarize_add(frames, tf.cast(strength * SOLARIZE_ADD, tf.int32))
    factor = 1.0 + sign * strength * ENHANCE
    if name == "color":
        return blend(tf.repeat(grey(frames)[..., None], 3, axis=-1), frames, factor)
    if name == "contrast":
        # float64 as PIL's ImageStat: a float32 mean of a large frame can round the other way at .5.
        mean = tf.floor(tf.reduce_mean(tf.cast(grey(frames), tf.float64), axis=[1, 2], keepdims=True) + 0.5)
        return blend(tf.broadcast_to(mean[..., None], tf.shape(frames)), frames, factor)
    if name == "brightness":
        return blend(tf.zeros_like(frames), frames, factor)
    if name == "sharpness":
        return blend(smooth(frames), frames, factor)
    if name == "rotate":
        angle = -math.radians(1.0) * ROTATE_DEGREES * strength * sign
        cos, sin = tf.cos(angle), tf.sin(angle)
        centre_x, centre_y = width / 2, height / 2
        # PIL's Image.rotate: about the centre, the output pixel (x, y) read at matrix (x, y).
        matrix = [cos, sin, centre_x - cos * centre_x - sin * centre_y, -sin, cos, centre_y + sin * centre_x - cos * centre_y]
        return affine(frames, matrix)
    shear, shift = sign * strength * SHEAR, sign * strength * TRANSLATE
    matrix = {
        "shear_x": [1.0, shear, 0.0, 0.0, 1.0, 0.0],
        "shear_y": [1.0, 0.0, 0.0, shear, 1.0, 0.0],
        "translate_x": [1.0, 0.0, shift * width, 0.0, 1.0, 0.0],
        "translate_y": [1.0, 0.0, 0.0, 0.0, 1.0, shift * height],
    }
    if name not in matrix:
        raise ValueError(f"unknown RandAugment operation {name!r}; allowed: {', '.join(OPS)}")
    return affine(frames, matrix[name])


def _level_index(frames) -> tf.Tensor:
    """int32 like ``frames`` (T, H, W, 3): each value's place in a flat (T, 3, 256) table of its own
    frame and channel."""
    group = tf.reshape(tf.range(tf.shape(frames)[0] * 3, dtype=tf.int32), [-1, 1, 1, 3])
    return group * 256 + tf.cast(frames, tf.int32)


def _per_channel_lut(frames, table) -> tf.Tensor:
    """Each frame's channels through their own lookup table ``table`` (T, 3, 256) int32."""
    return tf.cast(tf.gather(tf.reshape(table, [-1]), _level_index(frames)), tf.uint8)


def _histograms(frames) -> tf.Tensor:
    """(T, 3, 256) int32: each frame's histogram of each channel."""
    frames_count = tf.shape(frames)[0]
    counts = tf.math.bincount(tf.reshape(_level_index(frames), [-1]), minlength=frames_count * 768, maxlength=frames_count * 768)
    return tf.reshape(counts, [frames_count, 3, 256])


def auto_contrast(frames) -> tf.Tensor:
    """PIL's ImageOps.autocontrast: each channel of each frame stretched from its lowest to its highest
    value to 0-255 (truncated), left alone where it holds one value."""
    # float64 as PIL's Python floats: float32 truncates some levels one lower.
    low = tf.cast(tf.reduce_min(frames, axis=[1, 2]), tf.float64)[..., None]  # (T, 3, 1)
    high = tf.cast(tf.reduce_max(frames, axis=[1, 2]), tf.float64)[..., None]
    levels = tf.range(256, dtype=tf.float64)
    scale = 255.0 / tf.maximum(high - low, 1.0)
    stretched = tf.clip_by_value(tf.floor(levels * scale - low * scale), 0.0, 255.0)
    table = tf.where(high > low, stretched, tf.broadcast_to(levels, tf.shape(stretched)))
    return _per_channel_lut(frames, tf.cast(table, tf.int32))


def equalize(frames) -> tf.Tensor:
    """PIL's ImageOps.equalize, per frame and channel: the lookup table from the cumulative histogram,
    step (pixels less those of the highest level held) // 255, identity where that step is 0."""
    counts = _histograms(frames)
    last = tf.gather(counts, tf.reduce_max(tf.where(counts > 0, tf.range(256), 0), axis=-1, keepdims=True), batch_dims=2)
    step = (tf.reduce_sum(counts, axis=-1, keepdims=True) - last) // 255
    # lut[i] = (step // 2 + pixels below level i) // step
    below = tf.cumsum(counts, axis=-1, exclusive=True)
    table = (step // 2 + below) // tf.maximum(step, 1)
    table = tf.where(step > 0, tf.minimum(table, 255), tf.range(256))
    return _per_channel_lut(frames, table)


def posterize(frames, bits) -> tf.Tensor:
    """PIL's ImageOps.posterize: the ``bits`` highest bits kept (all 8 and more: unchanged)."""
    bits = tf.clip_by_value(tf.cast(bits, tf.int32), 0, 8)
    mask = tf.cast(tf.bitwise.left_shift(255, 8 - bits) & 255, tf.uint8)
    return tf.bitwise.bitwise_and(frames, mask)


def solarize(frames, threshold) -> tf.Tensor:
    """PIL's ImageOps.solarize: values at or above ``threshold`` inverted."""
    return tf.where(tf.cast(frames, tf.int32) >= threshold, 255 - frames, frames)


def solarize_add(frames, added) -> tf.Tensor:
    """timm's solarize_add: ``added`` to the values below SOLARIZE_ADD_THRESHOLD, up to 255."""
    values = tf.cast(frames, tf.int32)
    return tf.cast(tf.where(values < SOLARIZE_ADD_THRESHOLD, tf.minimum(values + added, 255), values), tf.uint8)


def grey(frames) -> tf.Tensor:
    """PIL's RGB to L conversion, (T, H, W) uint8: (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
    values = tf.cast(frames, tf.int32)
    luma = values[..., 0] * 19595 + values[..., 1] * 38470 + values[..., 2] * 7471 + 0x8000
    return tf.cast(tf.bitwise.right_shift(luma, 16), tf.uint8)


def blend(degenerate, frames, factor) -> tf.Tensor:
    """PIL's Image.blend(degenerate, frames, factor) (ImageEnhance): degenerate + factor x (frames -
    degenerate), truncated to uint8 and clipped."""
    low, high = tf.cast(degenerate, tf.float32), tf.cast(frames, tf.float32)
    mixed = low + tf.cast(factor, tf.float32) * (high - low)
    return tf.cast(tf.clip_by_value(tf.floor(mixed), 0.0, 255.0), tf.uint8)


def smooth(frames) -> tf.Tensor:
    """PIL's ImageFilter.SMOOTH (3 x 3, centre 5, sum 13, rounded); the border pixels kept."""
    kernel = tf.constant(SMOOTH, tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    filtered = tf.nn.depthwise_conv2d(tf.cast(frames, tf.float32), kernel, [1, 1, 1, 1], "VALID")
    filtered = tf.cast(tf.clip_by_value(tf.floor(filtered + 0.5), 0.0, 255.0), tf.uint8)
    return tf.concat(
        [frames[:, :1], tf.concat([frames[:, 1:-1, :1], filtered, frames[:, 1:-1, -1:]], axis=2), frames[:, -1:]], axis=1
    )


def affine(frames, matrix) -> tf.Tensor:
    """PIL's Image.transform(AFFINE, (a, b, c, d, e, f)): output pixel (x, y) shows the input at
    (a x + b y + c, d x + e y + f), PIL's coordinates (pixel centres at + 0.5); bilinear, FILL outside."""
    a, b, c, d, e, f = (tf.cast(value, tf.float32) for value in matrix)
    # In TensorFlow's coordinates (pixel centres at whole numbers): x_in = a x + b y + c + (a + b - 1) / 2.
    transform = tf.stack([a, b, c + (a + b - 1) / 2, d, e, f + (d + e - 1) / 2, 0.0, 0.0])[None]
    # On uint8 frames the kernel rounds its bilinear values, as PIL does.
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=frames,
        transforms=tf.tile(transform, [tf.shape(frames)[0], 1]),
        output_shape=tf.shape(frames)[1:3],
        fill_value=float(FILL),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
