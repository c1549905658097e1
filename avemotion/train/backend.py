"""Which Keras backend a training job computes on (``training.backend``: tensorflow or jax).

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so a job chooses before anything
imports Keras (workflow_scripts/train_experiment.py); which GPUs it sees is avemotion.gpus' to
say. This module imports neither Keras nor TensorFlow. Whatever the backend, the batches come from
tf.data on the CPU (avemotion.fusion.dataset) and the model file a job writes loads under either
backend.
"""

from __future__ import annotations

import os
import sys

BACKENDS = ("tensorflow", "jax")


class BackendError(RuntimeError):
    pass


def use_backend(name: str, compilation_cache: str | os.PathLike | None = None) -> None:
    """Make ``name`` Keras' backend in this process; a process whose Keras already runs on another
    backend cannot switch, and says so. On JAX, ``compilation_cache`` is the folder where XLA keeps
    the compiled steps for later jobs (JAX's persistent compilation cache; it reads the variable
    when it starts), cleared of entries a killed job cut short (each would make every later job
    compile its step again)."""
    if name not in BACKENDS:
        raise BackendError(f"training.backend: {name!r} is not allowed; allowed values: {', '.join(BACKENDS)}")
    keras = sys.modules.get("keras")
    if keras is not None:
        current = keras.backend.backend()
        if current != name:
            raise BackendError(f"training.backend: {name!r} asked for, but Keras was imported on {current!r} first")
        return
    os.environ["KERAS_BACKEND"] = name
    if name == "jax" and compilation_cache is not None:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(compilation_cache)
        from avemotion.train.compilation_cache import remove_cut_entries  # imports JAX: a TensorFlow job must not

        remove_cut_entries(compilation_cache)
