"""Weight import: every supported checkpoint format gives the transformers network's logits (<= 1e-4)."""

from __future__ import annotations

import builtins
import json
import os
import logging
import pickle
import re
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402
import videomae_reference as reference  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402
from transformers import VideoMAEConfig, VideoMAEForPreTraining, VideoMAEForVideoClassification  # noqa: E402

from avemotion.cli import main
from avemotion.model import CheckpointError, convert_weights, detect_format, layers, load_videomae, weights  # noqa: E402
from avemotion.model.hf_checkpoint import hf_name, read_hf_folder  # noqa: E402
from avemotion.model.innat_checkpoint import read_innat_h5  # noqa: E402
from avemotion.model.torch_checkpoint import read_mcg_checkpoint  # noqa: E402
from avemotion.presets import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

TOLERANCE = 1e-4

# Two shapes that differ in everything the architecture has: frames, image size, patch and tubelet
# size, width, heads, depth, MLP width, head size and LayerNorm eps.
SHAPES = {
    "4x32_p16": dict(
        image_size=32, patch_size=16, num_frames=4, tubelet_size=2, hidden_size=48,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=80, num_labels=5,
    ),
    "6x24_p8": dict(
        image_size=24, patch_size=8, num_frames=6, tubelet_size=3, hidden_size=36,
        num_hidden_layers=3, num_attention_heads=3, intermediate_size=144, num_labels=7,
    ),
}  # fmt: skip


def clips_for(config, seed=0, frames=None):
    size = config["image_size"]
    return np.random.default_rng(seed).random((2, frames or config["num_frames"], size, size, 3), dtype=np.float32)


def logits(model, clips):
    return np.asarray(model(clips, training=False)["logits"])


@pytest.fixture(scope="module", params=sorted(SHAPES))
def shape(request):
    return request.param


@pytest.fixture(scope="module")
def hf_reference(shape):
    """Hugging Face style: block eps from config.json (1e-12), fc_norm at torch's 1e-5."""
    return reference.random_reference(seed=len(shape), layer_norm_eps=1e-12, **SHAPES[shape])


@pytest.fixture(scope="module")
def original_reference(shape):
    """The original network: eps 1e-6 in the blocks and in fc_norm (what .pth and innat files carry)."""
    return reference.random_reference(seed=len(shape) + 1, layer_norm_eps=1e-6, fc_norm_eps=1e-6, **SHAPES[shape])


HF_WRITERS = {
    "save_pretrained": reference.write_hf_save_pretrained,
    "safetensors_new_keys": lambda model, folder: reference.write_hf_folder(model, folder, "safetensors", "new"),
    "safetensors_old_keys": lambda model, folder: reference.write_hf_folder(model, folder, "safetensors", "old"),
    "bin_new_keys": lambda model, folder: reference.write_hf_folder(model, folder, "bin", "new"),
    "bin_old_keys": lambda model, folder: reference.write_hf_folder(model, folder, "bin", "old"),
}


@pytest.mark.parametrize("writer", sorted(HF_WRITERS))
def test_hugging_face_folder_matches_transformers(hf_reference, shape, writer, tmp_path):
    folder = HF_WRITERS[writer](hf_reference, tmp_path / "hf")
    assert detect_format(folder) == "hf_folder"
    model = load_videomae(folder)
    clips = clips_for(SHAPES[shape])
    expected = reference.reference_outputs(hf_reference, clips, IMAGENET_MEAN, IMAGENET_STD)
    assert np.abs(logits(model, clips) - expected).max() <= TOLERANCE
    assert model.label_names == [hf_reference.config.id2label[i] for i in range(SHAPES[shape]["num_labels"])]
    assert model.backbone.layer_norm_eps == 1e-12 and model.backbone.fc_norm_eps == 1e-5


@pytest.mark.parametrize("wrapper", ["model", "module"])
def test_mcg_nju_pth_matches_the_original_network(original_reference, shape, wrapper, tmp_path):
    config = SHAPES[shape]
    path = reference.write_mcg_pth(original_reference, tmp_path / "checkpoint.pth", wrapper)
    assert detect_format(path) == "torch"
    model = load_videomae(
        path, num_frames=config["num_frames"], image_size=config["image_size"], num_heads=config["num_attention_heads"]
    )
    clips = clips_for(config)
    expected = reference.reference_outputs(original_reference, clips, IMAGENET_MEAN, IMAGENET_STD)
    assert np.abs(logits(model, clips) - expected).max() <= TOLERANCE


def test_innat_keras2_h5_matches_the_original_network(original_reference, shape, tmp_path):
    config = SHAPES[shape]
    # The release names carry the clip shape, as in TFVideoMAE_L_K400_16x224_FT.h5.
    name = f"TFVideoMAE_T_K400_{config['num_frames']}x{config['image_size']}_FT.h5"
    path = reference.write_innat_h5(original_reference, tmp_path / name)
    assert detect_format(path) == "innat_h5"
    model = load_videomae(path, num_heads=config["num_attention_heads"])
    clips = clips_for(config)
    expected = reference.reference_outputs(original_reference, clips, IMAGENET_MEAN, IMAGENET_STD)
    assert np.abs(logits(model, clips) - expected).max() <= TOLERANCE


def test_own_weights_and_keras_archive_round_trip_with_recomputed_positions(hf_reference, shape, tmp_path, caplog):
    """convert-weights output and .keras both reload the same network, also for another frame count,
    and say what they loaded (a training log otherwise showed no trace of converted weights)."""
    config = SHAPES[shape]
    converted = tmp_path / "converted.weights.h5"
    model = convert_weights(HF_WRITERS["safetensors_new_keys"](hf_reference, tmp_path / "hf"), converted)
    archive = tmp_path / "model.keras"
    model.save(archive)
    assert detect_format(converted) == "keras_weights" and detect_format(archive) == "keras_archive"

    clips = clips_for(config)
    expected = reference.reference_outputs(hf_reference, clips, IMAGENET_MEAN, IMAGENET_STD)
    frames = 2 * config["num_frames"]
    longer = clips_for(config, seed=1, frames=frames)
    expected_longer = reference.reference_outputs(
        reference.with_num_frames(hf_reference, frames), longer, IMAGENET_MEAN, IMAGENET_STD
    )
    for path in (converted, archive):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="avemotion.model.weights"):
            assert np.abs(logits(load_videomae(path), clips) - expected).max() <= TOLERANCE
        kind = "keras_weights" if path == converted else "keras_archive"
        assert f"loaded {path} ({kind}): {config['num_hidden_layers']} layers, width {config['hidden_size']}" in caplog.text
        reloaded = load_videomae(path, num_frames=frames)
        assert reloaded.backbone.num_frames == frames
        assert np.abs(logits(reloaded, longer) - expected_longer).max() <= TOLERANCE
        assert reloaded.label_names == model.label_names


def test_fused_attention_computes_what_transformers_computes(hf_reference, shape, tmp_path, monkeypatch):
    """keras.ops.dot_product_attention (what GPUs run, see layers.ATTENTION) equals transformers in
    float32 as the einsum attention CPUs run does; on this CPU "auto" picks the einsums."""

    assert not layers.fused_attention()
    monkeypatch.setattr(layers, "ATTENTION", "fused")
    model = load_videomae(HF_WRITERS["safetensors_new_keys"](hf_reference, tmp_path / "hf"))
    clips = clips_for(SHAPES[shape])
    expected = reference.reference_outputs(hf_reference, clips, IMAGENET_MEAN, IMAGENET_STD)
    assert np.abs(logits(model, clips) - expected).max() <= TOLERANCE
    monkeypatch.setattr(layers, "ATTENTION", "flash")
    with pytest.raises(ValueError, match="'auto', 'fused' or 'einsum'"):
        layers.fused_attention()


def test_hugging_face_weights_at_another_frame_count(tmp_path):
    """No weight depends on the frame count: 16 frames of a 4-frame checkpoint match transformers at 16."""
    config = SHAPES["4x32_p16"]
    hf = reference.random_reference(seed=3, **config)
    model = load_videomae(HF_WRITERS["safetensors_new_keys"](hf, tmp_path / "hf"), num_frames=16)
    clips = clips_for(config, frames=16)
    expected = reference.reference_outputs(reference.with_num_frames(hf, 16), clips, IMAGENET_MEAN, IMAGENET_STD)
    assert np.abs(logits(model, clips) - expected).max() <= TOLERANCE


def test_a_224_px_checkpoint_fine_tunes_at_160_px_as_transformers_computes(tmp_path):
    """The published recipes fine-tune at 160 px from 224 px checkpoints: no weight depends on the
    image size (the position table is the sinusoid formula), so the model at 160 px equals
    transformers built for 160 px with the same weights."""
    config = dict(SHAPES["4x32_p16"], image_size=224, num_frames=2)
    hf = reference.random_reference(seed=4, **config)
    model = load_videomae(HF_WRITERS["safetensors_new_keys"](hf, tmp_path / "hf"), image_size=160)
    assert model.backbone.image_size == 160
    clips = clips_for(dict(config, image_size=160))
    at_160 = VideoMAEForVideoClassification(VideoMAEConfig(**{**hf.config.to_dict(), "image_size": 160})).eval()
    at_160.load_state_dict(hf.state_dict())
    expected = reference.reference_outputs(at_160, clips, IMAGENET_MEAN, IMAGENET_STD)
    assert np.abs(logits(model, clips) - expected).max() <= TOLERANCE


def test_pretraining_checkpoint_gives_features_without_a_head(tmp_path):
    """An encoder-only checkpoint (no fc_norm, no head): features = identity-initialised fc_norm of the mean token."""
    from transformers import VideoMAEModel

    config = SHAPES["4x32_p16"]
    torch.manual_seed(5)
    encoder = VideoMAEModel(VideoMAEConfig(**config, use_mean_pooling=True)).eval()
    encoder.save_pretrained(tmp_path / "hf")
    model = load_videomae(tmp_path / "hf")
    assert model.head is None and set(model.output) == {"features"}
    clips = clips_for(config)
    pixels = (clips - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    with torch.no_grad():
        tokens = encoder(torch.from_numpy(pixels.transpose(0, 1, 4, 2, 3).copy())).last_hidden_state
        expected = torch.nn.functional.layer_norm(tokens.mean(1), (config["hidden_size"],), eps=1e-5).numpy()
    assert np.abs(np.asarray(model(clips)["features"]) - expected).max() <= TOLERANCE


def test_a_pretraining_checkpoints_final_norm_is_dropped_for_an_identity_fc_norm(tmp_path):
    """An encoder saved with its final LayerNorm (no mean pooling, as pre-training writes it) loads
    as VideoMAE fine-tuning starts: the final norm is left out, fc_norm starts as identity on the mean token."""
    from transformers import VideoMAEModel

    config = SHAPES["4x32_p16"]
    torch.manual_seed(6)
    encoder = VideoMAEModel(VideoMAEConfig(**config, use_mean_pooling=False)).eval()
    encoder.save_pretrained(tmp_path / "hf")
    model = load_videomae(tmp_path / "hf")
    clips = clips_for(config)
    pixels = (clips - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    with torch.no_grad():
        output = encoder(torch.from_numpy(pixels.transpose(0, 1, 4, 2, 3).copy()), output_hidden_states=True)
        before_norm = output.hidden_states[-1]
        expected = torch.nn.functional.layer_norm(before_norm.mean(1), (config["hidden_size"],), eps=1e-5).numpy()
    assert np.abs(np.asarray(model(clips)["features"]) - expected).max() <= TOLERANCE


def test_formats_are_told_apart_by_content_and_lookalikes_are_refused_saying_what_they_are(tmp_path):
    """A pre-zip torch pickle is a torch checkpoint whatever its name; a zip with a config.json but
    no weights is no Keras archive; a folder without config.json, a Keras .weights.h5 without
    avemotion's architecture record and another HDF5 file are refused with what they lack."""
    legacy = tmp_path / "checkpoint.tar"
    legacy.write_bytes(pickle.dumps({"model": {}}, protocol=2))
    assert detect_format(legacy) == "torch"
    with zipfile.ZipFile(tmp_path / "config_only.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(CheckpointError, match="unrecognised checkpoint format"):
        detect_format(tmp_path / "config_only.keras")
    (tmp_path / "folder").mkdir()
    with pytest.raises(CheckpointError, match="is a folder without config.json, so not a Hugging Face VideoMAE folder"):
        detect_format(tmp_path / "folder")
    with h5py.File(tmp_path / "plain.weights.h5", "w") as handle:
        handle.create_group("vars")
    with pytest.raises(CheckpointError, match="a Keras .weights.h5 without avemotion's architecture record"):
        detect_format(tmp_path / "plain.weights.h5")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.create_dataset("x", data=np.zeros(3))
    with pytest.raises(CheckpointError, match="an HDF5 file but neither avemotion weights nor an innat/VideoMAE .h5"):
        detect_format(tmp_path / "other.h5")


def test_a_keras_archive_of_another_model_is_refused(tmp_path):
    """Named by the class its archive records, before Keras tries to build it: a trained avemotion
    model's classes are not registered where weights are converted (65 lines of traceback)."""
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(CheckpointError, match=r"other\.keras is a Keras archive of a 'Sequential' model, not VideoMAE weights \(a trained avemotion model predicts"):
        load_videomae(tmp_path / "other.keras")


def test_a_truncated_safetensors_file_is_named_as_truncated(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "videomae"}))
    save_file({"videomae.embeddings.patch_embeddings.projection.weight": np.zeros((8, 3, 2, 16, 16), np.float32)}, str(folder / "model.safetensors"))
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(weights))}: not a whole safetensors file \(.*\); download it again$"):
        load_videomae(folder)


def test_convert_weights_refuses_another_destination_suffix_before_reading_the_source(tmp_path):
    with pytest.raises(ValueError, match=r"must end with \.weights\.h5"):
        convert_weights(tmp_path / "absent", tmp_path / "videomae.h5")


# ---------------------------------------------------------------- refusals with clear messages


@pytest.fixture()
def hf_state(tmp_path):
    hf = reference.random_reference(seed=9, **SHAPES["4x32_p16"])
    folder = HF_WRITERS["safetensors_new_keys"](hf, tmp_path / "hf")
    return folder, load_file(str(folder / "model.safetensors"))


def rewrite(folder, state):
    save_file(state, str(folder / "model.safetensors"))
    return folder


def test_a_weights_file_given_instead_of_its_folder_loads_as_the_folder(tmp_path):
    """pytorch_model.bin (or model.safetensors) named directly, with config.json beside it, is the
    Hugging Face checkpoint; a transformers state dict saved alone says to give its folder."""
    config = SHAPES["4x32_p16"]
    hf = reference.random_reference(seed=3, **config)
    folder = HF_WRITERS["bin_new_keys"](hf, tmp_path / "hf")
    clips = clips_for(config)
    expected = reference.reference_outputs(hf, clips, IMAGENET_MEAN, IMAGENET_STD)
    assert detect_format(folder / "pytorch_model.bin") == "hf_folder"
    assert np.abs(logits(load_videomae(folder / "pytorch_model.bin"), clips) - expected).max() <= TOLERANCE
    torch.save(hf.state_dict(), tmp_path / "finetuned.pth")
    with pytest.raises(CheckpointError, match="a transformers VideoMAE state dict .* give the folder save_pretrained writes"):
        load_videomae(tmp_path / "finetuned.pth", num_frames=4, image_size=32, num_heads=4)


def test_a_head_fine_tuned_on_the_first_token_is_refused_not_loaded_on_mean_pooling(tmp_path):
    """A .pth fine-tuned with use_mean_pooling off (VideoMAE's --use_cls) has the final norm and a
    head but no fc_norm: loaded as a mean-pooling network its logits differed by 1.8, silently."""
    import argparse

    hf = reference.random_reference(seed=5, **SHAPES["4x32_p16"])
    state = {name: value for name, value in reference.original_state_dict(hf).items() if not name.startswith("fc_norm.")}
    state["norm.weight"], state["norm.bias"] = torch.ones(48), torch.zeros(48)
    torch.save({"model": state, "args": argparse.Namespace(use_mean_pooling=False)}, tmp_path / "cls.pth")
    with pytest.raises(CheckpointError, match="has a classification head but no fc_norm: it was fine-tuned on the first token"):
        load_videomae(tmp_path / "cls.pth", num_frames=4, image_size=32, num_heads=4)


def test_sizes_written_as_pairs_in_config_json(hf_state):
    """VideoMAEConfig takes patch_size and image_size as [height, width]; square pairs load, others are refused."""
    import json

    folder, _ = hf_state
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"patch_size": [16, 16], "image_size": [32, 32]}))
    assert load_videomae(folder).backbone.patch_size == 16
    (folder / "config.json").write_text(json.dumps(config | {"image_size": [32, 48]}))
    with pytest.raises(CheckpointError, match=r"image_size \[32, 48\] is not square"):
        load_videomae(folder)


def test_unknown_format_is_refused(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="unrecognised checkpoint format"):
        load_videomae(path)


def test_shape_mismatch_names_the_tensor_and_both_shapes(hf_state):
    folder, state = hf_state
    name = "videomae.encoder.layer.1.output.dense.weight"
    state[name] = np.zeros((48, 96), np.float32)  # fc2 should be (48, 80)
    with pytest.raises(CheckpointError, match=r"shape mismatch for tensor videomae\.encoder\.layer\.1\.output\.dense\.weight.*\(48, 96\).*\(80, 48\)"):
        load_videomae(rewrite(folder, state))


def test_missing_tensors_are_named(hf_state):
    folder, state = hf_state
    del state["videomae.encoder.layer.0.attention.attention.value.bias"]
    with pytest.raises(CheckpointError, match=r"missing tensors.*videomae\.encoder\.layer\.0\.attention\.attention\.value\.bias"):
        load_videomae(rewrite(folder, state))


def test_many_missing_tensors_are_counted_and_a_missing_fc_norm_bias_is_named(hf_state):
    """The message names the first 8 and counts the rest; a fine-tuned checkpoint's fc_norm is
    required (only a pre-training checkpoint, which has no fc_norm at all, may lack it)."""
    folder, state = hf_state
    layer = [name for name in state if name.startswith("videomae.encoder.layer.0.")]
    # A block is 13 tensors of the original network: weight and bias of norm1, norm2, attn.proj,
    # mlp.fc1 and mlp.fc2, the qkv weight, the q and v biases.
    with pytest.raises(CheckpointError, match=r"missing tensors.* and 5 more$"):
        load_videomae(rewrite(folder, {name: value for name, value in state.items() if name not in layer}))
    with pytest.raises(CheckpointError, match=r"missing tensors in the hf_folder checkpoint: fc_norm\.bias$"):
        load_videomae(rewrite(folder, {name: value for name, value in state.items() if name != "fc_norm.bias"}))


def test_unknown_tensors_are_not_silently_dropped(hf_state):
    folder, state = hf_state
    state["videomae.encoder.layer.0.layer_scale"] = np.ones(48, np.float32)
    with pytest.raises(CheckpointError, match="does not know: videomae.encoder.layer.0.layer_scale"):
        load_videomae(rewrite(folder, state))


def test_q_v_biases_that_load_as_zeros_are_refused(hf_state, monkeypatch):
    """A mapping bug that leaves the q/v biases at their zero initialisation must not pass."""

    original_targets = weights._targets

    def forgetful_targets(model, checkpoint):
        for name, variable, convert in original_targets(model, checkpoint):
            if name.endswith("q_bias"):
                convert = np.zeros_like
            yield name, variable, convert

    monkeypatch.setattr(weights, "_targets", forgetful_targets)
    with pytest.raises(CheckpointError, match=r"attention\.query\.bias loaded as all zeros although the checkpoint.s is not"):
        load_videomae(hf_state[0])


def test_torch_checkpoint_without_torch_says_how_to_install_it(original_reference, tmp_path, monkeypatch):
    path = reference.write_mcg_pth(original_reference, tmp_path / "checkpoint.pth")
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(CheckpointError, match=r"needs PyTorch.*pip install torch==2\.13\.0"):
        load_videomae(path)


def test_unregistered_width_needs_num_heads(original_reference, tmp_path):
    path = reference.write_mcg_pth(original_reference, tmp_path / "checkpoint.pth")
    with pytest.raises(CheckpointError, match="number of attention heads.*pass num_heads"):
        load_videomae(path)


def test_convert_weights_command(hf_reference, shape, tmp_path, capsys):
    config = SHAPES[shape]
    folder = HF_WRITERS["bin_old_keys"](hf_reference, tmp_path / "hf")
    destination = tmp_path / "out" / "videomae.weights.h5"
    assert main(["convert-weights", str(folder), str(destination)]) == 0
    output = capsys.readouterr().out
    assert f"(hf_folder): {config['num_hidden_layers']} layers, width {config['hidden_size']}" in output
    assert f"{config['num_labels']}-class head" in output and f"wrote {destination}" in output
    # The converted file needs neither torch nor the folder, and gives the same logits.
    clips = clips_for(config)
    expected = reference.reference_outputs(hf_reference, clips, IMAGENET_MEAN, IMAGENET_STD)
    assert np.abs(logits(load_videomae(destination), clips) - expected).max() <= TOLERANCE


def test_convert_weights_prints_its_own_lines_without_tensorflows_start_up(hf_reference, tmp_path):
    """Run as users run it: TensorFlow's start-up lines and CUDA's failed start are left out, as predict
    leaves them out; the command says what it read and wrote."""
    folder = HF_WRITERS["bin_old_keys"](hf_reference, tmp_path / "hf")
    result = subprocess.run(
        [sys.executable, "-m", "avemotion.cli", "convert-weights", str(folder), str(tmp_path / "v.weights.h5")],
        capture_output=True, text=True, env={key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"read {folder} (hf_folder)") and f"wrote {tmp_path / 'v.weights.h5'}" in result.stdout
    assert "I0000" not in result.stderr and "cuInit" not in result.stderr and "oneDNN" not in result.stderr, result.stderr


def test_convert_weights_command_fails_clearly(tmp_path, capsys):
    source = tmp_path / "notes.txt"
    source.write_text("hello")
    assert main(["convert-weights", str(source), str(tmp_path / "x.weights.h5")]) == 2
    assert "unrecognised checkpoint format" in capsys.readouterr().err
    assert not (tmp_path / "x.weights.h5").exists()


# A deep, narrow network: ten blocks, so block 10 sorts before block 2 as text.
DEEP = dict(
    image_size=16, patch_size=16, num_frames=2, tubelet_size=2, hidden_size=8,
    num_hidden_layers=10, num_attention_heads=2, intermediate_size=8, num_labels=2,
)  # fmt: skip


def assert_same_tensors(checkpoint, expected: dict) -> None:
    assert set(checkpoint.tensors) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(checkpoint.tensors[name], value.numpy(), err_msg=name)


def test_innat_blocks_are_read_in_numeric_order_also_from_a_whole_model_file(tmp_path):
    """TFBlock10 is the tenth block, not the second; model.save's .h5 keeps the weights under model_weights."""
    hf = reference.random_reference(seed=11, **DEEP)
    expected = reference.original_state_dict(hf)
    weights_only = reference.write_innat_h5(hf, tmp_path / "TFVideoMAE_T_K400_2x16_FT.h5")
    assert_same_tensors(read_innat_h5(weights_only, num_heads=2), expected)
    whole = tmp_path / "whole" / weights_only.name
    whole.parent.mkdir()
    with h5py.File(weights_only, "r") as source, h5py.File(whole, "w") as target:
        group = target.create_group("model_weights")
        for name in source:
            source.copy(source[name], group, name)
        group.attrs.update(source.attrs)
    checkpoint = read_innat_h5(whole, num_heads=2)
    assert_same_tensors(checkpoint, expected)
    assert checkpoint.architecture["num_layers"] == 10


def test_pth_state_dicts_under_state_dict_and_with_ddp_and_pretraining_prefixes(tmp_path):
    """module. (DistributedDataParallel) and encoder. (pretraining) prefixes are dropped, the decoder ignored."""
    hf = reference.random_reference(seed=12, **DEEP)
    expected = reference.original_state_dict(hf)
    state = {f"module.encoder.{name}": value for name, value in expected.items()}
    state["module.decoder.norm.weight"] = torch.ones(8)
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "pretrained.pth")
    assert_same_tensors(read_mcg_checkpoint(tmp_path / "pretrained.pth", num_heads=2), expected)


def test_a_folders_preprocessor_config_gives_the_normalisation(hf_state):
    folder, _ = hf_state
    assert read_hf_folder(folder).architecture["image_mean"] == IMAGENET_MEAN
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}))
    architecture = read_hf_folder(folder).architecture
    assert architecture["image_mean"] == (0.5, 0.5, 0.5) and architecture["image_std"] == (0.25, 0.25, 0.25)


def test_hugging_face_folders_videomae_cannot_read_are_refused(hf_state):
    folder, state = hf_state
    config = json.loads((folder / "config.json").read_text())
    refusals = {
        "describes a 'whisper' model, not videomae": {"model_type": "whisper"},
        "hidden_act 'gelu_new' is not supported": {"hidden_act": "gelu_new"},
        "use_mean_pooling false.* only mean-pooling checkpoints are supported": {"use_mean_pooling": False},
    }
    for message, change in refusals.items():
        (folder / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(CheckpointError, match=message):
            read_hf_folder(folder)
    (folder / "config.json").write_text(json.dumps(config))
    key_bias = "videomae.encoder.layer.0.attention.attention.key.bias"
    assert "blocks.0.attn.q_bias" in read_hf_folder(rewrite(folder, {**state, key_bias: np.zeros(48, np.float32)})).tensors
    with pytest.raises(CheckpointError, match="has no key bias, but this checkpoint's is not zero"):
        read_hf_folder(rewrite(folder, {**state, key_bias: np.ones(48, np.float32)}))
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    with pytest.raises(CheckpointError, match="sharded checkpoints are not supported"):
        read_hf_folder(folder)


def test_config_json_keys_left_out_take_transformers_defaults(hf_state):
    """A config.json that writes only what differs from VideoMAEConfig's defaults (hand-made or
    trimmed ones) reads as transformers builds it: the base model's sizes, exact gelu, mean pooling,
    q/v biases, eps 1e-12 and no label names; qv_bias (today's name) wins over qkv_bias (older transformers')."""
    folder, _ = hf_state

    def read(config):
        (folder / "config.json").write_text(json.dumps(config))
        return read_hf_folder(folder)

    default = VideoMAEConfig()
    checkpoint = read({})
    assert {key: checkpoint.architecture[key] for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size")} == {
        "hidden_size": default.hidden_size,
        "num_layers": default.num_hidden_layers,
        "num_heads": default.num_attention_heads,
        "intermediate_size": default.intermediate_size,
    }
    assert (checkpoint.architecture["patch_size"], checkpoint.architecture["tubelet_size"]) == (default.patch_size, default.tubelet_size)
    assert (checkpoint.architecture["num_frames"], checkpoint.architecture["image_size"]) == (default.num_frames, default.image_size)
    assert checkpoint.architecture["qkv_bias"] is True and checkpoint.label_names is None
    assert checkpoint.architecture["layer_norm_eps"] == default.layer_norm_eps == 1e-12
    assert checkpoint.architecture["fc_norm_eps"] == 1e-5
    assert read({"qv_bias": False}).architecture["qkv_bias"] is False
    assert read({"qkv_bias": False}).architecture["qkv_bias"] is False
    assert read({"qv_bias": True, "qkv_bias": False}).architecture["qkv_bias"] is True


def test_label_names_come_from_id2label_by_index_and_gaps_are_named_by_class(hf_state):
    folder, _ = hf_state  # a 5-class head
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"id2label": {"3": "sad", "0": "angry", "1": "happy"}}))
    assert read_hf_folder(folder).label_names == ["angry", "happy", "class_2", "sad", "class_4"]


def test_normalisation_from_the_first_preprocessor_config_that_has_mean_and_std(hf_state):
    """A preprocessor_config.json without the normalisation is passed over for the video one."""
    folder, _ = hf_state
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.1, 0.2, 0.3], "crop_size": 224}))
    (folder / "video_preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}))
    architecture = read_hf_folder(folder).architecture
    assert architecture["image_mean"] == (0.5, 0.5, 0.5) and architecture["image_std"] == (0.25, 0.25, 0.25)


def test_half_precision_weights_are_read_as_float32(tmp_path):
    """bfloat16 .pth (which numpy cannot hold) and float16 safetensors give the canonical float32 arrays."""
    hf = reference.random_reference(seed=13, **DEEP)
    state = reference.original_state_dict(hf)
    torch.save({"model": {name: value.to(torch.bfloat16) for name, value in state.items()}}, tmp_path / "bf16.pth")
    checkpoint = read_mcg_checkpoint(tmp_path / "bf16.pth", num_heads=2)
    assert {value.dtype for value in checkpoint.tensors.values()} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(checkpoint.tensors["head.weight"], state["head.weight"].to(torch.bfloat16).float().numpy())
    folder = HF_WRITERS["safetensors_new_keys"](hf, tmp_path / "hf")
    save_file({name: value.astype(np.float16) for name, value in load_file(str(folder / "model.safetensors")).items()}, str(folder / "model.safetensors"))
    checkpoint = read_hf_folder(folder)
    assert {value.dtype for value in checkpoint.tensors.values()} == {np.dtype(np.float32)}
    np.testing.assert_array_equal(checkpoint.tensors["head.weight"], state["head.weight"].half().float().numpy())


def test_a_hugging_face_pretraining_folder_reads_its_encoder_without_the_decoder(tmp_path):
    """VideoMAEForPreTraining's save_pretrained: mask_token, encoder_to_decoder and decoder.* are left out."""
    config = {key: value for key, value in DEEP.items() if key != "num_labels"}
    torch.manual_seed(14)
    decoder = dict(decoder_hidden_size=8, decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=8)
    VideoMAEForPreTraining(VideoMAEConfig(**config, **decoder)).save_pretrained(tmp_path / "hf")
    expected = {name for name in reference.original_state_dict(reference.random_reference(seed=0, **DEEP)) if not name.startswith(("fc_norm.", "head."))}
    checkpoint = read_hf_folder(tmp_path / "hf")
    assert set(checkpoint.tensors) == expected and checkpoint.label_names is None


def test_hugging_face_tensors_the_reader_does_not_expect_are_refused_by_name(hf_state):
    """A key bias with any non-zero entry, tensors outside the blocks or with an unknown suffix (all
    named), and a block's attention missing one of its three weights."""
    folder, state = hf_state
    key_bias = np.zeros(48, np.float32)
    key_bias[7] = 0.5
    with pytest.raises(CheckpointError, match="has no key bias, but this checkpoint's is not zero"):
        read_hf_folder(rewrite(folder, {**state, "videomae.encoder.layer.1.attention.attention.key.bias": key_bias}))
    extra = {"videomae.embeddings.position_ids": np.zeros(4, np.float32), "videomae.encoder.layer.0.output.dense_gate.weight": np.zeros(4, np.float32)}
    with pytest.raises(CheckpointError, match=r"does not know: videomae\.embeddings\.position_ids, videomae\.encoder\.layer\.0\.output\.dense_gate\.weight$"):
        read_hf_folder(rewrite(folder, {**state, **extra}))
    lacking = {name: value for name, value in state.items() if name != "videomae.encoder.layer.1.attention.attention.key.weight"}
    with pytest.raises(CheckpointError, match=r"missing tensors: block 1 has videomae\.encoder\.layer\.1\.attention\.attention\.\w+\.weight but no key weight$"):
        read_hf_folder(rewrite(folder, lacking))


def test_each_tensor_is_named_as_its_file_names_it(hf_state, tmp_path):
    """Messages name tensors as the file does: a folder's source names (the three attention weights
    as one), hf_name for tensors a folder lacks (old key style in brackets), an innat file's HDF5 paths."""
    folder, state = hf_state
    checkpoint = read_hf_folder(folder)
    layer = "videomae.encoder.layer.1."
    assert checkpoint.source_name("blocks.1.attn.qkv.weight") == layer + "attention.attention.{query,key,value}.weight"
    for canonical, source in checkpoint.source_names.items():
        assert {source.replace("{query,key,value}", kind) for kind in ("query", "key", "value")} <= set(state), canonical
        assert hf_name(canonical).split(" (or ")[0] == source
    assert hf_name("blocks.1.attn.q_bias") == layer + "attention.attention.query.bias (or q_bias)"
    assert hf_name("blocks.1.attn.v_bias") == layer + "attention.attention.value.bias (or v_bias)"
    assert hf_name("blocks.1.mlp.fc2.bias") == layer + "output.dense.bias"
    assert hf_name("blocks.1.attn.proj.bias") == layer + "attention.output.dense.bias"
    innat = read_innat_h5(reference.write_innat_h5(reference.random_reference(seed=0, **DEEP), tmp_path / "TFVideoMAE_T_K400_2x16_FT.h5"), num_heads=2)
    # The HDF5 path: Keras 2 keeps each weight under its layer's group, by its weight_names entry.
    assert innat.source_name("blocks.2.attn.qkv.weight") == "TFBlock3/TFBlock3/TFAttention3/dense/kernel:0"
    assert innat.source_name("head.weight") == "head/head/kernel:0"


def test_innat_groups_lacking_weights_are_refused_saying_which(tmp_path):
    hf = reference.random_reference(seed=15, **DEEP)
    for group, message in (
        ("TFBlock3", r"group TFBlock3 has 12 weights, expected 13 \(norm1\.weight, "),
        ("patch_embed", "group patch_embed has 1 weights, expected kernel and bias"),
    ):
        path = reference.write_innat_h5(hf, tmp_path / f"TFVideoMAE_T_K400_2x16_FT_{group}.h5")
        with h5py.File(path, "r+") as handle:
            handle[group].attrs["weight_names"] = handle[group].attrs["weight_names"][:-1]
        with pytest.raises(CheckpointError, match="missing tensors: .*" + message):
            read_innat_h5(path, num_heads=2)


def test_an_innat_file_without_head_or_clip_shape_in_its_name_is_the_pretrained_16x224_backbone(tmp_path):
    """Without fc_norm and head groups it has no head; without the release's _{frames}x{size} in its
    name the clip is VideoMAE's 16 frames of 224 px; innat's weights are MCG-NJU's, so eps is 1e-6."""
    hf = reference.random_reference(seed=16, **DEEP)
    path = reference.write_innat_h5(hf, tmp_path / "videomae_backbone.h5")
    with h5py.File(path, "r+") as handle:
        del handle["head"], handle["fc_norm"]
    checkpoint = read_innat_h5(path, num_heads=2)
    assert checkpoint.num_classes == 0 and not any(name.startswith(("head.", "fc_norm.")) for name in checkpoint.tensors)
    architecture = checkpoint.architecture
    assert (architecture["num_frames"], architecture["image_size"]) == (16, 224)
    assert architecture["layer_norm_eps"] == architecture["fc_norm_eps"] == 1e-6


def test_a_pretraining_pth_keeps_the_encoder_only_and_reads_blocks_past_ten(tmp_path):
    """MCG-NJU pre-training: the learnt pos_embed, mask_token, encoder_to_decoder and decoder are
    left out; blocks 10 and 11 are blocks; eps 1e-6 as in the original network."""
    hf = reference.random_reference(seed=17, **(DEEP | {"num_hidden_layers": 12}))
    encoder = {name: value for name, value in reference.original_state_dict(hf).items() if not name.startswith(("fc_norm.", "head."))}
    state = {f"encoder.{name}": value for name, value in encoder.items()}
    state |= {
        "encoder.pos_embed": torch.ones(1, 4, 8), "mask_token": torch.ones(1, 1, 8), "pos_embed": torch.ones(1, 4, 8),
        "encoder_to_decoder.weight": torch.ones(8, 8), "decoder.blocks.0.norm1.weight": torch.ones(8),
    }  # fmt: skip
    torch.save({"model": state, "epoch": 799}, tmp_path / "pretrained.pth")
    checkpoint = read_mcg_checkpoint(tmp_path / "pretrained.pth", num_heads=2)
    assert_same_tensors(checkpoint, encoder)
    assert checkpoint.architecture["num_layers"] == 12
    assert checkpoint.architecture["layer_norm_eps"] == checkpoint.architecture["fc_norm_eps"] == 1e-6


def test_pth_state_dicts_at_the_top_or_beside_a_model_name(tmp_path):
    """A state dict saved bare beside non-tensor entries, or under state_dict beside a "model" that is a name."""
    hf = reference.random_reference(seed=18, **DEEP)
    state = reference.original_state_dict(hf)
    torch.save({**state, "epoch": 3}, tmp_path / "bare.pth")
    assert_same_tensors(read_mcg_checkpoint(tmp_path / "bare.pth", num_heads=2), state)
    torch.save({"model": "vit_small_patch16_224", "state_dict": state}, tmp_path / "named.pth")
    assert_same_tensors(read_mcg_checkpoint(tmp_path / "named.pth", num_heads=2), state)


def test_pth_files_that_hold_no_videomae_state_dict_are_refused(tmp_path):
    """A list, unknown tensors (all named, also ones whose names begin like known ones), no patch
    embedding, and pickled code, which weights_only loading never runs."""
    state = reference.original_state_dict(reference.random_reference(seed=19, **DEEP))
    cases = {
        "list": ([state["head.weight"]], "holds a list, not a state dict of tensors"),
        "unknown": (
            {**state, "head_dist.weight": torch.ones(2, 8), "blocks.0.attn.relative_position_bias_table": torch.ones(3)},
            r"does not know: blocks\.0\.attn\.relative_position_bias_table, head_dist\.weight$",
        ),
        "no_patch": (
            {name: value for name, value in state.items() if not name.startswith("patch_embed.")},
            r"missing tensors: .*no_patch\.pth has no patch_embed\.proj\.weight",
        ),
    }
    for name, (content, message) in cases.items():
        torch.save({"model": content} if isinstance(content, dict) else content, tmp_path / f"{name}.pth")
        with pytest.raises(CheckpointError, match=message):
            read_mcg_checkpoint(tmp_path / f"{name}.pth", num_heads=2)
    torch.save({"model": state, "hook": print}, tmp_path / "code.pth")
    with pytest.raises(CheckpointError, match=r"code\.pth holds Python objects besides tensors \(print\), which are not loaded: loading them could run code; save the state dict alone"):
        read_mcg_checkpoint(tmp_path / "code.pth", num_heads=2)


def test_innat_weight_names_stored_as_keras_2_stores_them_as_fixed_length_bytes(tmp_path):
    """Keras 2's save_weights writes each group's weight_names as np.asarray of the encoded names (dtype S)."""
    hf = reference.random_reference(seed=20, **DEEP)
    path = reference.write_innat_h5(hf, tmp_path / "TFVideoMAE_T_K400_2x16_FT.h5")
    with h5py.File(path, "r+") as handle:
        for group in handle.values():
            group.attrs["weight_names"] = np.asarray([str(name).encode() for name in group.attrs["weight_names"]], dtype=bytes)
        assert handle["TFBlock1"].attrs["weight_names"].dtype.kind == "S"
    assert_same_tensors(read_innat_h5(path, num_heads=2), reference.original_state_dict(hf))
