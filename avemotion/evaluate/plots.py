"""Evaluation figures (matplotlib, Agg canvas; no pyplot state, so jobs and tests can draw in parallel).

Each ``*_figure`` function returns a Figure; :func:`save_png` writes it atomically. PNGs carry no
software version in their metadata, so the same numbers give the same file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from avemotion.evaluate.history import chosen_rows, epoch_numbers
from avemotion.io import atomic_path
from avemotion.metrics import regression_metrics

DPI = 110


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})


def message_figure(text: str, width: float = 5, height: float = 2) -> Figure:
    """A figure that only says why there is nothing to draw."""
    figure = new_figure(width, height)
    axes = figure.add_subplot()
    axes.axis("off")
    axes.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return figure


def confusion_figure(matrix, labels: Sequence[str], title: str = "") -> Figure:
    """Rows = true class, columns = predicted; colour and first number = row-normalised share,
    second number = clip count."""
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(totals > 0, counts / totals, np.nan)
    size = 1.2 + 0.75 * len(labels)
    figure = new_figure(size + 1.2, size)
    axes = figure.add_subplot()
    image = axes.imshow(np.nan_to_num(shares), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            text = "-" if np.isnan(shares[i, j]) else f"{shares[i, j]:.2f}\n({int(counts[i, j])})"
            colour = "white" if not np.isnan(shares[i, j]) and shares[i, j] > 0.6 else "black"
            axes.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
    return figure


def training_curves_figure(histories: Mapping[int, pd.DataFrame], title: str = "") -> Figure:
    """loss (solid) and val_loss (dashed) against epoch, one colour per fold, a dot on the epoch the
    fold's model is (history.csv's CHOSEN_EPOCH_COLUMN)."""
    figure = new_figure(6.5, 4)
    axes = figure.add_subplot()
    colours = [f"C{i}" for i in range(10)]
    drawn = False
    for index, (fold, history) in enumerate(sorted(histories.items())):
        epochs = epoch_numbers(history)
        colour = colours[index % len(colours)]
        for column, style in (("loss", "-"), ("val_loss", "--")):
            if column in history and history[column].notna().any():
                axes.plot(epochs, history[column], style, color=colour, label=f"fold {fold} {column}")
                drawn = True
        chosen = chosen_rows(history)
        if chosen.any() and "val_loss" in history:
            axes.plot(epochs[chosen], history.loc[chosen, "val_loss"], "o", color=colour)
    if not drawn:
        axes.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=axes.transAxes)
    else:
        axes.legend(fontsize=7, ncol=2)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return figure


def va_scatter_figure(predictions: pd.DataFrame, title: str = "") -> Figure:
    """True against predicted valence and arousal (every fold's test clips), with the CCC of those
    clips pooled per panel (the tables beside it give the mean over folds)."""
    figure = new_figure(8, 4.6)
    for index, dimension in enumerate(("valence", "arousal")):
        axes = figure.add_subplot(1, 2, index + 1)
        column = f"{dimension}_pred"
        if column not in predictions or dimension not in predictions or predictions.empty:
            axes.text(0.5, 0.5, f"no {dimension} predictions", ha="center", va="center", transform=axes.transAxes)
            continue
        true, pred = predictions[dimension].to_numpy(float), predictions[column].to_numpy(float)
        ccc = regression_metrics(true, pred)["ccc"]
        axes.scatter(true, pred, s=10, alpha=0.5)
        axes.plot([-1, 1], [-1, 1], color="grey", linewidth=1)
        axes.set_xlim(-1.05, 1.05)
        axes.set_ylim(-1.05, 1.05)
        axes.set_aspect("equal")
        axes.set_xlabel(f"target {dimension} (label-derived)")
        axes.set_ylabel(f"predicted {dimension}")
        axes.set_title(f"{dimension}: CCC {ccc:.3f} (all clips pooled)")
        axes.grid(alpha=0.3)
    figure.suptitle(title)
    return figure


def heatmap_figure(
    matrix: pd.DataFrame, title: str = "", xlabel: str = "", ylabel: str = "", vmin: float = 0, vmax: float = 1
) -> Figure:
    """A table of values (index = row names, columns = column names) as a heatmap; NaN cells are grey
    and marked n/a."""
    values = matrix.to_numpy(dtype=float)
    rows, columns = values.shape
    figure = new_figure(max(6.5, 3.5 + 1.2 * columns), max(3.0, 1.6 + 0.6 * rows))
    axes = figure.add_subplot()
    cmap = _cmap_with_grey("viridis")
    image = axes.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for i in range(rows):
        for j in range(columns):
            value = values[i, j]
            text = "n/a" if np.isnan(value) else f"{value:.3f}"
            colour = "black" if np.isnan(value) or value > vmin + 0.6 * (vmax - vmin) else "white"
            axes.text(j, i, text, ha="center", va="center", fontsize=9, color=colour)
    axes.set_xticks(range(columns), [str(c) for c in matrix.columns], rotation=30, ha="right")
    axes.set_yticks(range(rows), [str(r) for r in matrix.index])
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure


def _cmap_with_grey(name: str):
    cmap = colormaps[name].copy()
    cmap.set_bad("lightgrey")
    return cmap
