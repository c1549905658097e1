"""Which Keras backend a training job computes on (``training.backend``: tensorflow or jax).

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so a job chooses before anything
imports Keras (workflow_scripts/train_experiment.py). This module imports neither Keras nor
TensorFlow. Whatever the backend, the batches come from tf.data on the CPU
(avemotion.fusion.dataset) and the model file a job writes loads under either backend.
"""

from __future__ import annotations

import os
import sys

from avemotion.train.gpu_slots import claim_gpus, machine_gpus

BACKENDS = ("tensorflow", "jax")


class BackendError(RuntimeError):
    pass


def use_gpus(count: int, gres: str = "") -> None:
    """A job that asked for no GPU (``training.gpus: 0``, Snakemake's ``gpu`` resource, and no GPU in
    a Slurm ``gres``) computes on CPUs: its GPUs are hidden from TensorFlow and JAX, which must not
    have started yet (both take every GPU they see, and its memory, so such jobs running side by side
    on a workstation fought over one). A job that asked for N GPUs on a workstation takes N of the
    machine's GPUs to itself (avemotion.train.gpu_slots), and a Slurm job sees those Slurm gives it."""
    count = int(count or 0)
    if os.environ.get("SLURM_JOB_ID") or (not count and "gpu" in str(gres or "")):
        return  # in a Slurm job, what the job was given is for Slurm to say (a shard, an extra sbatch option)
    devices = machine_gpus() if count else []
    if (devices or not count) and ("tensorflow" in sys.modules or "jax" in sys.modules):
        raise BackendError(f"training.gpus: {count} asked for, but TensorFlow or JAX started first and took the GPUs")
    if count:
        claim_gpus(count, devices)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def use_backend(name: str, compilation_cache: str | os.PathLike | None = None) -> None:
    """Make ``name`` Keras' backend in this process; a process whose Keras already runs on another
    backend cannot switch, and says so. On JAX, ``compilation_cache`` is the folder where XLA keeps
    the compiled steps for later jobs (JAX's persistent compilation cache; it reads the variable
    when it starts)."""
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
