"""A trained model's files load as one thing, and its late-fusion weights follow its fusion mode."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from snakemake.utils import validate

from avemotion.config import SCHEMA_PATH
from avemotion.io import write_json
from avemotion.model.bundle import LATE_WEIGHTS_FILE, SETTINGS_FILE, TrainedModel, write_late_weights
from avemotion.model.late_fusion import fused
from avemotion.preprocess.plan import STAGE_NAMES, job_settings
from conftest import demo_settings

OUTPUTS = {
    "emotion": np.array([[0.9, 0.1]]), "valence": np.array([0.5]), "arousal": np.array([-0.5]),
    "video_emotion": np.array([[0.2, 0.8]]), "video_valence": np.array([0.1]), "video_arousal": np.array([0.1]),
    "audio_emotion": np.array([[0.6, 0.4]]), "audio_valence": np.array([0.3]), "audio_arousal": np.array([0.3]),
}  # fmt: skip


def model_settings(fusion: str, labels=("anger", "happiness"), **more) -> dict:
    """The settings.json keys a trained model's loading reads (a training job writes many more)."""
    return {"labels": list(labels), "fusion": fusion, "datasets": ["crema_d"], "training": {"batch_size": 2}, "num_frames": 4, "image_size": 32, **more}


def test_a_model_switched_from_late_to_hybrid_uses_its_own_heads(tmp_path):
    write_json(model_settings("late"), tmp_path / SETTINGS_FILE)
    late = {task: {"video": 0.5, "audio": 0.5} for task in ("emotion", "valence", "arousal")}
    write_late_weights(late, tmp_path)
    np.testing.assert_allclose(TrainedModel.load(tmp_path).fused(OUTPUTS)["emotion"], [[0.4, 0.6]])
    # Retrained as hybrid: the job rewrites the file (null), so no stale weights reach its outputs,
    # which have no video_valence etc. of their own.
    write_json(model_settings("hybrid"), tmp_path / SETTINGS_FILE)
    write_late_weights(None, tmp_path)
    hybrid = {key: value for key, value in OUTPUTS.items() if "_" not in key}
    trained = TrainedModel.load(tmp_path)
    assert trained.late_weights is None and trained.labels == ["anger", "happiness"]
    assert trained.fused(hybrid) == hybrid


def test_late_fusion_combines_each_task_with_its_own_branch_weights():
    """Training fits one set of branch weights per task (emotion, valence, arousal): each task's final
    prediction is its own branches' outputs weighted by its own weights."""
    weights = {"emotion": {"video": 0.5, "audio": 0.5}, "valence": {"video": 0.2, "audio": 0.8}, "arousal": {"video": 1.0, "audio": 0.0}}
    final = fused(OUTPUTS, weights)
    np.testing.assert_allclose(final["emotion"], [[0.4, 0.6]])
    np.testing.assert_allclose(final["valence"], [0.2 * 0.1 + 0.8 * 0.3])
    np.testing.assert_allclose(final["arousal"], [0.1])
    assert set(final) == {"emotion", "valence", "arousal"}


def test_without_late_weights_the_final_outputs_are_the_models_own_shared_heads():
    """A hybrid model's auxiliary branch heads train it; its predictions are the shared heads'."""
    final = fused(OUTPUTS, None)
    assert set(final) == {"emotion", "valence", "arousal"}
    for task, value in final.items():
        np.testing.assert_array_equal(value, OUTPUTS[task])


def test_a_model_folder_from_before_late_weights_were_always_written_loads(tmp_path):
    write_json(model_settings("early"), tmp_path / SETTINGS_FILE)
    assert not (tmp_path / LATE_WEIGHTS_FILE).exists()
    assert TrainedModel.load(tmp_path).late_weights is None


def test_a_mixture_model_prepares_new_clips_as_the_corpus_asked_for_was_prepared(tmp_path):
    """`avemotion predict --dataset`: each corpus of a mixture may have its own preprocessing; a
    new clip is prepared with the one asked for (default: the model's first corpus)."""
    config = demo_settings({"datasets": {"enterface": {"frames": {"num_frames": 8}, "audio": {"n_mfcc": 20}}}})
    validate(config, schema=str(SCHEMA_PATH))  # fills in the defaults
    preprocess = {name: {stage: job_settings(config, name, stage) for stage in STAGE_NAMES} for name in ("crema_d", "enterface")}
    assert preprocess["crema_d"]["frames"]["num_frames"] == 4 and preprocess["crema_d"]["audio"]["n_mfcc"] == 40
    write_json(model_settings("early", datasets=["crema_d", "enterface"], preprocess=preprocess), tmp_path / SETTINGS_FILE)
    trained = TrainedModel.load(tmp_path)
    assert (trained.preprocessor().num_frames, trained.preprocessor().n_mfcc) == (4, 40)
    assert (trained.preprocessor("enterface").num_frames, trained.preprocessor("enterface").n_mfcc) == (8, 20)
    with pytest.raises(ValueError, match="--dataset 'mafw': the model was trained on crema_d, enterface; allowed values: crema_d, enterface"):
        trained.preprocessor("mafw")
    with pytest.raises(ValueError, match="--dataset 'mafw': the model"):  # "mfaw", as the config reads it, is MAFW
        trained.preprocessor("mfaw")
    write_json(model_settings("early", datasets=["enterface", "mafw"], preprocess={"enterface": preprocess["enterface"], "mafw": preprocess["crema_d"]}), tmp_path / SETTINGS_FILE)
    assert TrainedModel.load(tmp_path).preprocessor("mfaw").num_frames == 4


@pytest.mark.parametrize(
    "edit, expected",
    [
        (("face", "backend", "mediapipe"), "preprocess.crema_d.face.backend: 'mediapipe' is not allowed; allowed values: 'facemesh', 'openface'"),
        (("frames", "num_frames", "four"), "preprocess.crema_d.frames.num_frames: 'four' is not of type integer; allowed: a whole number"),
        (("frames", "face_margin", None), "preprocess.crema_d.frames: face_margin missing; required keys here: num_frames, input_size, crop, face_margin"),
        (("audio", "n_mels", None), "preprocess.crema_d.audio: n_mels missing; required keys here: window_ms, hop_ms, n_mels, n_mfcc, missing"),
        (("face", None, None), "preprocess.crema_d: face missing; required keys here: frames, audio, face"),
    ],
)
def test_preprocessing_settings_edited_by_hand_stop_predict_with_one_line(tmp_path, edit, expected):
    """A settings.json whose preprocessing a user edited (a backend this release lacks, a number
    written as text, a key or section deleted) is named with the key before any clip is prepared:
    the stages failed on every clip with a traceback in the log and an "unexpected error" row."""
    config = demo_settings()
    validate(config, schema=str(SCHEMA_PATH))  # fills in the defaults
    preprocess = {"crema_d": {stage: job_settings(config, "crema_d", stage) for stage in STAGE_NAMES}}
    write_json(model_settings("early", preprocess=preprocess), tmp_path / SETTINGS_FILE)
    assert TrainedModel.load(tmp_path).preprocessor().num_frames == 4  # as training records it: revisions and all
    section, key, value = edit
    if key is None:
        del preprocess["crema_d"][section]
    elif value is None:
        del preprocess["crema_d"][section][key]
    else:
        preprocess["crema_d"][section][key] = value
    write_json(model_settings("early", preprocess=preprocess), tmp_path / SETTINGS_FILE)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / SETTINGS_FILE))}: {re.escape(expected)}; copy the model folder again or retrain it$"):
        TrainedModel.load(tmp_path).preprocessor()


def test_a_model_recorded_before_later_keys_or_with_numbers_written_otherwise_loads(tmp_path):
    """Keys added after models first recorded their preprocessing (QUIET_DEFAULTS, openface_args)
    may be absent; whole numbers with a point or numbers as text are read as a config's are."""
    config = demo_settings()
    validate(config, schema=str(SCHEMA_PATH))
    preprocess = {"crema_d": {stage: job_settings(config, "crema_d", stage) for stage in STAGE_NAMES}}
    for section, key in (("face", "openface_args"), ("frames", "sampling"), ("audio", "misaligned")):
        preprocess["crema_d"][section].pop(key, None)
    preprocess["crema_d"]["frames"].update(num_frames=4.0, input_size="64")
    write_json(model_settings("early", preprocess=preprocess), tmp_path / SETTINGS_FILE)
    preprocessor = TrainedModel.load(tmp_path).preprocessor()
    assert (preprocessor.num_frames, preprocessor.stage_settings["frames"]["input_size"]) == (4, 64)
    assert isinstance(preprocessor.num_frames, int) and isinstance(preprocessor.stage_settings["frames"]["input_size"], int)


def test_settings_that_do_not_parse_or_are_not_a_models_name_the_file(tmp_path):
    """A settings.json cut short by a copy or edited by hand stops the load with one line naming the
    file (not a bare parser message, or a KeyError after every clip was prepared); a byte-order
    mark, which some editors write, is read past."""
    path = tmp_path / SETTINGS_FILE
    path.write_text('{"labels": ["anger",')
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not valid JSON \(Expecting value at line 1, column 21\)$"):
        TrainedModel.load(tmp_path)
    path.write_text(json.dumps(model_settings("early")), encoding="utf-8-sig")
    assert TrainedModel.load(tmp_path).labels == ["anger", "happiness"]
    for wrong, named in (([], "labels, datasets, fusion, training, num_frames, image_size"), ({**model_settings("early"), "labels": []}, "labels"),
                         ({**model_settings("early"), "num_frames": "4"}, "num_frames")):  # fmt: skip
        write_json(wrong, path)
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not a trained model's settings \({named} missing or of the wrong type\)"):
            TrainedModel.load(tmp_path)


def test_a_model_folder_that_does_not_exist_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"^{re.escape(str(tmp_path / 'nope'))}: no such folder \(a trained model's folder: model.keras"):
        TrainedModel.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r": not a trained model folder \(model.keras and settings.json expected"):
        TrainedModel.load(tmp_path)


def test_a_model_file_stands_for_its_folder_and_an_experiments_folder_names_its_runs(tmp_path):
    """--model final/model.keras (or its settings.json) is the model in final/; another file is no
    folder; an experiment's folder, given for one of its runs, lists the runs it holds."""
    run = tmp_path / "experiment" / "final"
    run.mkdir(parents=True)
    write_json(model_settings("early"), run / SETTINGS_FILE)
    (run / "model.keras").write_bytes(b"a model")
    for named in ("model.keras", SETTINGS_FILE):
        assert TrainedModel.load(run / named).directory == run
    (run / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=rf"^{re.escape(str(run / 'notes.txt'))}: a file, not a folder \(a trained model's folder"):
        TrainedModel.load(run / "notes.txt")
    (tmp_path / "experiment" / "fold_1").mkdir()
    write_json(model_settings("early"), tmp_path / "experiment" / "fold_1" / SETTINGS_FILE)
    (tmp_path / "experiment" / "summary").mkdir()
    with pytest.raises(FileNotFoundError, match=r"experiment: not a trained model folder \(.*\); the model folders in it: final, fold_1$"):
        TrainedModel.load(tmp_path / "experiment")


def network(outputs: dict, frames=(None, 4, 32, 32, 3)):
    """What mismatches() reads of a Keras model: its outputs by name with their shapes, its inputs."""
    tensor = lambda name, shape: SimpleNamespace(name=name, shape=shape)  # noqa: E731
    return SimpleNamespace(
        output_names=list(outputs), outputs=[tensor(name, shape) for name, shape in outputs.items()], inputs=[tensor("frames", frames)]
    )


def test_a_model_whose_files_come_from_different_runs_is_refused(tmp_path):
    """model.keras from one run, settings.json or late_weights.json from another: predictions would
    pair one run's class probabilities with the other's labels (a wrong class, and no error), or fail
    after every clip was prepared; the load names each disagreement instead."""
    hybrid = {"emotion": (None, 2), "valence": (None,), "arousal": (None,), "video_emotion": (None, 2)}
    write_json(model_settings("hybrid"), tmp_path / SETTINGS_FILE)
    write_late_weights(None, tmp_path)
    trained = TrainedModel.load(tmp_path)
    assert trained.mismatches(network(hybrid)) == []
    assert trained.mismatches(network({**hybrid, "emotion": (None, 3), "video_emotion": (None, 3)})) == [
        "model.keras gives 3 class probabilities, settings.json names 2 labels"
    ]
    assert trained.mismatches(network(hybrid, frames=(None, 8, 32, 32, 3))) == ["model.keras reads 8 frames of 32 px, settings.json says 4 of 32"]
    write_json(model_settings("late"), tmp_path / SETTINGS_FILE)
    write_late_weights({task: {"video": 0.5, "audio": 0.5} for task in ("emotion", "valence", "arousal")}, tmp_path)
    assert TrainedModel.load(tmp_path).mismatches(network(hybrid)) == [
        "model.keras has no output audio_emotion, video_valence, audio_valence, video_arousal, audio_arousal, which late_weights.json combines"
    ]
    write_json(model_settings("hybrid"), tmp_path / SETTINGS_FILE)
    write_late_weights(None, tmp_path)
    late = {f"{branch}_{task}": (None, 2) if task == "emotion" else (None,) for branch in ("video", "audio") for task in ("emotion", "valence", "arousal")}
    assert TrainedModel.load(tmp_path).mismatches(network(late)) == [
        "model.keras has no output emotion, valence, arousal, which settings.json (fusion hybrid) combines"
    ]


def test_a_late_fusion_model_without_branch_weights_is_refused_at_load(tmp_path):
    """A late model copied without late_weights.json, or with the null a hybrid run left, cannot
    combine its branches: the load says which file is missing instead of predicting with none."""
    write_json(model_settings("late"), tmp_path / SETTINGS_FILE)
    with pytest.raises(FileNotFoundError, match=rf"a late-fusion model without its branch weights \({LATE_WEIGHTS_FILE}\)"):
        TrainedModel.load(tmp_path)
    write_late_weights(None, tmp_path)
    with pytest.raises(FileNotFoundError, match="a late-fusion model without its branch weights"):
        TrainedModel.load(tmp_path)


def test_openface_bin_given_to_the_preprocessor_replaces_the_one_recorded_at_training(tmp_path):
    """--openface-bin: the machine that predicts has its own FeatureExtraction; the face stage runs that one."""
    config = demo_settings()
    validate(config, schema=str(SCHEMA_PATH))
    preprocess = {"crema_d": {stage: job_settings(config, "crema_d", stage) for stage in STAGE_NAMES}}
    preprocess["crema_d"]["face"].update(backend="openface", openface_bin="/opt/none/FeatureExtraction")
    write_json(model_settings("early", preprocess=preprocess), tmp_path / SETTINGS_FILE)
    binary = tmp_path / "FeatureExtraction"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    trained = TrainedModel.load(tmp_path)
    assert trained.preprocessor(openface_bin=binary).stage_settings["face"]["openface_bin"] == str(binary)
    with pytest.raises(ValueError, match="'/opt/none/FeatureExtraction' does not exist"):
        trained.preprocessor()
