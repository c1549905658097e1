"""Fusion models: early, late and hybrid audio-visual networks with emotion and arousal/valence heads.

Inputs (from avemotion.fusion.dataset), the same for every mode: ``frames`` (T, S, S, 3) RGB in
[0, 1], ``mel`` (bands, steps, 1) scaled to [0, 1], ``face_sequence`` (T, F), ``face_present`` (F,).
With a Whisper audio branch (avemotion.model.speech_branch) ``speech_features`` and ``speech_frames``
(avemotion.model.speech_input) take the place of ``mel``: the Whisper embedding is the audio branch
of late and hybrid fusion, and in early fusion one more token after the face tokens (the sequence
then holds the T frames without spectrogram tiles).

Outputs are named ``{branch_}{task}``: task ``emotion`` (logits), ``valence`` and ``arousal`` (tanh,
in [-1, 1]). ``task_of(name)`` maps an output to its target, so every head trains on the same targets.

- early:  one VideoMAE over one multimodal token sequence -> emotion, valence, arousal: the patch
          tokens of the 2T-frame sequence (frames, then spectrogram tiles, built by the model's
          first layer: avemotion.model.early_fusion.EarlyFusionSequence) followed by T face tokens,
          one per sampled frame (its standardised face features and which exist, projected to the
          backbone width, plus a learned per-step embedding). Without the face tokens early fusion
          would be the only mode blind to the face features.
- late:   three branches, each with its own heads (video_*, audio_*, face_*); their predictions are
          combined afterwards (avemotion.model.late_fusion.fused) with weights fitted on the validation
          split (avemotion.train.predict.late_weights).
- hybrid: the branches' embeddings concatenated into shared heads (emotion, valence, arousal) plus
          auxiliary per-branch emotion heads (video_emotion, audio_emotion, face_emotion) in the loss.

In the model layer, not in training: a saved model loads only where its layer classes are
registered, and prediction (avemotion.inference) loads models without the training code.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from avemotion.fusion.schema import AUDIO_STEPS, FACE_FEATURES, MEL_BANDS
from avemotion.model.backbone import VideoMAEBackbone
from avemotion.model.checkpoints import CheckpointError
from avemotion.model.early_fusion import EarlyFusionSequence
from avemotion.model.layers import PACKAGE, ClipStandardization
from avemotion.model.speech_branch import speech_embedding, speech_model_inputs
from avemotion.model.weights import load_videomae
from avemotion.presets import FITTING_KEYS

FUSION_MODES = ("early", "late", "hybrid")
TASKS = ("emotion", "valence", "arousal")
BRANCHES = ("video", "audio", "face")
FRAME_NORMALIZATIONS = ("imagenet", "clip")


def task_of(output_name: str) -> str:
    return output_name.rsplit("_", 1)[-1]


@keras.saving.register_keras_serializable(package=PACKAGE)
class SqueezeLast(layers.Layer):
    """(B, 1) -> (B,), so regression outputs line up with scalar targets."""

    def call(self, inputs):
        return ops.squeeze(inputs, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1]


@keras.saving.register_keras_serializable(package=PACKAGE)
class SaturationPenalty(keras.regularizers.Regularizer):
    """Penalises tanh pre-activations beyond +-``limit`` (tanh(2.5) = 0.987, past every target).

    Once a regression head's pre-activation runs far out for every clip, tanh is flat there, the
    1 - CCC gradient vanishes and the head stays at +-1 for good (seen on small corpora, where Adam
    pushes the weights along the features all clips share). The penalty is zero inside the limit.
    """

    def __init__(self, limit: float = 2.5, weight: float = 0.1):
        self.limit, self.weight = limit, weight

    def __call__(self, x):
        return self.weight * ops.mean(ops.square(ops.relu(ops.abs(x) - self.limit)))

    def get_config(self):
        return {"limit": self.limit, "weight": self.weight}


def heads(embedding, num_classes: int, prefix: str = "", tasks=TASKS) -> dict:
    """Task heads in float32 (logits and tanh outputs feed losses; bf16 would round them)."""
    outputs = {}
    if "emotion" in tasks:
        outputs[f"{prefix}emotion"] = layers.Dense(num_classes, dtype="float32", name=f"{prefix}emotion")(embedding)
    for task in ("valence", "arousal"):
        if task in tasks:
            value = layers.Dense(1, activity_regularizer=SaturationPenalty(), dtype="float32", name=f"{prefix}{task}_head")(embedding)
            value = layers.Activation("tanh", dtype="float32", name=f"{prefix}{task}_tanh")(value)
            outputs[f"{prefix}{task}"] = SqueezeLast(dtype="float32", name=f"{prefix}{task}")(value)
    return outputs


def audio_encoder(mel, width: int = 32, name: str = "audio"):
    """A small CNN over the scaled log-Mel image (bands x steps).

    The image is halved first (64 x 128 still resolves pitch, rate and timbre) so the branch costs
    less than the video one; batch-norm statistics move fast (momentum 0.9) because small corpora
    give few steps, and slow statistics would leave validation on the initial ones.
    """
    x = layers.AveragePooling2D(2, name=f"{name}_downsample")(mel)
    for index, filters in enumerate((width, 2 * width, 4 * width)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{index}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{name}_norm{index}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{index}")(x)
        x = layers.MaxPooling2D(2, name=f"{name}_pool{index}")(x)
    x = layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)
    return layers.Dense(4 * width, activation="relu", name=f"{name}_embedding")(x)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FeatureStandardization(layers.Layer):
    """(..., F) -> (x - mean) / sqrt(variance) per feature, as keras' Normalization with a given mean
    and variance computes it, but holding them as the layer's non-trainable weights, not as constants.

    Constants become part of a compiled (XLA) step, so on JAX every fold, whose training clips give
    other statistics, would compile its own steps; as weights they are the step's inputs and one
    compilation serves every fold. The saved model keeps them with its other weights. Models saved
    with keras' Normalization here load as they were saved (their file names that class).
    """

    def __init__(self, mean=None, variance=None, **kwargs):
        super().__init__(**kwargs)
        # The training clips' statistics, the weights' initial values (Keras keeps them in the
        # layer's config too); a model's saved weights hold them as well and are loaded after.
        self.initial = (mean, variance)

    def build(self, input_shape):
        mean, variance = self.initial
        features = (input_shape[-1],)
        self.mean = self.add_weight(name="mean", shape=features, trainable=False,
                                    initializer="zeros" if mean is None else keras.initializers.Constant(mean))  # fmt: skip
        self.variance = self.add_weight(name="variance", shape=features, trainable=False,
                                        initializer="ones" if variance is None else keras.initializers.Constant(variance))  # fmt: skip

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)
        mean, variance = ops.cast(self.mean, self.compute_dtype), ops.cast(self.variance, self.compute_dtype)
        return (inputs - mean) / ops.maximum(ops.sqrt(variance), keras.backend.epsilon())

    def compute_output_shape(self, input_shape):
        return input_shape


def standardized(sequence, statistics, name: str):
    """Face features standardised with the training clips' (mean, variance) (face_statistics), kept
    in the saved model so prediction standardises alike; without statistics, mean 0 and variance 1."""
    mean, variance = statistics if statistics is not None else (None, None)
    # In float32 even under mixed precision: features such as head position in mm (~500) lose
    # their differences of a few units in bfloat16 before the mean is taken off.
    return FeatureStandardization(mean, variance, dtype="float32", name=f"{name}_standardize")(sequence)


@keras.saving.register_keras_serializable(package=PACKAGE)
class TemporalStatistics(layers.Layer):
    """(B, T, F) -> (B, 4F): each feature's mean, std, min and max over the steps.

    These are the per-column summaries the tabular baseline reads. Handed to the face branch beside
    its temporal convolution, they are usable from the first step, where the convolution has to
    learn them first: that matters on small corpora, whose few training steps leave the
    convolution little to learn them from.
    """

    def call(self, inputs):
        return ops.concatenate([ops.mean(inputs, 1), ops.std(inputs, 1), ops.min(inputs, 1), ops.max(inputs, 1)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 4 * input_shape[2])


def face_encoder(sequence, present, statistics=None, width: int = 64, name: str = "face"):
    """A temporal convolution over the per-segment face features, their summary statistics over the
    clip (TemporalStatistics) and which columns exist, joined into one embedding.

    The features have very different scales (AU intensities 0..5, head translation in mm), so they
    are standardised first with the training clips' per-column mean and variance (``statistics``).
    """
    x = standardized(sequence, statistics, name)
    summary = TemporalStatistics(name=f"{name}_statistics")(x)
    x = layers.Dense(width, activation="relu", name=f"{name}_project")(x)
    x = layers.Conv1D(width, 3, padding="same", activation="relu", name=f"{name}_conv")(x)
    pooled = layers.Concatenate(name=f"{name}_pools")(
        [layers.GlobalAveragePooling1D(name=f"{name}_mean")(x), layers.GlobalMaxPooling1D(name=f"{name}_max")(x), summary, present]
    )
    return layers.Dense(width, activation="relu", name=f"{name}_embedding")(pooled)


@keras.saving.register_keras_serializable(package=PACKAGE)
class StepEmbedding(layers.Layer):
    """Adds a learned (steps, width) table: tells the encoder which step a token stands for and,
    being learned apart from the patch tokens' fixed sinusoids, that it is a face token."""

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=tuple(input_shape[1:]), initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, inputs):
        return inputs + ops.cast(self.table, inputs.dtype)[None]


def face_tokens(sequence, present, width: int, statistics=None, name: str = "face_tokens"):
    """(B, T, F) face features -> (B, T, width) tokens for the early-fusion encoder."""
    x = standardized(sequence, statistics, name)
    which = layers.RepeatVector(sequence.shape[1], name=f"{name}_present")(present)
    x = layers.Concatenate(name=f"{name}_features")([x, which])
    x = layers.Dense(width, name=f"{name}_project")(x)
    return StepEmbedding(name=f"{name}_steps")(x)


def face_statistics(face_sequences, min_variance: float = 1e-6) -> tuple[list[float], list[float]]:
    """Per-column mean and variance over clips and steps; constant columns (absent features) get variance 1."""
    values = np.asarray(face_sequences, dtype=np.float64).reshape(-1, FACE_FEATURES)
    variance = values.var(axis=0)
    variance[variance < min_variance] = 1.0
    return values.mean(axis=0).tolist(), variance.tolist()


def model_inputs(num_frames: int, image_size: int) -> dict:
    return {
        "frames": keras.Input((num_frames, image_size, image_size, 3), name="frames"),
        "mel": keras.Input((MEL_BANDS, AUDIO_STEPS, 1), name="mel"),
        "face_sequence": keras.Input((num_frames, FACE_FEATURES), name="face_sequence"),
        "face_present": keras.Input((FACE_FEATURES,), name="face_present"),
    }


def build_fusion_model(
    fusion: str,
    backbone_settings: dict,
    num_classes: int,
    num_frames: int,
    image_size: int,
    dropout: float = 0.1,
    face_stats: tuple | None = None,
    frame_normalization: str = "imagenet",
    speech_encoder=None,
    audio_max_seconds: float = 10.0,
) -> keras.Model:
    """The network for one fusion mode; ``backbone_settings`` are VideoMAEBackbone arguments (a variant's).

    ``face_stats``: (mean, variance) of the training clips' face features (face_statistics); without
    them the face branch starts unstandardised (mean 0, variance 1). ``frame_normalization``:
    imagenet feeds the frames to the backbone as they are (it standardises with the fixed ImageNet
    statistics VideoMAE was pretrained with); clip first standardises each clip by its own channel
    mean and std (ClipStandardization), before early fusion adds the spectrogram tiles.
    ``speech_encoder``: a WhisperBackbone (speech_branch.speech_encoder) for the audio branch instead
    of the CNN, reading ``audio_max_seconds`` of each clip.
    """
    if fusion not in FUSION_MODES:
        raise ValueError(f"fusion {fusion!r} is not allowed; allowed values: {', '.join(FUSION_MODES)}")
    inputs = model_inputs(num_frames, image_size)
    if speech_encoder is not None:
        del inputs["mel"]
        inputs.update(speech_model_inputs(speech_encoder, audio_max_seconds))
    if frame_normalization not in FRAME_NORMALIZATIONS:
        raise ValueError(
            f"frame_normalization {frame_normalization!r} is not allowed; allowed values: {', '.join(FRAME_NORMALIZATIONS)}"
        )
    frames = inputs["frames"]
    if frame_normalization == "clip":
        # To the backbone's own mean and std, so its fixed standardisation leaves each clip at 0 and 1;
        # in float32 even under mixed precision, like that standardisation (bf16 statistics are coarse).
        mean, std = backbone_settings["image_mean"], backbone_settings["image_std"]
        frames = ClipStandardization(mean, std, dtype="float32", name="clip_standardize")(frames)
    tiles = fusion == "early" and speech_encoder is None  # the Mel as T more frames
    video_frames = 2 * num_frames if tiles else num_frames
    # early fusion's face tokens, and its Whisper token
    extra_tokens = num_frames + (speech_encoder is not None) if fusion == "early" else 0
    backbone = VideoMAEBackbone(
        **{**backbone_settings, "num_frames": video_frames, "image_size": image_size, "extra_tokens": extra_tokens},
        name="videomae",
    )
    if fusion == "early":
        tokens = face_tokens(inputs["face_sequence"], inputs["face_present"], backbone.hidden_size, face_stats)
        if tiles:
            sequence = EarlyFusionSequence(name="early_sequence")([frames, inputs["mel"]])
        else:
            audio = speech_token(inputs, speech_encoder, backbone.hidden_size, dropout)
            sequence, tokens = frames, layers.Concatenate(axis=1, name="early_tokens")([tokens, audio])
        video = layers.Dropout(dropout, name="video_dropout")(backbone([sequence, tokens]))
        return keras.Model(inputs, heads(video, num_classes), name="early_fusion")

    embeddings = {
        "video": layers.Dropout(dropout, name="video_dropout")(backbone(frames)),
        "audio": audio_encoder(inputs["mel"]) if speech_encoder is None else speech_embedding(inputs, speech_encoder, dropout),
        "face": face_encoder(inputs["face_sequence"], inputs["face_present"], face_stats),
    }
    outputs = {}
    if fusion == "late":
        for branch, embedding in embeddings.items():
            outputs.update(heads(embedding, num_classes, prefix=f"{branch}_"))
        return keras.Model(inputs, outputs, name="late_fusion")

    joined = layers.Concatenate(name="joined")([embeddings[branch] for branch in BRANCHES])
    joined = layers.Dense(256, activation="gelu", name="fusion_dense")(joined)
    joined = layers.Dropout(dropout, name="fusion_dropout")(joined)
    outputs.update(heads(joined, num_classes))
    for branch, embedding in embeddings.items():
        outputs.update(heads(embedding, num_classes, prefix=f"{branch}_", tasks=("emotion",)))
    return keras.Model(inputs, outputs, name="hybrid_fusion")


def speech_token(inputs: dict, encoder, width: int, dropout: float):
    """(B, 1, width): the Whisper embedding as one early-fusion token, with a learned embedding that
    marks it as the audio token (as StepEmbedding marks the face tokens)."""
    embedding = speech_embedding(inputs, encoder, dropout)
    token = layers.Reshape((1, width), name="audio_token_shape")(layers.Dense(width, name="audio_token")(embedding))
    return StepEmbedding(name="audio_token_type")(token)


def model_input_names(model: keras.Model) -> list[str]:
    """The inputs a fusion model reads (every mode reads all four, with a Whisper branch the two speech
    inputs instead of the Mel; the pipeline emits only these, speech_input.pipeline_inputs says how)."""
    return [tensor.name for tensor in model.inputs]


def backbone_of(model: keras.Model) -> VideoMAEBackbone:
    return model.get_layer("videomae")


def pretrained_backbone(path, architecture: dict, num_frames: int, image_size: int) -> VideoMAEBackbone:
    """The VideoMAE backbone at ``path`` (any format load_videomae reads); it must have the shape of
    ``architecture`` (the configured variant's)."""
    pretrained = load_videomae(path, num_frames=num_frames, image_size=image_size).backbone
    theirs = pretrained.architecture
    differing = [key for key in FITTING_KEYS if architecture[key] != theirs[key]]
    if differing:
        described = ", ".join(f"{key} {architecture[key]} vs {theirs[key]}" for key in differing)
        raise CheckpointError(f"{path} does not fit model.variant ({described})")
    return pretrained


def load_pretrained_backbone(model: keras.Model, path) -> None:
    """Copy VideoMAE weights (any format load_videomae reads) into the model's backbone."""
    backbone = backbone_of(model)
    backbone.set_weights(pretrained_backbone(path, backbone.architecture, backbone.num_frames, backbone.image_size).get_weights())