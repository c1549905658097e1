"""The pooling that turns a speech encoder's per-layer hidden states into one utterance embedding.

Emotion is spread over the encoder's depth (prosody low, wording high), so SUPERB-style speech
emotion heads learn a softmax-weighted sum of every layer's hidden states instead of taking the last
one, then average over time. transformers' WhisperForAudioClassification with use_weighted_layer_sum
does the same (with its projector between the sum and the mean, which is left to the head here).
"""

from __future__ import annotations

import keras
from keras import ops

from avemotion.model.layers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class WeightedLayerPooling(keras.layers.Layer):
    """A list of L hidden states (batch, time, width) -> (batch, width): sum_l softmax(w)_l * h_l, then
    the mean over time (over the frames where ``frame_mask`` (batch, time) is true, when it is given:
    the encoder frames of the audio itself, not of padding; see whisper.encoder_frame_mask).

    The layer logits start at zero (equal weights, as transformers starts with 1 / L each) and are
    kept in float32 under mixed precision.
    """

    def build(self, input_shape):
        ranks = [len(shape) if hasattr(shape, "__len__") else None for shape in input_shape]
        if not isinstance(input_shape, (list, tuple)) or not ranks or set(ranks) != {3}:
            raise ValueError("WeightedLayerPooling takes a list of hidden states, one (batch, time, width) per layer")
        self.num_layers = len(input_shape)
        self.layer_weights = self.add_weight(name="layer_weights", shape=(self.num_layers,), initializer="zeros", dtype="float32")

    def call(self, hidden_states, frame_mask=None):
        if len(hidden_states) != self.num_layers:
            raise ValueError(f"built for {self.num_layers} hidden states, called with {len(hidden_states)}")
        dtype = hidden_states[0].dtype
        weights = ops.cast(ops.softmax(self.layer_weights), dtype)
        # Summed layer by layer rather than stacked: a stack of 33 large-v3 layers is another 250 MB per clip.
        mixed = hidden_states[0] * weights[0]
        for index in range(1, self.num_layers):
            mixed = mixed + hidden_states[index] * weights[index]
        if frame_mask is None:
            return ops.mean(mixed, axis=1)
        mask = ops.cast(frame_mask, dtype)[:, :, None]
        return ops.sum(mixed * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), ops.cast(1.0, dtype))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[0][-1])

    def layer_probabilities(self):
        """The current softmax weight of each layer (for reports: which depths the head listens to)."""
        return ops.convert_to_numpy(ops.softmax(self.layer_weights))
