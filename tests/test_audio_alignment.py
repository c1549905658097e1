"""The audio stage puts a clip's audio on the video's time axis: the WAV covers exactly the video
stream's span (silence where the audio starts late or ends early, cut where it runs over), the chunk
table records the offset, coverage, padding and trimming, and flags (and, when configured,
quarantines) a clip whose audio does not match its video. CREMA-D's separate AudioWAV starts at its
video's start and, 1.4-2.4% longer than the FLV's video, is trimmed to it without a flag. Real
files' audio: gaps in a stream stay gaps, the stream players pick is the one decoded, channels that
cancel or have no standard layout still give the sound, and a stream without samples is no audio."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest

from avemotion.layout import ClipArtifacts
from avemotion.media import audio as audio_module
from avemotion.media.audio import SAMPLE_RATE, Alignment, DecodedAudio, Span, _frame_spans, _gaps, decode_audio, read_wav, video_span, write_wav
from avemotion.media.probe import PACKET_KEY, Packets
from avemotion.media.spectrogram import SpectrogramSettings, write_spectrograms
from avemotion.preprocess import stages
from avemotion.preprocess.chunk import run_chunk
from avemotion.preprocess.stages import AudioStage
from conftest import ffmpeg

SETTINGS = {"window_ms": 25, "hop_ms": 10, "n_mels": 32, "n_mfcc": 13, "missing": "quarantine"}
FPS = 25
FRAME = 1 / FPS


def make_clip(path: Path, video_s: float, audio_s: float, audio_start: float = 0.0, **codecs) -> Path:
    """A test-pattern video of ``video_s`` seconds with a 440 Hz tone of ``audio_s`` seconds whose
    stream starts ``audio_start`` seconds after the video's (-itsoffset: the container's clock)."""
    video = ["-f", "lavfi", "-i", f"testsrc=size=64x48:rate={codecs.get('fps', FPS)}:duration={video_s}"]
    audio = ["-itsoffset", audio_start, "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={codecs.get('rate', 16000)}:duration={audio_s}"]
    encode = ["-c:v", codecs.get("video", "libx264"), "-pix_fmt", "yuv420p", "-c:a", codecs.get("audio", "pcm_s16le")]
    ffmpeg(*video, *audio, "-map", "0:v", "-map", "1:a", *encode, path)
    return path


def run_audio(root: Path, out: Path, clips: list[dict], **settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(chunk table, quarantine part) of the audio stage over ``clips`` under ``root``, written to ``out``."""
    stage = AudioStage(root, out, {**SETTINGS, **settings})
    table = run_chunk(stage, clips, out / "t.parquet", out / "q.csv").set_index("clip_id")
    return table, pd.read_csv(out / "q.csv")


def clip(name: str, path: str, audio_path: str = "") -> dict:
    return {"clip_id": name, "path": path, "audio_path": audio_path}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("alignment")
    make_clip(root / "late.mov", 2, 1.5, audio_start=0.5)
    make_clip(root / "short.mov", 2, 0.8)
    # CREMA-D: an FLV (FLV1 video, MP3 audio) and its AudioWAV, 2% longer than the video
    (root / "VideoFlash").mkdir()
    (root / "AudioWAV").mkdir()
    make_clip(root / "VideoFlash" / "1001_DFA_ANG_XX.flv", 2, 2.04, fps=29.97, video="flv1", audio="libmp3lame", rate=44100)
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=2.04", "-c:a", "pcm_s16le", root / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    return root


def test_audio_that_starts_late_is_padded_with_silence_to_the_videos_span(media):
    table, quarantine = run_audio(media, media / "late", [clip("late", "late.mov")])
    row = table.loc["late"]
    assert row["status"] == "ok" and quarantine.empty
    audio, rate = read_wav(ClipArtifacts(media / "late", "late").wav)
    assert rate == SAMPLE_RATE
    assert abs(len(audio) / rate - 2.0) < FRAME  # as long as the video, within a frame
    onset = np.argmax(np.abs(audio) > 0.05) / rate
    assert abs(onset - 0.5) < 0.01 and np.abs(audio[: int(0.49 * rate)]).max() < 1e-3  # silence first
    assert row["audio_offset_s"] == pytest.approx(0.5, abs=0.01)
    assert row["audio_coverage"] == pytest.approx(0.75, abs=0.01)
    assert row["audio_padded_s"] == pytest.approx(0.5, abs=0.01) and row["audio_trimmed_s"] == pytest.approx(0, abs=0.01)
    assert row["duration_s"] == pytest.approx(2.0, abs=FRAME)
    assert row["audio_misaligned"]  # 75% < audio.min_coverage 0.9: flagged, and kept (audio.misaligned: keep)


def test_audio_shorter_than_half_its_video_is_flagged_and_quarantined_when_configured(media):
    table, quarantine = run_audio(media, media / "keep", [clip("short", "short.mov")])
    assert table.loc["short", "status"] == "ok" and bool(table.loc["short", "audio_misaligned"]) and quarantine.empty
    assert table.loc["short", "audio_coverage"] == pytest.approx(0.4, abs=0.01)
    table, quarantine = run_audio(media, media / "quarantine", [clip("short", "short.mov")], misaligned="quarantine")
    assert table.loc["short", "status"] == "quarantined"
    assert quarantine["reason"].tolist() == [
        "misaligned audio: short.mov: real audio covers 40% of the video's 2.00 s (audio 0.00-0.80 s, "
        "video 0.00-2.00 s), less than audio.min_coverage (0.9)"
    ]
    # a looser threshold keeps it unflagged
    table, _ = run_audio(media, media / "loose", [clip("short", "short.mov")], min_coverage=0.3, misaligned="quarantine")
    assert table.loc["short", "status"] == "ok" and not table.loc["short", "audio_misaligned"]


def test_audio_that_runs_far_past_its_video_is_flagged(media):
    root = media / "overrun"
    root.mkdir()
    make_clip(root / "long.mov", 1, 2.5)
    table, quarantine = run_audio(root, root / "out", [clip("long", "long.mov")], misaligned="quarantine")
    assert table.loc["long", "status"] == "quarantined"
    assert quarantine["reason"][0].startswith("misaligned audio: long.mov: 1.50 s of audio lie outside the video's 1.00 s")
    assert quarantine["reason"][0].endswith("more than audio.max_overrun_s (0.5 s)")


def test_a_crema_d_wav_two_percent_longer_than_its_video_is_trimmed_to_it_without_a_flag(media):
    wav = media / "AudioWAV" / "1001_DFA_ANG_XX.wav"
    flv = media / "VideoFlash" / "1001_DFA_ANG_XX.flv"
    pair = clip("1001_DFA_ANG_XX", "VideoFlash/1001_DFA_ANG_XX.flv", "AudioWAV/1001_DFA_ANG_XX.wav")
    stage = AudioStage(media, media / "crema", SETTINGS)
    assert stage.sources(pair) == [wav, flv]  # the video's span decides the WAV's length: a changed FLV redoes it
    table = run_chunk(stage, [pair], media / "crema.parquet", media / "crema.csv").set_index("clip_id")
    row = table.loc[pair["clip_id"]]
    span = video_span(flv)
    assert row["status"] == "ok" and row["audio_source"] == "AudioWAV" and not row["audio_misaligned"]
    assert span.duration == pytest.approx(2.0, abs=0.05)
    assert row["audio_offset_s"] == 0 and row["audio_coverage"] == 1 and row["audio_padded_s"] == 0
    assert row["audio_trimmed_s"] == pytest.approx(2.04 - span.duration, abs=0.002)
    written, _ = read_wav(ClipArtifacts(media / "crema", pair["clip_id"]).wav)
    original, _ = read_wav(wav)
    assert len(written) == round(span.duration * SAMPLE_RATE)  # trimmed to the video's span
    np.testing.assert_array_equal(written, original[: len(written)])  # its own start kept: sample for sample


def test_an_unreadable_crema_d_wav_gives_way_to_its_videos_audio_and_a_mute_video_keeps_the_wavs_reason(media, tmp_path):
    """CREMA-D's FLV holds the same recording as its AudioWAV: a WAV cut to its header, or not audio
    at all, is read from the FLV instead, said in audio_source; without audio in the video either,
    the clip is quarantined for the WAV's own reason."""
    root = tmp_path / "crema"
    (root / "AudioWAV").mkdir(parents=True)
    shutil.copytree(media / "VideoFlash", root / "VideoFlash")
    (root / "AudioWAV" / "1001_DFA_ANG_XX.wav").write_bytes((media / "AudioWAV" / "1001_DFA_ANG_XX.wav").read_bytes()[:44])
    pair = clip("1001_DFA_ANG_XX", "VideoFlash/1001_DFA_ANG_XX.flv", "AudioWAV/1001_DFA_ANG_XX.wav")
    table, quarantine = run_audio(root, root / "out", [pair])
    row = table.loc[pair["clip_id"]]
    assert row["status"] == "ok" and quarantine.empty
    assert row["audio_source"].startswith("video (the separate file: not a media file: 1001_DFA_ANG_XX.wav: ")
    written, _ = read_wav(ClipArtifacts(root / "out", pair["clip_id"]).wav)
    assert len(written) == round(video_span(root / pair["path"]).duration * SAMPLE_RATE) and np.abs(written).max() > 0.05  # the FLV's tone
    # a video without audio: the WAV's reason, not the video's
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1", "-c:v", "flv1", root / "VideoFlash" / "1002_DFA_ANG_XX.flv")
    (root / "AudioWAV" / "1002_DFA_ANG_XX.wav").write_text("not audio")
    mute = clip("1002_DFA_ANG_XX", "VideoFlash/1002_DFA_ANG_XX.flv", "AudioWAV/1002_DFA_ANG_XX.wav")
    table, quarantine = run_audio(root, root / "out2", [mute])
    assert table.loc[mute["clip_id"], "status"] == "quarantined"
    assert quarantine["reason"][0].startswith("not a media file: 1002_DFA_ANG_XX.wav")


def test_the_real_video_has_its_audio_over_the_whole_video(real_media, tmp_path):
    video = real_media / "WolfgangLanger_Pexels.mp4"
    table, quarantine = run_audio(real_media, tmp_path, [clip("wolfgang", video.name)], misaligned="quarantine")
    row = table.loc["wolfgang"]
    assert row["status"] == "ok" and quarantine.empty and not row["audio_misaligned"]
    assert row["audio_coverage"] > 0.99 and abs(row["audio_offset_s"]) < 0.01 and row["audio_padded_s"] < 0.01
    assert row["duration_s"] == pytest.approx(video_span(video).duration, abs=1 / SAMPLE_RATE)  # 472 frames at 23.976 fps
    assert video_span(video).duration == pytest.approx(472 / (24000 / 1001), abs=1e-3)


@pytest.mark.parametrize(
    "audio, offset, coverage, padded, trimmed",
    [
        (Span(0.5, 2.0), 0.5, 0.75, 0.5, 0.0),  # starts late
        (Span(-0.25, 1.0), -0.25, 0.5, 1.0, 0.25),  # starts early and ends early
        (Span(0.0, 2.04), 0.0, 1.0, 0.0, 0.04),  # runs over
        (Span(3.0, 4.0), 3.0, 0.0, 2.0, 1.0),  # no overlap at all
    ],
)
def test_alignment_numbers_and_fit(audio, offset, coverage, padded, trimmed):
    rate = 100
    alignment = Alignment(Span(0.0, 2.0), audio)
    assert (alignment.offset_s, alignment.coverage, alignment.padded_s, alignment.trimmed_s) == pytest.approx((offset, coverage, padded, trimmed))
    samples = np.arange(1, int(round(audio.duration * rate)) + 1, dtype=np.int16)
    fitted = alignment.fit(samples, rate)
    assert len(fitted) == 200
    times = np.arange(200) / rate
    inside = (times >= audio.start - 1e-9) & (times < audio.end - 1e-9)
    assert (fitted[~inside] == 0).all() and (fitted[inside] != 0).all()
    if inside.any():
        assert fitted[inside][0] == 1 + int(round(max(0.0, -audio.start) * rate))


def test_a_separate_file_starts_at_the_videos_start():
    decoded = DecodedAudio(np.zeros(16000, np.int16), 16000, start=0.0)
    alignment = Alignment.of(decoded, Span(0.025, 1.025), separate=True)
    assert alignment.audio == Span(0.025, 1.025) and alignment.offset_s == 0
    assert Alignment.of(decoded, Span(0.025, 1.025)).offset_s == pytest.approx(-0.025)  # the video's own audio keeps its clock


def loudness(audio: np.ndarray, start: float, end: float) -> float:
    """RMS of ``audio`` (at SAMPLE_RATE) between ``start`` and ``end`` seconds."""
    part = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
    return float(np.sqrt(np.mean(part.astype(np.float64) ** 2)))


def test_a_gap_in_the_audio_stream_is_filled_with_silence_so_what_follows_keeps_its_time(tmp_path):
    """Packets lost from a stream (a dropped network packet, a damaged one) leave a gap in its
    timestamps: the audio after it stays at its time, under its frames, and the gap counts as not
    covered. Joined end to end, everything after a 0.5 s gap would sit 0.5 s early."""
    tone = "sine=frequency=440:sample_rate=44100:duration=4,volume='if(between(t,3,3.3),0,1)':eval=frame"  # a pause at 3.0-3.3 s
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=4", "-f", "lavfi", "-i", tone, "-map", "0:v", "-map", "1:a",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", tmp_path / "whole.mp4")
    ffmpeg("-i", tmp_path / "whole.mp4", "-map", "0", "-c", "copy", "-bsf:a", "noise=amount=0:dropamount=0:drop='between(pts*tb,1.5,2)'", tmp_path / "lost.mp4")
    table, quarantine = run_audio(tmp_path, tmp_path / "out", [clip("whole", "whole.mp4"), clip("lost", "lost.mp4")])
    assert (table["status"] == "ok").all() and quarantine.empty
    for name in ("whole", "lost"):
        audio, _ = read_wav(ClipArtifacts(tmp_path / "out", name).wav)
        assert len(audio) == 4 * SAMPLE_RATE
        assert loudness(audio, 3.05, 3.25) < 0.01 < loudness(audio, 2.6, 2.9)  # the pause where it was
        assert loudness(audio, 3.4, 3.9) > 0.05  # the sine source: amplitude 1/8
    lost, _ = read_wav(ClipArtifacts(tmp_path / "out", "lost").wav)
    assert loudness(lost, 1.55, 1.95) < 0.01  # silence where the packets were
    assert table.loc["whole", "audio_coverage"] == pytest.approx(1, abs=0.01)
    assert table.loc["lost", "audio_coverage"] == pytest.approx(0.875, abs=0.015)  # 0.5 s of 4 s missing, to a packet (23 ms)
    assert table.loc["lost", "audio_padded_s"] == pytest.approx(0.5, abs=0.05) and bool(table.loc["lost", "audio_misaligned"])


def test_alignment_leaves_gaps_out_of_the_coverage():
    alignment = Alignment(Span(0.0, 2.0), Span(0.0, 2.5), gaps=(Span(0.5, 1.0), Span(1.9, 2.2)))
    assert alignment.coverage == pytest.approx((2.0 - 0.5 - 0.1) / 2.0)
    assert alignment.padded_s == pytest.approx(0.6) and alignment.trimmed_s == pytest.approx(0.3)  # 0.5 s outside, 0.2 s of it a gap
    assert "with 0.80 s of gaps" in alignment.problem(0.9, 0.5)


def test_the_audio_stream_players_pick_is_decoded_not_the_first(tmp_path):
    """A file with several audio streams (a film's commentary, a silent guide track first): the one
    marked default, as players and ffmpeg pick it."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=2", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=stereo:d=2",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2", "-map", "0:v", "-map", "1:a", "-map", "2:a",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-disposition:a:0", "0", "-disposition:a:1", "default", tmp_path / "two.mp4")
    table, _ = run_audio(tmp_path, tmp_path / "out", [clip("two", "two.mp4")])
    audio, _ = read_wav(ClipArtifacts(tmp_path / "out", "two").wav)
    assert table.loc["two", "status"] == "ok" and not table.loc["two", "silent"]
    assert loudness(audio, 0.2, 1.8) > 0.05


def test_channels_that_cancel_or_have_no_standard_layout_still_give_the_sound(tmp_path):
    """A stereo pair with one channel wired in opposite phase mixes to silence: its louder channel is
    the sound. Nine channels (second-order ambisonics, a field recorder's tracks) have no layout
    ffmpeg can mix down: they are averaged, not refused."""
    video = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=2"]
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2"]
    ffmpeg(*video, *tone, "-map", "0:v", "-map", "1:a", "-af", "pan=stereo|c0=c0|c1=-1*c0", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le", tmp_path / "opposed.mov")
    times = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    channels = np.zeros((len(times), 9), "<i2")
    channels[:, 0] = (0.5 * 32767 * np.sin(2 * np.pi * 440 * times)).astype("<i2")
    channels.tofile(tmp_path / "nine.raw")
    ffmpeg(*video, "-f", "s16le", "-ar", SAMPLE_RATE, "-ac", 9, "-i", tmp_path / "nine.raw", "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le", tmp_path / "nine.mkv")
    table, quarantine = run_audio(tmp_path, tmp_path / "out", [clip("opposed", "opposed.mov"), clip("nine", "nine.mkv")])
    assert (table["status"] == "ok").all() and quarantine.empty and not table["silent"].any()
    opposed, _ = read_wav(ClipArtifacts(tmp_path / "out", "opposed").wav)
    nine, _ = read_wav(ClipArtifacts(tmp_path / "out", "nine").wav)
    assert loudness(opposed, 0.1, 1.9) == pytest.approx(np.sqrt(0.5) * 0.125, rel=0.05)  # the sine source's 1/8 amplitude
    assert loudness(nine, 0.1, 1.9) == pytest.approx(np.sqrt(0.5) * 0.5 / 9, rel=0.02)


def test_an_audio_stream_without_samples_counts_as_no_audio(tmp_path):
    """A declared audio stream that holds no packets is no audio (quarantined by audio.missing:
    quarantine; silence flagged audio_missing by silent), not a silent recording of real audio."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=2", "-f", "lavfi", "-i", "sine=sample_rate=16000:duration=2",
           "-map", "0:v", "-map", "1:a", "-af", "atrim=end_sample=0", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le", tmp_path / "empty.mkv")
    table, quarantine = run_audio(tmp_path, tmp_path / "out", [clip("empty", "empty.mkv")])
    assert table.loc["empty", "status"] == "quarantined"
    assert quarantine["reason"].tolist() == ["no audio: empty.mkv: its audio stream holds no samples"]
    table, _ = run_audio(tmp_path, tmp_path / "silent", [clip("empty", "empty.mkv")], missing="silent")
    assert table.loc["empty", "status"] == "ok" and table.loc["empty", "audio_missing"] and table.loc["empty", "duration_s"] == pytest.approx(2.0, abs=FRAME)


def test_an_audio_codec_without_a_decoder_is_named(tmp_path):
    """AC-4 (broadcast), Apple's APAC and MPEG-H have no decoder in the ffmpeg shipped: the reason
    says so, not ffmpeg's closing line about its output."""
    make_clip(tmp_path / "pcm.mov", 1, 1)
    data = (tmp_path / "pcm.mov").read_bytes()
    assert data.count(b"sowt") == 1  # the sample entry of 16-bit little-endian PCM
    (tmp_path / "ac4.mov").write_bytes(data.replace(b"sowt", b"ac-4"))
    _, quarantine = run_audio(tmp_path, tmp_path / "out", [clip("ac4", "ac4.mov")])
    assert quarantine["reason"].tolist() == ["unreadable audio: ac4.mov: no decoder for its audio codec (ac4)"]


def test_surround_is_ffmpegs_downmix_and_ambisonics_their_omnidirectional_channel(tmp_path):
    """A film's 5.1 (speech in the centre) mixes down as ffmpeg's standard matrix does, as before;
    first-order ambisonics (Opus mapping family 2, 360-degree recordings) give their W channel: a
    mean of W with the directional channels would cancel parts of the sound."""
    video = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=2"]
    ffmpeg(*video, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2", "-map", "0:v", "-map", "1:a",
           "-af", "pan=5.1|FC=c0", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", tmp_path / "film.mp4")  # fmt: skip
    mixed = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "film.mp4"), "-vn", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"],
                           capture_output=True, check=True).stdout  # fmt: skip
    np.testing.assert_array_equal(decode_audio(tmp_path / "film.mp4").samples, np.frombuffer(mixed, "<i2"))
    times = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    channels = np.zeros((len(times), 4), "<i2")
    channels[:, 0] = (0.5 * 32767 * np.sin(2 * np.pi * 440 * times)).astype("<i2")
    channels[:, 1] = -channels[:, 0]  # a directional channel that cancels W in a mean
    channels.tofile(tmp_path / "ambisonic.raw")
    ffmpeg("-f", "s16le", "-ar", SAMPLE_RATE, "-ch_layout", "ambisonic 1", "-i", tmp_path / "ambisonic.raw", "-c:a", "libopus", "-mapping_family", 2, tmp_path / "ambisonic.ogg")
    heard = decode_audio(tmp_path / "ambisonic.ogg", wanted="audio").samples / 32768
    assert loudness(heard, 0.1, 1.9) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_audio_whose_timestamps_jump_back_is_trimmed_and_said_so(tmp_path):
    """A muxer that wrote a stream's times 0.5 s back at 2 s: the later audio keeps its time and
    the audio it would overlay is left out, counted as trimmed (it vanished unreported)."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=4", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=4",
           "-map", "0:v", "-map", "1:a", "-af", "asetpts='if(gte(T,2),PTS-0.5/TB,PTS)'", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le", tmp_path / "back.mkv")  # fmt: skip
    decoded = decode_audio(tmp_path / "back.mkv")
    assert decoded.dropped == pytest.approx(0.5, abs=0.01) and decoded.duration == pytest.approx(3.5, abs=0.01)
    record = Alignment.of(decoded, video_span(tmp_path / "back.mkv")).record()
    assert record["audio_trimmed_s"] == pytest.approx(0.5, abs=0.01) and record["audio_coverage"] == pytest.approx(0.875, abs=0.01)
    # two transport-stream recordings joined with cat, the second starting 0.7 s before the first
    # ends: what is dropped is the overlap (and AAC's priming), once, not again for every later frame
    for name, offset in (("first.ts", []), ("second.ts", ["-output_ts_offset", "2.3"])):
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=3", "-c:a", "aac", *offset, "-f", "mpegts", tmp_path / name)
    (tmp_path / "joined.ts").write_bytes((tmp_path / "first.ts").read_bytes() + (tmp_path / "second.ts").read_bytes())
    joined = decode_audio(tmp_path / "joined.ts", wanted="audio")
    assert 0.7 <= joined.dropped <= 0.9 and joined.duration + joined.dropped == pytest.approx(6.15, abs=0.05)


def test_a_stereo_pair_that_cancels_gives_its_louder_channel_whichever_it_is(tmp_path):
    """Channels in opposite phase at unequal levels (the right one louder, the left 0.85 of it) mix
    to near silence: the sound is the louder channel, not simply the first one."""
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2", "-af", "pan=stereo|c0=-0.85*c0|c1=c0",
           "-c:a", "pcm_s16le", tmp_path / "opposed.wav")  # fmt: skip
    heard = decode_audio(tmp_path / "opposed.wav", wanted="audio").samples / 32768
    assert loudness(heard, 0.1, 1.9) == pytest.approx(np.sqrt(0.5) * 0.125, rel=0.03)  # the right channel's, the sine's 1/8 amplitude


def test_frames_an_edit_list_hides_are_not_in_the_video_span(tmp_path):
    """A cut made by stream copy (ffmpeg -ss 0.5 -c copy) keeps the frames from the keyframe before
    the cut, flagged discard by the MP4 edit list: players do not show them, so the span (what the
    audio is fitted to) is the cut's 3.5 s, not the 4 s of packets."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=4", "-c:v", "libx264", "-pix_fmt", "yuv420p", tmp_path / "whole.mp4")
    ffmpeg("-ss", 0.5, "-i", tmp_path / "whole.mp4", "-c", "copy", tmp_path / "cut.mp4")
    assert video_span(tmp_path / "whole.mp4").duration == pytest.approx(4.0, abs=0.01)
    cut = video_span(tmp_path / "cut.mp4")
    assert cut.start == pytest.approx(0.0, abs=1e-6) and cut.duration == pytest.approx(3.5, abs=FRAME)  # to a frame: the cut's first shown frame


def test_packets_without_durations_last_the_gap_between_frames(monkeypatch):
    """A container that states no packet durations (timestamps only): each frame lasts the usual gap
    between frames, so 50 frames at 25 fps span 2 s, not one frame less."""
    pts = np.arange(50, dtype=np.int64) * 512  # 25 fps in a 1/12800 time base
    packets = Packets(1 / 12800, pts, pts, np.zeros(50, np.int64), np.full(50, PACKET_KEY, np.int64))
    monkeypatch.setattr(audio_module, "video_packets", lambda path: packets)
    assert video_span("any.mkv") == Span(0.0, 2.0)


def test_gaps_of_a_separate_audio_file_move_with_it_to_the_videos_start():
    """A separate WAV's clock starts at the video's start: its gaps move with its audio, so the
    silence it holds is left out of the coverage where it lies under the video."""
    decoded = DecodedAudio(np.zeros(16000, np.int16), 16000, start=0.0, gaps=(Span(0.5, 0.6),))
    alignment = Alignment.of(decoded, Span(0.025, 1.025), separate=True)
    assert alignment.gaps == (Span(0.525, 0.625),)
    assert alignment.coverage == pytest.approx(0.9)


def test_a_frame_overlapping_its_predecessor_leaves_no_gap_before_the_next():
    """A short frame that lies within the one before (timestamps that step back) does not open a gap:
    the audio reached its predecessor's end, so the next frame starting there follows on."""
    assert _gaps([(0.0, 1.0), (0.5, 0.8), (1.0, 2.0)]) == ()
    assert _gaps([(0.0, 1.0), (0.5, 0.8), (1.1, 2.0)]) == (Span(1.0, 1.1),)


def test_frames_without_a_time_before_the_first_timed_one_end_where_it_starts():
    """Leading frames without a timestamp (NOPTS) precede the first timed frame, as ffmpeg's
    resampler places them: the audio starts a frame earlier, not on top of the timed frame."""
    frames = [(None, 1, "mono", 16000, 1600), (None, 1, "mono", 16000, 800), (1.0, 1, "mono", 16000, 1600)]
    np.testing.assert_allclose(_frame_spans(frames), [(0.85, 0.95), (0.95, 1.0), (1.0, 1.1)])


def test_read_wav_averages_a_stereo_files_interleaved_channels(tmp_path):
    """A stereo WAV (samples interleaved left, right) reads as the mean of its channels, sample by
    sample: a tone on the left only comes back as the tone at half its level."""
    times = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    left = np.round(0.5 * 32767 * np.sin(2 * np.pi * 440 * times)).astype("<i2")
    with wave.open(str(tmp_path / "stereo.wav"), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(np.stack([left, np.zeros_like(left)], axis=1).tobytes())
    audio, rate = read_wav(tmp_path / "stereo.wav")
    assert rate == SAMPLE_RATE and len(audio) == SAMPLE_RATE
    np.testing.assert_allclose(audio, left / 32768 / 2, atol=1e-6)


def test_the_chunk_table_says_what_is_wrong_with_a_kept_clips_audio(media):
    """audio.misaligned: keep flags a clip and keeps it; its audio_problem column says why (what
    predict tells of it), empty for a clip whose audio matches."""
    table, _ = run_audio(media, media / "problems", [clip("late", "late.mov"), clip("short", "short.mov")], min_coverage=0.5)
    assert table.loc["late", "audio_problem"] == ""  # 75% is enough at min_coverage 0.5
    assert table.loc["short", "audio_problem"] == (
        "real audio covers 40% of the video's 2.00 s (audio 0.00-0.80 s, video 0.00-2.00 s), less than audio.min_coverage (0.5)"
    )


def test_a_separate_wav_running_past_audio_max_overrun_s_is_named_with_its_video(media):
    """CREMA-D's AudioWAV runs 0.04 s past its FLV: under audio.max_overrun_s 0.01 it is misaligned,
    and the reason names both files, the WAV against the video whose span it is fitted to."""
    pair = clip("1001_DFA_ANG_XX", "VideoFlash/1001_DFA_ANG_XX.flv", "AudioWAV/1001_DFA_ANG_XX.wav")
    table, quarantine = run_audio(media, media / "overrun_wav", [pair], max_overrun_s=0.01, misaligned="quarantine")
    assert table.loc[pair["clip_id"], "status"] == "quarantined"
    (reason,) = quarantine["reason"]
    assert reason.startswith("misaligned audio: 1001_DFA_ANG_XX.wav against 1001_DFA_ANG_XX.flv: 0.0")
    assert reason.endswith("more than audio.max_overrun_s (0.01 s)")


def test_a_separate_wav_without_samples_is_named_not_its_video(media, tmp_path):
    """CREMA-D's quarantine and chunk table list the clip by its FLV: an AudioWAV copied as a header
    alone (an interrupted copy) is named in the reason the FLV's audio stands in for it, so the user
    knows which file to fetch again; the clip is quarantined for it only where the FLV is mute too."""
    (tmp_path / "VideoFlash").mkdir()
    (tmp_path / "AudioWAV").mkdir()
    (tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv").symlink_to(media / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    ffmpeg("-f", "lavfi", "-i", "sine=sample_rate=16000:duration=1", "-af", "atrim=end_sample=0", "-c:a", "pcm_s16le", tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    pair = clip("1001_DFA_ANG_XX", "VideoFlash/1001_DFA_ANG_XX.flv", "AudioWAV/1001_DFA_ANG_XX.wav")
    table, quarantine = run_audio(tmp_path, tmp_path / "out", [pair])
    assert table.loc[pair["clip_id"], "status"] == "ok" and quarantine.empty
    assert table.loc[pair["clip_id"], "audio_source"] == "video (the separate file: no audio: 1001_DFA_ANG_XX.wav: its audio stream holds no samples)"
    (tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv").unlink()
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=1", "-c:v", "flv1", tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    table, quarantine = run_audio(tmp_path, tmp_path / "mute", [pair])
    assert table.loc[pair["clip_id"], "status"] == "quarantined"
    assert quarantine["reason"].tolist() == ["no audio: 1001_DFA_ANG_XX.wav: its audio stream holds no samples"]
    assert quarantine["path"].tolist() == ["VideoFlash/1001_DFA_ANG_XX.flv"]


def test_a_clip_kept_without_audio_records_silence_over_its_whole_video(tmp_path, monkeypatch):
    """audio.missing: silent: silence as long as the video, all of it padding, no offset (there is
    no audio to place), no coverage. A video whose frames state no length is as long as its frames
    at its frame rate (15 at 10 fps: 1.5 s)."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1.5", "-c:v", "libx264", "-pix_fmt", "yuv420p", tmp_path / "mute.mp4")
    for run, span in (("stated", video_span), ("unstated", lambda path: None)):
        monkeypatch.setattr(stages, "video_span", span)
        table, quarantine = run_audio(tmp_path, tmp_path / run, [clip("mute", "mute.mp4")], missing="silent")
        row = table.loc["mute"]
        assert row["status"] == "ok" and quarantine.empty, run
        assert row["audio_missing"] and row["silent"] and not row["audio_misaligned"], run
        assert np.isnan(row["audio_offset_s"]) and row["audio_coverage"] == 0.0 and row["audio_trimmed_s"] == 0.0, run
        assert row["duration_s"] == pytest.approx(1.5, abs=1e-3) and row["audio_padded_s"] == pytest.approx(1.5, abs=1e-3), run


def test_a_quiet_recording_is_not_silent_and_an_audio_file_keeps_its_own_length(tmp_path):
    """Only digital silence (RMS under -80 dBFS) is flagged silent: a tone at -60 dBFS is sound. A
    clip without a video stream keeps its audio as decoded, so its duration is its audio's."""
    times = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    write_wav(tmp_path / "quiet.wav", 1e-3 * np.sqrt(2) * np.sin(2 * np.pi * 440 * times))
    write_wav(tmp_path / "hush.wav", np.zeros(2 * SAMPLE_RATE))
    table, quarantine = run_audio(tmp_path, tmp_path / "out", [clip("quiet", "quiet.wav"), clip("hush", "hush.wav")])
    assert quarantine.empty and not table.loc["quiet", "silent"] and table.loc["hush", "silent"]
    assert table["duration_s"].tolist() == [pytest.approx(2.0, abs=1e-3)] * 2


def test_the_spectrograms_are_those_of_the_written_wav_at_the_configured_window_and_hop(media):
    """Each of the stage's feature files is the one its name says (Mel image, MFCC image, log-Mel
    array), computed from the aligned WAV with audio.window_ms, hop_ms, n_mels and n_mfcc."""
    out = media / "spectra"
    run_audio(media, out, [clip("late", "late.mov")], window_ms=40, hop_ms=15)
    files = ClipArtifacts(out, "late")
    audio, rate = read_wav(files.wav)
    expected = ClipArtifacts(media / "expected_spectra", "late")
    for path in (expected.mel_png, expected.mfcc_png, expected.mel_npy):
        path.parent.mkdir(parents=True, exist_ok=True)
    settings = SpectrogramSettings(sample_rate=rate, window_ms=40, hop_ms=15, n_mels=SETTINGS["n_mels"], n_mfcc=SETTINGS["n_mfcc"])
    write_spectrograms(audio, settings, expected.mel_png, expected.mfcc_png, expected.mel_npy)
    np.testing.assert_array_equal(np.load(files.mel_npy), np.load(expected.mel_npy))
    assert files.mel_png.read_bytes() == expected.mel_png.read_bytes()
    assert files.mfcc_png.read_bytes() == expected.mfcc_png.read_bytes()
