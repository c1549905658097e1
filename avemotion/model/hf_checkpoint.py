"""Hugging Face VideoMAE checkpoints: a folder with config.json and model.safetensors or
pytorch_model.bin (or the .safetensors file beside its config.json), in either key style
(``query.bias``/``value.bias`` or ``q_bias``/``v_bias``), to the canonical form of
avemotion.model.checkpoints.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from avemotion.io import read_json
from avemotion.model.checkpoints import IGNORED_PREFIXES, Checkpoint, CheckpointError
from avemotion.model.torch_checkpoint import read_torch_file
from avemotion.presets import IMAGENET_MEAN, IMAGENET_STD, PRETRAINED_FRAMES, PRETRAINED_IMAGE_SIZE

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
    config, architecture = hf_config_architecture(path)
    raw = _read_hf_tensors(folder if path.is_dir() else path)
    if not config.get("use_mean_pooling", True) and "classifier.weight" in raw:
        raise CheckpointError(
            f"{folder}: a classifier on the first token (use_mean_pooling false) is not VideoMAE's recipe; "
            "only mean-pooling checkpoints are supported"
        )
    tensors, source_names = _hf_to_canonical(raw, architecture["num_layers"])
    labels = None
    if "head.weight" in tensors and config.get("id2label"):
        id2label = {int(key): value for key, value in config["id2label"].items()}
        labels = [id2label.get(index, f"class_{index}") for index in range(tensors["head.weight"].shape[0])]
    return Checkpoint("hf_folder", architecture, tensors, labels, source_names, naming=hf_name)


def hf_config_architecture(path: Path) -> tuple[dict, dict]:
    """A Hugging Face VideoMAE folder's (or its weights file's) config.json and the architecture it
    states (transformers' defaults where a key is absent), read without the tensors: the config
    check judges the weights by it before any job runs."""
    folder = path if path.is_dir() else path.parent
    config = read_json(folder / "config.json")
    if config.get("model_type", "videomae") != "videomae":
        raise CheckpointError(f"{folder}/config.json describes a {config.get('model_type')!r} model, not videomae")
    activation = config.get("hidden_act", "gelu")
    if activation != "gelu":
        raise CheckpointError(f"{folder}: hidden_act {activation!r} is not supported (VideoMAE uses exact gelu)")
    mean, std = _hf_normalisation(folder)
    architecture = {
        "hidden_size": config.get("hidden_size", 768),
        "num_layers": config.get("num_hidden_layers", 12),
        "num_heads": config.get("num_attention_heads", 12),
        "intermediate_size": config.get("intermediate_size", 3072),
        "patch_size": _side(config.get("patch_size", 16), folder, "patch_size"),
        "tubelet_size": config.get("tubelet_size", 2),
        "num_frames": config.get("num_frames", PRETRAINED_FRAMES),
        "image_size": _side(config.get("image_size", PRETRAINED_IMAGE_SIZE), folder, "image_size"),
        "qkv_bias": bool(config.get("qv_bias", config.get("qkv_bias", True))),
        "layer_norm_eps": config.get("layer_norm_eps", 1e-12),
        "fc_norm_eps": 1e-5,  # transformers builds fc_norm with torch's default eps
        "image_mean": mean,
        "image_std": std,
    }
    return config, architecture


def _side(value, folder: Path, key: str) -> int:
    """A square size that config.json may write as a number or a [height, width] pair."""
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise CheckpointError(f"{folder}/config.json: {key} {list(value)} is not square; VideoMAE's patches and frames are")
        value = value[0]
    return int(value)


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
        return _read_safetensors(location) if location.suffix == ".safetensors" else read_torch_file(location)
    if (location / "model.safetensors").is_file():
        return _read_safetensors(location / "model.safetensors")
    if (location / "pytorch_model.bin").is_file():
        return read_torch_file(location / "pytorch_model.bin")
    if (location / "model.safetensors.index.json").is_file():
        raise CheckpointError(f"{location}: sharded checkpoints are not supported; VideoMAE checkpoints are single files")
    raise CheckpointError(f"{location} has config.json but neither model.safetensors nor pytorch_model.bin")


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    try:
        tensors = load_file(str(path))
    except SafetensorError as error:  # truncated (an interrupted download), or no safetensors file at all
        raise CheckpointError(f"{path}: not a whole safetensors file ({error}); download it again") from None
    return {name: np.asarray(value, dtype=np.float32) for name, value in tensors.items()}


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
