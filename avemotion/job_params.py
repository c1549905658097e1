"""The settings each job is given as its Snakemake params, and what a trained model records of them.

Snakemake reruns a job whose params change, so these are written with care: a dataset's
preprocessing settings are the global ones with its own overrides (:func:`preprocess_settings`),
without keys added after results existed while they hold the value those results were computed
with (:data:`QUIET_DEFAULTS`, :data:`QUIET_TRAINING`, :data:`AUDIO_MODEL_KEYS` at the CNN audio
branch), and with keys nothing reads at their default (:data:`READ_ONLY_WITH`). A trained model's
settings.json holds the same settings; :func:`recorded_preprocessing` reads them back.

A core module, beside avemotion.config, whose schema it reads.
"""

from __future__ import annotations

import copy
import functools

from avemotion.config import TOP_LEVEL, config_errors, load_schema, section_defaults, typed_scalars

PREPROCESS_SECTIONS = ("frames", "audio", "face")
# Keys added after results existed, left out of a dataset's settings while they hold these values:
# what results made before the key existed were computed with (the stages read an absent key as
# this value). The settings are params of the preprocessing and training jobs, and Snakemake reruns
# a job whose params change: a new key that changes nothing the jobs compute must not rerun every
# frames chunk and training. They equal the schema's defaults today (tests/test_config.py checks it),
# but they are another fact: a default changed later must not make old results read as computed
# with it.
QUIET_DEFAULTS = {
    "frames": {"short_clips": "keep", "truncated_clips": "keep", "sampling": "segments", "sampling_rate": 4, "windows": 1},
    "audio": {"min_coverage": 0.9, "max_overrun_s": 0.5, "misaligned": "keep"},
    "face": {"no_face": "quarantine"},
}
# The same for the training keys (train.settings.model_settings: a key that changes nothing the job
# computes must not retrain every model).
QUIET_TRAINING = {
    "mixup": 0,
    "cutmix": 0,
    "mixup_prob": 1.0,
    "mixup_switch_prob": 0.5,
    "test_views": 1,
    "test_windows": None,
    "accumulation_steps": 1,
    "crop_scale": [0.6, 1.0],
    "random_erasing": 0,
    "rand_augment": None,
}


# training.test_views of a model whose settings have none (trained before the key existed): one view.
DEFAULT_TEST_VIEWS = QUIET_TRAINING["test_views"]
# training.test_windows unset: every temporal window the shards hold is a test view.
DEFAULT_TEST_WINDOWS = QUIET_TRAINING["test_windows"]


# Settings that only one choice of another reads: (section, key) -> (the other key, that choice).
# Otherwise they hold their default in the jobs' params, so a value nothing reads reruns nothing
# (the default, not left out: params of results made before stay the same).
READ_ONLY_WITH = {
    ("frames", "sampling_rate"): ("sampling", "dense"),
    ("frames", "face_margin"): ("crop", "face"),
    ("face", "openface_bin"): ("backend", "openface"),
    ("face", "openface_args"): ("backend", "openface"),
}


@functools.cache
def _schema_defaults(section: str) -> dict:
    return section_defaults(load_schema()["properties"][section])


def setting_key(config: dict, dataset: str, section: str, key: str) -> str:
    """The config key a dataset's ``section`` setting came from: its own block, or the global one."""
    return f"datasets.{dataset}.{section}.{key}" if key in (config["datasets"][dataset].get(section) or {}) else f"{section}.{key}"


def preprocess_settings(config: dict, dataset: str) -> dict[str, dict]:
    """A dataset's effective frames/audio/face settings: the global ones with its own overrides
    (without the :data:`QUIET_DEFAULTS` keys that hold their default, and with the
    :data:`READ_ONLY_WITH` keys that nothing reads at their default)."""
    own = config["datasets"][dataset]
    settings = {section: {**config[section], **(own.get(section) or {})} for section in PREPROCESS_SECTIONS}
    for (section, key), (other, reader) in READ_ONLY_WITH.items():
        if key in settings[section] and settings[section].get(other) != reader:
            settings[section][key] = copy.deepcopy(_schema_defaults(section)[key])
    for section, defaults in QUIET_DEFAULTS.items():
        for key, value in defaults.items():
            if settings[section].get(key, value) == value:
                settings[section].pop(key, None)
    return settings


# The preprocessing keys every trained model's settings.json has held since models recorded it (the
# stages read keys added later, QUIET_DEFAULTS and openface_args, with their defaults).
RECORDED_KEYS = {
    "frames": ("num_frames", "input_size", "crop", "face_margin"),
    "audio": ("window_ms", "hop_ms", "n_mels", "n_mfcc", "missing"),
    "face": ("backend", "openface_bin", "detection_threshold"),
}


@functools.cache
def _recorded_schema() -> dict:
    """The config schema's preprocessing sections as a trained model records them: the
    :data:`RECORDED_KEYS` required, keys the schema does not know (the revisions a release records)
    allowed."""
    schema = load_schema()
    sections = {section: {**schema["$defs"][f"{section}_override"], "additionalProperties": True, "required": list(keys)} for section, keys in RECORDED_KEYS.items()}
    return {"type": "object", "required": list(RECORDED_KEYS), "properties": sections, "$defs": schema["$defs"]}


def recorded_preprocessing(preprocess: dict, where: str) -> dict:
    """One corpus' preprocessing as a trained model recorded it (settings.json's ``preprocess``, here
    named ``where``), typed as a config's values are (``32.0`` an integer); a section or a recorded
    key missing, or a value the config would refuse (a file edited by hand), raises ValueError
    naming each key, its value and what is allowed: the stages would fail on every clip instead."""
    schema = _recorded_schema()
    typed = typed_scalars(preprocess, schema, schema)
    errors = [where + (line[len(TOP_LEVEL) :] if line.startswith(TOP_LEVEL) else f".{line}") for line in config_errors(typed, schema)]
    if errors:
        raise ValueError("; ".join(errors))
    return typed


# Read only by a Whisper audio branch (avemotion.model.speech_branch). At cnn they are left out of an
# experiment's settings, the training jobs' params, so that keys which change nothing a CNN model
# computes retrain none (as QUIET_DEFAULTS do for the preprocessing settings).
AUDIO_MODEL_KEYS = ("audio_encoder", "audio_weights", "audio_preset", "audio_trainable", "audio_max_seconds")


def audio_model_settings(model: dict) -> dict:
    """An experiment's model settings without the audio keys when its audio branch is the CNN."""
    if model.get("audio_encoder", "cnn") == "cnn":
        return {key: value for key, value in model.items() if key not in AUDIO_MODEL_KEYS}
    return dict(model)
