"""Before any job runs: whether an experiment's weight files are what its model settings ask for.

Training loads ``model.pretrained`` (VideoMAE) and ``model.audio_weights`` (Whisper) only once every
clip is preprocessed and fused, so a file that cannot be right is judged here, from the workflow's
config check, by what it tells without its tensors: its format, the kind of encoder it holds, and,
where the file records it (avemotion's .weights.h5, a Hugging Face folder's config.json), its
architecture against ``model.variant``. Other formats (.pth, innat .h5, .keras) record no
architecture apart from their tensors: the training job checks them as it loads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from avemotion.model.checkpoints import ARCHITECTURE_ATTRIBUTE, CheckpointError, detect_format
from avemotion.model.hf_checkpoint import hf_config_architecture
from avemotion.model.whisper_checkpoint import is_whisper_checkpoint, whisper_format
from avemotion.presets import FITTING_KEYS, variant_settings


def recorded_architecture(path: Path, kind: str) -> dict | None:
    """The architecture a VideoMAE weights file records without its tensors; None where only its
    tensors tell."""
    if kind == "keras_weights":
        with h5py.File(path, "r") as handle:
            return json.loads(handle.attrs[ARCHITECTURE_ATTRIBUTE])["backbone"]
    if kind == "hf_folder":
        return hf_config_architecture(path)[1]
    return None


def videomae_weights_problem(path, variant: str, variant_key: str = "model.variant") -> str | None:
    """Why the VideoMAE weights at ``path`` cannot be ``variant``'s (set at ``variant_key``), or None
    as far as the file tells."""
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
    return f"does not fit {variant_key} {variant!r} ({described})"


def whisper_weights_problem(path) -> str | None:
    """Why the file at ``path`` is no Whisper encoder avemotion reads, or None."""
    try:
        kind = whisper_format(path)
    except (CheckpointError, OSError, ValueError) as error:
        return f"{error}{' (VideoMAE weights go in model.pretrained)' if _is_videomae(path) else ''}"
    if kind == "keras_archive" and not is_whisper_checkpoint(path):  # any Keras archive passes whisper_format
        return "is a Keras archive of another model, not a Whisper encoder"
    return None


def _is_videomae(path) -> bool:
    try:
        detect_format(Path(path))
    except (CheckpointError, OSError, ValueError):
        return False
    return True
