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
filtered (split membership, label in the experiment's set) before any JPEG is decoded
(avemotion.fusion.records). Training streams then repeat, are class-balanced and/or mixed per
dataset when asked (avemotion.fusion.balance), and shuffled (still as JPEG bytes: 256 clips of 16
frames of 224 px hold about 100 MB). Each clip is then decoded to uint8 frames and its augmentation
drawn (avemotion.fusion.augment), and clips are batched as uint8 (a quarter of the bytes of
float32). Per batch, one XLA-compiled function crops, flips, resizes and jitters all frames, and
another erases the boxes random erasing drew (avemotion.fusion.render). Evaluation streams are read
once, in file order, without augmentation.

Host memory: a batch of 8 clips at 16 x 224 px holds 77 MB of frames.
glibc's malloc serves blocks that large from fresh mmaps (and worker threads' arenas, capped at
64 MB, fall back to mmap whatever M_MMAP_MAX says), so every batch's pages are faulted in anew:
on a virtual machine that doubles the pipeline's CPU time. A training process should start with
``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824`` in its environment
(or the equivalent mallopt calls before TensorFlow is imported): freed batches are then reused.
benchmarks/train.py measures both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import tensorflow as tf

from avemotion.fusion.augment import Augmentation, augment_clip, clip_seed
from avemotion.fusion.balance import class_balanced, mixed, mixing_weights
from avemotion.fusion.mixing import AUDIO, Mixing, mix_batches
from avemotion.fusion.records import (
    AUTOTUNE,
    all_paths,
    decode_frames,
    lookup,
    membership,
    read_stream,
    select_window,
    shard_windows,
    shards_by_dataset,
)
from avemotion.fusion.render import compiled, erase_boxes, identity, sample_frames
from avemotion.fusion.views import View, apply_view

# scale_mel maps the clip's loudest value to 1 and everything TOP_DB or more below it to 0: the same
# mapping as the spectrogram PNGs (avemotion.media.spectrogram.to_image, top_db=80; a test checks it).
TOP_DB = 80.0

INPUTS = ("frames", "mel", "face_sequence", "face_present")
# AUDIO ("audio", from avemotion.fusion.mixing, which mixes it too) is emitted only when asked for:
# the clip's 16 kHz PCM bytes (B,) string, which the model layer turns into a speech encoder's
# features (avemotion.model.speech_input).
META = ("clip_id", "dataset", "speaker", "label", "fold")
RENDER = ("frames", "_window", "_flip", "_scale", "_offset")  # sample_frames' arguments, per batch
ERASE = ("_erase", "_erase_seed")  # erase_boxes' arguments, per batch (training with erasing)
_WINDOW_SALT = 0x5EED_C0  # the training stream's choice of temporal window (augmentation, balancing and mixing have theirs)


@dataclass(frozen=True)
class Training:
    """make_dataset's training stream (``training=Training(...)``; without it, one evaluation pass).

    ``seed``: the file order, shuffling, augmentation and resampling all derive from it.
    ``class_balanced``: resample each dataset's stream to uniform classes (balance.class_balanced).
    ``dataset_weights``: {dataset: weight}; each dataset's shards form one endless stream and
    balance.mixed draws from them in these proportions. The shards' own records say which dataset
    each holds (records.shard_dataset), unless make_dataset is given a mapping {dataset: paths}.
    Every dataset with clips needs a weight. With class_balanced too, classes are uniform within
    each dataset.
    ``shuffle_buffer``: how many clips (as JPEG bytes) the shuffle mixes.
    ``augment``: draw each clip's augmentation (avemotion.fusion.augment), as ``augmentation``
    says; False trains on the clips as they are.
    ``mixing``: Mixup/CutMix of the rendered batches (avemotion.fusion.mixing); the emotion target
    is then a soft distribution (batch, K) float32 instead of int32 labels.
    """

    seed: int = 0
    class_balanced: bool = False
    dataset_weights: Mapping[str, float] | None = None
    shuffle_buffer: int = 256
    augment: bool = True
    augmentation: Augmentation = Augmentation()
    mixing: Mixing | None = None

    @property
    def erasing(self) -> bool:
        return self.augment and self.augmentation.erasing > 0


def scale_mel(mel_db) -> tf.Tensor:
    """Log-Mel in dB to [0, 1] per clip: (v - (max - TOP_DB)) / TOP_DB, clipped; as the PNGs.

    The maximum is over the last two axes, so a batch (B, bands, steps) is scaled clip by clip (a
    temporal window by itself). A constant Mel (a silent clip, or a window of one that holds only
    silence) is all zeros, as silence is beside sound and as its PNG is black: scaled to its own
    maximum it was all ones, the loudest value, so the same silence read 0 or 1 by the window.
    """
    mel_db = tf.convert_to_tensor(mel_db, tf.float32)
    loudest = tf.reduce_max(mel_db, axis=[-2, -1], keepdims=True)
    quietest = tf.reduce_min(mel_db, axis=[-2, -1], keepdims=True)
    scaled = tf.clip_by_value((mel_db - (loudest - TOP_DB)) / TOP_DB, 0.0, 1.0)
    return tf.where(loudest > quietest, scaled, tf.zeros_like(scaled))


def prepare(
    raw: dict, num_frames: int, image_size: int, seed=None, view: View | None = None, augmentation: Augmentation = Augmentation()
) -> dict:
    """One raw example ready for batching: uint8 ``frames``, the Mel scaled (scale_mel), and the
    parameters with which sample_frames renders the frames (RENDER): from ``seed`` (training) the
    clip's ``augmentation`` (augment_clip), without it ``view`` (avemotion.fusion.views) or the identity."""
    frames = decode_frames(raw["frames"], num_frames, image_size)
    if seed is not None:
        example = augment_clip(raw, frames, seed, augmentation)
    else:
        example = apply_view(raw, view, image_size) if view is not None else {**raw, **identity(image_size)}
        example["frames"] = frames
    example["mel"] = scale_mel(example["mel"])
    return example


def _training_stream(paths, training: Training, num_classes: int, stream: dict) -> tf.data.Dataset:
    """The endless stream of raw training examples, resampled as ``training`` asks."""
    seed = training.seed
    if not training.dataset_weights:
        raw = read_stream(all_paths(paths), seed=seed, **stream)
        return class_balanced(raw, num_classes, seed) if training.class_balanced else raw
    groups = shards_by_dataset(paths)
    names = sorted(groups)
    probabilities = mixing_weights(names, training.dataset_weights)
    streams = []
    for index, name in enumerate(names):
        part = read_stream(groups[name], seed=seed + index, **stream)
        streams.append(class_balanced(part, num_classes, seed + index) if training.class_balanced else part)
    return mixed(streams, probabilities, seed)


def middle_window(windows: int) -> int:
    """The temporal window an evaluation stream takes unless told which: the middle one (the first of
    the two middle ones of an even number)."""
    return (int(windows) - 1) // 2


def evaluation_windows(windows: int, wanted: int | None = None) -> list[int]:
    """The temporal windows whose outputs evaluation averages among the ``windows`` a shard holds of
    each clip: all of them (``wanted`` None), or ``wanted`` of them evenly spread, the first and the
    last among them (1: the middle one), as VideoMAE tests that many temporal clips while training
    draws from all."""
    count = int(windows) if wanted is None else min(int(wanted), int(windows))
    if count < 1:
        raise ValueError(f"the test windows must be at least 1, got {wanted}")
    if count == 1:
        return [middle_window(windows)]
    return sorted({round(k * (int(windows) - 1) / (count - 1)) for k in range(count)})


def random_window(seed: int, position, windows: int) -> tf.Tensor:
    """The temporal window (int32, 0 to ``windows`` - 1) of the clip at ``position`` of a training
    stream: drawn anew for every clip the stream yields, so each epoch sees its own windows."""
    base = tf.random.experimental.stateless_fold_in(tf.constant([seed, _WINDOW_SALT], tf.int64), tf.cast(position, tf.int64))
    return tf.random.stateless_uniform([], base, minval=0, maxval=windows, dtype=tf.int32)


def make_dataset(
    paths,
    *,
    num_frames: int,
    image_size: int,
    label_names: Sequence[str],
    batch_size: int,
    training: Training | None = None,
    clip_ids: Sequence[str] | None = None,
    inputs: Sequence[str] | None = None,
    with_ids: bool = False,
    unlabelled: bool = False,
    view: View | None = None,
    window: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(inputs, targets)`` (or ``(inputs, targets, meta)`` with ``with_ids``) from
    TFRecord shards; the module docstring describes the elements.

    ``paths``: shard paths, or a mapping {dataset: paths}. Clips whose label is not in
    ``label_names`` are dropped, and so are clips whose id is not in ``clip_ids`` when given.

    ``training`` (a Training, which holds the options only a training stream has): augment,
    shuffle, repeat indefinitely (the caller sets steps_per_epoch) and drop the last partial batch.
    None: one pass in file order, every clip once, no augmentation.

    ``inputs``: the names of the model inputs to emit (a subset of INPUTS, default all).

    ``unlabelled`` (not training): keep clips whose label is not in ``label_names`` too, with
    emotion target -1 (new clips to predict have no label).

    ``view`` (not training): render every clip in this test view (avemotion.fusion.views).

    Temporal windows: where the shards hold V > 1 windows of each clip (avemotion.fusion.schema;
    records.shard_windows reads V from them), a training stream takes one window of each clip it
    yields, drawn uniformly (random_window: temporal jitter, anew each epoch), before the shuffle
    buffer (which then holds one window's JPEGs); an evaluation stream takes ``window`` (0 to V - 1;
    None: middle_window) of every clip. avemotion.model.outputs.raw_outputs averages the V windows
    (or training.test_windows of them, evaluation_windows).
    """
    inputs = tuple(INPUTS if inputs is None else inputs)
    if not set(inputs) <= {*INPUTS, AUDIO} or not inputs:
        raise ValueError(f"inputs must be some of {', '.join((*INPUTS, AUDIO))}, got {list(inputs)}")
    if training is not None and not isinstance(training, Training):
        raise TypeError(f"training must be a Training (the training stream's options) or None (evaluation), got {training!r}")
    if training is not None and unlabelled:
        raise ValueError("unlabelled clips cannot be trained on: unlabelled is for evaluation (training=None)")
    label_names = [str(name) for name in label_names]
    if not label_names or len(set(label_names)) != len(label_names):
        raise ValueError(f"label_names must be distinct and not empty, got {label_names}")
    windows = shard_windows(paths, num_frames)
    stream = dict(
        num_frames=num_frames,
        labels=lookup(label_names, -1),
        keep=membership(clip_ids),
        training=training is not None,
        unlabelled=unlabelled,
        windows=windows,
    )

    if training is not None and (view is not None or window is not None):
        raise ValueError("a test view or window is for evaluation (training=None): training draws its own crops, flips and windows")
    if window is not None and not 0 <= int(window) < windows:
        raise ValueError(f"window {window} is outside the shards' {windows} temporal window(s) per clip")
    if training is None:
        raw = read_stream(all_paths(paths), seed=0, **stream)
        if windows > 1:
            chosen = middle_window(windows) if window is None else int(window)
            raw = raw.map(lambda example: select_window(example, chosen, num_frames), num_parallel_calls=AUTOTUNE)
        clips = raw.map(lambda example: prepare(example, num_frames, image_size, view=view), num_parallel_calls=AUTOTUNE)
    else:
        raw = _training_stream(paths, training, len(label_names), stream)
        if windows > 1:
            raw = raw.enumerate().map(
                lambda position, example: select_window(example, random_window(training.seed, position, windows), num_frames),
                num_parallel_calls=AUTOTUNE,
            )
        # The stream repeats before this shuffle, so one reading never ends and needs no reshuffle;
        # without it every reading starts alike. Keras reads one batch to build its step and then
        # restarts the stream (JAX always, TensorFlow with several replicas): reshuffled, the same
        # seed would train on another order on each backend.
        raw = raw.shuffle(training.shuffle_buffer, seed=training.seed, reshuffle_each_iteration=False)

        def prepare_training(position, example):
            seed = clip_seed(training.seed, position) if training.augment else None
            return prepare(example, num_frames, image_size, seed, augmentation=training.augmentation)

        clips = raw.enumerate().map(prepare_training, num_parallel_calls=AUTOTUNE)
    wanted = ("emotion", "valence", "arousal", "frames", "mel", "face_sequence", "face_present", "_window", "_flip")
    wanted += ("_scale", "_offset") + (META if with_ids else ()) + ((AUDIO,) if AUDIO in inputs else ())
    erasing = training is not None and training.erasing
    wanted += ERASE if erasing else ()
    clips = clips.map(lambda example: {name: example[name] for name in wanted})
    batches = clips.batch(batch_size, drop_remainder=training is not None, num_parallel_calls=AUTOTUNE)
    render = compiled(sample_frames, shared=False)
    erase = compiled(erase_boxes, shared=False)

    def to_model(batch):
        model_inputs = {"mel": batch["mel"][..., None], "face_sequence": batch["face_sequence"], "face_present": batch["face_present"]}
        if AUDIO in inputs:
            model_inputs[AUDIO] = batch[AUDIO]
        if "frames" in inputs:
            model_inputs["frames"] = render(*[batch[name] for name in RENDER], image_size)
            if erasing:
                pixels = training.augmentation
                model_inputs["frames"] = erase(model_inputs["frames"], *[batch[name] for name in ERASE], pixels.pixel_mean, pixels.pixel_std)
        model_inputs = {name: model_inputs[name] for name in inputs}
        targets = {name: batch[name] for name in ("emotion", "valence", "arousal")}
        if with_ids:
            return model_inputs, targets, {name: batch[name] for name in META}
        return model_inputs, targets

    ready = batches.map(to_model, num_parallel_calls=AUTOTUNE)
    if training is not None and training.mixing is not None and training.mixing.active:
        ready = mix_batches(ready, training.mixing, training.seed, len(label_names), image_size)  # float frames: after rendering
    return ready.prefetch(AUTOTUNE)
