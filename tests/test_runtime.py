"""How a job runs TensorFlow: on the CPU share Snakemake gave it, and on the GPUs only where Keras
computes with TensorFlow (on JAX, TensorFlow runs the input pipeline only and must leave the GPUs'
memory to JAX). Recorded, not applied: TensorFlow takes these settings only before it starts, and
this process started it (a job's own process applies them, tests/test_jax_backend.py trains one)."""

import keras
import pytest
import tensorflow as tf

from avemotion.model import runtime


@pytest.fixture
def told(monkeypatch) -> dict:
    said = {}
    monkeypatch.setattr(tf.config.threading, "set_intra_op_parallelism_threads", lambda n: said.update(intra=n))
    monkeypatch.setattr(tf.config.threading, "set_inter_op_parallelism_threads", lambda n: said.update(inter=n))
    monkeypatch.setattr(tf.config, "set_visible_devices", lambda devices, kind: said.update(visible={kind: devices}))
    return said


@pytest.mark.parametrize("backend, hidden", [("tensorflow", {}), ("jax", {"visible": {"GPU": []}})])
def test_a_job_takes_its_cpu_share_and_leaves_the_gpus_to_jax(told, monkeypatch, backend, hidden):
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    runtime.configure_threads(3)
    assert told == {"intra": 3, "inter": 3, **hidden}


def test_a_job_without_a_thread_count_leaves_tensorflows_default(told, monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    runtime.configure_threads(None)
    assert told == {}
