"""A trained model as one thing: its Keras network (model.keras), the settings it was trained with
(settings.json: labels, fusion mode, each corpus' preprocessing) and its late-fusion branch weights
(late_weights.json: null unless the fusion mode is late). Training writes all three into a run
folder and the training rules declare them (:data:`RUN_FILES`), so a rerun replaces every one;
cross-corpus evaluation and ``avemotion predict`` load them together here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avemotion.io import read_json, write_json
from avemotion.model.late_fusion import fused

MODEL_FILE, SETTINGS_FILE, LATE_WEIGHTS_FILE = "model.keras", "settings.json", "late_weights.json"
# What loading a trained model reads (TrainedModel.load and network()).
MODEL_FILES = (MODEL_FILE, SETTINGS_FILE, LATE_WEIGHTS_FILE)
# What one training job writes: the model's own files, and the run's predictions and records.
RUN_FILES = (*MODEL_FILES, "predictions.parquet", "metrics.json", "history.csv", "split.json")


@dataclass(frozen=True)
class TrainedModel:
    directory: Path
    settings: dict
    late_weights: dict | None

    @classmethod
    def load(cls, directory) -> "TrainedModel":
        """The settings and weights of the model in ``directory`` (the network loads on demand:
        it needs TensorFlow). A folder written before late_weights.json was always written has none
        for non-late models, which is what null means."""
        directory = Path(directory)
        weights = directory / LATE_WEIGHTS_FILE
        return cls(directory, read_json(directory / SETTINGS_FILE), read_json(weights) if weights.exists() else None)

    @property
    def labels(self) -> list[str]:
        return list(self.settings["labels"])

    def network(self):
        import keras  # here, not at the top: the workflow imports this module while it plans jobs

        return keras.models.load_model(self.directory / MODEL_FILE, compile=False)

    def fused(self, outputs: dict) -> dict:
        """The final emotion probabilities and VA predictions from the network's outputs."""
        return fused(outputs, self.late_weights)


def write_late_weights(weights: dict | None, directory) -> None:
    """Written for every model (null when there are none), so switching an experiment's fusion mode
    replaces the file instead of leaving the weights of the mode before."""
    write_json(weights, Path(directory) / LATE_WEIGHTS_FILE)
