"""The Ray Tune function trainable. It lives in an importable package (Ray workers import it by
name) and never runs an image encoder: it reads the embedding cache, memory-mapped, once per worker
process, and keeps the bags in memory across trials when Tune reuses the actor.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import cache
from .handle import DataHandle
from .pipeline import TrialData, build_bags, evaluate, flatten
from .progress import fold_result
from .record import COMPUTE_KEY, REPORT_KEY, find_completed, report_record, result_arrays
from .threads import limit_threads


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


def _bags_from_cache(handle: DataHandle, path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    entry = cache.lookup(Path(path).parent, Path(path).name)
    if entry is None:
        raise FileNotFoundError(f"embedding cache entry {path} is gone; rerun the sweep to rebuild it")
    return build_bags(entry.embeddings, entry.index, handle.sample_ids, handle.modalities)


def share_bags(handle: DataHandle) -> None:
    """Driver side, once per sweep: put each cache entry's bags (per modality ``(n, N_max, D)`` float32
    and a ``(n, N_max)`` mask, in ``handle.sample_ids`` order) into Ray's object store.

    Trials then read them with ``ray.get``: numpy arrays come back zero-copy from the node's shared
    memory (one copy per node, however many trials run there, and read-only, so no trial can change
    another's data), and a trial on any node of a cluster gets them without the driver's filesystem.
    """
    import ray

    handle.shared = {k: ray.put(_bags_from_cache(handle, path)) for k, path in handle.entries.items()}


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
        if handle.shared and k in handle.shared:  # from Ray's object store: zero-copy, read-only, any node
            import ray

            bags = ray.get(handle.shared[k])
            n = {len(X) for X, _ in bags.values()}
            if n and n != {len(handle.sample_ids)}:  # shared for another sample list: never mix them up
                raise RuntimeError(f"shared bags hold {n} samples, the trial {len(handle.sample_ids)}; share after splitting")
        else:
            bags = _bags_from_cache(handle, path)
        _MEMO.clear()  # one encoder's bags at a time per worker keeps memory flat
        _MEMO[key] = TrialData(handle.y, handle.groups, handle.class_names, handle.modalities, bags, handle.tabular,
                                handle.texts, Y=handle.Y, targets=handle.targets)
    return _MEMO[key]


def sweep_trial(config: dict, handle: DataHandle) -> None:
    """The Ray Tune function trainable of frozen sweeps: after each fold but the last, an intermediate
    result (the running out-of-fold metrics, ``folds_done`` < ``n_folds``, no checkpoint:
    :mod:`trainables.progress`); then the final one, ``folds_done == n_folds``, with the trial's record.
    A record already on disk (a resumed trial) is reported again, once, as the final result."""
    from ray import tune

    done = find_completed(config, handle.run_dir)
    if done is not None:
        tune.report(fold_result(done.metrics, handle.folds, handle.folds))
        return

    limit_threads()  # torch, BLAS and OpenMP pools to this trial's CPUs (see trainables.threads)
    data = trial_data(handle, config.get("encoder"), config.get("preprocessing", "grayscale_norm"))

    reporting = [0.0]  # seconds spent handing per-fold results to Tune: not compute

    def on_fold(folds_done: int, n_folds: int, partial: dict) -> None:
        if folds_done < n_folds:  # the last fold's running metrics are the final ones: the record reports them
            t = time.perf_counter()
            tune.report(fold_result(flatten(partial, handle.metric, handle.mode), folds_done, n_folds))
            reporting[0] += time.perf_counter() - t

    t0 = time.perf_counter()
    results = evaluate(config, data, arms=handle.arms, n_folds=handle.folds, seed=handle.seed, on_fold=on_fold)
    compute_s = time.perf_counter() - t0 - reporting[0]  # inside evaluate, less Tune's share: not the actor's overhead
    report_record(config, flatten(results, handle.metric, handle.mode), result_arrays(results),
                  extra={**fold_result({}, handle.folds, handle.folds), COMPUTE_KEY: compute_s, REPORT_KEY: reporting[0]})
