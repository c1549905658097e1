"""Late-fusion weights: fitted on validation predictions, they pick the informative branches and
give nothing to a branch that carries no evidence (constant, or noise independent of the labels)."""

import numpy as np
import pytest

from avemotion.metrics import classification_metrics
from avemotion.model.late_fusion import combine
from avemotion.train import ensemble
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


def _scoring(monkeypatch, fit, outputs, truth):
    """The per-clip loss ``fit`` scores each grid point's fused output by."""
    monkeypatch.setattr(ensemble, "_fit", lambda outputs, losses, step: losses)
    return fit(outputs, truth)


@pytest.mark.parametrize("sharpness, wrong", [(0.02, False), (1.0, True)])
def test_emotion_points_are_scored_by_class_balanced_cross_entropy_at_the_best_temperature(monkeypatch, sharpness, wrong):
    """A grid point's per-clip loss is the cross-entropy of its fused probabilities (floored at
    EPSILON: a confidently wrong clip costs at most 13.8 nats), at the inverse temperature that
    minimises their mean over the whole bounded range, each clip weighed so that every class present
    counts alike (a class here never occurs). Cases: a nearly flat but right branch, whose best
    temperature is far sharper than 1; a confident branch with a clip whose true class it gives
    probability 0."""
    rng = np.random.default_rng(7)
    labels = np.repeat([0, 2, 3], [3, 6, 11])
    rng.shuffle(labels)
    probabilities = softmax(sharpness * (4 * np.eye(4)[labels] + rng.normal(0, 1, (len(labels), 4))))
    if wrong:
        probabilities[0] = np.eye(4)[(labels[0] + 1) % 4]
    losses = _scoring(monkeypatch, fit_emotion_weights, {"audio": probabilities, "video": probabilities}, labels)(probabilities)

    counts = np.bincount(labels, minlength=4)
    weight = len(labels) / (3 * counts[labels])
    log_p = np.log(np.maximum(probabilities, 1e-6))  # the floor: a wrong clip costs at most -log(1e-6) ≈ 13.8 nats

    def expected(log_beta):
        z = np.exp(log_beta) * log_p
        return weight * (np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1) - z[np.arange(len(labels)), labels])

    grid = np.linspace(*ensemble.LOG_BETA_BOUNDS, 12001)
    best = grid[np.argmin([expected(b).mean() for b in grid])]
    assert wrong or best > np.log(20)  # the flat branch is scored far sharper than it is given
    assert losses.mean() == pytest.approx(expected(best).mean(), rel=1e-6)
    np.testing.assert_allclose(losses, expected(best), rtol=5e-3)


def _ccc(target, predicted):
    dev_t, dev_p = target - target.mean(), predicted - predicted.mean()
    denominator = dev_t @ dev_t + dev_p @ dev_p + len(target) * (target.mean() - predicted.mean()) ** 2
    return 2 * (dev_t @ dev_p) / denominator if denominator > 0 else 0.0


@pytest.mark.parametrize(
    "target, predicted",
    [
        (np.array([0.3, -0.8, 0.1, 0.9, -0.2, 0.5, -0.6]), np.array([0.9, -0.1, 0.2, 1.4, 0.0, 1.1, 0.1])),  # offset, shrunk
        (np.array([0.0, 1.0]), np.array([0.5, 1.0])),  # two clips, the one left out of either exact
    ],
)
def test_regression_points_are_scored_by_jackknife_pseudo_values_of_ccc(monkeypatch, target, predicted):
    """A grid point's per-clip loss is 1 minus the jackknife pseudo-value of the fused output's CCC
    (n CCC - (n-1) CCC without the clip, population moments, offset and scale counting), with the
    CCC of clips left that show no spread and no gap taken as 0."""
    losses = _scoring(monkeypatch, fit_regression_weights, {"audio": predicted, "video": -predicted}, target)(predicted)
    n = len(target)
    without = np.array([_ccc(np.delete(target, i), np.delete(predicted, i)) for i in range(n)])
    np.testing.assert_allclose(losses, 1 - (n * _ccc(target, predicted) - (n - 1) * without), rtol=1e-9, atol=1e-12)


def test_weights_for_identical_branches_ignore_the_order_branches_come_in():
    """Exact ties (two branches giving the same outputs) are broken by the grid order of the
    branch names sorted, not by the order the outputs come in."""
    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, 100)
    values = target + rng.normal(0, 0.3, 100)
    first = fit_regression_weights({"audio": values, "video": values.copy()}, target)
    assert fit_regression_weights({"video": values.copy(), "audio": values}, target) == first
    assert sorted(first.values()) == [0.0, 1.0]


def test_between_two_nearly_alike_branches_the_better_one_alone_is_trusted():
    """Branches too alike to be worth combining: the one with the lower validation loss gets all the
    weight, whichever comes first in the grid."""
    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, 100)
    audio = target + rng.normal(0, 0.3, 100)
    video = audio + rng.normal(0, 0.02, 100)
    assert fit_regression_weights({"audio": audio, "video": video}, target) == {"audio": 1.0, "video": 0.0}
    assert fit_regression_weights({"audio": video, "video": audio}, target) == {"audio": 0.0, "video": 1.0}


def test_a_branch_constant_up_to_rounding_with_an_absent_class_gets_no_weight():
    """A class-prior branch (the same probabilities for every clip, up to rounding) gets no weight
    even when one class never occurs, so its probability is 0 throughout."""
    rng = np.random.default_rng(0)
    labels = rng.choice(2, 300)
    prior = np.array([0.5, 0.5, 0.0]) * (1 + rng.normal(0, 1e-15, (300, 3)))
    assert np.ptp(prior, axis=0).max() > 0
    branches = {"audio": softmax(2 * (np.eye(3)[labels] + rng.normal(0, 1, (300, 3)))), "video": prior}
    assert fit_emotion_weights(branches, labels) == {"audio": 1.0, "video": 0.0}


@pytest.mark.parametrize("n", [1, 2, 4, 10, 20, 93, 99, 105])  # 1 / (1 / 93) falls just short of 93
def test_grid_steps_that_divide_one_give_every_multiple(n):
    """A step of 1/n gives every split of two branches into multiples of 1/n: n + 1 points."""
    grid = simplex_grid(2, 1 / n)
    assert len(grid) == n + 1 and grid[-1] in {(1.0, 0.0), (0.0, 1.0)}


@pytest.mark.parametrize(
    "audio_gain, video_gain, expected",
    [
        # within one standard error of the paired difference (sample standard deviation): the simplest point, the better branch
        ([-0.1, 0.0, 1.0], [-0.101, 0.0, 1.01], {"audio": 1.0, "video": 0.0}),
        # a consistent loss is beyond the standard error from the best point, however noisy a worse point is
        ([0.9, 1.0, 1.1], [10.0, -5.0, 20.0], {"audio": 0.5, "video": 0.5}),
        # differences of a relative 1e-12 are rounding: no reason to combine
        ([1e-12] * 3, [2e-12] * 3, {"audio": 1.0, "video": 0.0}),
        # a consistent relative 1e-6 is not
        ([1e-6] * 3, [2e-6] * 3, {"audio": 0.5, "video": 0.5}),
    ],
)
def test_the_simplest_point_within_one_standard_error_of_the_best_wins(audio_gain, video_gain, expected):
    """The one-standard-error rule on given per-clip losses: the even mix is best; leaning towards
    a branch costs each clip its share of ``*_gain``. A point counts as close when its mean loss
    exceeds the best's by at most the standard error of the paired per-clip difference from the
    best point (plus a relative 1e-9 for rounding); the fewest branches win among those."""
    audio = np.array([1.0, 2.0, 3.0])
    outputs = {"audio": audio, "video": 2 * audio}  # fused = (2 - audio's weight) * audio
    base = np.array([0.5, 1.0, 1.5])

    def losses(fused):
        lean = 2 * (2 - fused[0]) - 1  # from -1 (video alone) to 1 (audio alone)
        return base + abs(lean) * np.array(audio_gain if lean > 0 else video_gain)

    assert ensemble._fit(outputs, losses, 0.1) == expected


def test_the_default_grid_is_in_tenths():
    """The weights predict.py fits lie on the grid of step 0.1 (66 points for three branches): a
    branch half as noisy as the other gets the tenth nearest its share (about 0.7 for valence and
    arousal), not a coarser grid's quarter."""
    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, 2000)
    values = {"audio": target + rng.normal(0, 0.5, 2000), "video": target + rng.normal(0, 0.75, 2000)}
    assert fit_regression_weights(values, target) == {"audio": 0.7, "video": 0.3}
    rng = np.random.default_rng(1)
    classes, clips = 4, 1000
    labels = rng.choice(classes, clips)
    noisy = lambda noise: softmax(4 * (np.eye(classes)[labels] + rng.normal(0, noise, (clips, classes))))
    assert fit_emotion_weights({"audio": noisy(1.0), "video": noisy(1.5)}, labels) == {"audio": 0.8, "video": 0.2}
