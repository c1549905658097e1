"""Late-fusion weights: fitted on validation predictions, they pick the informative branches and
give nothing to a branch that carries no evidence (constant, or noise independent of the labels)."""

import numpy as np
import pytest

from avemotion.metrics import classification_metrics
from avemotion.model.late_fusion import combine
from avemotion.train.ensemble import fit_emotion_weights, fit_regression_weights, simplex_grid


def softmax(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def confident_branch(rng, labels, classes, scale=4.0):
    """Probabilities of a branch that knows the labels partly, overconfident as trained networks are."""
    return softmax(scale * (np.eye(classes)[labels] + rng.normal(0, 1, (len(labels), classes))))


def uar(probabilities, labels, classes):
    return classification_metrics(labels, probabilities.argmax(axis=1), classes)["uar"]


def test_grid_covers_the_simplex_evenly_first():
    grid = simplex_grid(3, 0.1)
    assert len(grid) == 66 and all(abs(sum(point) - 1) < 1e-9 for point in grid)
    assert max(grid[0]) <= 0.4  # the most even point comes first


def test_emotion_weights_prefer_the_branch_that_knows_the_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    # A weakly confident but right branch (0.5 vs 0.25) beside confident noise: an even mix errs.
    informative = np.eye(3)[labels] * 0.25 + 0.75 / 3
    branches = {"audio": rng.dirichlet(np.ones(3) * 0.3, size=60), "video": informative, "face": rng.dirichlet(np.ones(3) * 0.3, size=60)}
    even = combine(branches, {name: 1 / 3 for name in branches}).argmax(1)
    assert (even == labels).mean() < 0.9
    weights = fit_emotion_weights(branches, labels)
    assert weights["video"] >= 0.5
    assert (combine(branches, weights).argmax(1) == labels).mean() > (even == labels).mean()


def test_regression_weights_follow_the_branch_that_tracks_the_target():
    rng = np.random.default_rng(1)
    target = rng.uniform(-1, 1, 80)
    weights = fit_regression_weights({"video": target + rng.normal(0, 0.05, 80), "audio": rng.normal(0, 0.5, 80)}, target)
    assert weights["video"] >= 0.9


def test_a_constant_branch_gets_no_weight():
    rng = np.random.default_rng(2)
    classes, clips = 5, 400
    labels = rng.choice(classes, clips, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    prior = np.bincount(labels, minlength=classes) / clips
    # Uniform probabilities leave every argmax as it was, so accuracy alone cannot tell them from evidence.
    branches = {
        "audio": confident_branch(rng, labels, classes),
        "video": np.full((clips, classes), 1 / classes),
        "face": np.tile(prior, (clips, 1)),
    }
    weights = fit_emotion_weights(branches, labels)
    assert weights == {"audio": 1.0, "face": 0.0, "video": 0.0}

    target = rng.uniform(-1, 1, clips)
    # Overdispersed, as a head can be: diluting it with a constant would raise its CCC without adding evidence.
    tracking = 1.6 * target + rng.normal(0, 0.4, clips)
    for constant in (np.full(clips, target.mean()), np.zeros(clips)):
        weights = fit_regression_weights({"audio": tracking, "video": constant}, target)
        assert weights == {"audio": 1.0, "video": 0.0}


def test_a_noise_branch_gets_no_weight_and_costs_no_accuracy():
    rng = np.random.default_rng(3)
    classes, clips = 6, 400
    labels = rng.choice(classes, clips)
    informative = confident_branch(rng, labels, classes)
    branches = {"audio": informative, "video": rng.dirichlet(np.ones(classes) * 0.3, clips), "face": rng.dirichlet(np.ones(classes) * 3, clips)}
    weights = fit_emotion_weights(branches, labels)
    assert weights["video"] <= 0.1 and weights["face"] <= 0.1
    assert uar(combine(branches, weights), labels, classes) >= uar(informative, labels, classes) - 0.02

    target = rng.uniform(-1, 1, clips)
    # Spread like the target, as a head trained on CCC is: noise adds nothing it lacks.
    tracking = 0.8 * target + rng.normal(0, 0.6 * target.std(), clips)
    weights = fit_regression_weights({"audio": tracking, "video": rng.normal(0, target.std(), clips)}, target)
    assert weights["video"] <= 0.1


def test_two_independent_informative_branches_are_combined():
    rng = np.random.default_rng(4)
    classes, clips = 6, 400
    labels = rng.choice(classes, clips)
    branches = {"audio": confident_branch(rng, labels, classes), "video": confident_branch(rng, labels, classes)}
    weights = fit_emotion_weights(branches, labels)
    assert min(weights.values()) >= 0.3
    assert uar(combine(branches, weights), labels, classes) > max(uar(p, labels, classes) for p in branches.values())

    target = rng.uniform(-1, 1, clips)
    weights = fit_regression_weights({"audio": target + rng.normal(0, 0.5, clips), "video": target + rng.normal(0, 0.5, clips)}, target)
    assert min(weights.values()) >= 0.3


def test_weights_are_deterministic_and_ignore_the_order_branches_come_in():
    rng = np.random.default_rng(5)
    classes, clips = 4, 200
    labels = rng.choice(classes, clips)
    branches = {name: confident_branch(rng, labels, classes, scale) for name, scale in (("video", 1.0), ("audio", 4.0), ("face", 2.0))}
    first = fit_emotion_weights(branches, labels)
    assert fit_emotion_weights(dict(reversed(branches.items())), labels) == first == fit_emotion_weights(branches, labels)
    target = rng.uniform(-1, 1, clips)
    values = {name: target + rng.normal(0, noise, clips) for name, noise in (("video", 0.3), ("audio", 0.6), ("face", 0.9))}
    assert fit_regression_weights(dict(reversed(values.items())), target) == fit_regression_weights(values, target)


def test_noise_branches_get_exactly_zero_weight():
    """Weight on a branch that carries no evidence is no gain a user can trust: among the points
    within one standard error of the best, the one with fewest branches wins, so the noise branches
    beside an informative one get weight 0, not the 0.1 a lowest-loss pick gives them by chance."""
    rng = np.random.default_rng(3)
    classes, clips = 6, 400
    labels = rng.choice(classes, clips)
    branches = {"audio": confident_branch(rng, labels, classes), "video": rng.dirichlet(np.ones(classes) * 0.3, clips), "face": rng.dirichlet(np.ones(classes) * 3, clips)}
    assert fit_emotion_weights(branches, labels) == {"audio": 1.0, "face": 0.0, "video": 0.0}
    target = rng.uniform(-1, 1, clips)
    tracking = 0.8 * target + rng.normal(0, 0.6 * target.std(), clips)
    assert fit_regression_weights({"audio": tracking, "video": rng.normal(0, target.std(), clips)}, target) == {"audio": 1.0, "video": 0.0}


def test_when_every_branch_is_constant_they_share_the_weight_evenly():
    """Nothing tells constant branches apart: each gets an equal share rather than one of them all."""
    labels = np.array([0, 1, 2, 0, 1, 2])
    branches = {"audio": np.full((6, 3), 1 / 3), "video": np.tile([0.5, 0.3, 0.2], (6, 1))}
    assert fit_emotion_weights(branches, labels) == {"audio": 0.5, "video": 0.5}
    assert fit_regression_weights({"audio": np.zeros(6), "video": np.full(6, 0.2), "face": np.ones(6)}, np.linspace(-1, 1, 6)) == pytest.approx(
        {"audio": 1 / 3, "video": 1 / 3, "face": 1 / 3}
    )


def test_a_branch_constant_up_to_rounding_gets_no_weight():
    """A head whose output differs between clips only by float rounding is constant: diluting an
    overdispersed branch with it would buy CCC without evidence, so it gets no weight."""
    rng = np.random.default_rng(2)
    clips = 400
    target = rng.uniform(-1, 1, clips)
    tracking = 1.6 * target + rng.normal(0, 0.4, clips)
    rounded = target.mean() * (1 + rng.normal(0, 1e-15, clips))
    assert np.ptp(rounded) > 0
    assert fit_regression_weights({"audio": tracking, "video": rounded}, target) == {"audio": 1.0, "video": 0.0}


def test_a_branch_with_one_constant_class_is_not_taken_for_constant():
    """A branch that never moves one class's probability but tells the others apart carries
    evidence: it is weighed, not dropped as a constant branch."""
    rng = np.random.default_rng(6)
    clips = 300
    labels = rng.choice([1, 2], clips)
    share = np.clip((labels == 1) * 0.8 + rng.normal(0.1, 0.15, clips), 0.01, 0.99)
    knowing = np.stack([np.full(clips, 0.1), 0.9 * share, 0.9 * (1 - share)], axis=1)
    branches = {"audio": knowing, "video": rng.dirichlet(np.ones(3), clips)}
    assert fit_emotion_weights(branches, labels)["audio"] >= 0.9


def test_a_branch_leaning_towards_the_frequent_class_gets_no_weight():
    """Each class counts alike, as in UAR: a branch that favours the most frequent class whatever
    the clip lowers a plain cross-entropy on imbalanced labels, but earns no weight here."""
    rng = np.random.default_rng(0)
    classes, clips = 4, 400
    labels = rng.choice(classes, clips, p=[0.7, 0.1, 0.1, 0.1])
    branches = {"audio": confident_branch(rng, labels, classes, 2.0), "video": rng.dirichlet([20, 1, 1, 1], clips)}
    assert fit_emotion_weights(branches, labels) == {"audio": 1.0, "video": 0.0}


def test_two_equally_informative_branches_are_weighed_evenly():
    """Branches that know the labels alike (one only more confident: temperature does not count)
    are averaged 0.5/0.5, the most even point within one standard error of the best, not whichever
    uneven point the validation clips happen to favour."""
    rng = np.random.default_rng(2)
    classes, clips = 4, 120
    labels = rng.choice(classes, clips)
    branches = {"audio": confident_branch(rng, labels, classes, 4.0), "video": confident_branch(rng, labels, classes, 1.0)}
    assert fit_emotion_weights(branches, labels) == {"audio": 0.5, "video": 0.5}


def test_a_much_weaker_branchs_gain_within_the_standard_error_buys_it_no_weight():
    """A second valence head four times noisier lowers the validation loss a little at weight 0.1,
    within what another draw of 60 clips could reverse (the jackknife spread of CCC): it gets none."""
    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, 60)
    values = {"audio": target + rng.normal(0, 0.3, 60), "video": target + rng.normal(0, 1.2, 60)}
    assert fit_regression_weights(values, target) == {"audio": 1.0, "video": 0.0}
