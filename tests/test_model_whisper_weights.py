"""Whisper checkpoints: folders transformers saves load to its outputs (<= 1e-4); bad ones are refused by name."""

from __future__ import annotations

import json
import logging
import re

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import WhisperConfig, WhisperForAudioClassification, WhisperForConditionalGeneration, WhisperModel  # noqa: E402
from whisper_reference import SHAPES, TOLERANCE, features, hf_config, max_differences, randomise, to_numpy  # noqa: E402

from avemotion.cli import main
from avemotion.model.checkpoints import CheckpointError  # noqa: E402
from avemotion.model.whisper_checkpoint import architecture_from_config, is_whisper_checkpoint, whisper_format  # noqa: E402
from avemotion.model.whisper_weights import convert_whisper_weights, load_whisper, save_whisper_weights  # noqa: E402

SAVED_CLASSES = {
    "WhisperModel": WhisperModel,  # encoder.* and decoder.*
    "WhisperForConditionalGeneration": WhisperForConditionalGeneration,  # model.encoder.*, proj_out
    "WhisperForAudioClassification": WhisperForAudioClassification,  # encoder.*, projector, classifier
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each model class saved by transformers' save_pretrained, with its encoder."""
    folders = {}
    for index, (name, cls) in enumerate(SAVED_CLASSES.items()):
        model = randomise(cls(hf_config(**SHAPES["2_layers_4_heads"])), 10 + index)
        folder = tmp_path_factory.mktemp(name)
        model.save_pretrained(folder, safe_serialization=True)
        folders[name] = (folder, model.model.encoder if hasattr(model, "model") else model.encoder)
    return folders


@pytest.mark.parametrize("name", sorted(SAVED_CLASSES))
def test_saved_hugging_face_folder_loads_to_the_same_outputs(saved, name):
    folder, encoder = saved[name]
    assert whisper_format(folder) == "hf_folder" and is_whisper_checkpoint(folder)
    backbone = load_whisper(folder)
    assert backbone.architecture == {**SHAPES["2_layers_4_heads"], "layer_norm_eps": 1e-5}
    differences = max_differences(backbone, encoder, features(16, 40))
    assert max(differences) <= TOLERANCE, differences
    also = load_whisper(folder / "model.safetensors")
    np.testing.assert_array_equal(to_numpy(also(features(16, 40))[-1]), to_numpy(backbone(features(16, 40))[-1]))


def copy_folder(source, destination, state: dict | None = None, bin_file: bool = False):
    destination.mkdir()
    (destination / "config.json").write_text((source / "config.json").read_text())
    state = load_file(str(source / "model.safetensors")) if state is None else state
    if bin_file:
        torch.save(state, destination / "pytorch_model.bin")
    else:
        save_file(state, str(destination / "model.safetensors"), metadata={"format": "pt"})
    return destination


def test_a_truncated_safetensors_file_is_named_as_truncated(saved, tmp_path):
    """An interrupted download keeps its header but not all its tensors: one line says which file
    and that it is cut short, not numpy's 'cannot reshape array of size 0'."""
    folder = copy_folder(saved["WhisperModel"][0], tmp_path / "cut")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(weights))}: tensor \S+ lies past the end of the file: it is truncated; download it again$"):
        load_whisper(folder)


def test_pytorch_bin_and_bfloat16_safetensors(saved, tmp_path):
    folder, encoder = saved["WhisperModel"]
    state = load_file(str(folder / "model.safetensors"))
    from_bin = load_whisper(copy_folder(folder, tmp_path / "bin", state, bin_file=True))
    assert max(max_differences(from_bin, encoder, features(16, 40))) <= TOLERANCE
    halves = {name: value.to(torch.bfloat16) for name, value in state.items()}
    backbone = load_whisper(copy_folder(folder, tmp_path / "bf16", halves))
    kernel = halves["encoder.layers.1.fc1.weight"].float().numpy().T
    np.testing.assert_array_equal(to_numpy(backbone.get_layer("layers_1").fc1.kernel), kernel)


def test_own_weights_and_keras_archive_round_trip(saved, tmp_path, caplog):
    folder, _ = saved["WhisperForConditionalGeneration"]
    backbone = convert_whisper_weights(folder, tmp_path / "encoder.weights.h5")
    batch = features(16, 30)
    expected = [to_numpy(state) for state in backbone(batch)]
    assert whisper_format(tmp_path / "encoder.weights.h5") == "keras_weights"
    backbone.save(tmp_path / "encoder.keras")
    assert is_whisper_checkpoint(tmp_path / "encoder.keras")
    for path in ("encoder.weights.h5", "encoder.keras"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="avemotion.model.whisper_weights"):
            loaded = load_whisper(tmp_path / path)
        assert f"loaded Whisper encoder {tmp_path / path} ({whisper_format(tmp_path / path)}): " in caplog.text  # a training log says so
        for ours, theirs in zip(loaded(batch), expected):
            np.testing.assert_array_equal(to_numpy(ours), theirs)
    with pytest.raises(ValueError, match="must end with .weights.h5"):
        save_whisper_weights(backbone, tmp_path / "encoder.h5")


def test_missing_tensor_is_named(saved, tmp_path):
    folder, _ = saved["WhisperModel"]
    state = load_file(str(folder / "model.safetensors"))
    del state["encoder.layers.1.fc2.bias"]
    with pytest.raises(CheckpointError, match=r"missing tensors .*: encoder\.layers\.1\.fc2\.bias"):
        load_whisper(copy_folder(folder, tmp_path / "missing", state))


def test_shape_mismatch_names_the_tensor_and_both_shapes(saved, tmp_path):
    folder, _ = saved["WhisperForConditionalGeneration"]
    state = load_file(str(folder / "model.safetensors"))
    state["model.encoder.layers.0.fc1.weight"] = state["model.encoder.layers.0.fc1.weight"][:40].clone()
    expected = r"model\.encoder\.layers\.0\.fc1\.weight: the checkpoint has \(40, 32\) .* is \(32, 48\)"
    with pytest.raises(CheckpointError, match=expected):
        load_whisper(copy_folder(folder, tmp_path / "misshapen", state))


def test_unknown_and_surplus_tensors_are_refused(saved, tmp_path):
    folder, _ = saved["WhisperModel"]
    state = load_file(str(folder / "model.safetensors"))
    extra = {**state, "encoder.layers.0.self_attn.k_proj.bias": torch.zeros(32)}
    with pytest.raises(CheckpointError, match=r"no place for: encoder\.layers\.0\.self_attn\.k_proj\.bias"):
        load_whisper(copy_folder(folder, tmp_path / "k_bias", extra))
    strange = {**state, "encoder.adapter.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError, match=r"does not know in .*: encoder\.adapter\.weight"):
        load_whisper(copy_folder(folder, tmp_path / "adapter", strange))


def test_other_formats_are_refused(saved, tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_whisper(tmp_path / "plain")
    (tmp_path / "videomae").mkdir()
    (tmp_path / "videomae" / "config.json").write_text('{"model_type": "videomae"}')
    with pytest.raises(CheckpointError, match="describes a 'videomae' model, not whisper"):
        load_whisper(tmp_path / "videomae")
    (tmp_path / "noise.bin").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="unrecognised Whisper checkpoint format"):
        load_whisper(tmp_path / "noise.bin")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_whisper(tmp_path / "absent")
    assert not is_whisper_checkpoint(tmp_path / "videomae")
    folder, _ = saved["WhisperModel"]
    empty = tmp_path / "weightless"
    empty.mkdir()
    (empty / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_whisper(empty)


def test_sharded_safetensors(saved, tmp_path):
    """Large checkpoints come in shards named by model.safetensors.index.json."""
    folder, encoder = saved["WhisperForConditionalGeneration"]
    state = load_file(str(folder / "model.safetensors"))
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2], "model-00002-of-00002.safetensors": names[len(names) // 2 :]}
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text((folder / "config.json").read_text())
    for shard, keys in shards.items():
        save_file({key: state[key] for key in keys}, str(sharded / shard), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {key: shard for shard, keys in shards.items() for key in keys}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert max(max_differences(load_whisper(sharded), encoder, features(16, 40))) <= TOLERANCE


def test_convert_weights_command_takes_a_whisper_folder(saved, tmp_path, capsys):
    folder, encoder = saved["WhisperForConditionalGeneration"]
    destination = tmp_path / "out" / "whisper.weights.h5"
    assert main(["convert-weights", str(folder), str(destination)]) == 0
    output = capsys.readouterr().out
    layers, width = SHAPES["2_layers_4_heads"]["encoder_layers"], SHAPES["2_layers_4_heads"]["d_model"]
    assert f"(Whisper encoder): {layers} layers, width {width}" in output and f"wrote {destination}" in output
    assert max(max_differences(load_whisper(destination), encoder, features(16, 40))) <= TOLERANCE


def test_weighted_layer_sum_classifiers_load_their_encoder(tmp_path):
    """WhisperForAudioClassification with use_weighted_layer_sum saves layer_weights: a head tensor, left out."""
    model = randomise(WhisperForAudioClassification(hf_config(**SHAPES["2_layers_4_heads"], use_weighted_layer_sum=True)), 20)
    model.save_pretrained(tmp_path / "weighted", safe_serialization=True)
    assert max(max_differences(load_whisper(tmp_path / "weighted"), model.encoder, features(16, 40))) <= TOLERANCE


def test_absent_config_keys_take_transformers_defaults_and_other_activations_are_refused(saved, tmp_path):
    defaults = WhisperConfig()
    keys = ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "num_mel_bins", "max_source_positions")
    assert architecture_from_config({"model_type": "whisper"}, "x") == {key: getattr(defaults, key) for key in keys}
    folder, _ = saved["WhisperModel"]
    relu = tmp_path / "relu"
    copy_folder(folder, relu)
    config = json.loads((relu / "config.json").read_text())
    (relu / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
    with pytest.raises(CheckpointError, match="activation_function 'relu' is not supported"):
        load_whisper(relu)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_half_and_double_precision_safetensors_load_as_float32(saved, tmp_path, dtype):
    folder, _ = saved["WhisperModel"]
    state = {name: value.to(dtype) for name, value in load_file(str(folder / "model.safetensors")).items()}
    backbone = load_whisper(copy_folder(folder, tmp_path / "cast", state))
    kernel = state["encoder.layers.0.fc2.weight"].float().numpy().T
    np.testing.assert_array_equal(to_numpy(backbone.get_layer("layers_0").fc2.kernel), kernel)


def test_broken_safetensors_and_integer_tensors_are_refused_by_name(saved, tmp_path):
    folder, _ = saved["WhisperModel"]
    state = load_file(str(folder / "model.safetensors"))
    integers = {**state, "encoder.conv1.bias": state["encoder.conv1.bias"].to(torch.int32)}
    with pytest.raises(CheckpointError, match="tensor encoder.conv1.bias is I32, not a floating-point type"):
        load_whisper(copy_folder(folder, tmp_path / "ints", integers))
    broken = copy_folder(folder, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes((12).to_bytes(8, "little") + b"not json at all")
    with pytest.raises(CheckpointError, match="is not a safetensors file"):
        load_whisper(broken)
    (tmp_path / "lone").mkdir()
    (tmp_path / "lone" / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="no config.json"):
        load_whisper(tmp_path / "lone" / "model.safetensors")


def test_every_format_loads_under_a_mixed_precision_policy(saved, tmp_path):
    """load_whisper(path, dtype) builds the encoder under that policy from any format, weights kept float32."""
    folder, _ = saved["WhisperForConditionalGeneration"]
    backbone = convert_whisper_weights(folder, tmp_path / "encoder.weights.h5")
    backbone.save(tmp_path / "encoder.keras")
    for path in (folder, tmp_path / "encoder.weights.h5", tmp_path / "encoder.keras"):
        mixed = load_whisper(path, dtype="mixed_bfloat16")
        assert mixed.get_layer("layers_1").dtype_policy.name == "mixed_bfloat16"
        for ours, theirs in zip(mixed.weights, backbone.weights):
            assert ours.dtype == "float32"
            np.testing.assert_array_equal(to_numpy(ours), to_numpy(theirs))


def test_a_keras_archive_of_another_model_is_not_a_whisper_checkpoint(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(tmp_path / "dense.keras")
    assert whisper_format(tmp_path / "dense.keras") == "keras_archive"
    assert not is_whisper_checkpoint(tmp_path / "dense.keras")
