"""Whisper's audio encoder as a Keras 3 backbone (keras.ops only, any backend), for speech emotion.

Input: log-Mel features (batch, frames, num_mel_bins), channels last (the transpose of transformers'
``input_features``), as avemotion.model.whisper_features makes them. 3000 frames are Whisper's 30 s;
fewer frames are accepted and use the first positions of the table (more than 2 * max_source_positions
are refused). Output: the hidden state of every layer, a list of encoder_layers + 1 tensors of shape
(batch, ceil(frames / 2), d_model), as transformers' ``output_hidden_states``: the embedding output,
each layer's output, and the last one after the final layer norm.

Weight layouts and names follow transformers' WhisperEncoder (conv1/conv2, embed_positions,
layers.N.self_attn.{q,k,v,out}_proj, fc1, fc2, the two layer norms, layer_norm), so a published
checkpoint maps one to one (avemotion.model.whisper_weights).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from avemotion.model.layers import PACKAGE, exact_gelu, keep_dtype

# LayerNorm eps: transformers builds every Whisper norm with torch's default.
WHISPER_LAYER_NORM_EPS = 1e-5


def _preset(d_model: int, layers: int, heads: int, num_mel_bins: int = 80) -> dict:
    return {
        "d_model": d_model,
        "encoder_layers": layers,
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": 4 * d_model,
        "num_mel_bins": num_mel_bins,
        "max_source_positions": 1500,
    }


# The encoders of the published openai/whisper-* checkpoints (their config.json values).
WHISPER_PRESETS: dict[str, dict] = {
    "tiny": _preset(384, 4, 6),
    "base": _preset(512, 6, 8),
    "small": _preset(768, 12, 12),
    "medium": _preset(1024, 24, 16),
    "large-v2": _preset(1280, 32, 20),
    "large-v3": _preset(1280, 32, 20, num_mel_bins=128),
}


def whisper_settings(name: str) -> dict:
    """The WhisperBackbone keyword arguments of a preset (a copy, safe to change)."""
    if name not in WHISPER_PRESETS:
        raise ValueError(f"unknown Whisper preset {name!r}; allowed values: {', '.join(WHISPER_PRESETS)}")
    return dict(WHISPER_PRESETS[name])


def whisper_sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> np.ndarray:
    """Whisper's position table: sin of position * timescale in the first half of the columns, cos in
    the second. Only the initial value: a checkpoint's table replaces it. Computed in float64; the
    reference's float32 timescales, multiplied by positions up to 1500, put it 1.2e-4 away at most."""
    if channels % 2:
        raise ValueError(f"sinusoidal position embeddings need an even width, not {channels}")
    increment = np.log(max_timescale) / (channels // 2 - 1)
    scaled = np.arange(length)[:, None] * np.exp(-increment * np.arange(channels // 2))[None, :]
    return np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1).astype(np.float32)


def encoder_frames(feature_frames):
    """Encoder time steps for a number of feature frames (conv2 halves it, rounding up)."""
    return (np.asarray(feature_frames) - 1) // 2 + 1


def encoder_frame_mask(feature_frames, total_feature_frames: int) -> np.ndarray:
    """(batch, encoder steps) bool: true where the step sees audio, for clips of ``feature_frames``
    frames each, padded to ``total_feature_frames`` (3000 for 30 s); WeightedLayerPooling's frame_mask."""
    valid = encoder_frames(np.atleast_1d(feature_frames))
    return np.arange(int(encoder_frames(total_feature_frames)))[None, :] < valid[:, None]


@keras.saving.register_keras_serializable(package=PACKAGE)
class WhisperPositionEmbedding(keras.layers.Layer):
    """Adds the first rows of a (max_positions, width) table, one per time step of the input. The table
    is a weight (not trainable), so a checkpoint's table is what is used, as in transformers."""

    def __init__(self, max_positions: int, **kwargs):
        super().__init__(**kwargs)
        self.max_positions = max_positions

    def _check_length(self, length) -> None:
        if length is not None and length > self.max_positions:
            raise ValueError(
                f"{length} positions after the convolutions, but the table has {self.max_positions} "
                f"(at most {2 * self.max_positions} feature frames)"
            )

    def build(self, input_shape):
        self._check_length(input_shape[1])
        table = whisper_sinusoids(self.max_positions, input_shape[-1])
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=table.shape,
            initializer=keras.initializers.Constant(table),
            trainable=False,
        )

    def call(self, inputs):
        # The model is built for any length, so a too long input is caught here (when its length is known).
        self._check_length(inputs.shape[1])
        length = ops.shape(inputs)[1]
        embeddings = ops.convert_to_tensor(self.embeddings)  # JAX's slice takes arrays, not Keras variables
        table = ops.slice(embeddings, (0, 0), (length, ops.shape(embeddings)[1]))
        return inputs + ops.cast(table, inputs.dtype)[None]

    def compute_output_shape(self, input_shape):
        # Declared, not traced: some backends trace an unknown length as an arbitrary one, maybe too long.
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_positions": self.max_positions}


@keras.saving.register_keras_serializable(package=PACKAGE)
class WhisperAttention(keras.layers.Layer):
    """Multi-head self-attention with biased q, v and out projections and a bias-free k (as Whisper)."""

    def __init__(self, d_model: int, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of {num_heads} heads")
        self.d_model = d_model
        self.num_heads = num_heads
        policy = self.dtype_policy
        self.q_proj = keras.layers.Dense(d_model, dtype=policy, name="q_proj")
        self.k_proj = keras.layers.Dense(d_model, use_bias=False, dtype=policy, name="k_proj")
        self.v_proj = keras.layers.Dense(d_model, dtype=policy, name="v_proj")
        self.out_proj = keras.layers.Dense(d_model, dtype=policy, name="out_proj")

    def build(self, input_shape):
        for projection in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            projection.build(input_shape)

    def call(self, inputs):
        head_dim = self.d_model // self.num_heads
        length = ops.shape(inputs)[1]
        split = (-1, length, self.num_heads, head_dim)
        # The query is scaled before the product, in the reference's order (it matters to Whisper's numerics).
        query = ops.reshape(self.q_proj(inputs) * ops.cast(head_dim**-0.5, inputs.dtype), split)
        key = ops.reshape(self.k_proj(inputs), split)
        value = ops.reshape(self.v_proj(inputs), split)
        scores = ops.einsum("bqhd,bkhd->bhqk", query, key)
        # Softmax in float32, as torch autocast does, so bf16 logits do not saturate.
        weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), value.dtype)
        attended = ops.einsum("bhqk,bkhd->bqhd", weights, value)
        return self.out_proj(ops.reshape(attended, (-1, length, self.d_model)))

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads}


@keras.saving.register_keras_serializable(package=PACKAGE)
class WhisperEncoderLayer(keras.layers.Layer):
    """Pre-norm block: x + attn(self_attn_layer_norm(x)), then x + fc2(gelu(fc1(final_layer_norm(x))))."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, layer_norm_eps: float = WHISPER_LAYER_NORM_EPS, **kwargs):
        super().__init__(**kwargs)
        self.d_model = d_model
        self.num_heads = num_heads
        self.ffn_dim = ffn_dim
        self.layer_norm_eps = layer_norm_eps
        policy = self.dtype_policy
        norm = keras.layers.LayerNormalization
        self.self_attn_layer_norm = norm(epsilon=layer_norm_eps, dtype=policy, name="self_attn_layer_norm")
        self.self_attn = WhisperAttention(d_model, num_heads, dtype=policy, name="self_attn")
        self.final_layer_norm = norm(epsilon=layer_norm_eps, dtype=policy, name="final_layer_norm")
        self.fc1 = keras.layers.Dense(ffn_dim, activation=exact_gelu, dtype=policy, name="fc1")
        self.fc2 = keras.layers.Dense(d_model, dtype=policy, name="fc2")

    def build(self, input_shape):
        self.self_attn_layer_norm.build(input_shape)
        self.self_attn.build(input_shape)
        self.final_layer_norm.build(input_shape)
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.ffn_dim,))

    def call(self, inputs):
        x = inputs + self.self_attn(self.self_attn_layer_norm(inputs))
        return x + self.fc2(self.fc1(self.final_layer_norm(x)))

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "ffn_dim": self.ffn_dim,
            "layer_norm_eps": self.layer_norm_eps,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class WhisperBackbone(keras.Model):
    """Whisper's encoder; ``backbone(features)`` is the list of encoder_layers + 1 hidden states."""

    def __init__(
        self,
        *,
        d_model: int,
        encoder_layers: int,
        encoder_attention_heads: int,
        encoder_ffn_dim: int,
        num_mel_bins: int = 80,
        max_source_positions: int = 1500,
        layer_norm_eps: float = WHISPER_LAYER_NORM_EPS,
        dtype=None,
        **kwargs,
    ):
        features = keras.Input(shape=(None, num_mel_bins), name="input_features")
        # torch's Conv1d(padding=1) pads both ends; Keras' "same" pads only the end at stride 2.
        x = keras.layers.ZeroPadding1D(1, dtype=dtype, name="conv1_pad")(features)
        x = keras.layers.Conv1D(d_model, 3, activation=exact_gelu, dtype=dtype, name="conv1")(x)
        x = keras.layers.ZeroPadding1D(1, dtype=dtype, name="conv2_pad")(x)
        x = keras.layers.Conv1D(d_model, 3, strides=2, activation=exact_gelu, dtype=dtype, name="conv2")(x)
        x = WhisperPositionEmbedding(max_source_positions, dtype=dtype, name="embed_positions")(x)
        hidden_states = [x]
        for index in range(encoder_layers):
            x = WhisperEncoderLayer(
                d_model, encoder_attention_heads, encoder_ffn_dim, layer_norm_eps, dtype=dtype, name=f"layers_{index}"
            )(x)
            hidden_states.append(x)
        final = keras.layers.LayerNormalization(epsilon=layer_norm_eps, dtype=dtype, name="layer_norm")
        # transformers reports the last layer's output after the final norm, in place of the raw one.
        hidden_states[-1] = final(hidden_states[-1])
        super().__init__(inputs=features, outputs=hidden_states, **kwargs)
        keep_dtype(self, dtype)

        self.d_model = d_model
        self.encoder_layers = encoder_layers
        self.encoder_attention_heads = encoder_attention_heads
        self.encoder_ffn_dim = encoder_ffn_dim
        self.num_mel_bins = num_mel_bins
        self.max_source_positions = max_source_positions
        self.layer_norm_eps = layer_norm_eps

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "WhisperBackbone":
        """The encoder of a published size (tiny, base, small, medium, large-v2, large-v3), randomly initialised."""
        return cls(**{**whisper_settings(name), **overrides})

    @property
    def architecture(self) -> dict:
        """The constructor arguments that define the network (no name, dtype or trainability)."""
        return {
            "d_model": self.d_model,
            "encoder_layers": self.encoder_layers,
            "encoder_attention_heads": self.encoder_attention_heads,
            "encoder_ffn_dim": self.encoder_ffn_dim,
            "num_mel_bins": self.num_mel_bins,
            "max_source_positions": self.max_source_positions,
            "layer_norm_eps": self.layer_norm_eps,
        }

    def get_config(self):
        # Not the functional graph: the constructor arguments rebuild it.
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            **self.architecture,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)
