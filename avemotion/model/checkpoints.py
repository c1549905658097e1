"""Reading VideoMAE checkpoints of every published format into one canonical form.

Canonical form: the original MCG-NJU tensor names and PyTorch layouts (``blocks.{i}.attn.qkv.weight``
of shape (3D, D), ``patch_embed.proj.weight`` of shape (D, 3, t, p, p), ...) as float32 numpy arrays,
plus the architecture (backbone arguments) and label names. ``weights.py`` maps that form onto
the Keras model. Formats are recognised by content, not by file extension.
"""

from __future__ import annotations

import argparse
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avemotion.io import read_json
from avemotion.presets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ORIGINAL_LAYER_NORM_EPS,
    VARIANTS,
    variant_of,
)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# The HDF5 attribute in which avemotion's own .weights.h5 records its architecture (written by
# VideoMAEClassifier.save_weights); defined here, where formats are told apart, without Keras.
ARCHITECTURE_ATTRIBUTE = "avemotion_videomae"
# What pre-training checkpoints carry beside the encoder; none of it is part of the encoder.
IGNORED_PREFIXES = ("decoder.", "encoder_to_decoder.", "mask_token", "pos_embed")
TORCH_INSTALL_HINT = (
    "reading {path} needs PyTorch, which avemotion does not install. Install the CPU build with "
    "`pip install torch==2.13.0`, or give the Hugging Face folder with model.safetensors instead, or run "
    "`avemotion convert-weights SRC DST.weights.h5` once on a machine that has torch."
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the network; the message says why."""


@dataclass
class Checkpoint:
    format: str
    architecture: dict  # VideoMAEBackbone arguments
    tensors: dict[str, np.ndarray]  # canonical names -> arrays
    label_names: list[str] | None = None
    source_names: dict[str, str] = field(default_factory=dict)  # canonical -> name in the file

    @property
    def num_classes(self) -> int:
        head = self.tensors.get("head.weight")
        return 0 if head is None else int(head.shape[0])

    def source_name(self, canonical: str) -> str:
        """The tensor's name in the file, also for a tensor the file lacks (for error messages)."""
        if canonical in self.source_names:
            return self.source_names[canonical]
        return hf_name(canonical) if self.format == "hf_folder" else canonical


def detect_format(path: Path) -> str:
    """One of hf_folder, torch, keras_archive, keras_weights, innat_h5; CheckpointError otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        if (path / "config.json").is_file():
            return "hf_folder"
        raise CheckpointError(f"{path} is a folder without config.json, so not a Hugging Face VideoMAE folder")
    if path.name.endswith(".safetensors") and (path.parent / "config.json").is_file():
        return "hf_folder"
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


def _hdf5_flavour(path: Path) -> str:
    import h5py

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


# ---------------------------------------------------------------- Hugging Face folder

HF_BLOCK_KEYS = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "attention.attention.q_bias": "attn.q_bias",
    "attention.attention.v_bias": "attn.v_bias",
    "attention.attention.query.bias": "attn.q_bias",
    "attention.attention.value.bias": "attn.v_bias",
}


def read_hf_folder(path: Path) -> Checkpoint:
    folder = path if path.is_dir() else path.parent
    config = read_json(folder / "config.json")
    if config.get("model_type", "videomae") != "videomae":
        raise CheckpointError(f"{folder}/config.json describes a {config.get('model_type')!r} model, not videomae")
    activation = config.get("hidden_act", "gelu")
    if activation != "gelu":
        raise CheckpointError(f"{folder}: hidden_act {activation!r} is not supported (VideoMAE uses exact gelu)")
    raw = _read_hf_tensors(folder if path.is_dir() else path)
    if not config.get("use_mean_pooling", True) and "classifier.weight" in raw:
        raise CheckpointError(
            f"{folder}: a classifier on the first token (use_mean_pooling false) is not VideoMAE's recipe; "
            "only mean-pooling checkpoints are supported"
        )
    tensors, source_names = _hf_to_canonical(raw, config.get("num_hidden_layers", 12))
    image_size = config.get("image_size", 224)
    mean, std = _hf_normalisation(folder)
    architecture = {
        "hidden_size": config.get("hidden_size", 768),
        "num_layers": config.get("num_hidden_layers", 12),
        "num_heads": config.get("num_attention_heads", 12),
        "intermediate_size": config.get("intermediate_size", 3072),
        "patch_size": config.get("patch_size", 16),
        "tubelet_size": config.get("tubelet_size", 2),
        "num_frames": config.get("num_frames", 16),
        "image_size": image_size[0] if isinstance(image_size, (list, tuple)) else image_size,
        "qkv_bias": bool(config.get("qv_bias", config.get("qkv_bias", True))),
        "layer_norm_eps": config.get("layer_norm_eps", 1e-12),
        "fc_norm_eps": 1e-5,  # transformers builds fc_norm with torch's default eps
        "image_mean": mean,
        "image_std": std,
    }
    labels = None
    if "head.weight" in tensors and config.get("id2label"):
        id2label = {int(key): value for key, value in config["id2label"].items()}
        labels = [id2label.get(index, f"class_{index}") for index in range(tensors["head.weight"].shape[0])]
    return Checkpoint("hf_folder", architecture, tensors, labels, source_names)


def _hf_normalisation(folder: Path):
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        candidate = folder / name
        if candidate.is_file():
            settings = read_json(candidate)
            if "image_mean" in settings and "image_std" in settings:
                return tuple(settings["image_mean"]), tuple(settings["image_std"])
    return IMAGENET_MEAN, IMAGENET_STD


def _read_hf_tensors(location: Path) -> dict[str, np.ndarray]:
    if location.is_file():
        return _read_safetensors(location)
    if (location / "model.safetensors").is_file():
        return _read_safetensors(location / "model.safetensors")
    if (location / "pytorch_model.bin").is_file():
        return read_torch_file(location / "pytorch_model.bin")
    if (location / "model.safetensors.index.json").is_file():
        raise CheckpointError(f"{location}: sharded checkpoints are not supported; VideoMAE checkpoints are single files")
    raise CheckpointError(f"{location} has config.json but neither model.safetensors nor pytorch_model.bin")


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return {name: np.asarray(value, dtype=np.float32) for name, value in load_file(str(path)).items()}


def _hf_to_canonical(raw: dict[str, np.ndarray], num_layers: int):
    tensors: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    qkv_parts: dict[int, dict[str, tuple[str, np.ndarray]]] = {}
    unknown = []
    for name, value in raw.items():
        key = name.removeprefix("videomae.")
        if key.startswith(IGNORED_PREFIXES):
            continue
        if key.startswith("embeddings.patch_embeddings.projection."):
            canonical = "patch_embed.proj." + key.rsplit(".", 1)[1]
        elif key.startswith(("fc_norm.", "layernorm.")):
            canonical = key.replace("layernorm.", "norm.")
        elif key.startswith("classifier."):
            canonical = key.replace("classifier.", "head.")
        elif match := re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", key):
            index, rest = int(match.group(1)), match.group(2)
            if part := re.fullmatch(r"attention\.attention\.(query|key|value)\.weight", rest):
                qkv_parts.setdefault(index, {})[part.group(1)] = (name, value)
                continue
            if rest == "attention.attention.key.bias":
                if np.any(value):
                    raise CheckpointError(f"{name}: VideoMAE has no key bias, but this checkpoint's is not zero")
                continue
            canonical = _hf_block_key(index, rest)
            if canonical is None:
                unknown.append(name)
                continue
        else:
            unknown.append(name)
            continue
        tensors[canonical] = value
        sources[canonical] = name
    if unknown:
        raise CheckpointError(f"tensors this VideoMAE reader does not know: {', '.join(sorted(unknown)[:8])}")
    for index, parts in qkv_parts.items():
        missing = {"query", "key", "value"} - parts.keys()
        if missing:
            first = next(iter(parts.values()))[0]
            raise CheckpointError(f"missing tensors: block {index} has {first} but no {', '.join(sorted(missing))} weight")
        canonical = f"blocks.{index}.attn.qkv.weight"
        tensors[canonical] = np.concatenate([parts[kind][1] for kind in ("query", "key", "value")], axis=0)
        sources[canonical] = parts["query"][0].replace(".query.weight", ".{query,key,value}.weight")
    return tensors, sources


def hf_name(canonical: str) -> str:
    """The Hugging Face name of a canonical tensor (new key style, old one in brackets)."""
    if canonical.startswith("patch_embed.proj."):
        return "videomae.embeddings.patch_embeddings.projection." + canonical.rsplit(".", 1)[1]
    if canonical.startswith("head."):
        return canonical.replace("head.", "classifier.")
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", canonical)
    if not match:
        return canonical
    prefix, rest = f"videomae.encoder.layer.{match.group(1)}.", match.group(2)
    if rest == "attn.qkv.weight":
        return prefix + "attention.attention.{query,key,value}.weight"
    if rest in ("attn.q_bias", "attn.v_bias"):
        kind = "query" if rest == "attn.q_bias" else "value"
        return f"{prefix}attention.attention.{kind}.bias (or {rest.split('.')[1]})"
    for hf_key, target in HF_BLOCK_KEYS.items():
        if rest.startswith(target + "."):
            return prefix + hf_key + rest[len(target):]
    return canonical


def _hf_block_key(index: int, rest: str) -> str | None:
    for prefix, target in HF_BLOCK_KEYS.items():
        if rest == prefix:
            return f"blocks.{index}.{target}"
        if rest.startswith(prefix + "."):
            return f"blocks.{index}.{target}.{rest[len(prefix) + 1:]}"
    return None


# ---------------------------------------------------------------- PyTorch files (.pth, .bin)

def read_torch_file(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(TORCH_INSTALL_HINT.format(path=path)) from None
    # weights_only keeps arbitrary pickled code out; MCG-NJU checkpoints also pickle their argparse args.
    with torch.serialization.safe_globals([argparse.Namespace]):
        content = torch.load(str(path), map_location="cpu", weights_only=True)
    state = content
    if isinstance(content, dict):
        for key in ("model", "module", "state_dict"):
            if key in content and isinstance(content[key], dict):
                state = content[key]
                break
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return {name: value.detach().float().numpy() for name, value in state.items() if hasattr(value, "detach")}


def read_mcg_checkpoint(path: Path, num_heads: int | None = None) -> Checkpoint:
    raw = read_torch_file(path)
    tensors = {}
    for name, value in raw.items():
        key = name.removeprefix("module.").removeprefix("encoder.")
        if not key.startswith(IGNORED_PREFIXES):
            tensors[key] = value
    known = re.compile(r"(patch_embed\.proj|blocks\.\d+\.(norm1|norm2|attn\.(qkv|proj|q_bias|v_bias)|mlp\.fc[12])|fc_norm|norm|head)(\.|$)")
    unknown = sorted(key for key in tensors if not known.match(key))
    if unknown:
        raise CheckpointError(f"{path}: tensors this VideoMAE reader does not know: {', '.join(unknown[:8])}")
    if "patch_embed.proj.weight" not in tensors:
        raise CheckpointError(f"missing tensors: {path} has no patch_embed.proj.weight (is it a VideoMAE checkpoint?)")
    architecture = _architecture_from_shapes(tensors, num_heads, path, ORIGINAL_LAYER_NORM_EPS)
    return Checkpoint("mcg_pth", architecture, tensors, None, {key: key for key in tensors})


def _architecture_from_shapes(tensors, num_heads, path, eps, num_frames=16, image_size=224) -> dict:
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


# ---------------------------------------------------------------- innat/VideoMAE Keras-2 .h5

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
    import h5py

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
    frames, size = (int(shape.group(1)), int(shape.group(2))) if shape else (16, 224)
    # innat's weights are the MCG-NJU ones, so the original eps values apply.
    architecture = _architecture_from_shapes(tensors, num_heads, path, ORIGINAL_LAYER_NORM_EPS, frames, size)
    return Checkpoint("innat_h5", architecture, tensors, None, sources)
