"""Train, validation and test never share a speaker, in any fold."""

import pandas as pd
import pytest

from avemotion.datasets import crema_d, enterface, mafw
from avemotion.train.settings import NUM_FOLDS
from avemotion.train.splits import speaker_splits
from conftest import in_other_processes


def corpus(dataset: str, speakers: int, folds: int, clips_per_speaker: int = 6) -> pd.DataFrame:
    rows = []
    for speaker in range(speakers):
        for clip in range(clips_per_speaker):
            rows.append(
                {"clip_id": f"{dataset}_{speaker}_{clip}", "dataset": dataset, "speaker": str(speaker), "fold": 1 + speaker % folds}
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("test_fold", [1, 2, 3, 4, 5])
def test_every_fold_is_speaker_disjoint_across_datasets(test_fold):
    # Speaker ids repeat across the two corpora ("0" in both): they are different people.
    clips = pd.concat([corpus("crema_d", 20, 5), corpus("enterface", 10, 5)], ignore_index=True)
    split = speaker_splits(clips, test_fold, validation_fraction=0.2, seed=3)
    by_id = clips.set_index("clip_id")
    people = {name: set(zip(by_id.loc[ids, "dataset"], by_id.loc[ids, "speaker"])) for name, ids in split.items()}
    assert not people["train"] & people["validation"]
    assert not people["train"] & people["test"] and not people["validation"] & people["test"]
    assert set(by_id.loc[split["test"], "fold"]) == {test_fold}
    assert sorted(split["train"] + split["validation"] + split["test"]) == sorted(clips["clip_id"])
    # Both corpora give validation speakers: 20% of 16 remaining -> 4, of 8 -> 2.
    validation = by_id.loc[split["validation"]].groupby("dataset")["speaker"].nunique().to_dict()
    assert validation == {"crema_d": 4, "enterface": 2}


def test_final_model_trains_on_every_fold_and_same_seed_same_split():
    clips = corpus("crema_d", 5, 5)
    split = speaker_splits(clips, None, 0.2, seed=0)
    assert split["test"] == [] and len(split["train"]) + len(split["validation"]) == len(clips)
    # Same seed, same split on every machine and in every rerun (not Python's per-process hash).
    code = (
        "import json, sys; import pandas as pd; from avemotion.train.splits import speaker_splits; "
        "print(json.dumps(speaker_splits(pd.DataFrame(json.load(sys.stdin)), 2, 0.2, seed=7)))"
    )
    assert in_other_processes(code, clips.to_dict("records")) == [speaker_splits(clips, 2, 0.2, seed=7)] * 2


def test_demo_sized_corpus_keeps_training_speakers():
    # 5 speakers, one per fold: 1 test, 1 validation, 3 training speakers.
    split = speaker_splits(corpus("crema_d", 5, 5), 1, 0.2, 0)
    assert len(split["test"]) == 6 and len(split["validation"]) == 6 and len(split["train"]) == 18


def test_leave_one_corpus_out_tests_every_clip_of_the_held_out_corpus_only():
    clips = pd.concat([corpus("crema_d", 10, 5), corpus("enterface", 8, 5)], ignore_index=True)
    split = speaker_splits(clips, None, validation_fraction=0.2, seed=1, held_out_dataset="enterface")
    by_id = clips.set_index("clip_id")
    assert sorted(split["test"]) == sorted(clips.loc[clips["dataset"] == "enterface", "clip_id"])
    assert set(by_id.loc[split["train"] + split["validation"], "dataset"]) == {"crema_d"}
    assert split["validation"]
    with pytest.raises(ValueError, match="not both"):
        speaker_splits(clips, 1, 0.2, 0, held_out_dataset="enterface")


def test_every_corpus_protocol_has_the_folds_experiments_name():
    """training.folds names folds 1-NUM_FOLDS of every corpus (a mixture tests fold k of each at
    once): each reader's protocol must assign exactly those."""
    every = set(range(1, NUM_FOLDS + 1))
    assert {crema_d.fold_of_actor(actor) for actor in range(crema_d.FIRST_ACTOR, crema_d.LAST_ACTOR + 1)} == every
    assert {enterface.fold_of_subject(subject) for subject in range(1, enterface.LAST_SUBJECT + 1)} == every
    assert set(range(1, mafw.NUM_SETS + 1)) == every


def test_the_seed_chooses_the_validation_speakers():
    """training.seed draws other validation speakers (a seed sweep must not validate on the same
    people every time), and no seed takes simply the lowest speaker ids."""
    clips = corpus("crema_d", 40, 5)
    chosen = {
        seed: {clip.rsplit("_", 1)[0] for clip in speaker_splits(clips, 1, 0.2, seed)["validation"]} for seed in range(4)
    }
    assert len({frozenset(speakers) for speakers in chosen.values()}) == 4
    lowest = {f"crema_d_{speaker}" for speaker in sorted({str(s) for s in range(40) if (1 + s % 5) != 1})[: len(chosen[0])]}
    assert all(speakers != lowest for speakers in chosen.values())


def test_a_large_validation_fraction_leaves_a_training_speaker():
    """Two speakers and validation_fraction 0.9: one validates, one trains (never all validation)."""
    split = speaker_splits(corpus("enterface", 2, 2), None, validation_fraction=0.9, seed=0)
    assert split["train"] and split["validation"]


def test_corpora_whose_clip_ids_collide_are_refused():
    """Two corpora sharing a clip id would make a split whose clips cannot be told apart."""
    mixed = pd.concat([corpus("crema_d", 4, 2), corpus("enterface", 4, 2).assign(clip_id=lambda c: c["clip_id"].str.replace("enterface", "crema_d"))])
    with pytest.raises(ValueError, match="clip ids repeat"):
        speaker_splits(mixed, 1, 0.2, 0)


def test_the_split_is_the_same_whatever_order_the_clips_come_in():
    """The clips come from the shards in chunk order: the same clips in another order give the same
    train, validation and test lists, each sorted (split.json does not change with the chunking)."""
    clips = pd.concat([corpus("crema_d", 12, 5), corpus("enterface", 6, 5)], ignore_index=True)
    split = speaker_splits(clips, 2, validation_fraction=0.3, seed=4)
    shuffled = clips.sample(frac=1, random_state=0).reset_index(drop=True)
    assert speaker_splits(shuffled, 2, validation_fraction=0.3, seed=4) == split
    assert all(ids == sorted(ids) and ids for ids in split.values())


def test_speaker_ids_stored_as_numbers_split_as_their_text():
    """A table whose speaker column holds numbers (as a corpus with numbered actors may give) is
    split as the same speakers written as text: validation speakers included."""
    clips = corpus("crema_d", 10, 5)
    numbered = clips.assign(speaker=clips["speaker"].astype(int))
    split = speaker_splits(clips, 1, validation_fraction=0.25, seed=2)
    assert split["validation"] and speaker_splits(numbered, 1, validation_fraction=0.25, seed=2) == split
