"""One benchmark command for a GPU (issue 21): the fusion model's training step on JAX against the
PyTorch reference, for each VideoMAE variant, in one run of under 5 minutes.

For each of --variants (default base,large), each part in its own process (its own peak-memory
figures; JAX and PyTorch never hold each other's memory pools):

1. ``torch_<variant>_*``, the anchor: transformers' VideoMAEForVideoClassification (a VideoMAEConfig
   of the variant's sizes, random weights, nothing downloaded; attn_implementation="sdpa"), trained
   with AdamW (fused) on float32 master weights under torch.autocast(bfloat16), on random clips of
   the same batch, frames and size. Eager PyTorch, no torch.compile. Without CUDA (--smoke on a
   CPU) it runs in float32.
2. ``<variant>_*``: the hybrid fusion model (VideoMAE on the frames + the audio CNN + the face
   branch), built and compiled as benchmarks/train.py's training-step benchmark builds it
   (benchmarks.train.training_model: the experiment's losses, AdamW with layer decay), in
   mixed_bfloat16 with XLA, on Keras' JAX backend. Keras' own training step (model.train_step,
   jitted with the state donated, as its JAX trainer's make_train_function does) is compiled ahead
   of the first step, then run --warmup times and --steps times back to back on the device state
   (as fit() runs it: no host synchronisation between steps), on two random batches of the model's
   input shapes placed on the device once (the timed steps move no data from the host).

All parts start at once and import side by side; the device goes to one at a time: each PyTorch
reference builds its model and runs (seconds), then the JAX parts build and compile side by side
(XLA's compilation, minutes on a GPU, is host work but for its autotuning, which times kernels on
the device: --serial-compile compiles one after the other) and run one after the other.
--time-limit-s (default 285 s) bounds the whole command: a part still running then is stopped and
reported as ``<part>_error``, and what was printed stands.

The JAX processes never import TensorFlow (the GPU machine has none; avemotion.model.fusion's
imports name it at module level): benchmarks.train.import_without_tensorflow, and
``<variant>_tensorflow_imported: no`` says so.

Printed, ``name: value`` lines only (a value may be followed by a note in parentheses):
    device, device_peak_tflops   the GPU (nvidia-smi) and its dense bf16 peak with its source (PEAKS;
                                 elsewhere, a CPU too, 989 and says so)
    <variant>_forward_tflop_per_clip  the VideoMAE backbone's forward FLOPs for one clip, counted
                                 (videomae_forward_macs; the audio CNN, 0.08 GMAC, and the face
                                 branch are left out: under 0.05 % of base)
    <variant>_clips_per_s, _tflops_per_s, _mfu   a training step counted as 3 forward passes, as
                                 issue 21 counts it: tflops = 3 x forward x clips/s, mfu = tflops /
                                 peak. XLA's own count of the whole step (cost_analysis, compiled
                                 for a CPU at 16 x 224) is 1.4 % (base) and 1.3 % (large) above it
    <variant>_peak_memory_gib    jax memory_stats()['peak_bytes_in_use'] (the host's max RSS where
                                 the device reports none: a CPU)
    <variant>_compile_s          tracing + XLA compilation + what the warm-up steps took over as
                                 many steady ones; _compile_parts_s splits it, _warmup_steps_s
                                 gives each, _build_s is Keras building the model (not counted)
    torch_<variant>_clips_per_s, _tflops_per_s, _mfu, _peak_memory_gib (torch.cuda.max_memory_allocated)
    elapsed_s_after_<part>, elapsed_s   the running total of the whole command

Default batch 16 for base and 8 for large (--batch N sets both), sized to fit an H200's 141 GB
with room to spare, since a lent machine gives one or two tries: XLA compiling the whole training
step at 16 x 224 for a CPU (attention written out, the most the step can take) assigns base 5.1 GiB
of temporaries a clip (compiled.memory_analysis(): 5.6 and 10.7 GiB at batches 1 and 2; 82 GiB at
16 clips) and large 15 GiB (at batch 1); large ran at 8 clips on an 80 GB H100 (README,
Throughput), and on a GPU the fused attention keeps the attention matrices out of memory. Bigger
batches would not make the matrix products bigger where it counts: 16 and 8 clips are 25,088 and
12,544 token rows a step.

    benchmarks/gpu_wheels.sh     # here: the wheels the GPU machine lacks, into .whl/ (its header: the device command)
    KERAS_BACKEND=jax python benchmarks/gpu.py [--variants base,large] [--batch N] [--steps 10]
    .venv/bin/python benchmarks/gpu.py --smoke   # CPU: tiny variant, 4 frames of 32 px, batch 2, 2 + 2 steps
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # avemotion and benchmarks.train, also where avemotion is not installed

FUSION = "hybrid"
DEFAULT_BATCH = {"base": 16, "large": 8}
# Dense bf16 tensor-core peaks in TFLOP/s by device name (vendors' datasheets), most specific first.
PEAKS = (
    ("H100 PCIe", 756.0, "NVIDIA H100 PCIe datasheet, dense bf16"),
    ("H100 NVL", 835.0, "NVIDIA H100 NVL datasheet, dense bf16"),
    ("H100 SXM", 989.0, "NVIDIA H100 SXM datasheet, dense bf16"),
    ("H100 80GB HBM3", 989.0, "NVIDIA H100 SXM datasheet, dense bf16"),
    ("H200 NVL", 835.0, "NVIDIA H200 NVL datasheet, dense bf16"),
    ("H200", 989.0, "NVIDIA H200 SXM datasheet, dense bf16 (as the H100 SXM)"),
    ("A100", 312.0, "NVIDIA A100 datasheet, dense bf16"),
)
FALLBACK_PEAK = (989.0, "not in the table: assumed 989, the H100/H200 SXM dense bf16 peak that issue 21's MFU goal is against")
STDOUT = sys.stdout


def report(name: str, value, note: str = "") -> None:
    if isinstance(value, float):
        value = f"{value:.4g}"
    print(f"{name}: {value}" + (f"  ({note})" if note else ""), file=STDOUT, flush=True)


# ---------------------------------------------------------------- FLOPs and the device's peak


def videomae_forward_macs(settings: dict, frames: int, image_size: int) -> int:
    """Multiply-accumulates of one clip's forward pass through a VideoMAE backbone (``settings``: a
    variant's, avemotion.presets): the tubelet embedding, and in each layer the qkv and output
    projections (4 d^2 a token), the MLP (2 d x intermediate a token) and the attention's two
    products (QK^T and AV, 2 N^2 d). Normalisations, biases, softmax and the pooled head are left
    out (well under 1 %). 16 x 224: base 180.3 G, large 596.8 G (the issue's 180 and 597)."""
    hidden, layers, intermediate = settings["hidden_size"], settings["num_layers"], settings["intermediate_size"]
    patch, tubelet = settings["patch_size"], settings["tubelet_size"]
    tokens = (frames // tubelet) * (image_size // patch) ** 2
    embedding = tokens * tubelet * patch * patch * 3 * hidden
    layer = tokens * (4 * hidden * hidden + 2 * hidden * intermediate) + 2 * tokens * tokens * hidden
    return embedding + layers * layer


def forward_tflop(variant: str, frames: int, image_size: int) -> float:
    """Forward TFLOP of one clip (2 FLOPs a multiply-accumulate)."""
    from avemotion.presets import variant_settings

    return 2 * videomae_forward_macs(variant_settings(variant), frames, image_size) / 1e12


def device_peak(name: str) -> tuple[float, str]:
    """(dense bf16 peak TFLOP/s, where the figure comes from) for a device name as nvidia-smi, JAX's
    device_kind or torch.cuda.get_device_name give it."""
    for key, peak, source in PEAKS:
        if key.lower() in name.lower():
            return peak, source
    return FALLBACK_PEAK


def gpu_name() -> str | None:
    """The first GPU's name from nvidia-smi, or None where there is none."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return None
    return names[0].strip() or None


def host_peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# ---------------------------------------------------------------- the JAX part


def signal_and_wait(args, token: str) -> None:
    """Tell the command this process reached ``token`` and wait for its word to go on (the command
    gives the device to one process at a time); standalone (no --wait), go on at once."""
    if args.wait:
        print(f"#{token}", file=STDOUT, flush=True)
        if not sys.stdin.readline():
            raise SystemExit("the command is gone")


def jax_part(args, variant: str) -> None:
    from benchmarks.train import import_without_tensorflow

    import_without_tensorflow("avemotion.model.fusion", "avemotion.train.fitting", "avemotion.train.devices", "avemotion.train.optimizer")
    import itertools

    import jax
    import keras

    from benchmarks.train import random_batches, training_model

    if keras.backend.backend() != "jax":
        raise SystemExit(f"Keras runs on {keras.backend.backend()}: set KERAS_BACKEND=jax")
    device = jax.devices()[0]
    report(f"{variant}_jax_device", f"{device.device_kind} ({device.platform}, jax {jax.__version__}, keras {keras.__version__})")
    if args.expect_gpu and device.platform != "gpu":
        raise SystemExit("nvidia-smi shows a GPU but JAX computes on its CPU: is jax's CUDA plugin installed?")
    signal_and_wait(args, "imported")
    batch = args.batch or DEFAULT_BATCH.get(variant, 8)
    started = time.perf_counter()
    model, precision = training_model(variant, FUSION, args.frames, args.image_size, "bf16", True, args.warmup + args.steps)
    # distinct random batches made once, on the device: the timed steps move no data from the host
    data = [(*jax.device_put(pair), None) for pair in itertools.islice(random_batches(model, batch), 2)]
    model._symbolic_build(data_batch=data[0])  # as train_on_batch: the model, its metrics, the optimizer's variables
    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True, optimizer_variables=True, metrics_variables=True)
    build_s = time.perf_counter() - started
    # Keras' training step jitted as its JAX trainer jits it (make_train_function), compiled ahead of
    # the first step so that the command can compile the variants side by side
    started = time.perf_counter()
    lowered = jax.jit(model.train_step, donate_argnums=0).lower(state, data[0])
    trace_s = time.perf_counter() - started
    signal_and_wait(args, "traced")
    started = time.perf_counter()
    step = lowered.compile()
    xla_s = time.perf_counter() - started
    signal_and_wait(args, "compiled")
    warmup = []
    for index in range(args.warmup):
        started = time.perf_counter()
        logs, state = step(state, data[index % 2])
        jax.block_until_ready((logs, state))
        warmup.append(time.perf_counter() - started)
    started = time.perf_counter()
    for index in range(args.steps):
        logs, state = step(state, data[index % 2])  # back to back, as fit() runs them: no host sync
    jax.block_until_ready((logs, state))
    step_s = (time.perf_counter() - started) / args.steps
    stats = device.memory_stats() or {}
    clips_per_s = batch / step_s
    tflop = forward_tflop(variant, args.frames, args.image_size)
    report(f"{variant}_precision", f"{keras.mixed_precision.global_policy().name} ({precision}, XLA, {FUSION} fusion)")
    report(f"{variant}_batch", batch)
    report(f"{variant}_forward_tflop_per_clip", tflop, "VideoMAE backbone only")
    report(f"{variant}_clips_per_s", clips_per_s)
    report(f"{variant}_tflops_per_s", 3 * tflop * clips_per_s)
    report(f"{variant}_mfu", 3 * tflop * clips_per_s / args.peak_tflops, f"of {args.peak_tflops:g} TFLOP/s")
    if "peak_bytes_in_use" in stats:
        report(f"{variant}_peak_memory_gib", stats["peak_bytes_in_use"] / 2**30, "jax peak_bytes_in_use")
    else:
        report(f"{variant}_peak_memory_gib", host_peak_gib(), "host max RSS: the device reports no memory_stats")
    first_steps = sum(warmup) - len(warmup) * step_s
    report(f"{variant}_compile_s", trace_s + xla_s + first_steps, "tracing + XLA + the warm-up steps minus as many steady ones")
    report(f"{variant}_compile_parts_s", f"trace {trace_s:.3g}, xla {xla_s:.3g}, first steps {first_steps:.3g}")
    report(f"{variant}_warmup_steps_s", ", ".join(f"{seconds:.3g}" for seconds in warmup))
    report(f"{variant}_build_s", build_s, "Keras builds the model and the optimizer's variables")
    report(f"{variant}_tensorflow_imported", "yes" if "tensorflow" in sys.modules else "no")


# ---------------------------------------------------------------- the PyTorch reference


def torch_part(args, variant: str) -> None:
    import torch
    from transformers import AutoModelForVideoClassification

    from benchmarks.model import reference_config

    cuda = torch.cuda.is_available()
    if args.expect_gpu and not cuda:
        raise SystemExit("nvidia-smi shows a GPU but torch sees no CUDA device")
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name() if cuda else "cpu"
    import transformers

    report(f"torch_{variant}_device", f"{name} (torch {torch.__version__}, transformers {transformers.__version__})")
    signal_and_wait(args, "imported")
    config = reference_config(variant, args.frames, args.image_size, num_labels=6)
    torch.manual_seed(0)
    model = AutoModelForVideoClassification.from_config(config, attn_implementation="sdpa").to(device)  # float32 master weights
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=cuda)
    batch = args.batch or DEFAULT_BATCH.get(variant, 8)
    clips = [torch.rand(batch, args.frames, 3, args.image_size, args.image_size, device=device) for _ in range(2)]
    labels = torch.randint(0, 6, (batch,), device=device)

    def step(index: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(pixel_values=clips[index % 2], labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    signal_and_wait(args, "ready")
    started = time.perf_counter()
    for index in range(args.warmup):
        step(index)
    synchronize()
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    for index in range(args.steps):
        step(index)
    synchronize()
    clips_per_s = batch * args.steps / (time.perf_counter() - started)
    tflop = forward_tflop(variant, args.frames, args.image_size)
    report(f"torch_{variant}_precision", f"{'bf16 autocast' if cuda else 'float32 (no CUDA)'}, attention {model.config._attn_implementation}")
    report(f"torch_{variant}_batch", batch)
    report(f"torch_{variant}_clips_per_s", clips_per_s)
    report(f"torch_{variant}_tflops_per_s", 3 * tflop * clips_per_s)
    report(f"torch_{variant}_mfu", 3 * tflop * clips_per_s / args.peak_tflops, f"of {args.peak_tflops:g} TFLOP/s")
    if cuda:
        report(f"torch_{variant}_peak_memory_gib", torch.cuda.max_memory_allocated() / 2**30, "torch.cuda.max_memory_allocated")
    else:
        report(f"torch_{variant}_peak_memory_gib", host_peak_gib(), "host max RSS: no CUDA device")
    report(f"torch_{variant}_warmup_s", warmup_s)


# ---------------------------------------------------------------- the command


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="base,large", help="VideoMAE variants, comma-separated")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=0, help="clips a step (0: 16 for base, 8 for large and the rest)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (the first compiles)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--parts", default="torch,jax", help="torch, jax or both (the references run first)")
    parser.add_argument("--serial-compile", action="store_true", help="compile the JAX parts one after the other")
    parser.add_argument("--time-limit-s", type=float, default=285.0, help="for the whole command")
    parser.add_argument("--smoke", action="store_true", help="a CPU check: tiny variant, 4 frames of 32 px, batch 2, 2 + 2 steps")
    # set by the command for the processes it starts
    parser.add_argument("--part", choices=("jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--peak-tflops", type=float, default=FALLBACK_PEAK[0], help=argparse.SUPPRESS)
    parser.add_argument("--expect-gpu", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--wait", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:  # new defaults; what the command line gives stands
        parser.set_defaults(variants="tiny", frames=4, image_size=32, batch=2, warmup=2, steps=2)
        args = parser.parse_args(argv)
    return args


def child_argv(args, part: str, variant: str, peak: float, gpu: bool) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--part", part, "--variant", variant, "--peak-tflops", str(peak), "--wait"]
    argv += ["--frames", str(args.frames), "--image-size", str(args.image_size), "--batch", str(args.batch)]
    argv += ["--warmup", str(args.warmup), "--steps", str(args.steps)]
    return argv + (["--expect-gpu"] if gpu else [])


class Part:
    """One benchmark process: what it has signalled (#traced, #compiled, #ready) and whether it ended.
    Its result lines go straight to stdout as they come."""

    def __init__(self, label: str, argv: list[str], env: dict, events):
        import threading

        self.label, self.signals, self.code = label, set(), None
        self.process = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        threading.Thread(target=self._read, args=(events,), daemon=True).start()

    def _read(self, events) -> None:
        for line in self.process.stdout:
            events.put((self, line.rstrip("\n")))
        events.put((self, None))

    def tell(self) -> None:
        try:
            self.process.stdin.write("go\n")
            self.process.stdin.flush()
        except OSError:  # it has ended
            pass

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def run_parts(args) -> int:
    """Start every part at once (they import side by side); give the device to one at a time: each
    PyTorch reference in turn builds its model and runs, then the JAX parts build and compile (side
    by side, or one after the other with --serial-compile: XLA's compilation is host work but for
    its autotuning, which times kernels on the device) and run one after the other."""
    import queue

    started = time.perf_counter()
    deadline = started + args.time_limit_s
    gpu = gpu_name()
    peak, source = device_peak(gpu or "cpu")
    report("device", gpu or "cpu (no GPU: nvidia-smi shows none)")
    report("device_peak_tflops", peak, source)
    report("frames", args.frames)
    report("image_size", args.image_size)
    report("steps", f"{args.warmup} warm-up + {args.steps} timed")
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "PYTHONUNBUFFERED": "1",
        "USE_TF": "0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # the parts share the device's memory while they wait
    }
    variants, kinds = args.variants.split(","), args.parts.split(",")
    events = queue.Queue()
    order = [("torch", variant) for variant in variants if "torch" in kinds] + [("jax", variant) for variant in variants if "jax" in kinds]
    parts = [
        Part(variant if kind == "jax" else f"torch_{variant}", child_argv(args, kind, variant, peak, gpu is not None), env, events)
        for kind, variant in order
    ]
    failures = []

    def wait_for(part: Part, signal_name: str | None) -> bool:
        """Relay lines until ``part`` signals ``signal_name`` (None: until it ends); False if it ended
        first or the time limit came."""
        while not (signal_name in part.signals if signal_name else part.code is not None):
            if part.code is not None:
                return False
            try:
                source, line = events.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                return False
            if line is None:
                source.code = source.process.wait()
            elif line.startswith("#"):
                source.signals.add(line[1:])
            else:
                print(line, file=STDOUT, flush=True)
        return True

    def fail(part: Part, why: str) -> None:
        part.stop()
        failures.append(part)
        report(f"{part.label}_error", why)

    def ended(part: Part) -> None:
        if not wait_for(part, None):
            fail(part, f"stopped at the --time-limit-s of {args.time_limit_s:g} s")
        elif part.code:
            failures.append(part)
            report(f"{part.label}_error", f"exit status {part.code} (its stderr above says why)")
        report(f"elapsed_s_after_{part.label}", time.perf_counter() - started)

    def step(part: Part, signal_name: str) -> bool:
        """Wait for ``part`` to reach ``signal_name`` and let it go on; False where it failed."""
        if part in failures:
            return False
        if wait_for(part, signal_name):
            part.tell()
            return True
        if part.code is None:
            fail(part, f"stopped at the --time-limit-s of {args.time_limit_s:g} s")
        else:
            ended(part)
        return False

    try:
        # each process imports at once; it builds its model only when the device is its own (model
        # building computes there), except that the JAX parts build and compile side by side
        for part in parts[: len(parts) - sum(kind == "jax" for kind, _ in order)]:  # the references
            if step(part, "imported") and step(part, "ready"):
                ended(part)
        jax_parts = [part for part in parts if not part.label.startswith("torch_")]
        for part in jax_parts:  # build
            step(part, "imported")
        for part in jax_parts:  # compile
            if step(part, "traced") and args.serial_compile:
                wait_for(part, "compiled")
        for part in jax_parts:  # run
            if step(part, "compiled"):
                ended(part)
    finally:
        for part in parts:
            part.stop()
    report("elapsed_s", time.perf_counter() - started)
    return 1 if failures else 0


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.part:
        (jax_part if args.part == "jax" else torch_part)(args, args.variant)
        return
    sys.exit(run_parts(args))


if __name__ == "__main__":
    main()
