"""The fusion model's audio branch on a pretrained speech encoder (model.audio_encoder: whisper).

Whisper's encoder reads the clip's Whisper log-Mel (avemotion.model.speech_input), its hidden states
are pooled by a learned weight per layer and a mean over the frames that hold the clip's audio
(WeightedLayerPooling with encoder_frame_mask's mask, built in the model from ``speech_frames``), and
a dense layer gives the embedding the CNN branch would give: the same heads and fusion follow.

The encoder is frozen (only the pooling and what follows learn) or fine-tuned with layer-wise lr
decay (avemotion.train.optimizer); a fine-tuned one trains in the frozen-backbone warm start too
(training.frozen_backbone_epochs freezes VideoMAE only). Its weights come from model.audio_weights (a Hugging Face Whisper
folder or a converted .weights.h5, whose own architecture is used), or are random from
model.audio_preset (tests and throughput checks; a random frozen encoder learns nothing).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from avemotion.model.layers import PACKAGE
from avemotion.model.speech_head import WeightedLayerPooling
from avemotion.model.speech_features import SPEECH_FEATURES, SPEECH_FRAMES, feature_frames
from avemotion.model.whisper import WhisperBackbone, encoder_frames, whisper_settings
from avemotion.model.whisper_weights import load_whisper

AUDIO_TRAINABLE = ("frozen", "finetune")
# The audio keys' values for settings that predate them (and the schema's defaults).
AUDIO_DEFAULTS = {
    "audio_encoder": "cnn",
    "audio_preset": "tiny",
    "audio_weights": None,
    "audio_trainable": "frozen",
    "audio_max_seconds": 10.0,
}
ENCODER_NAME = "whisper"


def audio_settings(model_settings: dict) -> dict:
    """The experiment's audio-branch settings (model.audio_*), absent keys at their defaults."""
    return {key: model_settings.get(key, default) for key, default in AUDIO_DEFAULTS.items()}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpeechFrameMask(layers.Layer):
    """(B,) feature frames of each clip -> (B, encoder steps) bool, true where a step sees its audio
    (encoder_frame_mask in keras.ops, so the saved model computes it)."""

    def __init__(self, total_frames: int, **kwargs):
        super().__init__(**kwargs)
        self.total_frames = total_frames

    def call(self, frames):
        steps = int(encoder_frames(self.total_frames))
        valid = (ops.cast(frames, "int32") - 1) // 2 + 1
        return ops.arange(steps, dtype="int32")[None, :] < valid[:, None]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], int(encoder_frames(self.total_frames)))

    def get_config(self):
        return {**super().get_config(), "total_frames": self.total_frames}


def speech_encoder(model_settings: dict) -> WhisperBackbone:
    """The experiment's Whisper encoder: model.audio_weights' (with their architecture), or random
    from model.audio_preset; frozen unless model.audio_trainable is finetune."""
    audio = audio_settings(model_settings)
    if audio["audio_trainable"] not in AUDIO_TRAINABLE:
        raise ValueError(f"model.audio_trainable {audio['audio_trainable']!r} is not allowed; allowed values: {', '.join(AUDIO_TRAINABLE)}")
    if audio["audio_weights"]:
        loaded = load_whisper(audio["audio_weights"])
        encoder = WhisperBackbone(**loaded.architecture, name=ENCODER_NAME)
        encoder.set_weights(loaded.get_weights())
    else:
        encoder = WhisperBackbone(**whisper_settings(audio["audio_preset"]), name=ENCODER_NAME)
    encoder.trainable = audio["audio_trainable"] == "finetune"
    return encoder


def speech_model_inputs(encoder: WhisperBackbone, max_seconds: float) -> dict:
    frames = feature_frames(max_seconds)
    return {
        SPEECH_FEATURES: keras.Input((frames, encoder.num_mel_bins), name=SPEECH_FEATURES),
        SPEECH_FRAMES: keras.Input((), dtype="int32", name=SPEECH_FRAMES),
    }


def speech_embedding(inputs: dict, encoder: WhisperBackbone, dropout: float = 0.1, width: int = 128, name: str = "audio"):
    """(B, width) embedding of the clip's speech: the encoder, layer-weighted masked mean pooling,
    dropout and a dense layer (the CNN branch's width, so the fusion layers see the same sizes)."""
    features = inputs[SPEECH_FEATURES]
    mask = SpeechFrameMask(features.shape[1], name=f"{name}_frame_mask")(inputs[SPEECH_FRAMES])
    pooled = WeightedLayerPooling(name=f"{name}_layer_pooling")(encoder(features), frame_mask=mask)
    pooled = layers.Dropout(dropout, name=f"{name}_dropout")(pooled)
    return layers.Dense(width, activation="relu", name=f"{name}_embedding")(pooled)


def speech_encoder_of(model: keras.Model) -> WhisperBackbone | None:
    """A fusion model's Whisper encoder, None when its audio branch is the CNN."""
    found = [layer for layer in model.layers if isinstance(layer, WhisperBackbone)]
    return found[0] if found else None
