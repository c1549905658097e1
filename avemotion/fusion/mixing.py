"""Mixup and CutMix of training batches, as timm's Mixup does them (mode "batch") for the VideoMAE
fine-tuning recipe that MAE-DFER and HiCMAE follow, extended to every input of an audio-visual clip.

Per batch: one lambda and one partner permutation for every input and target, so what the model
sees and what it is told stay consistent. One lambda per batch, not per clip, is timm's default
mode and the one the published recipes ran; it is also what lets CutMix cut one box for the whole
batch (a slice, not a per-clip gather).

- Mixup (lambda ~ Beta(mixup, mixup)): every input and the valence/arousal targets become
  lambda * own + (1 - lambda) * partner's.
- CutMix (lambda ~ Beta(cutmix, cutmix)): a box, timm's rand_bbox (side sqrt(1 - lambda) of the frame's,
  centre uniform, clipped at the border), is cut from the partner's frames, the same box in all T
  frames of a clip; lambda is then corrected to 1 - the box's area fraction, as timm's
  correct_lam. The partner's audio fills a time span of the Mel (and MFCC) as wide as that fraction
  (to the nearest step), and the face-sequence frames whose centres fall in the same span of the
  clip's time are the partner's too (the partner's voice and face then come from the same moment).
  Inputs without a time axis here (face_present, any other) are mixed linearly with the corrected
  lambda.
- The speech encoder's waveform (``audio``: each clip's 16 kHz int16 PCM bytes, of its own length;
  the model layer makes the Whisper features of it after mixing, avemotion.model.speech_input) is
  mixed in float and rounded back to int16 (clipped, never wrapped). Mixup: lambda * own + (1 -
  lambda) * partner's over the clip's own length (the partner cut there, or zero-padded where it is
  shorter), so the pooled frames hold the partner in the share lambda says. CutMix: the same share of
  the time the branch hears (the clip, or its first audio_max_seconds: ``Mixing.audio_window``) as the
  Mel's span (the Mel's whole steps, or the drawn span without a Mel) is the partner's, read from the
  same relative moment of what the branch hears of the partner (moved back to fit where the partner is
  shorter; silence only where the partner is shorter than the span); the clip keeps its length. The
  PCM is the whole clip (up to 30 s) also where dense frame sampling shows a window of it, so there
  the span is a share of the clip's audio the branch hears. A clip without stored audio
  stays without (the speech input then says how to fuse its shards again); an unmixed batch (lambda
  1) keeps its audio as it is.
- When both are on, CutMix is chosen with probability ``switch_prob``; a batch is mixed at all with
  probability ``prob`` (else lambda = 1).
- Targets: the emotion becomes the soft distribution lambda * smooth(own) + (1 - lambda) *
  smooth(partner's), smooth(y) = (1 - s) * one_hot(y) + s / K (timm's mixup_target: smoothing
  applied before mixing, so the loss takes the distribution as it is). The emotion target is soft
  for every batch of a mixed stream, also one left unmixed, so the stream has one element spec.

Stateless: each batch's draws come from (the user's seed, the batch's position in the stream), so
the same seed gives the same batches (as avemotion.fusion.augment).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

# Inputs cut along time by CutMix: the axis of the batch tensor that is time.
TIME_AXES = {"mel": 2, "mfcc": 2, "face_sequence": 1}
# make_dataset's waveform input (avemotion.fusion.dataset.AUDIO): (B,) int16 little-endian PCM bytes.
AUDIO = "audio"
PCM_RANGE = (-32768, 32767)
_MIX_SALT = 0x5EED_B1  # the mixing's own random stream (augmentation and balancing have theirs)


@dataclass(frozen=True)
class Mixing:
    """``mixup``, ``cutmix``: the Beta distributions' alpha (0: off); ``switch_prob``: CutMix's
    share when both are on; ``prob``: probability that a batch is mixed; ``label_smoothing``: applied
    to the one-hot targets before mixing (the loss then smooths nothing); ``audio_window``: the
    samples of a waveform the speech branch reads (its audio_max_seconds), where CutMix cuts."""

    mixup: float = 0.0
    cutmix: float = 0.0
    switch_prob: float = 0.5
    prob: float = 1.0
    label_smoothing: float = 0.1
    audio_window: int = 0  # samples of a clip's waveform the speech branch reads (0: all of it)

    @property
    def active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


def batch_seed(seed: int, index) -> tf.Tensor:
    """The stateless seed (shape [2]) of the batch at ``index`` of a training stream."""
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, _MIX_SALT], tf.int64), tf.cast(index, tf.int64))


def _beta(seed, alpha: float) -> tf.Tensor:
    """One draw of Beta(alpha, alpha), as the ratio of two Gamma(alpha) draws."""
    gammas = tf.random.stateless_gamma([2], seed, alpha)
    return gammas[0] / tf.maximum(gammas[0] + gammas[1], 1e-12)


def draw(seed, mixing: Mixing, batch_size: int, image_size: int) -> dict:
    """One batch's mixing: ``lam`` (float32, corrected to the box under CutMix), ``cutmix`` (bool),
    ``permutation`` (int32, the partner of each clip), ``box`` [top, bottom, left, right) in pixels
    (empty under Mixup) and ``span`` [start, end) as fractions of the clip's time."""
    # seeds[4] drew the random partner permutation, now the reversed batch: unused, and the split
    # keeps its 7 so that the box and span draws stay the same.
    seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7))
    uniform = [tf.random.stateless_uniform([], seed) for seed in seeds[:2]]
    if mixing.mixup > 0 and mixing.cutmix > 0:
        cutmix = uniform[0] < mixing.switch_prob
    else:
        cutmix = tf.constant(mixing.cutmix > 0)
    mixup_lam = _beta(seeds[2], mixing.mixup) if mixing.mixup > 0 else tf.constant(1.0)
    cutmix_lam = _beta(seeds[3], mixing.cutmix) if mixing.cutmix > 0 else tf.constant(1.0)
    lam = tf.where(uniform[1] < mixing.prob, tf.where(cutmix, cutmix_lam, mixup_lam), 1.0)
    # timm's partner: the batch reversed (the batch is shuffled already), so in an even batch no clip
    # is its own partner (a random permutation left one clip in eight unmixed at batch 8)
    permutation = tf.reverse(tf.range(batch_size), [0])

    # timm's rand_bbox: sides int(S * sqrt(1 - lam)), centre uniform over the frame, clipped.
    size = tf.constant(image_size, tf.int32)
    side = tf.cast(tf.cast(image_size, tf.float32) * tf.sqrt(1.0 - lam), tf.int32)
    side = tf.where(cutmix, side, 0)
    centre = tf.random.stateless_uniform([2], seeds[5], minval=0, maxval=image_size, dtype=tf.int32)
    low = tf.clip_by_value(centre - side // 2, 0, size)
    high = tf.clip_by_value(centre + side // 2, 0, size)
    box = tf.stack([low[0], high[0], low[1], high[1]])
    fraction = tf.cast((high[0] - low[0]) * (high[1] - low[1]), tf.float32) / float(image_size**2)
    lam = tf.where(cutmix, 1.0 - fraction, lam)
    start = tf.random.stateless_uniform([], seeds[6]) * (1.0 - fraction)
    return {"lam": lam, "cutmix": cutmix, "permutation": permutation, "box": box, "span": tf.stack([start, start + fraction])}


def _box_mask(box, image_size: int) -> tf.Tensor:
    """bool (1, 1, S, S, 1): True inside the box, for a batch of clips (B, T, S, S, 3)."""
    index = tf.range(image_size)
    rows = (index >= box[0]) & (index < box[1])
    columns = (index >= box[2]) & (index < box[3])
    return (rows[:, None] & columns[None, :])[None, None, :, :, None]


def _span_mask(span, length: int, axis: int, rank: int) -> tf.Tensor:
    """bool, ``length`` long on ``axis`` (1 elsewhere): the positions whose centres fall in ``span``
    (fractions of the clip's time). A Mel span of whole steps gives exactly those steps."""
    centres = (tf.range(length, dtype=tf.float32) + 0.5) / length
    inside = (centres >= span[0]) & (centres < span[1])
    return tf.reshape(inside, [length if dim == axis else 1 for dim in range(rank)])


def _mel_span(draw_: dict, steps: int) -> tf.Tensor:
    """The span rounded to whole steps of a time axis ``steps`` long: [start, end) in fractions."""
    width = tf.round((draw_["span"][1] - draw_["span"][0]) * steps)
    start = tf.minimum(tf.round(draw_["span"][0] * steps), steps - width)
    return tf.stack([start, start + width]) / steps


def _cut(name: str, value, partner, draw_: dict, inputs: dict, image_size: int):
    """CutMix of one input: the box of the frames, a time span of a TIME_AXES input, else linear."""
    if name == "frames":
        return tf.where(_box_mask(draw_["box"], image_size), partner, value)
    if name not in TIME_AXES:
        return draw_["lam"] * value + (1.0 - draw_["lam"]) * partner
    axis = TIME_AXES[name]
    length = value.shape[axis]
    # The Mel's span is whole steps (its width the box's fraction); coarser axes (the face
    # sequence's T frames) take the frames whose centres fall in that span.
    span = _mel_span(draw_, inputs["mel"].shape[2] if "mel" in inputs else length)
    return tf.where(_span_mask(span, length, axis, len(value.shape)), partner, value)


def pcm_span(span, length: int) -> tuple[int, int]:
    """[start, end) in samples of a clip ``length`` samples long of ``span`` (fractions of its time)."""
    start = int(np.floor(float(span[0]) * length + 0.5))
    return start, max(start, min(int(np.floor(float(span[1]) * length + 0.5)), length))


def mix_waveforms(own: np.ndarray, partner: np.ndarray, lam: float, cutmix: bool, span, window: int = 0) -> np.ndarray:
    """One clip's int16 samples mixed with its partner's (module docstring): Mixup in float over the
    clip's own length (the partner cut or zero-padded to it), rounded and clipped to int16; CutMix the
    ``span`` (fractions of the time the speech branch hears: the first ``window`` samples, 0: all) of
    ``own`` replaced by the partner's samples from the same relative moment of what it hears. ``own``
    as it is when it is empty or lambda is 1."""
    if not own.size or lam >= 1.0:
        return own
    heard, partner_heard = (min(clip.size, window) if window else clip.size for clip in (own, partner))
    if cutmix:
        start, end = pcm_span(span, heard)
        width = end - start
        source = min(pcm_span(span, partner_heard)[0], max(partner_heard - width, 0))
        piece = partner[source : source + width]
        mixed = own.copy()
        mixed[start:end] = np.pad(piece, (0, width - piece.size))
        return mixed
    # Over the clip's own length: a longer partner past its end would be heard alone (its pooled
    # frames the partner's only, whatever lambda says), a shorter one ends in silence
    fitted = np.pad(partner[: own.size].astype(np.float64), (0, max(own.size - partner.size, 0)))
    total = lam * own.astype(np.float64) + (1.0 - lam) * fitted
    return np.clip(np.rint(total), *PCM_RANGE).astype("<i2")


def mix_pcm(pcm, permutation, lam, cutmix, span, window) -> np.ndarray:
    """A batch of PCM byte strings (B,) mixed with their partners' (mix_waveforms), as bytes (B,)."""
    clips = [np.frombuffer(clip, "<i2") for clip in pcm]
    mixed = [
        mix_waveforms(clips[i], clips[j], float(lam), bool(cutmix), span, int(window)).astype("<i2").tobytes()
        for i, j in enumerate(permutation)
    ]
    return np.array(mixed, dtype=object)


def _mix_audio(value, draw_: dict, inputs: dict, window: int) -> tf.Tensor:
    """The waveform input mixed (mix_pcm): CutMix's span is the Mel's whole steps when a Mel is mixed too."""
    span = _mel_span(draw_, inputs["mel"].shape[2]) if "mel" in inputs else draw_["span"]
    arguments = [value, draw_["permutation"], draw_["lam"], draw_["cutmix"], span, window]
    mixed = tf.numpy_function(mix_pcm, arguments, tf.string, stateful=False)
    return tf.ensure_shape(mixed, value.shape)


def mix_inputs(inputs: dict, draw_: dict, image_size: int, audio_window: int = 0) -> dict:
    """The batch's inputs mixed with their partners' (module docstring)."""
    lam, mixed = draw_["lam"], {}
    for name, value in inputs.items():
        if name == AUDIO and value.dtype == tf.string:
            mixed[name] = _mix_audio(value, draw_, inputs, audio_window)
            continue
        if not value.dtype.is_floating:
            raise ValueError(
                f"training.mixup/cutmix cannot mix the input {name!r} ({value.dtype.name}): only float inputs "
                f"({', '.join(['frames', *TIME_AXES, 'face_present'])}) and the PCM bytes ({AUDIO!r}) are mixed; "
                "set training.mixup and training.cutmix to 0 for this model"
            )
        partner = tf.gather(value, draw_["permutation"])
        # tf.cond, not tf.where: only one of the two is computed over the (large) frames.
        mixed[name] = tf.cond(
            draw_["cutmix"],
            lambda: _cut(name, value, partner, draw_, inputs, image_size),
            lambda: lam * value + (1.0 - lam) * partner,
        )
    return mixed


def mix_targets(targets: dict, draw_: dict, num_classes: int, smoothing: float) -> dict:
    """The emotion as the mixed, smoothed distribution (batch, K); valence and arousal mixed alike."""
    lam, permutation = draw_["lam"], draw_["permutation"]
    off = smoothing / num_classes
    soft = tf.one_hot(targets["emotion"], num_classes, on_value=1.0 - smoothing + off, off_value=off)
    mixed = {"emotion": lam * soft + (1.0 - lam) * tf.gather(soft, permutation)}
    for name in ("valence", "arousal"):
        mixed[name] = lam * targets[name] + (1.0 - lam) * tf.gather(targets[name], permutation)
    return mixed


def mix_batches(dataset: tf.data.Dataset, mixing: Mixing, seed: int, num_classes: int, image_size: int) -> tf.data.Dataset:
    """make_dataset's training batches ``(inputs, targets[, meta])`` mixed, each from its own
    stateless seed (batch_seed); needs a static batch size (drop_remainder)."""

    def mix(index, element):
        inputs, targets, *rest = element
        batch_size = targets["emotion"].shape[0]
        draw_ = draw(batch_seed(seed, index), mixing, batch_size, image_size)
        mixed = (mix_inputs(inputs, draw_, image_size, mixing.audio_window), mix_targets(targets, draw_, num_classes, mixing.label_smoothing))
        return mixed + tuple(rest)

    return dataset.enumerate().map(mix, num_parallel_calls=tf.data.AUTOTUNE)
