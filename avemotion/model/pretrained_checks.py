"""Before any job runs: whether an experiment's weight files are what its model settings ask for.

Training loads ``model.pretrained`` (VideoMAE) and ``model.audio_weights`` (Whisper) only once every
clip is preprocessed and fused: hours into a real run, a swapped, foreign or ill-fitting file
stopped the first training job with a traceback. What the files tell without their tensors is
checked here, from the workflow's config check: their format, the kind of encoder they hold, and,
where the file records it (avemotion's .weights.h5, a Hugging Face folder's config.json), the
architecture against ``model.variant``. Other formats (.pth, innat .h5, .keras) record no
architecture apart from their tensors: the training job checks them as it loads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from avemotion.io import read_json
from avemotion.model.checkpoints import ARCHITECTURE_ATTRIBUTE, CheckpointError, detect_format
from avemotion.model.whisper_checkpoint import is_whisper_checkpoint, whisper_format
from avemotion.presets import variant_settings

# The architecture keys that must agree for the weights to fit the variant's network (the rest,
# frames, image size, eps and normalisation, travel with the weights)
FITTING_KEYS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "patch_size", "tubelet_size")
# A Hugging Face VideoMAE config.json's names for them, and transformers' defaults
HF_KEYS = {
    "hidden_size": ("hidden_size", 768),
    "num_layers": ("num_hidden_layers", 12),
    "num_heads": ("num_attention_heads", 12),
    "intermediate_size": ("intermediate_size", 3072),
    "patch_size": ("patch_size", 16),
    "tubelet_size": ("tubelet_size", 2),
}


def recorded_architecture(path: Path, kind: str) -> dict | None:
    """The FITTING_KEYS a VideoMAE weights file records without its tensors; None where only its
    tensors tell."""
    if kind == "keras_weights":
        with h5py.File(path, "r") as handle:
            return json.loads(handle.attrs[ARCHITECTURE_ATTRIBUTE])["backbone"]
    if kind == "hf_folder":
        config = read_json((path if path.is_dir() else path.parent) / "config.json")
        return {key: _side(config.get(name, default)) for key, (name, default) in HF_KEYS.items()}
    return None


def _side(value):
    """A square patch's side where config.json gives [16, 16]; any other value as it is."""
    return value[0] if isinstance(value, list) and value and all(side == value[0] for side in value) else value


def videomae_weights_problem(path, variant: str) -> str | None:
    """Why the VideoMAE weights at ``path`` cannot be ``variant``'s, or None as far as the file tells."""
    path = Path(path)
    if is_whisper_checkpoint(path):
        return "holds a Whisper encoder (set it as model.audio_weights, with model.audio_encoder: whisper)"
    try:
        kind = detect_format(path)
        recorded = recorded_architecture(path, kind)
    except (CheckpointError, OSError, ValueError, KeyError) as error:
        return str(error)
    if recorded is None:
        return None
    wanted = variant_settings(variant)
    differing = [key for key in FITTING_KEYS if recorded.get(key) != wanted[key]]
    if not differing:
        return None
    described = ", ".join(f"{key} {recorded.get(key)} where {variant} has {wanted[key]}" for key in differing)
    return f"does not fit model.variant {variant!r} ({described})"


def whisper_weights_problem(path) -> str | None:
    """Why the file at ``path`` is no Whisper encoder avemotion reads, or None."""
    try:
        whisper_format(path)
    except (CheckpointError, OSError, ValueError) as error:
        return f"{error}{' (VideoMAE weights go in model.pretrained)' if _is_videomae(path) else ''}"
    return None


def _is_videomae(path) -> bool:
    try:
        detect_format(Path(path))
    except (CheckpointError, OSError, ValueError):
        return False
    return True
