"""Reference Whisper encoders from transformers (test-only), and the Keras encoder with their weights."""

from __future__ import annotations

import keras
import numpy as np
import torch
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from avemotion.model.checkpoints import Checkpoint
from avemotion.model.whisper import WhisperBackbone
from avemotion.model.whisper_weights import assign_whisper_checkpoint

TOLERANCE = 1e-4
to_numpy = keras.ops.convert_to_numpy  # any backend's tensors (and torch's need detaching)

# Two shapes differing in width, depth, heads, head size, MLP width, Mel bins and table length.
SHAPES = {
    "2_layers_4_heads": dict(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=48, num_mel_bins=16, max_source_positions=20),
    "3_layers_2_heads": dict(d_model=24, encoder_layers=3, encoder_attention_heads=2, encoder_ffn_dim=72, num_mel_bins=12, max_source_positions=15),
}  # fmt: skip


def hf_config(**encoder) -> WhisperConfig:
    """A tiny Whisper; the decoder is one small layer (only the saved-folder tests carry it)."""
    return WhisperConfig(
        **encoder, decoder_layers=1, decoder_attention_heads=encoder["encoder_attention_heads"], decoder_ffn_dim=16,
        vocab_size=64, max_target_positions=16, pad_token_id=0, bos_token_id=0, eos_token_id=0,
        decoder_start_token_id=1, begin_suppress_tokens=None, num_labels=3, classifier_proj_size=8,
    )  # fmt: skip


def randomise(module, seed: int):
    """Every parameter random, the norms, biases and the position table included."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn_like(parameter)
            if "layer_norm" in name:
                parameter.copy_(1.0 + 0.2 * noise if name.endswith("weight") else 0.1 * noise)
            elif parameter.ndim > 1:
                parameter.copy_(noise / np.sqrt(np.prod(parameter.shape[1:])))
            else:
                parameter.copy_(0.1 * noise)
    return module.eval()


def hf_encoder(shape: str, seed: int = 0, **changes):
    return randomise(WhisperEncoder(hf_config(**{**SHAPES[shape], **changes})), seed)


def keras_encoder(architecture: dict, state: dict) -> WhisperBackbone:
    backbone = WhisperBackbone(**architecture)
    tensors = {name: value.detach().numpy() for name, value in state.items()}
    assign_whisper_checkpoint(backbone, Checkpoint("state_dict", architecture, tensors))
    return backbone


def features(num_mel_bins: int, frames: int, seed: int = 0) -> np.ndarray:
    """(batch, frames, bins) features: the Keras layout, the transpose of transformers'."""
    return np.random.default_rng(seed).normal(size=(2, frames, num_mel_bins)).astype(np.float32)


def reference_states(encoder, batch: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        output = encoder(torch.from_numpy(batch.transpose(0, 2, 1).copy()), output_hidden_states=True)
    return [state.numpy() for state in output.hidden_states]


def max_differences(backbone, encoder, batch) -> list[float]:
    ours = [to_numpy(state) for state in backbone(batch)]
    theirs = reference_states(encoder, batch)
    assert len(ours) == len(theirs) == backbone.encoder_layers + 1
    return [float(np.abs(a - b).max()) for a, b in zip(ours, theirs)]

