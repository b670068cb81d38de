"""The only code that runs an image encoder over a cohort: once per (cohort, encoder, weights,
preprocessing, input size), cached on disk. Trials read the cache and never run an encoder.

Batched, ``channels_last``, under ``torch.inference_mode``, on the GPU when there is one (fp16
autocast there), with a background thread reading and preprocessing the next batch while the
model runs the current one.

A slice whose image cannot be read (a corrupt or truncated file, pixel data cut short) is
quarantined: recorded as ``{"path", "frame", "reason"}``, left out of the embeddings and of the index
(so its sample's bag has one slice fewer, or the sample has no bag for that modality), and listed in
the entry's ``quarantine.json`` and its meta's ``quarantined`` count. The run goes on; ``strict=True``
raises ``ImageReadError`` naming the file instead. The cache key does not depend on quarantine: it
is the cohort's content fingerprint, which already changes when a file does.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import cache
from .data.cohort import Cohort, CohortError
from .data.images import READER_VERSION, ImageReadError, read_slice, read_slice_with_voi
from .encoders import Preprocessor, create_encoder, input_config, parse_encoder, weights_id

log = logging.getLogger("sweeps.embed")


def cache_key(fingerprint: str, encoder: str, preprocessing: str, weights: str | None = None,
              input_size: int | None = None) -> str:
    """The entry's key: cohort content, encoder name, the weights file's content hash, preprocessing,
    the resolved input configuration (a preset's size alone, as before, so its entries stay valid),
    and the image reader's version."""
    ref = parse_encoder(encoder)
    cfg = input_config(ref, input_size)
    size = {"input_size": cfg.height} if ref.preset else {"input": cfg.as_dict()}
    return cache.make_key(cohort=fingerprint, encoder=encoder, weights=weights_id(weights),
                          preprocessing=preprocessing, reader=READER_VERSION, **size)


def embed_cohort(cohort: Cohort, encoder: str, preprocessing: str = "grayscale_norm", *, weights: str | None = None,
                 input_size: int | None = None, cache_root: Path | None = None, fingerprint: str | None = None,
                 batch_size: int = 128, device: str | None = None, progress: bool = True,
                 strict: bool = False, engine: str = "auto") -> cache.Entry:
    """Embeddings of every readable instance of ``cohort``, from the cache or computed and cached now.

    ``engine``: ``"ray"`` runs the stage on Ray Data (:mod:`trainables.embed_ray`: parallel reading and
    decoding, the encoder in an actor pool), ``"local"`` in this process (one reader thread beside the
    model), ``"auto"`` (default) the Ray path where it pays: a cluster of several nodes, or one node whose
    slices are heavy to read (:func:`read_cost` samples eight; see :func:`trainables.embed_ray.choose`),
    read there by one task per CPU; elsewhere on one node the in-process path, measured faster where
    slices are light (Ray Data at 0.81-0.91 of it on 2 cores). Both give the same embeddings; the log
    says which ran and why, and the entry's meta records it.

    Unreadable slices are quarantined (see the module docstring); with ``strict`` the first one raises
    ``ImageReadError``, also when a cached entry holds quarantined slices. A cohort none of whose
    slices can be read raises ``CohortError``.
    """
    root = Path(cache_root or cache.default_root())
    fp = fingerprint or cohort.fingerprint()
    cfg = input_config(encoder, input_size)
    size = input_size
    key = cache_key(fp, encoder, preprocessing, weights, size)
    hit = cache.lookup(root, key)
    if hit is not None:
        log.info("embedding cache hit: %s / %s -> %s (%d instances, reused)", encoder, preprocessing, key, len(hit.index))
        _report_quarantine(hit, strict)
        return hit
    cache.sweep_stale(root)
    inst = cohort.instances
    bad: dict[int, str] = {}
    if engine not in ("auto", "ray", "local"):
        raise ValueError(f"embedding engine must be auto, ray or local, got {engine!r}")
    readers = blocks = None
    if engine == "auto":
        use_ray, why, readers, blocks = _ray_worth_it(len(inst), lambda: read_cost(inst, encoder, preprocessing, size))
    else:
        use_ray, why = engine == "ray", "asked for"
    log.info("embedding stage: %s path (%s)", "Ray Data" if use_ray else "in-process", why)
    if use_ray:
        from .embed_ray import run_encoder_ray

        emb = run_encoder_ray(inst, encoder, preprocessing, weights=weights, input_size=size, batch_size=batch_size,
                              progress=progress, quarantine=None if strict else bad, readers=readers,
                              read_parallelism=blocks)
    else:
        emb = run_encoder(inst, encoder, preprocessing, weights=weights, input_size=size, batch_size=batch_size,
                          device=device, progress=progress, quarantine=None if strict else bad)
    records = [{"path": str(inst["path"].iat[k]), "frame": int(inst["frame"].iat[k]), "reason": bad[k]} for k in sorted(bad)]
    if records and len(records) == len(inst):
        raise CohortError(f"cohort {cohort.name!r}: none of its {len(inst)} slices could be read; "
                          f"first: {records[0]['path']}: {records[0]['reason']}")
    keep = np.ones(len(inst), dtype=bool)
    keep[sorted(bad)] = False
    meta = {"cohort": cohort.name, "fingerprint": fp, "encoder": encoder, "weights": weights_id(weights),
            "preprocessing": preprocessing, "input_size": cfg.height, "input": cfg.as_dict(),
            "n": int(emb.shape[0]), "dim": int(emb.shape[1]),
            "quarantined": len(records), "engine": "ray" if use_ray else "local"}
    entry = cache.write(root, key, emb, inst[keep], meta, quarantine=records)
    log.info("embedding cache written: %s / %s -> %s (%d instances)", encoder, preprocessing, key, len(emb))
    _report_quarantine(entry, strict)
    return entry


def _ray_worth_it(n: int, sample) -> tuple[bool, str, int | None, int | None]:
    """(run on Ray Data, why, concurrent read tasks, read blocks; None: the defaults):
    :func:`trainables.embed_ray.worth_it`."""
    try:
        from .embed_ray import worth_it
    except ImportError as exc:  # Ray Data's optional pieces missing: the in-process path always works
        return False, f"Ray Data unavailable ({exc})", None, None
    engine = worth_it(n, sample)
    return engine.ray, engine.why, engine.readers, engine.blocks


def read_cost(instances: pd.DataFrame, encoder: str, preprocessing: str, input_size: int | None = None,
              k: int = 8) -> float:
    """Seconds one slice takes to read, decode and preprocess to the encoder's input, on one core: ``k``
    slices spread evenly over ``instances`` read as one Ray Data read task reads a batch
    (:func:`trainables.embed_ray.read_batch`), after one untimed readable slice (it pays the decoder's
    imports); the time over the readable ones. 0.0 when none is readable."""
    from .embed_ray import read_batch

    picks = np.unique(np.linspace(0, len(instances) - 1, k + 1).round().astype(int)) if len(instances) else []
    rows = {"row": np.asarray(picks, dtype=int), "path": instances["path"].astype(str).to_numpy()[picks],
            "frame": instances["frame"].astype(int).to_numpy()[picks]}
    for j in range(len(picks)):  # untimed, up to the first readable slice
        if read_batch({c: v[j:j + 1] for c, v in rows.items()}, encoder, preprocessing, input_size)["ok"][0]:
            break
    rest = {c: v[j + 1:] for c, v in rows.items()} if len(picks) else rows
    t = time.perf_counter()
    ok = int(read_batch(rest, encoder, preprocessing, input_size)["ok"].sum()) if len(rest["row"]) else 0
    return (time.perf_counter() - t) / ok if ok else 0.0


def _report_quarantine(entry: cache.Entry, strict: bool) -> None:
    """Log how many files an entry left out (paths and reasons are in its quarantine.json), or raise
    for the first one under ``strict``."""
    if not entry.quarantine:
        return
    if strict:
        first = entry.quarantine[0]
        raise ImageReadError(first["path"], f"{first['reason']} (cached entry {entry.path} quarantined "
                                            f"{len(entry.quarantine)} slice(s); strict mode)")
    n_files = len({q["path"] for q in entry.quarantine})
    log.warning("%d files quarantined (see %s): %d unreadable slice(s) left out of the embeddings",
                n_files, entry.path / cache.QUARANTINE_FILE, len(entry.quarantine))


def run_encoder(instances: pd.DataFrame, encoder: str, preprocessing: str, *, weights: str | None = None,
                input_size: int | None = None, batch_size: int = 128, device: str | None = None, progress: bool = True,
                quarantine: dict[int, str] | None = None) -> np.ndarray:
    """Embeddings (N, D) of the ``instances`` rows (``path``, ``frame``), in order.

    A slice that cannot be read raises ``ImageReadError`` naming the file, unless ``quarantine`` (an
    empty dict) is given: then its reason is recorded there under the row's position (0-based) and
    the row is left out of the result, which has N - len(quarantine) rows. ``input_size`` overrides
    the encoder's own size (see :func:`~trainables.encoders.input_config`).
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, dim = create_encoder(encoder, input_size, weights)
    model = model.to(device).to(memory_format=torch.channels_last)
    pre = Preprocessor(preprocessing, input_config(encoder, input_size))
    paths = instances["path"].tolist()
    frames = instances["frame"].tolist()
    out = np.empty((len(paths), dim), dtype=np.float32)
    read = read_slice_with_voi if pre.needs_voi else (lambda path, frame: (read_slice(path, frame), None))
    starts = list(range(0, len(paths), batch_size))

    def load(start: int) -> tuple[list[int], torch.Tensor | None, dict[int, str]]:
        """Rows read, their batch tensor, and the rows that could not be read with the reason."""
        rows, imgs, vois, failed = [], [], [], {}
        for k in range(start, min(start + batch_size, len(paths))):
            try:
                img, voi = read(paths[k], frames[k])
            except ImageReadError as exc:
                if quarantine is None:
                    raise
                failed[k] = exc.reason
                continue
            rows.append(k)
            imgs.append(img)
            vois.append(voi)
        return rows, (pre.batch(pre.slices(imgs, vois)) if rows else None), failed

    bar = tqdm(total=len(paths), desc=f"embed {encoder}", unit="img", disable=not progress, mininterval=2)
    with ThreadPoolExecutor(1) as pool, torch.inference_mode():
        nxt = pool.submit(load, starts[0]) if starts else None
        for i, start in enumerate(starts):
            rows, x, failed = nxt.result()
            nxt = pool.submit(load, starts[i + 1]) if i + 1 < len(starts) else None
            if quarantine is not None:
                quarantine.update(failed)
            if x is not None:
                x = x.to(device, non_blocking=True)
                with torch.autocast("cuda", dtype=torch.float16, enabled=device.startswith("cuda")):
                    feats = model(x)
                out[rows] = feats.float().cpu().numpy()
            bar.update(len(rows) + len(failed))
    bar.close()
    if quarantine:
        out = np.delete(out, sorted(quarantine), axis=0)
    if not np.isfinite(out).all():
        raise FloatingPointError(f"encoder {encoder} produced NaN/inf embeddings; check the preprocessing {preprocessing!r}")
    return out
