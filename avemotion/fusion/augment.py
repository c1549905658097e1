"""Training augmentation of one clip, drawn from a stateless seed.

Video: one random resized crop (a fraction of the frame area in CROP_SCALE, aspect ratio width /
height in CROP_RATIO, log-uniform) and one horizontal flip decision for all T frames of a clip,
resized back to S; brightness (added, in [0, 1] units) and contrast (a factor around the mean level
of the crop) drawn once per clip. The face features are mirrored with the frames. Audio: SpecAugment
on the Mel and the MFCC (the same time masks on both, frequency masks drawn for each).

The video augmentation is drawn here but applied per batch (avemotion.fusion.render.sample_frames).

Reproducible from the user's seed: each training clip gets the stateless seed (seed, position in
the stream) (clip_seed), and every random draw (crop, flip, jitter, masks) is a stateless op, so
parallel map calls give the same result as a serial run, and the same seed gives the same batches.
"""

from __future__ import annotations

import math

import tensorflow as tf

from avemotion.face.columns import GAZE, POSE
from avemotion.fusion.schema import FACE_COLUMNS

CROP_SCALE = (0.6, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_TRIES = 10
FLIP_PROBABILITY = 0.5
BRIGHTNESS_DELTA = 0.15
CONTRAST_RANGE = (0.75, 1.25)
FREQUENCY_MASKS = 2
FREQUENCY_MASK_FRACTION = 0.15  # of the bands: the widest a mask can be
TIME_MASKS = 2
TIME_MASK_FRACTION = 0.10  # of the time steps

# A horizontal flip mirrors the face: head yaw and roll, x translation and gaze x change sign, and
# the two eyes swap. AUs are bilateral and unchanged.
_MIRROR_NEGATE = {"pose_Tx", "pose_Ry", "pose_Rz", "gaze_0_x", "gaze_1_x", "gaze_angle_x"}
_EYE_SWAP = {f"gaze_0_{axis}": f"gaze_1_{axis}" for axis in "xyz"}
_EYE_SWAP.update({value: key for key, value in _EYE_SWAP.items()})
assert _MIRROR_NEGATE | set(_EYE_SWAP) <= set(POSE + GAZE) <= set(FACE_COLUMNS)
MIRROR_ORDER = [FACE_COLUMNS.index(_EYE_SWAP.get(name, name)) for name in FACE_COLUMNS]
MIRROR_SIGN = [-1.0 if FACE_COLUMNS[source] in _MIRROR_NEGATE else 1.0 for source in MIRROR_ORDER]

# Salt of the augmentation's random stream, derived from the user's seed (class balancing has its own).
_AUGMENT_SALT = 0x5EED_A0


def clip_seed(seed: int, position) -> tf.Tensor:
    """The stateless seed (shape [2]) of the clip at ``position`` of a training stream."""
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, _AUGMENT_SALT], tf.int64), position)


def _split(seed, count: int):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), count))


def _uniform(seed, low=0.0, high=1.0, shape=()):
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high)


def video_params(seed, height, width) -> dict:
    """One clip's crop window [top, left, height, width] (whole pixels, float32), flip and jitter."""
    seeds = _split(seed, 6)
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    # As torchvision's RandomResizedCrop: up to CROP_TRIES draws, the first that fits the frame is
    # kept (a third of the draws do not fit a square frame: the widest or tallest of the largest).
    area = _uniform(seeds[0], *CROP_SCALE, shape=[CROP_TRIES]) * height * width
    aspect = tf.exp(_uniform(seeds[1], math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), shape=[CROP_TRIES]))
    crop_w, crop_h = tf.round(tf.sqrt(area * aspect)), tf.round(tf.sqrt(area / aspect))
    first = tf.argmax(tf.cast((crop_w <= width) & (crop_h <= height), tf.int32))  # 0 when none fits: clipped
    crop_w = tf.clip_by_value(crop_w[first], 1.0, width)
    crop_h = tf.clip_by_value(crop_h[first], 1.0, height)
    offsets = _uniform(seeds[2], shape=[2])
    top = tf.minimum(tf.floor(offsets[0] * (height - crop_h + 1.0)), height - crop_h)
    left = tf.minimum(tf.floor(offsets[1] * (width - crop_w + 1.0)), width - crop_w)
    return {
        "window": tf.stack([top, left, crop_h, crop_w]),
        "flip": _uniform(seeds[3]) < FLIP_PROBABILITY,
        "brightness": _uniform(seeds[4], -BRIGHTNESS_DELTA, BRIGHTNESS_DELTA),
        "contrast": _uniform(seeds[5], *CONTRAST_RANGE),
    }


def _jitter(images, params: dict, unit: float):
    """(scale, offset) of the clip's jitter v -> clip(v * scale + offset, 0, 1), ``unit`` = white.

    Contrast scales around the crop's mean level (estimated on every 4th pixel), brightness adds.
    """
    top, left, height, width = tf.unstack(tf.cast(params["window"], tf.int32))
    sample = images[:, top : top + height : 4, left : left + width : 4]
    mean = tf.reduce_mean(tf.cast(sample, tf.float32)) / unit
    contrast = params["contrast"]
    return contrast / unit, mean * (1.0 - contrast) + params["brightness"]


def mirror_face(face, flip) -> tf.Tensor:
    """Face features (..., FACE_FEATURES) of the mirrored video when ``flip``."""
    mirrored = tf.gather(face, MIRROR_ORDER, axis=-1) * tf.constant(MIRROR_SIGN, face.dtype)
    return tf.where(flip, mirrored, face)


def _band_mask(seed, length: int, count: int, fraction: float) -> tf.Tensor:
    """bool (length,): ``count`` masks, each of a width uniform in [0, fraction * length]."""
    widest = int(fraction * length)
    width_seed, start_seed = _split(seed, 2)
    widths = tf.random.stateless_uniform([count], width_seed, minval=0, maxval=widest + 1, dtype=tf.int32)
    starts = tf.cast(_uniform(start_seed, shape=[count]) * tf.cast(length - widths + 1, tf.float32), tf.int32)
    index = tf.range(length)[None, :]
    return tf.reduce_any((index >= starts[:, None]) & (index < (starts + widths)[:, None]), axis=0)


def spec_augment(mel, mfcc, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """SpecAugment masks on one clip's Mel (dB) and MFCC, (bands, steps) each.

    FREQUENCY_MASKS masks of up to FREQUENCY_MASK_FRACTION of the bands (drawn for each feature)
    and TIME_MASKS masks of up to TIME_MASK_FRACTION of the steps (the same on both); masked Mel
    values become the clip's minimum, masked MFCC values zero.
    """
    time_seed, mel_seed, mfcc_seed = _split(seed, 3)
    time = _band_mask(time_seed, mel.shape[-1], TIME_MASKS, TIME_MASK_FRACTION)[None, :]
    mel_hidden = _band_mask(mel_seed, mel.shape[0], FREQUENCY_MASKS, FREQUENCY_MASK_FRACTION)[:, None] | time
    mfcc_hidden = _band_mask(mfcc_seed, mfcc.shape[0], FREQUENCY_MASKS, FREQUENCY_MASK_FRACTION)[:, None] | time
    return tf.where(mel_hidden, tf.reduce_min(mel), mel), tf.where(mfcc_hidden, tf.zeros_like(mfcc), mfcc)


def augment_clip(example: dict, frames, seed) -> dict:
    """A training view of one clip from its stateless seed (shape [2]): ``example`` a raw example
    (avemotion.fusion.records.parse_record), ``frames`` its decoded uint8 frames (T, S, S, 3).

    Returns the example with its face features mirrored when the video is flipped, SpecAugment on
    ``mel`` and ``mfcc``, and the video augmentation as sample_frames' parameters ``_window``,
    ``_flip``, ``_scale`` and ``_offset`` (the frames themselves are rendered per batch).
    """
    example = dict(example)
    video_seed, audio_seed = _split(seed, 2)
    params = video_params(video_seed, frames.shape[1], frames.shape[2])
    scale, offset = _jitter(frames, params, 255.0)
    example["face_sequence"] = mirror_face(example["face_sequence"], params["flip"])
    example["mel"], example["mfcc"] = spec_augment(example["mel"], example["mfcc"], audio_seed)
    example.update(_window=params["window"], _flip=params["flip"], _scale=scale, _offset=offset)
    return example
