"""Loading Whisper encoder weights into the Keras WhisperBackbone, and converting them once.

``load_whisper(path)`` recognises the format by content (whisper_checkpoint.whisper_format), builds
the encoder its config describes, copies every tensor with shape checks and reads them back. Saved
.weights.h5 files carry the architecture (an HDF5 attribute), as VideoMAE's do, so the file alone
rebuilds the network.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import keras
import numpy as np

from avemotion.io import atomic_path
from avemotion.model.checkpoints import Checkpoint, CheckpointError
from avemotion.model.whisper import WhisperBackbone
from avemotion.model.whisper_checkpoint import WHISPER_ARCHITECTURE_ATTRIBUTE, is_whisper_checkpoint, read_whisper_folder, whisper_format

log = logging.getLogger(__name__)

WEIGHTS_SUFFIX = ".weights.h5"


def load_whisper(path, dtype=None) -> WhisperBackbone:
    """The WhisperBackbone with the weights at ``path`` (a Hugging Face Whisper folder or .safetensors
    beside its config.json, or avemotion's own Whisper .weights.h5 / .keras); ``dtype`` e.g.
    "mixed_bfloat16" builds it under that policy (weights stay float32)."""
    path = Path(path)
    kind = whisper_format(path)
    backbone = _loaded_whisper(path, kind, dtype)
    # every format says what it loaded, so a training log shows which weights it started from
    log.info(
        "loaded Whisper encoder %s (%s): %d layers, width %d, %d Mel bins",
        path, kind, backbone.encoder_layers, backbone.d_model, backbone.num_mel_bins,
    )
    return backbone


def _loaded_whisper(path: Path, kind: str, dtype) -> WhisperBackbone:
    if kind == "keras_archive":
        if not is_whisper_checkpoint(path):  # its archive names another class: Keras may not even build it
            raise CheckpointError(f"{path} is a Keras archive of another model, not a Whisper encoder")
        saved = keras.saving.load_model(path, compile=False)
        if not isinstance(saved, WhisperBackbone):
            raise CheckpointError(f"{path} holds a {type(saved).__name__}, not a WhisperBackbone")
        if dtype is None:
            return saved
        backbone = WhisperBackbone(**saved.architecture, dtype=dtype)
        backbone.set_weights(saved.get_weights())
        return backbone
    if kind == "keras_weights":
        with h5py.File(path, "r") as handle:
            architecture = json.loads(handle.attrs[WHISPER_ARCHITECTURE_ATTRIBUTE])
        backbone = WhisperBackbone(**architecture, dtype=dtype)
        backbone.load_weights(path)
        return backbone
    checkpoint = read_whisper_folder(path)
    backbone = WhisperBackbone(**checkpoint.architecture, dtype=dtype)
    assign_whisper_checkpoint(backbone, checkpoint)
    return backbone


def _targets(backbone: WhisperBackbone):
    """(canonical name, Keras variable, function from the PyTorch layout to the Keras one)."""
    transpose = np.transpose
    for conv in ("conv1", "conv2"):
        layer = backbone.get_layer(conv)
        yield f"{conv}.weight", layer.kernel, lambda a: transpose(a, (2, 1, 0))  # (out, in, k) -> (k, in, out)
        yield f"{conv}.bias", layer.bias, None
    yield "embed_positions.weight", backbone.get_layer("embed_positions").embeddings, None
    for index in range(backbone.encoder_layers):
        block = backbone.get_layer(f"layers_{index}")
        prefix = f"layers.{index}."
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            yield prefix + norm + ".weight", getattr(block, norm).gamma, None
            yield prefix + norm + ".bias", getattr(block, norm).beta, None
        attention = block.self_attn
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            dense = getattr(attention, name)
            yield f"{prefix}self_attn.{name}.weight", dense.kernel, transpose
            if dense.use_bias:
                yield f"{prefix}self_attn.{name}.bias", dense.bias, None
        for name in ("fc1", "fc2"):
            yield f"{prefix}{name}.weight", getattr(block, name).kernel, transpose
            yield f"{prefix}{name}.bias", getattr(block, name).bias, None
    final = backbone.get_layer("layer_norm")
    yield "layer_norm.weight", final.gamma, None
    yield "layer_norm.bias", final.beta, None


def assign_whisper_checkpoint(backbone: WhisperBackbone, checkpoint: Checkpoint) -> None:
    """Copy the checkpoint's tensors into ``backbone``; refuse on anything missing, left over or misshapen."""
    tensors = checkpoint.tensors
    targets = list(_targets(backbone))
    missing = [name for name, _, _ in targets if name not in tensors]
    if missing:
        shown = ", ".join(checkpoint.source_name(name) for name in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise CheckpointError(f"missing tensors in the {checkpoint.format} Whisper checkpoint: {shown}{more}")
    left_over = sorted(set(tensors) - {name for name, _, _ in targets})
    if left_over:
        shown = ", ".join(checkpoint.source_name(name) for name in left_over[:8])
        raise CheckpointError(
            f"tensors the {backbone.encoder_layers}-layer encoder of config.json has no place for: {shown} "
            "(a k_proj.bias, which Whisper does not have, or more layers than encoder_layers)"
        )
    for name, variable, convert in targets:
        value = tensors[name]
        value = convert(value) if convert else value
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointError(
                f"shape mismatch for tensor {checkpoint.source_name(name)}: the checkpoint has "
                f"{tuple(tensors[name].shape)} (as {tuple(value.shape)} in Keras layout), the network's "
                f"{variable.path} is {tuple(variable.shape)}"
            )
        variable.assign(value)
        # Read back: a weight that silently kept its initial value is the classic porting bug.
        if not np.array_equal(np.asarray(variable.numpy()), value.astype(variable.dtype)):
            raise CheckpointError(f"{variable.path} does not hold {checkpoint.source_name(name)} after loading")


def save_whisper_weights(backbone: WhisperBackbone, path) -> None:
    """Keras' .weights.h5 plus the architecture, so the file alone rebuilds the encoder."""
    path = Path(path)
    if not path.name.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"destination {path} must end with {WEIGHTS_SUFFIX}")
    with atomic_path(path, suffix=WEIGHTS_SUFFIX) as tmp:
        backbone.save_weights(tmp)
        with h5py.File(tmp, "a") as handle:
            handle.attrs[WHISPER_ARCHITECTURE_ATTRIBUTE] = json.dumps(backbone.architecture)


def convert_whisper_weights(source, destination) -> WhisperBackbone:
    """Read a Whisper checkpoint once and write avemotion's .weights.h5 (loads fast, needs no torch)."""
    backbone = load_whisper(source)
    save_whisper_weights(backbone, destination)
    return backbone
