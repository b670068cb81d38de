"""The embedding stage on Ray Data: reading, decoding and preprocessing as parallel CPU tasks, the
encoder in an actor pool (a fraction of a GPU per actor where there are GPUs, CPU otherwise).

Same contract and same numbers as :func:`trainables.embed.run_encoder` (a test compares them): rows
in, ``(N - len(quarantine), D)`` float32 out in row order, unreadable slices recorded in
``quarantine`` (row position -> reason) or raised as ``ImageReadError`` naming the file.

Pipeline (one Ray Data dataset over the instance rows)::

    rows (row, path, frame)
      -> map_batches(read_batch)            CPU tasks, one per block of <= 256 rows, as many at a time as the
                                            actors leave CPUs: read, per-slice steps, resize (Preprocessor.resize)
                                            -> (B, 1, S, S) float32 + ok + reason (one grey channel crosses the store)
      -> map_batches(EncoderActor)          actor pool, each holding the model once (GPU fraction, or every CPU
                                            of its node as torch threads): Preprocessor.finish, then the model
      -> (row, embedding, ok, reason)       gathered on the driver and put back in row order

Nothing identifying travels: rows carry a file path and frame number only (the same values the
in-process path reads), and a reason is the redacted text of ``ImageReadError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# pandas and the image readers are imported where used: the encoder actor's fresh process unpickles
# this module and needs neither (its start-up is inside the stage's time)
log = logging.getLogger("sweeps.embed")

READ_BATCH = 256  # slices per read task batch: amortises task overhead and worker start-up
MIN_BLOCK = 16  # the fewest slices in a block when a small cohort is split so that every reader has work


def read_batch(batch: dict[str, np.ndarray], encoder: str, preprocessing: str, input_size: int | None) -> dict[str, np.ndarray]:
    """Read and preprocess one batch of rows, as a read task does (``trainables.embed.read_cost`` times it
    too); unreadable rows come back with ``ok`` False and a reason."""
    from .data.images import ImageReadError, read_slice, read_slice_with_voi
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
    x = np.zeros((len(rows), 1, cfg.height, cfg.width), dtype=np.float32)
    if imgs:
        x[ok] = pre.resize(pre.slices(imgs, vois)).numpy()  # (B_ok, 1, S, S): one grey channel crosses the store
    return {"row": rows, "x": x, "ok": ok, "reason": np.array(reasons, dtype=object)}


def _node_cpus() -> int:
    """The CPUs Ray counts on the node this process runs on (at most the cores this process may use)."""
    import os

    import ray

    here = ray.get_runtime_context().get_node_id()
    cpus = next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == here), 1)
    return max(1, min(int(cpus), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


class EncoderActor:
    """Holds one encoder; embeds preprocessed batches (the ``x`` column) on its device."""

    def __init__(self, encoder: str, preprocessing: str, input_size: int | None, weights: str | None):
        import torch

        from .encoders import Preprocessor, create_encoder, input_config

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            # Ray pins OMP_NUM_THREADS to the actor's 1 CPU; the in-process model uses every core, and so does this
            torch.set_num_threads(_node_cpus())
        self.pre = Preprocessor(preprocessing, input_config(encoder, input_size))
        model, self.dim = create_encoder(encoder, input_size, weights)
        self.model = model.to(self.device).to(memory_format=torch.channels_last).eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        ok = batch["ok"].astype(bool)
        out = np.zeros((len(ok), self.dim), dtype=np.float32)
        if ok.any():
            x = self.pre.finish(torch.from_numpy(np.ascontiguousarray(batch["x"][ok])))  # (B_ok, C, S, S)
            x = x.to(self.device, non_blocking=True)
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.device == "cuda"):
                out[ok] = self.model(x).float().cpu().numpy()
        return {"row": batch["row"], "emb": out, "ok": ok, "reason": batch["reason"]}


# one slice's reading and preprocessing above which parallel readers beat the in-process stage's one
# reader thread (``choose``): 64-px uncompressed slices take under 2.5 ms here (the in-process stage,
# reading in that thread, ran at 410-500 images/s: ``embed_parity``) and 1.06 ms on the H200 box (its
# in-process stage, 945 images/s, waits on that thread), where Ray Data measured slower; 512-px JPEG 2000
# slices take 40.5-42.1 ms here (``embed_heavy_read_ms``) and 512-px RLE ones about 15 ms (65 a second per
# worker, ``decode_scaling``'s runs), where one thread caps the stage at 24-65 images/s whatever the
# model's device. At 5 ms that cap is 200 a second, under the 412-558 that Ray Data reached on the H200
# box even before its fixes.
HEAVY_READ_S = 0.005
BLOCK_READ_S = 1.0  # seconds of reading in one block of heavy slices (``choose``)
# a read task's worker process holds about 400 MB of its own once it has read (torch for the resize, the
# decoders; 684 MB RSS, 398 MB anonymous after a block of 512-px JPEG 2000 slices: ``benchmarks/
# bench_scale.py --only heavy``, ``embed_heavy_reader_*``): one node's heavy readers are capped so that
# together they take at most half its available memory
READER_BYTES = 450 * 2**20
STARTUP_S = 5.0  # the Ray Data stage's start-up: its first embeddings came after 4.7-6.3 s (``embed_ray_first_s``)


def parallel_readers(cpus: int, actors: int, gpu: float) -> int:
    """Concurrent read tasks (half a CPU each) for light slices: the CPUs the encoder actors leave (GPU
    actors take none; on 2 cores one reader, whose worker stays warm). Heavy slices get one per CPU
    (:func:`choose`)."""
    return max(1, cpus - (0 if gpu else actors))


@dataclass(frozen=True)
class Engine:
    """What :func:`worth_it` decided: run on Ray Data or not, why (the log says it), and with how many
    concurrent read tasks (None: :func:`parallel_readers`' default)."""

    ray: bool
    why: str
    readers: int | None = None
    blocks: int | None = None  # read blocks (None: ``run_encoder_ray``'s default, blocks of READ_BATCH slices)


def choose(nodes: int, cpus: int, gpus: float, n_instances: int, read_s: float | None,
           free_bytes: float | None = None) -> Engine:
    """The decision of :func:`worth_it`, from what it found.

    Several nodes: Ray Data (reading spreads over the cluster). One node: only where reading is the
    bottleneck that parallel readers remove, that is, a slice takes at least ``HEAVY_READ_S`` to read and
    preprocess on one core (``read_s``, sampled from the cohort; None when not sampled), the node has
    at least 2 CPUs, and the reading that one reader per CPU would save the in-process stage's one reader
    thread, ``n * read_s * (1 - 1 / cpus)``, is at least twice the stage's start-up (``STARTUP_S``).
    ``free_bytes``: the node's available memory; the readers are then capped at half of it, at
    ``READER_BYTES`` each."""
    if nodes > 1:
        return Engine(True, f"{nodes} nodes: reading spreads over the cluster")
    where = f"one node, {cpus:g} CPUs, {gpus:g} GPUs"
    light = ("the in-process stage measured faster where slices are light to read (Ray Data at 0.81-0.91 of "
             "it on 2 cores, 0.44-0.61 on a 16-core GPU box, 64-px slices)")
    if cpus < 2:
        return Engine(False, f"{where}: nothing to read in parallel")
    if read_s is None:
        return Engine(False, f"{where}, reading not sampled: {light}")
    ms = f"{read_s * 1000:.1f} ms"
    if read_s < HEAVY_READ_S:
        return Engine(False, f"{where}, {ms} to read and preprocess a slice (under {HEAVY_READ_S * 1000:g} ms): {light}")
    # a reader per CPU: decoding, not the model, is the stage's work (two half-CPU readers fit beside a CPU actor)
    k = cpus
    if free_bytes is not None:
        k = max(1, min(k, int(free_bytes / 2 // READER_BYTES)))
    if k < 2:
        return Engine(False, f"{where}, {ms} to read and preprocess a slice, but memory for one reader only")
    saved = n_instances * read_s * (1 - 1 / k)
    if saved < 2 * STARTUP_S:
        return Engine(False, f"{where}, {ms} to read and preprocess a slice, but {n_instances} slices would save "
                             f"about {saved:.0f} s of reading, under twice Ray Data's {STARTUP_S:g} s start-up")
    # blocks of about BLOCK_READ_S of reading each: the encoder starts after the first, and the last ends soon
    rows = int(min(READ_BATCH, max(MIN_BLOCK, BLOCK_READ_S / read_s)))
    return Engine(True, f"{where}, {ms} to read and preprocess a slice: one reader thread would spend about "
                        f"{n_instances * read_s:.0f} s reading; {k} parallel readers", readers=k,
                  blocks=max(1, -(-n_instances // rows)))


def _actors_for(gpus: float) -> tuple[int, float]:
    """(actors, GPU fraction each) for a cluster with ``gpus`` GPUs: see :func:`actor_resources`."""
    if gpus >= 2:
        return int(gpus), 1.0
    if gpus >= 1:
        return 2, 0.5  # two actors on one GPU overlap one's host->device copies with the other's compute
    return 1, 0.0


def worth_it(n_instances: int, sample: Callable[[], float] | None = None) -> Engine:
    """Whether the Ray Data path should run, why, and with how many readers (:func:`choose` decides;
    the log says which ran and why).

    ``sample``: a callable giving the seconds one slice of the cohort takes to read and preprocess on
    one core (``trainables.embed.read_cost``); called on one node of at least 2 CPUs, where the answer
    decides. Measured (``benchmarks/bench_scale.py``; README "Measured figures"): over the quickstart
    cohort's light 64-px slices, Ray Data ran at 0.81-0.91 of the in-process images/s on 2 cores in runs
    alone on the machine (every run pays its encoder actor's start-up, about 5 s), and at 0.44-0.61 on
    an H200 box with 16 cores before its fixes; over heavy 512-px JPEG 2000 slices (``--only heavy``:
    42 ms a slice), with a reader per CPU, at 1.66 times the in-process stage's images/s on 2 cores
    (its one reader thread is the bottleneck there). So one node runs the in-process path unless
    reading is heavy. ``SWEEPS_EMBED_ENGINE=ray`` forces Ray Data anywhere,
    ``=local`` the in-process path.
    """
    import ray

    if not ray.is_initialized():
        return Engine(False, "Ray is not started")
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    res = ray.cluster_resources()
    cpus, gpus = int(res.get("CPU", 0)), float(res.get("GPU", 0))
    read_s = sample() if nodes == 1 and cpus >= 2 and sample is not None else None
    return choose(nodes, cpus, gpus, n_instances, read_s, free_bytes=_available_memory())


def _available_memory() -> int | None:
    """This machine's available memory in bytes (Linux: MemAvailable), None where it cannot be told."""
    import os

    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def actor_resources() -> tuple[int, float]:
    """(actors, GPU fraction each): one actor per GPU, up to 2 sharing one GPU at 0.5 when there is
    a single GPU; on CPU-only clusters one actor (torch already uses every core of its node)."""
    import ray

    return _actors_for(float(ray.cluster_resources().get("GPU", 0)))


def run_encoder_ray(instances: pd.DataFrame, encoder: str, preprocessing: str, *, weights: str | None = None,
                    input_size: int | None = None, batch_size: int = 128, progress: bool = True,
                    quarantine: dict[int, str] | None = None, read_parallelism: int | None = None,
                    readers: int | None = None) -> np.ndarray:
    """:func:`trainables.embed.run_encoder` on Ray Data (Ray must be initialised). ``readers``: concurrent
    read tasks (default :func:`parallel_readers`' for light slices); ``read_parallelism``: read blocks."""
    import pandas as pd
    import ray
    from ray.data import DataContext

    from .data.images import ImageReadError

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.execution_options.preserve_order = False  # order is restored from the row column
    n = len(instances)
    rows = pd.DataFrame({"row": np.arange(n), "path": instances["path"].astype(str).to_numpy(),
                         "frame": instances["frame"].astype(int).to_numpy()})
    if readers is not None and readers < 1:
        raise ValueError(f"readers must be at least 1, got {readers!r}")
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    actors, gpu = actor_resources()
    # concurrent read tasks: for light slices the CPUs the encoder actors leave (one on 2 cores: its worker
    # stays warm and no second process starts torch while the actor does); for heavy ones, as ``choose`` says
    readers = readers or parallel_readers(cpus, actors, gpu)
    # blocks of at most READ_BATCH rows, each one read task's batch: the actor starts on the first while
    # the others are read; and at least four per reader (of MIN_BLOCK rows or more), so that every reader
    # has work on a cohort smaller than readers x READ_BATCH slices
    blocks = min(max(1, n), read_parallelism or max(-(-n // READ_BATCH), min(4 * readers, -(-n // MIN_BLOCK))))
    bounds = np.linspace(0, n, blocks + 1).astype(int)
    ds = ray.data.from_pandas([rows.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])])  # one block per chunk
    # reads ask for half a CPU: unlike the encoder's resources, so Ray Data does not fuse them into the
    # encoder actors (reading then runs beside the model in parallel tasks, not inside the actor)
    ds = ds.map_batches(read_batch, batch_size=None, batch_format="numpy", num_cpus=0.5,
                        compute=ray.data.TaskPoolStrategy(size=readers),
                        fn_kwargs={"encoder": encoder, "preprocessing": preprocessing, "input_size": input_size})
    ds = ds.map_batches(EncoderActor, batch_size=batch_size, batch_format="numpy",
                        compute=ray.data.ActorPoolStrategy(size=actors),
                        num_gpus=gpu or None, num_cpus=0 if gpu else 1,
                        fn_constructor_kwargs={"encoder": encoder, "preprocessing": preprocessing,
                                               "input_size": input_size, "weights": weights})
    out: np.ndarray | None = None
    failed: dict[int, str] = {}
    t0, first = time.perf_counter(), None
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        if out is None:
            first = time.perf_counter() - t0  # the encoder actors' start-up, plus one block read and encoded
            out = np.empty((n, b["emb"].shape[1]), dtype=np.float32)
        out[b["row"]] = b["emb"]
        for r, good, why in zip(b["row"], b["ok"], b["reason"]):
            if not good:
                failed[int(r)] = str(why)
    took = time.perf_counter() - t0
    if out is None:
        out = np.empty((0, 0), dtype=np.float32)
    if failed:
        if quarantine is None:
            first = min(failed)
            raise ImageReadError(str(rows["path"].iat[first]), failed[first])
        quarantine.update(failed)
        out = np.delete(out, sorted(failed), axis=0)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("Ray Data stats of the embedding stage:\n%s", ds.stats())
    log.info("embedding stage ran on Ray Data: %d read blocks, %d at a time, %d encoder actor(s)%s; %.1f s, the first "
             "embeddings after %.1f s (the actors' start-up)", blocks, readers, actors,
             f" at {gpu:g} GPU each" if gpu else " on CPU", took, first if first is not None else float("nan"))
    return out

