"""The Keras Whisper encoder and its features against transformers (test-only), <= 1e-4; the speech head."""

from __future__ import annotations

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import WhisperFeatureExtractor, WhisperForAudioClassification  # noqa: E402
from transformers.audio_utils import mel_filter_bank  # noqa: E402
from transformers.models.whisper.modeling_whisper import WhisperEncoder, sinusoids  # noqa: E402
from whisper_reference import (  # noqa: E402
    SHAPES,
    TOLERANCE,
    features,
    hf_config,
    hf_encoder,
    keras_encoder,
    max_differences,
    randomise,
    to_numpy,
)

from avemotion.model.speech_head import WeightedLayerPooling  # noqa: E402
from avemotion.model.whisper import (  # noqa: E402
    WHISPER_PRESETS,
    WhisperBackbone,
    encoder_frame_mask,
    encoder_frames,
    whisper_settings,
    whisper_sinusoids,
)
from avemotion.model.whisper_features import N_FRAMES, log_mel_spectrogram, mel_filters  # noqa: E402


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_hidden_state_matches_transformers(shape):
    encoder = hf_encoder(shape)
    backbone = keras_encoder(SHAPES[shape], encoder.state_dict())
    batch = features(SHAPES[shape]["num_mel_bins"], 2 * SHAPES[shape]["max_source_positions"])
    differences = max_differences(backbone, encoder, batch)
    assert max(differences) <= TOLERANCE, differences


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_shorter_input_uses_the_first_positions(shape):
    """transformers takes exactly 2 * max_source_positions frames; a shorter input here equals its
    encoder built for that length with the first rows of the same table."""
    encoder = hf_encoder(shape, seed=1)
    backbone = keras_encoder(SHAPES[shape], encoder.state_dict())
    positions = SHAPES[shape]["max_source_positions"] - 6
    short = WhisperEncoder(hf_config(**{**SHAPES[shape], "max_source_positions": positions})).eval()
    state = dict(encoder.state_dict())
    state["embed_positions.weight"] = state["embed_positions.weight"][:positions]
    short.load_state_dict(state)
    batch = features(SHAPES[shape]["num_mel_bins"], 2 * positions, seed=2)
    differences = max_differences(backbone, short, batch)
    assert max(differences) <= TOLERANCE, differences
    odd = backbone(features(SHAPES[shape]["num_mel_bins"], 2 * positions - 1))
    assert odd[0].shape[1] == positions  # conv2 rounds up, as torch's does


def test_longer_input_than_the_table_is_refused():
    backbone = WhisperBackbone(**SHAPES["2_layers_4_heads"])
    with pytest.raises(ValueError, match="21 positions after the convolutions, but the table has 20"):
        backbone(features(16, 42))


def test_position_table_is_whispers_and_presets_are_the_published_configs():
    np.testing.assert_allclose(whisper_sinusoids(1500, 512), sinusoids(1500, 512).numpy(), atol=2e-4)  # see its docstring
    assert list(WHISPER_PRESETS) == ["tiny", "base", "small", "medium", "large-v2", "large-v3"]
    sizes = {name: (p["d_model"], p["encoder_layers"], p["encoder_attention_heads"], p["encoder_ffn_dim"], p["num_mel_bins"]) for name, p in WHISPER_PRESETS.items()}
    assert sizes["base"] == (512, 6, 8, 2048, 80) and sizes["small"] == (768, 12, 12, 3072, 80)
    assert sizes["medium"] == (1024, 24, 16, 4096, 80) and sizes["large-v3"] == (1280, 32, 20, 5120, 128)
    assert all(p["max_source_positions"] == 1500 for p in WHISPER_PRESETS.values())
    with pytest.raises(ValueError, match="unknown Whisper preset 'huge'"):
        whisper_settings("huge")


def test_preset_settings_are_copies_and_from_preset_takes_overrides():
    """whisper_settings is "a copy, safe to change"; from_preset's keywords replace the preset's."""
    settings = whisper_settings("tiny")
    settings["d_model"] = 8
    assert whisper_settings("tiny")["d_model"] == 384 and WHISPER_PRESETS["tiny"]["d_model"] == 384
    backbone = WhisperBackbone.from_preset("tiny", encoder_layers=1, max_source_positions=4)
    assert backbone.architecture["encoder_layers"] == 1 and backbone.architecture["d_model"] == 384
    assert len(backbone.outputs) == 2 and backbone.get_layer("embed_positions").embeddings.shape == (4, 384)


def test_encoder_steps_are_half_the_frames_rounded_up_as_the_encoder_computes():
    """encoder_frames (and so the pooling mask) counts the steps conv2 gives, odd frame counts included."""
    assert encoder_frames(3000) == 1500 and encoder_frames([1, 2, 7, 8]).tolist() == [1, 1, 4, 4]
    backbone = WhisperBackbone(**SHAPES["2_layers_4_heads"])
    for frames in (7, 8):
        assert backbone(features(16, frames))[0].shape[1] == encoder_frames(frames)
    assert encoder_frame_mask(7, 10).tolist() == [[True] * 4 + [False]]


def test_a_width_the_heads_do_not_divide_is_refused():
    with pytest.raises(ValueError, match="d_model 30 is not a multiple of 4 heads"):
        WhisperBackbone(**{**SHAPES["2_layers_4_heads"], "d_model": 30})


# Encoder parameters of the published checkpoints (transformers' WhisperEncoder of each config).
PUBLISHED_ENCODER_PARAMETERS = {"base": 20_590_592, "small": 88_154_112, "large-v3": 636_968_960}


@pytest.mark.parametrize("preset", ["base", "small"])
def test_parameter_counts_of_built_encoders(preset):
    with torch.device("meta"):
        reference = sum(p.numel() for p in WhisperEncoder(hf_config(**whisper_settings(preset))).parameters())
    backbone = WhisperBackbone.from_preset(preset)
    assert backbone.count_params() == reference == PUBLISHED_ENCODER_PARAMETERS[preset]
    keras.backend.clear_session()


def test_parameter_count_of_large_v3_without_building_it_whole():
    """2.5 GB in float32: the stem and one layer are built, the other 31 layers are that layer's count."""
    settings = whisper_settings("large-v3")
    with torch.device("meta"):
        reference = sum(p.numel() for p in WhisperEncoder(hf_config(**settings)).parameters())
    one_layer = WhisperBackbone(**{**settings, "encoder_layers": 1})
    per_layer = one_layer.get_layer("layers_0").count_params()
    total = one_layer.count_params() + (settings["encoder_layers"] - 1) * per_layer
    assert total == reference == PUBLISHED_ENCODER_PARAMETERS["large-v3"]
    keras.backend.clear_session()


def signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like test audio: a gliding harmonic tone with noise and a silent gap."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    pitch = 120 + 60 * np.sin(2 * np.pi * 0.7 * t)
    tone = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / 16000) / k for k in range(1, 6))
    audio = 0.2 * tone + 0.02 * rng.normal(size=t.size)
    audio[len(audio) // 3 : len(audio) // 3 + 4000] = 0.0
    return audio.astype(np.float32)


@pytest.mark.parametrize("bins", [80, 128])
def test_mel_filters_are_transformers(bins):
    reference = mel_filter_bank(201, bins, 0.0, 8000.0, 16000, norm="slaney", mel_scale="slaney")
    np.testing.assert_array_equal(mel_filters(bins), reference)


@pytest.mark.parametrize("bins", [80, 128])
@pytest.mark.parametrize("seconds", [3.27159, 31.5])  # not a whole number of hops; longer than 30 s
def test_padded_features_match_the_feature_extractor(bins, seconds):
    audio = signal(seconds)
    extractor = WhisperFeatureExtractor(feature_size=bins)
    reference = extractor(audio, sampling_rate=16000, return_tensors="np").input_features[0]
    ours = log_mel_spectrogram(audio, bins)
    assert ours.shape == (N_FRAMES, bins)
    assert np.abs(ours.T - reference).max() <= TOLERANCE  # its torch STFT, in float32
    padded = np.pad(audio[:480000], (0, max(0, 480000 - audio.size)))
    numpy_path = extractor._np_extract_fbank_features(padded[None], "cpu")[0]
    np.testing.assert_array_equal(ours.T, numpy_path)


@pytest.mark.parametrize("bins", [80, 128])
def test_unpadded_features_match_the_feature_extractor(bins):
    clips = [signal(2.5), signal(4.01234, seed=1)]
    extractor = WhisperFeatureExtractor(feature_size=bins)
    ours = log_mel_spectrogram(clips, bins, pad=False)
    for clip, mine in zip(clips, ours):
        reference = extractor(clip, sampling_rate=16000, return_tensors="np", padding=False).input_features[0]
        assert mine.shape == (clip.size // 160, bins) == reference.T.shape
        assert np.abs(mine.T - reference).max() <= TOLERANCE
        np.testing.assert_array_equal(mine.T, extractor._np_extract_fbank_features(clip[None], "cpu")[0])
    batch = log_mel_spectrogram(np.stack([clips[0], clips[0]]), bins, pad=False)
    np.testing.assert_array_equal(batch[1], ours[0])


def test_a_batch_is_one_array_and_clips_of_any_lengths_in_a_list_or_tuple_are_a_list():
    clips = (signal(0.5), signal(0.73, seed=1))
    batch = log_mel_spectrogram(np.stack([clips[0], clips[0]]), pad=False)
    assert isinstance(batch, np.ndarray) and batch.shape == (2, 50, 80)
    each = log_mel_spectrogram(clips, pad=False)
    assert isinstance(each, list) and [mine.shape for mine in each] == [(50, 80), (73, 80)]
    np.testing.assert_array_equal(each[1], log_mel_spectrogram(clips[1], pad=False))


def test_float64_audio_has_the_features_of_its_float32_samples():
    """As transformers converts its input to float32 first: the same samples, the same features to the bit."""
    audio = np.random.default_rng(3).normal(0.0, 0.1, 16000)
    np.testing.assert_array_equal(log_mel_spectrogram(audio, pad=False), log_mel_spectrogram(audio.astype(np.float32), pad=False))


def test_the_cached_mel_filters_cannot_be_changed_by_a_caller():
    with pytest.raises(ValueError, match="read-only"):
        mel_filters(80)[0, 0] = 1.0


def test_silence_is_the_floor_everywhere():
    """Silence reaches log10(1e-10) = -10 in every bin, which (x + 4) / 4 makes -1.5 (not NaN, not -inf)."""
    np.testing.assert_array_equal(log_mel_spectrogram(np.zeros(16000, np.float32), pad=False), np.full((100, 80), -1.5, np.float32))


def test_the_shortest_clip_is_one_frame_and_shorter_ones_are_refused():
    """201 samples (half a window and one) are the least the reflect padding takes: len // 160 = 1 frame."""
    assert log_mel_spectrogram(signal(1.0)[:201], pad=False).shape == (1, 80)
    with pytest.raises(ValueError, match="200 samples are too few for Whisper features"):
        log_mel_spectrogram(signal(1.0)[:200], pad=False)


def test_features_refuse_other_rates_and_stereo():
    with pytest.raises(ValueError, match="need 16000 Hz audio, not 44100 Hz"):
        log_mel_spectrogram(signal(1.0), sampling_rate=44100)
    with pytest.raises(ValueError, match="must be mono"):
        log_mel_spectrogram(np.zeros((2, 2, 16000), np.float32))


def test_weighted_layer_pooling_is_the_audio_classification_head():
    """With transformers' layer weights, pooling then its projector and classifier gives its logits."""
    shape = "3_layers_2_heads"
    model = randomise(WhisperForAudioClassification(hf_config(**SHAPES[shape], use_weighted_layer_sum=True)), 3)
    backbone = keras_encoder(SHAPES[shape], model.encoder.state_dict())
    batch = features(SHAPES[shape]["num_mel_bins"], 2 * SHAPES[shape]["max_source_positions"])
    states = backbone(batch)
    pooling = WeightedLayerPooling()
    pooling.build([state.shape for state in states])
    pooling.layer_weights.assign(model.layer_weights.detach().numpy())
    pooled = to_numpy(pooling(states))
    projector, classifier = model.projector, model.classifier
    logits = (pooled @ projector.weight.detach().numpy().T + projector.bias.detach().numpy()) @ classifier.weight.detach().numpy().T
    logits += classifier.bias.detach().numpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(batch.transpose(0, 2, 1).copy())).logits.numpy()
    assert np.abs(logits - expected).max() <= TOLERANCE
    np.testing.assert_allclose(pooling.layer_probabilities().sum(), 1.0, rtol=1e-6)


def test_weighted_layer_pooling_averages_only_masked_frames():
    states = [np.random.default_rng(i).normal(size=(2, 5, 4)).astype(np.float32) for i in range(3)]
    mask = encoder_frame_mask([6, 10], 10)  # 3 and 5 of 5 encoder steps
    assert mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    pooled = to_numpy(WeightedLayerPooling()(states, frame_mask=mask))
    mixed = sum(states) / 3
    np.testing.assert_allclose(pooled[0], mixed[0, :3].mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(pooled[1], mixed[1].mean(axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="takes a list of hidden states"):
        WeightedLayerPooling()(states[0])


def test_weighted_layer_pooling_starts_with_equal_weights_and_needs_its_layer_count():
    """As transformers' 1 / L start: before training every layer counts the same."""
    states = [np.random.default_rng(i).normal(size=(2, 5, 4)).astype(np.float32) for i in range(3)]
    pooling = WeightedLayerPooling()
    np.testing.assert_allclose(to_numpy(pooling(states)), (sum(states) / 3).mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(pooling.layer_probabilities(), [1 / 3] * 3, rtol=1e-6)
    with pytest.raises(ValueError, match="built for 3 hidden states, called with 2"):
        pooling(states[:2])


def test_weighted_layer_pooling_of_a_clip_without_valid_frames_is_zero_not_nan():
    states = [np.ones((1, 4, 3), np.float32)] * 2
    pooled = to_numpy(WeightedLayerPooling()(states, frame_mask=np.zeros((1, 4), bool)))
    np.testing.assert_array_equal(pooled, np.zeros((1, 3), np.float32))



def test_whisper_tiny_at_full_length_on_audio_features():
    """The tiny preset's real size over 30 s of features (1500 positions): what tiny configs cannot show."""
    settings = whisper_settings("tiny")
    encoder = randomise(WhisperEncoder(hf_config(**settings)), 4)
    backbone = keras_encoder(settings, encoder.state_dict())
    batch = log_mel_spectrogram(signal(7.3))[None]
    differences = max_differences(backbone, encoder, batch)
    assert max(differences) <= TOLERANCE, differences
    keras.backend.clear_session()

def test_xla_compiled_forward_matches_eager_and_runs_in_mixed_bfloat16():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("XLA through tf.function")
    import tensorflow as tf

    backbone = WhisperBackbone(**SHAPES["2_layers_4_heads"])
    batch = features(16, 34)
    compiled = tf.function(lambda x: backbone(x, training=False), jit_compile=True)
    for ours, eager in zip(compiled(batch), backbone(batch)):
        np.testing.assert_allclose(to_numpy(ours), to_numpy(eager), atol=1e-5)
    mixed = WhisperBackbone(**SHAPES["2_layers_4_heads"], dtype="mixed_bfloat16")
    assert all(weight.dtype == "float32" for weight in mixed.weights)
    states = mixed(batch)
    assert states[-1].dtype == "bfloat16" and np.all(np.isfinite(to_numpy(keras.ops.cast(states[-1], "float32"))))
    # its config rebuilds it in the same precision (the functional constructor alone would drop it)
    assert WhisperBackbone.from_config(mixed.get_config())(batch)[-1].dtype == "bfloat16"

