"""Dataset readers and indexing: one module per corpus, one registry that names them.

Each reader module provides ``LABELS`` (its classes in canonical order), ``index_dependencies(root)``
(the folders whose names and the metadata files the index reads: the index rule's inputs, so that
adding, removing or renaming a clip reruns the index while a re-encoded clip does not) and
``scan(root, settings)`` (records and quarantined files from names and metadata, no decoding) and
``SPEAKER_IDS`` (whether its speaker column names people: MAFW's does not) and
``layout_problem(root)`` (None when the root looks like that corpus, else what was expected: the
config check, :func:`check_datasets`, runs it before any job, so a root that holds another corpus or
nothing stops the run) and ``leave_out_problem(speaker)`` (None when ``speaker`` can be one of the
corpus' speakers, else what is wrong with it as an item of ``leave_out_speakers``; the config check
stops on it). A reader may provide ``layout_notices(root, settings)``: one-line notices of what its
corpus folder lacks without being unusable (CREMA-D's AudioWAV, votes), printed before any job.
The classes themselves are plain data in avemotion.labels (``CORPUS_LABELS``).
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import pandas as pd

from avemotion.config import ConfigError, check_dataset_keys, enabled_datasets, holds_wildcards, snakemake_can_name, sorted_keys
from avemotion.datasets import crema_d, enterface, mafw
from avemotion.datasets.manifest import Scan, build_manifest
from avemotion.datasets.walk import unreadable_folders
from avemotion.io import NOT_UTF8, is_utf8_name, shown_name, write_csv, write_parquet
from avemotion.job_params import PREPROCESS_SECTIONS
from avemotion.labels import coordinates_from_config

log = logging.getLogger(__name__)

WILDCARD_NAME = "the path holds { or }, which Snakemake reads as wildcards in a job's files: rename the file or its folder"

READERS = {"crema_d": crema_d, "enterface": enterface, "mafw": mafw}


class DatasetRootError(FileNotFoundError):
    """A configured dataset root that is not a directory."""


def check_root(dataset: str, root) -> Path:
    root = Path(root)
    if holds_wildcards(root):
        raise DatasetRootError(
            f"dataset '{dataset}': root directory '{root}' holds {{ or }}, which Snakemake reads as wildcards in the "
            f"file names of a job (config key datasets.{dataset}.root; use a path without them, e.g. a symlink)"
        )
    if root.exists() and not root.is_dir():
        raise DatasetRootError(f"dataset '{dataset}': root '{root}' is a file, not the corpus' folder (config key datasets.{dataset}.root)")
    if not root.is_dir():
        unset = [name for name in re.findall(r"\$\{?(\w+)\}?", str(root)) if name not in os.environ]
        why = f"; ${', $'.join(unset)} is not set in this environment" if unset else ""
        raise DatasetRootError(
            f"dataset '{dataset}': root directory '{root}' does not exist{why} (config key "
            f"datasets.{dataset}.root; a relative path is read from the working directory "
            f"'{Path.cwd()}'; or set datasets.{dataset}.enabled: false)"
        )
    return root


def check_layout(dataset: str, root) -> Path:
    """The root, if it exists and holds that corpus' layout; else a one-line error naming what was
    expected there and, when it holds another corpus, which."""
    root = check_root(dataset, root)
    problem = reader(dataset).layout_problem(root)
    if problem:
        others = [name for name, module in READERS.items() if name != dataset and module.layout_problem(root) is None]
        looks = f"; it holds the layout of {' and '.join(others)}" if others else ""
        # a root set to a folder inside the corpus (CREMA-D's VideoFlash, MAFW's data/clips)
        inside = next((parent for parent in list(root.absolute().parents)[:2] if reader(dataset).layout_problem(parent) is None), None)
        looks += f"; '{inside}' above it holds {dataset}'s layout: set the root to that folder" if inside else ""
        raise DatasetRootError(
            f"dataset '{dataset}': {problem} under '{root}'{looks} (config key datasets.{dataset}.root; "
            f"or leave it unset to leave {dataset} out)"
        )
    return root




def check_datasets(config: dict, generated_roots=()) -> None:
    """The config's datasets before any job: keys first, then every enabled dataset's root holds its
    corpus' layout, unless the workflow generates it (demo corpora)."""
    check_dataset_keys(config)
    generated = {Path(p) for p in generated_roots}
    for name in enabled_datasets(config):
        _check_leave_out_speakers(name, config["datasets"][name].get("leave_out_speakers") or ())
        root = Path(config["datasets"][name]["root"])
        if root not in generated:
            check_layout(name, root)


def layout_notices(config: dict, generated_roots=()) -> list[str]:
    """The enabled corpora's notices of side files their folders lack (readers' ``layout_notices``)."""
    generated = {Path(p) for p in generated_roots}
    notices = []
    for name in enabled_datasets(config):
        settings, module = config["datasets"][name], READERS[name]
        if hasattr(module, "layout_notices") and Path(settings["root"]) not in generated:
            notices += module.layout_notices(Path(settings["root"]), settings)
    return notices


def _check_leave_out_speakers(dataset: str, speakers) -> None:
    """A listed speaker that cannot be one of the corpus' (its reader's ``leave_out_problem``) stops
    the run: it would leave out nothing, said in the index log only."""
    for speaker in speakers:
        problem = reader(dataset).leave_out_problem(speaker)
        if problem:
            raise ConfigError(f"config: datasets.{dataset}.leave_out_speakers: {problem}")


def reader(dataset: str):
    if dataset not in READERS:
        raise KeyError(f"unknown dataset '{dataset}' (known: {', '.join(READERS)})")
    return READERS[dataset]


def speaker_ids(dataset: str) -> bool:
    """Whether the dataset's ``speaker`` column names people (a count of them means something)."""
    return reader(dataset).SPEAKER_IDS


def index_dependencies(dataset: str, root) -> list[Path]:
    """What the index rule reads (its inputs), but for folders whose names Snakemake cannot take as a
    job's file: one holding { or } (read as wildcards) or not UTF-8 (its lock file cannot hold the
    name); either stopped the whole workflow. Their clips are quarantined (:func:`index_dataset`),
    and renaming such a folder changes its parent, which stays an input."""
    return [path for path in reader(dataset).index_dependencies(check_root(dataset, root)) if snakemake_can_name(path)]


def indexed_keys(settings: dict) -> dict:
    """The keys of a dataset's config block that its index reads (the index job's params), written so
    that blocks meaning the same index are equal: its other keys (enabled, root, preprocessing
    overrides) and keys written empty (leave_out_speakers: [], as if unset) left out, speakers as a
    sorted set of strings ([7, 6] and ["6", "7"] leave out the same clips)."""
    ignored = {"enabled", "root", *PREPROCESS_SECTIONS}
    indexed = {key: value for key, value in settings.items() if key not in ignored and value not in (None, [], {})}
    if "leave_out_speakers" in indexed:
        indexed["leave_out_speakers"] = sorted({str(speaker) for speaker in indexed["leave_out_speakers"]})
    return sorted_keys(indexed)


def index_dataset(dataset: str, root, settings: dict, coordinates: dict | None = None):
    """(manifest, quarantine) tables of one dataset, from file names and metadata only."""
    module = reader(dataset)
    started = time.perf_counter()
    with unreadable_folders() as unreadable:
        found = module.scan(check_root(dataset, root), settings)
    _quarantine_unreadable_folders(found, Path(root), unreadable)
    _quarantine_broken_links(found, Path(root))
    _quarantine_undecodable_names(found)
    _quarantine_wildcard_names(found)
    _leave_out_speakers(found, dataset, settings.get("leave_out_speakers") or ())
    manifest, quarantine = build_manifest(
        dataset,
        found,
        module.LABELS,
        coordinates_from_config(coordinates),
        num_chunks=settings["chunks"],  # the workflow's chunk count (each corpus has its own): clips must land in its chunks
    )
    log.info(
        "%s: %d clips indexed, %d quarantined, in %.2f s",
        dataset,
        len(manifest),
        len(quarantine),
        time.perf_counter() - started,
    )
    for reason, count in quarantine["reason"].value_counts().items():
        log.info("  quarantined %d: %s", count, reason)
    return manifest, quarantine


def clip_files(record: dict) -> list[str]:
    """The corpus files of an index record: its video, and its separate audio where it has one."""
    return [name for name in (record["path"], record.get("audio_path")) if name]


def _quarantine_unreadable_folders(found: Scan, root: Path, unreadable: dict[str, OSError]) -> None:
    """A folder the index could not list (no read permission, a stale network mount) is quarantined
    itself, its clips being unknown: a user sees there why clips are missing."""
    for folder, error in sorted(unreadable.items()):
        path = Path(folder)
        where = path.relative_to(root).as_posix() if path.is_relative_to(root) else folder
        hint = "; let the workflow's user read it" if isinstance(error, PermissionError) else ""
        found.quarantine(path.name, where, f"cannot read this folder ({error.strerror or error}): the clips in it are left out{hint}")


def _quarantine_broken_links(found: Scan, root: Path) -> None:
    """Clips whose video or audio file is a link to a file that is gone (a corpus moved to another
    disk) are quarantined with where the link points: a chunk job cannot read them."""

    def gone(record: dict) -> str:
        missing = [rel for rel in clip_files(record) if not (root / rel).exists()]
        if missing and (root / missing[0]).is_symlink():
            return f"broken link: {missing[0]} points to {os.readlink(root / missing[0])}, which does not exist"
        return f"{missing[0]} is gone (removed while the corpus was indexed)" if missing else ""

    found.quarantine_records(gone)


def _quarantine_undecodable_names(found: Scan) -> None:
    """Clips whose file names are not UTF-8 are quarantined, and every quarantined name is written
    so that the tables can hold it (\\xNN for such bytes): the index failed on them."""
    found.quarantine_records(lambda record: "" if all(map(is_utf8_name, [record["clip_id"], *clip_files(record)])) else NOT_UTF8)
    for entry in found.quarantined:
        entry.update(clip_id=shown_name(entry["clip_id"]), path=shown_name(entry["path"]), reason=shown_name(entry["reason"]))


def _quarantine_wildcard_names(found: Scan) -> None:
    """Clips whose path holds { or } are quarantined: a chunk job takes its clips' files as inputs,
    and Snakemake reads braces there as wildcards (the whole workflow stopped on one such clip)."""
    found.quarantine_records(lambda record: WILDCARD_NAME if any(map(holds_wildcards, clip_files(record))) else "")


def _leave_out_speakers(found: Scan, dataset: str, speakers) -> None:
    """The clips of ``speakers`` (``datasets.<name>.leave_out_speakers``) are quarantined with the key
    as the reason, so the report says where they went; a listed speaker the corpus does not hold
    (a copy without them) is said in the log."""
    wanted = {str(speaker) for speaker in speakers}
    absent = wanted - {str(record["speaker"]) for record in found.records}
    if absent:
        log.info("%s: datasets.%s.leave_out_speakers names %s, not among its speakers", dataset, dataset, ", ".join(sorted(absent)))
    found.quarantine_records(
        lambda record: f"speaker {record['speaker']} left out (datasets.{dataset}.leave_out_speakers)" if str(record["speaker"]) in wanted else ""
    )


def write_index(manifest: pd.DataFrame, quarantine: pd.DataFrame, manifest_path, quarantine_path) -> None:
    write_parquet(manifest, manifest_path)
    write_csv(quarantine, quarantine_path)
