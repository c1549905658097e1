"""Where and how a training job computes: its CPU threads, its numeric precision, its replicas.

Keras' backend is whichever the process runs: the job's training.backend (avemotion.train.backend,
TensorFlow or JAX) in the workflow, also torch in benchmarks/train.py; so each backend's package is
imported only by the functions that need it.
"""

from __future__ import annotations

import contextlib
import logging

import keras

log = logging.getLogger(__name__)


def gpu_available() -> bool:
    """Whether Keras' backend sees a GPU (TensorFlow in the workflow; JAX or torch in benchmarks)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def configure_precision(training: dict) -> str:
    """Set Keras' global dtype policy from ``training["mixed_precision"]`` (bf16, float32, or auto:
    bf16 on a GPU); returns the one set."""
    wanted = training["mixed_precision"]
    if wanted == "auto":
        wanted = "bf16" if gpu_available() else "float32"
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if wanted == "bf16" else "float32")
    return wanted


def training_strategy():
    """tf.distribute.MirroredStrategy over this process' GPUs when it sees more than one (one node,
    each batch split across them, gradients all-reduced), else over its logical CPU devices when
    it configured several (tests), else the default strategy (one device). On JAX: one device.

    ``batch_size`` stays the global batch: each of N replicas gets batch_size / N clips. The losses
    divide by the replica count (avemotion.train.losses), so N replicas take the same step as one.
    """
    if keras.backend.backend() == "jax":
        import jax

        return OneJaxDevice(jax.devices())
    import tensorflow as tf

    for kind in ("GPU", "CPU"):
        devices = [device.name for device in tf.config.list_logical_devices(kind)]
        if len(devices) > 1:
            return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


class OneJaxDevice:
    """What training_strategy gives on JAX, used as a tf.distribute strategy is: ``scope()`` and
    ``num_replicas_in_sync``. JAX places everything on its first device (a GPU where there is one).

    One device only: Keras' DataParallel over two forced CPU devices trained one epoch with the
    single device's losses, then hung in its second epoch's all-reduce (XLA's CPU collectives, 2
    cores), and no machine with several GPUs was at hand to show it works there. A job given
    several GPUs on JAX says that it uses one."""

    num_replicas_in_sync = 1

    def __init__(self, devices):
        if len(devices) > 1:
            log.warning("training.backend jax trains on one device: %s of %d (use tensorflow for several GPUs)", devices[0], len(devices))

    def scope(self):
        return contextlib.nullcontext()
