"""How a process runs Keras models on TensorFlow's input pipeline: the CPU threads TensorFlow takes, and
the GPUs it must leave to JAX. Shared by training and prediction jobs (prediction needs no training code).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def configure_threads(threads: int | None) -> None:
    """Use the job's CPU share (Snakemake's threads) for TensorFlow, which runs the input pipeline
    on every backend; on JAX also keep TensorFlow off the GPUs (it would reserve their memory for
    nothing, JAX computes there). Must run before TensorFlow's first operation.

    Snakemake's threads do not bound JAX's own CPU thread pool, which matters only to a JAX job
    that computes on a CPU (tests)."""
    if keras.backend.backend() != "tensorflow":
        tf.config.set_visible_devices([], "GPU")
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
