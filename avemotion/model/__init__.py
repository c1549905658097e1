"""VideoMAE for Keras 3: backbone, task model, variant registry and checkpoint import.

Importing this package imports Keras (and so TensorFlow); keep it out of code that does not need it.
"""

from avemotion.model.backbone import VideoMAEBackbone
from avemotion.model.checkpoints import CheckpointError, detect_format
from avemotion.model.classifier import VideoMAEClassifier, build_classifier
from avemotion.model.presets import VARIANTS, variant_settings
from avemotion.model.weights import convert_weights, load_videomae

__all__ = [
    "VARIANTS",
    "CheckpointError",
    "VideoMAEBackbone",
    "VideoMAEClassifier",
    "build_classifier",
    "convert_weights",
    "detect_format",
    "load_videomae",
    "variant_settings",
]
