"""Audio per clip: 16 kHz mono 16-bit PCM WAV, extracted with the ffmpeg that imageio-ffmpeg ships,
on the video's time axis.

ffmpeg is called directly: moviepy 2.2.1 returns constant data from ``to_soundarray(fps=16000)``
for long spans and decimates without filtering in ``write_audiofile``, and a subprocess
per clip costs ~30 ms, far less than decoding.

Audio and frames share one time axis: a container's streams need not start together nor last
equally long (an audio stream that starts late, a muxer's offset, a recording cut before its
video ends). :func:`video_span` reads when the video stream starts and ends (its packets'
presentation times, as ffmpeg's demuxer states them: the span the frames stage samples);
:func:`decode_audio` decodes the audio with the time of its first decoded sample (after the
codec's priming samples, as ffmpeg's ``ashowinfo`` reports it), silence filling the gaps its
timestamps leave (dropped or undecodable packets), so that every sample stays at its time;
:class:`Alignment` places one on the other and :meth:`Alignment.fit` pads with silence or trims the
audio to exactly the video's span.
A separate audio file (CREMA-D's AudioWAV) has its own clock, starting at the video's start.
"""

from __future__ import annotations

import math
import re
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from avemotion.io import atomic_path
from avemotion.media.probe import explain, ffmpeg_input, sniffed_reason, video_packets
from avemotion.quarantine import ClipDefect

SAMPLE_RATE = 16000

# How a clip's audio is decoded, as a revision the audio jobs carry in their params
# (avemotion.preprocess.plan.job_settings): raise it when code changes the samples or the alignment a
# file gives, so the next run decodes existing clips anew. 2: silence fills gaps in the stream's
# timestamps (GAP_FILLED_S); the stream players pick, not the first; a stereo pair that cancels
# gives its louder channel; channels without a standard layout are averaged, not refused; a stream
# without samples counts as no audio.
DECODING_REVISION = 2


class NoAudioStream(ClipDefect):
    """The media file has no audio stream at all."""


@dataclass(frozen=True)
class Span:
    """A stretch of time in seconds, on one file's clock."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


def _overlap(one: Span, other: Span) -> float:
    return max(0.0, min(one.end, other.end) - max(one.start, other.start))


@dataclass(frozen=True)
class DecodedAudio:
    """A file's audio stream, mono int16 at ``rate``; ``start``: its first sample's time on the
    file's clock (0 where ffmpeg reports none); ``gaps``: where on that clock the stream held no
    audio, filled with silence in ``samples``; ``dropped``: audio left out where the timestamps jump
    back (the later audio is kept at its time)."""

    samples: np.ndarray
    rate: int
    start: float = 0.0
    gaps: tuple[Span, ...] = ()
    dropped: float = 0.0  # seconds of decoded audio left out where its timestamps jump back

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate


@dataclass(frozen=True)
class Alignment:
    """Where the real audio lies against the video's span, both on the video's clock: the audio's
    span, and the gaps within it that hold no audio (silence in the decoded samples)."""

    video: Span
    audio: Span
    gaps: tuple[Span, ...] = ()
    dropped: float = 0.0

    @classmethod
    def of(cls, decoded: DecodedAudio, video: Span, separate: bool = False) -> "Alignment":
        """``decoded`` from the video's own file, or (``separate``) from a file whose clock starts
        where the video starts."""
        shift = video.start if separate else 0.0
        start = shift + decoded.start
        gaps = tuple(Span(gap.start + shift, gap.end + shift) for gap in decoded.gaps)
        return cls(video, Span(start, start + decoded.duration), gaps, decoded.dropped)

    @property
    def overlap(self) -> float:
        """Seconds of the video's span that real audio covers (gaps left out)."""
        return _overlap(self.audio, self.video) - sum(_overlap(gap, self.video) for gap in self.gaps)

    @property
    def offset_s(self) -> float:
        """Audio start minus video start (positive: the audio starts later)."""
        return self.audio.start - self.video.start

    @property
    def coverage(self) -> float:
        """The fraction of the video's span that real audio covers."""
        return min(1.0, self.overlap / self.video.duration) if self.video.duration > 0 else 0.0

    @property
    def padded_s(self) -> float:
        """Silence added (before and after the audio, and in its gaps) to fill the video's span."""
        return max(0.0, self.video.duration - self.overlap)

    @property
    def trimmed_s(self) -> float:
        """Audio cut off because it lies before the video's start or after its end, or because its
        timestamps jump back over audio already placed."""
        return max(0.0, self.audio.duration - sum(gap.duration for gap in self.gaps) - self.overlap) + self.dropped

    def problem(self, min_coverage: float, max_overrun_s: float) -> str | None:
        """Why the audio does not match the video (None when it does): it covers less than
        ``min_coverage`` of the video's span, or more than ``max_overrun_s`` seconds of it lie outside."""
        held = sum(gap.duration for gap in self.gaps)
        gaps = f" with {held:.2f} s of gaps" if held else ""
        where = f"audio {self.audio.start:.2f}-{self.audio.end:.2f} s{gaps}, video {self.video.start:.2f}-{self.video.end:.2f} s"
        if self.coverage < min_coverage:
            return (
                f"real audio covers {100 * self.coverage:.0f}% of the video's {self.video.duration:.2f} s ({where}), "
                f"less than audio.min_coverage ({min_coverage:g})"
            )
        if self.trimmed_s > max_overrun_s:
            return (
                f"{self.trimmed_s:.2f} s of audio lie outside the video's {self.video.duration:.2f} s ({where}), "
                f"more than audio.max_overrun_s ({max_overrun_s:g} s)"
            )
        return None

    def fit(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """``samples`` (starting at ``self.audio.start``) cut or padded with silence to the video's span."""
        out = np.zeros(int(round(self.video.duration * rate)), samples.dtype)
        shift = int(round(self.offset_s * rate))  # where the audio's first sample lands in ``out``
        source, target = max(0, -shift), max(0, shift)
        count = max(0, min(len(samples) - source, len(out) - target))
        out[target : target + count] = samples[source : source + count]
        return out

    def record(self) -> dict:
        """The chunk table's columns for this alignment."""
        return {
            "audio_offset_s": round(self.offset_s, 4),
            "audio_coverage": round(self.coverage, 4),
            "audio_padded_s": round(self.padded_s, 4),
            "audio_trimmed_s": round(self.trimmed_s, 4),
        }


UNALIGNED = {"audio_offset_s": math.nan, "audio_coverage": math.nan, "audio_padded_s": 0.0, "audio_trimmed_s": 0.0}
"""The columns of a clip whose video span is unknown (no readable video stream): its audio as decoded."""


def video_span(path) -> Span | None:
    """The first video stream's span on the file's clock: from its earliest shown frame's
    presentation time to the latest one's end, from the packets ffmpeg's demuxer reads (no decoding,
    ~25 ms); None when the file has no readable video stream or its frames state no length.
    Packets an MP4 edit list hides (flagged discard: a cut made by stream copy starts with the
    frames from the keyframe before the cut) are not shown, so they are not in the span."""
    packets = video_packets(path)
    if packets is None:
        return None
    starts = packets.times[packets.shown].tolist()
    ends = (packets.times + packets.duration)[packets.shown].tolist()
    if not starts:
        return None
    if ends == starts:  # no packet states its duration: a frame lasts the usual gap between frames
        gaps = np.diff(np.unique(starts))
        if not len(gaps):
            return None
        ends = [start + int(np.median(gaps)) for start in starts]
    span = Span(min(starts) * packets.unit, max(ends) * packets.unit)
    return span if span.duration > 0 else None


def _ffmpeg_errors(report: str) -> list[str]:
    """The error lines of an ffmpeg report written with ``-v level+...``, without their tags."""
    lines = []
    for line in report.splitlines():
        if "[error]" in line or "[fatal]" in line:
            lines.append(re.sub(r"^(\[[^\]]*\] )*", "", line).strip() or line.strip())
    return lines


# Silence fills a gap in an audio stream's timestamps (dropped or undecodable packets, a recorder's
# pause) at least this long, so that what follows stays at its own time; shorter ones are muxers'
# rounding (FLV and Matroska state times to the millisecond). Under a frame of 50 fps video.
GAP_FILLED_S = 0.02

# A stereo mix at least this much quieter than its louder channel (-20 dB) is two channels that
# cancel (one wired in opposite phase): the louder channel alone is what is heard
CANCELLED_MIX = 0.1

_DECODED_FRAME = re.compile(r"\bpts_time:(\S+) .*?\bchannels:(\d+) chlayout:(.*?) rate:(\d+) nb_samples:(\d+)")
_NO_DECODER = re.compile(r"no decoder found for: (\S+)")


def decode_audio(source, sample_rate: int = SAMPLE_RATE, wanted: str = "video") -> DecodedAudio:
    """The audio stream of ``source`` (a ``wanted`` "video" or "audio" file) that ffmpeg picks, as
    players do (the one marked default, else the one with the most channels), mono int16 at
    ``sample_rate``, with the time of its first decoded sample on the file's clock and silence where
    its timestamps leave a gap (:data:`GAP_FILLED_S`).

    Mono is ffmpeg's mix of the channels (stereo: their mean; a standard surround layout: its
    downmix); a stereo pair that cancels (:data:`CANCELLED_MIX`) gives its louder channel,
    ambisonics their omnidirectional channel (W, the first), and channels without a standard layout
    (a field recorder's tracks) are averaged. Raises :class:`NoAudioStream` for a media file without
    audio or whose audio stream holds no samples, and :class:`ClipDefect` with one readable line
    (avemotion.media.probe) for a file that is empty, a still image, text or unreadable.
    """
    source = Path(source)
    reason = sniffed_reason(source, wanted)  # the first bytes: no ffmpeg run for a file that is no media
    if reason:
        raise ClipDefect(reason)
    report, raw = _decode(source, sample_rate, wanted, mono=False)
    frames = [(_seconds(t), int(n), layout, int(rate), int(count)) for t, n, layout, rate, count in _DECODED_FRAME.findall(report)]
    if not frames or not raw:
        raise NoAudioStream(f"no audio: {source.name}: its audio stream holds no samples")
    channels, layout = frames[0][1], frames[0][2]
    pcm = None
    if channels > 2 and not re.fullmatch(r"\d+ channels", layout) and not layout.startswith("ambisonic"):
        try:  # a standard surround layout: ffmpeg's own downmix, as 16-bit (ffmpeg scales it so only then)
            pcm = np.frombuffer(_decode(source, sample_rate, wanted, mono=True)[1], "<i2")
        except ClipDefect:  # a layout ffmpeg names but cannot mix down: averaged, below
            pcm = None
    if pcm is None:
        samples = np.frombuffer(raw[: len(raw) // (4 * channels) * 4 * channels], "<f4").reshape(-1, channels)
        pcm = np.round(np.clip(_mixed(samples, layout), -1.0, 32767 / 32768) * 32768).astype(np.int16)
    spans = _frame_spans(frames)
    gaps = _gaps(spans)
    # what the decoding left out where timestamps jump back: the audio decoded and the silence added,
    # less what came out
    dropped = sum(end - start for start, end in spans) + sum(gap.duration for gap in gaps) - len(pcm) / sample_rate
    return DecodedAudio(pcm, sample_rate, spans[0][0], gaps, dropped if dropped >= GAP_FILLED_S else 0.0)


def _decode(source: Path, sample_rate: int, wanted: str, mono: bool) -> tuple[str, bytes]:
    """(ffmpeg's report, the samples at ``sample_rate``: every channel as float32, or ffmpeg's mono
    mix as int16, as it was always written)."""
    # ashowinfo (before the resampler) reports each decoded frame's time, channels and length;
    # -copyts keeps the file's own clock, the one video_span reads; aresample's async pads gaps.
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "level+info", "-copyts", "-i", ffmpeg_input(source)]
    command += ["-vn", "-sn", "-dn", "-af", f"ashowinfo,aresample=async=1:min_hard_comp={GAP_FILLED_S}"]
    command += (["-ac", "1", "-f", "s16le"] if mono else ["-f", "f32le"]) + ["-ar", str(sample_rate), "pipe:1"]
    result = subprocess.run(command, capture_output=True)
    report = result.stderr.decode(errors="replace")
    if result.returncode != 0:
        if "does not contain any stream" in report:
            raise NoAudioStream(f"no audio stream: {source.name}")  # named: CREMA-D's is the WAV beside the clip
        missing = _NO_DECODER.search(report)
        errors = _ffmpeg_errors(report)
        detail = f"no decoder for its audio codec ({missing.group(1)})" if missing else errors[-1] if errors else "ffmpeg failed"
        raise ClipDefect(explain(source, detail, wanted, reading="audio"))
    return report, result.stdout[: len(result.stdout) // 2 * 2] if mono else result.stdout


def _seconds(text: str) -> float | None:
    """ashowinfo's pts_time; None where a frame has none ("NOPTS")."""
    try:
        return float(text)
    except ValueError:
        return None


def _mixed(samples: np.ndarray, layout: str) -> np.ndarray:
    """One channel of (samples, channels) float audio: see :func:`decode_audio`."""
    if samples.shape[1] == 1 or layout.startswith("ambisonic"):
        return samples[:, 0]
    mono = samples.mean(axis=1)
    if samples.shape[1] == 2:  # mean squares accumulated in float64 without a float64 copy (an hour is 460 MB of float32)
        loudness = np.sqrt(np.einsum("ij,ij->j", samples, samples, dtype=np.float64) / len(samples))
        if np.sqrt(np.dot(mono, mono) / len(mono)) < CANCELLED_MIX * loudness.max():
            return samples[:, int(np.argmax(loudness))]
    return mono


def _frame_spans(frames: list[tuple]) -> list[tuple[float, float]]:
    """(start, end) of each decoded frame (time, channels, layout, rate, samples) on the file's clock;
    a frame without a time (NOPTS) follows the one before (leading ones end where the first timed
    frame starts, or start at 0 where none has a time), as ffmpeg's resampler places it."""
    durations = [frame[4] / frame[3] for frame in frames]
    timed = next((index for index, frame in enumerate(frames) if frame[0] is not None), None)
    end = frames[timed][0] - sum(durations[:timed]) if timed is not None else 0.0
    spans = []
    for frame, duration in zip(frames, durations):
        start = frame[0] if frame[0] is not None else end
        end = start + duration
        spans.append((start, end))
    return spans


def _gaps(spans: list[tuple[float, float]]) -> tuple[Span, ...]:
    """Where the frames' ``spans`` leave gaps of at least :data:`GAP_FILLED_S` (what the decoding
    filled with silence)."""
    starts = np.array([start for start, _ in spans])
    reached = np.maximum.accumulate(np.array([end for _, end in spans]))[:-1]
    found = np.flatnonzero(starts[1:] - reached >= GAP_FILLED_S)
    return tuple(Span(float(reached[i]), float(starts[i + 1])) for i in found)


def extract_audio(source, target, sample_rate: int = SAMPLE_RATE, wanted: str = "video") -> None:
    """Write the first audio stream of ``source`` to ``target`` as mono PCM WAV, as decoded (not
    aligned to any video: the audio stage aligns it with :class:`Alignment`). Raises as :func:`decode_audio`."""
    write_pcm(target, decode_audio(source, sample_rate, wanted).samples, sample_rate)


def write_pcm(path, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit mono samples as PCM WAV, written atomically."""
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes(np.ascontiguousarray(pcm, "<i2").tobytes())


def write_wav(path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Float audio in [-1, 1] as 16-bit mono PCM WAV, written atomically."""
    write_pcm(path, (np.clip(audio, -1, 1) * 32767).astype("<i2"), sample_rate)


def read_wav(path) -> tuple[np.ndarray, int]:
    """(float32 samples in [-1, 1], sample rate) of a 16-bit PCM WAV; multi-channel audio is averaged."""
    with wave.open(str(path)) as handle:
        if handle.getsampwidth() != 2:
            raise ClipDefect(f"{Path(path).name}: expected 16-bit PCM, got {8 * handle.getsampwidth()}-bit")
        data = np.frombuffer(handle.readframes(handle.getnframes()), "<i2").astype(np.float32) / 32768
        channels, rate = handle.getnchannels(), handle.getframerate()
    return data.reshape(-1, channels).mean(axis=1), rate
