"""Speaker-independent train / validation / test splits.

The test fold is a manifest fold (speaker-independent by construction). Validation speakers are
carved from the remaining training speakers, per dataset, so model selection and early stopping
never see the test speakers. Speakers are keyed by (dataset, speaker): ids repeat across corpora.
"""

from __future__ import annotations

import hashlib
import math

import pandas as pd


def _rank(seed: int, dataset: str, speaker: str) -> str:
    """A stable pseudo-random order of speakers (same seed, same validation speakers on every machine)."""
    return hashlib.sha1(f"{seed}/{dataset}/{speaker}".encode()).hexdigest()


def validation_speakers(clips: pd.DataFrame, fraction: float, seed: int) -> set[tuple[str, str]]:
    """About ``fraction`` of each dataset's speakers (at least one where a dataset has two or more)."""
    chosen = set()
    for dataset, group in clips.groupby("dataset"):
        speakers = sorted(group["speaker"].astype(str).unique(), key=lambda s: _rank(seed, dataset, s))
        if len(speakers) < 2:
            continue
        count = min(len(speakers) - 1, max(1, math.ceil(fraction * len(speakers))))
        chosen.update((dataset, speaker) for speaker in speakers[:count])
    return chosen


def speaker_splits(
    clips: pd.DataFrame,
    test_fold: int | None,
    validation_fraction: float,
    seed: int,
    held_out_dataset: str | None = None,
) -> dict[str, list[str]]:
    """clip ids of ``train``, ``validation`` and ``test``; ``test_fold`` None trains on every fold (final model).

    ``held_out_dataset`` (leave-one-corpus-out, instead of a test fold): every clip of that dataset
    is the test set and the other datasets' speakers train and validate.
    ``clips`` needs clip_id, dataset, speaker and fold. Clip ids are prefixed by nothing: callers
    mixing datasets must keep ids unique (the manifests' ids are, across the three corpora).
    """
    if clips["clip_id"].duplicated().any():
        raise ValueError("clip ids repeat across the mixed datasets; splits need unique ids")
    if held_out_dataset is not None and test_fold is not None:
        raise ValueError("choose a test fold or a held-out dataset, not both")
    if held_out_dataset is not None:
        is_test = clips["dataset"] == held_out_dataset
    elif test_fold is not None:
        is_test = clips["fold"] == test_fold
    else:
        is_test = pd.Series(False, index=clips.index)
    rest = clips[~is_test]
    held_out = validation_speakers(rest, validation_fraction, seed)
    keys = list(zip(rest["dataset"], rest["speaker"].astype(str)))
    is_validation = pd.Series([key in held_out for key in keys], index=rest.index, dtype=bool)
    return {
        "train": sorted(rest.loc[~is_validation, "clip_id"]),
        "validation": sorted(rest.loc[is_validation, "clip_id"]),
        "test": sorted(clips.loc[is_test, "clip_id"]),
    }
