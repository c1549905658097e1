"""PyTorch checkpoints: MCG-NJU's .pth files (canonical names already, under ``model`` or
``module``), and the pickle reader that Hugging Face's pytorch_model.bin uses too. PyTorch is not
installed with avemotion; reading one without it says how to get it or convert the file.
"""

from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path

import numpy as np

from avemotion.model.checkpoints import IGNORED_PREFIXES, Checkpoint, CheckpointError, architecture_from_shapes
from avemotion.presets import ORIGINAL_LAYER_NORM_EPS

TORCH_INSTALL_HINT = (
    "reading {path} needs PyTorch, which avemotion does not install. Install the CPU build with "
    "`pip install torch==2.13.0`, or give the Hugging Face folder with model.safetensors instead, or run "
    "`avemotion convert-weights SRC DST.weights.h5` once on a machine that has torch."
)


def read_torch_file(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(TORCH_INSTALL_HINT.format(path=path)) from None
    # weights_only keeps arbitrary pickled code out; MCG-NJU checkpoints also pickle their argparse args.
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            content = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's message is a page of advice to load it unsafely
        named = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        raise CheckpointError(
            f"{path} holds Python objects besides tensors{f' ({named.group(1)})' if named else ''}, which are not loaded: "
            "loading them could run code; save the state dict alone (torch.save(model.state_dict(), ...)) and give that"
        ) from None
    state = content
    if isinstance(content, dict):
        for key in ("model", "module", "state_dict"):
            if key in content and isinstance(content[key], dict):
                state = content[key]
                break
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return {name: value.detach().float().numpy() for name, value in state.items() if hasattr(value, "detach")}


TRANSFORMERS_PREFIXES = ("videomae.", "classifier.")  # a transformers model's state dict


def read_mcg_checkpoint(path: Path, num_heads: int | None = None) -> Checkpoint:
    raw = read_torch_file(path)
    tensors = {}
    for name, value in raw.items():
        key = name.removeprefix("module.").removeprefix("encoder.")
        if not key.startswith(IGNORED_PREFIXES):
            tensors[key] = value
    known = re.compile(r"(patch_embed\.proj|blocks\.\d+\.(norm1|norm2|attn\.(qkv|proj|q_bias|v_bias)|mlp\.fc[12])|fc_norm|norm|head)(\.|$)")
    unknown = sorted(key for key in tensors if not known.match(key))
    if any(key.startswith(TRANSFORMERS_PREFIXES) for key in unknown):
        raise CheckpointError(
            f"{path}: a transformers VideoMAE state dict (its tensors are named videomae.*): give the folder "
            "save_pretrained writes (config.json beside the weights), or its weights file in that folder"
        )
    if unknown:
        raise CheckpointError(f"{path}: tensors this VideoMAE reader does not know: {', '.join(unknown[:8])}")
    if "patch_embed.proj.weight" not in tensors:
        raise CheckpointError(f"missing tensors: {path} has no patch_embed.proj.weight (is it a VideoMAE checkpoint?)")
    architecture = architecture_from_shapes(tensors, num_heads, path, ORIGINAL_LAYER_NORM_EPS)
    return Checkpoint("mcg_pth", architecture, tensors, None, {key: key for key in tensors})
