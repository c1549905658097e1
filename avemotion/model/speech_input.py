"""A speech encoder's inputs from the input pipeline's ``audio`` (the shards' 16 kHz int16 PCM bytes):
the features of avemotion.model.speech_features, computed per batch.

They are computed here, per batch in the input pipeline, not stored in the shards: the shards then
hold audio that any encoder size or length can use (num_mel_bins is 128 for large-v3), and the
features, 320 KB per 10 s clip, never cross the shuffle buffer. The pipeline (the data layer) only
emits the bytes; this model-layer step, shared by training, evaluation and ``avemotion predict``,
turns them into what the model reads.
"""

from __future__ import annotations

import tensorflow as tf

from avemotion.fusion.dataset import AUDIO
from avemotion.model.speech_features import SPEECH_FEATURES, SPEECH_FRAMES, SPEECH_INPUTS, batch_features


def speech_shape(model) -> tuple[int, int] | None:
    """(feature frames, Mel bins) a model's speech encoder reads; None for a model without one."""
    for tensor in model.inputs:
        if tensor.name == SPEECH_FEATURES:
            return int(tensor.shape[1]), int(tensor.shape[2])
    return None


def pipeline_inputs(names) -> list[str]:
    """The input pipeline's inputs for a model's input ``names``: the PCM for the speech inputs."""
    wanted = [name for name in names if name not in SPEECH_INPUTS]
    return wanted + [AUDIO] if len(wanted) < len(names) else wanted


def with_speech_features(dataset: tf.data.Dataset, model) -> tf.data.Dataset:
    """make_dataset's batches ``(inputs, targets[, meta])`` with the PCM replaced by the model's speech
    inputs; unchanged for a model without a speech encoder."""
    shape = speech_shape(model)
    if shape is None:
        return dataset
    max_frames, bins = shape

    def convert(inputs, *rest):
        inputs = dict(inputs)
        features, frames = tf.numpy_function(
            lambda pcm: batch_features(pcm, max_frames, bins), [inputs.pop(AUDIO)], [tf.float32, tf.int32], stateful=False
        )
        inputs[SPEECH_FEATURES] = tf.ensure_shape(features, [None, max_frames, bins])
        inputs[SPEECH_FRAMES] = tf.ensure_shape(frames, [None])
        return (inputs, *rest)

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
