"""The chunk runner: per-clip quarantine, receipts that let a killed chunk redo only its
unfinished clips (and keep those of clips whose files only got new times), the cached content
digests of source files, and the audio stage on real media."""

import os
import time

import numpy as np
import pandas as pd
import pytest

from avemotion import io
from avemotion.demo.encode import write_video
from avemotion.face import facemesh, geometry
from avemotion.io import read_json
from avemotion.media.audio import DECODING_REVISION, NoAudioStream, extract_audio, read_wav
from avemotion.media.frame_crops import CROP_REVISION
from avemotion.media.frames import READING_REVISION, SAMPLING_REVISION
from avemotion.preprocess import sources
from avemotion.preprocess.chunk import Stage, fingerprint, run_chunk
from avemotion.preprocess.plan import STAGE_NAMES, chunk_clips, chunk_source_files, job_settings
from avemotion.preprocess.stages import STAGES, AudioStage
from avemotion.quarantine import ClipDefect, SkipClip
from avemotion.train.settings import model_settings
from conftest import demo_settings


class CountingStage(Stage):
    """Writes one text file per clip; clip 'bad' is defective, clip 'bug' raises an unforeseen error,
    clip 'skip' is skipped (an earlier stage quarantined it)."""

    name = "count"
    calls: list = []

    def artifacts(self, clip):
        return [self.outdir / "count" / f"{clip['clip_id']}.txt"]

    def process(self, clip):
        CountingStage.calls.append(clip["clip_id"])
        if clip["clip_id"] == "bad":
            raise ClipDefect("no face in any frame")
        if clip["clip_id"] == "bug":
            raise KeyError("oops")
        if clip["clip_id"] == "skip":
            raise SkipClip("no face features (quarantined by the face stage)")
        self.artifacts(clip)[0].parent.mkdir(parents=True, exist_ok=True)
        self.artifacts(clip)[0].write_text("done")
        return {"value": len(clip["clip_id"])}


@pytest.fixture
def corpus(tmp_path):
    for name in ("a", "bad", "bug", "c"):
        (tmp_path / f"{name}.mp4").write_text(name)
    return [{"clip_id": name, "path": f"{name}.mp4", "audio_path": ""} for name in ("a", "bad", "bug", "c")]


def run(tmp_path, clips, settings=None):
    stage = CountingStage(tmp_path, tmp_path / "out", settings or {"x": 1})
    return run_chunk(stage, clips, tmp_path / "table.parquet", tmp_path / "quarantine.csv")


def test_defects_are_quarantined_and_the_rest_of_the_chunk_finishes(tmp_path, corpus):
    CountingStage.calls = []
    table = run(tmp_path, corpus)
    assert dict(zip(table["clip_id"], table["status"])) == {"a": "ok", "bad": "quarantined", "bug": "quarantined", "c": "ok"}
    quarantine = pd.read_csv(tmp_path / "quarantine.csv")
    assert list(quarantine["stage"]) == ["count", "count"]
    assert quarantine.set_index("clip_id").loc["bad", "reason"] == "no face in any frame: bad.mp4"  # the file named
    assert "unexpected error: KeyError" in quarantine.set_index("clip_id").loc["bug", "reason"]


def test_a_rerun_redoes_only_unfinished_changed_or_unforeseen_clips(tmp_path, corpus):
    run(tmp_path, corpus)
    CountingStage.calls = []
    run(tmp_path, corpus)
    assert CountingStage.calls == ["bug"]  # a failure nobody foresaw is retried, a known defect is not
    (tmp_path / "out" / "count" / "a.txt").unlink()  # e.g. killed before this clip's artifact landed
    (tmp_path / "c.mp4").write_text("changed source")
    CountingStage.calls = []
    table = run(tmp_path, corpus)
    assert CountingStage.calls == ["a", "bug", "c"]
    assert len(pd.read_csv(tmp_path / "quarantine.csv")) == 2 and len(table) == 4
    CountingStage.calls = []
    run(tmp_path, corpus, settings={"x": 2})  # new settings: every clip again
    assert CountingStage.calls == ["a", "bad", "bug", "c"]


def test_a_skipped_clip_is_recorded_as_skipped_with_its_reason_and_not_quarantined_again(tmp_path, corpus):
    """A clip an earlier stage quarantined is skipped by the stages after it: the chunk table says
    'skipped' and why, and the stage's quarantine part does not list it a second time."""
    (tmp_path / "skip.mp4").write_text("skip")
    table = run(tmp_path, corpus + [{"clip_id": "skip", "path": "skip.mp4", "audio_path": ""}]).set_index("clip_id")
    assert table.loc["skip", "status"] == "skipped"
    assert table.loc["skip", "reason"] == "no face features (quarantined by the face stage)"
    assert "skip" not in set(pd.read_csv(tmp_path / "quarantine.csv")["clip_id"])


class PairStage(CountingStage):
    """Writes two files per clip, the second after the first."""

    name = "pair"

    def artifacts(self, clip):
        return [self.outdir / "pair" / f"{clip['clip_id']}.{ext}" for ext in ("txt", "npy")]

    def process(self, clip):
        row = super().process(clip)
        self.artifacts(clip)[1].write_text("done")
        return row


def test_a_clip_missing_any_one_of_its_artifacts_is_redone(tmp_path, corpus):
    """A job killed between a clip's artifacts leaves some of them: the clip is redone on the next
    run, not reused because one of its files is there."""
    stage = PairStage(tmp_path, tmp_path / "out", {"x": 1})
    run_chunk(stage, corpus, tmp_path / "table.parquet", tmp_path / "quarantine.csv")
    (tmp_path / "out" / "pair" / "a.npy").unlink()
    CountingStage.calls = []
    run_chunk(stage, corpus, tmp_path / "table.parquet", tmp_path / "quarantine.csv")
    assert CountingStage.calls == ["a", "bug"]
    assert (tmp_path / "out" / "pair" / "a.npy").exists()


class GroupStage(CountingStage):
    """Records the clips of each prepare() call and each finish(); with ``fail`` set, prepare()
    fails for a group holding clip 'c'."""

    events: list = []
    fail = False

    def prepare(self, clips):
        GroupStage.events.append([clip["clip_id"] for clip in clips])
        if GroupStage.fail and "c" in GroupStage.events[-1]:
            raise RuntimeError("prepare failed")

    def finish(self):
        GroupStage.events.append("finish")


@pytest.mark.parametrize("together, groups", [(None, [["a", "bad", "bug", "c"]]), (2, [["a", "bad"], ["bug", "c"]])])
def test_clips_are_prepared_in_groups_of_the_stages_size_and_finished_once(tmp_path, corpus, monkeypatch, together, groups):
    """A stage prepares its pending clips prepared_together at a time (all at once without a size),
    e.g. one OpenFace call per group, then finishes once; a rerun prepares only the clips it redoes."""
    monkeypatch.setattr(GroupStage, "prepared_together", together)
    GroupStage.events = []
    run_chunk(GroupStage(tmp_path, tmp_path / "out", {"x": 1}), corpus, tmp_path / "t.parquet", tmp_path / "q.csv")
    assert GroupStage.events == groups + ["finish"]
    GroupStage.events = []
    run_chunk(GroupStage(tmp_path, tmp_path / "out", {"x": 1}), corpus, tmp_path / "t.parquet", tmp_path / "q.csv")
    assert GroupStage.events == [["bug"], "finish"]


def test_a_job_failing_in_a_later_groups_prepare_keeps_the_earlier_groups_receipts_and_finishes(tmp_path, corpus, monkeypatch):
    """prepare() failing for the second group still calls finish() (which removes what prepare()
    made), and the first group's clips are not redone by the next run."""
    monkeypatch.setattr(GroupStage, "prepared_together", 2)
    monkeypatch.setattr(GroupStage, "fail", True)
    GroupStage.events = []
    stage = GroupStage(tmp_path, tmp_path / "out", {"x": 1})
    with pytest.raises(RuntimeError, match="prepare failed"):
        run_chunk(stage, corpus, tmp_path / "t.parquet", tmp_path / "q.csv")
    assert GroupStage.events == [["a", "bad"], ["bug", "c"], "finish"]
    monkeypatch.setattr(GroupStage, "fail", False)
    GroupStage.events = []
    run_chunk(stage, corpus, tmp_path / "t.parquet", tmp_path / "q.csv")
    assert GroupStage.events == [["bug", "c"], "finish"]


def test_progress_is_reported_once_per_clip_processed_not_per_clip_reused(tmp_path, corpus):
    """The progress callback (a job's progress bar) advances for each clip the job works on."""
    stage = CountingStage(tmp_path, tmp_path / "out", {"x": 1})
    ticks = []
    run_chunk(stage, corpus, tmp_path / "t.parquet", tmp_path / "q.csv", progress=lambda: ticks.append(1))
    assert len(ticks) == 4
    ticks.clear()
    run_chunk(stage, corpus, tmp_path / "t.parquet", tmp_path / "q.csv", progress=lambda: ticks.append(1))
    assert len(ticks) == 1  # only 'bug' is retried


class NumpyStage(CountingStage):
    """Records numpy values, as the media stages do (np.bool_, np.int64)."""

    name = "numpy"

    def process(self, clip):
        super().process(clip)
        return {"silent": np.bool_(False), "frames": np.int64(7)}


def test_numpy_values_of_a_reused_receipt_keep_their_type(tmp_path):
    """A rerun reads finished clips' rows from their receipts: a numpy False stays False (not the
    string 'False', which a later stage would take for true) and a count stays a number."""
    (tmp_path / "a.mp4").write_text("a")
    clips = [{"clip_id": "a", "path": "a.mp4", "audio_path": ""}]
    stage = NumpyStage(tmp_path, tmp_path / "out", {"x": 1})
    run_chunk(stage, clips, tmp_path / "t.parquet", tmp_path / "q.csv")
    CountingStage.calls = []
    table = run_chunk(stage, clips, tmp_path / "t.parquet", tmp_path / "q.csv")
    assert CountingStage.calls == []
    assert not table.loc[0, "silent"] and table.loc[0, "frames"] == 7


def test_an_empty_chunk_writes_a_table_with_the_chunk_columns(tmp_path):
    """A chunk without clips (more chunks than clips) still writes a table the later steps can read
    by its columns."""
    run(tmp_path, [])
    table = pd.read_parquet(tmp_path / "table.parquet")
    assert len(table) == 0 and {"clip_id", "status", "seconds"} <= set(table.columns)


def later(path, seconds=60):
    """Give ``path`` a newer mtime, its content unchanged (a copy that did not keep times)."""
    stamp = path.stat().st_mtime + seconds
    os.utime(path, (stamp, stamp))


def test_a_touched_source_keeps_its_fingerprint_and_new_content_changes_it(tmp_path, corpus):
    stage = CountingStage(tmp_path, tmp_path / "out", {"x": 1})
    before = fingerprint(stage, corpus[0])
    later(tmp_path / "a.mp4")
    assert fingerprint(stage, corpus[0]) == before
    (tmp_path / "a.mp4").write_text("b")  # same size, new bytes
    assert fingerprint(stage, corpus[0]) != before


def test_a_copied_corpus_with_new_times_reuses_every_receipt(tmp_path, corpus):
    run(tmp_path, corpus)
    for clip in corpus:
        later(tmp_path / clip["path"])
    CountingStage.calls = []
    run(tmp_path, corpus)
    assert CountingStage.calls == ["bug"]  # only the unforeseen failure, as without the new times


def test_source_digests_read_a_file_once_per_size_mtime_and_inode(tmp_path, monkeypatch):
    reads, read = [], sources.file_digest

    def counted(path):
        reads.append(path)
        return read(path)

    monkeypatch.setattr(sources, "file_digest", counted)
    clip, cache = tmp_path / "clip.mp4", tmp_path / "results" / "source_digests.json"
    clip.write_bytes(b"x" * 3_000_000)  # more than one read block
    first = sources.sources_digest([clip], cache)
    assert sources.sources_digest([clip], cache) == first and len(reads) == 1
    later(clip)
    assert sources.sources_digest([clip], cache) == first and len(reads) == 2  # read again, same digest
    sources._caches.clear()  # a new process: the digests come from the cache file
    assert sources.sources_digest([clip], cache) == first and len(reads) == 2
    clip.write_bytes(b"y" * 3_000_000)
    assert sources.sources_digest([clip], cache) != first and len(reads) == 3
    assert sources.file_digests([clip, tmp_path / "gone.mp4"], cache)[1] is None


def test_source_digest_cache_keeps_the_digests_of_parallel_writers(tmp_path):
    cache = tmp_path / "source_digests.json"
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
    sources.file_digests([tmp_path / "a"], cache)
    sources._caches.clear()  # b's job started before a's wrote the cache
    sources._caches[str(cache)] = {}
    sources.file_digests([tmp_path / "b"], cache)
    assert sorted(read_json(cache)) == [str(tmp_path / "a"), str(tmp_path / "b")]


def test_chunk_plan_from_the_manifest():
    manifest = pd.DataFrame(
        {"clip_id": ["x", "y", "z"], "path": ["V/x.flv", "V/y.flv", "V/z.flv"], "audio_path": ["A/x.wav", "", None], "chunk": [1, 0, 1]}
    )
    clips = chunk_clips(manifest, 1)
    assert clips == [{"clip_id": "x", "path": "V/x.flv", "audio_path": "A/x.wav"}, {"clip_id": "z", "path": "V/z.flv", "audio_path": ""}]
    assert chunk_source_files("/c", clips, "audio") == ["/c/A/x.wav", "/c/V/x.flv", "/c/V/z.flv"]  # the WAV is aligned to its video
    assert chunk_source_files("/c", clips, "face") == ["/c/V/x.flv", "/c/V/z.flv"]


@pytest.fixture
def media(tmp_path):
    frames = np.zeros((50, 64, 64, 3), np.uint8)
    t = np.arange(2 * 16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    write_video(tmp_path / "voiced.mp4", frames, 25, "mp4", tone, 16000)
    write_video(tmp_path / "mute.avi", frames, 25, "avi", None, 16000)
    return tmp_path


def test_audio_is_extracted_to_16k_mono_and_missing_audio_is_detected(media):
    extract_audio(media / "voiced.mp4", media / "out.wav")
    audio, rate = read_wav(media / "out.wav")
    assert rate == 16000 and abs(len(audio) / rate - 2.0) < 0.1
    spectrum = np.abs(np.fft.rfft(audio[4000:20000]))
    assert abs(np.fft.rfftfreq(16000, 1 / 16000)[spectrum.argmax()] - 440) < 2
    with pytest.raises(NoAudioStream):
        extract_audio(media / "mute.avi", media / "mute.wav")
    assert not (media / "mute.wav").exists()


@pytest.mark.parametrize("missing, status", [("quarantine", "quarantined"), ("silent", "ok")])
def test_audio_stage_quarantines_or_keeps_audio_less_clips(media, missing, status):
    settings = {"window_ms": 25, "hop_ms": 10, "n_mels": 64, "n_mfcc": 20, "missing": missing}
    clips = [{"clip_id": n, "path": f"{n}.{ext}", "audio_path": ""} for n, ext in (("voiced", "mp4"), ("mute", "avi"))]
    table = run_chunk(AudioStage(media, media / "out", settings), clips, media / "t.parquet", media / "q.csv").set_index("clip_id")
    assert table.loc["voiced", "status"] == "ok" and not table.loc["voiced", "silent"]
    assert table.loc["mute", "status"] == status
    assert (media / "out" / "spectrograms" / "voiced_mel.npy").exists()
    assert np.load(media / "out" / "spectrograms" / "voiced_mel.npy").shape[0] == 64
    if missing == "silent":
        assert table.loc["mute", "audio_missing"] and table.loc["mute", "silent"]
        assert abs(table.loc["mute", "duration_s"] - 2.0) < 0.1
    else:
        assert pd.read_csv(media / "q.csv")["reason"].tolist() == ["no audio stream: mute.avi"]


def test_face_jobs_of_the_built_in_backend_carry_its_features_version(monkeypatch):
    """A release whose face features differ (here: a refitted AU model) changes the face jobs'
    params, so Snakemake recomputes the face tables; audio and frames jobs, and OpenFace's face jobs,
    keep their params."""
    config = demo_settings()
    before = {stage: job_settings(config, "crema_d", stage) for stage in ("audio", "face", "frames")}
    assert before["face"]["facemesh_features"] == facemesh.features_version()
    assert "facemesh_features" not in before["audio"] and "facemesh_features" not in before["frames"]
    weights, bias, threshold = geometry.AU_MODELS["12"]
    monkeypatch.setitem(geometry.AU_MODELS, "12", (weights, bias + 0.1, threshold))
    after = {stage: job_settings(config, "crema_d", stage) for stage in ("audio", "face", "frames")}
    assert after["face"] != before["face"]
    assert after["audio"] == before["audio"] and after["frames"] == before["frames"]
    config["face"] = {**config["face"], "backend": "openface", "openface_bin": "FeatureExtraction"}
    assert "facemesh_features" not in job_settings(config, "crema_d", "face")


def test_frames_jobs_carry_the_sampling_revision():
    """Frames jobs' params carry the revision of which frames a clip's settings pick, so a release
    that picks other frames re-samples existing clips; audio and face jobs do not carry it."""

    config = demo_settings()
    assert job_settings(config, "crema_d", "frames")["sampling_revision"] == SAMPLING_REVISION
    assert all("sampling_revision" not in job_settings(config, "crema_d", stage) for stage in ("audio", "face"))


def test_face_crops_carry_the_crop_revision_and_whole_frames_none():
    """How face crops are cut changed (area-averaged where they shrink the frame): frames jobs that
    cut face squares or aligned faces recut existing clips once; letterboxed whole frames, cut as
    before, keep their jobs (and the fusion and training after them)."""

    config = demo_settings()
    for crop in ("face", "aligned"):
        config["frames"]["crop"] = crop
        assert job_settings(config, "crema_d", "frames")["crop_revision"] == CROP_REVISION
    config["frames"]["crop"] = "full"
    assert "crop_revision" not in job_settings(config, "crema_d", "frames")


def test_audio_jobs_carry_the_decoding_revision():
    """How audio is decoded changed (gaps filled, the stream players pick): audio jobs' params carry
    the revision, so existing clips' audio is decoded anew once; face and frames jobs do not."""

    config = demo_settings()
    assert job_settings(config, "crema_d", "audio")["decoding_revision"] == DECODING_REVISION
    assert all("decoding_revision" not in job_settings(config, "crema_d", stage) for stage in ("face", "frames"))


def test_every_preprocessing_job_carries_the_reading_revision():
    """How videos are read (which frames, which span) changed, e.g. frames an MP4 edit list hides:
    every stage's jobs carry the revision, so existing clips are read anew once."""

    config = demo_settings()
    assert all(job_settings(config, "crema_d", stage)["reading_revision"] == READING_REVISION for stage in ("audio", "face", "frames"))


def test_job_settings_do_not_depend_on_the_order_config_files_name_keys_in():
    """Snakemake compares a job's params by their text: a second config file that names a key
    config.yaml names too, in another order, left the values alone and reran every chunk job and
    retrained every model."""

    config = demo_settings()
    reordered = demo_settings()
    for section in ("audio", "training", "model"):
        reordered[section] = dict(reversed(list(reordered[section].items())))
    for stage in ("audio", "face", "frames"):
        assert repr(job_settings(config, "crema_d", stage)) == repr(job_settings(reordered, "crema_d", stage))
    name = config["experiments"][0]["name"]
    assert repr(model_settings(config, name)) == repr(model_settings(reordered, name))


def test_a_digest_cache_write_leaves_a_parallel_chunk_jobs_temporary_file_alone(tmp_path):
    """Chunk jobs of one corpus share its digest cache. A job's write must not take another job's
    temporary file, written a moment ago, for a dead writer's (removing it failed that job on a Slurm
    cluster); one older than any write is a killed job's and goes."""
    clip = tmp_path / "clip.flv"
    clip.write_bytes(b"FLV")
    cache = tmp_path / "source_digests.json"
    live = tmp_path / ".source_digests.json.k2ox9_qa.tmp"
    dead = tmp_path / ".source_digests.json.0a1b2c3d.tmp"
    for path in (live, dead):
        path.write_text("{}")
    old = time.time() - io.SHARED_LEFTOVER_AGE_S - 60
    os.utime(dead, (old, old))
    assert sources.file_digests([clip], cache) == [sources.file_digest(str(clip))]
    assert live.exists() and not dead.exists()
    assert io.read_json(cache)[str(clip)][3] == sources.file_digest(str(clip))


def test_the_workflow_plans_the_stages_the_package_runs():
    """preprocess.plan.STAGE_NAMES (read by the rules, which must not import the stages' media
    libraries) names the stages preprocess.stages.STAGES runs, in their order."""
    assert tuple(STAGES) == STAGE_NAMES
