"""Command-line entry point: ``avemotion <command>``."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

from avemotion.config import DATASET_ALIASES, dataset_defaults
from avemotion.datasets import READERS, check_layout, index_dataset, speaker_ids, write_index
from avemotion.face.openface import OpenFaceError
from avemotion.gpus import use_gpus
from avemotion.inference import check_output, check_workdir, format_table, predict_files, write_predictions
from avemotion.layout import MANIFEST, QUARANTINE
from avemotion.logs import native_stderr_filtered
from avemotion.model.checkpoints import detect_format
from avemotion.model.whisper_checkpoint import is_whisper_checkpoint

log = logging.getLogger(__name__)

# `avemotion index --out` writes what the workflow's index and quarantine files hold, named alike
INDEX_FILES = (Path(MANIFEST).name, Path(QUARANTINE).name)


def _index(args) -> int:
    out = Path(args.out)
    manifest_path, quarantine_path = (out / name for name in INDEX_FILES)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file; --out names the folder for {INDEX_FILES[0]} and {INDEX_FILES[1]}")
    dataset = DATASET_ALIASES.get(args.dataset, args.dataset)
    # The workflow's settings for this corpus (its chunk count above all, which places clips in chunks)
    settings = dataset_defaults(dataset) | ({"chunks": args.chunks} if args.chunks else {})
    check_layout(dataset, args.root)  # another corpus' root, or an empty one, says so instead of indexing nothing
    manifest, quarantine = index_dataset(dataset, args.root, settings)
    write_index(manifest, quarantine, manifest_path, quarantine_path)
    speakers = f"{manifest['speaker'].nunique()} speakers" if speaker_ids(dataset) else "no speaker ids"
    print(f"{dataset}: {len(manifest)} clips, {speakers}, {len(quarantine)} quarantined (chunks: {settings['chunks']})")
    if len(manifest):
        print(manifest["label"].replace("", "(no label)").value_counts().to_string())
    for reason, count in quarantine["reason"].value_counts().items():
        print(f"quarantined {count}: {reason}")
    print(f"wrote {manifest_path} and {quarantine_path}")
    return 0


def _convert_weights(args) -> int:
    # on CPUs (a copy of arrays; a GPU would only add CUDA's start-up), without TensorFlow's chatter
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    gpus = use_gpus(0) if not {"tensorflow", "jax"} & set(sys.modules) else None
    with native_stderr_filtered(startup_noise(os.environ["TF_CPP_MIN_LOG_LEVEL"], gpus)):
        return _converted(args)


def _converted(args) -> int:
    if is_whisper_checkpoint(Path(args.source)):  # before detect_format, which refuses Whisper's files
        return _convert_whisper(args)
    from avemotion.model.weights import convert_weights  # Keras: the other commands start without TensorFlow

    kind = detect_format(Path(args.source))
    model = convert_weights(args.source, args.destination, args.num_frames, args.image_size, args.num_heads)
    backbone = model.backbone
    head = f"{model.num_classes}-class head" if model.num_classes else "no head (features only)"
    print(f"read {args.source} ({kind}): {backbone.num_layers} layers, width {backbone.hidden_size}, "
          f"{backbone.num_heads} heads, {model.count_params():,} parameters, {head}")
    print(f"wrote {args.destination} (built for {backbone.num_frames} frames of {backbone.image_size} px; "
          "any other count or size loads too)")
    return 0


def _convert_whisper(args) -> int:
    from avemotion.model.whisper_weights import convert_whisper_weights  # Keras, as above

    backbone = convert_whisper_weights(args.source, args.destination)
    print(f"read {args.source} (Whisper encoder): {backbone.encoder_layers} layers, width {backbone.d_model}, "
          f"{backbone.encoder_attention_heads} heads, {backbone.num_mel_bins} Mel bins, {backbone.count_params():,} parameters")
    print(f"wrote {args.destination} (any number of frames up to {2 * backbone.max_source_positions} loads)")
    return 0


# Lines of TensorFlow's logging (absl's format: severity, date, time, thread, source]), the line absl
# writes before them when it is not initialised, CUDA's failed start, and what TensorFlow Lite prints
# for the first model it prepares (at INFO, past any level).
ABSL_SEVERITIES = "IWEF"
ABSL_LINE = r"[{severities}]\d{{4}} [\d:.]+ +\d+ [^\]]+\] "
ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
CUDA_FAILED = "failed call to cuInit"
XNNPACK_NOTICE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def startup_noise(level_setting: str | None, gpus: list[str] | None) -> str:
    """A pattern of the lines predict leaves out of its output: TensorFlow's below
    ``TF_CPP_MIN_LOG_LEVEL`` (which TensorFlow 2.21 writes regardless), CUDA's failed start where
    the process has no GPU (``gpus`` claimed: [], not None, which use_gpus says where it cannot tell), and
    TensorFlow Lite's notice. A level that is not a number counts as 0, as TensorFlow reads it."""
    try:
        level = int(level_setting or 0)
    except ValueError:
        level = 0
    patterns = [re.escape(XNNPACK_NOTICE)]
    if level >= 1:
        patterns += [ABSL_LINE.format(severities=ABSL_SEVERITIES[: min(level, 3)]), re.escape(ABSL_PREAMBLE)]
    if gpus == []:
        patterns.append(ABSL_LINE.format(severities="E") + f".*{CUDA_FAILED}")
    return "^(?:" + "|".join(patterns) + ")"


def _predict(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides the progress bar
    if args.out:
        check_output(args.out)  # before any work: a bad path must not cost the predictions
    if args.workdir:
        check_workdir(args.workdir)
    if {"tensorflow", "jax"} & set(sys.modules):  # called in a process where they run (a notebook): they keep what they see
        if args.gpus != 1:
            log.warning("--gpus %d not applied: TensorFlow or JAX started in this process first and keeps the GPUs it sees", args.gpus)
        return _predict_clips(args)
    gpus = use_gpus(args.gpus)  # before TensorFlow starts: it takes every GPU it sees, and their memory
    with native_stderr_filtered(startup_noise(os.environ["TF_CPP_MIN_LOG_LEVEL"], gpus)):
        return _predict_clips(args)


def _predict_clips(args) -> int:
    unwritten = []  # the last write's error: a full disk must not cost the predictions either

    def write(rows):
        try:
            write_predictions(rows, args.out)
            unwritten.clear()
        except (OSError, ValueError) as error:
            unwritten[:] = [error]

    table = predict_files(
        args.model, args.clips, dataset=args.dataset, workdir=args.workdir, progress=not args.quiet, on_rows=write if args.out else None, openface_bin=args.openface_bin
    )
    if unwritten:
        print(f"avemotion: could not write {args.out} ({unwritten[0]}); the predictions:", file=sys.stderr)
        print(format_table(table))
        return 1
    if args.out:
        print(f"wrote {len(table)} prediction{'' if len(table) == 1 else 's'} to {args.out}", file=sys.stderr)
    else:
        print(format_table(table))
    failed = int((table["error"] != "").sum())
    if failed:
        print(f"avemotion predict: {failed} of {len(table)} clips could not be predicted (see their error)", file=sys.stderr)
    return 1 if failed else 0


def _count(text: str) -> int:
    if not text.strip().lstrip("+").isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return int(text)


def _positive(text: str) -> int:
    number = int(text) if text.strip().lstrip("+").isdigit() else 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avemotion", description="Audio-visual emotion recognition workflow tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="index a corpus from its file names and metadata (no decoding)")
    index.add_argument("dataset", choices=[*READERS, *DATASET_ALIASES])
    index.add_argument("root", help="corpus root directory")
    index.add_argument("--out", default=".", help=f"folder for {INDEX_FILES[0]} and {INDEX_FILES[1]}")
    index.add_argument("--chunks", type=_positive, help="number of preprocessing chunks (default: the workflow's for the corpus)")
    index.set_defaults(run=_index)
    convert = commands.add_parser(
        "convert-weights",
        help="read VideoMAE or Whisper weights of any supported format once and write avemotion's .weights.h5",
        description="SRC: a Hugging Face VideoMAE folder, an MCG-NJU .pth, an innat/VideoMAE .h5, or a "
        ".weights.h5/.keras of ours; or a Hugging Face Whisper folder (openai/whisper-*: the encoder is kept; "
        "--num-frames/--image-size/--num-heads do not apply). DST must end with .weights.h5; training jobs "
        "load it fast, without torch.",
    )
    convert.add_argument("source", metavar="SRC")
    convert.add_argument("destination", metavar="DST")
    convert.add_argument("--num-frames", type=int, help="frames per clip to build for (default: the checkpoint's)")
    convert.add_argument("--image-size", type=int, help="frame side in pixels (default: the checkpoint's)")
    convert.add_argument("--num-heads", type=int, help="attention heads, for .pth/.h5 files of an unregistered width")
    convert.set_defaults(run=_convert_weights)
    predict = commands.add_parser(
        "predict",
        help="predict emotion class, probabilities, valence and arousal of new clips with a trained model",
        description="Runs the preprocessing the model was trained with (saved beside it) on each clip, then "
        "the model. Exit status 1 when any clip could not be predicted (its row holds the error).",
    )
    predict.add_argument("--model", required=True, help="a trained model folder, e.g. results/experiments/<name>/final")
    predict.add_argument("clips", nargs="+", metavar="CLIP", help="video files, or folders: every video under them")
    predict.add_argument("--out", help="write the predictions to FILE.csv or FILE.json instead of printing a table (rewritten as clips are done)")
    predict.add_argument("--dataset", help="whose preprocessing settings to use, for a model trained on a mixture (default: its first)")
    predict.add_argument("--workdir", help="keep the intermediate artifacts (frames, spectrograms, face features) here")
    predict.add_argument("--openface-bin", help="OpenFace's FeatureExtraction on this machine, for a model trained on OpenFace's face features (default: the one it was trained with)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument(
        "--gpus",
        type=_count,
        default=1,
        help="GPUs to predict on (default 1): a GPU that no other avemotion job on this workstation holds, waiting "
        "while they hold them all; 0: CPUs only. Inside a Slurm job: the GPUs Slurm gave it",
    )
    predict.set_defaults(run=_predict)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError, OpenFaceError) as error:  # OpenFace's: a broken install fails every clip
        print(f"avemotion: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
