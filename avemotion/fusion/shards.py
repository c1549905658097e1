"""The fuse stage: one chunk's per-clip artifacts into a tabular shard and a TFRecord shard.

A clip goes into the shards when its status is ``ok`` in all three preprocessing chunk tables
(audio, face, frames) and it has a label (``label_index >= 0``; MAFW's compound-only clips have -1).
The others are counted in the log; quarantined clips are already listed in quarantine.csv.

results/{dataset}/shards/tabular/{chunk}.parquet, one row per clip:
  the chunk's manifest columns (those of its dataset's manifest), then the same feature columns for
  every dataset: ``duration_s``, ``audio_missing``, ``silent``, ``audio_misaligned`` (from the audio
  chunk table), ``short``, ``truncated`` (from the frames chunk table),
  ``face_success_ratio`` and ``face_{column}_{mean,std,min,max}`` for each schema.FACE_COLUMNS entry,
  ``mfcc_{i}_{mean,std}`` (i < schema.MFCC_COEFFICIENTS), ``mel_band_{g}_{mean,std}``,
  ``energy_{mean,std,max}`` (see avemotion.fusion.features), then ``face_sequence``:
  a list of T steps, each a fixed-size list of len(FACE_COLUMNS) float32 (Arrow
  ``list<fixed_size_list<float, 49>>``; ``np.stack(cell)`` gives the (T, 49) array). Columns a face
  backend does not estimate, and MFCCs past the dataset's n_mfcc, are NaN.

results/{dataset}/shards/tfrecord/{chunk}.tfrecord: one tf.train.Example per clip, exactly as
avemotion.fusion.schema documents (absent face columns zero-filled and flagged in face_present).
The examples are encoded without TensorFlow (avemotion.fusion.tfrecord), so the fuse jobs run in the
preprocessing environment and skip TensorFlow's import time.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import wave
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from avemotion.fusion import features as F
from avemotion.fusion.schema import (
    AUDIO_STEPS,
    FACE_COLUMNS,
    FACE_FEATURES,
    MAX_SPEECH_SECONDS,
    MEL_BANDS,
    MFCC_COEFFICIENTS,
    SPEECH_SAMPLE_RATE,
    feature_spec,
    record_windows,
)
from avemotion.fusion.tfrecord import encode_example, tfrecord_record
from avemotion.io import atomic_path, plain
from avemotion.layout import ClipArtifacts
from avemotion.media.spectrogram import mfcc
from avemotion.preprocess.plan import STAGE_NAMES

log = logging.getLogger(__name__)

JPEG_QUALITY = 95
# How a clip's artifacts are encoded into its example: a release that encodes them differently
# (2: Mel and MFCC shrunk to AUDIO_STEPS by area resampling) raises it, which reruns every fuse job
# and retrains every model (a param of both), and predict notes a model trained on another revision
FUSION_REVISION = 2
# What the fuse stage takes from each preprocessing chunk table (missing columns read as NaN).
STAGE_INFO = {
    "audio": ["duration_s", "audio_missing", "silent", "audio_misaligned"],
    "face": ["face_ratio"],
    "frames": ["total_frames", "fps", "short", "truncated", "window_start", "window_end", "windows", "window_starts", "window_ends", "frame_slots"],
}
# Flags a usable clip may carry (kept by the default settings; results made before a flag existed read False).
CLIP_FLAGS = ["audio_missing", "silent", "audio_misaligned", "short", "truncated"]
INFO_COLUMNS = [("duration_s", pa.float32())] + [(flag, pa.bool_()) for flag in CLIP_FLAGS]
FEATURE_COLUMNS = (
    ["face_success_ratio"] + F.FACE_SUMMARY_COLUMNS + F.MFCC_COLUMNS + F.MEL_COLUMNS + F.ENERGY_COLUMNS
)
FACE_CSV_COLUMNS = {"frame", "success", *FACE_COLUMNS}  # read from the face CSVs (landmarks are not)
FACE_SEQUENCE_TYPE = pa.list_(pa.list_(pa.float32(), FACE_FEATURES))


# ---- chunk orchestration ----------------------------------------------------------------------


def fuse_chunk(
    manifest, chunk: int, tables: dict, outdir, num_frames: int, n_mfcc: int, tabular, tfrecord, labelled_only: bool = True
) -> pa.Table:
    """Write the chunk's two shards; return the tabular shard. ``labelled_only=False`` keeps clips
    without a label (new clips to predict)."""
    rows = pd.read_parquet(manifest)
    rows = rows[rows["chunk"] == int(chunk)].reset_index(drop=True)
    clips = select_clips(rows, stage_info(tables), labelled_only)
    tabular_rows, sequences = [], []
    with atomic_path(tfrecord) as tmp, open(tmp, "wb") as handle:
        for clip in clips.to_dict("records"):
            try:
                encoded = encode_clip(clip, outdir, num_frames, n_mfcc)
            except FileNotFoundError as error:
                # A per-clip file removed after its chunk ran: Snakemake knows the chunk tables, not
                # the thousands of files, so only a rerun of the chunk's stages brings it back
                raise FileNotFoundError(
                    f"{error.filename}: missing, though chunk {chunk}'s tables say its clip was preprocessed (removed since?); "
                    f"rerun the chunk's stages, which reuse its other clips: snakemake --cores N --forcerun {' '.join(map(str, tables.values()))}"
                ) from error
            handle.write(tfrecord_record(encoded.example))
            tabular_rows.append(encoded.features)
            sequences.append(encoded.sequence)
    table = tabular_table(clips, rows, tabular_rows, sequences)
    with atomic_path(tabular) as tmp:
        pq.write_table(table, tmp)
    log.info("chunk %s: %d clips in the shards", chunk, len(clips))
    return table


@dataclass(frozen=True)
class EncodedClip:
    """One clip as the shards hold it: its serialised tf.train.Example, its tabular feature columns
    and its face sequence (T, FACE_FEATURES), NaN where the backend has no estimate."""

    example: bytes
    features: dict
    sequence: np.ndarray


def encode_clip(clip: dict, outdir, num_frames: int, n_mfcc: int) -> EncodedClip:
    """A clip's preprocessing artifacts under ``outdir`` as the model reads them: what the fuse stage
    writes into the shards and what ``avemotion predict`` feeds the model (through the same input
    pipeline), so both see the same numbers.

    ``clip`` holds the manifest fields the examples carry (clip_id, dataset, speaker, label,
    label_index, fold, valence, arousal; UNLABELLED for a clip without a manifest row) and the
    stages' ``audio_missing``, ``face_ratio`` and ``total_frames`` (NaN: the face table's length).
    """
    windows = clip_windows(clip)
    artifacts = read_artifacts(outdir, clip["clip_id"], num_frames * windows)
    total = clip["total_frames"] if pd.notna(clip["total_frames"]) else len(artifacts["face"])
    spans = sampled_windows(clip, windows)
    slots = clip_slots(clip)
    sequences = [F.face_sequence(artifacts["face"], total, num_frames, span, slots) for span in spans]
    # the model's log-Mel covers what its frames cover (dense sampling: their window); the tabular
    # summaries describe the whole clip
    under_frames = mel_under_frames(artifacts["mel"], clip, total)
    mels = [F.time_window(under_frames, total, span) for span in spans]
    example = encode_example(example_features(clip, artifacts, sequences, n_mfcc, mels))
    # the tabular shard's face sequence: the window evaluation takes by default (the middle one)
    return EncodedClip(example, tabular_features(artifacts, n_mfcc), sequences[(windows - 1) // 2])


def mel_under_frames(mel: np.ndarray, clip: dict, total: int) -> np.ndarray:
    """The log-Mel's columns under the clip's ``total`` frames. The audio covers the video stream's
    span; a truncated file's last frames in that span do not decode (its last packet is cut), so its
    Mel runs past its frames (by 3 of 100 frames for an MP4 cut at 70 %), and spread over them it
    would put the sound ever later under the frames. Other clips' Mel is their frames' whole span."""
    # pd.notna: stated (older tables lack columns: None, or NaN after a join)
    if not pd.notna(clip.get("truncated")) or not clip["truncated"]:
        return mel  # whole, or an older table that states no truncation
    fps, seconds = clip.get("fps"), clip.get("duration_s")
    if not (pd.notna(fps) and pd.notna(seconds) and fps * seconds > 0):
        return mel  # an older table without the frame rate
    share = min(1.0, total / (seconds * fps))
    return mel[:, : max(1, int(round(mel.shape[1] * share)))]


def clip_slots(clip: dict):
    """The clip's frame slots on its time axis (the frames stage's ``frame_slots``); None where its
    frames are evenly spaced in time, or its frames table predates them (NaN or absent)."""
    slots = clip.get("frame_slots")
    return None if slots is None or np.ndim(slots) == 0 else np.asarray(slots, dtype=np.int64)


def clip_windows(clip: dict) -> int:
    """The temporal windows V the frames stage sampled of a clip (its ``windows``; 1 when absent)."""
    windows = clip.get("windows")
    return int(windows) if pd.notna(windows) else 1


def sampled_window(clip: dict) -> tuple[int, int] | None:
    """The source frames (start, end) a densely sampled clip's frames span; None for segment
    sampling (the whole clip), whose frames chunk tables have no window columns."""
    start, end = clip.get("window_start"), clip.get("window_end")
    return (int(start), int(end)) if pd.notna(start) and pd.notna(end) else None


def sampled_windows(clip: dict, windows: int) -> list[tuple[int, int] | None]:
    """Each temporal window's span of source frames (sampled_window; V > 1 windows: the lists
    ``window_starts`` and ``window_ends``, None each under segment sampling)."""
    if windows == 1:
        return [sampled_window(clip)]
    starts, ends = clip.get("window_starts"), clip.get("window_ends")
    if starts is None or ends is None or np.ndim(starts) == 0:  # segment sampling: NaN or absent
        return [None] * windows
    if len(starts) != windows or len(ends) != windows:
        raise ValueError(f"{clip['clip_id']}: {len(starts)} window spans in its frames table for {windows} windows")
    return [(int(start), int(end)) for start, end in zip(starts, ends)]


def chunk_rows_digest(manifest: pd.DataFrame, chunk) -> str:
    """A digest of one chunk's manifest rows. The workflow passes it as a param of the chunk's fuse
    job and reads the manifest as an ancient() input: the index rewrites the manifest whole when any
    clip changes, and the digest reruns only the chunks whose own rows changed."""
    rows = manifest[manifest["chunk"] == int(chunk)]
    # Values, not their column types: one new clip without a votes row turns the votes columns of every
    # chunk from int64 to float64 (2 to 2.0), which rewrote every chunk's digest and re-fused them all
    records = [{key: _value(value) for key, value in record.items()} for record in rows.astype(object).to_dict("records")]
    return hashlib.sha1(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()


def _value(value):
    """A manifest value as the digest compares it: a whole float as an int, a missing one as None."""
    value = plain(value)
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value) if isinstance(value, float) and value.is_integer() else value


def stage_info(tables: dict) -> pd.DataFrame:
    """The STAGE_INFO columns of every clip whose status is ok in all three chunk tables."""
    merged = None
    for stage in STAGE_NAMES:
        table = pd.read_parquet(tables[stage])
        ok = table.loc[table["status"] == "ok"].reindex(columns=["clip_id"] + STAGE_INFO[stage])
        ok["clip_id"] = ok["clip_id"].astype(str)  # an empty chunk's table has a float clip_id column
        merged = ok if merged is None else merged.merge(ok, on="clip_id", how="inner")
    return merged


def select_clips(rows: pd.DataFrame, info: pd.DataFrame, labelled_only: bool = True) -> pd.DataFrame:
    """The manifest rows that are usable and labelled (or all usable ones), with their info
    columns; logs the others."""
    usable = rows["clip_id"].isin(info["clip_id"])
    labelled = (rows["label_index"] >= 0) | (not labelled_only)
    log.info(
        "%d clips in the chunk: %d not ok in every preprocessing stage (see quarantine.csv), %d usable without a label (left out)",
        len(rows),
        int((~usable).sum()),
        int((usable & ~labelled).sum()),
    )
    clips = rows[usable & labelled].merge(info, on="clip_id", how="left", validate="one_to_one")
    clips[CLIP_FLAGS] = clips[CLIP_FLAGS].astype("boolean").fillna(False).astype(bool)
    return clips


def read_artifacts(outdir, clip_id: str, num_frames: int) -> dict:
    """A clip's sampled frames, log-Mel (dB) and face-feature table."""
    files = ClipArtifacts(outdir, clip_id)
    frames = np.load(files.frames)
    if frames.shape[0] != num_frames:
        raise ValueError(f"{clip_id}: {frames.shape[0]} frames in its frames artifact, expected {num_frames}")
    return {
        "frames": frames,
        "mel": np.load(files.mel_npy),
        "face": pd.read_csv(files.face_csv, usecols=lambda column: column in FACE_CSV_COLUMNS),
        "audio": speech_pcm(files.wav),
    }


def speech_pcm(path) -> bytes:
    """The audio stage's WAV as stored for the speech encoder: its int16 samples as they are (so the
    shard holds exactly what the stage wrote), at most MAX_SPEECH_SECONDS. Whether every clip stores
    it or only those of Whisper experiments: every one, since a clip's audio is a fraction of its
    frames' bytes and a fuse job then depends on no model setting."""
    with wave.open(str(path)) as handle:
        rate, channels, width = handle.getframerate(), handle.getnchannels(), handle.getsampwidth()
        if (rate, channels, width) != (SPEECH_SAMPLE_RATE, 1, 2):
            raise ValueError(f"{path}: {rate} Hz, {channels} channel(s), {8 * width}-bit; the audio stage writes 16 kHz mono 16-bit")
        return handle.readframes(min(handle.getnframes(), MAX_SPEECH_SECONDS * SPEECH_SAMPLE_RATE))


def tabular_features(artifacts: dict, n_mfcc: int) -> dict:
    mel = artifacts["mel"]
    return (
        F.face_summaries(artifacts["face"])
        | F.mfcc_summaries(mfcc(mel, n_mfcc))
        | F.mel_summaries(mel)
        | F.energy_summaries(mel)
    )


def tabular_table(clips: pd.DataFrame, rows: pd.DataFrame, features: list[dict], sequences: list) -> pa.Table:
    """The manifest columns, info and feature columns and face_sequence, typed the same in every chunk."""
    schema = pa.Schema.from_pandas(rows, preserve_index=False).remove_metadata()
    for name, kind in INFO_COLUMNS + [(name, pa.float32()) for name in FEATURE_COLUMNS]:
        schema = schema.append(pa.field(name, kind))
    frame = clips[list(rows.columns)].copy()
    frame = pd.concat(
        [frame, clips[[name for name, _ in INFO_COLUMNS]], pd.DataFrame.from_records(features, columns=FEATURE_COLUMNS, index=frame.index)],
        axis=1,
    )
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    flat = np.concatenate([s.ravel() for s in sequences]) if sequences else np.zeros(0, np.float32)
    steps = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), FACE_FEATURES)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])]).astype(np.int32)
    return table.append_column(pa.field("face_sequence", FACE_SEQUENCE_TYPE), pa.ListArray.from_arrays(offsets, steps))


# The manifest fields of a clip that no corpus lists (a new clip to predict): no label (-1), no
# speaker, no fold, no valence or arousal.
UNLABELLED = {"dataset": "", "speaker": "", "label": "", "label_index": -1, "fold": 0, "valence": np.nan, "arousal": np.nan}


def example_features(clip: dict, artifacts: dict, sequences: list[np.ndarray], n_mfcc: int, mels: list[np.ndarray]) -> dict:
    """The schema's features of one clip as {name: (kind, values)}, kind bytes | int | float: its
    frames (every window's), and each window's Mel (dB, ``mels``) and face sequence (``sequences``)."""
    windows = len(sequences)
    features = {
        **{name: ("bytes", [str(clip[name]).encode()]) for name in ("clip_id", "dataset", "speaker", "label")},
        "label_index": ("int", [clip["label_index"]]),
        "fold": ("int", [clip["fold"]]),
        "audio_missing": ("int", [int(clip["audio_missing"])]),
        "valence": ("float", [clip["valence"]]),
        "arousal": ("float", [clip["arousal"]]),
        "face_ratio": ("float", [clip["face_ratio"]]),
        "frames": ("bytes", [encode_jpeg(frame) for frame in artifacts["frames"]]),
        "mel": ("float", np.concatenate([F.resize_2d(mel, (MEL_BANDS, AUDIO_STEPS)).ravel() for mel in mels])),
        "mfcc": ("float", np.concatenate([F.resize_2d(mfcc(mel, n_mfcc), (MFCC_COEFFICIENTS, AUDIO_STEPS)).ravel() for mel in mels])),
        "face_sequence": ("float", np.concatenate([np.nan_to_num(sequence, nan=0.0).ravel() for sequence in sequences])),
        "face_present": ("float", F.face_present(artifacts["face"])),
        "audio": ("bytes", [artifacts["audio"]]),
    }
    if windows > 1:  # one window: the examples as before the feature existed
        features["windows"] = ("int", [windows])
    return features


def encode_jpeg(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


# ---- readers ----------------------------------------------------------------------------------


def read_tabular_shards(paths) -> pd.DataFrame:
    """Tabular shards in one table. Different datasets' manifest columns are unioned (missing ones
    NaN; a column whose type differs between datasets, such as eNTERFACE's numeric sentence
    against CREMA-D's sentence code, becomes an object column)."""
    tables = [pq.read_table(path) for path in paths]
    frames = [table.to_pandas() for table in tables if table.num_rows] or [table.to_pandas() for table in tables[:1]]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def iterate_examples(path, num_frames: int):
    """The examples of a TFRecord shard as dicts of NumPy values (imports TensorFlow).

    Strings are str, frames uint8 (T, S, S, 3) decoded from JPEG, mel (MEL_BANDS, AUDIO_STEPS),
    mfcc (MFCC_COEFFICIENTS, AUDIO_STEPS), face_sequence (T, len(FACE_COLUMNS)), audio int16 samples;
    a shard of V > 1 temporal windows gives frames, mel, mfcc and face_sequence a leading axis of V.
    """
    import tensorflow as tf

    windows = None
    for record in tf.data.TFRecordDataset(str(path)):
        if windows is None:
            windows = record_windows(record.numpy(), num_frames, path)
            spec, lead = feature_spec(num_frames, windows), (windows,) if windows > 1 else ()
            shapes = {"mel": (MEL_BANDS, AUDIO_STEPS), "mfcc": (MFCC_COEFFICIENTS, AUDIO_STEPS), "face_sequence": (num_frames, len(FACE_COLUMNS))}
        parsed = {name: value.numpy() for name, value in tf.io.parse_single_example(record, spec).items()}
        audio = np.frombuffer(parsed.pop("audio"), "<i2")  # samples, not text
        example = {name: value.decode() if isinstance(value, bytes) else value for name, value in parsed.items()}
        frames = np.stack([tf.io.decode_jpeg(frame, channels=3).numpy() for frame in parsed["frames"]])
        example["frames"] = frames.reshape(lead + (num_frames,) + frames.shape[1:])
        example.update({name: parsed[name].reshape(lead + shape) for name, shape in shapes.items()})
        example["audio"] = audio
        yield example
