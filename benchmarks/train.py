"""Training throughput: the tf.data input pipeline now; the training step of a model later.

1. Input: avemotion.fusion.dataset.make_dataset in training mode (repeat, shuffle, JPEG decoding,
   random resized crop + flip + brightness/contrast, SpecAugment, batching with drop_remainder;
   with --random-erasing P, random erasing of that share of the clips; with --rand-augment N M STD,
   RandAugment)
   reading a temporary TFRecord shard of --clips synthetic clips written as the fuse stage writes
   them (schema.feature_spec: --frames frames of --image-size px, JPEG quality 95), emitting the
   inputs every fusion mode reads (frames, mel, face_sequence, face_present; an early-fusion model
   builds its frames + spectrogram-tiles sequence on the device). input_clips_per_s: clips per
   second over --batches batches of --batch, after --warmup untimed ones (tracing, XLA
   compilation, the shuffle buffer); each batch is fetched to the Python side, as Keras' fit loop
   does.
   Before TensorFlow starts, glibc's malloc is set to reuse freed memory (one arena, no mmap, no
   trimming: see avemotion.fusion.dataset's docstring), as a training process should be;
   --glibc-default measures with glibc's defaults instead (every batch in fresh pages).
   cpu_ms_per_clip (process CPU time per clip, all threads) is steadier than the rate when other
   work shares the cores: on an idle machine, rate ~ cores * 1000 / cpu_ms_per_clip, and
   input_clips_per_s_per_core = 1000 / cpu_ms_per_clip is what each core of a training job feeds.
   Frame content (--content): ``smooth`` (default) is random colour fields upsampled from 14 x 14
   plus noise of 6 levels, about 25 KB per frame like face crops; ``noise`` is uniform random
   pixels, about 60 KB per frame and twice as slow to decode: a worst case.
2. Training steps (train_clips_per_s): the --variant model (default base) in --train-fusion mode
   (default hybrid: VideoMAE on the frames plus the audio and face branches), compiled as a training
   job compiles it (the experiment's losses, AdamW with layer decay, --precision, --xla), trained
   with train_on_batch on batches from the same pipeline: clips per second over --train-batches
   batches after --train-warmup untimed ones. --train-batches 0 skips it. On a 2-core CPU with 24 GiB
   a base step of 8 clips of 16 x 224 in float32 runs out of memory (the attention maps of 12
   layers alone take about 11 GB): use --batch 2 there (about 24 s a step, 0.08 clips/s). On a GPU
   use --precision bf16 --xla.
   The model code is plain Keras 3, so the step also runs under KERAS_BACKEND=jax or torch (a GPU
   machine without TensorFlow): then the input benchmark is skipped (tf.data needs TensorFlow) and
   the steps train on random batches of the model's input shapes, which costs the step the same;
   TensorFlow stays out of such a process (import_without_tensorflow), as on a GPU machine without
   it. benchmarks/gpu.py times the same model (training_model) against a PyTorch reference.
   Measured on one H100 80GB (Keras 3.15.1 on JAX 0.11.2, bf16, --xla, batch 8, hybrid, 16 x 224):
   base 79.6 clips/s, large 40.0 clips/s, after 150-180 s of compilation:
       KERAS_BACKEND=jax python benchmarks/train.py --variant large --precision bf16 --xla --train-batches 12

Uses every core this process may use (tf.data's AUTOTUNE). Other work on the cores skews the
figures: the 1-minute load average is printed before and after. Prints `name: value` lines only.

    .venv/bin/python benchmarks/train.py [--frames 16] [--image-size 224] [--batch 8] [--content noise]
    .venv/bin/python benchmarks/train.py --frames 4 --image-size 32 --clips 8 --batches 4 --variant tiny   # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

# NumPy and TensorFlow are imported inside the functions: their threads must start after
# reuse_freed_memory() has set malloc up.
STDOUT = sys.stdout  # results only; everything else is sent to stderr while the benchmark runs
LABELS = ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]


def report(name: str, value) -> None:
    if isinstance(value, float):
        value = f"{value:.4g}"
    print(f"{name}: {value}", file=STDOUT, flush=True)


def reuse_freed_memory() -> bool:
    """One malloc arena, no mmap, no trimming: freed batches are reused, not faulted in anew.

    Must run before TensorFlow starts threads (each gets an arena at its first allocation).
    Same as MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824.
    """
    import ctypes

    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8  # malloc.h
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return all(libc.mallopt(option, value) for option, value in ((m_arena_max, 1), (m_mmap_max, 0), (m_trim_threshold, 1 << 30)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--clips", type=int, default=64, help="clips in the temporary shard (the stream repeats it)")
    parser.add_argument("--batches", type=int, default=40, help="timed batches")
    parser.add_argument("--warmup", type=int, default=8, help="untimed batches before them")
    parser.add_argument("--content", choices=("smooth", "noise"), default="smooth", help="what the frames show")
    parser.add_argument("--glibc-default", action="store_true", help="keep glibc's malloc settings")
    parser.add_argument("--random-erasing", type=float, default=0.0, help="training.random_erasing (the product recipes: 0.25)")
    parser.add_argument("--crop-scale", type=float, nargs=2, help="training.crop_scale (default its default; the product recipes: 0.08 1.0)")
    parser.add_argument(
        "--rand-augment", type=float, nargs=3, metavar=("OPS", "MAGNITUDE", "STD"), help="training.rand_augment (the product recipes: 4 7 0.5)"
    )
    parser.add_argument("--variant", default="base", help="VideoMAE variant of the training-step benchmark")
    parser.add_argument("--train-fusion", choices=("early", "late", "hybrid"), default="hybrid")
    parser.add_argument("--train-batches", type=int, default=3, help="timed training steps (0: skip)")
    parser.add_argument("--train-warmup", type=int, default=1, help="untimed training steps before them")
    parser.add_argument("--precision", choices=("auto", "float32", "bf16"), default="auto", help="auto: bf16 on a GPU")
    parser.add_argument("--xla", action="store_true", help="compile the training step with XLA")
    return parser.parse_args()


# ---------------------------------------------------------------- a synthetic shard


def synthetic_frames(rng, frames: int, size: int, content: str):
    import numpy as np

    if content == "noise":
        return rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    import tensorflow as tf

    fields = tf.image.resize(rng.random((frames, 14, 14, 3), dtype=np.float32) * 255, [size, size], method="bicubic")
    pixels = fields.numpy() + rng.normal(0, 6, (frames, size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def synthetic_example(rng, index: int, args) -> bytes:
    """One clip as a tf.train.Example with every schema feature."""
    import numpy as np
    import tensorflow as tf

    from avemotion.fusion.schema import AUDIO_STEPS, FACE_FEATURES, MEL_BANDS, MFCC_COEFFICIENTS

    def strings(*values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(values).tolist()))

    def ints(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    frames = synthetic_frames(rng, args.frames, args.image_size, args.content)
    feature = {
        "clip_id": strings(f"clip{index:05d}".encode()),
        "dataset": strings(b"synthetic"),
        "speaker": strings(f"s{index % 8}".encode()),
        "label": strings(LABELS[index % len(LABELS)].encode()),
        "label_index": ints(index % len(LABELS)),
        "fold": ints(index % 5 + 1),
        "audio_missing": ints(0),
        "valence": floats([0.0]),
        "arousal": floats([0.0]),
        "face_ratio": floats([1.0]),
        "frames": strings(*(tf.io.encode_jpeg(frame, quality=95).numpy() for frame in frames)),
        "mel": floats(rng.uniform(-100, -20, MEL_BANDS * AUDIO_STEPS).astype(np.float32)),
        "mfcc": floats(rng.normal(0, 20, MFCC_COEFFICIENTS * AUDIO_STEPS).astype(np.float32)),
        "face_sequence": floats(rng.random(args.frames * FACE_FEATURES, dtype=np.float32)),
        "face_present": floats(np.ones(FACE_FEATURES, np.float32)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_shard(path: Path, args) -> float:
    """Write the shard; return the mean JPEG size of a frame in KB."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    jpeg_bytes = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for index in range(args.clips):
            example = synthetic_example(rng, index, args)
            jpeg_bytes += sum(len(jpeg) for jpeg in tf.train.Example.FromString(example).features.feature["frames"].bytes_list.value)
            writer.write(example)
    return jpeg_bytes / (args.clips * args.frames) / 1e3


# ---------------------------------------------------------------- 1. input


def training_stream(paths: list[str], args, inputs=None):
    """The training input pipeline over the synthetic shard, as a training job builds it."""
    from avemotion.fusion.augment import Augmentation
    from avemotion.fusion.dataset import Training, make_dataset
    from avemotion.fusion.randaugment import RandAugment

    policy = RandAugment(int(args.rand_augment[0]), *args.rand_augment[1:]) if args.rand_augment else None
    crop = {"crop_scale": tuple(args.crop_scale)} if args.crop_scale else {}
    augmentation = Augmentation(erasing=args.random_erasing, rand_augment=policy, **crop)
    return make_dataset(
        paths,
        num_frames=args.frames,
        image_size=args.image_size,
        label_names=LABELS,
        batch_size=args.batch,
        training=Training(augmentation=augmentation),
        inputs=inputs,
    )


def input_clips_per_second(paths: list[str], args) -> tuple[float, float]:
    """Clips per second and process CPU milliseconds per clip of the training input pipeline."""
    batches = iter(training_stream(paths, args))
    for _ in range(args.warmup):
        next(batches)
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.batches):
        next(batches)  # an eager batch: its tensors exist on the host
    clips = args.batches * args.batch
    return clips / (time.perf_counter() - started), (time.process_time() - cpu) * 1e3 / clips


# ---------------------------------------------------------------- 2. training steps


class _NoTensorFlow:
    """A meta-path finder that finds no TensorFlow: ``import tensorflow`` fails as where it is not installed."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r} (this benchmark runs without TensorFlow)", name=name)
        return None


def import_without_tensorflow(*modules: str) -> None:
    """Import ``modules`` with ``import tensorflow`` failing from here on, as on a machine without it
    (the GPU machines have none): the model layer, its losses and optimizer need no TensorFlow (only
    the input pipeline does), and a TensorFlow import among them fails here as it would there."""
    import importlib

    sys.meta_path.insert(0, _NoTensorFlow())
    for module in modules:
        importlib.import_module(module)


def tensorflow_backend() -> bool:
    return os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"


def random_batches(model, batch_size: int, distinct: int = 2):
    """Endless host (inputs, targets) batches of random values in the shapes the model reads and
    predicts: ``distinct`` of them made once and cycled, so the timed steps pay the transfer to the
    device but not the random number generation (200 ms for 8 clips of 16 x 224)."""
    import itertools

    import numpy as np

    from avemotion.model.fusion import task_of

    rng = np.random.default_rng(0)

    def batch():
        inputs = {tensor.name: rng.random((batch_size, *tensor.shape[1:]), dtype=np.float32) for tensor in model.inputs}
        targets = {
            name: rng.integers(0, len(LABELS), batch_size).astype(np.int32)
            if task_of(name) == "emotion"
            else rng.uniform(-1, 1, batch_size).astype(np.float32)
            for name in model.output_names
        }
        return inputs, targets

    return itertools.cycle([batch() for _ in range(distinct)])


def training_model(variant: str, fusion: str, frames: int, image_size: int, precision: str, xla: bool, steps: int):
    """The ``variant`` model in ``fusion`` mode for clips of ``frames`` x ``image_size`` px, compiled
    as a training job compiles it (the experiment's losses, AdamW with layer decay over ``steps``
    steps, Keras' global dtype policy from ``precision``, XLA when ``xla``); returns (model, the
    precision set). benchmarks/gpu.py times the same model."""
    from avemotion.model.fusion import build_fusion_model
    from avemotion.presets import variant_settings
    from avemotion.train.devices import configure_precision
    from avemotion.train.fitting import losses_for
    from avemotion.train.optimizer import build_adamw

    precision = configure_precision({"mixed_precision": precision})
    model = build_fusion_model(fusion, variant_settings(variant), len(LABELS), frames, image_size)
    settings = {
        "fusion": fusion,
        "labels": LABELS,
        "training": {"label_smoothing": 0.1, "aux_loss_weight": 0.3, "va_loss_weight": 1.0},
    }
    losses, loss_weights = losses_for(model, settings)
    optimizer = build_adamw(model, base_lr=1e-4, warmup_steps=1, total_steps=steps + 1, weight_decay=0.05, layer_decay=0.75)
    model.compile(optimizer=optimizer, loss=losses, loss_weights=loss_weights, jit_compile=xla)
    return model, precision


def train_clips_per_second(paths: list[str], args) -> tuple[float, str]:
    """Clips per second of the training step (train_on_batch) and the precision it ran in."""
    from avemotion.model.fusion import model_input_names
    from avemotion.train.fitting import for_model

    model, precision = training_model(
        args.variant, args.train_fusion, args.frames, args.image_size, args.precision, args.xla, args.train_warmup + args.train_batches
    )
    if paths:
        batches = iter(for_model(training_stream(paths, args, model_input_names(model)), model))
    else:
        batches = random_batches(model, args.batch)
    started = time.perf_counter()
    for _ in range(args.train_warmup):
        model.train_on_batch(*next(batches))
    report("train_warmup_s", time.perf_counter() - started)  # mostly compilation
    started = time.perf_counter()
    for _ in range(args.train_batches):
        model.train_on_batch(*next(batches))
    return args.train_batches * args.batch / (time.perf_counter() - started), precision


# ---------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    malloc = "glibc default" if args.glibc_default else ("reuse freed memory" if reuse_freed_memory() else "glibc default (no glibc)")
    with contextlib.redirect_stdout(sys.stderr):
        if not tensorflow_backend():
            # as on a GPU machine without TensorFlow
            import_without_tensorflow("avemotion.model.fusion", "avemotion.train.fitting", "avemotion.train.devices", "avemotion.train.optimizer")
            import keras

            report("keras_backend", f"{keras.backend.backend()} (no tf.data: input benchmark skipped, random training batches)")
            if keras.backend.backend() == "jax":
                import jax

                report("device", jax.devices()[0].device_kind)
            for name in ("frames", "image_size", "batch"):
                report(name, getattr(args, name))
            rate, precision = train_clips_per_second([], args)
            report("train_variant", f"{args.variant} ({args.train_fusion} fusion, {precision})")
            report("train_clips_per_s", rate)
            return
        for name in ("frames", "image_size", "batch", "clips", "batches", "warmup", "content", "random_erasing", "crop_scale", "rand_augment"):
            report(name, getattr(args, name))
        report("malloc", malloc)
        report("cores", len(os.sched_getaffinity(0)))
        report("load_average_1min", f"{os.getloadavg()[0]:.2f}  (of {os.cpu_count()} cores)")
        with tempfile.TemporaryDirectory() as scratch:
            shard = Path(scratch) / "synthetic" / "shards" / "tfrecord" / "0.tfrecord"
            shard.parent.mkdir(parents=True)
            report("jpeg_kb_per_frame", write_shard(shard, args))
            rate, cpu_ms = input_clips_per_second([str(shard)], args)
            report("input_clips_per_s", rate)
            report("cpu_ms_per_clip", cpu_ms)
            # what one core feeds: how many cores a GPU job needs to keep a step of N clips/s fed
            report("input_clips_per_s_per_core", 1000.0 / cpu_ms)
            if args.train_batches:
                rate, precision = train_clips_per_second([str(shard)], args)
                report("train_variant", f"{args.variant} ({args.train_fusion} fusion, {precision})")
                report("train_clips_per_s", rate)
        report("load_average_1min_after", f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
