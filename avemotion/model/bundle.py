"""A trained model as one thing: its Keras network (model.keras), the settings it was trained with
(settings.json: labels, fusion mode, each corpus' preprocessing), its late-fusion branch weights
(late_weights.json: null unless the fusion mode is late) and the preprocessor those settings make
(avemotion.model.preprocessor). Training writes the three files into a run folder and the training
rules declare them (:data:`RUN_FILES`), so a rerun replaces every one; cross-corpus evaluation and
``avemotion predict`` load them together here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from avemotion.config import DATASET_ALIASES
from avemotion.config_checks import openface_executable
from avemotion.io import read_json, write_json
from avemotion.job_params import recorded_preprocessing
from avemotion.layout import (
    HISTORY_FILE,
    LATE_WEIGHTS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PREDICTIONS_FILE,
    SETTINGS_FILE,
    SPLIT_FILE,
)
from avemotion.model.late_fusion import fused
from avemotion.model.preprocessor import ClipPreprocessor

# What loading a trained model reads (TrainedModel.load and network()).
MODEL_FILES = (MODEL_FILE, SETTINGS_FILE, LATE_WEIGHTS_FILE)
# What one training job writes: the model's own files, and the run's predictions and records.
RUN_FILES = (*MODEL_FILES, PREDICTIONS_FILE, METRICS_FILE, HISTORY_FILE, SPLIT_FILE)
NOT_A_MODEL = f"{MODEL_FILE} and {SETTINGS_FILE} expected, and {LATE_WEIGHTS_FILE} for late fusion"
# What the model's files must agree on: a folder whose files came from two runs predicts nonsense.
MIXED_FILES = "its files come from different runs: copy the model folder whole"
# The settings.json keys that loading a model and preparing clips read, and their types.
SETTINGS_KEYS = {"labels": list, "datasets": list, "fusion": str, "training": dict, "num_frames": int, "image_size": int}


def _models_inside(folder: Path) -> str:
    """The trained models among ``folder``'s subfolders, as a hint: an experiment's folder given for
    one of its runs (final, fold_1, ...)."""
    try:
        inside = sorted(child.name for child in folder.iterdir() if (child / SETTINGS_FILE).is_file())
    except OSError:
        return ""
    return f"; the model folders in it: {', '.join(inside)}" if inside else ""


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
        if directory.name in MODEL_FILES and directory.is_file():  # --model final/model.keras: the folder it is in
            directory = directory.parent
        if not directory.is_dir():  # a mistyped --model, or another file
            what = "a file, not a folder" if directory.exists() else "no such folder"
            raise FileNotFoundError(f"{directory}: {what} (a trained model's folder: {NOT_A_MODEL})")
        if not (directory / SETTINGS_FILE).exists():
            raise FileNotFoundError(f"{directory}: not a trained model folder ({NOT_A_MODEL}){_models_inside(directory)}")
        settings = read_json(directory / SETTINGS_FILE)
        wrong = [key for key, kind in SETTINGS_KEYS.items() if not isinstance(settings, dict) or not isinstance(settings.get(key), kind) or settings[key] in ([], "")]
        if wrong:
            raise ValueError(f"{directory / SETTINGS_FILE}: not a trained model's settings ({', '.join(wrong)} missing or of the wrong type); copy the model folder again")
        weights = directory / LATE_WEIGHTS_FILE
        late_weights = read_json(weights) if weights.exists() else None
        if settings["fusion"] == "late" and not late_weights:  # a copy of the first two files only
            raise FileNotFoundError(f"{directory}: a late-fusion model without its branch weights ({LATE_WEIGHTS_FILE}); copy it with {MODEL_FILE} and {SETTINGS_FILE}")
        return cls(directory, settings, late_weights)

    @property
    def labels(self) -> list[str]:
        return list(self.settings["labels"])

    def preprocessor(self, dataset: str | None = None, openface_bin=None) -> ClipPreprocessor:
        """Clip files to this model's inputs with the preprocessing of ``dataset``, one of the
        corpora it was trained on (default: its first). A model whose face features came from
        OpenFace needs its FeatureExtraction: where the model was trained (settings.json), or
        ``openface_bin`` (this machine's); checked here, before any clip is prepared."""
        preprocess = self.settings.get("preprocess")
        if not preprocess:
            raise ValueError(f"{self.directory / SETTINGS_FILE} does not record the preprocessing settings (a model trained before they were saved): retrain it")
        dataset = DATASET_ALIASES.get(dataset, dataset) if dataset else self.settings["datasets"][0]  # mfaw, as the config reads it
        if dataset not in preprocess:
            raise ValueError(f"--dataset {dataset!r}: the model was trained on {', '.join(preprocess)}; allowed values: {', '.join(preprocess)}")
        try:  # a file edited by hand: one line now, not a traceback for every clip
            settings = recorded_preprocessing(preprocess[dataset], f"preprocess.{dataset}")
        except ValueError as error:
            raise ValueError(f"{self.directory / SETTINGS_FILE}: {error}; copy the model folder again or retrain it") from None
        if openface_bin:
            settings = {**settings, "face": {**settings["face"], "openface_bin": str(openface_bin)}}
        if settings["face"]["backend"] == "openface":
            openface_executable(settings["face"].get("openface_bin"), ": this model's face features come from OpenFace; give its FeatureExtraction with --openface-bin")
        return ClipPreprocessor(settings, self.settings.get("fusion_revision"))

    def network(self):
        import keras  # here, not at the top: the workflow imports this module while it plans jobs

        path = self.directory / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"{self.directory}: not a trained model folder ({NOT_A_MODEL})")
        try:
            network = keras.models.load_model(path, compile=False)
        except Exception as error:  # Keras says "File not found" for a truncated zip that exists
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"{path}: damaged model file, Keras cannot read it ({reason}); retrain or copy it again") from error
        problems = self.mismatches(network)
        if problems:
            raise ValueError(f"{self.directory}: {'; '.join(problems)}: {MIXED_FILES}")
        return network

    def mismatches(self, network) -> list[str]:
        """What ``network`` (model.keras) and the settings and late-fusion weights disagree on: the
        outputs the fusion mode reads, the number of classes, the frames it takes."""
        outputs = dict(zip(network.output_names, network.outputs))
        if self.late_weights:
            needed, reader = [f"{branch}_{task}" for task, branches in self.late_weights.items() for branch in branches], LATE_WEIGHTS_FILE
        else:
            needed, reader = ["emotion", "valence", "arousal"], f"{SETTINGS_FILE} (fusion {self.settings['fusion']})"
        problems = []
        missing = [name for name in needed if name not in outputs]
        if missing:
            problems.append(f"{MODEL_FILE} has no output {', '.join(missing)}, which {reader} combines")
        widths = sorted({int(tensor.shape[-1]) for name, tensor in outputs.items() if name.rsplit("_", 1)[-1] == "emotion"})
        if widths != [len(self.labels)]:
            problems.append(f"{MODEL_FILE} gives {' or '.join(map(str, widths))} class probabilities, {SETTINGS_FILE} names {len(self.labels)} labels")
        frames = {tensor.name: tuple(tensor.shape) for tensor in network.inputs}.get("frames")
        expected = (self.settings["num_frames"], self.settings["image_size"], self.settings["image_size"])
        if frames and tuple(frames[1:4]) != expected:
            problems.append(f"{MODEL_FILE} reads {frames[1]} frames of {frames[2]} px, {SETTINGS_FILE} says {expected[0]} of {expected[1]}")
        return problems

    def fused(self, outputs: dict) -> dict:
        """The final emotion probabilities and VA predictions from the network's outputs."""
        return fused(outputs, self.late_weights)


def write_late_weights(weights: dict | None, directory) -> None:
    """Written for every model (null when there are none), so switching an experiment's fusion mode
    replaces the file instead of leaving the weights of the mode before."""
    write_json(weights, Path(directory) / LATE_WEIGHTS_FILE)
