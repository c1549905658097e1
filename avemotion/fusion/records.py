"""Reading fused TFRecord shards (avemotion.fusion.schema): records to raw examples.

A raw example is the record parsed without decoding its frames (they stay JPEG bytes, which is what
the shuffle buffer holds); decode_frames turns them into uint8 frames once a clip is kept.
read_stream interleaves shards and drops, before any JPEG is decoded, the clips outside the split
and the label set; select_window takes one temporal window of a clip whose shard holds several
(shard_windows says how many). shards_by_dataset tells which dataset each shard holds from the
shard's own records (the ``dataset`` feature), not from its path.
"""

from __future__ import annotations

import collections
import struct
from pathlib import Path
from typing import Mapping, Sequence

import tensorflow as tf

from avemotion.fusion.schema import AUDIO_STEPS, FACE_FEATURES, MEL_BANDS, MFCC_COEFFICIENTS, feature_spec, record_windows

AUTOTUNE = tf.data.AUTOTUNE

# libjpeg-turbo's fast integer IDCT, within a level or two of the accurate one. Training and
# evaluation decode alike.
DCT_METHOD = "INTEGER_FAST"


# The features that hold one array per temporal window (avemotion.fusion.schema), and their shape in one.
WINDOWED = ("frames", "mel", "mfcc", "face_sequence")


def window_shapes(num_frames: int) -> dict[str, list[int]]:
    return {"frames": [num_frames], "mel": [MEL_BANDS, AUDIO_STEPS], "mfcc": [MFCC_COEFFICIENTS, AUDIO_STEPS], "face_sequence": [num_frames, FACE_FEATURES]}


def parse_record(serialized, num_frames: int, windows: int = 1) -> dict:
    """One serialised example (a scalar string tensor) to a dict of tensors, the frames still JPEG
    bytes (T,), the arrays in their schema shapes: ``mel`` (MEL_BANDS, AUDIO_STEPS) in dB, ``mfcc``
    (MFCC_COEFFICIENTS, AUDIO_STEPS), ``face_sequence`` (T, FACE_FEATURES); the scalars as the
    schema lists them. A shard of ``windows`` V > 1 temporal windows gives each of the WINDOWED
    features a leading axis of V (select_window takes one)."""
    example = tf.io.parse_single_example(serialized, feature_spec(num_frames, windows))
    lead = [windows] if windows > 1 else []
    for name, shape in window_shapes(num_frames).items():
        example[name] = tf.reshape(example[name], lead + shape)
    return example


def select_window(example: dict, window, num_frames: int) -> dict:
    """A raw example of V windows (parse_record) as one of window ``window`` (an int or a scalar
    tensor): its frames, Mel, MFCC and face sequence; the other features are the clip's."""
    example = dict(example)
    for name, shape in window_shapes(num_frames).items():
        example[name] = tf.ensure_shape(tf.gather(example[name], window), shape)
    return example


def first_record(path) -> bytes | None:
    """A TFRecord file's first record (None for an empty file), read from its framing (length,
    length's CRC, data, data's CRC; the CRCs are not checked): a few microseconds, where a
    tf.data.TFRecordDataset takes tens of milliseconds to build. A file cut anywhere inside that
    record, its header included, is an error, as tf.data reads it."""
    with open(path, "rb") as handle:
        header = handle.read(12)
        if not header:
            return None
        if len(header) < 12:
            raise ValueError(f"{path}: the TFRecord file ends inside its first record's header")
        (length,) = struct.unpack("<Q", header[:8])
        record = handle.read(length)
    if len(record) != length:
        raise ValueError(f"{path}: the TFRecord file ends inside its first record")
    return record


def shard_windows(paths, num_frames: int) -> int:
    """The temporal windows V the shards hold per clip (the same in every one; 1 when they hold no clip)."""
    found = {}
    for path in all_paths(paths):
        record = first_record(path)
        if record is not None:
            found.setdefault(record_windows(record, num_frames, path), path)
    if len(found) > 1:
        held = ", ".join(f"{path} {windows}" for windows, path in sorted(found.items()))
        raise ValueError(f"the shards hold different numbers of temporal windows per clip ({held}); fuse them with the same frames.windows")
    return next(iter(found), 1)


def decode_frames(jpegs, num_frames: int, image_size: int) -> tf.Tensor:
    """T JPEGs to uint8 (T, S, S, 3); frames stored at another size are resized (antialiased)."""
    images = tf.stack([tf.io.decode_jpeg(jpegs[i], channels=3, dct_method=DCT_METHOD) for i in range(num_frames)])
    shape = tf.shape(images)

    def resize():
        resized = tf.image.resize(images, [image_size, image_size], method="bilinear", antialias=True)
        return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)

    same = tf.logical_and(tf.equal(shape[1], image_size), tf.equal(shape[2], image_size))
    return tf.ensure_shape(tf.cond(same, lambda: images, resize), [num_frames, image_size, image_size, 3])


# ---- shards -----------------------------------------------------------------------------------


def all_paths(paths) -> list[str]:
    """Shard paths as strings: ``paths`` one path, a sequence of them or a mapping {dataset: paths}."""
    if isinstance(paths, Mapping):
        return [str(p) for files in paths.values() for p in files]
    if isinstance(paths, (str, Path)):
        return [str(paths)]
    return [str(p) for p in paths]


def shard_dataset(path) -> str | None:
    """The dataset whose clips the shard holds, read from its first record; None when it is empty.

    A shard is one chunk of one dataset's manifest (avemotion.fusion.shards.fuse_chunk writes it),
    so its first clip's ``dataset`` is every clip's.
    """
    spec = {"dataset": tf.io.FixedLenFeature([], tf.string)}
    for record in tf.data.TFRecordDataset(str(path)).take(1):
        return tf.io.parse_single_example(record, spec)["dataset"].numpy().decode()
    return None


def shards_by_dataset(paths) -> dict[str, list[str]]:
    """{dataset: its shard paths}: a mapping is taken as it is; otherwise each shard's records say
    (shard_dataset). Empty shards, which hold no clip of any dataset, are left out."""
    if isinstance(paths, Mapping):
        return {name: [str(p) for p in files] for name, files in paths.items()}
    grouped = collections.defaultdict(list)
    for path in all_paths(paths):
        dataset = shard_dataset(path)
        if dataset is not None:
            grouped[dataset].append(path)
    return dict(grouped)


# ---- selecting clips --------------------------------------------------------------------------


def lookup(keys: Sequence[str], default: int) -> tf.lookup.StaticHashTable:
    """string -> its position in ``keys`` (int64), ``default`` for any other string."""
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant([str(key) for key in keys], tf.string), tf.range(len(keys), dtype=tf.int64), tf.string, tf.int64
    )
    return tf.lookup.StaticHashTable(initializer, default_value=default)


def membership(clip_ids: Sequence[str] | None):
    """clip_id -> whether it is in ``clip_ids`` (every id when None), as a TensorFlow function."""
    if clip_ids is None:
        return lambda clip_id: tf.constant(True)
    ids = sorted({str(clip) for clip in clip_ids})
    if not ids:  # an empty split (a StaticHashTable refuses empty keys)
        return lambda clip_id: tf.constant(False)
    table = lookup(ids, -1)
    return lambda clip_id: table.lookup(clip_id) >= 0


def read_stream(
    files: list[str], *, num_frames: int, labels, keep, training: bool, seed: int, unlabelled: bool = False, windows: int = 1
) -> tf.data.Dataset:
    """Raw examples of some shards (of ``windows`` temporal windows, parse_record) with their
    ``emotion`` (the label's position in ``labels``, a lookup table; -1 outside it), filtered to the
    split (``keep``, from membership) and the label set (unless ``unlabelled``); the files shuffled
    and the stream repeated when training."""
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
    raw = records.map(lambda record: parse_record(record, num_frames, windows), num_parallel_calls=AUTOTUNE)

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
