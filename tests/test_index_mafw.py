"""MAFW indexing: labels and folds from the official single-label split files."""

import pytest
import yaml

from avemotion.config import ConfigError
from avemotion.datasets import check_datasets, index_dataset, index_dependencies, mafw
from avemotion.datasets.mafw import SPLIT_DIR, MafwSplitError
from avemotion.evaluate.report import quarantine_summary
from conftest import touch


def write_split(root, k, part, lines):
    touch(root / SPLIT_DIR / f"set_{k}" / f"{part}.txt", "".join(f"{line}\n" for line in lines))


@pytest.fixture
def corpus(tmp_path):
    for number in range(1, 13):
        touch(tmp_path / "data" / "clips" / f"{number:05d}.mp4")
    touch(tmp_path / "data" / "clips" / "clip 13.mp4")
    labels = {f"{n:05d}": label for n, label in zip(range(1, 11), ["anger", "fear", "happiness", "neutral", "sadness"] * 2)}
    for k in range(1, 6):
        test = [c for i, c in enumerate(sorted(labels)) if i % 5 == k - 1]
        write_split(tmp_path, k, "test", [f"{c}.mp4 {labels[c]}" for c in test])
        write_split(tmp_path, k, "train", [f"{c}.mp4 {labels[c]}" for c in sorted(labels) if c not in test])
    return tmp_path


def test_labels_and_folds_come_from_the_split_files(corpus):
    manifest, quarantine = index_dataset("mafw", corpus, {"chunks": 8})
    rows = manifest.set_index("clip_id")
    assert rows.loc["00001", "label"] == "anger" and rows.loc["00001", "fold"] == 1
    assert rows.loc["00007", "label"] == "fear" and rows.loc["00007", "fold"] == 2
    assert rows.loc["00007", "label_index"] == 2
    # compound-only clips (in no single-label split file) are indexed without a label or fold
    assert rows.loc["00011", "label"] == "" and rows.loc["00011", "label_index"] == -1
    assert rows.loc["00011", "fold"] == 0
    assert list(quarantine["reason"]) == ["name is not <5 digits>.mp4 (e.g. 00025.mp4)"]


def test_split_file_defects_are_quarantined(corpus):
    write_split(corpus, 1, "test", ["00001.mp4 anger", "00012.mp4 joy", "00099.mp4 fear", "garbage"])
    write_split(corpus, 2, "train", ["00001.mp4 fear", "00003.mp4 happiness"])
    manifest, quarantine = index_dataset("mafw", corpus, {"chunks": 8})
    reasons = dict(zip(quarantine["clip_id"], quarantine["reason"]))
    assert "conflicting labels" in reasons["00001"]
    assert "unknown emotion 'joy'" in reasons["00012"]
    assert "file is missing" in reasons["00099"]
    assert reasons["garbage"] == "a line not '<NNNNN>.mp4 <label>': line 4"
    assert "00001" not in set(manifest["clip_id"])


def test_badly_written_split_lines_share_one_row_of_the_quarantine_summary(corpus):
    """Each bad line is its own entry (its number said), but the report groups them under one reason."""
    write_split(corpus, 1, "test", ["garbage", "00001.mp4", "00002.mp4 anger extra"])
    _, quarantine = index_dataset("mafw", corpus, {"chunks": 8})
    bad = quarantine[quarantine["path"] == f"{SPLIT_DIR}/set_1/test.txt"]
    assert sorted(bad["reason"]) == [f"a line not '<NNNNN>.mp4 <label>': line {n}" for n in (1, 2, 3)]
    rows = quarantine_summary(bad)
    assert rows[["stage", "reason", "clips"]].values.tolist() == [["index", "a line not '<NNNNN>.mp4 <label>'", 1]]


def test_a_clip_whose_name_differs_only_in_case_is_quarantined_not_dropped(corpus):
    """Copies merged on a case-sensitive file system: 00001.MP4 beside 00001.mp4 is one clip twice."""
    touch(corpus / "data" / "clips" / "00001.MP4")
    manifest, quarantine = index_dataset("mafw", corpus, {"chunks": 8})
    assert list(manifest.loc[manifest["clip_id"] == "00001", "path"]) == ["data/clips/00001.MP4"]
    assert quarantine.loc[quarantine["path"] == "data/clips/00001.mp4", "reason"].tolist() == [
        "the same clip as data/clips/00001.MP4 (the names differ only in case)"
    ]


def test_a_clip_in_a_folder_below_data_clips_is_quarantined_with_where_it_is(corpus):
    """A copy sorted into subfolders is not read as MAFW's flat data/clips/, but no clip goes
    unmentioned, and a listed clip found one folder down is not called missing."""
    (corpus / "data" / "clips" / "00002.mp4").unlink()
    touch(corpus / "data" / "clips" / "part2" / "00002.mp4")  # listed in the split files
    touch(corpus / "data" / "clips" / "part2" / "00042.mp4")  # compound-only
    manifest, quarantine = index_dataset("mafw", corpus, {"chunks": 8})
    reasons = dict(zip(quarantine["path"], quarantine["reason"]))
    for clip in ("00002", "00042"):
        assert reasons[f"data/clips/part2/{clip}.mp4"] == "in a folder below data/clips; MAFW keeps its clips directly in data/clips/"
        assert clip not in set(manifest["clip_id"])
    assert list(quarantine["clip_id"]).count("00002") == 1
    # a clip added to or removed from that folder reruns the index, which says where it is
    assert corpus / "data" / "clips" / "part2" in index_dependencies("mafw", corpus)


def test_a_line_written_twice_in_one_split_file_is_one_listing(corpus):
    write_split(corpus, 1, "test", ["00001.mp4 anger", "00006.mp4 anger", "00001.mp4 anger"])
    manifest, quarantine = index_dataset("mafw", corpus, {"chunks": 8})
    assert manifest.set_index("clip_id").loc["00001", "fold"] == 1
    assert not {"00001", "00006"} & set(quarantine["clip_id"])


def test_missing_split_files_is_a_clear_error(tmp_path):
    touch(tmp_path / "data" / "clips" / "00001.mp4")
    with pytest.raises(MafwSplitError, match="no official split files"):
        index_dataset("mafw", tmp_path, {"chunks": 8})


def test_mafw_ids_yaml_read_as_numbers_stop_the_run_and_quoted_ones_leave_clips_out(corpus):
    """YAML reads 00025 unquoted as the octal number 21: the list left out nothing, said only in the
    index log. Quoted, the clip is left out."""
    config = {"datasets": {"mafw": {"enabled": True, "root": str(corpus), "leave_out_speakers": yaml.safe_load("[00025, 10045]")}}}
    assert config["datasets"]["mafw"]["leave_out_speakers"] == [21, 10045]
    with pytest.raises(ConfigError, match=r"^config: datasets\.mafw\.leave_out_speakers: 21 is a number, but MAFW's speakers are its clip ids .*quote them, e\.g\. '00025'$"):
        check_datasets(config)
    config["datasets"]["mafw"]["leave_out_speakers"] = yaml.safe_load("['00003', 10045]")
    check_datasets(config)  # 10045 can be a clip id (MAFW's last)
    manifest, quarantine = index_dataset("mafw", corpus, {"chunks": 8, "leave_out_speakers": config["datasets"]["mafw"]["leave_out_speakers"]})
    assert "00003" not in set(manifest["clip_id"]) and "speaker 00003 left out (datasets.mafw.leave_out_speakers)" in set(quarantine["reason"])


def test_a_label_written_in_capitals_in_a_split_file_is_the_same_label(corpus):
    """Split files edited by hand write "Anger" or "ANGER": the label is read without regard to case,
    so the clip is indexed as anger, not quarantined for an unknown emotion or conflicting labels."""
    write_split(corpus, 1, "test", ["00001.mp4 Anger", "00006.mp4 ANGER"])
    manifest, quarantine = index_dataset("mafw", corpus, {"chunks": 8})
    assert not {"00001", "00006"} & set(quarantine["clip_id"])
    rows = manifest.set_index("clip_id")
    assert rows.loc["00001", "label"] == "anger" and rows.loc["00001", "fold"] == 1
    assert rows.loc["00006", "label"] == "anger" and rows.loc["00006", "fold"] == 1


def test_every_one_of_mafws_eleven_classes_is_indexed_with_its_label(tmp_path):
    """MAFW has 11 single-label classes, contempt, anxiety, helplessness and disappointment among
    them: a clip of each is indexed with its label and label index, none quarantined."""
    classes = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety", "helplessness", "disappointment")
    clips = {f"{n:05d}": label for n, label in enumerate(classes, start=1)}
    for clip_id in clips:
        touch(tmp_path / "data" / "clips" / f"{clip_id}.mp4")
    for k in range(1, 6):
        test = [c for i, c in enumerate(sorted(clips)) if i % 5 == k - 1]
        write_split(tmp_path, k, "test", [f"{c}.mp4 {clips[c]}" for c in test])
        write_split(tmp_path, k, "train", [f"{c}.mp4 {clips[c]}" for c in sorted(clips) if c not in test])
    manifest, quarantine = index_dataset("mafw", tmp_path, {"chunks": 8})
    assert quarantine.empty
    rows = manifest.set_index("clip_id")
    assert rows["label"].to_dict() == clips
    assert rows["label_index"].to_dict() == {c: classes.index(label) for c, label in clips.items()}


def test_a_clip_in_no_test_list_or_in_two_is_quarantined_with_the_sets(corpus):
    """A clip's fold is the one set whose test list holds it: one listed only in train lists, or in
    the test lists of two sets, has no fold and is quarantined naming the sets, not put in a fold."""
    write_split(corpus, 1, "test", ["00006.mp4 anger"])  # 00001 left in no test list
    write_split(corpus, 2, "test", ["00002.mp4 fear", "00007.mp4 fear", "00003.mp4 happiness"])  # 00003 is set_3's too
    manifest, quarantine = index_dataset("mafw", corpus, {"chunks": 8})
    reasons = dict(zip(quarantine["clip_id"], quarantine["reason"]))
    assert reasons["00001"] == "in the test list of exactly one set expected, found: none"
    assert reasons["00003"] == "in the test list of exactly one set expected, found: set_2, set_3"
    assert not {"00001", "00003"} & set(manifest["clip_id"])
    assert manifest.set_index("clip_id").loc["00006", "fold"] == 1


def test_split_files_saved_with_a_byte_order_mark_or_blank_lines_read_as_written(corpus):
    """A split file saved by Windows Notepad starts with a byte order mark and may hold blank lines:
    its first clip keeps its label and fold, and a blank line is no entry."""
    path = corpus / SPLIT_DIR / "set_1" / "test.txt"
    path.write_bytes("\ufeff00001.mp4 anger\n\n00006.mp4 anger\n   \n".encode("utf-8"))
    manifest, quarantine = index_dataset("mafw", corpus, {"chunks": 8})
    assert list(quarantine["reason"]) == ["name is not <5 digits>.mp4 (e.g. 00025.mp4)"]  # clip 13.mp4 only
    rows = manifest.set_index("clip_id")
    assert rows.loc["00001", "label"] == "anger" and rows.loc["00001", "fold"] == 1
    assert rows.loc["00006", "fold"] == 1



def test_a_clip_name_of_four_digits_is_quarantined_not_indexed(corpus):
    """MAFW's clips are named with five digits: 0001.mp4 is not one of them."""
    touch(corpus / "data" / "clips" / "0001.mp4")
    manifest, quarantine = index_dataset("mafw", corpus, {"chunks": 8})
    assert "0001" not in set(manifest["clip_id"])
    assert quarantine.loc[quarantine["path"] == "data/clips/0001.mp4", "reason"].tolist() == ["name is not <5 digits>.mp4 (e.g. 00025.mp4)"]


def test_mafws_clip_ids_from_10000_up_may_be_left_out_unquoted():
    """YAML reads 10000 unquoted as the number 10000, which is MAFW's clip 10000: it is accepted."""
    assert mafw.leave_out_problem(10000) is None and mafw.leave_out_problem(10045) is None
    assert "is a number" in mafw.leave_out_problem(9999)
