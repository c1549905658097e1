"""CREMA-D indexing on the real clip names, and the defects a real copy can have."""

import logging

import pandas as pd
import pytest

from avemotion.datasets import check_layout, crema_d, index_dataset, layout_notices
from avemotion.datasets.crema_d import index_dependencies
from avemotion.labels import NRC_VAD_COORDINATES, coordinates_from_config
from conftest import touch

SETTINGS = {"chunks": 64, "votes": "audiovisual"}


@pytest.fixture(scope="module")
def indexed(crema_d_tree):
    return index_dataset("crema_d", crema_d_tree, SETTINGS)


def test_real_names_give_every_clip_with_published_class_counts(indexed):
    manifest, quarantine = indexed
    assert len(manifest) + len(quarantine) == 7442
    labels = pd.concat([manifest["label"], quarantine["clip_id"].str.split("_").str[2].map(crema_d.EMOTIONS)])
    counts = labels.value_counts().to_dict()
    assert counts == {"anger": 1271, "disgust": 1271, "fear": 1271, "happiness": 1271, "sadness": 1271, "neutral": 1087}
    assert manifest["clip_id"].is_unique
    assert manifest["speaker"].nunique() == 91


def test_known_defective_clips_are_quarantined_with_their_reason(indexed):
    _, quarantine = indexed
    # The corpus' four known bad clips (DESIGN.md), written out: a test against the reader's own
    # table passed with one of them taken out of it.
    assert (quarantine["stage"] == "index").all()
    assert dict(zip(quarantine["clip_id"], quarantine["reason"])) == {
        "1076_MTI_NEU_XX": "known CREMA-D defect: very short, no audio in the video",
        "1076_MTI_SAD_XX": "known CREMA-D defect: no face, silent",
        "1064_TIE_SAD_XX": "known CREMA-D defect: no duration",
        "1064_IEO_DIS_MD": "known CREMA-D defect: one minute long, shows every emotion",
    }


def test_folds_are_the_protocols_18_actor_blocks(indexed):
    manifest, _ = indexed
    actors = manifest.groupby("fold")["speaker"].agg(lambda s: sorted(set(map(int, s))))
    assert [(a[0], a[-1], len(a)) for a in actors] == [
        (1001, 1018, 18),
        (1019, 1036, 18),
        (1037, 1054, 18),
        (1055, 1072, 18),
        (1073, 1091, 19),
    ]


def test_manifest_contract_columns_and_targets(indexed):
    manifest, _ = indexed
    row = manifest.set_index("clip_id").loc["1001_IEO_ANG_HI"]
    assert (row["speaker"], row["label"], row["sentence"], row["intensity"]) == ("1001", "anger", "IEO", "high")
    assert row["label_index"] == crema_d.LABELS.index("anger")
    assert row["path"] == "VideoFlash/1001_IEO_ANG_HI.flv"
    assert row["audio_path"] == "AudioWAV/1001_IEO_ANG_HI.wav"
    valence, arousal = NRC_VAD_COORDINATES["anger"]
    assert row["valence"] == pytest.approx(2 * valence - 1)
    assert row["arousal"] == pytest.approx(2 * arousal - 1)
    assert list(manifest["clip_id"]) == sorted(manifest["clip_id"])
    assert manifest["chunk"].between(0, 63).all()


def test_votes_weight_the_valence_arousal_targets(tmp_path):
    for name in ("1001_DFA_ANG_XX", "1001_DFA_HAP_XX", "1002_DFA_SAD_XX"):
        touch(tmp_path / "VideoFlash" / f"{name}.flv")
    # Row key 100000 * modality + clip number; the face-only row (2...) must be ignored.
    touch(
        tmp_path / crema_d.VOTES,
        ",A,D,F,H,N,S,fileName,numResponses,agreement,emoVote\n"
        "300001,6,0,0,4,0,0,1001_DFA_ANG_XX,10,0.6,A\n"
        "200001,0,0,0,10,0,0,1001_DFA_ANG_XX,10,1.0,H\n"
        "300002,0,0,0,9,1,0,1001_DFA_HAP_XX,10,0.9,H\n",
    )
    touch(tmp_path / crema_d.DEMOGRAPHICS, "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n")
    manifest, _ = index_dataset("crema_d", tmp_path, SETTINGS)
    rows = manifest.set_index("clip_id")
    coords = coordinates_from_config(None)
    expected = 0.6 * coords["anger"][0] + 0.4 * coords["happiness"][0]
    assert rows.loc["1001_DFA_ANG_XX", "valence"] == pytest.approx(expected)
    assert rows.loc["1001_DFA_ANG_XX", "votes_anger"] == 6
    assert rows.loc["1001_DFA_ANG_XX", "sex"] == "Male"
    # a clip without votes keeps its class coordinates
    assert rows.loc["1002_DFA_SAD_XX", "valence"] == pytest.approx(coords["sadness"][0])
    face_only, _ = index_dataset("crema_d", tmp_path, {**SETTINGS, "votes": "face"})
    assert face_only.set_index("clip_id").loc["1001_DFA_ANG_XX", "valence"] == pytest.approx(coords["happiness"][0])


def test_bad_names_are_quarantined_never_dropped(tmp_path):
    names = ["1001_DFA_ANG_XX.flv", "1001_DFA_XYZ_XX.flv", "1001_DFA_ANG.flv", "1092_DFA_ANG_XX.flv", "notes.txt"]
    for name in names:
        touch(tmp_path / "VideoFlash" / name)
    touch(tmp_path / "VideoFlash" / ".DS_Store")
    touch(tmp_path / "AudioWAV" / "1003_DFA_ANG_XX.wav")
    touch(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    manifest, quarantine = index_dataset("crema_d", tmp_path, SETTINGS)
    assert list(manifest["clip_id"]) == ["1001_DFA_ANG_XX"]
    reasons = dict(zip(quarantine["path"], quarantine["reason"]))
    assert "unknown emotion code 'XYZ'" in reasons["VideoFlash/1001_DFA_XYZ_XX.flv"]
    assert "does not match" in reasons["VideoFlash/1001_DFA_ANG.flv"]
    assert "outside" in reasons["VideoFlash/1092_DFA_ANG_XX.flv"]
    assert "not a .flv" in reasons["VideoFlash/notes.txt"]
    assert "no matching video" in reasons["AudioWAV/1003_DFA_ANG_XX.wav"]
    assert len(quarantine) == 5


def test_legacy_wav_name_is_found(tmp_path):
    touch(tmp_path / "VideoFlash" / "1040_ITH_SAD_XX.flv")
    touch(tmp_path / "AudioWAV" / "1040_ITH_SAD_X.wav")
    manifest, quarantine = index_dataset("crema_d", tmp_path, SETTINGS)
    assert manifest.loc[0, "audio_path"] == "AudioWAV/1040_ITH_SAD_X.wav"
    assert quarantine.empty


def test_wavs_of_any_case_are_found_and_files_out_of_place_are_quarantined(tmp_path):
    """The corpus' own .gitattributes lists *.WAV beside *.wav: an upper-case WAV is the clip's audio,
    not ignored; a file in a folder below VideoFlash or AudioWAV, or a WAV folder's stray file, is
    quarantined with where CREMA-D keeps its clips, never dropped unseen."""
    touch(tmp_path / "VideoFlash" / "1003_ITS_NEU_XX.FLV")
    touch(tmp_path / "AudioWAV" / "1003_ITS_NEU_XX.WAV")
    touch(tmp_path / "VideoFlash" / "extra" / "1004_ITS_NEU_XX.flv")
    touch(tmp_path / "AudioWAV" / "1003_ITS_NEU_XX.mp3")
    touch(tmp_path / "AudioWAV" / "1003_its_neu_xx.wav")  # the same clip's audio, by case
    manifest, quarantine = index_dataset("crema_d", tmp_path, SETTINGS)
    assert manifest[["clip_id", "path", "audio_path"]].values.tolist() == [["1003_ITS_NEU_XX", "VideoFlash/1003_ITS_NEU_XX.FLV", "AudioWAV/1003_ITS_NEU_XX.WAV"]]
    reasons = dict(zip(quarantine["path"], quarantine["reason"]))
    assert reasons == {
        "VideoFlash/extra/1004_ITS_NEU_XX.flv": "in a folder below VideoFlash; CREMA-D keeps its clips directly in VideoFlash/",
        "AudioWAV/1003_ITS_NEU_XX.mp3": "not a .wav file; AudioWAV holds <clip>.wav files",
        "AudioWAV/1003_its_neu_xx.wav": "the same clip's audio as AudioWAV/1003_ITS_NEU_XX.WAV (the names differ only in case)",
    }

    assert tmp_path / "VideoFlash" / "extra" in index_dependencies(tmp_path)  # a stray file added there reruns the index


@pytest.mark.parametrize(
    "table, said",
    [
        ("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 1234\n", "a Git LFS pointer, not the file itself (`git lfs pull` fetches it)"),
        ("<!DOCTYPE html>\n<html><body>GitHub</body></html>\n", "no ActorID, Age, Sex, Race, Ethnicity column"),
    ],
)
def test_a_metadata_table_that_is_not_one_says_so_in_a_line(tmp_path, table, said):
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    touch(tmp_path / crema_d.DEMOGRAPHICS, table)
    with pytest.raises(ValueError) as raised:
        index_dataset("crema_d", tmp_path, SETTINGS)
    assert str(raised.value) == f"{tmp_path / crema_d.DEMOGRAPHICS}: {said}; CREMA-D's has columns ActorID, Age, Sex, Race, Ethnicity"
    touch(tmp_path / crema_d.DEMOGRAPHICS, "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n")
    touch(tmp_path / crema_d.VOTES, "key,A,D,F,H,N,S,fileName,numResponses,agreement\nfirst,6,0,0,4,0,0,1001_DFA_ANG_XX,10,0.6\n")
    with pytest.raises(ValueError, match=r"tabulatedVotes.csv: row keys must be numbers \(100000 \* modality \+ clip number\), found 'first'"):
        index_dataset("crema_d", tmp_path, SETTINGS)


def test_a_link_to_a_clip_that_is_gone_is_quarantined(tmp_path):
    """A corpus whose clips are links into another disk, one of them gone (a clip's video or its
    separate audio): the chunk jobs could not read it, so the index says where it points."""
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    (tmp_path / "VideoFlash" / "1001_DFA_HAP_XX.flv").symlink_to(tmp_path / "elsewhere" / "1001_DFA_HAP_XX.flv")
    touch(tmp_path / "VideoFlash" / "1001_DFA_SAD_XX.flv")  # its separate audio is the link that is gone
    (tmp_path / "AudioWAV").mkdir()
    (tmp_path / "AudioWAV" / "1001_DFA_SAD_XX.wav").symlink_to(tmp_path / "elsewhere" / "1001_DFA_SAD_XX.wav")
    manifest, quarantine = index_dataset("crema_d", tmp_path, SETTINGS)
    assert manifest["clip_id"].tolist() == ["1001_DFA_ANG_XX"]
    assert sorted(quarantine["reason"]) == [
        f"broken link: AudioWAV/1001_DFA_SAD_XX.wav points to {tmp_path / 'elsewhere' / '1001_DFA_SAD_XX.wav'}, which does not exist",
        f"broken link: VideoFlash/1001_DFA_HAP_XX.flv points to {tmp_path / 'elsewhere' / '1001_DFA_HAP_XX.flv'}, which does not exist",
    ]


def test_neutral_and_sadness_votes_are_counted_under_their_own_classes(tmp_path):
    """The vote table's N column is neutral and S sadness: swapped, a clip voted mostly neutral would
    get sadness's low valence as its target."""
    touch(tmp_path / "VideoFlash" / "1001_DFA_NEU_XX.flv")
    touch(tmp_path / crema_d.VOTES, ",A,D,F,H,N,S,fileName,numResponses,agreement,emoVote\n300001,0,0,0,0,8,2,1001_DFA_NEU_XX,10,0.8,N\n")
    manifest, _ = index_dataset("crema_d", tmp_path, SETTINGS)
    row = manifest.set_index("clip_id").loc["1001_DFA_NEU_XX"]
    assert (row["votes_neutral"], row["votes_sadness"]) == (8, 2)
    coords = coordinates_from_config(None)
    assert row["valence"] == pytest.approx(0.8 * coords["neutral"][0] + 0.2 * coords["sadness"][0])


def test_what_a_usb_stick_or_a_mac_leaves_in_the_media_folders_is_neither_a_clip_nor_quarantined(tmp_path):
    """A copy carried on a USB stick or through a Mac holds Windows' recycle bin and index folders
    (any case), Explorer's Desktop.ini and thumbnail caches, macOS's ._ copies and .Trashes: none is
    a clip, none is listed in the quarantine, and a file deleted into them does not rerun the index."""
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    touch(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    for clutter in ("$RECYCLE.BIN/S-1-5-21-1004/$R0AB12C.flv", "System Volume Information/IndexerVolumeGuid", ".Trashes/501/1001_DFA_SAD_XX.flv", "Desktop.ini", "Thumbs.db", "ehthumbs.db", "._1001_DFA_ANG_XX.flv"):
        touch(tmp_path / "VideoFlash" / clutter)
        touch(tmp_path / "AudioWAV" / clutter.replace(".flv", ".wav"))
    manifest, quarantine = index_dataset("crema_d", tmp_path, SETTINGS)
    assert manifest[["clip_id", "path", "audio_path"]].values.tolist() == [["1001_DFA_ANG_XX", "VideoFlash/1001_DFA_ANG_XX.flv", "AudioWAV/1001_DFA_ANG_XX.wav"]]
    assert quarantine.empty
    assert index_dependencies(tmp_path) == [tmp_path / "VideoFlash", tmp_path / "AudioWAV"]


def test_a_copy_without_the_audio_folder_is_checked_and_indexed_without_a_word_about_it(tmp_path, caplog):
    """A copy of the videos only (audio comes from AudioWAV where that file exists): the layout check,
    the index and its inputs do not call the absent folder unreadable, nor quarantine it; the clips
    are indexed without audio."""
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv", "FLV")
    with caplog.at_level(logging.WARNING):
        assert check_layout("crema_d", tmp_path) == tmp_path
        manifest, quarantine = index_dataset("crema_d", tmp_path, SETTINGS)
        assert index_dependencies(tmp_path) == [tmp_path / "VideoFlash"]
    assert manifest[["clip_id", "audio_path"]].values.tolist() == [["1001_DFA_ANG_XX", ""]]
    assert quarantine.empty
    assert "cannot read this folder" not in caplog.text


def test_a_copy_without_crema_ds_side_files_says_before_any_job_what_it_gets_instead(tmp_path):
    """Many copies hold only VideoFlash: the run says once, on the console, that the audio is the
    FLVs' own, the targets the classes' coordinates (unless votes: none), and no demographics."""
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv", "FLV")
    config = {"datasets": {"crema_d": {"enabled": True, "root": str(tmp_path), "votes": "audiovisual"}, "enterface": {"enabled": False}, "mafw": {"enabled": False}}}
    notices = layout_notices(config)
    assert [notice.split(" under ")[0] for notice in notices] == [
        "avemotion: datasets.crema_d: no AudioWAV/*.wav", "avemotion: datasets.crema_d: no processedResults/tabulatedVotes.csv",
        "avemotion: datasets.crema_d: no VideoDemographics.csv",
    ]  # fmt: skip
    assert "each clip's audio is its FLV's own track" in notices[0] and "not the raters' votes" in notices[1]
    config["datasets"]["crema_d"]["votes"] = "none"  # targets from the classes, as asked: not said
    assert len(layout_notices(config)) == 2
    assert layout_notices(config, generated_roots=[tmp_path]) == []  # the demo corpus, written by the workflow
    touch(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav", "WAV")
    touch(tmp_path / "VideoDemographics.csv", "ActorID,Age,Sex,Race,Ethnicity\n")
    assert layout_notices(config) == []


def test_the_side_file_notices_read_the_votes_default_and_the_wav_files_not_the_folder(tmp_path):
    """votes unset is the default audiovisual, so a copy without the votes says so; an AudioWAV folder
    holding no .wav (an unpacked archive's readme) gives no audio, and upper-case .WAV names count.
    Only CREMA-D says anything, and only when the run reads it."""
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv", "FLV")
    touch(tmp_path / "VideoDemographics.csv", "ActorID,Age,Sex,Race,Ethnicity\n")
    touch(tmp_path / "AudioWAV" / "README.txt", "the audio files")
    # beside a corpus whose reader has no such notices (eNTERFACE)
    config = {"datasets": {"crema_d": {"enabled": True, "root": str(tmp_path)}, "enterface": {"enabled": True, "root": str(tmp_path / "enterface")}, "mafw": {"enabled": False}}}
    assert [notice.split(" under ")[0] for notice in layout_notices(config)] == [
        "avemotion: datasets.crema_d: no AudioWAV/*.wav", "avemotion: datasets.crema_d: no processedResults/tabulatedVotes.csv",
    ]  # fmt: skip
    touch(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.WAV", "WAV")
    assert [notice.split(" under ")[0] for notice in layout_notices(config)] == ["avemotion: datasets.crema_d: no processedResults/tabulatedVotes.csv"]
    config["datasets"]["crema_d"]["enabled"] = False  # a corpus the run does not read says nothing
    assert layout_notices(config) == []


def test_unknown_sentence_or_intensity_codes_are_quarantined_with_the_code(tmp_path):
    """A name of the right shape whose sentence (not one of CREMA-D's 12) or intensity level (not
    LO/MD/HI/XX) is unknown is quarantined with the code named, not indexed nor a crash."""
    for name in ("1001_DFA_ANG_XX", "1001_ABC_ANG_XX", "1001_DFA_ANG_ZZ"):
        touch(tmp_path / "VideoFlash" / f"{name}.flv")
    manifest, quarantine = index_dataset("crema_d", tmp_path, SETTINGS)
    assert list(manifest["clip_id"]) == ["1001_DFA_ANG_XX"]
    reasons = dict(zip(quarantine["clip_id"], quarantine["reason"]))
    assert reasons["1001_ABC_ANG_XX"].startswith("unknown sentence code 'ABC'")
    assert reasons["1001_DFA_ANG_ZZ"].startswith("unknown intensity level 'ZZ'")


def write_votes_by_modality(root):
    """One clip rated differently in each modality: voice says anger, face happiness, audio-visual sadness."""
    touch(root / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    touch(
        root / crema_d.VOTES,
        ",A,D,F,H,N,S,fileName,numResponses,agreement,emoVote\n"
        "100001,10,0,0,0,0,0,1001_DFA_ANG_XX,10,1.0,A\n"
        "200001,0,0,0,10,0,0,1001_DFA_ANG_XX,10,1.0,H\n"
        "300001,0,0,0,0,0,10,1001_DFA_ANG_XX,10,1.0,S\n",
    )


@pytest.mark.parametrize("votes, voted", [("voice", "anger"), ("face", "happiness"), ("audiovisual", "sadness"), (None, "sadness")])
def test_the_configured_vote_modality_picks_its_own_rows(tmp_path, votes, voted):
    """votes: voice reads the 1xxxxx rows, face 2xxxxx, audiovisual (also when unset) 3xxxxx."""
    write_votes_by_modality(tmp_path)
    settings = {"chunks": 64} if votes is None else {**SETTINGS, "votes": votes}
    manifest, _ = index_dataset("crema_d", tmp_path, settings)
    row = manifest.set_index("clip_id").loc["1001_DFA_ANG_XX"]
    assert row[f"votes_{voted}"] == 10
    assert row["valence"] == pytest.approx(coordinates_from_config(None)[voted][0])


def test_votes_none_leaves_the_vote_table_unread_and_targets_at_the_class_coordinates(tmp_path):
    """votes: none (class coordinates only) uses no vote column, even where the table exists."""
    write_votes_by_modality(tmp_path)
    manifest, _ = index_dataset("crema_d", tmp_path, {**SETTINGS, "votes": "none"})
    row = manifest.set_index("clip_id").loc["1001_DFA_ANG_XX"]
    assert not [c for c in manifest.columns if c.startswith("votes_")]
    assert row["valence"] == pytest.approx(coordinates_from_config(None)["anger"][0])


def test_every_vote_column_is_counted_under_its_own_class_with_responses_and_agreement(tmp_path):
    """A, D, F, H, N, S are anger, disgust, fear, happiness, neutral, sadness; numResponses and
    agreement are carried as they are."""
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    touch(tmp_path / crema_d.VOTES, ",A,D,F,H,N,S,fileName,numResponses,agreement,emoVote\n300001,6,5,4,3,2,1,1001_DFA_ANG_XX,21,0.29,A\n")
    manifest, _ = index_dataset("crema_d", tmp_path, SETTINGS)
    row = manifest.set_index("clip_id").loc["1001_DFA_ANG_XX"]
    counts = {label: row[f"votes_{label}"] for label in ("anger", "disgust", "fear", "happiness", "neutral", "sadness")}
    assert counts == {"anger": 6, "disgust": 5, "fear": 4, "happiness": 3, "neutral": 2, "sadness": 1}
    assert (row["vote_responses"], row["vote_agreement"]) == (21, pytest.approx(0.29))


def test_a_vote_row_written_twice_or_with_an_extension_gives_the_clip_one_row(tmp_path):
    """A fileName with its extension (1001_DFA_ANG_XX.flv) still joins its clip, and a clip listed
    twice for one modality keeps the first row: the clip is indexed once, not quarantined as a
    duplicate."""
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    touch(tmp_path / "VideoFlash" / "1001_DFA_HAP_XX.flv")
    touch(
        tmp_path / crema_d.VOTES,
        ",A,D,F,H,N,S,fileName,numResponses,agreement,emoVote\n"
        "300001,7,0,0,3,0,0,1001_DFA_ANG_XX.flv,10,0.7,A\n"
        "300002,0,0,0,9,1,0,1001_DFA_HAP_XX,10,0.9,H\n"
        "300003,0,0,0,1,9,0,1001_DFA_HAP_XX,10,0.9,N\n",
    )
    manifest, quarantine = index_dataset("crema_d", tmp_path, SETTINGS)
    assert quarantine.empty
    assert list(manifest["clip_id"]) == ["1001_DFA_ANG_XX", "1001_DFA_HAP_XX"]
    rows = manifest.set_index("clip_id")
    assert rows.loc["1001_DFA_ANG_XX", "votes_anger"] == 7
    assert rows.loc["1001_DFA_HAP_XX", "votes_happiness"] == 9


def test_the_metadata_tables_are_index_inputs_where_they_exist(tmp_path):
    """Updating VideoDemographics.csv or tabulatedVotes.csv reruns the index (they give its
    demographics and vote columns)."""
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    assert index_dependencies(tmp_path) == [tmp_path / "VideoFlash"]
    touch(tmp_path / crema_d.DEMOGRAPHICS, "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n")
    touch(tmp_path / crema_d.VOTES, ",A,D,F,H,N,S,fileName,numResponses,agreement\n")
    assert index_dependencies(tmp_path) == [tmp_path / "VideoFlash", tmp_path / crema_d.DEMOGRAPHICS, tmp_path / crema_d.VOTES]


def test_a_metadata_table_written_with_spaces_after_its_commas_gives_the_plain_values(tmp_path):
    """A table saved by hand with a space after each comma ("1001, 51, Male") gives sex Male, not
    " Male", so grouping by sex finds the corpus' two values."""
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    touch(tmp_path / crema_d.DEMOGRAPHICS, "ActorID, Age, Sex, Race, Ethnicity\n1001, 51, Male, Caucasian, Not Hispanic\n")
    manifest, _ = index_dataset("crema_d", tmp_path, SETTINGS)
    assert manifest[["speaker", "age", "sex", "race", "ethnicity"]].values.tolist() == [["1001", 51, "Male", "Caucasian", "Not Hispanic"]]
