"""Losses for emotion fine-tuning: label-smoothed cross-entropy and concordance (CCC); each model
output gets one of them, weighted (avemotion.train.fitting.losses_for), and Keras sums them.

All of them use ``keras.ops`` only and compute in float32 whatever the inputs are, so they are safe
under ``mixed_bfloat16`` (a bf16 mean over a batch keeps 8 bits of mantissa; log-softmax in bf16
rounds small probabilities to zero).

Integer class labels below 0 mark clips outside the label set of a dataset mixture: they add nothing
to the cross-entropy and do not count in its mean (CCCLoss leaves out the clips its sample weights
zero). The cross-entropy also takes soft targets (batch, K), the distributions that Mixup/CutMix
make (avemotion.fusion.mixing), smoothed there already.
"""

from __future__ import annotations

import keras
from keras import ops

from avemotion.model.layers import PACKAGE

EPSILON = 1e-8  # keeps CCC finite for a constant batch; far below any real variance


# ---------------------------------------------------------------- helpers


def _float32(x):
    return ops.cast(ops.convert_to_tensor(x), "float32")


def _column(x):
    """(batch, 1) -> (batch,); other shapes unchanged."""
    return ops.squeeze(x, axis=-1) if len(x.shape) == 2 and x.shape[-1] == 1 else x


def _labels(y_true, y_pred):
    """Integer labels of shape (batch,), whether given as (batch,) or (batch, 1), ints or floats."""
    labels = ops.convert_to_tensor(y_true)
    if len(labels.shape) == len(y_pred.shape):
        labels = ops.squeeze(labels, axis=-1)
    return ops.cast(labels, "int32")


def _soft(y_true, y_pred) -> bool:
    """Whether ``y_true`` holds soft targets (batch, K) rather than integer labels ((batch,) or
    (batch, 1)): K > 1 classes always, so a last axis of K is a distribution."""
    shape = ops.convert_to_tensor(y_true).shape
    return len(shape) == len(y_pred.shape) and shape[-1] == y_pred.shape[-1] and shape[-1] != 1


def _per_replica(loss):
    """Divide a batch-level loss by the replica count under tf.distribute, as Keras does for its own
    reduced losses (the replicas' gradients are summed, so each replica contributes its share)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # on its backend only: benchmarks/gpu.py trains on JAX or torch where TensorFlow is not installed

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss / replicas
    return loss


# ---------------------------------------------------------------- concordance


def ccc(y_true, y_pred, sample_weight=None):
    """Lin's concordance correlation coefficient over the batch axis, with population moments.

    ccc = 2 cov(t, p) / (var t + var p + (mean t - mean p)^2). Unlike Pearson's r it also penalises
    a shift or a wrong scale, which is why dimensional emotion work trains on 1 - CCC.
    Inputs (batch,) or (batch, 1) give a scalar; (batch, k) gives one value per column.
    ``sample_weight`` (batch,) weights the moments: weight 0 leaves a clip out entirely.
    """
    y_true, y_pred = _column(_float32(y_true)), _column(_float32(y_pred))
    if sample_weight is None:
        weights = ops.ones_like(y_pred)
    else:
        weights = ops.reshape(_float32(sample_weight), (-1,) + (1,) * (len(y_pred.shape) - 1))
        weights = ops.broadcast_to(weights, ops.shape(y_pred))
    total = ops.maximum(ops.sum(weights, axis=0), EPSILON)

    def mean(x):
        return ops.sum(weights * x, axis=0) / total

    mean_true, mean_pred = mean(y_true), mean(y_pred)
    dev_true, dev_pred = y_true - mean_true, y_pred - mean_pred
    covariance = mean(dev_true * dev_pred)
    spread = mean(ops.square(dev_true)) + mean(ops.square(dev_pred)) + ops.square(mean_true - mean_pred)
    return 2.0 * covariance / (spread + EPSILON)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CCCLoss(keras.losses.Loss):
    """1 - CCC: 0 for perfect predictions, 1 for constant ones, up to 2 for anti-correlated ones.

    CCC is a statistic of the whole batch, not a mean of per-clip terms, so sample weights enter the
    moments (see ``ccc``) instead of multiplying per-clip losses; ``reduction`` has no effect.
    For (batch, k) targets the loss is 1 - mean CCC over the k columns.
    """

    def __init__(self, name="ccc_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return 1.0 - ops.mean(ccc(y_true, y_pred))

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            return _per_replica(1.0 - ops.mean(ccc(y_true, y_pred, sample_weight)))


# ---------------------------------------------------------------- classification


def smoothed_cross_entropy(y_true, y_pred, smoothing=0.1, from_logits=True):
    """Per-clip cross-entropy against the smoothed target (1 - s) * one_hot(label) + s / K.

    This is timm's / VideoMAE's label smoothing (equivalently (1 - s) * NLL + s * mean_k(-log p_k)).
    ``y_true``: integer labels, (batch,) or (batch, 1); a label < 0 gives loss 0 (ignored clip). Or
    soft targets (batch, K), used as they are (timm's SoftTargetCrossEntropy: Mixup smoothed them
    before mixing, smoothing again would count it twice); an all-zero row gives loss 0.
    ``y_pred``: (batch, K) logits, or probabilities when ``from_logits`` is false.
    """
    y_pred = _float32(y_pred)
    if from_logits:
        log_probs = ops.log_softmax(y_pred, axis=-1)
    else:
        log_probs = ops.log(ops.clip(y_pred, keras.config.epsilon(), 1.0))
    targets, valid = _targets(y_true, y_pred, smoothing)
    losses = -ops.sum(targets * log_probs, axis=-1)
    return ops.where(valid, losses, 0.0)


def _targets(y_true, y_pred, smoothing):
    """(target distributions (batch, K), which clips count (batch,) bool) of integer labels
    (smoothed) or of soft targets (as they are)."""
    if _soft(y_true, y_pred):
        targets = _float32(y_true)
        return targets, ops.greater(ops.sum(targets, axis=-1), 0.0)
    labels = _labels(y_true, y_pred)
    num_classes = y_pred.shape[-1]
    valid = ops.greater_equal(labels, 0)
    one_hot = ops.one_hot(ops.where(valid, labels, 0), num_classes, dtype="float32")
    return one_hot * (1.0 - smoothing) + smoothing / num_classes, valid


@keras.saving.register_keras_serializable(package=PACKAGE)
class LabelSmoothedCrossEntropy(keras.losses.Loss):
    """Sparse (integer-label) cross-entropy with label smoothing, sample weights and ignored labels.

    Keras 3.15's SparseCategoricalCrossentropy has no ``label_smoothing`` (only the dense
    CategoricalCrossentropy has), hence this class. Clips with a label < 0 get weight 0. The default
    reduction is the weighted mean over the remaining clips, sum(w * loss) / sum(w), as PyTorch's
    cross-entropy does with class weights and ignore_index: ignored clips do not dilute the mean and
    class-balanced weights do not change the loss scale from batch to batch. Soft targets (batch, K)
    are taken as they are, unsmoothed (smoothed_cross_entropy).
    """

    def __init__(
        self,
        num_classes: int,
        smoothing: float = 0.1,
        from_logits: bool = True,
        name: str = "label_smoothed_cross_entropy",
        reduction: str = "mean_with_sample_weight",
        **kwargs,
    ):
        super().__init__(name=name, reduction=reduction, **kwargs)
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
        self.num_classes = int(num_classes)
        self.smoothing = float(smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != self.num_classes:
            raise ValueError(f"predictions have {y_pred.shape[-1]} classes, the loss expects {self.num_classes}")
        return smoothed_cross_entropy(y_true, y_pred, self.smoothing, self.from_logits)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Fold "label >= 0" into the sample weights so every reduction skips ignored clips.
        y_pred = ops.convert_to_tensor(y_pred)
        valid = ops.cast(ops.reshape(_targets(y_true, y_pred, self.smoothing)[1], (-1,)), "float32")
        weights = valid if sample_weight is None else valid * ops.reshape(_float32(sample_weight), (-1,))
        return super().__call__(y_true, y_pred, weights)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "smoothing": self.smoothing,
            "from_logits": self.from_logits,
        }
