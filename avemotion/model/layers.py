"""VideoMAE building blocks as Keras 3 layers (backend-agnostic ``keras.ops``, TensorFlow in practice).

Weight layouts follow the original network so checkpoints map one to one: the tubelet kernel is a
Conv3D kernel (t, p, p, C, D), the attention has one bias-free qkv projection plus separate q and v
biases (the k bias is zero by design), and the MLP is fc1 -> exact GELU -> fc2.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

PACKAGE = "avemotion"


def sinusoid_table(num_positions: int, dim: int) -> np.ndarray:
    """VideoMAE's fixed position table: angle = pos / 10000^(2*(j//2)/dim), sin on even, cos on odd columns.

    Computed in float64 like the reference, so the float32 table matches it bit for bit.
    """
    positions = np.arange(num_positions, dtype=np.float64)[:, None]
    exponents = 2 * (np.arange(dim) // 2) / dim
    angles = positions / np.power(10000.0, exponents)[None, :]
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return angles.astype(np.float32)


def keep_dtype(model: keras.Model, dtype) -> None:
    """Give a functional backbone the ``dtype`` policy its layers were built with: keras.Model's
    functional constructor drops a ``dtype`` argument, so the backbone's own policy (which
    get_config records and from_config rebuilds with) would stay the global one."""
    if dtype is not None:
        model.dtype_policy = dtype


@keras.saving.register_keras_serializable(package=PACKAGE)
def exact_gelu(x):
    """The erf GELU of the reference (not the tanh approximation)."""
    return keras.activations.gelu(x, approximate=False)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ImageStandardization(keras.layers.Layer):
    """(x - mean) / std per RGB channel; x is RGB in [0, 1]. No weights: the constants come from the variant."""

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(value) for value in mean)
        self.std = tuple(float(value) for value in std)

    def call(self, inputs):
        mean = ops.convert_to_tensor(np.asarray(self.mean, np.float32), dtype=inputs.dtype)
        std = ops.convert_to_tensor(np.asarray(self.std, np.float32), dtype=inputs.dtype)
        return (inputs - mean) / std

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ClipStandardization(keras.layers.Layer):
    """Each clip's frames, per RGB channel, shifted and scaled to the given mean and std.

    (batch, frames, height, width, 3) in [0, 1] -> the same shape: x -> (x - m) / s * std + mean
    with m, s the clip's own channel mean and std over all its frames and pixels. It takes out
    what is constant within a clip (lighting, white balance, skin tone, background colour), which a
    network trained from scratch on a few dozen speakers otherwise learns instead of the face.
    With the backbone's ImageNet mean and std the next ImageStandardization leaves each channel of
    the clip at mean 0 and std 1. No weights.
    """

    def __init__(self, mean, std, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(value) for value in mean)
        self.std = tuple(float(value) for value in std)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        mean = ops.convert_to_tensor(np.asarray(self.mean, np.float32), dtype=inputs.dtype)
        std = ops.convert_to_tensor(np.asarray(self.std, np.float32), dtype=inputs.dtype)
        axes = tuple(range(1, len(inputs.shape) - 1))
        clip_mean = ops.mean(inputs, axis=axes, keepdims=True)
        clip_std = ops.sqrt(ops.mean(ops.square(inputs - clip_mean), axis=axes, keepdims=True))
        # A flat clip (a black screen) keeps its level instead of having its noise blown up.
        return (inputs - clip_mean) / ops.maximum(clip_std, self.epsilon) * std + mean

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TubeletEmbedding(keras.layers.Layer):
    """Non-overlapping (tubelet, patch, patch) cubes -> tokens, in (t, h, w) order.

    Equivalent to Conv3D with kernel = stride, written as reshape + matmul (same kernel layout),
    which is faster on CPU and fuses well under XLA.
    """

    def __init__(self, hidden_size: int, patch_size: int = 16, tubelet_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size

    def build(self, input_shape):
        _, frames, height, width, channels = input_shape
        if frames % self.tubelet_size or height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"input of {frames} frames of {height}x{width} pixels does not split into tubelets of "
                f"{self.tubelet_size} frames and {self.patch_size}x{self.patch_size} patches"
            )
        self.grid = (frames // self.tubelet_size, height // self.patch_size, width // self.patch_size)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.tubelet_size, self.patch_size, self.patch_size, channels, self.hidden_size),
            initializer=keras.initializers.GlorotUniform(),
        )
        self.bias = self.add_weight(name="bias", shape=(self.hidden_size,), initializer="zeros")

    def call(self, inputs):
        t, h, w = self.grid
        tp, p = self.tubelet_size, self.patch_size
        channels = inputs.shape[-1]
        x = ops.reshape(inputs, (-1, t, tp, h, p, w, p, channels))
        x = ops.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7))
        x = ops.reshape(x, (-1, t * h * w, tp * p * p * channels))
        kernel = ops.reshape(self.kernel, (tp * p * p * channels, self.hidden_size))
        return ops.matmul(x, kernel) + self.bias

    def compute_output_shape(self, input_shape):
        _, frames, height, width, _ = input_shape
        tokens = (frames // self.tubelet_size) * (height // self.patch_size) * (width // self.patch_size)
        return (input_shape[0], tokens, self.hidden_size)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_size": self.hidden_size,
            "patch_size": self.patch_size,
            "tubelet_size": self.tubelet_size,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SinusoidPositionEmbedding(keras.layers.Layer):
    """Adds the fixed sinusoid table, sized from the token count, so any frame count or image size works."""

    def build(self, input_shape):
        self.table = sinusoid_table(input_shape[1], input_shape[2])

    def call(self, inputs):
        return inputs + ops.convert_to_tensor(self.table[None], dtype=inputs.dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops a residual branch for whole samples during training."""

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        # Drawn in float32: in bf16, keep + uniform would round and shift the drop rate.
        mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator, dtype="float32"))
        return inputs * ops.cast(mask / keep, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


# How attention is computed: "fused" is keras.ops.dot_product_attention, with which the backend runs a
# fused kernel where it has one (cuDNN / flash attention on GPUs: the attention matrix never reaches
# memory); "einsum" is softmax(QK^T / sqrt(d)) V written out, which under XLA on CPUs ran 1.7x faster
# than the fused op (benchmarks/model.py). "auto": fused where the model runs on an accelerator.
ATTENTION = "auto"


def fused_attention() -> bool:
    """Whether VideoMAE's attention uses keras.ops.dot_product_attention (see :data:`ATTENTION`)."""
    if ATTENTION not in ("auto", "fused", "einsum"):
        raise ValueError(f"ATTENTION must be 'auto', 'fused' or 'einsum', got {ATTENTION!r}")
    if ATTENTION == "auto":
        return not keras.distribution.list_devices()[0].lower().startswith("cpu")
    return ATTENTION == "fused"


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEAttention(keras.layers.Layer):
    """Multi-head self-attention with a bias-free qkv projection and separate q/v biases."""

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not a multiple of {num_heads} heads")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.qkv_bias = qkv_bias
        self.qkv = keras.layers.Dense(3 * hidden_size, use_bias=False, dtype=self.dtype_policy, name="qkv")
        self.proj = keras.layers.Dense(hidden_size, dtype=self.dtype_policy, name="proj")

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.proj.build(input_shape)
        if self.qkv_bias:
            self.q_bias = self.add_weight(name="q_bias", shape=(self.hidden_size,), initializer="zeros")
            self.v_bias = self.add_weight(name="v_bias", shape=(self.hidden_size,), initializer="zeros")

    def call(self, inputs):
        head_size = self.hidden_size // self.num_heads
        qkv = self.qkv(inputs)
        if self.qkv_bias:
            q_bias = ops.convert_to_tensor(self.q_bias)  # zeros_like of a Variable fails under JAX
            qkv = qkv + ops.concatenate([q_bias, ops.zeros_like(q_bias), self.v_bias])
        qkv = ops.reshape(qkv, (-1, inputs.shape[1], 3, self.num_heads, head_size))
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if fused_attention():
            attended = ops.dot_product_attention(query, key, value, scale=head_size**-0.5)
        else:
            # Softmax in float32, as torch autocast does, so bf16 logits do not saturate.
            scores = ops.einsum("bqhd,bkhd->bhqk", query * ops.cast(head_size**-0.5, query.dtype), key)
            weights = ops.cast(ops.softmax(ops.cast(scores, "float32"), axis=-1), value.dtype)
            attended = ops.einsum("bhqk,bkhd->bqhd", weights, value)
        attended = ops.reshape(attended, (-1, inputs.shape[1], self.hidden_size))
        return self.proj(attended)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
            "qkv_bias": self.qkv_bias,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEBlock(keras.layers.Layer):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), each with drop path."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        qkv_bias: bool = True,
        layer_norm_eps: float = 1e-6,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.qkv_bias = qkv_bias
        self.layer_norm_eps = layer_norm_eps
        self.drop_path_rate = drop_path_rate
        policy = self.dtype_policy
        self.norm1 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, dtype=policy, name="norm1")
        self.attention = VideoMAEAttention(hidden_size, num_heads, qkv_bias, dtype=policy, name="attention")
        self.norm2 = keras.layers.LayerNormalization(epsilon=layer_norm_eps, dtype=policy, name="norm2")
        self.fc1 = keras.layers.Dense(intermediate_size, activation=exact_gelu, dtype=policy, name="fc1")
        self.fc2 = keras.layers.Dense(hidden_size, dtype=policy, name="fc2")
        self.drop_path = DropPath(drop_path_rate, dtype=policy, name="drop_path")

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.attention.build(input_shape)
        self.norm2.build(input_shape)
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.intermediate_size,))

    def call(self, inputs, training=None):
        x = inputs + self.drop_path(self.attention(self.norm1(inputs)), training=training)
        return x + self.drop_path(self.fc2(self.fc1(self.norm2(x))), training=training)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "qkv_bias": self.qkv_bias,
            "layer_norm_eps": self.layer_norm_eps,
            "drop_path_rate": self.drop_path_rate,
        }
