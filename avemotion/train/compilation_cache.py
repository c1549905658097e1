"""JAX's persistent compilation cache (layout.COMPILATION_CACHE) cleared of entries that a killed job
cut short.

JAX writes an entry in place and never replaces one that exists (jax/_src/lru_cache.py,
``LRUCache.put``); reading a cut entry only warns and compiles again. So a job killed while it wrote
an entry left one that made every later job compile that step again (150-180 s a job on an H100).
A training job on JAX removes such entries before it starts: the next job to compile the step
writes it whole. Entries found whole are remembered by (size, mtime), so a cache of several GB on a
shared file system is read once, not by every job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

from jax._src.compilation_cache import decompress_executable
from jax._src.lru_cache import _ATIME_SUFFIX, _CACHE_SUFFIX

from avemotion.io import SHARED_LEFTOVER_AGE_S, atomic_path

log = logging.getLogger(__name__)

# The entries found whole, beside them (JAX reads only files that end in its suffix)
WHOLE_ENTRIES = ".avemotion-whole-entries.json"


def remove_cut_entries(folder, min_age_s: float = SHARED_LEFTOVER_AGE_S) -> list[str]:
    """Remove the entries of ``folder`` that do not decompress, and return their names. An entry
    younger than ``min_age_s`` may be another job's write in progress, and is left for a later job."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    record = folder / WHOLE_ENTRIES
    known = _read_record(record)
    whole, removed, now = {}, [], time.time()
    for entry in sorted(folder.glob(f"*{_CACHE_SUFFIX}")):
        try:
            stat = entry.stat()
            stamp = [stat.st_size, stat.st_mtime_ns]
            if known.get(entry.name) == stamp:
                whole[entry.name] = stamp
                continue
            if now - stat.st_mtime < min_age_s:
                continue
            data = entry.read_bytes()
        except OSError:  # another job removed it meanwhile, or it is not ours to read (nor to remove)
            continue
        try:
            decompress_executable(data)
        except Exception as error:  # zlib's and zstd's errors alike: JAX cannot read it either
            try:
                entry.unlink()
            except FileNotFoundError:
                pass  # another job removed it first
            except OSError as failure:  # a cache shared with other users, in a folder not ours to change
                log.warning("JAX compilation cache: %s is cut short (%s) but cannot be removed (%s)", entry.name, error, failure)
                continue
            with contextlib.suppress(FileNotFoundError):  # written only where JAX evicts entries
                (folder / (entry.name.removesuffix(_CACHE_SUFFIX) + _ATIME_SUFFIX)).unlink()
            log.warning("JAX compilation cache: removed %s, cut short (%s); the next job to need it compiles it again", entry.name, error)
            removed.append(entry.name)
            continue
        whole[entry.name] = stamp
    if whole != known:
        _write_record(whole, record)
    return removed


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(whole: dict, path: Path) -> None:
    # Jobs starting together may each write it; the last rename wins and what it lacks is read again.
    try:
        with atomic_path(path, shared=True) as tmp:
            tmp.write_text(json.dumps(whole, separators=(",", ":")))
    except FileNotFoundError:
        pass  # a shared file system whose clock runs far from ours took our file for a dead writer's
    except OSError as error:  # a folder not ours to write (JAX then only warns that it cannot add entries)
        log.warning("JAX compilation cache: cannot record its whole entries (%s); they are read again by the next job", error)
