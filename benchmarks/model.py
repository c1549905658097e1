"""VideoMAE throughput: avemotion's Keras 3 model against the transformers PyTorch reference, same run.

Both sides are the same network (the variant's registry settings, a 400-class head, random weights:
speed does not depend on them; the parameter counts are asserted equal) and get the same random
clips: RGB in [0, 1] shaped (B, T, H, W, 3) for ours, which standardises inside the model, and the
same clips standardised and laid out (B, T, 3, H, W) for transformers, done once outside the timing.
Each figure is clips per second over the median of --iterations timed steps, after --warmup untimed
ones (the first call traces and compiles); every step waits for its result (GPU work is asynchronous).
TensorFlow and torch use the same number of threads (--threads, default: the cores this process may use).

1. Forward, on --device (default cpu), float32, batch --batch:
   - ours three ways: `model(x, training=False)` op by op (eager), inside `tf.function` (graph) and
     inside `tf.function(jit_compile=True)` (xla); the fastest is ours_forward_clips_per_s
     (ours_forward_mode names it), each is printed as ours_{eager,graph,xla}_clips_per_s;
   - transformers: eval mode under `torch.no_grad()`, SDPA attention, eager PyTorch (no torch.compile).
2. Training steps (--train; by default only when TensorFlow sees a GPU, then on --train-device, default
   that GPU): bf16 mixed precision, cross-entropy on the logits, AdamW (same settings both sides);
   ours under the mixed_bfloat16 policy in one `tf.function(jit_compile=True)` step, transformers
   under `torch.autocast(device_type, dtype=torch.bfloat16)`.

Ratios are ours / torch in clips per second: > 1 means avemotion's model is faster, 1.25 means it
processes 25 % more clips per second. On a GPU, TensorFlow's TF32 setting is copied to torch.
Prints `name: value` lines only (anything else goes to stderr).

    .venv/bin/python benchmarks/model.py [--batch 2] [--iterations 3] [--train]
    .venv/bin/python benchmarks/model.py --variant tiny --frames 4 --image-size 64 --iterations 2   # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import time

import numpy as np

NUM_CLASSES = 400
LEARNING_RATE = 1e-4
WEIGHT_DECAY = 0.05
EPSILON = 1e-8
STDOUT = sys.stdout  # results only; everything else is sent to stderr while the benchmark runs


def report(name: str, value) -> None:
    if isinstance(value, float):
        value = f"{value:.4g}"
    print(f"{name}: {value}", file=STDOUT, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="base", help="registered VideoMAE variant (tiny, small, base, large, huge)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them (the first traces and compiles)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="CPU threads for both frameworks")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where the forward benchmark runs")
    parser.add_argument("--train", action=argparse.BooleanOptionalAction, default=None, help="default: only with a GPU")
    parser.add_argument("--train-device", choices=("cpu", "gpu"), help="default: gpu when TensorFlow sees one")
    return parser.parse_args()


# ---------------------------------------------------------------- setup


def configure_tensorflow(threads: int) -> list:
    """Before TensorFlow touches a device: memory growth (torch shares the GPU) and the thread count."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    return gpus


def configure_torch(threads: int) -> None:
    import tensorflow as tf
    import torch

    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = tf.config.experimental.tensor_float_32_execution_enabled()


def tf_device(device: str) -> str:
    return "/GPU:0" if device == "gpu" else "/CPU:0"


def torch_device(device: str) -> str:
    return "cuda" if device == "gpu" else "cpu"


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def release_memory() -> None:
    import keras
    import torch

    keras.backend.clear_session()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def random_batch(args) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    clips = rng.random((args.batch, args.frames, args.image_size, args.image_size, 3), dtype=np.float32)
    labels = rng.integers(0, NUM_CLASSES, args.batch).astype(np.int64)
    return clips, labels


def torch_pixels(clips: np.ndarray, settings: dict) -> np.ndarray:
    """transformers' input: the clips standardised with the variant's mean/std, (B, T, 3, H, W)."""
    mean = np.asarray(settings["image_mean"], np.float32)
    std = np.asarray(settings["image_std"], np.float32)
    return np.ascontiguousarray(((clips - mean) / std).transpose(0, 1, 4, 2, 3))


def clips_per_second(step, batch: int, warmup: int, iterations: int) -> float:
    """Batch size over the median time of one step; ``step`` returns only when its work is done."""
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(iterations):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    return batch / statistics.median(seconds)


# ---------------------------------------------------------------- the two models


def our_model(args):
    from avemotion.model import VideoMAEBackbone, VideoMAEClassifier

    backbone = VideoMAEBackbone.from_variant(args.variant, num_frames=args.frames, image_size=args.image_size)
    return VideoMAEClassifier(backbone, num_classes=NUM_CLASSES)


def reference_config(variant: str, frames: int, image_size: int, num_labels: int = NUM_CLASSES, **options):
    """transformers' VideoMAEConfig of the variant's architecture (mean pooling, q/v biases);
    ``options`` go to VideoMAEConfig too."""
    from transformers import VideoMAEConfig

    from avemotion.model import variant_settings

    settings = variant_settings(variant)
    return VideoMAEConfig(
        hidden_size=settings["hidden_size"],
        num_hidden_layers=settings["num_layers"],
        num_attention_heads=settings["num_heads"],
        intermediate_size=settings["intermediate_size"],
        patch_size=settings["patch_size"],
        tubelet_size=settings["tubelet_size"],
        num_frames=frames,
        image_size=image_size,
        qv_bias=settings["qkv_bias"],
        layer_norm_eps=settings["layer_norm_eps"],
        use_mean_pooling=True,
        num_labels=num_labels,
        **options,
    )


def reference_model(args):
    """transformers' VideoMAEForVideoClassification of reference_config, with SDPA attention."""
    from transformers import VideoMAEForVideoClassification

    return VideoMAEForVideoClassification(reference_config(args.variant, args.frames, args.image_size, attn_implementation="sdpa"))


# ---------------------------------------------------------------- forward


def ours_forward(args, clips: np.ndarray, device: str) -> tuple[dict[str, float], int]:
    """Clips per second of each way of calling our model, and its parameter count."""
    import tensorflow as tf

    with tf.device(tf_device(device)):
        model = our_model(args)
        x = tf.constant(clips)
        calls = {
            "eager": lambda clips: model(clips, training=False),
            "graph": tf.function(lambda clips: model(clips, training=False), jit_compile=False),
            "xla": tf.function(lambda clips: model(clips, training=False), jit_compile=True),
        }
        rates = {
            mode: clips_per_second(lambda: call(x)["logits"].numpy(), args.batch, args.warmup, args.iterations)
            for mode, call in calls.items()
        }
    parameters = model.count_params()
    del model, calls
    release_memory()
    return rates, parameters


def torch_forward(args, pixels: np.ndarray, device: str) -> tuple[float, int]:
    import torch

    model = reference_model(args).to(device).eval()
    x = torch.from_numpy(pixels).to(device)

    def step():
        with torch.no_grad():
            model(pixel_values=x).logits
        synchronize(device)

    rate = clips_per_second(step, args.batch, args.warmup, args.iterations)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    del model
    release_memory()
    return rate, parameters


# ---------------------------------------------------------------- training


def ours_train(args, clips: np.ndarray, labels: np.ndarray, device: str) -> float:
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        with tf.device(tf_device(device)):
            model = our_model(args)
            optimizer = keras.optimizers.AdamW(learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY, epsilon=EPSILON)
            optimizer.build(model.trainable_variables)
            cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            x, y = tf.constant(clips), tf.constant(labels)

            @tf.function(jit_compile=True)
            def train_step(x, y):
                with tf.GradientTape() as tape:
                    loss = cross_entropy(y, model(x, training=True)["logits"])
                gradients = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(gradients, model.trainable_variables))
                return loss

            rate = clips_per_second(lambda: train_step(x, y).numpy(), args.batch, args.warmup, args.iterations)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    del model, optimizer, train_step
    release_memory()
    return rate


def torch_train(args, pixels: np.ndarray, labels: np.ndarray, device: str) -> float:
    import torch

    model = reference_model(args).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY, eps=EPSILON)
    x, y = torch.from_numpy(pixels).to(device), torch.from_numpy(labels).to(device)

    def step():
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            logits = model(pixel_values=x).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)

    rate = clips_per_second(step, args.batch, args.warmup, args.iterations)
    del model, optimizer
    release_memory()
    return rate


# ---------------------------------------------------------------- main


def device_name(device: str, gpus: list) -> str:
    import tensorflow as tf

    if device == "cpu":
        return "cpu"
    return "gpu (" + tf.config.experimental.get_device_details(gpus[0]).get("device_name", "unknown") + ")"


def benchmark_forward(args, gpus: list, clips: np.ndarray, pixels: np.ndarray) -> None:
    import torch

    if args.device == "gpu" and not (gpus and torch.cuda.is_available()):
        raise SystemExit("--device gpu needs a GPU that both TensorFlow and torch see")
    report("device", device_name(args.device, gpus))
    ours, our_parameters = ours_forward(args, clips, args.device)
    reference, reference_parameters = torch_forward(args, pixels, torch_device(args.device))
    assert our_parameters == reference_parameters, f"parameters: ours {our_parameters}, torch {reference_parameters}"
    report(f"{args.variant}_parameters", our_parameters)
    for mode, rate in ours.items():
        report(f"ours_{mode}_clips_per_s", rate)
    fastest = max(ours, key=ours.get)
    report("ours_forward_mode", fastest)
    report("ours_forward_clips_per_s", ours[fastest])
    report("torch_forward_clips_per_s", reference)
    report("forward_ratio_ours_vs_torch", f"{ours[fastest] / reference:.3f}  (> 1: ours is faster)")


def benchmark_training(args, gpus: list, clips: np.ndarray, pixels: np.ndarray, labels: np.ndarray) -> None:
    import torch

    train = bool(gpus) if args.train is None else args.train
    if not train:
        report("train_benchmark", "skipped (no GPU)" if not gpus else "skipped (--no-train)")
        return
    device = args.train_device or ("gpu" if gpus else "cpu")
    if device == "gpu" and not gpus:
        raise SystemExit("--train-device gpu, but TensorFlow sees no GPU")
    report("train_device", device_name(device, gpus))
    report("train_precision", "bf16 mixed")
    ours = ours_train(args, clips, labels, device)
    report("ours_train_clips_per_s", ours)
    if device == "gpu" and not torch.cuda.is_available():
        report("torch_train_clips_per_s", "skipped (this torch has no CUDA)")
        return
    reference = torch_train(args, pixels, labels, torch_device(device))
    report("torch_train_clips_per_s", reference)
    report("train_ratio_ours_vs_torch", f"{ours / reference:.3f}  (> 1: ours is faster)")


def main() -> None:
    args = parse_args()
    with contextlib.redirect_stdout(sys.stderr):
        gpus = configure_tensorflow(args.threads)
        configure_torch(args.threads)
        from avemotion.model import variant_settings

        settings = variant_settings(args.variant)
        for name in ("variant", "frames", "image_size", "batch", "iterations", "warmup", "threads"):
            report(name, getattr(args, name))
        # Other work on the cores skews CPU figures, torch's OpenMP barriers worst: check this is ~0.
        report("load_average_1min", f"{os.getloadavg()[0]:.2f}  (of {os.cpu_count()} cores)")
        clips, labels = random_batch(args)
        pixels = torch_pixels(clips, settings)
        benchmark_forward(args, gpus, clips, pixels)
        benchmark_training(args, gpus, clips, pixels, labels)


if __name__ == "__main__":
    main()
