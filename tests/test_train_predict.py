"""The predictions table of a trained model (each clip's truth beside the fused and each branch's own
predictions), the branch weights late fusion fits on validation, and the scored labels' subset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from avemotion.train import predict
from avemotion.train.predict import branch_names, branch_predictions, late_weights, predict_clips, predictions_table, restrict_to

LABELS = ["anger", "happiness", "sadness"]


def truth_table(ids=("c", "a", "b"), labels=("sadness", "anger", "happiness")) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "clip_id": list(ids), "dataset": "crema_d", "speaker": ["3", "1", "2"][: len(ids)], "fold": [3, 1, 2][: len(ids)],
            "label": list(labels), "valence": [-0.7, -0.6, 0.8][: len(ids)], "arousal": [-0.4, 0.7, 0.5][: len(ids)],
        }
    )  # fmt: skip


def test_each_row_holds_its_own_clips_truth_and_predictions_sorted_by_clip():
    """The model gives its clips in the shards' order, not the table's: each row is matched by id."""
    ids = ["b", "c", "a"]  # the model's order
    final = {
        "emotion": np.array([[0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]]),
        "valence": np.array([0.5, -0.5, -0.4]),
        "arousal": np.array([0.4, -0.3, 0.6]),
    }
    outputs = {
        "video_emotion": np.array([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8]]),
        "video_valence": np.array([0.1, 0.2, 0.3]),
        "video_arousal": np.array([0.4, 0.5, 0.6]),
        "face_emotion": np.array([[0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1]]),  # no VA heads of its own
    }
    table = predictions_table(ids, final, truth_table(), LABELS, outputs).set_index("clip_id")
    assert table.index.tolist() == ["a", "b", "c"]
    assert table["label"].tolist() == ["anger", "happiness", "sadness"]
    assert table["label_index"].tolist() == [0, 1, 2]
    assert table[["dataset", "speaker", "fold"]].loc["c"].tolist() == ["crema_d", "3", 3]
    assert table["predicted_label"].tolist() == ["anger", "happiness", "sadness"]
    assert table["predicted_index"].tolist() == [0, 1, 2]
    for index, name in enumerate(LABELS):
        assert table[f"prob_{name}"].tolist() == [final["emotion"][row, index] for row in (2, 0, 1)]
    assert table["valence"].tolist() == [-0.6, 0.8, -0.7] and table["arousal"].tolist() == [0.7, 0.5, -0.4]
    assert table["valence_pred"].tolist() == [-0.4, 0.5, -0.5] and table["arousal_pred"].tolist() == [0.6, 0.4, -0.3]
    assert table["video_predicted_label"].tolist() == ["sadness", "anger", "sadness"]
    assert table["video_predicted_index"].tolist() == [2, 0, 2]
    assert table["video_valence_pred"].tolist() == [0.3, 0.1, 0.2] and table["video_arousal_pred"].tolist() == [0.6, 0.4, 0.5]
    assert table["face_predicted_label"].tolist() == ["anger", "sadness", "happiness"]
    assert not {"face_valence_pred", "face_arousal_pred", "audio_predicted_index"} & set(table.columns)


def test_a_branchs_non_finite_outputs_are_an_error_counting_the_clips_with_any():
    final = {"emotion": np.full((3, 3), 1 / 3), "valence": np.zeros(3), "arousal": np.zeros(3)}
    outputs = {"audio_emotion": np.full((3, 3), 1 / 3)}
    outputs["audio_emotion"][1, 2] = np.nan  # one value of one clip
    with pytest.raises(ValueError, match=r"^a branch of the model gave non-finite audio_emotion outputs for 1 of 3 clips"):
        predictions_table(["a", "b", "c"], final, truth_table(), LABELS, outputs)
    final["emotion"][[0, 2], 0] = np.inf
    with pytest.raises(ValueError, match=r"^the model gave non-finite emotion outputs for 2 of 3 clips"):
        predictions_table(["a", "b", "c"], final, truth_table(), LABELS, outputs)


def test_branches_are_those_with_an_emotion_head_of_their_own():
    assert branch_names({"emotion": 0, "valence": 0, "arousal": 0}) == []  # early fusion
    assert branch_names({"emotion": 0, "face_emotion": 0, "video_emotion": 0, "video_valence": 0}) == ["video", "face"]
    assert branch_names({"audio_valence": 0, "audio_arousal": 0}) == []


def test_a_branchs_predictions_take_the_place_of_the_fused_ones():
    table = pd.DataFrame(
        {
            "clip_id": ["a", "b"], "label": ["anger", "sadness"], "label_index": [0, 2], "valence": [-0.6, -0.7], "arousal": [0.7, -0.4],
            "predicted_index": [0, 2], "valence_pred": [0.0, 0.0], "arousal_pred": [0.0, 0.0],
            "video_predicted_index": [1, 1], "video_valence_pred": [0.3, 0.2], "video_arousal_pred": [0.1, 0.4], "face_predicted_index": [2, 0],
        }
    )  # fmt: skip
    video = branch_predictions(table, "video")
    assert video["predicted_index"].tolist() == [1, 1]
    assert video["valence_pred"].tolist() == [0.3, 0.2] and video["arousal_pred"].tolist() == [0.1, 0.4]
    assert video[["clip_id", "label", "label_index", "valence", "arousal"]].equals(table[["clip_id", "label", "label_index", "valence", "arousal"]])
    face = branch_predictions(table, "face")  # no VA head: scored on emotion only
    assert face["predicted_index"].tolist() == [2, 0] and "valence_pred" not in face and "arousal_pred" not in face


def test_the_scored_labels_are_kept_in_their_order_in_every_emotion_output_and_renormalised():
    outputs = {
        "emotion": np.array([[0.5, 0.3, 0.2], [0.0, 1.0, 0.0]]),
        "video_emotion": np.array([[0.2, 0.2, 0.6], [0.1, 0.1, 0.8]]),
        "video_valence": np.array([0.1, -0.2]),
    }
    restricted = restrict_to(outputs, LABELS, ["sadness", "anger"])
    np.testing.assert_allclose(restricted["emotion"], [[0.2 / 0.7, 0.5 / 0.7], [0.0, 0.0]])  # none of its mass on them: no NaN
    np.testing.assert_allclose(restricted["video_emotion"], [[0.6 / 0.8, 0.2 / 0.8], [0.8 / 0.9, 0.1 / 0.9]])
    np.testing.assert_array_equal(restricted["video_valence"], outputs["video_valence"])


def late_outputs(truth: pd.DataFrame) -> dict[str, np.ndarray]:
    """Video knows the class and the valence, audio the arousal; audio's classes are the labels'
    mirror image, its valence head follows arousal and video's arousal head valence; face guesses."""
    index = truth["label"].map(LABELS.index).to_numpy()
    rng = np.random.default_rng(0)
    uniform, noise = np.full((len(truth), 3), 1 / 3), rng.normal(0, 0.5, len(truth))
    valence, arousal = truth["valence"].to_numpy(), truth["arousal"].to_numpy()
    return {
        "video_emotion": 0.9 * np.eye(3)[index] + 0.1 * uniform, "audio_emotion": 0.9 * np.eye(3)[2 - index] + 0.1 * uniform,
        "face_emotion": rng.dirichlet(np.ones(3), len(truth)),
        "video_valence": valence, "audio_valence": arousal, "face_valence": noise,
        "video_arousal": valence, "audio_arousal": arousal, "face_arousal": -noise,
    }  # fmt: skip


def validation_truth(clips=12) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "clip_id": [f"v{i:02d}" for i in range(clips)], "dataset": "crema_d", "speaker": "1", "fold": 1,
            "label": [LABELS[i % 3] for i in range(clips)], "valence": rng.uniform(-1, 1, clips), "arousal": rng.uniform(-1, 1, clips),
        }
    )  # fmt: skip


def test_late_weights_count_each_branch_by_how_well_it_did_on_each_task():
    truth = validation_truth()
    weights = late_weights(late_outputs(truth), truth, LABELS)
    assert max(weights["emotion"], key=weights["emotion"].get) == "video"
    assert max(weights["valence"], key=weights["valence"].get) == "video"
    assert max(weights["arousal"], key=weights["arousal"].get) == "audio"


@pytest.mark.parametrize("fusion", ["late", "hybrid"])
def test_late_fusion_fits_its_weights_on_validation_and_predicts_the_evaluated_split_on_the_scored_labels(monkeypatch, fusion):
    clips = pd.concat([validation_truth(), truth_table(("t1", "t2", "t3"), ("anger", "anger", "sadness"))], ignore_index=True)
    split = {"train": [], "validation": clips["clip_id"].tolist()[:12], "test": ["t3", "t1", "t2"]}
    asked = []

    def raw_outputs(model, settings, tfrecord_paths, ids):
        asked.append(ids)
        outputs = late_outputs(clips.set_index("clip_id").loc[ids].reset_index())
        if fusion == "hybrid":
            outputs.update(emotion=np.full((len(ids), 3), 1 / 3), valence=outputs["face_valence"], arousal=outputs["face_arousal"])
        return ids, outputs

    monkeypatch.setattr(predict, "raw_outputs", raw_outputs)
    settings = {"fusion": fusion, "labels": LABELS}
    table, weights = predict_clips("model", settings, ["shard"], split, "test", clips, scored=["anger", "sadness"])
    assert asked == ([split["validation"]] if fusion == "late" else []) + [split["test"]]
    assert (weights is None) is (fusion == "hybrid")
    assert table["clip_id"].tolist() == ["t1", "t2", "t3"]
    assert [column for column in table if column.startswith("prob_")] == ["prob_anger", "prob_sadness"]
    np.testing.assert_allclose(table[["prob_anger", "prob_sadness"]].sum(axis=1), 1)
    assert table["video_predicted_label"].tolist() == ["anger", "anger", "sadness"]
    if fusion == "late":  # video, which knows the class, counts most
        assert table["predicted_label"].tolist() == ["anger", "anger", "sadness"]
    else:  # the model's own (uniform) output
        np.testing.assert_allclose(table["prob_anger"], 0.5)
