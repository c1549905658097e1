"""Checks of what the config names that its schema cannot see, run before any job: the OpenFace
binary and its extra arguments, the pretrained VideoMAE and Whisper weights, and every dataset's
frames against the VideoMAE variant's tubelet and patch sizes. Each error names the key, the value
and what is allowed. The VideoMAE variants' sizes come as plain data (avemotion.presets).

The OpenFace binary lookup and the check of its extra arguments live here, since the config check
needs them before any job runs; the face stage (avemotion.face.openface) and a trained model's
preprocessor (avemotion.model.bundle) use them too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from avemotion.config import ConfigError, enabled_datasets
from avemotion.job_params import preprocess_settings, setting_key
from avemotion.presets import variant_settings

OPENFACE_KEY = "face.openface_bin"


def openface_executable(path, hint: str = f" (config key {OPENFACE_KEY})") -> Path:
    """OpenFace's FeatureExtraction binary as a Path; a bare name is looked up on PATH. Here rather
    than beside the OpenFace runner (avemotion.face.openface, which uses it too) because the config
    check needs it before any job runs. ``hint`` ends the error: where the path is set."""
    if not path:
        raise ValueError(f"no OpenFace FeatureExtraction binary configured{hint}")
    found = shutil.which(str(path))
    if found is None:
        if Path(path).name == str(path):
            reason = "was not found on PATH"
        elif Path(path).exists():
            reason = "is not an executable file"
        else:
            reason = "does not exist"
        raise ValueError(f"OpenFace FeatureExtraction binary '{path}' {reason}{hint}")
    return Path(found).absolute()


OPENFACE_ARGS_KEY = "face.openface_args"
# FeatureExtraction arguments avemotion sets on every call: which videos it reads (-f; -fdir, -device
# would add other inputs; -root, -inroot prefix the -f paths) and where and under which name it writes
# their CSVs (-out_dir; -of renames them): the runner reads <out_dir>/<video stem>.csv.
RESERVED_OPENFACE_ARGS = ("-f", "-fdir", "-device", "-root", "-inroot", "-out_dir", "-of")


def openface_arguments(args, key: str = OPENFACE_ARGS_KEY) -> list[str]:
    """The user's extra FeatureExtraction arguments, checked: a list of strings, none of them one
    avemotion sets itself (``key`` names the config key in the error)."""
    allowed = "a list of strings added to every FeatureExtraction call, e.g. ['-mloc', 'model/main_clnf_general.txt']"
    if not isinstance(args, (list, tuple)):
        raise ConfigError(f"config: {key}: {args!r} is not a list; allowed: {allowed}")
    for item in args:
        if not isinstance(item, str):
            raise ConfigError(f"config: {key}: item {item!r} of {list(args)!r} is not a string; allowed: {allowed} (quote numbers)")
    reserved = [item for item in args if item in RESERVED_OPENFACE_ARGS]
    if reserved:
        raise ConfigError(
            f"config: {key}: {reserved[0]!r} is set by avemotion, not here: it chooses the input videos and "
            f"where their CSVs go ({', '.join(RESERVED_OPENFACE_ARGS)} are not allowed in {key})"
        )
    return list(args)


def check_openface(config: dict) -> None:
    """Where a dataset uses the OpenFace backend, its FeatureExtraction must exist and be executable
    and its extra arguments must be a list of strings that leaves avemotion's own alone."""
    for name in enabled_datasets(config):
        face = preprocess_settings(config, name)["face"]
        if face["backend"] != "openface":
            continue
        key = setting_key(config, name, "face", "openface_bin")
        if not face["openface_bin"]:
            raise ConfigError(f"config: {key} must name OpenFace's FeatureExtraction when face.backend is 'openface'")
        try:
            openface_executable(face["openface_bin"])
        except ValueError as error:
            raise ConfigError(f"config: {key}: {error}") from error
        openface_arguments(face.get("openface_args", []), setting_key(config, name, "face", "openface_args"))


def check_model(config: dict) -> None:
    """The pretrained weights must exist (the model section's and each experiment's own), and every
    dataset's frames must split into VideoMAE tubelets."""
    model = config["model"]
    check_audio_encoder(config)
    for where, pretrained in [("model", model["pretrained"])] + [
        (f"experiments.{experiment.get('name')}.model", (experiment.get("model") or {})["pretrained"])
        for experiment in config.get("experiments") or []
        if "pretrained" in (experiment.get("model") or {})
    ]:
        if pretrained and not Path(pretrained).exists():
            raise ConfigError(f"config: {where}.pretrained: {pretrained!r} does not exist (a file or folder of VideoMAE weights, or null)")
    variant = variant_settings(model["variant"])
    problems = []
    for name in enabled_datasets(config):
        frames = preprocess_settings(config, name)["frames"]
        for setting, unit in (("num_frames", "tubelet_size"), ("input_size", "patch_size")):
            if frames[setting] % variant[unit]:
                problems.append(
                    f"config: {setting_key(config, name, 'frames', setting)}: {frames[setting]} is not allowed with model.variant {model['variant']!r}; "
                    f"allowed values: multiples of {variant[unit]} (the VideoMAE {unit.replace('_', ' ')})"
                )
    if problems:  # every one at once (a global key once), so one run shows all there is to fix
        raise ConfigError("\n".join(dict.fromkeys(problems)))


# Read only by a Whisper audio branch (avemotion.model.speech_branch).
WHISPER_WEIGHTS = "a Hugging Face Whisper folder or .safetensors, or a .weights.h5 from `avemotion convert-weights`; or null"


def check_audio_encoder(config: dict) -> None:
    """Where an experiment uses Whisper (its own model keys over the model section), its audio_weights
    must exist. (Mixup/CutMix mix its waveform with the other inputs: avemotion.fusion.mixing.)"""
    for experiment in config.get("experiments", []):
        own, name = experiment.get("model") or {}, experiment.get("name")
        where = f"experiments.{name}.model" if "audio_weights" in own else "model"
        model = {**config["model"], **own}
        if model.get("audio_encoder") != "whisper":
            continue
        path = model.get("audio_weights")
        if path and not Path(path).exists():
            raise ConfigError(f"config: {where}.audio_weights: {path!r} does not exist ({WHISPER_WEIGHTS})")
