"""The embedding stage on Ray Data: reading, decoding and preprocessing as parallel CPU tasks, the
encoder in an actor pool (a fraction of a GPU per actor where there are GPUs, CPU otherwise).

Same contract and same numbers as :func:`trainables.embed.run_encoder` (a test compares them): rows
in, ``(N - len(quarantine), D)`` float32 out in row order, unreadable slices recorded in
``quarantine`` (row position -> reason) or raised as ``ImageReadError`` naming the file.

Pipeline (one Ray Data dataset over the instance rows)::

    rows (row, path, frame)
      -> map_batches(read_and_preprocess)   CPU tasks, one per block: (B, 3, S, S) float32 + ok + reason
      -> map_batches(EncoderActor)          actor pool, each holding the model once (GPU fraction)
      -> (row, embedding, ok, reason)       gathered on the driver and put back in row order

Nothing identifying travels: rows carry a file path and frame number only (the same values the
in-process path reads), and a reason is the redacted text of ``ImageReadError``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .data.images import ImageReadError

log = logging.getLogger("sweeps.embed")

READ_BATCH = 256  # slices per read task batch: amortises task overhead and worker start-up


def _read_batch(batch: dict[str, np.ndarray], encoder: str, preprocessing: str, input_size: int | None) -> dict[str, np.ndarray]:
    """Read and preprocess one batch of rows; unreadable rows come back with ``ok`` False and a reason."""
    from .data.images import read_slice, read_slice_with_voi
    from .encoders import Preprocessor, input_config

    cfg = input_config(encoder, input_size)
    pre = Preprocessor(preprocessing, cfg)
    read = read_slice_with_voi if pre.needs_voi else (lambda path, frame: (read_slice(path, frame), None))
    rows = batch["row"]
    imgs, vois, ok, reasons = [], [], np.zeros(len(rows), dtype=bool), [""] * len(rows)
    for k, (path, frame) in enumerate(zip(batch["path"], batch["frame"])):
        try:
            img, voi = read(str(path), int(frame))
        except ImageReadError as exc:
            reasons[k] = exc.reason
            continue
        ok[k] = True
        imgs.append(img)
        vois.append(voi)
    x = np.zeros((len(rows), cfg.channels, cfg.height, cfg.width), dtype=np.float32)
    if imgs:
        x[ok] = pre.batch(pre.slices(imgs, vois)).contiguous().numpy()  # (B_ok, 3, S, S)
    return {"row": rows, "x": x, "ok": ok, "reason": np.array(reasons, dtype=object)}


class EncoderActor:
    """Holds one encoder; embeds preprocessed batches (the ``x`` column) on its device."""

    def __init__(self, encoder: str, input_size: int | None, weights: str | None):
        import torch

        from .encoders import create_encoder

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        model, self.dim = create_encoder(encoder, input_size, weights)
        self.model = model.to(self.device).to(memory_format=torch.channels_last).eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        ok = batch["ok"].astype(bool)
        out = np.zeros((len(ok), self.dim), dtype=np.float32)
        if ok.any():
            x = torch.from_numpy(np.ascontiguousarray(batch["x"][ok])).to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.device == "cuda"):
                out[ok] = self.model(x).float().cpu().numpy()
        return {"row": batch["row"], "emb": out, "ok": ok, "reason": batch["reason"]}


def worth_it(n_instances: int) -> tuple[bool, str]:
    """Whether the Ray Data path should run, and why.

    Measured (``benchmarks/bench_gpu.py`` on an H200 with 16 cores, resnet50 at 224 px, 15.7k slices;
    ``benchmarks/bench_scale.py`` on 2 cores): on one node the in-process stage is faster (Ray Data at
    0.44-0.61 of its images/s): every preprocessed batch crosses the object store and each read worker
    starts its own torch. So on one node the in-process path runs; Ray Data runs where reading must
    spread over several nodes. ``SWEEPS_EMBED_ENGINE=ray`` forces it anywhere.
    """
    import ray

    if not ray.is_initialized():
        return False, "Ray is not started"
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    if nodes > 1:
        return True, f"{nodes} nodes: reading spreads over the cluster"
    res = ray.cluster_resources()
    return False, (f"one node ({res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs): the in-process reader is "
                   "faster there (measured)")


def actor_resources() -> tuple[int, float]:
    """(actors, GPU fraction each): one actor per GPU, up to 4 sharing one GPU at 0.25 when there is
    a single GPU; on CPU-only clusters one actor (torch already uses every core of its node)."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0))
    if gpus >= 2:
        return int(gpus), 1.0
    if gpus >= 1:
        return 2, 0.5  # two actors on one GPU overlap one's host->device copies with the other's compute
    return 1, 0.0


def run_encoder_ray(instances: pd.DataFrame, encoder: str, preprocessing: str, *, weights: str | None = None,
                    input_size: int | None = None, batch_size: int = 128, progress: bool = True,
                    quarantine: dict[int, str] | None = None, read_parallelism: int | None = None) -> np.ndarray:
    """:func:`trainables.embed.run_encoder` on Ray Data (Ray must be initialised)."""
    import ray
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.execution_options.preserve_order = False  # order is restored from the row column
    n = len(instances)
    rows = pd.DataFrame({"row": np.arange(n), "path": instances["path"].astype(str).to_numpy(),
                         "frame": instances["frame"].astype(int).to_numpy()})
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    blocks = read_parallelism or max(1, min(-(-n // READ_BATCH), 2 * cpus))
    bounds = np.linspace(0, n, blocks + 1).astype(int)
    ds = ray.data.from_pandas([rows.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])])  # one block per chunk
    # reads ask for half a CPU: unlike the encoder's resources, so Ray Data does not fuse them into the
    # encoder actors (reading then runs beside the model in parallel tasks, not inside the actor)
    ds = ds.map_batches(_read_batch, batch_size=READ_BATCH, batch_format="numpy", num_cpus=0.5,
                        fn_kwargs={"encoder": encoder, "preprocessing": preprocessing, "input_size": input_size})
    actors, gpu = actor_resources()
    ds = ds.map_batches(EncoderActor, batch_size=batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=actors),
                        num_gpus=gpu or None, num_cpus=0 if gpu else 1,
                        fn_constructor_kwargs={"encoder": encoder, "input_size": input_size, "weights": weights})
    out: np.ndarray | None = None
    failed: dict[int, str] = {}
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        if out is None:
            out = np.empty((n, b["emb"].shape[1]), dtype=np.float32)
        out[b["row"]] = b["emb"]
        for r, good, why in zip(b["row"], b["ok"], b["reason"]):
            if not good:
                failed[int(r)] = str(why)
    if out is None:
        out = np.empty((0, 0), dtype=np.float32)
    if failed:
        if quarantine is None:
            first = min(failed)
            raise ImageReadError(str(rows["path"].iat[first]), failed[first])
        quarantine.update(failed)
        out = np.delete(out, sorted(failed), axis=0)
    log.info("embedding stage ran on Ray Data: %d read blocks, %d encoder actor(s)%s", blocks, actors,
             f" at {gpu:g} GPU each" if gpu else " on CPU")
    return out


def bench_parity(cohort, encoder: str = "resnet18", preprocessing: str = "grayscale_norm",
                 n: int = 4000) -> tuple[float, float]:
    """``(Ray Data images/s, in-process images/s)`` over the first ``n`` instances of ``cohort``, measured
    back to back in one process (``benchmarks/bench_scale.py`` prints their ratio as ``embed_parity``).
    Starts a local Ray for the measurement when none is running."""
    import time

    import ray

    from .embed import run_encoder

    inst = cohort.instances.iloc[:n].reset_index(drop=True)
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        run_encoder_ray(inst.iloc[:256], encoder, preprocessing, progress=False)  # actors and workers warm
        t = time.perf_counter()
        run_encoder_ray(inst, encoder, preprocessing, progress=False)
        on_ray = len(inst) / (time.perf_counter() - t)
    finally:
        if started:
            ray.shutdown()
    run_encoder(inst.iloc[:256], encoder, preprocessing, progress=False)
    t = time.perf_counter()
    run_encoder(inst, encoder, preprocessing, progress=False)
    return on_ray, len(inst) / (time.perf_counter() - t)
