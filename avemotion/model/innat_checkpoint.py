"""innat/VideoMAE checkpoints: Keras-2 .h5 files (TFBlock groups, Keras kernel layouts) to the
canonical form of avemotion.model.checkpoints."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from avemotion.model.checkpoints import Checkpoint, CheckpointError, architecture_from_shapes
from avemotion.presets import ORIGINAL_LAYER_NORM_EPS, PRETRAINED_FRAMES, PRETRAINED_IMAGE_SIZE

# Per block, in the order of the group's weight_names attribute (Keras 2 lists a sub-model's
# children before its own weights, hence q_bias/v_bias after the qkv and proj kernels).
INNAT_BLOCK_ORDER = (
    "norm1.weight", "norm1.bias",
    "attn.qkv.weight",
    "attn.proj.weight", "attn.proj.bias",
    "attn.q_bias", "attn.v_bias",
    "norm2.weight", "norm2.bias",
    "mlp.fc1.weight", "mlp.fc1.bias",
    "mlp.fc2.weight", "mlp.fc2.bias",
)  # fmt: skip


def read_innat_h5(path: Path, num_heads: int | None = None) -> Checkpoint:
    tensors: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    with h5py.File(path, "r") as handle:
        root = handle["model_weights"] if "model_weights" in handle else handle

        def group_arrays(name):
            group = root[name]
            names = [item.decode() if isinstance(item, bytes) else str(item) for item in group.attrs.get("weight_names", [])]
            return [(f"{name}/{weight}", np.asarray(group[weight], dtype=np.float32)) for weight in names]

        def take(canonical, source, value, keras_layout=True):
            # Keras kernels are (in, out); the canonical layout is PyTorch's (out, in).
            tensors[canonical] = value.T if keras_layout and value.ndim == 2 else value
            sources[canonical] = source

        patch = group_arrays("patch_embed")
        if len(patch) != 2:
            raise CheckpointError(f"missing tensors: {path} group patch_embed has {len(patch)} weights, expected kernel and bias")
        (kernel_name, kernel), (bias_name, bias) = patch
        take("patch_embed.proj.weight", kernel_name, np.transpose(kernel, (4, 3, 0, 1, 2)), keras_layout=False)
        take("patch_embed.proj.bias", bias_name, bias)
        blocks = sorted((int(name[len("TFBlock"):]), name) for name in root.keys() if re.fullmatch(r"TFBlock\d+", name))
        for index, (_, group_name) in enumerate(blocks):
            arrays = group_arrays(group_name)
            if len(arrays) != len(INNAT_BLOCK_ORDER):
                raise CheckpointError(
                    f"missing tensors: {path} group {group_name} has {len(arrays)} weights, expected "
                    f"{len(INNAT_BLOCK_ORDER)} ({', '.join(INNAT_BLOCK_ORDER)})"
                )
            for part, (source, value) in zip(INNAT_BLOCK_ORDER, arrays):
                take(f"blocks.{index}.{part}", source, value)
        for group_name, canonical in (("fc_norm", "fc_norm"), ("head", "head")):
            if group_name in root:
                for part, (source, value) in zip(("weight", "bias"), group_arrays(group_name)):
                    take(f"{canonical}.{part}", source, value)
    # The release names say the clip shape, e.g. TFVideoMAE_L_K400_16x224_FT.h5.
    shape = re.search(r"_(\d+)x(\d+)", path.name)
    frames, size = (int(shape.group(1)), int(shape.group(2))) if shape else (PRETRAINED_FRAMES, PRETRAINED_IMAGE_SIZE)
    # innat's weights are the MCG-NJU ones, so the original eps values apply.
    architecture = architecture_from_shapes(tensors, num_heads, path, ORIGINAL_LAYER_NORM_EPS, frames, size)
    return Checkpoint("innat_h5", architecture, tensors, None, sources)
