"""Training augmentation of one clip, drawn from a stateless seed.

Video: one random resized crop (a fraction of the frame area in ``Augmentation.crop_scale``,
aspect ratio width / height in CROP_RATIO, log-uniform) and one horizontal flip decision for all T
frames of a clip, resized back to S; brightness (added, in [0, 1] units) and contrast (a factor
around the mean level of the crop) drawn once per clip; with ``Augmentation.rand_augment``,
RandAugment of the stored frames before all that (avemotion.fusion.randaugment, as VideoMAE's
order); with ``Augmentation.erasing``, random erasing as VideoMAE's fine-tuning (timm's
RandomErasing, mode pixel, one box, the same box on every frame: its ``cube``): a box of 2-33 % of
the rendered frame, aspect ratio 0.3-3.3, filled with per-pixel noise that the backbone's
standardisation turns into N(0, 1). The face features are mirrored with the frames. Audio: SpecAugment on the Mel and the MFCC (the same time masks on both,
frequency masks drawn for each).

RandAugment is applied here, per clip; the rest of the video augmentation is drawn here but applied
per batch (avemotion.fusion.render.sample_frames, erase_boxes).

Reproducible from the user's seed: each training clip gets the stateless seed (seed, position in
the stream) (clip_seed), and every random draw (crop, flip, jitter, masks) is a stateless op, so
parallel map calls give the same result as a serial run, and the same seed gives the same batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

from avemotion.face.columns import GAZE, POSE
from avemotion.fusion.randaugment import RandAugment, rand_augment
from avemotion.fusion.schema import FACE_COLUMNS
from avemotion.presets import IMAGENET_MEAN, IMAGENET_STD

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
# timm's RandomErasing defaults, which VideoMAE, MAE-DFER and HiCMAE fine-tune with (--reprob 0.25).
ERASE_AREA = (0.02, 1 / 3)
ERASE_RATIO = (0.3, 1 / 0.3)
ERASE_TRIES = 100  # VideoMAE's cube mode (its per-image erasing tries 10)

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


@dataclass(frozen=True)
class Augmentation:
    """How a training clip is augmented beyond the fixed draws above (config training.crop_scale,
    training.random_erasing, training.rand_augment). ``pixel_mean``/``pixel_std``: the backbone's
    input standardisation, which makes erased pixels N(0, 1) as timm's are after its normalisation."""

    crop_scale: tuple[float, float] = CROP_SCALE
    erasing: float = 0.0
    rand_augment: RandAugment | None = None
    pixel_mean: tuple[float, ...] = IMAGENET_MEAN
    pixel_std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self):
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must be two area fractions 0 < low <= high <= 1, got {list(self.crop_scale)}")
        if not 0 <= self.erasing <= 1:
            raise ValueError(f"erasing must be a probability in [0, 1], got {self.erasing}")


def clip_seed(seed: int, position) -> tf.Tensor:
    """The stateless seed (shape [2]) of the clip at ``position`` of a training stream."""
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, _AUGMENT_SALT], tf.int64), position)


def _split(seed, count: int):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), count))


def _uniform(seed, low=0.0, high=1.0, shape=()):
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high)


def video_params(seed, height, width, crop_scale=CROP_SCALE) -> dict:
    """One clip's crop window [top, left, height, width] (whole pixels, float32), flip and jitter."""
    seeds = _split(seed, 6)
    height, width = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    # As torchvision's RandomResizedCrop: up to CROP_TRIES draws, the first that fits the frame is
    # kept (a third of the draws do not fit a square frame: the widest or tallest of the largest).
    crop_w, crop_h = _box_sides(seeds[0], seeds[1], crop_scale, CROP_RATIO, CROP_TRIES, height * width)
    first = tf.argmax(tf.cast((crop_w <= width) & (crop_h <= height), tf.int32))  # 0 when none fits: clipped
    crop_w = tf.clip_by_value(crop_w[first], 1.0, width)
    crop_h = tf.clip_by_value(crop_h[first], 1.0, height)
    top, left = _corner(seeds[2], crop_h, crop_w, height, width)
    return {
        "window": tf.stack([top, left, crop_h, crop_w]),
        "flip": _uniform(seeds[3]) < FLIP_PROBABILITY,
        "brightness": _uniform(seeds[4], -BRIGHTNESS_DELTA, BRIGHTNESS_DELTA),
        "contrast": _uniform(seeds[5], *CONTRAST_RANGE),
    }


def _box_sides(area_seed, aspect_seed, scale, ratio, tries: int, frame_area):
    """``tries`` candidate boxes' sides (sqrt(area x aspect), sqrt(area / aspect)), rounded: the area a
    uniform fraction ``scale`` of ``frame_area``, the aspect log-uniform in ``ratio``."""
    area = _uniform(area_seed, *scale, shape=[tries]) * frame_area
    aspect = tf.exp(_uniform(aspect_seed, math.log(ratio[0]), math.log(ratio[1]), shape=[tries]))
    return tf.round(tf.sqrt(area * aspect)), tf.round(tf.sqrt(area / aspect))


def _corner(seed, box_h, box_w, height, width):
    """The top-left corner (whole pixels) of a box of ``box_h`` x ``box_w``, uniform over the places
    it fits in the frame."""
    offsets = _uniform(seed, shape=[2])
    top = tf.minimum(tf.floor(offsets[0] * (height - box_h + 1.0)), height - box_h)
    left = tf.minimum(tf.floor(offsets[1] * (width - box_w + 1.0)), width - box_w)
    return top, left


def erase_box(seed, probability: float, size: int) -> tf.Tensor:
    """The box [top, left, height, width] (whole pixels, float32) that random erasing fills in a
    clip's rendered S x S frames; all zeros where the clip is not erased.

    As timm's RandomErasing with one box: erased with ``probability``; up to ERASE_TRIES draws of an
    area in ERASE_AREA of the frame and a log-uniform aspect ratio in ERASE_RATIO, the first strictly
    inside the frame kept (none: not erased); its corner uniform over the places it fits.
    """
    seeds = _split(seed, 4)
    side = float(size)
    # timm's aspect ratio is height / width (torchvision's crop: width / height).
    box_h, box_w = _box_sides(seeds[0], seeds[1], ERASE_AREA, ERASE_RATIO, ERASE_TRIES, side * side)
    fits = (box_h < side) & (box_w < side)
    first = tf.argmax(tf.cast(fits, tf.int32))
    box_h, box_w = box_h[first], box_w[first]
    top, left = _corner(seeds[2], box_h, box_w, side, side)
    erased = fits[first] & (_uniform(seeds[3]) < probability)
    return tf.where(erased, tf.stack([top, left, box_h, box_w]), tf.zeros([4]))


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


def augment_clip(example: dict, frames, seed, augmentation: Augmentation = Augmentation()) -> dict:
    """A training view of one clip from its stateless seed (shape [2]): ``example`` a raw example
    (avemotion.fusion.records.parse_record), ``frames`` its decoded uint8 frames (T, S, S, 3).

    Returns the example with ``frames`` (after RandAugment, where asked for: before the crop, as
    VideoMAE's), its face features mirrored when the video is flipped, SpecAugment on ``mel`` and
    ``mfcc``, and the video augmentation as sample_frames' parameters ``_window``, ``_flip``,
    ``_scale`` and ``_offset`` (the frames themselves are rendered per batch); with erasing, also
    erase_boxes' ``_erase`` box and ``_erase_seed``, the seed of its noise.
    """
    example = dict(example)
    # The first two seeds as before erasing and RandAugment existed: the same seed draws the same
    # crops and masks.
    video_seed, audio_seed, erase_seed, noise_seed, policy_seed = _split(seed, 5)
    if augmentation.rand_augment is not None:
        frames = rand_augment(frames, policy_seed, augmentation.rand_augment)
    example["frames"] = frames
    params = video_params(video_seed, frames.shape[1], frames.shape[2], augmentation.crop_scale)
    scale, offset = _jitter(frames, params, 255.0)
    example["face_sequence"] = mirror_face(example["face_sequence"], params["flip"])
    example["mel"], example["mfcc"] = spec_augment(example["mel"], example["mfcc"], audio_seed)
    example.update(_window=params["window"], _flip=params["flip"], _scale=scale, _offset=offset)
    if augmentation.erasing > 0:
        example.update(_erase=erase_box(erase_seed, augmentation.erasing, frames.shape[1]), _erase_seed=noise_seed)
    return example
