"""results/report/index.html: the page to open first after a run.

Every number on the page is read or computed here from the artifacts on disk (manifests, quarantine
lists, tabular shards, each experiment's summary.json and baselines.json, the cross-corpus JSON);
nothing is typed in. Images are referenced by paths relative to the page, so the page works wherever
``results/`` is copied as a whole.

Besides the page this writes two tables: datasets.csv (per dataset and class: indexed and usable clips)
and quarantine_summary.csv (per dataset, stage and reason: unique quarantined clip ids).
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from avemotion.datasets import speaker_ids
from avemotion.evaluate.cross_corpus import LOCO_COLUMNS, LONG_COLUMNS
from avemotion.evaluate.summary import format_mean_std, unscored_clips
from avemotion.fusion.shards import read_tabular_shards
from avemotion.io import atomic_path, read_json, write_csv
from avemotion.layout import PREVIEWS_LISTING, SPLIT_FILE
from avemotion.quarantine import read_quarantine

VA_NOTE = (
    "Valence and arousal targets are derived from the emotion labels (per-class coordinates of the "
    "NRC-VAD lexicon, vote-weighted where the corpus has per-clip votes), not annotated dimensions: no "
    "corpus here has dimensional labels. The valence/arousal CCC therefore largely measures how well the "
    "classes are recognised, not an independent dimensional estimate."
)
NO_EXPERIMENTS = (
    "No experiments are configured (config key <code>experiments:</code>), so there are no models to "
    f"evaluate. The baselines are fitted on an experiment's folds (its {SPLIT_FILE} files) and cannot run "
    "without one."
)
METRIC_COLUMNS = (("uar", "UAR"), ("war", "WAR"), ("macro_f1", "macro-F1"), ("valence.ccc", "valence CCC"), ("arousal.ccc", "arousal CCC"))


# ---- dataset statistics -----------------------------------------------------------------------------


def quarantine_summary(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Unique clips per stage and reason; for the index, unique files (it quarantines a stray file or
    a duplicate under the id of a clip it keeps). Reasons are grouped by their text before
    the first ": " (the rest names the clip's file or decoder message); one full reason is kept as an
    example."""
    columns = ["stage", "reason", "clips", "example"]
    if quarantine.empty:
        return pd.DataFrame(columns=columns)
    table = quarantine.assign(
        group=quarantine["reason"].astype(str).str.split(": ", n=1).str[0],
        entry=quarantine["path"].where(quarantine["stage"] == "index", quarantine["clip_id"]),
    )
    rows = [
        {"stage": stage, "reason": group, "clips": rows["entry"].nunique(), "example": rows["reason"].iloc[0]}
        for (stage, group), rows in table.groupby(["stage", "group"], sort=True)
    ]
    return pd.DataFrame(rows, columns=columns)


# Flags of usable clips that the datasets table counts, with their column headers.
REPORTED_FLAGS = {
    "audio_misaligned": "usable with misaligned audio",
    "short": "usable, fewer frames than num_frames",
    "truncated": "usable, truncated file",
}


def dataset_statistics(name: str, manifest: pd.DataFrame, quarantine: pd.DataFrame, usable: pd.DataFrame) -> dict:
    """Counts of one dataset: indexed (manifest), quarantined (files the index left out, by path: a
    stray file or a duplicate is quarantined under the id of a clip it keeps; indexed clips a later
    stage left out, by id), usable (tabular shards)."""
    labelled = manifest[manifest["label"].fillna("") != ""]
    labels = list(dict.fromkeys(labelled.sort_values("label_index")["label"]))
    indexed = labelled["label"].value_counts()
    ready = usable["label"].value_counts() if len(usable) else pd.Series(dtype=int)
    at_index = quarantine.loc[quarantine["stage"] == "index", "path"].nunique()
    later = len(set(quarantine.loc[quarantine["stage"] != "index", "clip_id"]) & set(manifest["clip_id"]))
    named = speaker_ids(name)
    return {
        "dataset": name,
        "found": int(len(manifest) + at_index),
        "indexed": int(len(manifest)),
        "unlabelled": int(len(manifest) - len(labelled)),
        "speakers": int(manifest["speaker"].nunique()) if named else None,
        "quarantined": int(at_index + later),
        "quarantined_at_index": int(at_index),
        "quarantined_indexed": later,
        "usable": int(len(usable)),
        "usable_speakers": (int(usable["speaker"].nunique()) if len(usable) else 0) if named else None,
        **{f"usable_{flag}": int(usable[flag].sum()) if flag in usable else 0 for flag in REPORTED_FLAGS},
        "classes": {label: {"indexed": int(indexed.get(label, 0)), "usable": int(ready.get(label, 0))} for label in labels},
        "quarantine": quarantine_summary(quarantine).to_dict("records"),
    }


def read_dataset(entry: Mapping) -> dict:
    """Statistics of one dataset from {name, manifest, quarantine, tabular: [paths]}."""
    manifest = pd.read_parquet(entry["manifest"])
    quarantine = read_quarantine(entry["quarantine"])
    usable = read_tabular_shards(entry["tabular"]) if entry.get("tabular") else pd.DataFrame()
    return dataset_statistics(entry["name"], manifest, quarantine, usable)


def datasets_table(statistics: Sequence[dict]) -> pd.DataFrame:
    rows = [
        {"dataset": s["dataset"], "label": label, "indexed": c["indexed"], "usable": c["usable"]}
        for s in statistics
        for label, c in s["classes"].items()
    ]
    return pd.DataFrame(rows, columns=["dataset", "label", "indexed", "usable"])


def quarantine_table(statistics: Sequence[dict]) -> pd.DataFrame:
    rows = [{"dataset": s["dataset"], **row} for s in statistics for row in s["quarantine"]]
    return pd.DataFrame(rows, columns=["dataset", "stage", "reason", "clips", "example"])


# ---- HTML ---------------------------------------------------------------------------------------------


def esc(value) -> str:
    return html.escape(str(value))


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def table_html(header: Sequence[str], rows: Sequence[Sequence], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="{"num" if i >= numeric_from else ""}">{cell}</td>' for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image_html(path, page_dir, alt: str, width: str = "") -> str:
    rel = Path(os.path.relpath(path, page_dir)).as_posix()
    style = f' style="max-width:{width}"' if width else ""
    return f'<a href="{esc(rel)}"><img src="{esc(rel)}" alt="{esc(alt)}"{style}></a>'


def datasets_section(statistics: Sequence[dict]) -> str:
    parts = ["<h2>Datasets</h2>"]
    keys = ("found", "quarantined_at_index", "indexed", "speakers", "unlabelled", "quarantined_indexed", "quarantined", "usable", "usable_speakers")
    keys += tuple(f"usable_{flag}" for flag in REPORTED_FLAGS)
    rows = [[esc(s["dataset"])] + [fmt(s[key]) for key in keys] for s in statistics]
    header = [
        "dataset",
        "clips found",
        "quarantined by the index",
        "indexed clips",
        "speakers",
        "without a single label",
        "indexed, quarantined later",
        "quarantined in all (unique clips)",
        "usable clips",
        "usable speakers",
        *REPORTED_FLAGS.values(),
    ]
    parts.append(table_html(header, rows))
    parts.append(
        "<p>Indexed: rows of the dataset's manifest; clips the index quarantined (unparsable names, known "
        "defects) are not in it. Quarantined: unique clip ids of quarantine.csv (a clip quarantined by several "
        "stages counts once). Usable: labelled clips that passed every stage (rows of the tabular shards), "
        "what training and the baselines draw from. The last columns count usable clips kept with a flag "
        "(configurable quarantines: audio.misaligned, frames.short_clips, frames.truncated_clips). Speakers "
        "n/a: the corpus names no speakers (MAFW; its folds are the official lists, each clip its own group, so "
        "one person may appear in training and test folds, as in published MAFW results).</p>"
    )
    labels = list(dict.fromkeys(label for s in statistics for label in s["classes"]))
    if labels:
        header = ["class"] + [f"{s['dataset']} usable / indexed" for s in statistics]
        rows = [
            [esc(label)]
            + [
                f"{s['classes'][label]['usable']} / {s['classes'][label]['indexed']}" if label in s["classes"] else "-"
                for s in statistics
            ]
            for label in labels
        ]
        parts.append("<h3>Clips per class</h3>" + table_html(header, rows))
    parts.append("<h3>Quarantine</h3>")
    for s in statistics:
        rows = [[esc(r["stage"]), esc(r["reason"]), fmt(r["clips"]), f"<small>{esc(r['example'])}</small>"] for r in s["quarantine"]]
        if rows:
            parts.append(
                f"<h4>{esc(s['dataset'])}: {s['quarantined']} unique clips quarantined</h4>"
                + table_html(["stage", "reason", "unique clips", "example"], rows, numeric_from=2)
            )
        else:
            parts.append(f"<h4>{esc(s['dataset'])}: no clip quarantined</h4>")
    return "\n".join(parts)


def metrics_row(name: str, summarised: Mapping | None) -> list[str]:
    metrics = (summarised or {}).get("metrics", {})
    return [esc(name)] + [format_mean_std(metrics.get(key)) for key, _ in METRIC_COLUMNS]


def experiment_section(entry: Mapping, page_dir) -> str:
    summary = read_json(entry["summary"])
    baselines = read_json(entry["baselines"]) if entry.get("baselines") and Path(entry["baselines"]).is_file() else None
    name = summary.get("experiment") or entry["name"]
    parts = [f'<h3 id="exp-{esc(name)}">{esc(name)}</h3>']
    folds = ", ".join(map(str, summary["folds"]))
    clips = sum(int(v) for v in summary["clips"].values())
    parts.append(
        f"<p>fusion <b>{esc(summary.get('fusion'))}</b>, datasets {esc(', '.join(summary.get('datasets') or []))}, "
        f"{len(summary['labels'])} classes ({esc(', '.join(summary['labels']))}; chance UAR {1 / len(summary['labels']):.3f}); "
        f"test folds {esc(folds)} "
        f"({clips} test clips). Mean ± sample standard deviation over the test folds.</p>"
    )
    rows = [metrics_row("model", summary["overall"])]
    protocol = summary.get("protocol")
    unscored = unscored_clips(summary)
    if unscored:
        rows += [metrics_row("model, every clip the folds list (quarantined ones as errors)", protocol)]
    rows += [metrics_row(f"{branch} branch", s) for branch, s in summary.get("branches", {}).items()]
    if baselines:
        rows += [metrics_row("baseline: majority class", baselines.get("majority"))]
        rows += [metrics_row("baseline: logistic regression (tabular features)", baselines.get("logistic_regression"))]
    rows += [metrics_row(f"model on {dataset} clips", s) for dataset, s in summary.get("per_dataset", {}).items()]
    final = summary.get("final_validation")
    if final:
        rows += [metrics_row(f"final model, its {final['clips']} validation clips", final)]
    parts.append(table_html(["", *[label for _, label in METRIC_COLUMNS]], rows))
    if protocol:
        listed = int(sum(protocol["metrics"]["listed_clips"]["per_fold"].values()))
        parts.append(
            f"<p><small>The test folds list {listed} clips of these classes; {unscored} of them a preprocessing stage "
            "quarantined (see the datasets' quarantine), so the model's figures leave them out. Published figures count "
            "every listed clip: compare with the row that counts them as errors, or keep them "
            "(<code>face.no_face: keep</code>, <code>audio.missing: silent</code>).</small></p>"
            if unscored
            else f"<p><small>Every one of the {listed} clips of these classes that the test folds list was scored.</small></p>"
        )
    missing = _folds_missing_classes(summary)
    if missing:
        parts.append(
            f"<p><small>Not every class has test clips in every fold ({esc(missing)}): a fold's UAR averages the "
            "recalls of the classes it holds, and the summed confusion matrix mixes folds of different class sets.</small></p>"
        )
    chosen = {fold: c for fold, c in summary.get("chosen_epochs", {}).items() if c}
    if chosen:
        epochs = ", ".join(f"fold {fold}: {c['epoch']} of {c['of']}" for fold, c in chosen.items())
        parts.append(f"<p><small>Each fold's model is its epoch of lowest validation loss (a dot on the training curves): {esc(epochs)}.</small></p>")
    if final:
        parts.append(
            "<p><small>The final model (<code>avemotion predict</code> uses it) trains on every speaker but its "
            "validation speakers, which chose its epoch: its figures lean optimistic and are no test result.</small></p>"
        )
    if baselines:
        majority = ", ".join(f"fold {f}: {c}" for f, c in baselines.get("majority_class", {}).items())
        parts.append(
            f"<p><small>Baselines fitted on each fold's training and validation clips, tested on its test clips. "
            f"Majority class {esc(majority)}. Logistic regression: L2 weight {baselines.get('l2', float('nan')):g} on standardised "
            f"face, MFCC, log-Mel and energy summaries.</small></p>"
        )
    images = entry.get("plots", {})
    if images:
        parts.append(
            '<div class="row">'
            + "".join(image_html(images[key], page_dir, f"{name} {key}", "32%") for key in ("confusion", "curves", "va") if key in images)
            + "</div>"
        )
    return "\n".join(parts)


def _folds_missing_classes(summary: Mapping) -> str:
    """"fold 1: 8 of 11 classes, ..." for the folds whose test clips lack some of the experiment's
    classes (a partial corpus copy, a small one); "" where every fold holds every class."""
    metrics, labels = summary["overall"]["metrics"], summary["labels"]
    short = []
    for fold in summary["folds"]:
        held = sum(1 for label in labels if (metrics.get(f"support.{label}", {}).get("per_fold", {}).get(str(fold)) or 0) > 0)
        if held < len(labels):
            short.append(f"fold {fold}: {held} of {len(labels)} classes")
    return ", ".join(short)


def experiments_section(experiments: Sequence[Mapping], page_dir) -> str:
    parts = ["<h2>Experiments</h2>"]
    if not experiments:
        parts.append(f"<p>{NO_EXPERIMENTS}</p>")
        return "\n".join(parts)
    parts.append(
        '<p class="note">Valence/arousal CCC below compares predictions with <b>label-derived</b> targets '
        "(see the note at the top): it mostly restates how well the classes are recognised.</p>"
    )
    parts += [experiment_section(entry, page_dir) for entry in experiments]
    return "\n".join(parts)


# The page's labels for the columns of the cross-corpus tables; which columns there are, and their
# order, is avemotion.evaluate.cross_corpus's (LONG_COLUMNS, LOCO_COLUMNS). A column no label names
# is not shown: the diagonal's uar_std (the experiment's own section shows UAR ± std).
CROSS_LABELS = {"experiment": "experiment", "train_dataset": "trained on", "test_dataset": "tested on", "kind": "kind"}
LOCO_LABELS = {"experiment": "mixture", "trained_on": "trained on", "heldout_dataset": "held out"}
SCORE_LABELS = {"uar": "UAR", "war": "WAR", "macro_f1": "macro-F1", "n_clips": "clips", "n_classes": "classes", "unscored_clips": "clips not scored", "quarantined_clips": "clips quarantined"}


def shown_columns(columns: Sequence[str], labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """(column, label) of each of a table's ``columns`` that ``labels`` names, in the table's order."""
    return tuple((column, labels[column]) for column in columns if column in labels)


def records_table(records: Sequence[Mapping], columns: Sequence[str], text_labels: Mapping[str, str]) -> str:
    """A table's rows (``columns``: the table's) with its text columns, then its scores."""
    text_columns, numeric_columns = shown_columns(columns, text_labels), shown_columns(columns, SCORE_LABELS)
    # .get: a column added later is absent from tables written before (shown "n/a")
    rows = [[esc(r[key]) for key, _ in text_columns] + [fmt(r.get(key)) for key, _ in numeric_columns] for r in records]
    header = [label for _, label in (*text_columns, *numeric_columns)]
    return table_html(header, rows, numeric_from=len(text_columns))


def cross_corpus_section(cross: Mapping | None, page_dir) -> str:
    parts = ["<h2>Cross-corpus</h2>"]
    data = read_json(cross["json"]) if cross else {"cross_corpus": [], "leave_one_corpus_out": []}
    if data["cross_corpus"]:
        parts.append(
            "<p>UAR of each single-dataset experiment on every corpus: the diagonal is the within-corpus mean over "
            "test folds, the other cells the final model on another corpus, restricted to the classes both share "
            "(so chance level differs between cells; see the class counts). Clips of a cell's classes that a "
            "preprocessing stage quarantined are in no shard, so no cell scores them: the table counts them.</p>"
        )
        parts.append(image_html(cross["matrix_png"], page_dir, "cross-corpus UAR", "60%"))
        parts.append(records_table(data["cross_corpus"], LONG_COLUMNS, CROSS_LABELS))
    else:
        parts.append(
            "<p>No cross-corpus results: they need a single-dataset experiment (off the diagonal, with "
            "<code>final: true</code> and another enabled dataset sharing two or more classes).</p>"
        )
    parts.append("<h3>Leave one corpus out</h3>")
    if data["leave_one_corpus_out"]:
        parts.append(
            "<p>Each mixture trained on all but one of its corpora and tested on the held-out one's clips of the classes "
            "its training corpora hold (the others are not scored: see the clips not scored). The model chooses among "
            "the classes it learned (chance UAR is one over the class count), and a choice of a class the held-out corpus "
            "lacks counts as an error, unlike the cross-corpus cells above, which choose among the shared classes only. "
            "The held-out corpus' clips of those classes that a stage quarantined are counted apart, as above.</p>"
        )
        parts.append(image_html(cross["loco_png"], page_dir, "leave-one-corpus-out UAR", "50%"))
        parts.append(records_table(data["leave_one_corpus_out"], LOCO_COLUMNS, LOCO_LABELS))
    else:
        parts.append("<p>No leave-one-corpus-out results: they need an experiment that mixes datasets.</p>")
    return "\n".join(parts)


def previews_section(previews: Mapping[str, str], page_dir) -> str:
    parts = [
        "<h2>What the models see</h2>",
        "<p>A few usable clips per dataset: the sampled frames with the face box and landmarks, the clip's mean "
        "action-unit intensities, and the log-Mel and MFCC images.</p>",
    ]
    for dataset, folder in previews.items():
        listing = Path(folder) / PREVIEWS_LISTING
        clips = read_json(listing)["clips"] if listing.is_file() else []
        parts.append(f"<h3>{esc(dataset)}</h3>")
        if not clips:
            parts.append("<p>No usable clip to preview.</p>")
        for clip in clips:
            parts.append(
                f"<figure>{image_html(Path(folder) / clip['png'], page_dir, clip['clip_id'])}"
                f"<figcaption>{esc(clip['clip_id'])}: {esc(clip['label'])}</figcaption></figure>"
            )
    return "\n".join(parts)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
thead { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #ddd; }
.row { display: flex; gap: 1%; align-items: flex-start; }
.note { background: #fff6d6; border-left: 4px solid #e0b000; padding: 0.6em 1em; }
figure { margin: 1em 0; }
"""


def render_report(statistics, experiments, cross, previews, page_dir) -> str:
    toc = "".join(
        f'<li><a href="#exp-{esc(e["name"])}">{esc(e["name"])}</a></li>' for e in experiments
    )
    body = [
        "<h1>avemotion report</h1>",
        f'<p class="note"><b>Valence/arousal are label-derived.</b> {esc(VA_NOTE)}</p>',
        f"<p>Experiments: <ul>{toc}</ul></p>" if toc else "",
        datasets_section(statistics),
        experiments_section(experiments, page_dir),
        cross_corpus_section(cross, page_dir),
        previews_section(previews, page_dir),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>avemotion report</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(part for part in body if part) + "\n</body></html>\n"
    )


def build_report(datasets, experiments, cross, previews, html_path, datasets_csv, quarantine_csv) -> str:
    """The rule's work: read every artifact named and write index.html and the two tables.

    ``datasets``: [{name, manifest, quarantine, tabular: [...]}]; ``experiments``: [{name, summary,
    baselines, plots: {confusion, curves, va}}]; ``cross``: {json, matrix_png, loco_png} or None;
    ``previews``: {dataset: folder}.
    """
    statistics = [read_dataset(entry) for entry in datasets]
    write_csv(datasets_table(statistics), datasets_csv)
    write_csv(quarantine_table(statistics), quarantine_csv)
    page = render_report(statistics, list(experiments), cross, dict(previews), Path(html_path).parent)
    with atomic_path(html_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return page
