"""Early fusion: one clip as a sequence of 2T images, the T video frames then T spectrogram tiles.

VideoMAE sees the audio as T extra "frames". The frames are the middle frames of T equal segments
of the clip and the log-Mel covers the whole clip, so the Mel is cut into T equal windows along time
(window i = time steps [floor(i L / T), floor((i + 1) L / T)) of L): tile i is the sound of the
segment that frame i shows. Each window is resized to S x S (bilinear, half-pixel centres: the
sampling of tf.image.resize) with frequency on the vertical axis and the low bands at the bottom (as
in the spectrogram PNGs, avemotion.media.spectrogram.to_image), and repeated on the three channels.

VideoMAE embeds tubelets of 2 consecutive frames, so T must be even: then tubelet k holds either
two video frames (k < T / 2) or two tiles, never one of each.

The sequence is built inside the model (EarlyFusionSequence, the first layer of an early-fusion
network) from the same inputs every fusion mode reads, ``frames`` and ``mel``: the input pipeline
then does the same work for every mode, and the sequence, which is twice the size of the frames,
never crosses from host to device. The bilinear resampling is linear in the Mel, so the tiles are
two small matrix products, (S x bands) . mel . (steps x T*S), fast on any accelerator; the matrices
are constants computed once with NumPy. Plain keras.ops: any Keras backend runs it.

In the model layer: the layer is part of every saved early-fusion network, and the data layer's
pipeline (avemotion.fusion.dataset) emits the same frames and mel whatever the fusion mode.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from avemotion.model.layers import PACKAGE


def sampling_weights(start: float, length: float, size: int) -> np.ndarray:
    """(size, start + length) float32 matrix M: M @ v resizes v[start : start + length] to ``size``.

    Bilinear with half-pixel centres and edge clamping, like tf.image.resize: output j reads
    position start + (j + 0.5) * length / size - 0.5, clamped to the window, from its two
    neighbours. Each row has at most two non-zero weights that sum to 1.
    """
    last = start + length - 1.0
    position = np.clip(start + (np.arange(size, dtype=np.float64) + 0.5) * length / size - 0.5, start, last)
    lower = np.floor(position)
    upper = np.minimum(lower + 1.0, last)
    weight = (position - lower).astype(np.float32)
    matrix = np.zeros((size, int(start + length)), np.float32)
    rows = np.arange(size)
    np.add.at(matrix, (rows, lower.astype(int)), 1.0 - weight)
    np.add.at(matrix, (rows, upper.astype(int)), weight)
    return matrix


def tile_matrices(bands: int, steps: int, num_tiles: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows (S, bands), columns (steps, T * S)): tiles = rows @ mel @ columns, (S, T * S).

    ``rows`` resizes the bands to S and reverses them (row 0 holds the highest band); ``columns``
    resizes time window i to the columns [i S, (i + 1) S).
    """
    _check_tiles(steps, num_tiles)
    rows = sampling_weights(0.0, float(bands), size)[::-1].copy()
    bounds = [i * steps // num_tiles for i in range(num_tiles + 1)]
    columns = np.zeros((steps, num_tiles * size), np.float32)
    for i, (begin, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        columns[:end, i * size : (i + 1) * size] = sampling_weights(float(begin), float(end - begin), size).T
    return rows, columns


def _check_tiles(steps: int, num_tiles: int) -> None:
    if steps < num_tiles:
        raise ValueError(f"{num_tiles} tiles need at least {num_tiles} Mel time steps, got {steps}")


def _check_even(num_frames) -> None:
    if num_frames % 2:
        raise ValueError(
            f"early fusion needs an even number of frames (VideoMAE tubelets hold 2 frames, and one must "
            f"never mix a video frame with a spectrogram tile), got {num_frames}"
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class EarlyFusionSequence(keras.layers.Layer):
    """[frames (B, T, S, S, 3) RGB in [0, 1], mel (B, bands, steps, 1) scaled to [0, 1]] ->
    (B, 2T, S, S, 3): the frames, then their T grey spectrogram tiles.

    No weights; runs in float32 (the tiles are resampled values, the frames pass through).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def build(self, input_shape):
        frames_shape, mel_shape = input_shape
        num_frames, size = frames_shape[1], frames_shape[2]
        _check_even(num_frames)
        rows, columns = tile_matrices(mel_shape[1], mel_shape[2], num_frames, size)
        self.num_frames, self.size = num_frames, size
        self.rows, self.columns = ops.convert_to_tensor(rows), ops.convert_to_tensor(columns)

    def tiles(self, mel):
        """(B, bands, steps, 1) -> (B, T, S, S) grey tiles."""
        resized = ops.matmul(ops.matmul(self.rows, mel[..., 0]), self.columns)  # (B, S, T * S)
        return ops.transpose(ops.reshape(resized, (-1, self.size, self.num_frames, self.size)), (0, 2, 1, 3))

    def call(self, inputs):
        frames, mel = inputs
        grey = self.tiles(ops.cast(mel, "float32"))
        return ops.concatenate([ops.cast(frames, "float32"), ops.stack([grey, grey, grey], axis=-1)], axis=1)

    def compute_output_shape(self, input_shape):
        frames_shape = input_shape[0]
        return (frames_shape[0], 2 * frames_shape[1], *frames_shape[2:])

