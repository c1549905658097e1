"""VideoMAE variants: one registry for each architecture and the input normalisation it was trained with.

Like timm's registry, a variant name fixes both the network and its preprocessing constants, so the
two never drift apart. ``tiny`` is ours (for tests and the demo on a CPU); the others are the
published VideoMAE ViT sizes (ViT-S/B/L/H, patch 16, tubelet 2, MLP ratio 4, q/v biases).

Plain data with no imports, in the core rather than in avemotion.model: the config check
(avemotion.config_checks.check_model) needs each variant's patch and tubelet sizes before any job runs,
and the core may not import the model layer.
"""

from __future__ import annotations

# VideoMAE normalises RGB in [0, 1] with the ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The original MCG-NJU code uses LayerNorm eps 1e-6 everywhere; Hugging Face checkpoints say
# otherwise in their config.json (1e-12 in the blocks) and keep torch's default 1e-5 in fc_norm.
ORIGINAL_LAYER_NORM_EPS = 1e-6

# The clip VideoMAE's published checkpoints were trained on: what a checkpoint means when it does not
# say (a file name without _16x224, a config.json without num_frames or image_size).
PRETRAINED_FRAMES = 16
PRETRAINED_IMAGE_SIZE = 224


def _variant(hidden_size: int, num_layers: int, num_heads: int) -> dict:
    return {
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "intermediate_size": 4 * hidden_size,
        "patch_size": 16,
        "tubelet_size": 2,
        "qkv_bias": True,
        "layer_norm_eps": ORIGINAL_LAYER_NORM_EPS,
        "fc_norm_eps": ORIGINAL_LAYER_NORM_EPS,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
    }


VARIANTS: dict[str, dict] = {
    "tiny": _variant(192, 4, 3),
    "small": _variant(384, 12, 6),
    "base": _variant(768, 12, 12),
    "large": _variant(1024, 24, 16),
    "huge": _variant(1280, 32, 16),
}
# The architecture keys in which weights must agree with a variant to be its weights (the rest, frames,
# image size, eps and input normalisation, travel with the weights)
FITTING_KEYS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "patch_size", "tubelet_size")


def variant_settings(name: str) -> dict:
    """The backbone keyword arguments of a named variant (a copy, safe to change)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown VideoMAE variant {name!r}; allowed values: {', '.join(VARIANTS)}")
    return dict(VARIANTS[name])


def variant_of(hidden_size: int, num_layers: int | None = None) -> str | None:
    """The registered variant with this width (and depth, when given), or None."""
    for name, settings in VARIANTS.items():
        if settings["hidden_size"] == hidden_size and num_layers in (None, settings["num_layers"]):
            return name
    return None
