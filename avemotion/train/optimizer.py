"""The VideoMAE fine-tuning optimizer: AdamW, layer-wise lr decay, warm-up then cosine.

Recipe (VideoMAE / BEiT): AdamW (0.9, 0.999), weight decay 0.05 on matrices only (none on biases,
norms, q_bias/v_bias: every 1-D variable), layer decay 0.75 with layer id 0 for the patch embedding,
i + 1 for block i and L + 1 for fc_norm and the heads, lr scale = decay ** (L + 1 - layer id).

How the per-layer lr is done: Keras 3 optimizers have no parameter groups, and scaling gradients is
not equivalent for Adam (the update m / sqrt(v) cancels a gradient scale). ``MultiOptimizer`` with
one AdamW per layer would work but hides ``learning_rate`` (lr logging and callbacks fail) and keeps
L + 2 iteration counters. So ``LayerDecayAdamW`` is one AdamW whose ``update_step`` multiplies the
lr by the variable's scale, looked up by the same variable index Adam uses for its moments (robust
under tf.distribute, where ``update_step`` sees per-replica tf.Variables without ``.path``). The
decoupled weight decay moves into ``update_step`` too, so it uses the layer's lr as PyTorch's AdamW
does per parameter group (Keras' own decay uses the global lr).
"""

from __future__ import annotations

import math
import re

import keras
from keras import ops

from avemotion.model.backbone import VideoMAEBackbone
from avemotion.model.layers import PACKAGE
from avemotion.model.whisper import WhisperBackbone

BLOCK_NAME = re.compile(r"block_(\d+)")
WHISPER_BLOCK_NAME = re.compile(r"layers_(\d+)")  # WhisperEncoderLayer i; its final layer_norm is after them
AFTER_BLOCKS = ("mean_pool", "fc_norm")  # layer id L + 1 even in a backbone without blocks
# Besides every 1-D variable: names that never take weight decay whatever their rank.
NO_DECAY_NAMES = ("bias", "q_bias", "v_bias", "gamma", "beta")


# ---------------------------------------------------------------- schedule


@keras.saving.register_keras_serializable(package=PACKAGE)
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``peak_lr`` over ``warmup_steps``, then cosine down to ``min_lr`` at
    ``total_steps``, constant ``min_lr`` afterwards. Steps are optimizer updates, not epochs."""

    def __init__(self, peak_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0):
        if warmup_steps < 0 or total_steps <= 0 or total_steps < warmup_steps:
            raise ValueError(
                f"need 0 <= warmup_steps <= total_steps and total_steps > 0, got {warmup_steps}, {total_steps}"
            )
        self.peak_lr = float(peak_lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr = float(min_lr)

    def __call__(self, step):
        return self.rate(step, self.parameters())

    def parameters(self) -> list[float]:
        """peak_lr, warmup_steps, total_steps, min_lr: what ``rate`` reads (a LayerDecayAdamW holds
        them as a variable)."""
        return [self.peak_lr, float(self.warmup_steps), float(self.total_steps), self.min_lr]

    @staticmethod
    def rate(step, parameters):
        """The lr at ``step`` for ``parameters`` (numbers, or a tensor of the four)."""
        peak_lr, warmup_steps, total_steps, min_lr = (ops.cast(parameters[i], "float32") for i in range(4))
        step = ops.cast(step, "float32")
        warmup = peak_lr * step / ops.maximum(warmup_steps, 1.0)
        progress = ops.clip((step - warmup_steps) / ops.maximum(total_steps - warmup_steps, 1.0), 0.0, 1.0)
        cosine = min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < warmup_steps, warmup, cosine)

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "min_lr": self.min_lr,
        }


# ---------------------------------------------------------------- backbone and layer ids


def find_backbone(model: keras.Model) -> VideoMAEBackbone:
    """The VideoMAEBackbone of a task model (or the model itself when it is one)."""
    if isinstance(model, VideoMAEBackbone):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, VideoMAEBackbone):
        return backbone
    found = [layer for layer in model.layers if isinstance(layer, VideoMAEBackbone)]
    if len(found) != 1:
        raise ValueError(f"model {model.name!r} holds {len(found)} VideoMAE backbones; expected exactly one")
    return found[0]


def set_backbone_trainable(model: keras.Model, trainable: bool) -> VideoMAEBackbone:
    """Freeze (warm start: train the heads first) or unfreeze the backbone; returns it.

    Keras reads trainability when a model is compiled and an optimizer is built on the trainable
    variables, so compile again (with a new optimizer) after changing it.
    """
    backbone = find_backbone(model)
    backbone.trainable = trainable
    return backbone


def layer_ids(model: keras.Model, backbone: VideoMAEBackbone | None = None) -> dict[str, int]:
    """variable.path -> BEiT layer id: 0 up to the patch embedding, i + 1 for block_i, L + 1 after.

    Variables outside the backbone (heads) get L + 1, the full lr.
    """
    backbone = backbone or find_backbone(model)
    top = backbone.num_layers + 1
    ids, past_blocks = {}, False
    for layer in backbone.layers:  # in graph order: standardize, patch_embed, ..., fc_norm
        match = BLOCK_NAME.fullmatch(layer.name)
        if match:
            layer_id, past_blocks = int(match.group(1)) + 1, True
        else:
            past_blocks = past_blocks or layer.name in AFTER_BLOCKS
            layer_id = top if past_blocks else 0
        for variable in layer.weights:
            ids[id(variable)] = layer_id
    result = {}
    for variable in model.weights:
        layer_id = ids.get(id(variable), top)
        if result.get(variable.path, layer_id) != layer_id:
            raise ValueError(f"two variables share the path {variable.path!r} but sit in different layers")
        result[variable.path] = layer_id
    return result


def layer_scales(
    model: keras.Model,
    layer_decay: float = 0.75,
    backbone: VideoMAEBackbone | None = None,
    head_lr_multiplier: float = 1.0,
) -> dict[str, float]:
    """variable.path -> lr multiplier: layer_decay ** (L + 1 - layer id) inside the backbone, and
    ``head_lr_multiplier`` outside it (heads, the audio and face branches, fusion layers)."""
    backbone = backbone or find_backbone(model)
    top = backbone.num_layers + 1
    inside = {variable.path for variable in backbone.weights}
    scales = {
        path: float(layer_decay ** (top - layer_id)) if path in inside else float(head_lr_multiplier)
        for path, layer_id in layer_ids(model, backbone).items()
    }
    return {**scales, **speech_layer_scales(model, layer_decay)}


def speech_layer_scales(model: keras.Model, layer_decay: float) -> dict[str, float]:
    """variable.path -> lr multiplier inside a fine-tuned Whisper encoder (the audio branch): the same
    decay as VideoMAE's, layer id 0 for the convolutions and positions, i + 1 for layers_i and L + 1
    (the top lr) for the final layer norm. A frozen encoder's variables are not trained at all."""
    scales = {}
    for encoder in (layer for layer in model.layers if isinstance(layer, WhisperBackbone)):
        top = encoder.encoder_layers + 1
        for layer in encoder.layers:
            match = WHISPER_BLOCK_NAME.fullmatch(layer.name)
            layer_id = int(match.group(1)) + 1 if match else top if layer.name == "layer_norm" else 0
            scales.update({variable.path: float(layer_decay ** (top - layer_id)) for variable in layer.weights})
    return scales


def no_weight_decay_paths(model: keras.Model) -> list[str]:
    """Paths of the variables AdamW must not decay: every 1-D variable (biases, LayerNorm gamma and
    beta, q_bias, v_bias) and anything named like one of those."""
    return [
        variable.path
        for variable in model.weights
        if len(variable.shape) <= 1 or variable.name.split(":")[0] in NO_DECAY_NAMES
    ]


# ---------------------------------------------------------------- optimizer


@keras.saving.register_keras_serializable(package=PACKAGE)
class LayerDecayAdamW(keras.optimizers.AdamW):
    """AdamW with a per-variable lr multiplier and per-variable weight-decay exclusion.

    ``lr_scales``: variable.path -> multiplier (missing paths: 1.0). ``no_decay_paths``: paths that
    take no weight decay (Keras' own ``exclude_from_weight_decay`` is honoured as well). Both are
    plain data, so the optimizer serialises with ``get_config``.
    """

    def __init__(self, lr_scales: dict | None = None, no_decay_paths=None, **kwargs):
        super().__init__(**kwargs)
        self.lr_scales = {str(path): float(scale) for path, scale in (lr_scales or {}).items()}
        self.no_decay_paths = sorted(set(no_decay_paths or ()))
        self._schedule = None

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        if isinstance(self._learning_rate, WarmupCosine):
            # The schedule's numbers as the optimizer's state, not as constants of the compiled step:
            # each fold has its own step count, and on JAX a constant that differs would compile
            # every fold's training step again; state is the step's input.
            self._schedule = self.add_variable(
                (4,), initializer=keras.initializers.Constant(self._learning_rate.parameters()), name="schedule"
            )
        # Indexed like Adam's moments (self._get_variable_index), decided once here where .path exists.
        no_decay = set(self.no_decay_paths)
        self._lr_scale = [self.lr_scales.get(variable.path, 1.0) for variable in var_list]
        self._decays = [variable.path not in no_decay and self._use_weight_decay(variable) for variable in var_list]

    def _get_current_learning_rate(self):
        if self._schedule is None:
            return super()._get_current_learning_rate()
        return WarmupCosine.rate(self._iterations, self._schedule)

    def _apply_weight_decay(self, variables):
        """Done in update_step instead, with each variable's own lr."""

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype) * self._lr_scale[index]
        if self._decays[index] and self.weight_decay:
            decay = ops.cast(self.weight_decay, variable.dtype)
            self.assign_sub(variable, ops.multiply(variable, decay * lr))
        super().update_step(gradient, variable, lr)

    def lr_scale_of(self, variable) -> float:
        """The multiplier applied to a variable the optimizer was built with."""
        return self._lr_scale[self._get_variable_index(variable)]

    def get_config(self):
        # dict()/list(): TensorFlow's attribute tracking wraps containers, JSON wants plain ones.
        return {**super().get_config(), "lr_scales": dict(self.lr_scales), "no_decay_paths": list(self.no_decay_paths)}


def build_adamw(
    model: keras.Model,
    backbone: VideoMAEBackbone | None = None,
    *,
    base_lr: float,
    warmup_steps: int,
    total_steps: int,
    weight_decay: float = 0.05,
    layer_decay: float = 0.75,
    head_lr_multiplier: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    min_lr: float = 1e-6,
    epsilon: float = 1e-8,
    **optimizer_kwargs,
) -> LayerDecayAdamW:
    """The VideoMAE fine-tuning optimizer for ``model`` (backbone found in it when not given).

    ``base_lr`` is the peak lr of the top layer (the recipe scales it by batch / 256 before it gets
    here); everything outside the backbone trains at ``head_lr_multiplier`` times it. The schedule
    is WarmupCosine over optimizer steps. ``epsilon`` 1e-8 is PyTorch's (Keras defaults to 1e-7).
    Extra keyword arguments (clipnorm, gradient accumulation, loss_scale_factor, ...) go to the
    optimizer.
    """
    backbone = backbone or find_backbone(model)
    return LayerDecayAdamW(
        lr_scales=layer_scales(model, layer_decay, backbone, head_lr_multiplier),
        no_decay_paths=no_weight_decay_paths(model),
        learning_rate=WarmupCosine(base_lr, warmup_steps, total_steps, min_lr),
        weight_decay=weight_decay,
        beta_1=betas[0],
        beta_2=betas[1],
        epsilon=epsilon,
        **optimizer_kwargs,
    )
