"""The one contract between the shard writer and the tf.data reader: what a fused example holds.

A TFRecord example has every modality of one clip, aligned:

=================  ========  =================================================================
feature            type      content
=================  ========  =================================================================
clip_id            bytes     the manifest's clip id
dataset            bytes     crema_d | enterface | mafw
speaker            bytes     speaker id (speaker-independent folds are built on it)
label              bytes     canonical emotion name
label_index        int64     the dataset's own class index (a mixture remaps names to its label set)
fold               int64     speaker-independent test fold, 1..K
valence, arousal   float     label-derived targets in [-1, 1]
frames             bytes[T]  T sampled S x S RGB frames, each JPEG-encoded
mel                float[]   log-Mel (dB) resized to (MEL_BANDS, AUDIO_STEPS), row-major
mfcc               float[]   MFCC resized to (MFCC_COEFFICIENTS, AUDIO_STEPS), row-major
face_sequence      float[]   FACE_COLUMNS resampled to T steps, (T, len(FACE_COLUMNS)) row-major
face_present       float[]   1 for each FACE_COLUMNS entry the face backend estimates, else 0
face_ratio         float     fraction of video frames with a tracked face
audio_missing      int64     1 when the clip had no audio track and was kept with silence
audio              bytes     the audio stage's 16 kHz mono WAV samples, int16 little-endian, at
                             most MAX_SPEECH_SECONDS (the Whisper branch's input; shards fused
                             before it existed parse it as empty)
windows            int64     V, the temporal windows of the clip the shard holds (below);
                             absent: 1
=================  ========  =================================================================

Shapes are fixed for the whole workflow (not per dataset) so that corpora mix in one model.

Temporal windows: a shard may hold V windows of each clip (V evenly spread stretches of its video,
for temporal test views), and ``windows`` says V. ``frames`` then holds V x T JPEGs (window by
window), ``mel`` and ``mfcc`` V arrays of their shape and ``face_sequence`` V x T steps, each
window's following it; the other features are the clip's. V is the same for every clip of a shard
(records.shard_windows reads it from the shard's first record); a shard of one window (V = 1) is the
table above, with or without the ``windows`` feature.
"""

from __future__ import annotations

from avemotion.face.columns import AUS_C, AUS_R, GAZE, POSE
from avemotion.media.audio import SAMPLE_RATE

# Log-Mel and MFCC are resized to these shapes (time always; bands too where audio.n_mels or
# audio.n_mfcc differ from them), so datasets with different audio settings still mix.
MEL_BANDS = 128
MFCC_COEFFICIENTS = 40
AUDIO_STEPS = 256

# The face features a model sees: AU intensities and presences, head pose, gaze. Columns the
# backend does not estimate (the built-in facemesh backend has 9 AUs) are zeros, flagged in face_present.
FACE_COLUMNS = AUS_R + AUS_C + POSE + GAZE

# The speech encoder's audio (Whisper: 16 kHz mono): the audio stage's WAV as it is, kept up to
# Whisper's whole 30 s window, so the model's own maximum length (model.audio_max_seconds) is chosen
# at training time, not when fusing.
SPEECH_SAMPLE_RATE = SAMPLE_RATE
MAX_SPEECH_SECONDS = 30

STRING_FEATURES = ("clip_id", "dataset", "speaker", "label")
INT_FEATURES = ("label_index", "fold", "audio_missing")
FLOAT_FEATURES = ("valence", "arousal", "face_ratio")
FACE_FEATURES = len(FACE_COLUMNS)


def feature_spec(num_frames: int, windows: int = 1) -> dict:
    """tf.io parsing spec for examples of ``windows`` temporal windows of ``num_frames`` frames each
    (imports TensorFlow)."""
    import tensorflow as tf

    spec = {name: tf.io.FixedLenFeature([], tf.string) for name in STRING_FEATURES}
    spec.update({name: tf.io.FixedLenFeature([], tf.int64) for name in INT_FEATURES})
    spec.update({name: tf.io.FixedLenFeature([], tf.float32) for name in FLOAT_FEATURES})
    spec["frames"] = tf.io.FixedLenFeature([windows * num_frames], tf.string)
    spec["mel"] = tf.io.FixedLenFeature([windows * MEL_BANDS * AUDIO_STEPS], tf.float32)
    spec["mfcc"] = tf.io.FixedLenFeature([windows * MFCC_COEFFICIENTS * AUDIO_STEPS], tf.float32)
    spec["face_sequence"] = tf.io.FixedLenFeature([windows * num_frames * FACE_FEATURES], tf.float32)
    spec["face_present"] = tf.io.FixedLenFeature([FACE_FEATURES], tf.float32)
    # A default, so shards fused before the audio was stored still parse (only a Whisper model reads it).
    spec["audio"] = tf.io.FixedLenFeature([], tf.string, default_value="")
    spec["windows"] = tf.io.FixedLenFeature([], tf.int64, default_value=1)
    return spec


def record_windows(record: bytes, num_frames: int, path="a shard") -> int:
    """The temporal windows V a serialised example holds (its ``windows`` feature, 1 when absent),
    checked against its frames: V x ``num_frames`` of them (imports TensorFlow)."""
    import tensorflow as tf

    features = tf.train.Example.FromString(record).features.feature
    windows = int(features["windows"].int64_list.value[0]) if "windows" in features else 1
    frames = len(features["frames"].bytes_list.value)
    if windows < 1 or frames != windows * num_frames:
        raise ValueError(
            f"{path}: a clip holds {frames} frames in {windows} temporal window(s), not {num_frames} per window as the model "
            "reads them; fuse the shards with the model's frames settings (num_frames, windows)"
        )
    return windows
