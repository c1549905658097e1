"""Late fusion: combine per-branch predictions with weights fitted on the validation split.

Weights lie on a grid over the simplex (every combination of multiples of ``step`` summing to 1): a
grid is enough for three branches (66 points at step 0.1) and cannot overfit the way free weights
can on a few validation speakers. How a grid point is scored, and why:

- Emotion: by the class-balanced cross-entropy of the fused probabilities (floored at ``EPSILON``),
  not by UAR. UAR only sees the argmax, so many points tie, and taking the first of them puts weight
  on branches that carry nothing (costing UAR on the test fold against the best branch alone). Balanced, each class counting alike as in UAR, so leaning towards the
  frequent classes (a class-prior branch) earns nothing. At the best temperature of each point
  (one fitted inverse temperature): otherwise diluting an overconfident branch with a flat or a
  noise branch lowers the loss by smoothing, and that branch gets weight for no evidence about the
  clip. Temperature never moves the argmax, so profiling it out hides nothing UAR sees.
- Valence and arousal: by 1 - CCC of the fused values themselves (the heads train on CCC and are
  scored by it), its per-clip spread given by jackknife pseudo-values. Their scale is not profiled
  out: CCC judges it, and a scale-free loss lets a nearly constant branch take most of the weight by
  chance, shrinking the output and its held-out CCC.
- A branch that is the same for every clip (up to rounding) gets weight 0 before any scoring: it
  says nothing about which clip is which, only shifts or flattens every output alike, and that
  calibration is no job for fusion weights, though it can buy validation loss or CCC.
- Among the points whose mean loss is within one standard error of the best (the standard error
  of the paired per-clip difference from the best point: the one-standard-error rule of Breiman
  et al., CART 1984), the simplest wins: fewest branches, then the most even. A smaller gain is
  within what another draw of validation clips could reverse, so it is no reason to trust a
  branch. Clips of a speaker are correlated, so the margin is if anything too small, never too
  lenient towards an extra branch.

Everything is deterministic: a fixed grid, a bounded scalar search, ties broken by grid order.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize_scalar

from avemotion.metrics import CONSTANT_TOLERANCE
from avemotion.model.late_fusion import combine

# A confidently wrong clip costs at most -log(1e-6) ≈ 13.8 nats instead of infinity.
EPSILON = 1e-6
# Bounds of the log inverse temperature: from nearly flat (beta 0.007) to far sharper (beta 1100).
LOG_BETA_BOUNDS = (-5.0, 7.0)


def simplex_grid(parts: int, step: float = 0.1) -> list[tuple[float, ...]]:
    units = round(1 / step)
    points = [c for c in itertools.product(range(units + 1), repeat=parts) if sum(c) == units]
    # Most even first, so exact ties prefer combining branches over trusting one.
    points.sort(key=lambda c: (max(c), c))
    return [tuple(value / units for value in c) for c in points]


def fit_emotion_weights(probabilities: dict[str, np.ndarray], labels, step: float = 0.1) -> dict[str, float]:
    """Branch weights for averaged class probabilities: class-balanced cross-entropy at the best temperature."""
    labels = np.asarray(labels, dtype=int)
    counts = np.bincount(labels)
    clip_weight = len(labels) / (np.count_nonzero(counts) * counts[labels])  # averages 1 over the clips
    rows = np.arange(len(labels))

    def losses(fused: np.ndarray) -> np.ndarray:
        log_p = np.log(np.clip(fused, EPSILON, 1.0))

        def at(log_beta: float) -> np.ndarray:
            z = np.exp(log_beta) * log_p
            z -= z.max(axis=1, keepdims=True)
            return clip_weight * (np.log(np.exp(z).sum(axis=1)) - z[rows, labels])

        # Cross-entropy is convex in beta, hence unimodal in log beta: the bounded search finds its minimum.
        best = minimize_scalar(lambda log_beta: at(log_beta).mean(), bounds=LOG_BETA_BOUNDS, method="bounded")
        return at(best.x)

    return _fit(probabilities, losses, step)


def fit_regression_weights(predictions: dict[str, np.ndarray], target, step: float = 0.1) -> dict[str, float]:
    """Branch weights for a continuous prediction: 1 - CCC, spread over the clips by the jackknife."""
    target = np.asarray(target, dtype=np.float64)
    clips, rest = len(target), len(target) - 1
    dev_t = target - target.mean()

    def losses(fused: np.ndarray) -> np.ndarray:
        # Jackknife pseudo-values of CCC (n CCC - (n-1) CCC without clip i, moments updated in closed
        # form): their mean is CCC less its small-sample bias, their spread gives its standard error.
        dev_p, gap = fused - fused.mean(), target.mean() - fused.mean()
        ccc = 2 * (dev_t @ dev_p) / (dev_t @ dev_t + dev_p @ dev_p + clips * gap**2)
        var_t = (dev_t @ dev_t - dev_t**2) / rest - (dev_t / rest) ** 2
        var_p = (dev_p @ dev_p - dev_p**2) / rest - (dev_p / rest) ** 2
        cov = (dev_t @ dev_p - dev_t * dev_p) / rest - dev_t * dev_p / rest**2
        spread = var_t + var_p + (gap - (dev_t - dev_p) / rest) ** 2
        # 0 where the clips left show no spread and no gap (possible with two clips): no concordance shown.
        without = np.divide(2 * cov, spread, out=np.zeros_like(cov), where=spread > 0)
        return 1 - (clips * ccc - rest * without)

    return _fit(predictions, losses, step)


def _fit(outputs: dict[str, np.ndarray], losses, step: float) -> dict[str, float]:
    """The simplest grid point within one standard error of the lowest mean per-clip loss."""
    branches = sorted(outputs)
    varying = [b for b in branches if not _constant(np.asarray(outputs[b], dtype=np.float64))]
    if not varying:  # nothing to tell the branches apart by
        return {branch: 1 / len(branches) for branch in branches}
    points = simplex_grid(len(varying), step)
    per_clip = [losses(combine(outputs, dict(zip(varying, point)))) for point in points]
    means = np.array([loss.mean() for loss in per_clip])
    best = per_clip[int(means.argmin())]
    # Relative slack of 1e-9: rounding alone must not split points the loss cannot tell apart.
    slack = 1e-9 * abs(means.min())
    margins = [np.std(loss - best, ddof=1) / np.sqrt(len(best)) if len(best) > 1 else 0.0 for loss in per_clip]
    close = [i for i in range(len(points)) if means[i] - means.min() <= margins[i] + slack]
    chosen = min(close, key=lambda i: (np.count_nonzero(points[i]), max(points[i]), means[i], i))
    weights = dict.fromkeys(branches, 0.0)
    weights.update(zip(varying, points[chosen]))
    return weights


def _constant(values: np.ndarray) -> bool:
    """The same for every clip, up to rounding (the tolerance regression_metrics uses for a constant side)."""
    return bool(np.ptp(values, axis=0).max() <= CONSTANT_TOLERANCE * np.abs(values).max())
