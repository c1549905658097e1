"""The quarantine contract: every stage's part reaches the dataset's quarantine.csv, as written."""

from __future__ import annotations

from avemotion.quarantine import merge_quarantine, naming_the_file, quarantine_frame, read_quarantine


def write_part(path, entries) -> str:
    quarantine_frame(entries).to_csv(path, index=False)
    return str(path)


def test_every_stage_part_is_merged_in_one_stable_order_with_ids_and_text_kept(tmp_path):
    """A clip two stages quarantined keeps both reasons; MAFW's zero-padded ids stay text (00025,
    not 25) and an empty path stays empty (not NaN); rows are sorted, so a rerun writes the same file."""
    index = write_part(tmp_path / "index.csv", [{"clip_id": "00025", "path": "", "stage": "index", "reason": "not in any split file"}])
    face = write_part(tmp_path / "face.csv", [
        {"clip_id": "00031", "path": "clips/00031.mp4", "stage": "face", "reason": "no face in any frame"},
        {"clip_id": "00007", "path": "clips/00007.mp4", "stage": "face", "reason": "several faces"},
    ])  # fmt: skip
    audio = write_part(tmp_path / "audio.csv", [{"clip_id": "00031", "path": "clips/00031.mp4", "stage": "audio", "reason": "no audio stream"}])
    empty = write_part(tmp_path / "frames.csv", [])
    merged = merge_quarantine([face, empty, index, audio])
    assert list(merged.columns) == ["clip_id", "path", "stage", "reason"]  # the contract README documents
    assert merged[["clip_id", "stage"]].values.tolist() == [["00007", "face"], ["00025", "index"], ["00031", "audio"], ["00031", "face"]]
    assert merged.loc[1, "path"] == "" and merged.loc[1, "clip_id"] == "00025"
    assert merged.equals(merge_quarantine([audio, index, empty, face]))  # whatever order the parts come in
    merged.to_csv(tmp_path / "quarantine.csv", index=False)
    assert read_quarantine(tmp_path / "quarantine.csv").equals(merged)


def test_no_parts_merge_into_an_empty_table_with_the_contracts_columns():
    merged = merge_quarantine([])
    assert merged.empty and list(merged.columns) == ["clip_id", "path", "stage", "reason"]


def test_every_entry_is_kept_in_path_order_whatever_order_a_stage_gives_them(tmp_path):
    """Three files of one clip id: the index stage quarantines the two it does not keep, both kept
    (sorted by path, the same file whatever order the stage lists them in), beside another stage's
    entry for the same clip."""
    duplicates = [
        {"clip_id": "a", "path": "set2/a.mp4", "stage": "index", "reason": "duplicate clip id: set1/a.mp4 has the same id"},
        {"clip_id": "a", "path": "set3/a.mp4", "stage": "index", "reason": "duplicate clip id: set1/a.mp4 has the same id"},
    ]
    face = write_part(tmp_path / "face.csv", [{"clip_id": "a", "path": "set1/a.mp4", "stage": "face", "reason": "no face in any frame"}])
    for order in (duplicates, duplicates[::-1]):
        merged = merge_quarantine([write_part(tmp_path / "index.csv", order), face])
        assert merged[["path", "stage"]].values.tolist() == [["set1/a.mp4", "face"], ["set2/a.mp4", "index"], ["set3/a.mp4", "index"]]


def test_a_reason_names_the_clips_file_once():
    """The report shows one reason per kind as its example: it says which file. A reason that names
    the clip's file, or its AudioWAV beside it (same stem), is kept as it is."""
    assert naming_the_file("no face in any frame", "clips/00031.mp4") == "no face in any frame: 00031.mp4"
    assert naming_the_file("zero-length file: 00031.mp4", "clips/00031.mp4") == "zero-length file: 00031.mp4"
    wav = "not a .wav file: 1001_DFA_ANG_XX.wav holds text"
    assert naming_the_file(wav, "VideoFlash/1001_DFA_ANG_XX.flv") == wav
    # a number that holds the stem is not the file's name
    assert naming_the_file("decoder error at byte 1000031", "clips/00031.mp4") == "decoder error at byte 1000031: 00031.mp4"
    # nor is a longer name or number that starts with it (another clip's, a byte count)
    assert naming_the_file("decoder error at byte 000312", "clips/00031.mp4") == "decoder error at byte 000312: 00031.mp4"
    assert naming_the_file("see 00031-2.mp4", "clips/00031.mp4") == "see 00031-2.mp4: 00031.mp4"
    # a file name with a regex's characters is matched as written: named once, not twice
    assert naming_the_file("unreadable: clip (1).mp4", "clips/clip (1).mp4") == "unreadable: clip (1).mp4"
