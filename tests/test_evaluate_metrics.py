"""Evaluation metrics against examples worked out by hand."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from avemotion.metrics import (
    classification_metrics,
    evaluate_predictions,
    regression_metrics,
    summarise_folds,
)


def test_imbalanced_three_classes_war_differs_from_uar():
    true = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]  # supports 6, 2, 2
    pred = [0, 0, 0, 0, 0, 0, 0, 1, 0, 2]
    m = classification_metrics(true, pred, 3)
    assert m["confusion_matrix"] == [[6, 0, 0], [1, 1, 0], [1, 0, 1]]
    assert m["war"] == pytest.approx(8 / 10)  # 6 + 1 + 1 hits of 10
    assert m["uar"] == pytest.approx(2 / 3)  # recalls 6/6, 1/2, 1/2 -> (1 + .5 + .5) / 3
    assert m["recall"] == pytest.approx({"0": 1.0, "1": 0.5, "2": 0.5})
    assert m["support"] == {"0": 6, "1": 2, "2": 2}
    # F1: class 0 p=6/8, r=1 -> 2*.75/1.75 = 6/7; classes 1, 2 p=1, r=.5 -> 2*.5/1.5 = 2/3
    # macro = (6/7 + 2/3 + 2/3) / 3 = 46/63
    assert m["macro_f1"] == pytest.approx(46 / 63)


def test_macro_f1_with_a_class_never_predicted():
    true = [0, 1, 2, 2]
    pred = [0, 1, 1, 1]  # class 2 is never predicted; class 3 is in neither
    m = classification_metrics(true, pred, 4, ["a", "b", "c", "d"])
    # F1: a = 1; b p=1/3, r=1 -> 2*(1/3)/(4/3) = 1/2; c p=0, r=0 -> 0; d left out
    assert m["macro_f1"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["uar"] == pytest.approx((1 + 1 + 0) / 3)  # d has no true clips
    assert math.isnan(m["recall"]["d"])
    assert m["war"] == pytest.approx(2 / 4)


def test_class_index_out_of_range_is_rejected():
    with pytest.raises(ValueError):
        classification_metrics([0, 3], [0, 1], 3)


def test_perfect_and_constant_predictions():
    target = [-1.0, 0.0, 1.0]
    perfect = regression_metrics(target, target)
    assert perfect == pytest.approx({"ccc": 1.0, "pearson": 1.0, "rmse": 0.0})

    constant = regression_metrics(target, [0.5, 0.5, 0.5])
    assert constant["ccc"] == 0.0  # cov = 0
    assert math.isnan(constant["pearson"])  # prediction side is constant
    # squared errors 1.5^2, 0.5^2, 0.5^2 = 2.25 + .25 + .25 = 2.75
    assert constant["rmse"] == pytest.approx(math.sqrt(2.75 / 3))


def direct_ccc(target, pred):
    """Lin's formula with numpy's population moments."""
    target, pred = np.asarray(target, dtype=float), np.asarray(pred, dtype=float)
    cov = np.cov(target, pred, bias=True)[0, 1]
    return 2 * cov / (target.var() + pred.var() + (target.mean() - pred.mean()) ** 2)


def scipy_pearson(target, pred) -> float:
    """scipy's Pearson r; it warns (and returns nan) for a constant or nearly constant side."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.pearsonr(target, pred).statistic)


def test_pearson_and_ccc_agree_with_scipy_and_lins_formula_on_random_data():
    rng = np.random.default_rng(0)
    for size in (2, 3, 10, 500):
        target = rng.uniform(-1, 1, size)
        pred = 0.6 * target + rng.normal(0, 0.3, size) + 0.1
        m = regression_metrics(target, pred)
        assert m["pearson"] == pytest.approx(scipy_pearson(target, pred), rel=1e-9, abs=1e-12)
        assert m["ccc"] == pytest.approx(direct_ccc(target, pred), rel=1e-9, abs=1e-12)
        # a small but real spread (a millionth of the values' scale) is no constant
        small = 0.4 + 1e-6 * pred
        assert regression_metrics(target, small)["pearson"] == pytest.approx(scipy_pearson(target, small), rel=1e-6)


@pytest.mark.parametrize("value", [0.4, -0.7, 0.1, 1e-3, 123.456, 0.0])
def test_a_constant_side_has_no_pearson_and_ccc_zero_or_one(value):
    target = np.random.default_rng(1).uniform(-1, 1, 7)
    constant = np.full(7, value)  # np.var of most such arrays is ~1e-33, not 0
    for t, p in ((target, constant), (constant, target)):
        assert math.isnan(scipy_pearson(t, p))
        m = regression_metrics(t, p)
        assert math.isnan(m["pearson"])
        assert m["ccc"] == pytest.approx(0.0, abs=1e-15)  # cov = 0
        assert m["ccc"] == pytest.approx(direct_ccc(t, p), abs=1e-12)
    same = regression_metrics(constant, np.full(7, value))
    assert math.isnan(same["pearson"]) and same["ccc"] == 1.0 and same["rmse"] == 0.0
    other = regression_metrics(constant, np.full(7, value + 0.5))
    assert math.isnan(other["pearson"]) and other["ccc"] == 0.0  # two different constants: cov = 0


def test_a_side_that_varies_only_by_rounding_counts_as_constant():
    """Values one float step apart: scipy warns that the side is nearly constant and its r is noise."""
    target = np.random.default_rng(2).uniform(-1, 1, 50)
    near = np.full(50, 0.4)
    near[::2] = np.nextafter(0.4, 1.0)
    with pytest.warns(stats.NearConstantInputWarning):
        stats.pearsonr(target, near)
    m = regression_metrics(target, near)
    assert math.isnan(m["pearson"])
    assert m["ccc"] == pytest.approx(0.0, abs=1e-15)


def test_bias_shift_lowers_ccc_but_not_pearson():
    target = np.array([-1.0, 0.0, 1.0])
    m = regression_metrics(target, target + 0.5)
    # var_t = var_p = cov = 2/3, (mean_t - mean_p)^2 = 0.25
    # ccc = (2 * 2/3) / (2/3 + 2/3 + 1/4) = (4/3) / (19/12) = 16/19
    assert m["pearson"] == pytest.approx(1.0)
    assert m["ccc"] == pytest.approx(16 / 19)
    assert m["rmse"] == pytest.approx(0.5)


def test_fold_summary_mean_sample_std_and_summed_confusion():
    per_fold = {
        2: {"war": 0.7, "recall": {"a": float("nan")}, "valence": {"ccc": 0.2}, "confusion_matrix": [[1, 0], [1, 1]]},
        1: {"war": 0.5, "recall": {"a": 0.4}, "valence": {"ccc": 0.4}, "confusion_matrix": [[2, 1], [0, 3]]},
    }
    s = summarise_folds(per_fold)
    assert s["folds"] == [1, 2]
    war = s["metrics"]["war"]
    assert war["mean"] == pytest.approx(0.6)
    assert war["std"] == pytest.approx(math.sqrt((0.1**2 + 0.1**2) / (2 - 1)))  # ddof=1
    assert war["per_fold"] == {1: 0.5, 2: 0.7}
    assert s["metrics"]["valence.ccc"]["mean"] == pytest.approx(0.3)
    # the nan recall of fold 2 is left out of the mean, and one defined value has no std
    assert s["metrics"]["recall.a"]["mean"] == pytest.approx(0.4)
    assert math.isnan(s["metrics"]["recall.a"]["std"])
    assert s["confusion_matrix"] == [[3, 1], [1, 4]]
    # counts are summarised too: summary.json's clip counts and per-class support come from them
    counts = summarise_folds({1: {"n_clips": 4, "support": {"a": 3}}, 2: {"n_clips": 6, "support": {"a": 1}}})["metrics"]
    assert counts["n_clips"]["per_fold"] == {1: 4.0, 2: 6.0} and counts["support.a"]["mean"] == pytest.approx(2.0)


def _predictions_table():
    names = ["anger", "happiness", "neutral"]
    true = [0, 0, 1, 2]
    pred = [0, 1, 1, 2]
    probs = np.eye(3)[pred] * 0.8 + 0.2 / 3
    table = pd.DataFrame(
        {
            "clip_id": ["c1", "c2", "c3", "c4"],
            "dataset": "demo",
            "speaker": ["s1", "s1", "s2", "s2"],
            "fold": [1, 1, 2, 2],
            "label": [names[i] for i in true],
            "label_index": true,
            "predicted_index": pred,
            "predicted_label": [names[i] for i in pred],
            **{f"prob_{n}": probs[:, i] for i, n in enumerate(names)},
            "valence": [-0.5, -0.5, 0.9, 0.0],
            "arousal": [0.7, 0.7, 0.5, -0.6],
            "valence_pred": [-0.5, 0.9, 0.9, 0.0],
            "arousal_pred": [0.7, 0.5, 0.5, -0.6],
        }
    )
    return table, names


def test_evaluate_predictions_on_a_small_table():
    table, names = _predictions_table()
    m = evaluate_predictions(table, names)
    assert m["war"] == pytest.approx(3 / 4)
    assert m["uar"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert m["recall"] == pytest.approx({"anger": 0.5, "happiness": 1.0, "neutral": 1.0})
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    # one valence error of 1.4 among four clips: rmse = sqrt(1.4^2 / 4) = 0.7
    assert m["valence"]["rmse"] == pytest.approx(0.7)
    assert set(m["arousal"]) == {"ccc", "pearson", "rmse"}


def test_evaluate_predictions_rejects_labels_that_disagree_with_the_label_set():
    table, names = _predictions_table()
    with pytest.raises(ValueError):
        evaluate_predictions(table, list(reversed(names)))


def test_predictions_that_run_against_the_truth_have_negative_correlation_and_ccc():
    """Valence predicted upside down is reported as r = -1 (a sign error to see), not clipped to 0."""
    truth = np.array([-0.8, -0.2, 0.1, 0.6, 0.9])
    metrics = regression_metrics(truth, -truth)
    assert metrics["pearson"] == pytest.approx(-1.0) and metrics["ccc"] < -0.9


def test_macro_f1_counts_a_class_only_predicted_as_a_miss():
    """A class the model predicts but the test fold does not hold lowers macro-F1 (sklearn's labels of
    truth or predictions), as it lowers WAR: true [0, 0], predicted [0, 1] of 3 classes -> F1 of class
    0 is 2/3 (precision 1/2, recall 1), of class 1 is 0, class 2 takes no part: (2/3 + 0) / 2."""
    metrics = classification_metrics([0, 0], [0, 1], 3)
    assert metrics["macro_f1"] == pytest.approx(1 / 3) and metrics["uar"] == pytest.approx(0.5)


def test_no_clips_or_sides_of_different_lengths_are_refused():
    """An empty fold or predictions that do not pair with their targets say so instead of giving nan
    or broadcasting one prediction over every clip."""
    with pytest.raises(ValueError, match="no clips to evaluate"):
        classification_metrics([], [], 3)
    with pytest.raises(ValueError, match="same length"):
        regression_metrics([0.1, 0.2, 0.3], [0.1])
    with pytest.raises(ValueError, match="same length"):
        classification_metrics([0, 1, 1], [0, 1], 2)


def test_indices_below_zero_two_dimensional_sides_and_a_wrong_number_of_names_are_refused():
    """A -1 (what tables write for "no label") would be counted as the last class by numpy's wrap-around,
    and (N, 1) columns would be scored flattened: both are refused, as are names that do not match
    the classes one to one."""
    for true, pred in (([0, -1], [0, 1]), ([0, 1], [-1, 1])):
        with pytest.raises(ValueError, match="outside"):
            classification_metrics(true, pred, 3)
    with pytest.raises(ValueError, match="1-D"):
        classification_metrics([[0], [1]], [[0], [1]], 2)
    with pytest.raises(ValueError, match="1-D"):
        regression_metrics([[0.1], [0.5], [0.2]], [[0.2], [0.4], [0.3]])
    for names in (["a", "b"], ["a", "b", "c", "d"]):
        with pytest.raises(ValueError, match="class names"):
            classification_metrics([0, 1, 2], [0, 1, 2], 3, names)


def test_class_indices_read_back_as_floats_count_when_whole_and_are_refused_otherwise():
    """A label_index column beside a missing label reads back from Parquet as floats: 1.0 is class 1,
    but 1.7 or nan is no class, and reading it as an int would count it as class 1 (or a wrapped
    index) without a word."""
    assert classification_metrics(np.array([0.0, 1.0, 2.0]), [0, 1, 1], 3)["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    for bad in (1.7, np.nan):
        with pytest.raises(ValueError, match=rf"true class indices must be whole numbers, got \[{bad}\]"):
            classification_metrics([0.0, bad, 2.0], [0, 1, 2], 3)
        with pytest.raises(ValueError, match="predicted class indices must be whole numbers"):
            classification_metrics([0, 1, 2], [0.0, bad, 2.0], 3)


def test_n_clips_counts_clips_not_classes():
    assert classification_metrics([0, 0, 0, 1, 2], [0, 1, 0, 1, 2], 3)["n_clips"] == 5


def test_pearson_of_parallel_sides_is_exactly_plus_or_minus_one():
    """Rounding takes these sides' r to 1.0000000000000002; a correlation is reported within [-1, 1]."""
    target = np.array([0.1, 0.2, 0.7])
    assert regression_metrics(target, 2 * target)["pearson"] == 1.0
    assert regression_metrics(target, -2 * target)["pearson"] == -1.0


def test_a_constant_side_and_a_single_fold_give_nan_without_numpy_warnings():
    """The undefined values are decided, not the result of a 0/0 that numpy warns about in every log."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(regression_metrics([-0.5, 0.1, 0.8], [0.3, 0.3, 0.3])["pearson"])
        assert math.isnan(summarise_folds({"final": {"war": 0.5}})["metrics"]["war"]["std"])


def test_two_constants_agree_up_to_rounding_relative_to_their_magnitude():
    """CONSTANT_TOLERANCE is a fraction of the values' magnitude: two large constants one float step
    apart agree (ccc 1), two small constants a relative 1e-10 apart do not (ccc 0)."""
    big = np.full(5, 1e6)
    assert regression_metrics(big, np.full(5, np.nextafter(1e6, 2e6)))["ccc"] == 1.0
    small = np.full(5, 1e-3)
    assert regression_metrics(small, small * (1 + 1e-10))["ccc"] == 0.0


def test_evaluate_predictions_refuses_a_label_index_outside_the_label_set():
    table, names = _predictions_table()
    table.loc[3, "label_index"] = 3  # its label is neutral, index 2
    with pytest.raises(ValueError):
        evaluate_predictions(table, names)


def test_evaluate_predictions_without_prediction_columns_has_no_valence_or_arousal():
    """A model without valence/arousal heads: the table keeps the label-derived targets but has no
    *_pred columns, and its metrics are classification only."""
    table, names = _predictions_table()
    metrics = evaluate_predictions(table.drop(columns=["valence_pred", "arousal_pred"]), names)
    assert "valence" not in metrics and "arousal" not in metrics
    assert metrics["war"] == pytest.approx(3 / 4)


def test_fold_summary_of_a_metric_some_folds_lack():
    """A metric missing from a fold (a branch without valence there, fold 1 here) is nan in that fold
    and left out of the mean, whichever fold comes first; the mean is a mean, not a median."""
    per_fold = {
        1: {"war": 0.1},
        2: {"war": 0.2, "valence": {"ccc": 0.2}},
        3: {"war": 0.9, "valence": {"ccc": 0.5}},
    }
    metrics = summarise_folds(per_fold)["metrics"]
    assert metrics["war"]["mean"] == pytest.approx(0.4)
    ccc = metrics["valence.ccc"]
    assert ccc["mean"] == pytest.approx(0.35) and ccc["std"] == pytest.approx(math.sqrt(2 * 0.15**2))
    assert math.isnan(ccc["per_fold"][1]) and ccc["per_fold"][2] == 0.2


def test_fold_summary_leaves_out_flags_and_an_absent_confusion_matrix_and_refuses_no_folds():
    summary = summarise_folds({1: {"war": 0.5, "early_stopped": True}, 2: {"war": 0.7, "early_stopped": False}})
    assert set(summary["metrics"]) == {"war"} and "confusion_matrix" not in summary
    with pytest.raises(ValueError, match="no folds"):
        summarise_folds({})
