"""The Ray Tune function trainable. It lives in an importable package (Ray workers import it by
name) and never runs an image encoder: it reads the embedding cache, memory-mapped, once per worker
process, and keeps the bags in memory across trials when Tune reuses the actor.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import cache
from .pipeline import TrialData, build_bags, evaluate, flatten


@dataclass
class DataHandle:
    """Small and picklable: what every trial needs to find its data. No identifiers beyond the
    adapter's pseudonymous sample and patient keys."""

    sample_ids: list[str]
    y: np.ndarray
    groups: np.ndarray
    class_names: tuple[str, ...]
    modalities: list[str]
    tabular: pd.DataFrame | None
    entries: dict[str, str]  # "encoder|preprocessing" -> cache entry folder
    metric: str
    mode: str
    folds: int
    seed: int
    arms: dict[str, list[str]]
    run_dir: str = ""  # the Tune experiment folder (trial folders are trial_<id> inside it)
    texts: pd.DataFrame | None = None  # raw text columns, "" where empty
    Y: np.ndarray | None = None  # (n, T) class index per target, -1 masked: a multi-target sweep
    targets: list[tuple[str, tuple[str, ...]]] | None = None
    instances: pd.DataFrame | None = None  # finetune sweeps: image rows (sample_id, modality, order, path, frame)


_MEMO: dict[str, TrialData] = {}


def _handle_key(handle: DataHandle) -> str:
    """What the memoised data depends on besides the embeddings: samples, labels, targets, features."""
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    h.update("\0".join(handle.sample_ids).encode())
    h.update(np.ascontiguousarray(handle.y).tobytes())
    if handle.Y is not None:
        h.update(np.ascontiguousarray(handle.Y).tobytes())
    h.update(repr((handle.targets, handle.modalities, handle.class_names)).encode())
    for df in (handle.tabular, handle.texts):
        if df is not None:
            h.update(repr(list(df.columns)).encode())
            h.update(pd.util.hash_pandas_object(df, index=False).values.tobytes())
    return h.hexdigest()


def trial_data(handle: DataHandle, encoder: str | None, preprocessing: str) -> TrialData:
    hk = _handle_key(handle)
    if encoder is None or not handle.modalities:  # a cohort (or trial) without images: tabular and text only
        key = f"no-images|{hk}"
        if key not in _MEMO:
            _MEMO.clear()
            _MEMO[key] = TrialData(handle.y, handle.groups, handle.class_names, [], {}, handle.tabular, handle.texts, Y=handle.Y,
                                   targets=handle.targets)
        return _MEMO[key]
    k = f"{encoder}|{preprocessing}"
    if k not in handle.entries:
        raise KeyError(f"no embeddings for encoder {encoder!r} with preprocessing {preprocessing!r}; embedded: {sorted(handle.entries)}")
    path = handle.entries[k]
    key = f"{path}|{hk}"
    if key not in _MEMO:
        entry = cache.lookup(Path(path).parent, Path(path).name)
        if entry is None:
            raise FileNotFoundError(f"embedding cache entry {path} is gone; rerun the sweep to rebuild it")
        bags = build_bags(entry.embeddings, entry.index, handle.sample_ids, handle.modalities)
        _MEMO.clear()  # one encoder's bags at a time per worker keeps memory flat
        _MEMO[key] = TrialData(handle.y, handle.groups, handle.class_names, handle.modalities, bags, handle.tabular,
                                handle.texts, Y=handle.Y, targets=handle.targets)
    return _MEMO[key]


def _completed_record(config: dict, run_dir: str) -> dict | None:
    """The metrics a previous attempt of this very trial saved, if it finished before a crash.

    Tune snapshots its experiment state every few seconds; a trial that finished after the last
    snapshot is restored as unfinished. Its folder still holds the completed record, so it is
    reported again instead of being recomputed."""
    from ray import tune

    if not run_dir:
        return None
    trial_dir = Path(run_dir) / f"trial_{tune.get_context().get_trial_id()}"
    want = json.loads(json.dumps(config, sort_keys=True, default=str))
    for ck in sorted(trial_dir.glob("checkpoint_*"), reverse=True):
        try:  # a kill while Tune copied the checkpoint can leave a file missing or cut short
            saved = json.loads((ck / "config.json").read_text())
            metrics = json.loads((ck / "metrics.json").read_text())
            np.load(ck / "oof.npz").files
        except (OSError, ValueError, EOFError):
            continue
        if saved == want:
            return metrics
    return None


def sweep_trial(config: dict, handle: DataHandle) -> None:
    import torch
    from ray import tune

    done = _completed_record(config, handle.run_dir)
    if done is not None:
        tune.report(done)
        return

    cpus = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    torch.set_num_threads(max(1, cpus))
    data = trial_data(handle, config.get("encoder"), config.get("preprocessing", "grayscale_norm"))
    results = evaluate(config, data, arms=handle.arms, n_folds=handle.folds, seed=handle.seed)
    flat = flatten(results, handle.metric, handle.mode)
    with tempfile.TemporaryDirectory() as d:
        # the trial's own record (the report reads this, not Tune's optional loggers)
        arrays = {}
        for arm, r in results.items():  # several targets: one array per target, NaN rows where masked
            if isinstance(r["proba"], dict):
                arrays.update({f"{arm}__t__{t}": p.astype(np.float32) for t, p in r["proba"].items()})
            else:
                arrays[arm] = r["proba"].astype(np.float32)
        for arm, r in results.items():  # out-of-fold attention over instances (NaN = padding), for the report's plots
            arrays.update({f"attn__{arm}__{m}": w for m, w in r.get("attention", {}).items()})
        np.savez_compressed(Path(d) / "oof.npz", **arrays)
        (Path(d) / "config.json").write_text(json.dumps(config, sort_keys=True, default=str))
        (Path(d) / "metrics.json").write_text(json.dumps(flat, sort_keys=True))
        tune.report(flat, checkpoint=tune.Checkpoint.from_directory(d))
