"""Reading Whisper checkpoints (without Keras): Hugging Face folders of openai/whisper-* and of models
fine-tuned from them (WhisperForConditionalGeneration, WhisperModel, WhisperForAudioClassification).

A folder holds config.json and model.safetensors (or its shards with model.safetensors.index.json,
or pytorch_model.bin); a .safetensors file beside its config.json works too. Only the encoder is
kept, in canonical form: transformers' WhisperEncoder names without prefix (``conv1.weight``,
``layers.0.self_attn.k_proj.weight``, ``embed_positions.weight``, ...) and PyTorch layouts, as
float32 numpy arrays. The architecture comes from config.json and travels with the weights.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np

from avemotion.io import read_json
from avemotion.model.checkpoints import HDF5_SIGNATURE, Checkpoint, CheckpointError, keras_archive_class
from avemotion.model.torch_checkpoint import read_torch_file

log = logging.getLogger(__name__)

# The HDF5 attribute in which avemotion's Whisper .weights.h5 records its architecture.
WHISPER_ARCHITECTURE_ATTRIBUTE = "avemotion_whisper"
# Where each published model class keeps its encoder (WhisperEncoder saved alone has no prefix).
ENCODER_PREFIXES = ("model.encoder.", "encoder.", "")
# Not the encoder: the text decoder, the tied output projection and audio-classification heads.
NOT_ENCODER = ("model.decoder.", "decoder.", "proj_out.", "projector.", "classifier.", "layer_weights")
ENCODER_KEY = re.compile(
    r"(conv[12]\.(weight|bias)|embed_positions\.weight|layer_norm\.(weight|bias)|layers\.\d+\."
    r"(self_attn\.(q_proj|k_proj|v_proj|out_proj)|self_attn_layer_norm|final_layer_norm|fc1|fc2)\.(weight|bias))"
)
SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}
FORMATS_HELP = (
    "a Hugging Face Whisper folder (config.json with model_type whisper + model.safetensors, its shards "
    "or pytorch_model.bin), a .safetensors file beside such a config.json, or avemotion's own Whisper "
    ".weights.h5 / .keras"
)


def whisper_format(path) -> str:
    """hf_folder, keras_weights or keras_archive; CheckpointError for anything else."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir() or path.name.endswith(".safetensors"):
        folder = path if path.is_dir() else path.parent
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"{path}: no config.json in {folder}, so not a Hugging Face Whisper checkpoint; expected {FORMATS_HELP}")
        model_type = read_json(folder / "config.json").get("model_type")
        if model_type != "whisper":
            raise CheckpointError(f"{folder}/config.json describes a {model_type!r} model, not whisper")
        return "hf_folder"
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head == HDF5_SIGNATURE:
        with h5py.File(path, "r") as handle:
            if WHISPER_ARCHITECTURE_ATTRIBUTE in handle.attrs:
                return "keras_weights"
        raise CheckpointError(f"{path} is an HDF5 file without avemotion's Whisper architecture record; expected {FORMATS_HELP}")
    if zipfile.is_zipfile(path) and {"config.json", "model.weights.h5"} <= set(zipfile.ZipFile(path).namelist()):
        return "keras_archive"
    raise CheckpointError(f"unrecognised Whisper checkpoint format: {path}. Supported: {FORMATS_HELP}")


def is_whisper_checkpoint(path) -> bool:
    """Whether ``path`` is a Whisper checkpoint (for commands that take VideoMAE ones as well)."""
    try:
        kind = whisper_format(path)
    except (CheckpointError, OSError, ValueError):
        return False
    if kind != "keras_archive":
        return True
    return keras_archive_class(path) == "WhisperBackbone"


def architecture_from_config(config: dict, where) -> dict:
    """WhisperBackbone arguments from a transformers config.json (its defaults where a key is absent)."""
    activation = config.get("activation_function", "gelu")
    if activation != "gelu":
        raise CheckpointError(f"{where}: activation_function {activation!r} is not supported (Whisper uses exact gelu)")
    return {
        "d_model": int(config.get("d_model", 384)),
        "encoder_layers": int(config.get("encoder_layers", 4)),
        "encoder_attention_heads": int(config.get("encoder_attention_heads", 6)),
        "encoder_ffn_dim": int(config.get("encoder_ffn_dim", 1536)),
        "num_mel_bins": int(config.get("num_mel_bins", 80)),
        "max_source_positions": int(config.get("max_source_positions", 1500)),
    }


def read_whisper_folder(path) -> Checkpoint:
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    architecture = architecture_from_config(read_json(folder / "config.json"), folder)
    tensors, sources, prefix = _encoder_tensors(path, _tensor_files(path))
    return Checkpoint("hf_folder", architecture, tensors, None, sources, naming=lambda name: prefix + name)


def _tensor_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / "model.safetensors").is_file():
        return [path / "model.safetensors"]
    index = path / "model.safetensors.index.json"
    if index.is_file():
        return [path / name for name in dict.fromkeys(read_json(index)["weight_map"].values())]
    if (path / "pytorch_model.bin").is_file():
        return [path / "pytorch_model.bin"]
    raise CheckpointError(f"{path} has config.json but no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def _encoder_tensors(path: Path, files: list[Path]):
    names = {}
    for file in files:
        if file.name.endswith(".bin"):
            raw = read_torch_file(file)
            names.update({name: (lambda value=value: value) for name, value in raw.items()})
        else:
            names.update(_safetensors_readers(file))
    prefix = next((p for p in ENCODER_PREFIXES if p + "conv1.weight" in names), None)
    if prefix is None:
        raise CheckpointError(
            f"missing tensors in {path}: no encoder conv1.weight under any of the prefixes "
            f"{', '.join(repr(p) for p in ENCODER_PREFIXES)} (is this a Whisper checkpoint?)"
        )
    tensors, sources, unknown, skipped = {}, {}, [], []
    for name, read in names.items():
        key = name[len(prefix):] if name.startswith(prefix) else None
        if key is not None and ENCODER_KEY.fullmatch(key):
            tensors[key] = read()
            sources[key] = name
        elif name.startswith(NOT_ENCODER):
            skipped.append(name)
        else:
            unknown.append(name)
    if unknown:
        raise CheckpointError(f"tensors this Whisper reader does not know in {path}: {', '.join(sorted(unknown)[:8])}")
    heads = sorted(name for name in skipped if not name.startswith(("model.decoder.", "decoder.", "proj_out.")))
    if heads:
        log.info("%s: the encoder only is loaded; left out the head tensors %s", path, ", ".join(heads))
    return tensors, sources, prefix


def _safetensors_readers(path: Path) -> dict:
    """Name -> function reading that tensor as float32, so a decoder's tensors are never read.

    Read by hand (the format is a JSON header and raw little-endian arrays): numpy has no bfloat16, in
    which some fine-tuned checkpoints are stored, and safetensors' numpy reader refuses it."""
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        try:
            header = json.loads(handle.read(size))
        except ValueError as error:
            raise CheckpointError(f"{path} is not a safetensors file ({error})") from None
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)

    def reader(name, info):
        start, end = info["data_offsets"]
        raw = data[start:end]
        if len(raw) != end - start:  # a file cut short (an interrupted download) holds less than its header says
            raise CheckpointError(f"{path}: tensor {name} lies past the end of the file: it is truncated; download it again")
        if info["dtype"] == "BF16":
            value = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in SAFETENSORS_DTYPES:
            value = raw.view(SAFETENSORS_DTYPES[info["dtype"]]).astype(np.float32)
        else:
            raise CheckpointError(f"{path}: tensor {name} is {info['dtype']}, not a floating-point type")
        return value.reshape(info["shape"])

    return {name: (lambda name=name, info=info: reader(name, info)) for name, info in header.items() if name != "__metadata__"}
