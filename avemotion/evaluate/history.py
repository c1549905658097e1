"""A fold's training log (history.csv, one row per epoch) and which of its epochs the fold's model is.

fit() marks that epoch in ``layout.CHOSEN_EPOCH_COLUMN``; runs trained before the mark existed have
no such column, and a log rewritten by an older job may have empty cells.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from avemotion.layout import CHOSEN_EPOCH_COLUMN


def read_history(path) -> pd.DataFrame:
    """history.csv as a table; empty for a missing or empty file (a run that logged no epoch)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    return pd.read_csv(path)


def epoch_numbers(history: pd.DataFrame) -> pd.Series:
    """Each row's epoch counted from 1, as the training curves and the report count."""
    if "epoch" in history:
        return history["epoch"] + 1
    return pd.Series(range(1, len(history) + 1), index=history.index)


def chosen_rows(history: pd.DataFrame) -> pd.Series:
    """True on the row of the epoch whose weights the fold's model holds; all False without the mark."""
    if CHOSEN_EPOCH_COLUMN not in history:
        return pd.Series(False, index=history.index)
    return history[CHOSEN_EPOCH_COLUMN].fillna(False).astype(bool)


def chosen_epoch(history: pd.DataFrame) -> dict | None:
    """The epoch whose weights a run's model holds (from 1) and how many epochs ran; None for a log
    without the mark (a run trained before history.csv kept it)."""
    chosen = chosen_rows(history)
    if not chosen.any():
        return None
    return {"epoch": int(epoch_numbers(history)[chosen].iloc[0]), "of": len(history)}
