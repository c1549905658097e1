"""Whisper audio-branch throughput on this machine's CPU: clips per second through the fusion model's
audio branch (avemotion.model.speech_branch: the encoder, layer-weighted masked pooling, the dense
embedding and an emotion head), forward and as a training step, per Whisper size; and the rate at
which the input pipeline makes the branch's features (avemotion.model.speech_features.whisper_features).

Random weights (speed does not depend on them) and random clips of --seconds (default 4 s: CREMA-D's
longest clips), padded to --max-seconds (default: the same) as model.audio_max_seconds pads them.
Float32 (what a CPU trains in), each step inside one tf.function; figures are clips per second over
the median of --iterations timed steps after --warmup untimed ones. The training step is a fine-tuned
encoder (the dearer of the two: a frozen one skips the encoder's backward pass) under AdamW.
Prints `name: value` lines only (anything else goes to stderr).

    .venv/bin/python benchmarks/audio_encoder.py [--presets tiny base] [--batch 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import numpy as np

STDOUT = sys.stdout
NUM_CLASSES = 6


def report(name: str, value) -> None:
    print(f"{name}: {value:.4g}" if isinstance(value, float) else f"{name}: {value}", file=STDOUT, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "base"])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    return parser.parse_args()


def clips_per_second(step, batch: int, warmup: int, iterations: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def branch_model(preset: str, max_seconds: float):
    import keras

    from avemotion.model.speech_branch import speech_embedding, speech_model_inputs
    from avemotion.model.whisper import WhisperBackbone, whisper_settings

    encoder = WhisperBackbone(**whisper_settings(preset), name="whisper")
    inputs = speech_model_inputs(encoder, max_seconds)
    logits = keras.layers.Dense(NUM_CLASSES, name="audio_emotion")(speech_embedding(inputs, encoder))
    return keras.Model(inputs, logits)


def benchmark(preset: str, args, features: np.ndarray, frames: np.ndarray) -> None:
    import keras
    import tensorflow as tf

    model = branch_model(preset, args.max_seconds)
    batch = {"speech_features": tf.constant(features), "speech_frames": tf.constant(frames)}
    labels = tf.constant(np.arange(args.batch) % NUM_CLASSES)
    forward = tf.function(lambda: model(batch, training=False))
    report(f"whisper_{preset}_forward_clips_per_s", clips_per_second(lambda: forward().numpy(), args.batch, args.warmup, args.iterations))

    optimizer = keras.optimizers.AdamW(1e-4, weight_decay=0.05)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(batch, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    report(f"whisper_{preset}_train_clips_per_s", clips_per_second(lambda: train_step().numpy(), args.batch, args.warmup, args.iterations))
    report(f"whisper_{preset}_parameters", model.count_params())


def main() -> None:
    args = parse_args()
    args.max_seconds = args.max_seconds or args.seconds
    with contextlib.redirect_stdout(sys.stderr):
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")  # the CPU figures, whatever the machine has
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        from avemotion.model.speech_features import feature_frames, whisper_features

        rng = np.random.default_rng(0)
        audio = rng.normal(0, 0.1, (args.batch, int(args.seconds * 16000))).astype(np.float32)
        max_frames = feature_frames(args.max_seconds)
        made = [whisper_features(clip, max_frames) for clip in audio]
        start = time.perf_counter()
        for clip in audio:
            whisper_features(clip, max_frames)
        features_rate = args.batch / (time.perf_counter() - start)
    report("seconds_per_clip", args.seconds)
    report("threads", args.threads)
    report("features_clips_per_s", features_rate)
    features = np.stack([values for values, _ in made])
    frames = np.array([count for _, count in made], np.int32)
    for preset in args.presets:
        with contextlib.redirect_stdout(sys.stderr):
            benchmark(preset, args, features, frames)


if __name__ == "__main__":
    main()
