"""benchmarks/gpu.py: its FLOP count against issue 21's figures, and its --smoke run on a CPU."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avemotion.presets import variant_settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu  # noqa: E402  (benchmarks/gpu.py imports no framework at module level)


@pytest.mark.parametrize(("variant", "gmac"), [("base", 180), ("large", 597)])
def test_forward_macs_match_issue_21(variant, gmac):
    """ViT-B and ViT-L at 16 x 224 (1568 tokens): 180 and 597 GMAC a clip's forward pass."""
    macs = gpu.videomae_forward_macs(variant_settings(variant), 16, 224)
    assert macs / 1e9 == pytest.approx(gmac, rel=0.02)
    assert gpu.forward_tflop(variant, 16, 224) == pytest.approx(2 * macs / 1e12)


def test_device_peaks():
    assert gpu.device_peak("NVIDIA H200")[0] == 989
    assert gpu.device_peak("NVIDIA H100 80GB HBM3")[0] == 989
    assert gpu.device_peak("NVIDIA H100 PCIe")[0] == 756
    assert gpu.device_peak("NVIDIA H200 NVL")[0] == 835
    assert gpu.device_peak("NVIDIA A100-SXM4-80GB")[0] == 312
    peak, source = gpu.device_peak("cpu")
    assert peak == gpu.FALLBACK_PEAK[0] and "not in the table" in source


@pytest.mark.slow  # two processes that compile: 30-65 s on 2 cores
def test_smoke_prints_every_figure():
    """The whole command on a CPU (tiny variant, 4 frames of 32 px): every figure finite and
    positive, JAX without TensorFlow, the PyTorch reference in float32 (no CUDA)."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke"], capture_output=True, text=True, env=env, timeout=240
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert lines["device_peak_tflops"].startswith("989")
    assert "device" in lines
    numbers = [
        *(f"tiny_{name}" for name in ("clips_per_s", "tflops_per_s", "mfu", "peak_memory_gib", "compile_s", "forward_tflop_per_clip")),
        *(f"torch_tiny_{name}" for name in ("clips_per_s", "tflops_per_s", "mfu", "peak_memory_gib")),
        "elapsed_s_after_tiny",
        "elapsed_s_after_torch_tiny",
    ]
    for name in numbers:
        value = float(lines[name].split()[0])
        assert math.isfinite(value) and value > 0, (name, lines[name])
    assert lines["tiny_tensorflow_imported"] == "no"
    assert lines["tiny_precision"].startswith("mixed_bfloat16")
    assert "sdpa" in lines["torch_tiny_precision"]
    assert not any(name.endswith("_error") for name in lines), done.stdout
    # the MFU is the counted FLOPs over the peak
    mfu = float(lines["tiny_tflops_per_s"]) / 989
    assert float(lines["tiny_mfu"].split()[0]) == pytest.approx(mfu, rel=0.01)
