"""eNTERFACE'05 indexing on the real clip paths, with the corpus' irregular names."""

import errno
import logging
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from avemotion.datasets import enterface, index_dataset, index_dependencies, write_index
from avemotion.io import NOT_UTF8
from avemotion.layout import INDEX_QUARANTINE
from conftest import REPO, run_snakemake, touch

SETTINGS = {"chunks": 16}


@pytest.fixture(scope="module")
def indexed(enterface_tree):
    return index_dataset("enterface", enterface_tree, SETTINGS)


def test_real_paths_give_unique_clips_speakers_and_class_counts(indexed):
    manifest, quarantine = indexed
    assert quarantine.empty
    assert len(manifest) == 1287 and manifest["clip_id"].is_unique
    assert manifest["speaker"].nunique() == 43
    assert manifest["label"].value_counts().to_dict() == {
        "anger": 215,
        "disgust": 215,
        "fear": 215,
        "sadness": 215,
        "surprise": 215,
        "happiness": 212,
    }


def test_speaker_comes_from_the_subject_folder(indexed):
    manifest, _ = indexed
    rows = manifest.set_index("clip_id")
    # subject 11's files are named s12_*: they keep their own speaker and ids distinct from subject 12's
    assert rows.loc["s11_an_1", "path"] == "subject 11/anger/sentence 1/s12_an_1.avi"
    assert rows.loc["s11_an_1", "speaker"] == "11" and rows.loc["s11_an_1", "file_subject"] == 12
    assert rows.loc["s12_an_1", "path"] == "subject 12/anger/sentence 1/s12_an_1.avi"
    assert rows.loc["s3_ha_1", "path"] == "subject 3/happiness/sentence 1/s_3_ha_1.avi"
    assert rows.loc["s16_su_3", "path"] == "subject 16/surprise/sentence 3/s16_su_3avi"
    # the sentence comes from the file name (subject 2 has two anger files in swapped folders)
    assert rows.loc["s2_an_2", "path"] == "subject 2/anger/sentence 1/s2_an_2.avi"


def test_folds_are_the_subject_blocks(indexed):
    manifest, _ = indexed
    subjects = manifest.groupby("fold")["speaker"].agg(lambda s: sorted(set(map(int, s))))
    assert [(s[0], s[-1]) for s in subjects] == [(1, 10), (11, 19), (20, 28), (29, 37), (38, 44)]


def test_subject_without_sentence_level_and_bad_files(tmp_path):
    touch(tmp_path / "subject 6" / "anger" / "s6_an_1.avi")
    touch(tmp_path / "subject 6" / "anger" / "s6_an_1 copy.avi")
    touch(tmp_path / "subject 7" / "anger" / "sentence 1" / "s7_xx_1.avi")
    touch(tmp_path / "subject 7" / "fear" / "sentence 1" / "s7_an_1.avi")
    touch(tmp_path / "subject 7" / "anger" / "sentence 1" / "s7_an_1.avi")
    touch(tmp_path / "subject 7" / "anger" / "sentence 1" / "s7_an_1avi")  # same clip twice
    touch(tmp_path / "subject 7" / "anger" / "sentence 1" / "Thumbs.db")
    touch(tmp_path / "README.txt")
    manifest, quarantine = index_dataset("enterface", tmp_path, SETTINGS)
    assert list(manifest["clip_id"]) == ["s6_an_1", "s7_an_1"]
    assert manifest.set_index("clip_id").loc["s6_an_1", "fold"] == 1
    reasons = dict(zip(quarantine["path"], quarantine["reason"]))
    assert len(reasons) == 4
    assert "does not match" in reasons["subject 6/anger/s6_an_1 copy.avi"]
    assert "unknown emotion code 'xx'" in reasons["subject 7/anger/sentence 1/s7_xx_1.avi"]
    assert "disagrees with its folder 'fear'" in reasons["subject 7/fear/sentence 1/s7_an_1.avi"]
    assert "duplicate clip id" in reasons["subject 7/anger/sentence 1/s7_an_1avi"]


def test_the_recipe_leaves_subject_6_out_as_published_splits_do(enterface_tree, tmp_path, caplog):
    """A copy with subject 6 indexes the 1,287 clips of 43 subjects that published splits use when
    the recipe's leave_out_speakers is set; subject 6's clips are listed in the quarantine."""
    recipe = yaml.safe_load((REPO / "avemotion" / "recipes" / "enterface.yaml").read_text())["datasets"]["enterface"]
    settings = {**SETTINGS, "leave_out_speakers": recipe["leave_out_speakers"]}
    with caplog.at_level(logging.INFO):
        manifest, quarantine = index_dataset("enterface", enterface_tree, settings)
    assert len(manifest) == 1287 and quarantine.empty
    assert "leave_out_speakers names 6, not among its speakers" in caplog.text  # this copy has no subject 6
    root = tmp_path / "copy"
    shutil.copytree(enterface_tree, root)
    for code, emotion in (("an", "anger"), ("su", "surprise")):
        touch(root / "subject 6" / emotion / f"s6_{code}_1.avi")
    assert len(index_dataset("enterface", root, SETTINGS)[0]) == 1289  # config.yaml's: every subject
    manifest, quarantine = index_dataset("enterface", root, settings)
    assert len(manifest) == 1287 and manifest["speaker"].nunique() == 43
    assert set(quarantine["reason"]) == {"speaker 6 left out (datasets.enterface.leave_out_speakers)"}
    assert sorted(quarantine["path"]) == ["subject 6/anger/s6_an_1.avi", "subject 6/surprise/s6_su_1.avi"]


def test_names_in_another_encoding_than_utf8_are_quarantined_and_the_index_is_written(tmp_path):
    """A copy unpacked from an old zip: a sentence folder named in Latin-1 (a no-break space, byte
    A0) and a file name in it; the tables cannot hold such names, and the index failed on them."""
    touch(tmp_path / "subject 1" / "anger" / "sentence 1" / "s1_an_1.avi")
    odd_folder = tmp_path / "subject 1" / "fear" / os.fsdecode(b"sentence\xa02")
    touch(odd_folder / "s1_fe_2.avi")
    touch(tmp_path / "subject 1" / "anger" / "sentence 1" / os.fsdecode(b"s1_an_3\xe9.avi"))
    touch(tmp_path / "subject 1" / os.fsdecode(b"col\xe8re") / "s1_an_2.avi")  # a reason that names the folder
    manifest, quarantine = index_dataset("enterface", tmp_path, SETTINGS)
    write_index(manifest, quarantine, tmp_path / "manifest.parquet", tmp_path / "quarantine.csv")
    assert list(pd.read_parquet(tmp_path / "manifest.parquet")["clip_id"]) == ["s1_an_1"]
    written = pd.read_csv(tmp_path / "quarantine.csv").set_index("path")["reason"].to_dict()
    assert written == {
        "subject 1/fear/sentence\\xa02/s1_fe_2.avi": "the file name is not UTF-8 (written in another encoding, as old zips unpack): rename the file",
        "subject 1/anger/sentence 1/s1_an_3\\xe9.avi": "name does not match sN_<code>_K.avi (e.g. s1_an_1.avi)",
        "subject 1/col\\xe8re/s1_an_2.avi": "file's emotion code 'an' (anger) disagrees with its folder 'col\\xe8re'",
    }


def test_a_folder_the_user_cannot_read_is_quarantined_until_it_can_be(tmp_path):
    """A subject's folder copied without read permission: its clips are unknown, so the folder
    itself is the quarantine entry (it was only a log line; the clips went missing unseen). Letting
    the user read it changes no folder's time, yet the index reruns and finds its clips: the folder,
    listed now, joins the index rule's inputs."""
    corpus = tmp_path / "enterface"
    touch(corpus / "subject 1" / "anger" / "sentence 1" / "s1_an_1.avi")
    touch(corpus / "subject 2" / "anger" / "sentence 1" / "s2_an_1.avi")
    (corpus / "lost+found").mkdir()  # fsck's, at the root of a corpus on its own volume: not a corpus folder
    (tmp_path / "paths.yaml").write_text(yaml.safe_dump({"datasets": {"enterface": {"root": str(corpus)}}, "experiments": []}))
    as_user = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"] if os.geteuid() == 0 else []
    index = [*as_user, sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "index", "--cores", "1", "--configfile", "paths.yaml"]
    for folder in ("subject 2", "lost+found"):
        (corpus / folder).chmod(0)
    try:
        run = subprocess.run(index, cwd=tmp_path, capture_output=True, text=True)
    finally:
        for folder in ("subject 2", "lost+found"):
            (corpus / folder).chmod(0o755)
    assert run.returncode == 0, run.stderr
    assert list(pd.read_parquet(tmp_path / "results/enterface/manifest.parquet")["clip_id"]) == ["s1_an_1"]
    assert pd.read_csv(tmp_path / INDEX_QUARANTINE.format(dataset="enterface"))[["clip_id", "path", "reason"]].to_dict("records") == [
        {"clip_id": "subject 2", "path": "subject 2", "reason": "cannot read this folder (Permission denied): the clips in it are left out; let the workflow's user read it"}
    ]
    run_snakemake(tmp_path, "index", "--cores", "1", "--configfile", "paths.yaml")
    assert list(pd.read_parquet(tmp_path / "results/enterface/manifest.parquet")["clip_id"]) == ["s1_an_1", "s2_an_1"]
    assert pd.read_csv(tmp_path / INDEX_QUARANTINE.format(dataset="enterface")).empty


def test_a_folder_on_a_stale_network_mount_is_quarantined_with_the_systems_reason(tmp_path, monkeypatch):
    """Not every folder that cannot be listed is a permission matter: a network mount gone stale
    says so, and the quarantine entry gives the system's reason without telling the user to grant
    read permission."""
    touch(tmp_path / "subject 1" / "anger" / "sentence 1" / "s1_an_1.avi")
    touch(tmp_path / "subject 2" / "anger" / "sentence 1" / "s2_an_1.avi")
    scandir, stale = os.scandir, str(tmp_path / "subject 2")

    def listing(path="."):
        if os.fspath(path) == stale:
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE), stale)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", listing)  # os.walk lists each folder through it
    manifest, quarantine = index_dataset("enterface", tmp_path, SETTINGS)
    assert list(manifest["clip_id"]) == ["s1_an_1"]
    assert quarantine[["path", "reason"]].to_dict("records") == [
        {"path": "subject 2", "reason": f"cannot read this folder ({os.strerror(errno.ESTALE)}): the clips in it are left out"}
    ]


def with_odd_folder_names(root):
    """A clip in a plain folder, one in a folder named in Latin-1 (a no-break space, byte A0) and one
    in a folder holding { }."""
    touch(root / "subject 1" / "anger" / "sentence 1" / "s1_an_1.avi")
    touch(root / "subject 1" / "fear" / os.fsdecode(b"sentence\xa02") / "s1_fe_2.avi")
    touch(root / "subject 1" / "happiness" / "sentence {3}" / "s1_ha_3.avi")
    return root


def test_folders_snakemake_cannot_name_are_not_index_inputs_and_their_clips_are_quarantined(tmp_path):
    """A folder named in Latin-1 or holding { } stopped the whole workflow (Snakemake writes a job's
    files into its lock as UTF-8, and reads braces as wildcards): they are not the index rule's
    inputs (their parent is), and their clips, a chunk job's inputs, are quarantined."""
    with_odd_folder_names(tmp_path)
    inputs = [str(path.relative_to(tmp_path)) for path in index_dependencies("enterface", tmp_path)]
    assert inputs == [".", "subject 1", "subject 1/anger", "subject 1/anger/sentence 1", "subject 1/fear", "subject 1/happiness"]
    manifest, quarantine = index_dataset("enterface", tmp_path, SETTINGS)
    assert list(manifest["clip_id"]) == ["s1_an_1"]
    assert quarantine.set_index("path")["reason"].to_dict() == {
        "subject 1/fear/sentence\\xa02/s1_fe_2.avi": NOT_UTF8,
        "subject 1/happiness/sentence {3}/s1_ha_3.avi": "the path holds { or }, which Snakemake reads as wildcards in a job's files: rename the file or its folder",
    }


def test_the_workflow_runs_on_a_corpus_with_such_folders(tmp_path):
    corpus = with_odd_folder_names(tmp_path / "enterface")
    (tmp_path / "paths.yaml").write_text(yaml.safe_dump({"datasets": {"enterface": {"root": str(corpus)}}, "experiments": []}))
    run_snakemake(tmp_path, "index", "--cores", "1", "--configfile", "paths.yaml")
    quarantine = pd.read_csv(tmp_path / INDEX_QUARANTINE.format(dataset="enterface"))
    assert len(quarantine) == 2
    planned = run_snakemake(tmp_path, "preprocess", "-n", "--cores", "1", "--configfile", "paths.yaml").stdout
    assert "preprocess_chunk" in planned


def test_symlinked_folders_are_read_and_videos_outside_subject_folders_quarantined(tmp_path):
    """A corpus spread over disks by symlinked folders is read through them (a link back up the tree
    is read once, as is a folder two links lead to); copies name subject folders "subject-2" or "Subject 3 "; a video outside any
    subject folder is quarantined, not left out unseen."""
    touch(tmp_path / "elsewhere" / "fear" / "sentence 1" / "s4_fe_1.avi")
    (tmp_path / "corpus" / "subject 4").mkdir(parents=True)
    (tmp_path / "corpus" / "subject 4" / "fear").symlink_to(tmp_path / "elsewhere" / "fear")
    (tmp_path / "corpus" / "subject 4" / "fear" / "sentence 1" / "loop").symlink_to(tmp_path / "corpus")
    (tmp_path / "corpus" / "subject 4" / "fear 2").symlink_to(tmp_path / "elsewhere" / "fear")  # a second way to one folder
    touch(tmp_path / "corpus" / "subject-2" / "anger" / "sentence 1" / "s2_an_1.avi")
    touch(tmp_path / "corpus" / "Subject 3 " / "anger" / "sentence 1" / "s3_an_1.avi")
    touch(tmp_path / "corpus" / "extra" / "s5_an_1.avi")
    touch(tmp_path / "corpus" / "s5_an_2.avi")
    touch(tmp_path / "corpus" / "__MACOSX" / "subject 4" / "fear" / "sentence 1" / "._s4_fe_1.avi")
    manifest, quarantine = index_dataset("enterface", tmp_path / "corpus", SETTINGS)
    assert sorted(manifest["clip_id"]) == ["s2_an_1", "s3_an_1", "s4_fe_1"]
    assert dict(zip(quarantine["path"], quarantine["reason"])) == {
        "extra/s5_an_1.avi": "not under a 'subject N' folder",
        "s5_an_2.avi": "not under a 'subject N' folder",
    }
    assert tmp_path / "corpus" / "subject 4" / "fear" / "sentence 1" in enterface.index_dependencies(tmp_path / "corpus")  # a clip added there reruns the index


def test_videos_of_any_case_outside_subject_folders_are_quarantined(tmp_path):
    """A video outside the subject folders is reported whatever the case of its extension (Clip.AVI,
    as Windows copies write it) or if it is an eNTERFACE name without the dot (s16_su_3avi), never
    left out silently."""
    touch(tmp_path / "subject 1" / "anger" / "sentence 1" / "s1_an_1.avi")
    touch(tmp_path / "stray" / "Clip.AVI")
    touch(tmp_path / "s16_su_3avi")
    touch(tmp_path / "README.txt")
    manifest, quarantine = index_dataset("enterface", tmp_path, SETTINGS)
    assert list(manifest["clip_id"]) == ["s1_an_1"]
    assert dict(zip(quarantine["path"], quarantine["reason"])) == {
        "stray/Clip.AVI": "not under a 'subject N' folder",
        "s16_su_3avi": "not under a 'subject N' folder",
    }


def test_a_batch_larger_than_a_split_stops_runs_that_train_only(tmp_path):
    """Part of a corpus indexed: a batch larger than its training split stops a run that may train,
    before any job, and no longer a run up to fusion (every target stopped on it, preprocessing too)."""
    corpus = tmp_path / "enterface"
    for subject in (1, 11, 20, 29):  # folds 1-4
        for sentence in range(1, 4):
            touch(corpus / f"subject {subject}" / "anger" / f"sentence {sentence}" / f"s{subject}_an_{sentence}.avi")
    experiments = [{"name": "small", "datasets": ["enterface"], "fusion": "late"}, {"name": "fits", "datasets": ["enterface"], "fusion": "late", "folds": [1], "training": {"batch_size": 2}}]
    config = {"datasets": {"enterface": {"root": str(corpus)}}, "training": {"batch_size": 64}, "experiments": experiments}
    (tmp_path / "paths.yaml").write_text(yaml.safe_dump(config))
    first = run_snakemake(tmp_path, "train", "--cores", "1", "--configfile", "paths.yaml", check=False)  # nothing indexed yet
    assert first.returncode != 0 and "training.batch_size: 64 is larger than the" in first.stderr
    assert (tmp_path / "results/enterface/manifest.parquet").is_file() and not list(tmp_path.glob("results/enterface/preprocess/*/*"))  # stopped right after the index
    for target in ("index", "preprocess", "fuse"):
        run_snakemake(tmp_path, target, "-n", "--cores", "1", "--configfile", "paths.yaml")
    for target in (["train"], ["report"], []):
        run = run_snakemake(tmp_path, *target, "-n", "--cores", "1", "--configfile", "paths.yaml", check=False)
        assert run.returncode != 0 and "training.batch_size: 64 is larger than the" in run.stderr + run.stdout
    # another experiment's models are not stopped by it
    run_snakemake(tmp_path, "results/experiments/fits/final/model.keras", "-n", "--cores", "1", "--configfile", "paths.yaml")


def test_subject_folders_outside_1_to_44_are_quarantined_as_having_no_fold(tmp_path):
    """eNTERFACE has subjects 1-44: a 'subject 0' or 'subject 45' folder has no protocol fold, so its
    clips are quarantined, not put in a fold."""
    for subject in (0, 1, 44, 45):
        touch(tmp_path / f"subject {subject}" / "anger" / "sentence 1" / f"s{subject}_an_1.avi")
    manifest, quarantine = index_dataset("enterface", tmp_path, SETTINGS)
    assert manifest[["clip_id", "fold"]].values.tolist() == [["s1_an_1", 1], ["s44_an_1", 5]]
    assert dict(zip(quarantine["path"], quarantine["reason"])) == {
        "subject 0/anger/sentence 1/s0_an_1.avi": "subject 0 is outside eNTERFACE's 1-44, so it has no protocol fold",
        "subject 45/anger/sentence 1/s45_an_1.avi": "subject 45 is outside eNTERFACE's 1-44, so it has no protocol fold",
    }


def test_emotion_folder_and_code_are_compared_without_regard_to_case(tmp_path):
    """Copies write 'Anger' for the emotion folder and S1_AN_1.AVI for a file: the clip is anger,
    its id written as the others are (s1_an_1), not quarantined."""
    touch(tmp_path / "subject 1" / "Anger" / "sentence 1" / "s1_an_1.avi")
    touch(tmp_path / "subject 2" / "anger" / "sentence 1" / "S2_AN_1.AVI")
    manifest, quarantine = index_dataset("enterface", tmp_path, SETTINGS)
    assert quarantine.empty
    assert manifest[["clip_id", "label", "speaker"]].values.tolist() == [["s1_an_1", "anger", "1"], ["s2_an_1", "anger", "2"]]


def test_a_clip_deeper_than_the_sentence_folder_is_quarantined(tmp_path):
    """Only subject N/<emotion>/[sentence K/]<file> is the corpus' layout: a video a folder further
    down (a copy's backup folder) is quarantined, not indexed as a second take."""
    touch(tmp_path / "subject 1" / "anger" / "sentence 1" / "s1_an_1.avi")
    touch(tmp_path / "subject 1" / "anger" / "sentence 1" / "old" / "s1_an_2.avi")
    manifest, quarantine = index_dataset("enterface", tmp_path, SETTINGS)
    assert list(manifest["clip_id"]) == ["s1_an_1"]
    assert dict(zip(quarantine["path"], quarantine["reason"])) == {
        "subject 1/anger/sentence 1/old/s1_an_2.avi": "expected subject N/<emotion>/[sentence K/]<file>",
    }


def test_videos_anywhere_below_a_folder_beside_the_subjects_are_quarantined_but_not_the_recycle_bins(tmp_path):
    """A video two folders down in a folder that is not a subject's is quarantined, never left out
    unseen; what a USB stick's recycle bin holds at the root is neither a clip nor quarantined."""
    touch(tmp_path / "subject 1" / "anger" / "sentence 1" / "s1_an_1.avi")
    touch(tmp_path / "backup" / "subject 2" / "s2_an_1.avi")
    touch(tmp_path / "$RECYCLE.BIN" / "S-1-5-21-1004" / "$R0AB12C.avi")
    manifest, quarantine = index_dataset("enterface", tmp_path, SETTINGS)
    assert list(manifest["clip_id"]) == ["s1_an_1"]
    assert dict(zip(quarantine["path"], quarantine["reason"])) == {"backup/subject 2/s2_an_1.avi": "not under a 'subject N' folder"}
