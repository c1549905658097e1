"""Reading VideoMAE checkpoints of every published format into one canonical form.

Canonical form: the original MCG-NJU tensor names and PyTorch layouts (``blocks.{i}.attn.qkv.weight``
of shape (3D, D), ``patch_embed.proj.weight`` of shape (D, 3, t, p, p), ...) as float32 numpy arrays,
plus the architecture (backbone arguments) and label names. ``weights.py`` maps that form onto
the Keras model. Formats are recognised by content, not by file extension (detect_format).

This module holds what the formats share: the Checkpoint, its error, format detection and the
architecture read from tensor shapes. Each format's reader has its own module: hf_checkpoint
(Hugging Face folders, safetensors or pytorch_model.bin), torch_checkpoint (MCG-NJU .pth) and
innat_checkpoint (innat/VideoMAE Keras-2 .h5); avemotion's own .weights.h5 and .keras are Keras
files that weights.py loads directly.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from avemotion.presets import IMAGENET_MEAN, IMAGENET_STD, PRETRAINED_FRAMES, PRETRAINED_IMAGE_SIZE, VARIANTS, variant_of

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# The HDF5 attribute in which avemotion's own .weights.h5 records its architecture (written by
# VideoMAEClassifier.save_weights); defined here, where formats are told apart, without Keras.
ARCHITECTURE_ATTRIBUTE = "avemotion_videomae"
# What pre-training checkpoints carry beside the encoder; none of it is part of the encoder.
IGNORED_PREFIXES = ("decoder.", "encoder_to_decoder.", "mask_token", "pos_embed")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the network; the message says why."""


@dataclass
class Checkpoint:
    format: str
    architecture: dict  # VideoMAEBackbone arguments
    tensors: dict[str, np.ndarray]  # canonical names -> arrays
    label_names: list[str] | None = None
    source_names: dict[str, str] = field(default_factory=dict)  # canonical -> name in the file
    # canonical -> name in the file for tensors the file lacks (its format's naming); else the canonical one
    naming: Callable[[str], str] | None = None

    @property
    def num_classes(self) -> int:
        head = self.tensors.get("head.weight")
        return 0 if head is None else int(head.shape[0])

    def source_name(self, canonical: str) -> str:
        """The tensor's name in the file, also for a tensor the file lacks (for error messages)."""
        if canonical in self.source_names:
            return self.source_names[canonical]
        return self.naming(canonical) if self.naming else canonical


HF_WEIGHT_SUFFIXES = (".safetensors", ".bin")  # model.safetensors, pytorch_model.bin


def detect_format(path: Path) -> str:
    """One of hf_folder, torch, keras_archive, keras_weights, innat_h5; CheckpointError otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        if (path / "config.json").is_file():
            return "hf_folder"
        raise CheckpointError(f"{path} is a folder without config.json, so not a Hugging Face VideoMAE folder")
    if path.suffix in HF_WEIGHT_SUFFIXES and (path.parent / "config.json").is_file():
        return "hf_folder"  # save_pretrained's weights file, given instead of its folder
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head == HDF5_SIGNATURE:
        return _hdf5_flavour(path)
    if zipfile.is_zipfile(path):
        names = zipfile.ZipFile(path).namelist()
        if "config.json" in names and "model.weights.h5" in names:
            return "keras_archive"
        if any(name.endswith("data.pkl") for name in names):
            return "torch"
    elif head[:1] == b"\x80":  # legacy (pre-zip) torch pickle
        return "torch"
    raise CheckpointError(
        f"unrecognised checkpoint format: {path}. Supported: a Hugging Face VideoMAE folder (config.json + "
        "model.safetensors or pytorch_model.bin), an MCG-NJU .pth, an innat/VideoMAE Keras-2 .h5, "
        "or avemotion's own .weights.h5 / .keras"
    )


def keras_archive_class(path) -> str | None:
    """The class a Keras archive (.keras) saved, from its config.json: Keras cannot even build a model
    whose classes are not registered, so the class is judged before loading."""
    return json.loads(zipfile.ZipFile(path).read("config.json")).get("class_name")


def _hdf5_flavour(path: Path) -> str:
    import h5py  # the train extra's: the command line imports this module for every command, `avemotion index` too

    with h5py.File(path, "r") as handle:
        if ARCHITECTURE_ATTRIBUTE in handle.attrs:
            return "keras_weights"
        root = handle["model_weights"] if "model_weights" in handle else handle
        if any(re.fullmatch(r"TFBlock\d+", name) for name in root.keys()):
            return "innat_h5"
        if "vars" in handle or "layers" in handle:
            raise CheckpointError(
                f"{path} is a Keras .weights.h5 without avemotion's architecture record; save it with "
                "VideoMAEClassifier.save_weights or `avemotion convert-weights`"
            )
    raise CheckpointError(f"{path} is an HDF5 file but neither avemotion weights nor an innat/VideoMAE .h5")


def architecture_from_shapes(tensors, num_heads, path, eps, num_frames=PRETRAINED_FRAMES, image_size=PRETRAINED_IMAGE_SIZE) -> dict:
    """Everything but the head count is in the shapes; heads come from the variant registry (or the caller)."""
    hidden, channels, tubelet, patch, _ = tensors["patch_embed.proj.weight"].shape
    layers = 1 + max((int(key.split(".")[1]) for key in tensors if key.startswith("blocks.")), default=-1)
    fc1 = tensors.get("blocks.0.mlp.fc1.weight")
    if num_heads is None:
        variant = variant_of(hidden, layers) or variant_of(hidden)
        if variant is None:
            raise CheckpointError(
                f"{path}: cannot tell the number of attention heads of a {hidden}-wide network (the file does not "
                f"record it and no registered variant has that width: {', '.join(VARIANTS)}); pass num_heads"
            )
        num_heads = VARIANTS[variant]["num_heads"]
    return {
        "hidden_size": int(hidden),
        "num_layers": int(layers),
        "num_heads": int(num_heads),
        "intermediate_size": int(fc1.shape[0]) if fc1 is not None else 4 * int(hidden),
        "patch_size": int(patch),
        "tubelet_size": int(tubelet),
        "num_frames": num_frames,
        "image_size": image_size,
        "qkv_bias": "blocks.0.attn.q_bias" in tensors or layers == 0,
        "layer_norm_eps": eps,
        "fc_norm_eps": eps,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
    }
