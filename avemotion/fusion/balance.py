"""Resampling endless training streams of raw examples: uniform classes, and datasets in proportion.

Both work on raw examples (frames still JPEG bytes), before the shuffle buffer and any decoding, and
both draw from stateless seeds, so the same seed gives the same stream.
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf

# Salt of the class balancing's random stream, derived from the user's seed (augmentation has its own).
_BALANCE_SALT = 0x5EED_B0


def class_balanced(dataset: tf.data.Dataset, num_classes: int, seed: int) -> tf.data.Dataset:
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


def mixing_weights(datasets, dataset_weights: Mapping[str, float]) -> list[float]:
    """The sampling probability of each of ``datasets`` (the datasets that have shards, in order):
    its weight over their sum. Raises ValueError unless the weights name exactly those datasets,
    are >= 0 and have a positive sum."""
    missing, unknown = set(datasets) - set(dataset_weights), set(dataset_weights) - set(datasets)
    if missing or unknown:
        raise ValueError(
            f"dataset_weights must name exactly the datasets of the shards: no weight for {sorted(missing)}, "
            f"no shards for {sorted(unknown)}"
        )
    weights = [float(dataset_weights[name]) for name in datasets]
    if any(weight < 0 for weight in weights) or sum(weights) <= 0:
        raise ValueError(f"dataset_weights must be >= 0 with a positive sum, got {dict(dataset_weights)}")
    return [weight / sum(weights) for weight in weights]


def mixed(streams: list[tf.data.Dataset], probabilities: list[float], seed: int) -> tf.data.Dataset:
    """One stream drawing from each endless stream with the given probabilities; it ends when one of
    them does (an empty one)."""
    return tf.data.Dataset.sample_from_datasets(streams, weights=probabilities, seed=seed, stop_on_empty_dataset=True)
