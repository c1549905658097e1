"""Content digests of source files: whether a clip changed is a question about its bytes, not its mtime.

Copying a corpus without keeping times (or any touch) gives every clip a new mtime and the same
content; judged by mtime, every chunk, its fusion and every training of the corpus would run again.
The preprocessing rule (a params value) and the per-clip receipts compare these digests instead.
Reading a whole corpus on every run would cost minutes, so each dataset keeps a cache, one entry per
file: its (size, mtime_ns, inode) when it was read and its digest. An unchanged file is not read
again; a touched one is read once more and gets its old digest.
"""

from __future__ import annotations

import hashlib
import json
import os

from avemotion.io import atomic_path, read_json

BLOCK = 1 << 20  # bytes read at a time: a clip of any size hashes in constant memory
_caches: dict[str, dict[str, list]] = {}  # cache file -> its entries, read once per process


def file_digest(path) -> str:
    """SHA-1 of the file's whole content."""
    digest = hashlib.sha1()
    with open(path, "rb") as stream:
        while block := stream.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _read_cache(cache_path) -> dict[str, list]:
    """The cache's entries of the form it writes; none from a missing file or one that is not JSON,
    and only the well-formed entries of one edited by hand or by another tool: it is only a shortcut."""
    try:
        entries = read_json(cache_path)
    except (FileNotFoundError, ValueError):  # none yet, or not ours to trust
        return {}
    if not isinstance(entries, dict):
        return {}
    return {path: entry for path, entry in entries.items() if _well_formed(entry)}


def _well_formed(entry) -> bool:
    """Whether a cache entry is [size, mtime_ns, inode, digest]."""
    return (isinstance(entry, list) and len(entry) == 4 and all(type(value) is int for value in entry[:3])
            and isinstance(entry[3], str))  # fmt: skip


def file_digests(paths, cache_path) -> list[str | None]:
    """The content digest of each file (None for a missing one), read only where the cache has no
    entry for the file's current (size, mtime_ns, inode)."""
    if str(cache_path) not in _caches:
        _caches[str(cache_path)] = _read_cache(cache_path)
    cache = _caches[str(cache_path)]
    fresh, digests = {}, []
    for path in map(os.path.abspath, paths):
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            digests.append(None)
            continue
        key = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        entry = cache.get(path)
        if entry is None or entry[:3] != key:
            entry = fresh[path] = cache[path] = key + [file_digest(path)]
        digests.append(entry[3])
    if fresh:
        # Parallel chunk jobs share the file: merge into what is there now rather than overwrite it.
        cache.update(_read_cache(cache_path) | fresh)
        # Every chunk job of a corpus may write it at once (on a cluster they start together); the
        # last rename wins, and entries it lacks are added again by the next run
        try:
            with atomic_path(cache_path, shared=True) as tmp:  # compact: rewritten once per chunk
                tmp.write_text(json.dumps(cache, separators=(",", ":")))
        except FileNotFoundError:
            pass  # a shared file system whose clock runs far from ours took our file for a dead writer's: only a shortcut lost
    return digests


def sources_digest(paths, cache_path) -> str:
    """One digest for a list of files: their paths and contents, in order."""
    paths = [str(path) for path in paths]
    payload = json.dumps(list(zip(paths, file_digests(paths, cache_path))))
    return hashlib.sha1(payload.encode()).hexdigest()
