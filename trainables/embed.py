"""The only code that runs an image encoder over a cohort: once per (cohort, encoder, weights,
preprocessing, input size), cached on disk. Trials read the cache and never run an encoder.

Batched, ``channels_last``, under ``torch.inference_mode``, on the GPU when there is one (fp16
autocast there), with a background thread reading and preprocessing the next batch while the
model runs the current one.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import cache
from .data.cohort import Cohort
from .data.images import read_slice
from .encoders import ENCODERS, Preprocessor, create_encoder, weights_id

log = logging.getLogger("sweeps.embed")


def cache_key(fingerprint: str, encoder: str, preprocessing: str, weights: str | None = None,
              input_size: int | None = None) -> str:
    size = input_size or ENCODERS[ENCODERS.check(encoder)].input_size
    return cache.make_key(cohort=fingerprint, encoder=encoder, weights=weights_id(weights),
                          preprocessing=preprocessing, input_size=size)


def embed_cohort(cohort: Cohort, encoder: str, preprocessing: str = "grayscale_norm", *, weights: str | None = None,
                 input_size: int | None = None, cache_root: Path | None = None, fingerprint: str | None = None,
                 batch_size: int = 128, device: str | None = None, progress: bool = True) -> cache.Entry:
    """Embeddings of every instance of ``cohort``, from the cache or computed and cached now."""
    root = Path(cache_root or cache.default_root())
    fp = fingerprint or cohort.fingerprint()
    size = input_size or ENCODERS[ENCODERS.check(encoder)].input_size
    key = cache_key(fp, encoder, preprocessing, weights, size)
    hit = cache.lookup(root, key)
    if hit is not None:
        log.info("embedding cache hit: %s / %s -> %s (%d instances, reused)", encoder, preprocessing, key, len(hit.index))
        return hit
    cache.sweep_stale(root)
    emb = run_encoder(cohort.instances, encoder, preprocessing, weights=weights, input_size=size,
                      batch_size=batch_size, device=device, progress=progress)
    meta = {"cohort": cohort.name, "fingerprint": fp, "encoder": encoder, "weights": weights_id(weights),
            "preprocessing": preprocessing, "input_size": size, "n": int(emb.shape[0]), "dim": int(emb.shape[1])}
    entry = cache.write(root, key, emb, cohort.instances, meta)
    log.info("embedding cache written: %s / %s -> %s (%d instances)", encoder, preprocessing, key, len(emb))
    return entry


def run_encoder(instances, encoder: str, preprocessing: str, *, weights=None, input_size: int, batch_size: int = 128,
                device: str | None = None, progress: bool = True) -> np.ndarray:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, dim = create_encoder(encoder, input_size, weights)
    model = model.to(device).to(memory_format=torch.channels_last)
    pre = Preprocessor(preprocessing, input_size)
    paths = instances["path"].tolist()
    frames = instances["frame"].tolist()
    out = np.empty((len(paths), dim), dtype=np.float32)
    starts = list(range(0, len(paths), batch_size))

    def load(start: int) -> torch.Tensor:
        end = min(start + batch_size, len(paths))
        return pre.batch(pre.slices([read_slice(paths[k], frames[k]) for k in range(start, end)]))

    bar = tqdm(total=len(paths), desc=f"embed {encoder}", unit="img", disable=not progress, mininterval=2)
    with ThreadPoolExecutor(1) as pool, torch.inference_mode():
        nxt = pool.submit(load, starts[0]) if starts else None
        for i, start in enumerate(starts):
            x = nxt.result()
            nxt = pool.submit(load, starts[i + 1]) if i + 1 < len(starts) else None
            x = x.to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=device.startswith("cuda")):
                feats = model(x)
            out[start : start + len(x)] = feats.float().cpu().numpy()
            bar.update(len(x))
    bar.close()
    if not np.isfinite(out).all():
        raise FloatingPointError(f"encoder {encoder} produced NaN/inf embeddings; check the preprocessing {preprocessing!r}")
    return out
