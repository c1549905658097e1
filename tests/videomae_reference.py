"""Reference VideoMAE networks from transformers (test-only) and checkpoint files written from them.

Each writer produces one published format from the same random network, in that format's own
names and layouts, written here independently of avemotion's readers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import torch
from transformers import VideoMAEConfig, VideoMAEForVideoClassification


def random_reference(seed: int, fc_norm_eps: float | None = None, **config) -> VideoMAEForVideoClassification:
    """A transformers VideoMAE classifier with every parameter random (weights, biases, q/v biases, norms)."""
    torch.manual_seed(seed)
    model = VideoMAEForVideoClassification(VideoMAEConfig(**config)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn_like(parameter)
            if "layernorm" in name or "fc_norm" in name:
                parameter.copy_(1.0 + 0.2 * noise if name.endswith("weight") else 0.1 * noise)
            else:
                scale = 1.0 / np.sqrt(np.prod(parameter.shape[1:])) if parameter.ndim > 1 else 0.1
                parameter.copy_(noise * scale)
    if fc_norm_eps is not None:
        model.fc_norm.eps = fc_norm_eps
    return model


def reference_outputs(model, clips: np.ndarray, mean, std) -> np.ndarray:
    """Logits of the transformers model for RGB clips in [0, 1] shaped (B, T, H, W, 3)."""
    pixels = (clips - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    pixels = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 1, 4, 2, 3)))
    with torch.no_grad():
        return model(pixel_values=pixels).logits.numpy()


def with_num_frames(model, num_frames: int):
    """The same weights in a transformers model whose position table is built for another frame count."""
    config = VideoMAEConfig(**{**model.config.to_dict(), "num_frames": num_frames})
    other = VideoMAEForVideoClassification(config).eval()
    other.load_state_dict(model.state_dict())
    other.fc_norm.eps = model.fc_norm.eps
    return other


def write_hf_save_pretrained(model, folder: Path) -> Path:
    """Whatever transformers itself writes (5.23 writes the old q_bias/v_bias names into safetensors)."""
    model.save_pretrained(folder, safe_serialization=True)
    assert (folder / "model.safetensors").is_file()
    return folder


def write_hf_folder(model, folder: Path, weights: str, key_style: str) -> Path:
    """A Hugging Face folder with ``weights`` "safetensors" or "bin" and q/v biases named in
    ``key_style`` "new" (query.bias/value.bias, qv_bias in config) or "old" (q_bias/v_bias, qkv_bias)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, value in model.state_dict().items():
        if key_style == "old":
            name = name.replace("attention.attention.query.bias", "attention.attention.q_bias")
            name = name.replace("attention.attention.value.bias", "attention.attention.v_bias")
        state[name] = value.detach().clone().contiguous()
    if weights == "safetensors":
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, folder / "pytorch_model.bin")
    config = model.config.to_dict()
    if key_style == "old":
        config["qkv_bias"] = config.pop("qv_bias")
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def original_state_dict(model) -> dict[str, torch.Tensor]:
    """The transformers weights under the MCG-NJU names (blocks.i.attn.qkv.weight, ...)."""
    source = model.state_dict()
    state = {
        "patch_embed.proj.weight": source["videomae.embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": source["videomae.embeddings.patch_embeddings.projection.bias"],
        "fc_norm.weight": source["fc_norm.weight"],
        "fc_norm.bias": source["fc_norm.bias"],
        "head.weight": source["classifier.weight"],
        "head.bias": source["classifier.bias"],
    }
    for index in range(model.config.num_hidden_layers):
        hf = f"videomae.encoder.layer.{index}."
        mine = f"blocks.{index}."
        attention = hf + "attention.attention."
        state[mine + "attn.qkv.weight"] = torch.cat(
            [source[attention + kind + ".weight"] for kind in ("query", "key", "value")]
        )
        state[mine + "attn.q_bias"] = source[attention + "query.bias"]
        state[mine + "attn.v_bias"] = source[attention + "value.bias"]
        for hf_name, name in (
            ("attention.output.dense", "attn.proj"),
            ("layernorm_before", "norm1"),
            ("layernorm_after", "norm2"),
            ("intermediate.dense", "mlp.fc1"),
            ("output.dense", "mlp.fc2"),
        ):
            state[mine + name + ".weight"] = source[hf + hf_name + ".weight"]
            state[mine + name + ".bias"] = source[hf + hf_name + ".bias"]
    return {name: value.clone() for name, value in state.items()}


def write_mcg_pth(model, path: Path, wrapper: str = "model") -> Path:
    """An MCG-NJU fine-tuning checkpoint: weights under ``model`` (or ``module``) beside the run's args."""
    content = {wrapper: original_state_dict(model), "epoch": 29, "args": argparse.Namespace(model="vit_test")}
    torch.save(content, path)
    return path


def write_innat_h5(model, path: Path) -> Path:
    """An innat/VideoMAE Keras-2 ``save_weights`` file: one group per top-level layer, each with its
    ``weight_names`` (Keras 2 order: a sub-model's children before its own q/v biases), Keras layouts."""
    state = {name: value.numpy() for name, value in original_state_dict(model).items()}
    layers = []
    with h5py.File(path, "w") as handle:
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.12.0"

        def group(name, weights):
            layers.append(name)
            entry = handle.create_group(name)
            entry.attrs["weight_names"] = [weight.encode() for weight, _ in weights]
            for weight, value in weights:
                entry.create_dataset(weight, data=value)

        group("patch_embed", [
            ("patch_embed/patch_embed_proj/kernel:0", state["patch_embed.proj.weight"].transpose(2, 3, 4, 1, 0)),
            ("patch_embed/patch_embed_proj/bias:0", state["patch_embed.proj.bias"]),
        ])  # fmt: skip
        group("pos_drop", [])
        for index in range(model.config.num_hidden_layers):
            block = f"TFBlock{index + 1}"
            attention = f"{block}/TFAttention{index + 1}"
            s = lambda name: state[f"blocks.{index}.{name}"]  # noqa: E731
            group(block, [
                (f"{block}/layer_normalization/gamma:0", s("norm1.weight")),
                (f"{block}/layer_normalization/beta:0", s("norm1.bias")),
                (f"{attention}/dense/kernel:0", s("attn.qkv.weight").T),
                (f"{attention}/dense_1/kernel:0", s("attn.proj.weight").T),
                (f"{attention}/dense_1/bias:0", s("attn.proj.bias")),
                (f"{attention}/q_bias_id{index}:0", s("attn.q_bias")),
                (f"{attention}/v_bias_id{index}:0", s("attn.v_bias")),
                (f"{block}/layer_normalization_1/gamma:0", s("norm2.weight")),
                (f"{block}/layer_normalization_1/beta:0", s("norm2.bias")),
                (f"{block}/tf_mlp/dense_2/kernel:0", s("mlp.fc1.weight").T),
                (f"{block}/tf_mlp/dense_2/bias:0", s("mlp.fc1.bias")),
                (f"{block}/tf_mlp/dense_3/kernel:0", s("mlp.fc2.weight").T),
                (f"{block}/tf_mlp/dense_3/bias:0", s("mlp.fc2.bias")),
            ])  # fmt: skip
        group("norm_identity", [])
        group("fc_norm", [("fc_norm/gamma:0", state["fc_norm.weight"]), ("fc_norm/beta:0", state["fc_norm.bias"])])
        group("fc_dropout_identity", [])
        group("head", [("head/kernel:0", state["head.weight"].T), ("head/bias:0", state["head.bias"])])
        handle.attrs["layer_names"] = [name.encode() for name in layers]
    return path
