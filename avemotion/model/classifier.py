"""VideoMAE task model: the backbone plus an optional linear head.

Outputs a dict: ``features`` (the pooled embedding) and, when ``num_classes > 0``, ``logits``.
Saved weights carry the architecture (an HDF5 attribute), so ``load_videomae`` can rebuild the
network from a ``.weights.h5`` file alone.
"""

from __future__ import annotations

import json

import h5py
import keras

from avemotion.model.backbone import VideoMAEBackbone
from avemotion.model.checkpoints import ARCHITECTURE_ATTRIBUTE
from avemotion.model.layers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class VideoMAEClassifier(keras.Model):
    def __init__(self, backbone: VideoMAEBackbone, num_classes: int = 0, label_names=None, **kwargs):
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(f"{len(label_names)} label names given for {num_classes} classes")
        frames = backbone.input
        features = backbone(frames)
        outputs = {"features": features}
        head = None
        if num_classes:
            # The head runs in float32 even under mixed precision: logits feed softmax and losses.
            head = keras.layers.Dense(num_classes, dtype="float32", name="head")
            outputs["logits"] = head(features)
        super().__init__(inputs=frames, outputs=outputs, **kwargs)
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.label_names = list(label_names) if label_names is not None else None

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.layers.serialize(self.backbone),
            "num_classes": self.num_classes,
            "label_names": self.label_names,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)

    def architecture_record(self) -> dict:
        return {
            "backbone": self.backbone.architecture,
            "num_classes": self.num_classes,
            "label_names": self.label_names,
        }

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """Keras' .weights.h5 plus the architecture, so the file alone rebuilds the model."""
        super().save_weights(filepath, overwrite=overwrite, **kwargs)
        with h5py.File(filepath, "a") as handle:
            handle.attrs[ARCHITECTURE_ATTRIBUTE] = json.dumps(self.architecture_record())


def build_classifier(architecture: dict, num_classes: int = 0, label_names=None, **backbone_overrides):
    """A randomly initialised classifier from backbone arguments (overrides win, e.g. num_frames)."""
    backbone = VideoMAEBackbone(**{**architecture, **backbone_overrides})
    return VideoMAEClassifier(backbone, num_classes=num_classes, label_names=label_names)
