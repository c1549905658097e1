"""A trained model's preprocessor: clip files to the examples the model reads, as the model's
training clips were made (in the keras-hub manner: backbone, task model, preprocessor).

The preprocessing settings travel with the model (settings.json, ``preprocess`` per corpus it was
trained on); the preprocessor runs the workflow's own three stages (avemotion.preprocess.stages)
on each clip and encodes its artifacts with the fuse stage's encoder (avemotion.fusion.shards.
encode_clip), and the model's outputs come from the evaluation input pipeline
(avemotion.model.outputs). Sharing that code, not re-implementing it, keeps a clip's prediction
equal to its evaluation prediction (a test checks it to 1e-5).

Unlike the workflow, which can quarantine such clips, the preprocessor keeps a clip without an audio
stream (silent audio), one whose audio does not match its video (aligned, padded or trimmed), one
without a face (the whole picture, zero face features), and a short or truncated one: a user who asks for a prediction gets one, with a warning (:func:`warnings_of`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from avemotion.fusion.shards import FUSION_REVISION, STAGE_INFO, UNLABELLED, encode_clip
from avemotion.fusion.tfrecord import tfrecord_record
from avemotion.io import atomic_path
from avemotion.media.mp4 import track_kinds
from avemotion.media.probe import describe, explain, sniff, sniffed_reason
from avemotion.preprocess.chunk import process_clip
from avemotion.preprocess.plan import STAGE_NAMES, stage_revisions
from avemotion.preprocess.stages import STAGES

LOW_FACE_RATIO = 0.5  # below this fraction of frames with a face, a warning says so
# Longer than this, a clip is no utterance: the corpora label utterances of seconds (CREMA-D's one
# minute-long clip is a known defect), and one prediction from a long recording's num_frames frames
# (and the audio under them) says little of any moment in it.
LONG_CLIP_S = 30.0
EXAMPLES_FILE = "examples.tfrecord"


@dataclass
class PreparedClip:
    """One clip after preprocessing: each stage's record (``info``) and, when every stage succeeded,
    its encoded example; otherwise ``error`` says why: what the file is when it is no clip at all
    (:func:`whole_file_problem`), else which stage failed and why."""

    clip_id: str
    path: str
    info: dict = field(default_factory=dict)
    error: str = ""
    example: bytes | None = None
    notes: list[str] = field(default_factory=list)  # about the model, not the clip (ClipPreprocessor.notes)

    @property
    def face_ratio(self) -> float:
        return float(self.info.get("face", {}).get("face_ratio", float("nan")))


def warnings_of(clip: PreparedClip) -> list[str]:
    """What a user should know about a prepared clip: no audio, silence, audio that does not match
    the video, no or little face, and the preprocessor's notes about the model."""
    warnings = list(clip.notes)
    audio = clip.info.get("audio", {})
    if audio.get("audio_missing"):
        warnings.append("no audio stream: predicted with silent audio")
    elif audio.get("silent"):
        warnings.append("audio is silent")
    if audio.get("audio_misaligned"):  # the audio stage's reason (media.audio.Alignment.problem), by the model's limits
        warnings.append(f"misaligned audio: {audio.get('audio_problem') or 'it does not cover the video'} (kept: silence fills, excess is cut)")
    if audio.get("duration_s", 0.0) > LONG_CLIP_S:  # the audio stage's length, the video's span
        warnings.append(
            f"a clip of {audio['duration_s']:.0f} s gets one prediction, from a few of its frames (the model learnt from "
            "utterances of seconds): cut long recordings into utterances"
        )
    frames = clip.info.get("frames", {})
    if frames.get("short"):
        warnings.append(f"only {frames['total_frames']} frames: sampled frames repeat")
    if frames.get("truncated"):
        warnings.append("the file is truncated: predicted from the part it holds")
    if clip.face_ratio == 0:
        warnings.append("no face found: frames show the whole picture and face features are zeros")
    elif clip.face_ratio < LOW_FACE_RATIO:
        warnings.append(f"a face in only {clip.face_ratio:.0%} of the frames")
    return warnings


def revision_notes(preprocess: dict, fusion_revision=None) -> list[str]:
    """A note when this release makes the model's inputs otherwise than they were made for its
    training: the revisions its settings recorded per stage (reading, decoding, sampling, the
    built-in face features; absent in models trained before they were) and of the fuse stage's
    encoding, against this release's. The model still predicts, from inputs it did not learn."""
    changed = []
    for stage in STAGE_NAMES:
        for key, value in stage_revisions(stage, preprocess[stage]).items():
            if preprocess[stage].get(key) != value:
                changed.append(f"{stage}.{key} {preprocess[stage].get(key, 'unrecorded')} (now {value})")
    if fusion_revision != FUSION_REVISION:
        changed.append(f"fusion_revision {fusion_revision or 'unrecorded'} (now {FUSION_REVISION})")
    if not changed:
        return []
    return [f"this release prepares clips otherwise than for the model's training ({', '.join(changed)}): retrain it for predictions that match its evaluation"]


def whole_file_problem(path) -> str:
    """Why ``path`` is no clip at all (empty, a still image, text: its first bytes; an audio file
    holding no video stream: ffmpeg's probe, run for those alone), or "" when it may be one. Such a
    file is no one stage's failure: its line has no stage name, as in the workflow's quarantine."""
    reason = sniffed_reason(path)
    if reason is None and _may_lack_video(path) and not describe(path).video:
        reason = explain(path)  # with the audio's codec and length
    return reason or ""


def _may_lack_video(path) -> bool:
    """Whether ``path`` is worth ffmpeg's probe for a video stream: an audio format (an M4A may still
    hold video), or an MP4/MOV whose movie box lists no video track (an audio-only .mp4's brand is
    often a generic one, such as isom)."""
    if sniff(path).kind == "audio":
        return True
    tracks = track_kinds(path)
    return tracks is not None and b"vide" not in tracks


class ClipPreprocessor:
    """Clip files to model examples with one corpus' preprocessing settings (as settings.json saves
    them: ``audio``, ``face`` and ``frames`` stage settings, and the model's ``fusion_revision``)."""

    def __init__(self, preprocess: dict, fusion_revision=None):
        self.stage_settings = {
            "audio": {**preprocess["audio"], "missing": "silent", "misaligned": "keep"},
            "face": {**preprocess["face"], "no_face": "keep"},
            "frames": {**preprocess["frames"], "short_clips": "keep", "truncated_clips": "keep"},
        }
        self.num_frames = preprocess["frames"]["num_frames"]
        self.n_mfcc = preprocess["audio"]["n_mfcc"]
        self.notes = revision_notes(preprocess, fusion_revision)

    def prepare(self, clips: list[dict], folder, progress=None) -> list[PreparedClip]:
        """Preprocess ``clips`` ({clip_id, path}: unique ids, absolute paths) into ``folder`` and
        encode each clip that every stage accepted. ``progress`` is called after each clip and stage."""
        folder = Path(folder)
        prepared = {clip["clip_id"]: PreparedClip(clip["clip_id"], clip["path"], notes=list(self.notes)) for clip in clips}
        for clip in prepared.values():
            clip.error = whole_file_problem(clip.path)
        jobs = [{"clip_id": clip["clip_id"], "path": clip["path"], "audio_path": ""} for clip in clips]
        for name in STAGE_NAMES:  # in order: the frames stage crops to the face stage's boxes
            stage = STAGES[name](Path("."), folder, self.stage_settings[name])
            pending = [job for job in jobs if not prepared[job["clip_id"]].error]
            if progress:  # a clip that an earlier stage rejected is done with this stage too
                for _ in range(len(jobs) - len(pending)):
                    progress()
            try:
                stage.prepare(pending)  # inside: a failed OpenFace call leaves no folder behind
                for job in pending:
                    row, entries, _ = process_clip(stage, job)
                    clip = prepared[job["clip_id"]]
                    if row["status"] == "ok":
                        clip.info[name] = row
                    else:
                        clip.error = "; ".join(f"{name}: {entry['reason']}" for entry in entries) or f"{name}: {row.get('reason', row['status'])}"
                    if progress:
                        progress()
            finally:
                stage.finish()
        for clip in prepared.values():
            if not clip.error:
                record = {
                    **UNLABELLED,
                    "clip_id": clip.clip_id,
                    "audio_missing": bool(clip.info["audio"].get("audio_missing", False)),
                    "duration_s": clip.info["audio"].get("duration_s", float("nan")),
                    "face_ratio": clip.face_ratio,
                    # what the fuse stage takes from a frames chunk table (total_frames, a dense window)
                    **{key: clip.info["frames"].get(key, float("nan")) for key in STAGE_INFO["frames"]},
                }
                clip.example = encode_clip(record, folder, self.num_frames, self.n_mfcc).example
        return list(prepared.values())

    def write_examples(self, clips: list[PreparedClip], folder) -> Path | None:
        """The encoded clips as one TFRecord file in ``folder`` (what the input pipeline reads);
        None when no clip could be encoded."""
        examples = [clip.example for clip in clips if clip.example is not None]
        if not examples:
            return None
        path = Path(folder) / EXAMPLES_FILE
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            for example in examples:
                handle.write(tfrecord_record(example))
        return path
