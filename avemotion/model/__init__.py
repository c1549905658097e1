"""VideoMAE for Keras 3: backbone, task model, variant registry and checkpoint import.

The names below load on first use (PEP 562): the light ones (the variant registry, which lives in
the core as avemotion.presets, and the checkpoint format detection) come without importing Keras and
TensorFlow (several seconds).
"""

from importlib import import_module

_EXPORTS = {
    "VARIANTS": "avemotion.presets",
    "variant_settings": "avemotion.presets",
    "CheckpointError": "avemotion.model.checkpoints",
    "detect_format": "avemotion.model.checkpoints",
    "VideoMAEBackbone": "avemotion.model.backbone",
    "VideoMAEClassifier": "avemotion.model.classifier",
    "build_classifier": "avemotion.model.classifier",
    "convert_weights": "avemotion.model.weights",
    "load_videomae": "avemotion.model.weights",
    "WHISPER_PRESETS": "avemotion.model.whisper",
    "WhisperBackbone": "avemotion.model.whisper",
    "WeightedLayerPooling": "avemotion.model.speech_head",
    "log_mel_spectrogram": "avemotion.model.whisper_features",
    "load_whisper": "avemotion.model.whisper_weights",
    "convert_whisper_weights": "avemotion.model.whisper_weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
