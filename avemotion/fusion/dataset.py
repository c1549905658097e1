"""tf.data input pipeline: fused TFRecord shards (avemotion.fusion.schema) to model batches.

``make_dataset`` yields ``(inputs, targets)``, or ``(inputs, targets, meta)`` with ``with_ids=True``:

- inputs (by default; ``inputs=`` selects some): ``frames`` (B, T, S, S, 3) float32 RGB in [0, 1]
  (the model normalises); ``mel`` (B, MEL_BANDS, AUDIO_STEPS, 1) float32, the log-Mel scaled to
  [0, 1] per clip (scale_mel), band 0 (the lowest) in row 0 as stored; ``face_sequence``
  (B, T, FACE_FEATURES); ``face_present`` (B, FACE_FEATURES). Every fusion mode reads these; an
  early-fusion model builds its frames-then-spectrogram-tiles sequence itself (avemotion.model.early_fusion).
- targets: ``emotion`` int32, the index of the clip's label in the experiment's ``label_names``
  (not the dataset's own label_index); ``valence`` and ``arousal`` float32 in [-1, 1].
- meta (``with_ids=True``, for evaluation and predictions): ``clip_id``, ``dataset``, ``speaker``,
  ``label`` (strings) and ``fold`` (int64). Keras reads a third element as sample weights, so give
  ``ds.map(lambda x, y, meta: (x, y))`` to ``evaluate`` and collect the ids while iterating for
  predictions.

Order of work, cheapest first: records are read (files interleaved), parsed without decoding and
filtered (split membership, label in the experiment's set) before any JPEG is decoded. Training
streams then repeat, are class-balanced and/or mixed per dataset when asked, and shuffled (still
as JPEG bytes: 256 clips of 16 frames of 224 px hold about 100 MB). Each clip is then decoded to
uint8 frames and its augmentation drawn (crop window, flip, brightness/contrast, SpecAugment), and
clips are batched as uint8 (a quarter of the bytes of float32). Per batch, one XLA-compiled function
crops, flips, resizes and jitters all frames, writing each float32 output once: on a CPU the
input pipeline is limited by memory traffic, and op-by-op TensorFlow needs about five passes over
the largest tensors (see benchmarks/train.py).
Evaluation streams are read once, in file order, without augmentation.

Host memory: a batch of 8 clips at 16 x 224 px holds 77 MB of frames.
glibc's malloc serves blocks that large from fresh mmaps (and worker threads' arenas, capped at
64 MB, fall back to mmap whatever M_MMAP_MAX says), so every batch's pages are faulted in anew:
on a virtual machine that doubles the pipeline's CPU time. A training process should start with
``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824`` in its environment
(or the equivalent mallopt calls before TensorFlow is imported): freed batches are then reused.
benchmarks/train.py measures both.

Augmentation is reproducible from ``seed``: each training clip gets the stateless seed
(seed, position in the stream), and every random draw (crop, flip, jitter, masks, resampling) is a
stateless op, so parallel map calls give the same result as a serial run, and the same seed gives
the same batches.
"""

from __future__ import annotations

import collections
import math
from pathlib import Path
from typing import Mapping, Sequence

import tensorflow as tf

from avemotion.face.columns import GAZE, POSE
from avemotion.fusion.schema import AUDIO_STEPS, FACE_COLUMNS, FACE_FEATURES, MEL_BANDS, MFCC_COEFFICIENTS, feature_spec

AUTOTUNE = tf.data.AUTOTUNE

# scale_mel maps the clip's loudest value to 1 and everything TOP_DB or more below it to 0: the same
# mapping as the spectrogram PNGs (avemotion.media.spectrogram.to_image, top_db=80; a test checks it).
TOP_DB = 80.0

# Augmentation (training only). Video: one random resized crop (a fraction of the frame area in
# CROP_SCALE, aspect ratio width / height in CROP_RATIO, log-uniform) and one horizontal flip
# decision for all T frames of a clip, resized back to S; brightness (added, in [0, 1] units) and
# contrast (a factor around the mean level of the crop) drawn once per clip. Audio: SpecAugment on
# the Mel and the MFCC (the same time masks on both, frequency masks drawn for each).
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

# libjpeg-turbo's fast integer IDCT, within a level or two of the accurate one. Training and
# evaluation decode alike.
DCT_METHOD = "INTEGER_FAST"
INPUTS = ("frames", "mel", "face_sequence", "face_present")
META = ("clip_id", "dataset", "speaker", "label", "fold")

# A horizontal flip mirrors the face: head yaw and roll, x translation and gaze x change sign, and
# the two eyes swap. AUs are bilateral and unchanged.
_MIRROR_NEGATE = {"pose_Tx", "pose_Ry", "pose_Rz", "gaze_0_x", "gaze_1_x", "gaze_angle_x"}
_EYE_SWAP = {f"gaze_0_{axis}": f"gaze_1_{axis}" for axis in "xyz"}
_EYE_SWAP.update({value: key for key, value in _EYE_SWAP.items()})
assert _MIRROR_NEGATE | set(_EYE_SWAP) <= set(POSE + GAZE) <= set(FACE_COLUMNS)
MIRROR_ORDER = [FACE_COLUMNS.index(_EYE_SWAP.get(name, name)) for name in FACE_COLUMNS]
MIRROR_SIGN = [-1.0 if FACE_COLUMNS[source] in _MIRROR_NEGATE else 1.0 for source in MIRROR_ORDER]

# Salts of the independent random streams derived from the user's seed.
_AUGMENT_SALT, _BALANCE_SALT = 0x5EED_A0, 0x5EED_B0


# XLA-compiles the batch rendering (sample_frames); False runs it op by op (same values, slower).
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


# ---- one example ------------------------------------------------------------------------------


def _parse_raw(serialized, num_frames: int) -> dict:
    """The example's features, the frames still JPEG bytes (T,); arrays in their schema shapes."""
    example = tf.io.parse_single_example(serialized, feature_spec(num_frames))
    example["mel"] = tf.reshape(example["mel"], [MEL_BANDS, AUDIO_STEPS])
    example["mfcc"] = tf.reshape(example["mfcc"], [MFCC_COEFFICIENTS, AUDIO_STEPS])
    example["face_sequence"] = tf.reshape(example["face_sequence"], [num_frames, FACE_FEATURES])
    return example


def _decode_frames(jpegs, num_frames: int, image_size: int) -> tf.Tensor:
    """T JPEGs to uint8 (T, S, S, 3); frames stored at another size are resized (antialiased)."""
    images = tf.stack([tf.io.decode_jpeg(jpegs[i], channels=3, dct_method=DCT_METHOD) for i in range(num_frames)])
    shape = tf.shape(images)

    def resize():
        resized = tf.image.resize(images, [image_size, image_size], method="bilinear", antialias=True)
        return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)

    same = tf.logical_and(tf.equal(shape[1], image_size), tf.equal(shape[2], image_size))
    return tf.ensure_shape(tf.cond(same, lambda: images, resize), [num_frames, image_size, image_size, 3])


def parse_example(serialized, num_frames: int, image_size: int) -> dict:
    """One serialised example (a scalar string tensor) to a dict of tensors.

    ``frames`` float32 (T, S, S, 3) RGB in [0, 1] (resized if stored at another size), ``mel``
    float32 (MEL_BANDS, AUDIO_STEPS) in dB, ``mfcc`` (MFCC_COEFFICIENTS, AUDIO_STEPS),
    ``face_sequence`` (T, FACE_FEATURES), ``face_present`` (FACE_FEATURES,), the strings
    ``clip_id``, ``dataset``, ``speaker``, ``label``, the int64 ``label_index``, ``fold``,
    ``audio_missing`` and the float32 ``valence``, ``arousal``, ``face_ratio``.
    """
    example = _parse_raw(serialized, num_frames)
    example["frames"] = tf.cast(_decode_frames(example["frames"], num_frames, image_size), tf.float32) / 255.0
    return example


def scale_mel(mel_db) -> tf.Tensor:
    """Log-Mel in dB to [0, 1] per clip: (v - (max - TOP_DB)) / TOP_DB, clipped; as the PNGs.

    The maximum is over the last two axes, so a batch (B, bands, steps) is scaled clip by clip.
    A constant Mel (a silent clip) is all ones, as its PNG is all white.
    """
    mel_db = tf.convert_to_tensor(mel_db, tf.float32)
    loudest = tf.reduce_max(mel_db, axis=[-2, -1], keepdims=True)
    return tf.clip_by_value((mel_db - (loudest - TOP_DB)) / TOP_DB, 0.0, 1.0)


# ---- augmentation -----------------------------------------------------------------------------


def _split(seed, count: int):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), count))


def _uniform(seed, low=0.0, high=1.0, shape=()):
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high)


def _video_params(seed, height, width) -> dict:
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


def _mirror_face(face, flip) -> tf.Tensor:
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


def augment(example: dict, seed) -> dict:
    """A training view of a parsed example (parse_example's dict), from a stateless seed (shape [2]).

    Frames: one random resized crop and one flip decision for all T frames, resized back to their
    size, and one brightness/contrast jitter; face features mirrored with the frames; SpecAugment
    on ``mel`` and ``mfcc``. Other entries pass through. make_dataset draws and applies the same
    augmentation from the same seed (on uint8 frames, per batch).
    """
    example = dict(example)
    video_seed, audio_seed = _split(seed, 2)
    frames = tf.convert_to_tensor(example["frames"], tf.float32)
    params = _video_params(video_seed, tf.shape(frames)[1], tf.shape(frames)[2])
    scale, offset = _jitter(frames, params, 1.0)
    example["frames"] = compiled(sample_frames)(
        frames[None], params["window"][None], params["flip"][None], scale[None], offset[None], frames.shape[1]
    )[0]
    example["face_sequence"] = _mirror_face(example["face_sequence"], params["flip"])
    example["mel"], example["mfcc"] = spec_augment(example["mel"], example["mfcc"], audio_seed)
    return example


def _prepare(raw: dict, num_frames: int, image_size: int, seed=None) -> dict:
    """One clip ready for batching: uint8 frames and, from ``seed`` (training), its augmentation.

    The video augmentation is not applied here but carried as parameters (``_window``, ``_flip``,
    ``_scale``, ``_offset``) for sample_frames, which applies it to the whole batch.
    """
    example = dict(raw)
    frames = _decode_frames(raw["frames"], num_frames, image_size)
    if seed is None:
        params = {"window": tf.constant([0.0, 0.0, image_size, image_size]), "flip": tf.constant(False)}
        scale, offset = tf.constant(1 / 255), tf.constant(0.0)
    else:
        video_seed, audio_seed = _split(seed, 2)
        params = _video_params(video_seed, image_size, image_size)
        scale, offset = _jitter(frames, params, 255.0)
        example["face_sequence"] = _mirror_face(example["face_sequence"], params["flip"])
        example["mel"], example["mfcc"] = spec_augment(example["mel"], example["mfcc"], audio_seed)
    example.update(frames=frames, _window=params["window"], _flip=params["flip"], _scale=scale, _offset=offset)
    example["mel"] = scale_mel(example["mel"])
    return example


# ---- shards and labels ------------------------------------------------------------------------


def dataset_of(path) -> str:
    """The dataset a TFRecord shard belongs to, from results/{dataset}/shards/tfrecord/{chunk}.tfrecord."""
    parts = Path(path).parts
    if len(parts) < 4 or parts[-3:-1] != ("shards", "tfrecord"):
        raise ValueError(f"{path}: not a shard path of the form .../{{dataset}}/shards/tfrecord/{{chunk}}.tfrecord")
    return parts[-4]


def _by_dataset(paths) -> dict[str, list[str]]:
    if isinstance(paths, Mapping):
        return {name: [str(p) for p in files] for name, files in paths.items()}
    grouped = collections.defaultdict(list)
    for path in _all_paths(paths):
        grouped[dataset_of(path)].append(path)
    return dict(grouped)


def _all_paths(paths) -> list[str]:
    if isinstance(paths, Mapping):
        return [str(p) for files in paths.values() for p in files]
    if isinstance(paths, (str, Path)):
        return [str(paths)]
    return [str(p) for p in paths]


def _lookup(keys: Sequence[str], default: int) -> tf.lookup.StaticHashTable:
    """string -> its position in ``keys`` (int64), ``default`` for any other string."""
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant([str(key) for key in keys], tf.string), tf.range(len(keys), dtype=tf.int64), tf.string, tf.int64
    )
    return tf.lookup.StaticHashTable(initializer, default_value=default)


def _membership(clip_ids: Sequence[str] | None):
    """clip_id -> whether it is in ``clip_ids`` (every id when None), as a TensorFlow function."""
    if clip_ids is None:
        return lambda clip_id: tf.constant(True)
    ids = sorted({str(clip) for clip in clip_ids})
    if not ids:  # an empty split (a StaticHashTable refuses empty keys)
        return lambda clip_id: tf.constant(False)
    table = _lookup(ids, -1)
    return lambda clip_id: table.lookup(clip_id) >= 0


def count_outside(paths, label_names: Sequence[str], clip_ids: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """Clips that make_dataset leaves out because their label is not in ``label_names``:
    {dataset: {label: count}}, empty when every clip's label is in the set.

    Reads only the labels (``paths`` as for make_dataset; ``clip_ids`` restricts to a split).
    """
    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in ("clip_id", "dataset", "label")}
    records = tf.data.TFRecordDataset(_all_paths(paths), num_parallel_reads=AUTOTUNE)
    parsed = records.batch(1024).map(lambda batch: tf.io.parse_example(batch, spec), num_parallel_calls=AUTOTUNE)
    keep = None if clip_ids is None else {str(clip) for clip in clip_ids}
    labels = set(label_names)
    outside = collections.defaultdict(collections.Counter)
    for batch in parsed.as_numpy_iterator():
        for clip, dataset, label in zip(batch["clip_id"], batch["dataset"], batch["label"]):
            label = label.decode()
            if label not in labels and (keep is None or clip.decode() in keep):
                outside[dataset.decode()][label] += 1
    return {dataset: dict(sorted(counts.items())) for dataset, counts in sorted(outside.items())}


# ---- sampling ---------------------------------------------------------------------------------


def _class_balanced(dataset: tf.data.Dataset, num_classes: int, seed: int) -> tf.data.Dataset:
    """Resample an (endless) stream of raw examples to uniform classes, reading each record once.

    The class frequencies p_c are counted as the stream goes; a clip of class c is emitted
    floor(r) or floor(r) + 1 times with mean r = 1 / (K p_c), K the number of classes seen so far:
    frequent classes are thinned, rare ones repeated (the shuffle buffer after this spreads the
    copies, and each copy is augmented differently), and the stream keeps its length on average.
    tf.data's rejection_resample would read the files two or three times (it zips the stream with
    copies of itself) and only rejects.
    """
    base = tf.constant([seed, _BALANCE_SALT], tf.int64)

    def step(state, example):
        counts, position = state
        label = example["emotion"]
        counts = tf.tensor_scatter_nd_add(counts, label[None, None], tf.ones([1], tf.int64))
        seen = tf.cast(tf.math.count_nonzero(counts), tf.float32)
        share = tf.cast(counts[label], tf.float32) / tf.cast(tf.reduce_sum(counts), tf.float32)
        rate = 1.0 / (seen * share)
        draw = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(base, position))
        copies = tf.cast(tf.floor(rate), tf.int64) + tf.cast(draw < rate - tf.floor(rate), tf.int64)
        return (counts, position + 1), (copies, example)

    initial = (tf.zeros([num_classes], tf.int64), tf.constant(0, tf.int64))
    resampled = dataset.scan(initial, step)
    return resampled.flat_map(lambda copies, example: tf.data.Dataset.from_tensors(example).repeat(copies))


def _read_stream(
    files: list[str], *, num_frames: int, labels, keep, training: bool, seed: int, unlabelled: bool = False
) -> tf.data.Dataset:
    """Raw examples of some shards, filtered to the split and the label set (unless ``unlabelled``);
    repeated when training."""
    if not files:
        raise ValueError("no TFRecord shards given")
    cycle = min(len(files), 16)
    names = tf.data.Dataset.from_tensor_slices(sorted(files))
    if training:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    parallel = {"num_parallel_calls": min(cycle, 4), "deterministic": True} if cycle > 1 else {}
    records = names.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=1 << 22), cycle_length=cycle, block_length=1, **parallel
    )
    raw = records.map(lambda record: _parse_raw(record, num_frames), num_parallel_calls=AUTOTUNE)

    def with_emotion(example):
        example["emotion"] = tf.cast(labels.lookup(example["label"]), tf.int32)
        return example

    raw = raw.map(with_emotion)
    if unlabelled:
        raw = raw.filter(lambda example: keep(example["clip_id"]))
    else:
        raw = raw.filter(lambda example: tf.logical_and(example["emotion"] >= 0, keep(example["clip_id"])))
    # After the filter: repeat() ends at once when a pass yields nothing, instead of spinning forever.
    return raw.repeat() if training else raw


def make_dataset(
    paths,
    *,
    num_frames: int,
    image_size: int,
    label_names: Sequence[str],
    batch_size: int,
    training: bool,
    clip_ids: Sequence[str] | None = None,
    seed: int = 0,
    class_balanced: bool = False,
    dataset_weights: Mapping[str, float] | None = None,
    shuffle_buffer: int = 256,
    with_ids: bool = False,
    inputs: Sequence[str] | None = None,
    augment: bool = True,
    unlabelled: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(inputs, targets)`` (or ``(inputs, targets, meta)`` with ``with_ids``) from
    TFRecord shards; the module docstring describes the elements.

    ``paths``: shard paths (results/{dataset}/shards/tfrecord/{chunk}.tfrecord) or a mapping
    {dataset: paths}. Clips whose label is not in ``label_names`` are dropped (count them with
    count_outside), and so are clips whose id is not in ``clip_ids`` when given.

    ``training``: augment (unless ``augment`` is false), shuffle, repeat indefinitely (the caller
    sets steps_per_epoch) and drop the last partial batch. Otherwise one pass in file order, every
    clip once, no augmentation.
    ``class_balanced`` (training): resample each dataset's stream to uniform classes.
    ``dataset_weights`` (training): {dataset: weight}; each dataset's shards form one endless stream
    and tf.data.Dataset.sample_from_datasets draws from them in these proportions (the dataset names
    come from the shard paths, or the mapping's keys). Every dataset with shards needs a weight.
    With class_balanced too, classes are uniform within each dataset.

    ``inputs``: the names of the model inputs to emit (a subset of INPUTS, default all).

    ``unlabelled`` (not training): keep clips whose label is not in ``label_names`` too, with
    emotion target -1 (new clips to predict have no label).
    """
    inputs = tuple(INPUTS if inputs is None else inputs)
    if not set(inputs) <= set(INPUTS) or not inputs:
        raise ValueError(f"inputs must be some of {', '.join(INPUTS)}, got {list(inputs)}")
    if not training and (class_balanced or dataset_weights):
        raise ValueError("class_balanced and dataset_weights are training options")
    if training and unlabelled:
        raise ValueError("unlabelled clips cannot be trained on")
    label_names = [str(name) for name in label_names]
    if not label_names or len(set(label_names)) != len(label_names):
        raise ValueError(f"label_names must be distinct and not empty, got {label_names}")
    stream = dict(
        num_frames=num_frames, labels=_lookup(label_names, -1), keep=_membership(clip_ids), training=training, unlabelled=unlabelled
    )

    if dataset_weights:
        groups = _by_dataset(paths)
        missing, unknown = set(groups) - set(dataset_weights), set(dataset_weights) - set(groups)
        if missing or unknown:
            raise ValueError(
                f"dataset_weights must name exactly the datasets of the shards: no weight for {sorted(missing)}, "
                f"no shards for {sorted(unknown)}"
            )
        names = sorted(groups)
        weights = [float(dataset_weights[name]) for name in names]
        if any(weight < 0 for weight in weights) or sum(weights) <= 0:
            raise ValueError(f"dataset_weights must be >= 0 with a positive sum, got {dict(dataset_weights)}")
        streams = []
        for index, name in enumerate(names):
            part = _read_stream(groups[name], seed=seed + index, **stream)
            streams.append(_class_balanced(part, len(label_names), seed + index) if class_balanced else part)
        raw = tf.data.Dataset.sample_from_datasets(
            streams, weights=[weight / sum(weights) for weight in weights], seed=seed, stop_on_empty_dataset=True
        )
    else:
        raw = _read_stream(_all_paths(paths), seed=seed, **stream)
        if class_balanced:
            raw = _class_balanced(raw, len(label_names), seed)

    if training:
        raw = raw.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        base = tf.constant([seed, _AUGMENT_SALT], tf.int64)

        def prepare(position, example):
            clip_seed = tf.random.experimental.stateless_fold_in(base, position) if augment else None
            return _prepare(example, num_frames, image_size, clip_seed)

        clips = raw.enumerate().map(prepare, num_parallel_calls=AUTOTUNE)
    else:
        clips = raw.map(lambda example: _prepare(example, num_frames, image_size), num_parallel_calls=AUTOTUNE)
    wanted = ("emotion", "valence", "arousal", "frames", "mel", "face_sequence", "face_present")
    wanted += ("_window", "_flip", "_scale", "_offset") + (META if with_ids else ())
    clips = clips.map(lambda example: {name: example[name] for name in wanted})
    batches = clips.batch(batch_size, drop_remainder=training, num_parallel_calls=AUTOTUNE)
    render = compiled(sample_frames, shared=False)

    def to_model(batch):
        model_inputs = {"mel": batch["mel"][..., None], "face_sequence": batch["face_sequence"], "face_present": batch["face_present"]}
        if "frames" in inputs:
            model_inputs["frames"] = render(*[batch[name] for name in ("frames", "_window", "_flip", "_scale", "_offset")], image_size)
        model_inputs = {name: model_inputs[name] for name in inputs}
        targets = {name: batch[name] for name in ("emotion", "valence", "arousal")}
        if with_ids:
            return model_inputs, targets, {name: batch[name] for name in META}
        return model_inputs, targets

    return batches.map(to_model, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
