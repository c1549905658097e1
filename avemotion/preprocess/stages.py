"""The three preprocessing stages and where each writes its per-clip artifacts.

audio:  the clip's WAV on the video's time axis (padded or trimmed to the video stream's span), its
        log-Mel and MFCC images and the log-Mel array. Its chunk table records the audio's offset
        and coverage and flags ``audio_misaligned`` clips; audio.misaligned (keep | quarantine)
        decides whether such a clip is kept; where a separate audio file (CREMA-D's AudioWAV) cannot be
        read, the video's own audio stands in (``audio_source`` says why)
face:   the face table in OpenFace 2's CSV schema, from the configured backend
frames: the sampled frames, uint8 (W·T, S, S, 3) (frames.windows W); face crops are cut by the
        face stage's landmarks (avemotion.face.crops). Its chunk table flags a clip ``short``
        (fewer frames than frames.num_frames: frames repeat) or ``truncated`` (the file ends before
        its container's stated end); frames.short_clips and frames.truncated_clips (keep |
        quarantine) decide whether such a clip is kept
(file names: avemotion.layout.ClipArtifacts, inside the stage's ``outdir``)

A clip without a face in any frame is quarantined unless the face setting ``no_face`` is ``keep``
(always so for prediction on new clips, avemotion.inference): the clip keeps its all-failed face
table and its frames are the whole picture (crop "full"), so it is still trained on, scored or
predicted.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.face.crops import crop_matrices, face_landmarks
from avemotion.face.facemesh import FaceMeshBackend
from avemotion.face.openface import in_stored_pixels, read_openface_csv, run_feature_extraction, several_faces
from avemotion.io import atomic_path
from avemotion.job_params import QUIET_DEFAULTS
from avemotion.layout import ClipArtifacts
from avemotion.media.audio import SAMPLE_RATE, UNALIGNED, Alignment, NoAudioStream, Span, decode_audio, read_wav, video_span, write_pcm
from avemotion.media.frame_crops import FACE_CROPS
from avemotion.media.frames import first_frame, length_defects, open_for_picking, open_video, sample_clip_frames, shown_size
from avemotion.media.probe import display, pixel_aspect
from avemotion.media.spectrogram import SpectrogramSettings, write_spectrograms
from avemotion.media.transcode import decodable_copy, kept_copy
from avemotion.preprocess.chunk import Stage
from avemotion.quarantine import ClipDefect, SkipClip
from avemotion.scratch import ScratchFolder

log = logging.getLogger(__name__)

SILENCE_RMS = 1e-4


class AudioStage(Stage):
    """The clip's audio on the video's time axis (avemotion.media.audio.Alignment): it covers exactly
    the video stream's span, padded with silence or trimmed where the audio starts later or earlier
    or is shorter or longer. A separate file (CREMA-D's AudioWAV) starts at the video's start. The
    chunk table records the offset, the coverage and what was padded and trimmed, and flags
    ``audio_misaligned`` a clip whose real audio covers less than audio.min_coverage of the video or
    has more than audio.max_overrun_s seconds outside it; audio.misaligned: quarantine leaves such a
    clip out. A settings dict without these keys (job_params.QUIET_DEFAULTS; a trained model's older
    settings) reads them as their defaults."""

    name = "audio"

    def sources(self, clip):
        audio = self.root / (clip.get("audio_path") or clip["path"])
        # a separate audio file is aligned to its video's span, so the video is a source too
        return [audio, self.root / clip["path"]] if clip.get("audio_path") else [audio]

    def artifacts(self, clip):
        files = ClipArtifacts(self.outdir, clip["clip_id"])
        return [files.wav, files.mel_png, files.mfcc_png, files.mel_npy]

    def process(self, clip):
        wav, mel_png, mfcc_png, mel_npy = self.artifacts(clip)
        source, video = self.root / (clip.get("audio_path") or clip["path"]), self.root / clip["path"]
        separate = bool(clip.get("audio_path"))
        missing, misaligned, record, unreadable = False, False, dict(UNALIGNED), ""
        try:
            decoded, source, separate, unreadable = self._decode(source, video, separate)
        except NoAudioStream:
            if self.settings["missing"] != "silent":
                raise
            # Keep the clip with silent audio as long as its video, flagged in the chunk table.
            span = video_span(video)
            if span is None:
                reader = open_video(video, in_order=True)  # raises the ClipDefect that says why the video is unreadable
                span = Span(0.0, len(reader) / (reader.get_avg_fps() or 25.0))
            pcm, missing = np.zeros(int(round(span.duration * SAMPLE_RATE)), np.int16), True
            record = {"audio_offset_s": math.nan, "audio_coverage": 0.0, "audio_padded_s": round(span.duration, 4), "audio_trimmed_s": 0.0}
        else:
            pcm, span = decoded.samples, video_span(video)
            if span is not None:  # else no readable video stream: the audio as decoded (face and frames stages say why)
                alignment = Alignment.of(decoded, span, separate=separate)
                pcm, record = alignment.fit(decoded.samples, SAMPLE_RATE), alignment.record()
                problem = alignment.problem(self._setting("min_coverage"), self._setting("max_overrun_s"))
                misaligned = problem is not None
                record["audio_problem"] = problem or ""  # what predict tells of a clip it keeps
                if misaligned and self._setting("misaligned") == "quarantine":
                    names = f"{source.name} against {video.name}" if separate else source.name
                    raise ClipDefect(f"misaligned audio: {names}: {problem}")
        write_pcm(wav, pcm, SAMPLE_RATE)
        audio, rate = read_wav(wav)
        spectrogram = SpectrogramSettings(
            sample_rate=rate,
            window_ms=self.settings["window_ms"],
            hop_ms=self.settings["hop_ms"],
            n_mels=self.settings["n_mels"],
            n_mfcc=self.settings["n_mfcc"],
        )
        write_spectrograms(audio, spectrogram, mel_png, mfcc_png, mel_npy)
        rms = float(np.sqrt(np.mean(audio**2))) if len(audio) else 0.0
        return {
            "audio_source": "AudioWAV" if separate else f"video (the separate file: {unreadable})" if unreadable else "video",
            "duration_s": len(audio) / rate,
            "audio_missing": missing,
            "silent": rms < SILENCE_RMS,
            **record,
            "audio_misaligned": misaligned,
        }

    def _setting(self, key):
        return self.settings.get(key, QUIET_DEFAULTS["audio"][key])

    @staticmethod
    def _decode(source, video, separate: bool):
        """The clip's decoded audio, the file it came from, whether that is a separate audio file, and
        why the separate file was not used ('' where it was). Where the separate file (CREMA-D's
        AudioWAV) cannot be read, the video's own audio: the same recording there (the FLV's MP3,
        resampled, equals AudioWAV sample for sample), on the video's own clock. Raises the separate
        file's problem where the video has no audio either."""
        try:
            return decode_audio(source, SAMPLE_RATE, wanted="audio" if separate else "video"), source, separate, ""
        except ClipDefect as problem:
            if not separate:
                raise
            try:
                decoded = decode_audio(video, SAMPLE_RATE, wanted="video")
            except ClipDefect:
                raise problem from None
            log.warning("%s: read the audio of %s instead", problem, video.name)
            return decoded, video, False, str(problem)


# Disk the OpenFace stage's held copies (clips read through ffmpeg's lossless copy) take at most,
# beyond the last one added: at this size OpenFace runs over the clips gathered so far (10 s of 1080p
# copied: ~128 MB).
HELD_COPIES_BYTES = 2**30


# Clips one OpenFace call reads: a face job killed midway keeps the receipts of the groups done (it
# kept none when one call read the whole chunk), and each call pays OpenFace's start-up once
OPENFACE_GROUP = 16


class FaceStage(Stage):
    name = "face"

    @property
    def prepared_together(self):
        return OPENFACE_GROUP if self.settings["backend"] == "openface" else None

    def artifacts(self, clip):
        return [ClipArtifacts(self.outdir, clip["clip_id"]).face_csv]

    def prepare(self, clips):
        if self.settings["backend"] == "facemesh":
            self.backend = FaceMeshBackend(detection_threshold=self.settings["detection_threshold"])
            return
        # A folder per chunk job: eNTERFACE has equal file names in different subjects (s12_an_1.avi
        # in subjects 11 and 12), which OpenFace would write to the same CSV name.
        if getattr(self, "openface_scratch", None) is None:  # the job's first group
            self.openface_scratch = ScratchFolder("openface-", self.outdir)  # a killed job's is removed by the next
        # fps and frame size per readable video, and what OpenFace reads of it: the video, or the
        # lossless copy the other stages read (avemotion.media.transcode) where decord's FFmpeg
        # refuses or misreads it in order (AV1, which OpenFace's own FFmpeg may not decode either; a
        # browser's WebM; an edit list; an MPEG stream; HDR, tone-mapped), so OpenFace's rows are the
        # frames sampled; for a video of non-square pixels or turned by a display matrix or a rotate
        # tag (probe.Turning), a copy widened to square pixels and turned as it is shown (HDR
        # tone-mapped too), so that OpenFace measures the face as it is shown and in the frames the
        # other stages read (x is mapped back to the stored pixels' in _openface).
        # Unreadable videos are quarantined with their reason in process().
        self.video_info, self.unreadable, self.openface_csvs = {}, {}, {}
        inputs, held = {}, 0
        for n, clip in enumerate(clips):
            video = self.root / clip["path"]
            try:
                reader = open_video(video, in_order=True)  # its first frame only
                first, _ = first_frame(video, reader)
                shown = display(video) if len(first) else None
                aspect = shown.pixel_aspect if shown else 1.0
                # OpenFace's OpenCV may not turn a phone's clip by its display matrix (its install
                # script builds OpenCV 4.1; OpenCV turns frames since 4.5), and none turns them by a
                # Matroska rotate tag, while the other stages read them turned: it gets them turned too
                turned = shown is not None and (aspect != 1 or shown.turn in (90, 180, 270))  # what decord turns
                copy = decodable_copy(video, shown_size(*first.shape[1:3], aspect)) if turned else kept_copy(video)
            except ClipDefect as defect:
                self.unreadable[str(video)] = defect
                continue
            self.video_info[str(video)] = (float(reader.get_avg_fps()), first.shape[1:3], aspect)
            inputs[str(video)] = str(video) if copy is None else self._held_copy(copy, n, video)
            held += 0 if copy is None else copy.stat().st_size
            if held >= HELD_COPIES_BYTES:  # OpenFace reads them now: a chunk of AV1 1080p would hold gigabytes
                self._extract(inputs)
                inputs, held = {}, 0
        self._extract(inputs)

    def _extract(self, inputs: dict) -> None:
        """Run OpenFace over ``inputs`` ({video: the file OpenFace reads}) into a folder of this
        call's own (a clip's stem may repeat one of an earlier call), then drop the held copies."""
        if not inputs:
            return
        folder = self.openface_scratch.path
        out = folder / f"call_{len(list(folder.glob('call_*')))}"
        out.mkdir()
        csvs = run_feature_extraction(self.settings["openface_bin"], list(inputs.values()), out, openface_args=self.settings.get("openface_args", []))
        self.openface_csvs.update({video: csvs.get(source) for video, source in inputs.items()})
        shutil.rmtree(folder / "copies", ignore_errors=True)

    def _held_copy(self, copy: Path, n: int, video: Path) -> str:
        """``copy`` kept in the chunk's OpenFace folder (the transcode module holds one copy at a
        time) under the video's own stem, which names OpenFace's CSV, until OpenFace has read it."""
        held = self.openface_scratch.path / "copies" / str(n) / f"{video.stem}.mp4"
        held.parent.mkdir(parents=True)
        shutil.copyfile(copy, held)
        return str(held)

    def finish(self):
        if getattr(self, "openface_scratch", None):
            self.openface_scratch.cleanup()
            self.openface_scratch = None

    def process(self, clip):
        video = self.root / clip["path"]
        if self.settings["backend"] == "facemesh":
            table, fps, shape = self._facemesh(video)
        else:
            table, fps, shape = self._openface(video)
        if not (table["success"] == 1).any() and self.settings.get("no_face", QUIET_DEFAULTS["face"]["no_face"]) != "keep":
            raise ClipDefect("no face in any frame")
        with atomic_path(self.artifacts(clip)[0]) as tmp:
            table.to_csv(tmp, index=False)
        return {
            "face_frames": len(table),
            "face_ratio": float((table["success"] == 1).mean()),
            "fps": fps,
            "width": shape[1],
            "height": shape[0],
        }

    def _facemesh(self, video):
        # Bounded batches, the face followed across them, large frames decoded scaled down; the
        # table, fps and (height, width) are the video's own.
        return self.backend.analyse_video(video)

    def _openface(self, video):
        if str(video) in self.unreadable:
            raise self.unreadable[str(video)]  # why the video could not be read
        csv = self.openface_csvs.get(str(video))
        if csv is None:
            raise ClipDefect("OpenFace wrote no features for this clip")
        fps, shape, aspect = self.video_info[str(video)]
        table = read_openface_csv(csv)
        reason = several_faces(table, video.name)  # the stages after take one face, a row per frame
        if reason:
            raise ClipDefect(reason)
        if aspect != 1:  # OpenFace read the copy widened to square pixels
            table = in_stored_pixels(table, shape[1] / shown_size(*shape, aspect)[1])
        return table, fps, shape


class FramesStage(Stage):
    name = "frames"

    def face_csv(self, clip) -> Path:
        return ClipArtifacts(self.outdir, clip["clip_id"]).face_csv

    def sources(self, clip):
        return [self.root / clip["path"]] + ([self.face_csv(clip)] if self.settings["crop"] in FACE_CROPS else [])

    def artifacts(self, clip):
        return [ClipArtifacts(self.outdir, clip["clip_id"]).frames]

    def process(self, clip):
        video = self.root / clip["path"]
        aspect = pixel_aspect(video)  # probed once: the crop's transforms and the letterbox both need it
        matrices, crop = None, self.settings["crop"]
        if crop in FACE_CROPS:
            if not self.face_csv(clip).exists():
                raise SkipClip("no face features (quarantined by the face stage)")
            table = pd.read_csv(self.face_csv(clip))
            if np.isnan(face_landmarks(table)).all():  # kept without a face (prediction): nothing to crop to
                crop = "full"
            else:
                matrices = crop_matrices(table, crop, self.settings["input_size"], self.settings["face_margin"], aspect)
        opened = open_for_picking(video)
        defects = length_defects(video, len(opened.reader), self.settings["num_frames"])
        for key, reason in defects.items():  # absent key: job_params.QUIET_DEFAULTS (a trained model's older settings)
            if self.settings.get(key, QUIET_DEFAULTS["frames"][key]) == "quarantine":
                raise ClipDefect(reason)
        frames, info = sample_clip_frames(
            video,
            self.settings["num_frames"],
            self.settings["input_size"],
            crop,
            crop_matrices=matrices,
            opened=opened,
            aspect=aspect,
            sampling=self.settings.get("sampling", QUIET_DEFAULTS["frames"]["sampling"]),
            rate=self.settings.get("sampling_rate", QUIET_DEFAULTS["frames"]["sampling_rate"]),
            windows=self.settings.get("windows", QUIET_DEFAULTS["frames"]["windows"]),
        )
        with atomic_path(self.artifacts(clip)[0]) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, frames)
        return {**info, "crop": crop, "short": "short_clips" in defects, "truncated": "truncated_clips" in defects}


STAGES = {stage.name: stage for stage in (AudioStage, FaceStage, FramesStage)}
