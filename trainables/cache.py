"""The embedding cache: one entry per (cohort content, encoder + weights, preprocessing, input size).

An entry is a folder ``<root>/<key>/`` holding ``embeddings.npy`` (N, D) float32 in the cohort's
instance order, ``index.csv`` (sample_id, modality, order: no paths, nothing from a header),
``meta.json`` and ``quarantine.json``: the instances left out because their image could not be read,
as ``{"path", "frame", "reason"}`` records (``[]`` when none; entries written before it existed read
as ``[]``). It is written into a temporary sibling folder and renamed into place in one step, so a
write interrupted midway (a crash, a kill) leaves no readable entry, only a ``.tmp-*`` folder that
is ignored and swept later (at once when the process that made it is gone; see ``trainables.staging``).

An entry found damaged at lookup (a file cut short by a full disk or a kill, e.g. ``mmap length is
greater than file size``) is logged with its folder, removed and reported as absent, so it is rebuilt.
A write that runs out of disk space raises ``DiskFullError`` naming the folder and the bytes needed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .paths import sweeps_home
from . import staging

CACHE_VERSION = 1
QUARANTINE_FILE = "quarantine.json"
log = logging.getLogger("sweeps.cache")


class DiskFullError(OSError):
    """A cache write ran out of space; the message names the folder and how much it needed."""


def default_root() -> Path:
    return sweeps_home() / "cache"


def make_key(**parts) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True)
    return hashlib.blake2b(blob.encode(), digest_size=12).hexdigest()


@dataclass
class Entry:
    key: str
    path: Path
    embeddings: np.ndarray  # (N, D), memory-mapped
    index: pd.DataFrame
    meta: dict
    quarantine: list[dict] = field(default_factory=list)  # instances left out: {"path", "frame", "reason"}


def lookup(root: Path, key: str) -> Entry | None:
    """The entry ``root/key``, or None when there is none or it is damaged (then it is removed, with
    a warning naming it, so that the caller rebuilds it)."""
    path = Path(root) / key
    if not (path / "meta.json").exists():
        return None
    try:
        meta = json.loads((path / "meta.json").read_text())
        emb = np.load(path / "embeddings.npy", mmap_mode="r")
        index = pd.read_csv(path / "index.csv", dtype={"sample_id": str})
        if len(index) != emb.shape[0] or emb.ndim != 2:
            raise ValueError(f"{len(index)} index rows, {emb.shape[0]} embeddings")
        if "n" in meta and meta["n"] != emb.shape[0]:
            raise ValueError(f"meta.json says {meta['n']} embeddings, the file holds {emb.shape[0]}")
        quarantine_file = path / QUARANTINE_FILE
        quarantine = json.loads(quarantine_file.read_text()) if quarantine_file.exists() else []
    except (OSError, ValueError, EOFError, KeyError) as exc:  # cut short by a full disk or a kill
        log.warning("embedding cache entry %s is damaged (%s: %s); removing it, it will be rebuilt",
                    path, type(exc).__name__, exc)
        _remove(path)
        return None
    return Entry(key, path, emb, index, meta, quarantine)


def _remove(path: Path) -> None:
    """Take a damaged entry out of sight in one step (rename), then delete it."""
    gone = path.parent / f".tmp-damaged-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, gone)
    except OSError:  # already removed by a concurrent reader
        return
    shutil.rmtree(gone, ignore_errors=True)


def write(root: Path, key: str, embeddings: np.ndarray, index: pd.DataFrame, meta: dict,
          quarantine: list[dict] | None = None) -> Entry:
    """Write an entry atomically; if another process won the race, keep theirs.

    ``index`` has one row per embedding; ``quarantine`` lists the instances left out of both."""
    root = Path(root)
    arr = np.ascontiguousarray(embeddings, dtype=np.float32)
    need = arr.nbytes + 48 * len(index) + 8192  # the array, the index rows, the small files
    tmp = None
    try:
        tmp = staging.make(root, f".tmp-{key}-")
        np.save(tmp / "embeddings.npy", arr)
        index[["sample_id", "modality", "order"]].to_csv(tmp / "index.csv", index=False)
        (tmp / QUARANTINE_FILE).write_text(json.dumps(quarantine or [], indent=1))
        (tmp / "meta.json").write_text(json.dumps({**meta, "key": key, "created": time.time()}, indent=1))
        staging.release(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.rename(tmp, root / key)
        except OSError:  # the entry appeared meanwhile (a concurrent writer): theirs is as good
            if lookup(root, key) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            try:
                free = f"{shutil.disk_usage(root).free / 2**20:.1f} MiB free there now"
            except OSError:
                free = "free space unknown"
            raise DiskFullError(exc.errno, f"no space left to write embedding cache entry {key} in {root}: it needs "
                                           f"about {need} bytes ({need / 2**20:.1f} MiB), {free}. Free some space or "
                                           "point SWEEPS_HOME at a larger disk, then run again.") from exc
        raise
    entry = lookup(root, key)
    assert entry is not None
    return entry


def sweep_stale(root: Path, older_than_s: float = staging.GRACE_S) -> int:
    """Remove temporary folders left by interrupted writes (``staging.is_debris``); returns how many."""
    return len(staging.sweep(root, ".tmp-*", older_than_s))
