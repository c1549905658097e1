"""Late fusion's last step: a model's final predictions from its branches' outputs, weighted by branch.

The weights are fitted on the validation split by training (avemotion.train.ensemble) and saved
beside the model (late_weights.json); evaluation and ``avemotion predict`` combine with them alike.
NumPy only.
"""

from __future__ import annotations

import numpy as np


def combine(predictions: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The weighted sum of the branches' predictions ({branch: weight}, summing to 1)."""
    return sum(weights[branch] * np.asarray(predictions[branch], dtype=np.float64) for branch in weights)


def fused(outputs: dict[str, np.ndarray], weights: dict | None) -> dict[str, np.ndarray]:
    """The final emotion probabilities and VA predictions from a model's outputs (``{branch}_{task}``
    of a late-fusion model, combined with ``weights`` {task: {branch: weight}}; without weights the
    model's own ``{task}`` outputs)."""
    if weights is None:
        return {task: outputs[task] for task in ("emotion", "valence", "arousal")}
    return {task: combine({b: outputs[f"{b}_{task}"] for b in weights[task]}, weights[task]) for task in weights}
