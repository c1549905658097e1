"""Manifest contract: stable chunks, deterministic bytes, duplicate ids, label-derived targets."""

import hashlib
import os

import numpy as np
import pandas as pd
import pytest

from avemotion.datasets import index_dataset, walk, write_index
from avemotion.datasets.mafw import SPLIT_DIR
from avemotion.datasets.manifest import MANIFEST_COLUMNS, Scan, build_manifest, chunk_of
from avemotion.labels import CANONICAL_LABELS, CORPUS_LABELS, coordinates_from_config, vote_weighted_va
from conftest import crema_d_names, in_other_processes, touch


def test_chunk_of_a_clip_never_depends_on_the_other_clips():
    names = crema_d_names()
    chunks = {name: chunk_of(name, 64) for name in names}
    assert len(set(chunks.values())) == 64  # every chunk is used
    sizes = np.bincount(list(chunks.values()))
    assert sizes.min() > 0.5 * sizes.mean() and sizes.max() < 1.5 * sizes.mean()
    # The same chunks in any other process: a rerun keeps every finished chunk.
    code = "import json, sys; from avemotion.datasets.manifest import chunk_of; print(json.dumps([chunk_of(n, 64) for n in json.load(sys.stdin)]))"
    assert in_other_processes(code, names) == [[chunks[name] for name in names]] * 2


def test_a_clips_chunk_is_the_one_earlier_releases_gave_it():
    """The chunk of a clip names the preprocessing outputs it lies in (results/{dataset}/{stage}/
    chunk_NNN): another way of hashing ids would move nearly every clip, and a corpus preprocessed
    for days would be preprocessed again from the start."""
    assert [chunk_of(name, 64) for name in ("1001_DFA_ANG_XX", "00025", "s12_an_1")] == [58, 55, 15]
    assert [chunk_of(name, 7) for name in ("1001_DFA_ANG_XX", "00025", "s12_an_1")] == [6, 2, 5]


def test_adding_a_clip_changes_only_its_own_chunk(tmp_path):
    def chunks_for(names):
        scan = Scan(records=[{"clip_id": n, "path": n, "speaker": "1", "label": "anger", "fold": 1} for n in names])
        manifest, _ = build_manifest("crema_d", scan, ["anger"], coordinates_from_config(None), num_chunks=8)
        return manifest.groupby("chunk")["clip_id"].apply(tuple).to_dict()

    names = crema_d_names()[:200]
    before, after = chunks_for(names), chunks_for(names + ["1091_WSI_SAD_XX"])
    changed = [chunk for chunk in after if after[chunk] != before.get(chunk)]
    assert changed == [chunk_of("1091_WSI_SAD_XX", 8)]


def test_same_inputs_give_byte_identical_manifest(crema_d_tree, tmp_path):
    digests = []
    for run in range(2):
        manifest, quarantine = index_dataset("crema_d", crema_d_tree, {"chunks": 64})
        write_index(manifest, quarantine, tmp_path / f"m{run}.parquet", tmp_path / f"q{run}.csv")
        digests.append([hashlib.sha256((tmp_path / f"{name}{run}.{ext}").read_bytes()).hexdigest() for name, ext in (("m", "parquet"), ("q", "csv"))])
    assert digests[0] == digests[1]


def test_the_index_is_the_same_whatever_order_the_disk_lists_names_in(tmp_path, monkeypatch):
    """A file system lists a folder's names in an order of its own: which of two copies of a clip
    is kept (names that differ only in case, two links to one folder) must not depend on it, or the
    same corpus gives another manifest on another disk."""
    touch(tmp_path / "crema_d" / "VideoFlash" / "1003_ITS_NEU_XX.flv")
    for name in ("1003_ITS_NEU_XX.WAV", "1003_its_neu_xx.wav", "1003_ITS_NEU_XX.wav"):
        touch(tmp_path / "crema_d" / "AudioWAV" / name)
    for name in ("00001.MP4", "00001.mp4", "00002.mp4"):
        touch(tmp_path / "mafw" / "data" / "clips" / name)
    touch(tmp_path / "mafw" / SPLIT_DIR / "set_1" / "test.txt", "00001.mp4 anger\n")
    touch(tmp_path / "elsewhere" / "s4_fe_1.avi")
    for link in ("fear", "Fear", "fear 2"):  # three ways to one folder: its clip is read once
        (tmp_path / "enterface" / "subject 4").mkdir(parents=True, exist_ok=True)
        (tmp_path / "enterface" / "subject 4" / link).symlink_to(tmp_path / "elsewhere")
    listing = os.walk

    def indexed(order):
        def walk_in_order(*args, **kwargs):
            for folder, folders, files in listing(*args, **kwargs):
                folders.sort(reverse=order == "reversed")  # in place: the walk descends into what is left in it
                files.sort(reverse=order == "reversed")
                yield folder, folders, files

        monkeypatch.setattr(walk.os, "walk", walk_in_order)
        return [index_dataset(name, tmp_path / name, {"chunks": 4}) for name in ("crema_d", "mafw", "enterface")]

    in_order, reversed_ = indexed("sorted"), indexed("reversed")
    for (manifest, quarantine), (manifest_r, quarantine_r) in zip(in_order, reversed_):
        pd.testing.assert_frame_equal(manifest, manifest_r)
        pd.testing.assert_frame_equal(quarantine, quarantine_r)
    # the first copy by name is kept, as on a disk that lists names sorted
    (crema_d, crema_d_quarantine), (mafw, _), (enterface, enterface_quarantine) = in_order
    assert crema_d["audio_path"].tolist() == ["AudioWAV/1003_ITS_NEU_XX.WAV"] and len(crema_d_quarantine) == 2
    assert mafw.set_index("clip_id").loc["00001", "path"] == "data/clips/00001.MP4"
    assert enterface["path"].tolist() == ["subject 4/Fear/s4_fe_1.avi"] and enterface_quarantine.empty


def test_duplicate_ids_keep_the_first_path_and_quarantine_the_rest():
    records = [
        {"clip_id": "a", "path": "x/b.avi", "speaker": "1", "label": "anger", "fold": 1},
        {"clip_id": "a", "path": "x/a.avi", "speaker": "1", "label": "anger", "fold": 1},
    ]
    manifest, quarantine = build_manifest("enterface", Scan(records=records), ["anger"], coordinates_from_config(None), 4)
    assert list(manifest["path"]) == ["x/a.avi"]
    assert quarantine.loc[0, "path"] == "x/b.avi"
    assert "x/a.avi has the same id" in quarantine.loc[0, "reason"]


def test_default_coordinates_are_the_nrc_vad_lexicons_mapped_to_minus_one_one():
    """The valence/arousal targets every model learns: NRC-VAD v1's values for the 11 classes (as
    ../shared/DESIGN.md lists them from the lexicon), mapped by 2x - 1."""
    lexicon = {
        "anger": (0.167, 0.865), "disgust": (0.052, 0.775), "fear": (0.073, 0.840), "happiness": (0.960, 0.732),
        "neutral": (0.469, 0.184), "sadness": (0.052, 0.288), "surprise": (0.875, 0.875), "contempt": (0.206, 0.635),
        "anxiety": (0.146, 0.865), "helplessness": (0.087, 0.480), "disappointment": (0.115, 0.490),
    }  # fmt: skip
    coordinates = coordinates_from_config(None)
    assert set(coordinates) == set(lexicon)
    for name, (valence, arousal) in lexicon.items():
        assert coordinates[name] == pytest.approx((2 * valence - 1, 2 * arousal - 1)), name


def test_configured_coordinates_override_the_lexicon():
    coordinates = coordinates_from_config({"anger": {"valence": 0.0, "arousal": 1.0}})
    assert coordinates["anger"] == (-1.0, 1.0)
    assert coordinates["sadness"] == pytest.approx((2 * 0.052 - 1, 2 * 0.288 - 1))


def test_a_configured_valence_alone_keeps_the_lexicons_arousal():
    """labels.coordinates may override one dimension of a class; the other keeps NRC-VAD's value."""
    coordinates = coordinates_from_config({"neutral": {"valence": 0.5}})
    assert coordinates["neutral"] == pytest.approx((0.0, 2 * 0.184 - 1))


def test_each_corpus_classes_in_the_order_its_publication_lists_them():
    """label_index is the position among these: CREMA-D's six (Cao et al. 2014: anger, disgust, fear,
    happy, neutral, sad), eNTERFACE'05's six (Martin et al. 2006: no neutral, surprise last) and
    MAFW's eleven (Liu et al. 2022); each is the canonical order restricted to the corpus."""
    assert CORPUS_LABELS == {
        "crema_d": ("anger", "disgust", "fear", "happiness", "neutral", "sadness"),
        "enterface": ("anger", "disgust", "fear", "happiness", "sadness", "surprise"),
        "mafw": ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
                 "contempt", "anxiety", "helplessness", "disappointment"),
    }  # fmt: skip
    for labels in CORPUS_LABELS.values():
        assert list(labels) == [label for label in CANONICAL_LABELS if label in labels]


def test_vote_weighting_without_votes_is_nan():
    coordinates = coordinates_from_config(None)
    va = vote_weighted_va(np.array([[1, 1], [0, 0]]), ["anger", "happiness"], coordinates)
    assert va[0] == pytest.approx(np.mean([coordinates["anger"], coordinates["happiness"]], axis=0))
    assert np.isnan(va[1]).all()


def test_an_empty_scan_gives_an_empty_manifest_with_the_contracts_columns():
    """A corpus where every file was quarantined (or none found) still writes a manifest: no rows,
    the contract's columns, and the quarantine of what the reader left out."""
    scan = Scan()
    scan.quarantine("00001", "data/clips/00001.mp4", "not in any split file")
    manifest, quarantine = build_manifest("mafw", scan, ["anger"], coordinates_from_config(None), 4)
    assert manifest.empty and list(manifest.columns) == MANIFEST_COLUMNS
    assert quarantine[["clip_id", "stage", "reason"]].values.tolist() == [["00001", "index", "not in any split file"]]


def test_the_manifest_holds_text_ids_and_integer_folds_whatever_types_the_reader_gave():
    """Speakers and ids are text (a numeric speaker 1001 reads back as "1001", a zero-padded id keeps
    its zeros), folds, label indices and chunks integers, and every row names its dataset."""
    records = [
        {"clip_id": "00025", "path": "clips/00025.mp4", "speaker": 1001, "label": "anger", "fold": np.int32(2)},
        {"clip_id": "00003", "path": "clips/00003.mp4", "speaker": 7, "label": "happiness", "fold": 5},
    ]
    manifest, _ = build_manifest("mafw", Scan(records=records), ["happiness", "anger"], coordinates_from_config(None), 4)
    assert manifest["clip_id"].tolist() == ["00003", "00025"] and manifest["speaker"].tolist() == ["7", "1001"]
    assert manifest["dataset"].tolist() == ["mafw", "mafw"] and manifest["label_index"].tolist() == [0, 1]
    assert {column: str(manifest[column].dtype) for column in ("fold", "label_index", "chunk", "valence", "arousal")} == {
        "fold": "int64", "label_index": "int64", "chunk": "int64", "valence": "float64", "arousal": "float64"
    }


def test_votes_weight_each_class_by_its_own_column_in_any_column_order():
    """A reader's vote columns may come in any order (here happiness before anger): each count
    weights its own class's coordinates; a clip without votes keeps its label's coordinates."""
    coordinates = coordinates_from_config(None)
    records = [
        {"clip_id": "a", "path": "a.flv", "speaker": "1", "label": "happiness", "fold": 1, "votes_happiness": 3, "votes_anger": 1},
        {"clip_id": "b", "path": "b.flv", "speaker": "1", "label": "anger", "fold": 1, "votes_happiness": 0, "votes_anger": 0},
    ]
    manifest, _ = build_manifest("crema_d", Scan(records=records), ["anger", "happiness"], coordinates_from_config(None), 4)
    weighted = (3 * np.array(coordinates["happiness"]) + np.array(coordinates["anger"])) / 4
    assert manifest.loc[0, ["valence", "arousal"]].tolist() == pytest.approx(weighted.tolist())
    assert manifest.loc[1, ["valence", "arousal"]].tolist() == pytest.approx(list(coordinates["anger"]))
