"""Loading VideoMAE weights of any supported format into the Keras model, and converting them once.

``load_videomae(path)`` recognises the format by content (see ``checkpoints.detect_format``), builds
the network the checkpoint describes (frames and image size may be changed: no weight depends on
them), copies every tensor with shape checks, and then reads the weights back to prove they landed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import keras
import numpy as np

from avemotion.io import atomic_path
from avemotion.model.checkpoints import ARCHITECTURE_ATTRIBUTE, Checkpoint, CheckpointError, detect_format, keras_archive_class
from avemotion.model.hf_checkpoint import read_hf_folder
from avemotion.model.innat_checkpoint import read_innat_h5
from avemotion.model.torch_checkpoint import read_mcg_checkpoint
from avemotion.model.classifier import VideoMAEClassifier, build_classifier

log = logging.getLogger(__name__)

WEIGHTS_SUFFIX = ".weights.h5"


def load_videomae(path, num_frames: int | None = None, image_size: int | None = None, num_heads: int | None = None):
    """A ``VideoMAEClassifier`` with the weights at ``path``.

    The model maps (batch, frames, height, width, 3) float32 RGB in [0, 1] to a dict with the pooled
    ``features`` and, when the checkpoint has a classification head, ``logits``. ``num_heads`` is
    only needed for .pth/.h5 files of a width no registered variant has (those files do not record it).
    """
    path = Path(path)
    kind = detect_format(path)
    model = _loaded_videomae(path, kind, num_frames, image_size, num_heads)
    architecture = model.backbone.architecture
    # every format says what it loaded, so a training log shows which weights it started from
    log.info(
        "loaded %s (%s): %d layers, width %d, %s",
        path, kind, architecture["num_layers"], architecture["hidden_size"],
        f"{model.num_classes}-class head" if model.num_classes else "no head",
    )
    return model


def _loaded_videomae(path: Path, kind: str, num_frames, image_size, num_heads):
    overrides = {key: value for key, value in (("num_frames", num_frames), ("image_size", image_size)) if value}
    if kind == "keras_archive":
        # Keras cannot even build another model without its classes registered (a trained avemotion
        # model's); its archive names the class first
        saved_class = keras_archive_class(path)
        if saved_class != "VideoMAEClassifier":
            raise CheckpointError(
                f"{path} is a Keras archive of a {saved_class!r} model, not VideoMAE weights "
                "(a trained avemotion model predicts with `avemotion predict --model`; it is not converted)"
            )
        saved = keras.saving.load_model(path, compile=False)
        if not isinstance(saved, VideoMAEClassifier):
            raise CheckpointError(f"{path} holds a {type(saved).__name__}, not a VideoMAEClassifier")
        if not overrides:
            return saved
        model = build_classifier(saved.backbone.architecture, saved.num_classes, saved.label_names, **overrides)
        model.set_weights(saved.get_weights())
        return model
    if kind == "keras_weights":
        with h5py.File(path, "r") as handle:
            record = json.loads(handle.attrs[ARCHITECTURE_ATTRIBUTE])
        model = build_classifier(record["backbone"], record["num_classes"], record["label_names"], **overrides)
        model.load_weights(path)
        return model
    readers = {
        "hf_folder": lambda: read_hf_folder(path),
        "torch": lambda: read_mcg_checkpoint(path, num_heads),
        "innat_h5": lambda: read_innat_h5(path, num_heads),
    }
    checkpoint = readers[kind]()
    model = build_classifier(checkpoint.architecture, checkpoint.num_classes, checkpoint.label_names, **overrides)
    assign_checkpoint(model, checkpoint)
    return model


def _targets(model, checkpoint: Checkpoint):
    """(canonical name, Keras variable, function from the canonical array to the Keras layout)."""
    backbone = model.backbone
    transpose = np.transpose
    yield "patch_embed.proj.weight", backbone.get_layer("patch_embed").kernel, lambda a: transpose(a, (2, 3, 4, 1, 0))
    yield "patch_embed.proj.bias", backbone.get_layer("patch_embed").bias, None
    for index in range(backbone.num_layers):
        block = backbone.get_layer(f"block_{index}")
        prefix = f"blocks.{index}."
        for norm in ("norm1", "norm2"):
            layer = getattr(block, norm)
            yield prefix + norm + ".weight", layer.gamma, None
            yield prefix + norm + ".bias", layer.beta, None
        yield prefix + "attn.qkv.weight", block.attention.qkv.kernel, np.transpose
        if block.qkv_bias:
            yield prefix + "attn.q_bias", block.attention.q_bias, None
            yield prefix + "attn.v_bias", block.attention.v_bias, None
        for source, layer in (("attn.proj", block.attention.proj), ("mlp.fc1", block.fc1), ("mlp.fc2", block.fc2)):
            yield prefix + source + ".weight", layer.kernel, np.transpose
            yield prefix + source + ".bias", layer.bias, None
    fc_norm = backbone.get_layer("fc_norm")
    yield "fc_norm.weight", fc_norm.gamma, None
    yield "fc_norm.bias", fc_norm.beta, None
    if model.head is not None:
        yield "head.weight", model.head.kernel, np.transpose
        yield "head.bias", model.head.bias, None


def assign_checkpoint(model, checkpoint: Checkpoint) -> None:
    """Copy the checkpoint's tensors into ``model``; refuse on anything missing, left over or misshapen."""
    tensors = checkpoint.tensors
    pretraining = "fc_norm.weight" not in tensors
    if pretraining and "head.weight" in tensors:
        # Fine-tuned without mean pooling (VideoMAE's --use_cls): its head reads the first token after
        # the final norm, and loaded on mean-pooled features it would compute other logits, silently
        raise CheckpointError(
            f"the {checkpoint.format} checkpoint has a classification head but no fc_norm: it was fine-tuned "
            "on the first token (use_mean_pooling off), not VideoMAE's recipe; only mean-pooling checkpoints "
            "are supported (or its backbone without the head: drop head.weight and head.bias)"
        )
    optional = {"fc_norm.weight", "fc_norm.bias"} if pretraining else set()
    targets = list(_targets(model, checkpoint))
    missing = [name for name, _, _ in targets if name not in tensors and name not in optional]
    if missing:
        shown = ", ".join(checkpoint.source_name(name) for name in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise CheckpointError(f"missing tensors in the {checkpoint.format} checkpoint: {shown}{more}")
    # A pre-training checkpoint's final norm is dropped and fc_norm starts as identity, as in VideoMAE fine-tuning.
    ignorable = {"norm.weight", "norm.bias"} if pretraining else set()
    used = {name for name, _, _ in targets}
    left_over = sorted(set(tensors) - used - ignorable)
    if left_over:
        raise CheckpointError(f"tensors the network has no place for: {', '.join(left_over[:8])}")
    if pretraining:
        log.info("no fc_norm in the checkpoint (pre-training weights): fc_norm starts as identity")

    expected = {}
    for name, variable, convert in targets:
        if name not in tensors:
            continue
        value = tensors[name]
        value = convert(value) if convert else value
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointError(
                f"shape mismatch for tensor {checkpoint.source_name(name)}: the checkpoint has "
                f"{tuple(tensors[name].shape)} (as {tuple(value.shape)} in Keras layout), the network's "
                f"{variable.path} is {tuple(variable.shape)}"
            )
        variable.assign(value)
        expected[name] = (variable, value)
    _verify(expected, checkpoint)


def _verify(expected: dict, checkpoint: Checkpoint) -> None:
    """Read every assigned variable back: a bias that silently stayed zero is the classic porting bug."""
    for name, (variable, value) in expected.items():
        loaded = np.asarray(variable.numpy())
        if name.endswith(("q_bias", "v_bias")) and np.any(checkpoint.tensors[name]) and not np.any(loaded):
            raise CheckpointError(
                f"{checkpoint.source_name(name)} loaded as all zeros although the checkpoint's is not; refusing "
                "a network without its q/v biases"
            )
        if not np.array_equal(loaded, value.astype(loaded.dtype)):
            raise CheckpointError(f"{variable.path} does not hold {checkpoint.source_name(name)} after loading")


def convert_weights(source, destination, num_frames=None, image_size=None, num_heads=None):
    """Read any supported checkpoint once and write avemotion's .weights.h5 (loads fast, needs no torch)."""
    destination = Path(destination)
    if not destination.name.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"destination {destination} must end with {WEIGHTS_SUFFIX}")
    model = load_videomae(source, num_frames=num_frames, image_size=image_size, num_heads=num_heads)
    with atomic_path(destination, suffix=WEIGHTS_SUFFIX) as tmp:
        model.save_weights(tmp)
    return model
