"""One experiment's resolved settings: the config's defaults merged with the experiment's own keys.

The result is plain JSON data. Training writes it beside each model, so evaluation and
``avemotion predict`` read exactly what the model was trained with.
"""

from __future__ import annotations

from pathlib import Path

from avemotion.config import ConfigError, enabled_datasets, holds_wildcards, sorted_keys
from avemotion.fusion.shards import FUSION_REVISION
from avemotion.job_params import (
    QUIET_DEFAULTS,
    QUIET_TRAINING,
    audio_model_settings,
    preprocess_settings,
    setting_key,
)
from avemotion.labels import CANONICAL_LABELS, CORPUS_LABELS
from avemotion.model.pretrained_checks import videomae_weights_problem, whisper_weights_problem
from avemotion.preprocess.plan import STAGE_NAMES, job_settings

# Every corpus protocol here has five speaker-independent folds (see avemotion/datasets/).
NUM_FOLDS = 5


def _corpus_labels(dataset: str) -> list[str]:
    return list(CORPUS_LABELS[dataset])


def default_labels(datasets: list[str]) -> list[str]:
    """A dataset's own classes; for a mixture, the classes every dataset has (canonical order)."""
    shared = set(CANONICAL_LABELS)
    for dataset in datasets:
        shared &= set(_corpus_labels(dataset))
    return [label for label in CANONICAL_LABELS if label in shared]


def _uses_enabled_datasets(config: dict, experiment: dict) -> bool:
    """True when every corpus of the experiment is enabled, False when none is; a mix is an error."""
    enabled = set(enabled_datasets(config))
    missing = [dataset for dataset in experiment["datasets"] if dataset not in enabled]
    if missing and len(missing) < len(experiment["datasets"]):
        raise ConfigError(
            f"config: experiment {experiment['name']!r} uses {', '.join(missing)}, which {_why_left_out(config, missing)}, "
            f"or remove {', '.join(missing)} from the experiment"
        )
    return not missing


def _why_left_out(config: dict, datasets: list[str]) -> str:
    """Why ``datasets`` take no part, and what to set: a disabled corpus has its root already."""
    disabled = [name for name in datasets if ((config.get("datasets") or {}).get(name) or {}).get("enabled") is False]
    rootless = [name for name in datasets if name not in disabled]
    reasons = [f"is disabled: set {' and '.join(f'datasets.{name}.enabled: true' for name in disabled)}"] if disabled else []
    reasons += [f"has no root: set {' and '.join(f'datasets.{name}.root' for name in rootless)}"] if rootless else []
    return "; ".join(reasons)


def experiment_names(config: dict) -> list[str]:
    """The experiments that run: those whose corpora are configured (see :func:`skipped_experiments`)."""
    return [experiment["name"] for experiment in config.get("experiments", []) if _uses_enabled_datasets(config, experiment)]


def skipped_experiments(config: dict) -> list[str]:
    """Experiments left out because none of their corpora is configured (the product config lists
    one per corpus; a user with one corpus should not have to delete the others)."""
    return [experiment["name"] for experiment in config.get("experiments", []) if not _uses_enabled_datasets(config, experiment)]


def experiment_folds(experiment: dict) -> list[int]:
    folds = experiment.get("folds", "all")
    return list(range(1, NUM_FOLDS + 1)) if folds == "all" else sorted(folds)


def _shared_frames(config: dict, experiment: dict) -> dict:
    """A mixture trains one network on one stream of examples, so its datasets must sample frames
    alike (and store as many temporal windows: the shards are read as one)."""
    chosen = None
    for dataset in experiment["datasets"]:
        frames = preprocess_settings(config, dataset)["frames"]
        key = (frames["num_frames"], frames["input_size"], _stored_windows(frames))
        if chosen is not None and key != chosen[1]:
            raise ConfigError(
                f"config: experiment {experiment['name']!r} mixes {chosen[0]} ({chosen[1][0]} frames of {chosen[1][1]} px, {chosen[1][2]} window(s)) "
                f"and {dataset} ({key[0]} of {key[1]}, {key[2]}); set datasets.<name>.frames.num_frames, input_size and windows alike"
            )
        chosen = chosen or (dataset, key)
    return {"num_frames": chosen[1][0], "image_size": chosen[1][1]}


def _stored_windows(frames: dict) -> int:
    return frames.get("windows", QUIET_DEFAULTS["frames"]["windows"])


def _check_test_windows(config: dict, experiment: dict, test_windows: int | None) -> None:
    """Evaluation averages ``test_windows`` of the windows the frames stage stored (alike for the
    corpora of a mixture: :func:`_shared_frames`): more than it stores would be cut to what it has
    without a word."""
    dataset = experiment["datasets"][0]
    stored = _stored_windows(preprocess_settings(config, dataset)["frames"])
    if test_windows is not None and test_windows > stored:
        raise ConfigError(
            f"config: {_training_key(experiment, 'test_windows')}: {test_windows} is more than the {stored} temporal "
            f"window(s) the frames stage stores ({setting_key(config, dataset, 'frames', 'windows')}); allowed values: at most {stored}, or null for all"
        )


def _checked_labels(experiment: dict) -> list[str]:
    """The experiment's labels: each must be a class of at least one of its corpora."""
    name, datasets = experiment["name"], experiment["datasets"]
    if not experiment.get("labels"):
        return default_labels(datasets)
    known = [label for label in CANONICAL_LABELS if any(label in _corpus_labels(dataset) for dataset in datasets)]
    unknown = [label for label in experiment["labels"] if label not in known]
    if unknown:
        raise ConfigError(
            f"config: experiments.{name}.labels: {', '.join(map(repr, unknown))} is not a class of {' or '.join(datasets)}; "
            f"allowed values: {', '.join(known)}"
        )
    return list(experiment["labels"])


def _checked_weights(experiment: dict) -> dict | None:
    """A mixture's sampling weights: one for each of its datasets and no other (the schema knows
    the weights are positive numbers, not which datasets the experiment mixes)."""
    weights, datasets = experiment.get("dataset_weights"), experiment["datasets"]
    if weights is None:
        return None
    missing, unknown = [name for name in datasets if name not in weights], [name for name in weights if name not in datasets]
    if missing or unknown:
        problem = "; ".join(
            [f"{', '.join(map(repr, unknown))} is not a dataset of the experiment"] * bool(unknown) + [f"no weight for {', '.join(missing)}"] * bool(missing)
        )
        raise ConfigError(
            f"config: experiments.{experiment['name']}.dataset_weights: {problem}; allowed: a weight > 0 for each of "
            f"{', '.join(datasets)}, or null (in proportion to their sizes)"
        )
    return dict(weights)


def _checked_folds(experiment: dict) -> list[int]:
    folds = experiment_folds(experiment)
    outside = [fold for fold in folds if not 1 <= fold <= NUM_FOLDS]
    if outside:
        raise ConfigError(
            f"config: experiments.{experiment['name']}.folds: {outside} is not allowed; allowed values: 'all' or a list "
            f"of the protocol's folds 1-{NUM_FOLDS} of {' and '.join(experiment['datasets'])}"
        )
    return folds


def training_devices(training: dict) -> int:
    """The devices a training job's batch is split across: its GPUs on TensorFlow (one device on
    CPUs); on JAX a job trains on one device (avemotion.train.devices)."""
    return 1 if training.get("backend") == "jax" else max(1, training.get("gpus", 1))


def replica_batch_error(training: dict, replicas: int, key: str) -> ConfigError | None:
    """Each replica takes its own share of a batch, and the valence/arousal loss (1 - CCC) is taken
    per replica's batch: on one clip it is constant, with no gradient at all, so a batch of one clip
    per replica would leave the valence and arousal heads untrained, silently (None when it fits)."""
    batch_size, replicas = training["batch_size"], max(1, replicas)
    if batch_size // replicas >= 2 or not training["va_loss_weight"]:
        return None
    return ConfigError(
        f"config: {key}: {batch_size} gives {batch_size // replicas} clip(s) per batch "
        f"on each of {replicas} device(s), and the valence/arousal loss (CCC, taken per device's batch, also with "
        f"accumulation_steps) has no gradient on one clip; allowed values: at least {2 * replicas}, or training.va_loss_weight: 0"
    )


def _training_key(experiment: dict, key: str) -> str:
    """The config key a training setting of ``experiment`` came from: its own training block, or
    the global one."""
    if key in (experiment.get("training") or {}):
        return f"experiments.{experiment['name']}.training.{key}"
    return f"training.{key}"


def experiment_settings(config: dict, name: str) -> dict:
    matches = [experiment for experiment in config.get("experiments", []) if experiment["name"] == name]
    if len(matches) != 1:
        raise ConfigError(f"config: experiments: {len(matches)} experiments are named {name!r}; names must be unique")
    experiment = matches[0]
    if not _uses_enabled_datasets(config, experiment):
        raise ConfigError(f"config: experiment {name!r}: none of {', '.join(experiment['datasets'])} takes part: it {_why_left_out(config, experiment['datasets'])}")
    labels = _checked_labels(experiment)
    if len(labels) < 2:
        raise ConfigError(f"config: experiments.{name}.labels: {labels} leaves fewer than two classes to learn")
    model = audio_model_settings({**config["model"], **(experiment.get("model") or {})})  # audio_* only for Whisper
    training = {**config["training"], **(experiment.get("training") or {})}
    error = replica_batch_error(training, training_devices(training), _training_key(experiment, "batch_size"))
    if error:
        raise error
    low, high = training.get("crop_scale", QUIET_TRAINING["crop_scale"])
    if low > high:
        raise ConfigError(f"config: {_training_key(experiment, 'crop_scale')}: {[low, high]} has its low end above its high end; allowed: [low, high] with 0 < low <= high <= 1")
    if training["frozen_backbone_epochs"] > training["epochs"]:
        raise ConfigError(
            f"config: {_training_key(experiment, 'frozen_backbone_epochs')}: {training['frozen_backbone_epochs']} is more than the "
            f"{training['epochs']} epochs of training; allowed values: at most {training['epochs']} ({_training_key(experiment, 'epochs')})"
        )
    _check_test_windows(config, experiment, training.get("test_windows", QUIET_TRAINING["test_windows"]))
    return {
        "name": name,
        "datasets": list(experiment["datasets"]),
        "fusion": experiment["fusion"],
        "labels": list(labels),
        "dataset_weights": _checked_weights(experiment),
        "folds": _checked_folds(experiment),
        "final": experiment.get("final", True),
        "model": model,
        **_shared_frames(config, experiment),
        "training": training,
        # Saved beside the model, so `avemotion predict` prepares new clips as these were prepared (and
        # can tell when this release's face features differ: the face jobs' facemesh_features).
        "preprocess": {dataset: {stage: job_settings(config, dataset, stage) for stage in STAGE_NAMES} for dataset in experiment["datasets"]},
        "fusion_revision": FUSION_REVISION,
    }


# Where and on which Keras backend a training job runs, not what it computes: changing them must not
# retrain a model.
JOB_RESOURCES = ("threads", "gpus", "backend")
# Which runs an experiment trains, not what any one of them learns: adding a fold (or the final
# model) must not retrain the runs already trained.
RUN_LIST_KEYS = ("folds", "final")
# What training.augment: false turns off (with the crop, flip, jitter and SpecAugment it always draws).
AUGMENTATION_KEYS = ("crop_scale", "random_erasing", "rand_augment")


def model_settings(config: dict, name: str) -> dict:
    """The experiment's settings without the job's resources or the list of runs: the training
    rules' parameter, so Snakemake reruns a model when what it learns changes, not when the threads
    it gets or the folds beside it do (nor when config files name the same keys in another order:
    config.sorted_keys)."""
    settings = experiment_settings(config, name)
    # Without augmentation its settings change nothing the job computes.
    unused = AUGMENTATION_KEYS if settings["training"].get("augment", True) is False else ()
    training = {
        key: value
        for key, value in settings["training"].items()
        if key not in JOB_RESOURCES and key not in unused and not (key in QUIET_TRAINING and value == QUIET_TRAINING[key])
    }
    run = {key: value for key, value in settings.items() if key not in RUN_LIST_KEYS}
    return sorted_keys({**run, "training": training})


def check_experiments(config: dict) -> list[str]:
    """Resolve every experiment once before any job runs, so config mistakes stop the run early;
    returns one-line notices (experiments left out, a large model without pretrained weights)."""
    names = [experiment["name"] for experiment in config.get("experiments", [])]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ConfigError(f"config: experiments: names must be unique; repeated: {', '.join(duplicated)}")
    experiments = {experiment["name"]: experiment for experiment in config.get("experiments", [])}
    notices = [
        f"avemotion: experiment {name!r} left out: none of its corpora takes part (it {_why_left_out(config, experiments[name]['datasets'])})"
        for name in skipped_experiments(config)
    ]
    for name in experiment_names(config):
        model = experiment_settings(config, name)["model"]
        check_weight_files(model, experiments[name].get("model") or {}, name)
        if model["pretrained"] and model.get("frame_normalization") == "clip":
            notices.append(
                f"avemotion: experiment {name!r} fine-tunes pretrained weights on frames standardised per clip "
                "(model.frame_normalization: clip); the weights learnt ImageNet-standardised ones (imagenet)"
            )
        if model["variant"] != "tiny" and not model["pretrained"]:
            notices.append(
                f"avemotion: experiment {name!r} trains VideoMAE {model['variant']} from random weights "
                "(model.pretrained is null; the published recipes fine-tune pretrained weights)"
            )
        if model.get("audio_encoder") == "whisper" and not model.get("audio_weights"):
            notices.append(f"avemotion: experiment {name!r} uses a Whisper {model['audio_preset']} encoder with random weights (model.audio_weights is null)")
    prediction_experiments(config)
    return notices


def check_weight_files(model: dict, own: dict, name: str) -> None:
    """The experiment's weight files hold what its model settings ask for, as far as the files tell
    without loading them (avemotion.model.pretrained_checks); ``own``: the experiment's own model keys."""
    key = {setting: f"experiments.{name}.model.{setting}" if setting in own else f"model.{setting}" for setting in ("pretrained", "variant", "audio_weights")}
    if model["pretrained"]:
        problem = videomae_weights_problem(model["pretrained"], model["variant"], key["variant"])
        if problem:
            raise ConfigError(
                f"config: {key['pretrained']}: {model['pretrained']!r} {problem}; allowed values: VideoMAE weights of "
                f"{key['variant']} {model['variant']!r} (a Hugging Face folder, .pth, .h5 or an `avemotion convert-weights` file), or null"
            )
    if model.get("audio_encoder") == "whisper" and model.get("audio_weights"):
        problem = whisper_weights_problem(model["audio_weights"])
        if problem:
            raise ConfigError(f"config: {key['audio_weights']}: {model['audio_weights']!r}: {problem}")


def prediction_experiments(config: dict) -> list[str]:
    """The experiments whose final models predict the clips of predict.input_dir (none without it)."""
    predict = config.get("predict") or {}
    if not predict.get("input_dir"):
        return []
    if not Path(predict["input_dir"]).is_dir():
        raise ConfigError(f"config: predict.input_dir: {predict['input_dir']} is not a folder (relative paths start at the working directory)")
    if holds_wildcards(predict["input_dir"]):
        raise ConfigError(f"config: predict.input_dir: {predict['input_dir']} holds {{ or }}, which Snakemake reads as wildcards in file names; use a path without them")
    finals = [name for name in experiment_names(config) if experiment_settings(config, name)["final"]]
    chosen = predict.get("experiments")
    if chosen is None:
        return finals
    unknown = [name for name in chosen if name not in finals]
    if unknown:
        raise ConfigError(
            f"config: predict.experiments: {', '.join(map(repr, unknown))} is not an experiment with a final model; "
            f"allowed values: {', '.join(finals) or '(none: no experiment has final: true)'}"
        )
    return list(chosen)


def heldout_datasets(settings: dict) -> list[str]:
    """Leave-one-corpus-out runs of a mixture: each of its datasets, tested after training on the others."""
    return list(settings["datasets"]) if len(settings["datasets"]) > 1 else []


def common_labels(labels: list[str], dataset: str) -> list[str]:
    """The labels of ``labels`` (in their order) that ``dataset`` also has."""
    theirs = set(_corpus_labels(dataset))
    return [label for label in labels if label in theirs]


def cross_corpus_datasets(config: dict, name: str) -> list[str]:
    """Datasets a single-corpus experiment's final model is tested on: every other enabled dataset
    sharing at least two of its labels and giving as many frames of the same size (a corpus may crop
    and sample them its own way, as the corpora of a mixture may)."""
    settings = experiment_settings(config, name)
    if len(settings["datasets"]) != 1 or not settings["final"]:
        return []
    chosen = []
    for dataset in enabled_datasets(config):
        if dataset in settings["datasets"] or len(common_labels(settings["labels"], dataset)) < 2:
            continue
        frames = preprocess_settings(config, dataset)["frames"]
        if (frames["num_frames"], frames["input_size"]) == (settings["num_frames"], settings["image_size"]):
            chosen.append(dataset)
    return chosen
