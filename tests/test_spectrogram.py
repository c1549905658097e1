"""Log-Mel and MFCC features and their images: frequency placement, framing, images, atomic writes."""

import math

import numpy as np
import pytest
import scipy.fft
import scipy.signal
from PIL import Image

from avemotion.media.spectrogram import SpectrogramSettings, log_mel, mel_filterbank, mfcc, to_image, write_spectrograms

SETTINGS = SpectrogramSettings()


def tone(hz: float, seconds: float = 2.5, rate: int = 16000) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)


def slaney_centres(n_mels: int, fmax: float) -> np.ndarray:
    """Band centres straight from Slaney's formula: linear 200/3 Hz per mel to 1 kHz, then 27 mel per factor 6.4."""

    def to_mel(hz):
        return hz * 3 / 200 if hz < 1000 else 15 + 27 * math.log(hz / 1000) / math.log(6.4)

    def to_hz(mel):
        return mel * 200 / 3 if mel < 15 else 1000 * 6.4 ** ((mel - 15) / 27)

    step = to_mel(fmax) / (n_mels + 1)
    return np.array([to_hz(step * (k + 1)) for k in range(n_mels)])


@pytest.mark.parametrize("hz", [1000, 2500, 6000])
def test_a_pure_tone_lands_in_the_band_centred_nearest_it(hz):
    centres = slaney_centres(SETTINGS.n_mels, SETTINGS.sample_rate / 2)
    bins = np.linspace(0, SETTINGS.sample_rate / 2, SETTINGS.n_fft // 2 + 1)
    peaks = bins[mel_filterbank(SETTINGS).argmax(axis=1)]
    assert np.all(np.abs(peaks - centres) < bins[1])  # each filter peaks at a bin next to its centre

    loudest_band = log_mel(tone(hz), SETTINGS).mean(axis=1).argmax()
    assert loudest_band == np.abs(centres - hz).argmin()


@pytest.mark.parametrize("samples", [400, 401, 559, 560, 16000, 40000])
def test_frame_count_is_one_plus_whole_hops_after_the_first_window(samples):
    win, hop = SETTINGS.win_length, SETTINGS.hop_length
    assert (win, hop, SETTINGS.n_fft) == (400, 160, 512)
    assert log_mel(np.zeros(samples), SETTINGS).shape == (128, 1 + (samples - win) // hop)


def test_audio_shorter_than_a_window_gives_one_frame():
    assert log_mel(tone(1000)[:100], SETTINGS).shape == (128, 1)


def test_integer_pcm_is_scaled_to_unit_range():
    audio = tone(1000)
    pcm = np.round(audio * 32768).astype(np.int16)
    np.testing.assert_allclose(log_mel(pcm, SETTINGS), log_mel(pcm / 32768.0, SETTINGS), atol=1e-3)
    with pytest.raises(ValueError, match="unsigned"):
        log_mel(pcm.astype(np.uint16), SETTINGS)


def test_silence_gives_finite_values():
    features = log_mel(np.zeros(16000), SETTINGS)
    assert np.isfinite(features).all() and np.isfinite(mfcc(features, 40)).all()
    assert np.isfinite(to_image(features)).all()


def test_mfcc_is_the_orthonormal_dct_of_the_log_mel():
    features = log_mel(tone(440) + 0.01 * np.random.default_rng(0).standard_normal(40000), SETTINGS)
    expected = scipy.fft.dct(features.astype(np.float64), type=2, norm="ortho", axis=0)[:40]
    np.testing.assert_allclose(mfcc(features, 40), expected, rtol=1e-5, atol=1e-3)


def test_default_shapes_for_two_and_a_half_seconds(tmp_path):
    shapes = write_spectrograms(tone(1000), SETTINGS, tmp_path / "m.png", tmp_path / "c.png", tmp_path / "m.npy")
    assert shapes == {"log_mel": (128, 248), "mfcc": (40, 248)}
    assert np.load(tmp_path / "m.npy").shape == (128, 248)
    assert Image.open(tmp_path / "c.png").size == (248, 40)  # Pillow gives (width, height)


def test_db_image_mapping_puts_low_bands_at_the_bottom():
    features = np.array([[-100.0, -20.0], [-60.0, 0.0], [-40.0, -80.0]])  # band 0 (lowest) first
    expected = np.array([[128, 0], [64, 255], [0, 191]], dtype=np.uint8)  # v -> 255 * (v + 80) / 80, clipped
    np.testing.assert_array_equal(to_image(features, top_db=80), expected)


def test_minmax_image_mapping():
    features = np.array([[2.0, 4.0], [-2.0, 0.0]])
    np.testing.assert_array_equal(to_image(features, scaling="minmax"), [[0, 85], [170, 255]])
    assert not to_image(np.full((3, 4), 7.0), scaling="minmax").any()
    with pytest.raises(ValueError, match="scaling"):
        to_image(features, scaling="log")


def test_pngs_round_trip_with_the_low_band_at_the_bottom(tmp_path):
    audio = tone(300) + tone(5000)
    write_spectrograms(audio, SETTINGS, tmp_path / "m.png", tmp_path / "c.png", tmp_path / "m.npy")
    features = np.load(tmp_path / "m.npy")
    np.testing.assert_array_equal(features, log_mel(audio, SETTINGS))

    mel_image = Image.open(tmp_path / "m.png")
    assert mel_image.mode == "L"
    pixels = np.asarray(mel_image)
    np.testing.assert_array_equal(pixels, to_image(features))
    np.testing.assert_array_equal(pixels[::-1], np.rint(255 * np.clip((features - features.max() + 80) / 80, 0, 1)))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c.png")), to_image(mfcc(features, 40), scaling="minmax"))

    centres = slaney_centres(SETTINGS.n_mels, SETTINGS.sample_rate / 2)
    low_row = SETTINGS.n_mels - 1 - np.abs(centres - 300).argmin()
    assert low_row > SETTINGS.n_mels // 2 and pixels[low_row].mean() > 200  # the 300 Hz tone, bright, in the lower half


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path, monkeypatch):
    out = tmp_path / "out"
    paths = (out / "m.png", out / "c.png", out / "m.npy")
    write_spectrograms(tone(1000), SETTINGS, *paths)
    assert sorted(p.name for p in out.iterdir()) == ["c.png", "m.npy", "m.png"]

    # A write that fails half-way leaves the previous file intact and no temporary behind.
    before = paths[2].read_bytes()

    def broken_save(handle, array):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_spectrograms(tone(2000), SETTINGS, *paths)
    assert paths[2].read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["c.png", "m.npy", "m.png"]


def test_filterbank_is_cached_per_settings_and_read_only():
    assert mel_filterbank(SETTINGS) is mel_filterbank(SpectrogramSettings())
    assert mel_filterbank(SpectrogramSettings(n_mels=64)).shape == (64, 257)
    assert not mel_filterbank(SETTINGS).flags.writeable
    assert (mel_filterbank(SETTINGS).sum(axis=1) > 0).all()  # no empty band


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="fmax"):
        SpectrogramSettings(fmax=9000)
    with pytest.raises(ValueError, match="n_mfcc"):
        SpectrogramSettings(n_mels=20, n_mfcc=40)


def test_log_mel_matches_a_plain_stft_with_a_periodic_hann_window():
    """Frames of 400 samples every 160, periodic Hann, zero-padded to 512, power spectrum through the
    filterbank, 10 log10: the same numbers from a straightforward float64 computation."""
    audio = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000) + 0.001 * np.random.default_rng(1).standard_normal(8000)
    win, hop = SETTINGS.win_length, SETTINGS.hop_length
    frames = np.stack([audio[i * hop : i * hop + win] for i in range(1 + (len(audio) - win) // hop)])
    power = np.abs(np.fft.rfft(frames * scipy.signal.get_window("hann", win), n=SETTINGS.n_fft, axis=1)) ** 2
    expected = 10 * np.log10(np.maximum(mel_filterbank(SETTINGS).astype(np.float64) @ power.T, 1e-10))
    np.testing.assert_allclose(log_mel(audio, SETTINGS), expected, atol=0.05)


def test_levels_are_power_in_decibels_with_silence_at_minus_100():
    loud, quiet = log_mel(tone(1000), SETTINGS), log_mel(0.1 * tone(1000), SETTINGS)
    band = loud.mean(axis=1).argmax()
    np.testing.assert_allclose(loud[band] - quiet[band], 20.0, atol=0.01)  # a tenth of the amplitude: 20 dB down
    np.testing.assert_allclose(log_mel(np.zeros(16000), SETTINGS), -100.0, atol=1e-3)  # the power floor, 1e-10


def test_white_noise_is_level_across_bands():
    """Slaney area normalisation: the wide high bands do not collect more of a flat spectrum's power
    than the narrow low ones (unnormalised, the top band would sit about 9 dB above the lowest)."""
    noise = 0.1 * np.random.default_rng(0).standard_normal(5 * SETTINGS.sample_rate)
    levels = log_mel(noise, SETTINGS).mean(axis=1)
    assert levels.max() - levels.min() < 4.0
    assert abs(levels[-16:].mean() - levels[16:32].mean()) < 2.5  # about 1.7: fewer bins per low band, more spread in dB


def test_a_silent_clips_image_is_black_and_top_db_must_be_positive():
    assert not to_image(log_mel(np.zeros(16000), SETTINGS)).any()
    with pytest.raises(ValueError, match="top_db"):
        to_image(log_mel(tone(1000), SETTINGS), top_db=0)


def test_a_power_of_two_window_is_its_own_fft_length():
    settings = SpectrogramSettings(window_ms=32.0)  # 512 samples at 16 kHz
    assert (settings.win_length, settings.n_fft) == (512, 512)
    assert mel_filterbank(settings).shape == (128, 257)
    assert log_mel(tone(1000), settings).shape == (128, 1 + (40000 - 512) // 160)


def test_fmin_and_fmax_bound_the_filters():
    settings = SpectrogramSettings(fmin=300.0, fmax=4000.0)
    bins = np.linspace(0, settings.sample_rate / 2, settings.n_fft // 2 + 1)
    weights = mel_filterbank(settings)
    assert not weights[:, (bins <= 300) | (bins >= 4000)].any()
    assert weights[0, (bins > 300) & (bins < 400)].any() and weights[-1, (bins > 3600) & (bins < 4000)].any()
    assert log_mel(tone(200), settings).mean(axis=1).argmax() == 0  # below fmin, only the lowest band's skirt reaches it
