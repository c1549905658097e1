"""The VideoMAE encoder as a functional Keras model (keras-hub style: the constructor builds the graph).

Input: (batch, frames, height, width, 3) float RGB in [0, 1]. Output: the pooled clip embedding
(mean over tokens, then fc_norm), shape (batch, hidden_size).

With ``extra_tokens`` N > 0 the backbone takes a second input, (batch, N, hidden_size) tokens made
outside it (early fusion's face-feature tokens), appended to the positioned patch tokens so that the
encoder attends over both. It adds no weights: pretrained checkpoints load unchanged.
"""

from __future__ import annotations

import keras
import numpy as np

from avemotion.model.layers import (
    PACKAGE,
    ImageStandardization,
    SinusoidPositionEmbedding,
    TubeletEmbedding,
    VideoMAEBlock,
    keep_dtype,
)
from avemotion.presets import IMAGENET_MEAN, IMAGENET_STD, PRETRAINED_FRAMES, PRETRAINED_IMAGE_SIZE, variant_settings


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEBackbone(keras.Model):
    def __init__(
        self,
        *,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        intermediate_size: int,
        patch_size: int = 16,
        tubelet_size: int = 2,
        num_frames: int = PRETRAINED_FRAMES,
        image_size: int = PRETRAINED_IMAGE_SIZE,
        qkv_bias: bool = True,
        layer_norm_eps: float = 1e-6,
        fc_norm_eps: float = 1e-6,
        drop_path_rate: float = 0.0,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        extra_tokens: int = 0,
        dtype=None,
        **kwargs,
    ):
        frames = keras.Input(shape=(num_frames, image_size, image_size, 3), name="frames")
        # Standardise in float32 even under mixed precision: bf16 would round the mean/std constants.
        x = ImageStandardization(image_mean, image_std, dtype="float32", name="standardize")(frames)
        x = TubeletEmbedding(hidden_size, patch_size, tubelet_size, dtype=dtype, name="patch_embed")(x)
        x = SinusoidPositionEmbedding(dtype=dtype, name="positions")(x)
        inputs = frames
        if extra_tokens:
            tokens = keras.Input(shape=(extra_tokens, hidden_size), name="tokens")
            x = keras.layers.Concatenate(axis=1, dtype=dtype, name="append_tokens")([x, tokens])
            inputs = [frames, tokens]
        # Drop path grows linearly with depth, as in the reference recipe.
        rates = np.linspace(0.0, drop_path_rate, num_layers) if num_layers else []
        for index in range(num_layers):
            x = VideoMAEBlock(
                hidden_size,
                num_heads,
                intermediate_size,
                qkv_bias=qkv_bias,
                layer_norm_eps=layer_norm_eps,
                drop_path_rate=float(rates[index]),
                dtype=dtype,
                name=f"block_{index}",
            )(x)
        x = keras.layers.GlobalAveragePooling1D(dtype=dtype, name="mean_pool")(x)
        pooled = keras.layers.LayerNormalization(epsilon=fc_norm_eps, dtype=dtype, name="fc_norm")(x)
        super().__init__(inputs=inputs, outputs=pooled, **kwargs)
        keep_dtype(self, dtype)

        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.num_frames = num_frames
        self.image_size = image_size
        self.qkv_bias = qkv_bias
        self.layer_norm_eps = layer_norm_eps
        self.fc_norm_eps = fc_norm_eps
        self.drop_path_rate = drop_path_rate
        self.image_mean = tuple(float(value) for value in image_mean)
        self.image_std = tuple(float(value) for value in image_std)
        self.extra_tokens = extra_tokens

    @classmethod
    def from_variant(cls, variant: str, **overrides) -> "VideoMAEBackbone":
        """A backbone of a registered variant (tiny, small, base, large, huge), randomly initialised."""
        return cls(**{**variant_settings(variant), **overrides})

    def get_config(self):
        # Not the functional graph: the constructor arguments rebuild it.
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "patch_size": self.patch_size,
            "tubelet_size": self.tubelet_size,
            "num_frames": self.num_frames,
            "image_size": self.image_size,
            "qkv_bias": self.qkv_bias,
            "layer_norm_eps": self.layer_norm_eps,
            "fc_norm_eps": self.fc_norm_eps,
            "drop_path_rate": self.drop_path_rate,
            "image_mean": self.image_mean,
            "image_std": self.image_std,
            "extra_tokens": self.extra_tokens,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)

    @property
    def architecture(self) -> dict:
        """The constructor arguments that define the network (no name, dtype or trainability)."""
        config = self.get_config()
        for key in ("name", "trainable", "dtype"):
            config.pop(key)
        return config
