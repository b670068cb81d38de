"""The embedding cache: one entry per (cohort content, encoder + weights, preprocessing, input size).

An entry is a folder ``<root>/<key>/`` holding ``embeddings.npy`` (N, D) float32 in the cohort's
instance order, ``index.csv`` (sample_id, modality, order: no paths, nothing from a header),
``meta.json`` and ``quarantine.json``: the instances left out because their image could not be read,
as ``{"path", "frame", "reason"}`` records (``[]`` when none; entries written before it existed read
as ``[]``). It is written into a temporary sibling folder and renamed into place in one step, so a
write interrupted midway (a crash, a kill) leaves no readable entry, only a ``.tmp-*`` folder that
is ignored and swept later.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_dir
from .paths import sweeps_home

CACHE_VERSION = 1
QUARANTINE_FILE = "quarantine.json"


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
    path = Path(root) / key
    if not (path / "meta.json").exists():
        return None
    meta = json.loads((path / "meta.json").read_text())
    emb = np.load(path / "embeddings.npy", mmap_mode="r")
    index = pd.read_csv(path / "index.csv", dtype={"sample_id": str})
    if len(index) != emb.shape[0]:
        raise RuntimeError(f"{path}: cache entry is inconsistent ({len(index)} index rows, {emb.shape[0]} embeddings)")
    quarantine_file = path / QUARANTINE_FILE
    quarantine = json.loads(quarantine_file.read_text()) if quarantine_file.exists() else []
    return Entry(key, path, emb, index, meta, quarantine)


def write(root: Path, key: str, embeddings: np.ndarray, index: pd.DataFrame, meta: dict,
          quarantine: list[dict] | None = None) -> Entry:
    """Write an entry atomically; if another process won the race, keep theirs.

    ``index`` has one row per embedding; ``quarantine`` lists the instances left out of both."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # a concurrent writer of the same key may finish first: theirs is as good (if_exists="keep")
    with atomic_dir(root / key, if_exists="keep", prefix=f".tmp-{key}-", fsync=True) as tmp:
        np.save(tmp / "embeddings.npy", np.ascontiguousarray(embeddings, dtype=np.float32))
        index[["sample_id", "modality", "order"]].to_csv(tmp / "index.csv", index=False)
        (tmp / QUARANTINE_FILE).write_text(json.dumps(quarantine or [], indent=1))
        (tmp / "meta.json").write_text(json.dumps({**meta, "key": key, "created": time.time()}, indent=1))
    entry = lookup(root, key)
    assert entry is not None
    return entry


def sweep_stale(root: Path, older_than_s: float = 3600) -> int:
    """Remove temporary folders left by interrupted writes; returns how many."""
    n = 0
    for p in Path(root).glob(".tmp-*"):
        if time.time() - p.stat().st_mtime > older_than_s:
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n
