#!/usr/bin/env bash
# The wheels benchmarks/gpu.py needs on the lent GPU machine and that machine lacks, into .whl/
# (ignored by git; the tool carries it). That machine (/work/.library/device/KINDS.md) has Python
# 3.12, JAX with CUDA, PyTorch, transformers, safetensors, huggingface_hub, h5py, ml-dtypes, rich,
# absl-py, numpy, packaging, opencv, pandas, scipy, matplotlib and no TensorFlow; of what the
# benchmark imports it lacks Keras (pinned as in requirements.txt) and two of Keras' requirements,
# namex and optree (pinned as in .venv). 2.8 MB in all (the limit for carried files is 64 MiB).
#
# Run here, in the repository's root:   benchmarks/gpu_wheels.sh
# Then the device command (the run tool's `command`, with carry [".whl"]):
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; export KERAS_BACKEND=jax PYTHONUNBUFFERED=1; nvidia-smi -L; python3 benchmarks/gpu.py 2>$OUT/stderr.txt | tee $OUT/stdout.txt; tail -c 3000 $OUT/stderr.txt
#
# with timeout_s 330 (the benchmark stops itself at its --time-limit-s of 285 s). The results are
# stdout's `name: value` lines; XLA's and the frameworks' logs go to stderr.txt, whose end follows.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .gitignore || echo '/.whl/' >>.gitignore
PYTHON=${PYTHON:-.venv/bin/python}
mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    keras==3.15.1 namex==0.1.0 optree==0.20.0
ls -l .whl
du -ch .whl/*.whl | tail -1
