"""A trained model's files load as one thing, and its late-fusion weights follow its fusion mode."""

from __future__ import annotations

import numpy as np
import pytest
from snakemake.utils import validate

from avemotion.config import SCHEMA_PATH
from avemotion.io import write_json
from avemotion.model.bundle import LATE_WEIGHTS_FILE, SETTINGS_FILE, TrainedModel, write_late_weights
from avemotion.preprocess.plan import STAGE_NAMES, job_settings
from conftest import demo_settings

OUTPUTS = {
    "emotion": np.array([[0.9, 0.1]]), "valence": np.array([0.5]), "arousal": np.array([-0.5]),
    "video_emotion": np.array([[0.2, 0.8]]), "video_valence": np.array([0.1]), "video_arousal": np.array([0.1]),
    "audio_emotion": np.array([[0.6, 0.4]]), "audio_valence": np.array([0.3]), "audio_arousal": np.array([0.3]),
}  # fmt: skip


def test_a_model_switched_from_late_to_hybrid_uses_its_own_heads(tmp_path):
    write_json({"labels": ["anger", "happiness"], "fusion": "late"}, tmp_path / SETTINGS_FILE)
    late = {task: {"video": 0.5, "audio": 0.5} for task in ("emotion", "valence", "arousal")}
    write_late_weights(late, tmp_path)
    np.testing.assert_allclose(TrainedModel.load(tmp_path).fused(OUTPUTS)["emotion"], [[0.4, 0.6]])
    # Retrained as hybrid: the job rewrites the file (null), so no stale weights reach its outputs,
    # which have no video_valence etc. of their own.
    write_json({"labels": ["anger", "happiness"], "fusion": "hybrid"}, tmp_path / SETTINGS_FILE)
    write_late_weights(None, tmp_path)
    hybrid = {key: value for key, value in OUTPUTS.items() if "_" not in key}
    trained = TrainedModel.load(tmp_path)
    assert trained.late_weights is None and trained.labels == ["anger", "happiness"]
    assert trained.fused(hybrid) == hybrid


def test_a_model_folder_from_before_late_weights_were_always_written_loads(tmp_path):
    write_json({"labels": ["anger", "happiness"], "fusion": "early"}, tmp_path / SETTINGS_FILE)
    assert not (tmp_path / LATE_WEIGHTS_FILE).exists()
    assert TrainedModel.load(tmp_path).late_weights is None


def test_a_mixture_model_prepares_new_clips_as_the_corpus_asked_for_was_prepared(tmp_path):
    """`avemotion predict --dataset`: each corpus of a mixture may have its own preprocessing; a
    new clip is prepared with the one asked for (default: the model's first corpus)."""
    config = demo_settings({"datasets": {"enterface": {"frames": {"num_frames": 8}, "audio": {"n_mfcc": 20}}}})
    validate(config, schema=str(SCHEMA_PATH))  # fills in the defaults
    preprocess = {name: {stage: job_settings(config, name, stage) for stage in STAGE_NAMES} for name in ("crema_d", "enterface")}
    assert preprocess["crema_d"]["frames"]["num_frames"] == 4 and preprocess["crema_d"]["audio"]["n_mfcc"] == 40
    write_json({"labels": ["anger", "happiness"], "fusion": "early", "datasets": ["crema_d", "enterface"], "preprocess": preprocess}, tmp_path / SETTINGS_FILE)
    trained = TrainedModel.load(tmp_path)
    assert (trained.preprocessor().num_frames, trained.preprocessor().n_mfcc) == (4, 40)
    assert (trained.preprocessor("enterface").num_frames, trained.preprocessor("enterface").n_mfcc) == (8, 20)
    with pytest.raises(ValueError, match="--dataset 'mafw': the model was trained on crema_d, enterface; allowed values: crema_d, enterface"):
        trained.preprocessor("mafw")
