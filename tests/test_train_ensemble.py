"""Late-fusion weights: fitted on validation predictions, they pick the informative branches."""

import numpy as np

from avemotion.model.late_fusion import combine
from avemotion.train.ensemble import fit_emotion_weights, fit_regression_weights, simplex_grid


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
