"""Scale figures of issue 11, printed as ``RESULT <name> <value>`` lines (targets in the issue).

Run from the repository root (the defaults are the issue's sizes; generating the cohorts is the
slow part and is excluded from every timing, and kept in ``--work`` for a rerun)::

    PYTHONPATH=$PWD python benchmarks/bench_scale.py --work /tmp/bench_scale
    PYTHONPATH=$PWD python benchmarks/bench_scale.py --only decode rescan        # some parts only
    PYTHONPATH=$PWD python benchmarks/bench_scale.py --full                      # adds full_size_s (long)

Parts (``--only`` names them; each one failing prints ``RESULT <part> failed`` and the rest go on):

- ``embed``: ``embed_parity``, the Ray Data embedding stage (``trainables.embed_ray``) against
  the in-process stage (``trainables.embed``), images/s on the quickstart cohort, same run
  (``bench_parity`` below); ``embed_ray_first_s``, the Ray Data runs' mean seconds to their first
  embeddings (the encoder actor's start-up, which each run pays, plus one block).
- ``heavy``: ``embed_heavy_ratio``, the same two stages over slices heavy to decode (``--heavy-patients``
  (20) patients of 512-px JPEG 2000, to the encoder's preset input or ``--heavy-input`` px): what the
  auto engine decides on this node (``embed_heavy_auto``, from ``embed_heavy_read_ms``, its sample of one
  slice's reading), and the Ray Data stage as it chose (a reader per CPU) / the in-process stage, images/s;
  ``embed_heavy_reader_{rss,anon}_mb``: a fresh process after reading one block of them as a read task
  does (its anonymous memory is what each reader holds of its own; ``embed_ray.READER_BYTES``).
- ``decode``: ``decode_scaling``, a ``--decode-size`` px (512) cohort written in ``--compression``
  (RLE) by ``python -m sweeps data synth``'s generator: reading, decoding and preprocessing to the
  encoder's input (``Preprocessor('grayscale_norm', 224)``: what the embedding stage does before
  the model; no model), in 2 worker processes against 1, images/s (pools started and warmed before
  the clock starts; the same ``--decode-images`` images each time).
- ``rescan``: second cohort load / first, wall time, with the header index (a fresh SWEEPS_HOME:
  the first load reads every header, in parallel, the second reads the index), ``--rescan-patients``
  (300) patients.
- ``trial``: ``trial_growth``, the time of one trial (``trial_data`` + ``evaluate`` of a fixed
  quickstart configuration, both pooling arms, 5 folds, timed inside a fresh worker process as a Tune
  worker runs its first trial, one torch thread; the least of ``--repeats`` runs) at ``--large``
  (1,200) patients / at ``--small`` (300); and ``trial_memory``, the memory of 2 concurrent trial worker
  processes / of 1, at ``--large`` patients. As in a sweep: a local Ray session (2 CPUs), the
  driver puts the bags into its object store once (``trainables.trainable.share_bags``), and each
  worker is a fresh Ray actor of one CPU (importing what a Tune worker imports) that runs that trial
  once, reading the bags zero-copy from the store (``trial_data``); the parent samples the workers'
  proportional set size (PSS: shared pages, Ray's object store and libraries, split between the
  processes that map them, the driver included, so it shows what a second worker adds) every 0.1 s
  and keeps the peak of the sum. ``trial_memory_rss`` is the same ratio of summed peak RSS (each
  worker's own high-water mark; shared pages counted in each). ``trial_memory_idle_pss_mb_N``: the
  workers' summed PSS once started and imported, before the trial (a process with Python, torch and
  Ray, whatever the data); ``trial_memory_above_idle``: what the trials add above that, 2 / 1. The
  embedding stage for these cohorts runs before, untimed.
- ``full`` (only with ``--full``): ``full_size_s``, 3,000 patients (about 150k slices): cohort load +
  embedding stage + 8 trials through ``python -m sweeps run quickstart`` on a fresh SWEEPS_HOME,
  seconds, and ``full_size_peak_pss_mb``: the peak of the PSS summed over the command's process tree
  (the driver, and the Ray session it starts: raylet, object store, trial workers), sampled each second.

Also printed: the machine's CPU count and load average before each part, since on a shared
machine every figure depends on them.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# the fixed trial configuration timed by `trial` (a quickstart configuration, both pooling arms)
TRIAL_CONFIG = {"encoder": "resnet18", "preprocessing": "grayscale_norm", "pca_dim": 32,
                "pooling": {"attention": {"hidden_dim": 32}}, "fusion": "concat", "tabular": True,
                "sampling": "none", "head": "logreg"}


def result(name: str, value) -> None:
    print(f"RESULT {name} {value}", flush=True)


def note(text: str) -> None:
    print(f"# {text}", flush=True)


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpus} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"


def part(fn):
    def wrapped(*a, **k):
        note(f"{fn.__name__}: start ({machine()})")
        t = time.perf_counter()
        try:
            fn(*a, **k)
        except Exception:  # noqa: BLE001 - a benchmark part reports and the others go on
            traceback.print_exc()
            result(fn.__name__, "failed")
        note(f"{fn.__name__}: {time.perf_counter() - t:.1f} s")

    wrapped.__name__ = fn.__name__
    return wrapped


def cohort_dir(work: Path, n_patients: int, size: int = 64, compression: str | None = None) -> Path:
    """The synthetic cohort with these settings under ``work`` (generated once, untimed)."""
    from trainables.data import synthetic

    out = work / "cohorts" / f"n{n_patients}-s{size}-{compression or 'none'}"
    if not (out / "COMPLETE").exists():
        t = time.perf_counter()
        shutil.rmtree(out, ignore_errors=True)
        synthetic.generate(out, seed=0, n_patients=n_patients, size=size, compression=compression)
        note(f"generated {out.name} in {time.perf_counter() - t:.0f} s")
    return out


def load(root: Path, n_patients: int, size: int = 64, compression: str | None = None):
    from trainables.data import synthetic

    return synthetic.load(root, seed=0, n_patients=n_patients, size=size, compression=compression or "none")


# -- embed_parity: the Ray Data stage against the in-process one ---------------------------------
def bench_parity(cohort, encoder: str = "resnet18", preprocessing: str = "grayscale_norm", n: int | None = None,
                 rounds: int = 1, input_size: int | None = None, ray_options: dict | None = None,
                 tag: str = "embed_parity") -> tuple[float, float]:
    """``(Ray Data images/s, in-process images/s)`` over the first ``n`` instances of ``cohort`` (all of
    them by default: the issue's figure is over the quickstart cohort), measured in one process
    (``embed_parity`` is their ratio). ``ray_options``: the Ray Data stage's ``readers`` and
    ``read_parallelism`` (as the auto engine chose them, for ``heavy``); ``input_size``: the encoder's.

    Each of ``rounds`` runs the two stages in the order Ray Data, in-process, in-process, Ray Data, so
    that a load change on a shared machine weighs on both alike; each rate is images over the summed
    time of its runs, and every run is printed (``#`` lines). Each run includes its start-up, as a real
    stage pays it (for Ray Data: the encoder actor's fresh process, its torch and model). Both are
    warmed first on 256 instances (imports, the read tasks' workers, the page cache). Starts a local Ray
    for the measurement when none is running (it stays up during the in-process runs, as in a sweep)."""
    import os
    import time

    import ray

    from trainables.embed import run_encoder
    from trainables.embed_ray import run_encoder_ray

    inst = cohort.instances.iloc[:n].reset_index(drop=True)
    firsts, elog = _FirstEmbeddings(), logging.getLogger("sweeps.embed")
    level = elog.level
    elog.addHandler(firsts)
    elog.setLevel(logging.INFO)
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    stages = {"ray": lambda x: run_encoder_ray(x, encoder, preprocessing, input_size=input_size, progress=False,
                                               **(ray_options or {})),
              "in-process": lambda x: run_encoder(x, encoder, preprocessing, input_size=input_size, progress=False)}
    spent = dict.fromkeys(stages, 0.0)
    try:
        for stage in stages.values():
            stage(inst.iloc[:256])
        for _ in range(rounds):
            for name in ("ray", "in-process", "in-process", "ray"):
                t = time.perf_counter()
                stages[name](inst)
                took = time.perf_counter() - t
                spent[name] += took
                first = f", first embeddings after {firsts.seconds[-1]:.1f} s" if name == "ray" and firsts.seconds else ""
                print(f"# {tag} run: {name} {len(inst) / took:.1f} images/s ({len(inst)} images, {took:.1f} s{first}; "
                      f"load average {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        elog.removeHandler(firsts)
        elog.setLevel(level)
        if started:
            ray.shutdown()
    runs = 2 * rounds * len(inst)
    timed = firsts.seconds[1:]  # the first is the warm-up's
    if timed:
        result("embed_ray_first_s", f"{sum(timed) / len(timed):.2f}")  # mean seconds to the first embeddings
    return runs / spent["ray"], runs / spent["in-process"]


class _FirstEmbeddings(logging.Handler):
    """Collects, from the Ray Data stage's closing log line, the seconds until its first embeddings
    (the encoder actors' start-up, plus one block read and encoded): where Ray Data's time goes."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        m = re.search(r"first embeddings after ([0-9.]+) s", record.getMessage())
        if m:
            self.seconds.append(float(m.group(1)))


@part
def embed(work: Path, a) -> None:
    os.environ["SWEEPS_HOME"] = str(work / "home-embed")
    cohort = load(cohort_dir(work, a.small), a.small)
    ray_ips, inproc_ips = bench_parity(cohort)
    result("embed_ray_images_per_s", f"{ray_ips:.1f}")
    result("embed_inprocess_images_per_s", f"{inproc_ips:.1f}")
    result("embed_parity", f"{ray_ips / inproc_ips:.3f}")


def _reader_memory(paths: list[str], frames: list[int], input_size: int | None) -> tuple[int, int]:
    """(RSS, anonymous bytes) of a fresh process that has read one batch as a Ray Data read task does
    (Ray imported, ``read_batch``): what each heavy reader's worker holds."""
    import numpy as np
    import ray  # noqa: F401 - a read task's worker has Ray imported

    from trainables.embed_ray import read_batch

    read_batch({"row": np.arange(len(paths)), "path": np.array(paths), "frame": np.array(frames)},
                "resnet18", "grayscale_norm", input_size)
    with open("/proc/self/smaps_rollup") as f:
        got = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.startswith(("Rss:", "Anonymous:"))}
    return got["Rss"], got["Anonymous"]


@part
def heavy(work: Path, a) -> None:
    """Slices heavy to decode (``--heavy-patients`` patients of 512-px JPEG 2000): what the auto engine
    decides on this node (``trainables.embed_ray.worth_it``, from ``read_cost``'s sample), then the Ray
    Data stage as it chose (a reader per CPU, blocks of about a second of reading) against the
    in-process stage, images/s, same run (``embed_heavy_ratio``: Ray Data / in-process)."""
    import ray

    from trainables.embed import read_cost
    from trainables.embed_ray import worth_it

    root = cohort_dir(work, a.heavy_patients, 512, "jpeg2000")
    os.environ["SWEEPS_HOME"] = str(work / "home-heavy")
    cohort = load(root, a.heavy_patients, 512, "jpeg2000")
    inst = cohort.instances
    ray.init(address="local", include_dashboard=False, log_to_driver=False)  # every core, as a user's one node
    try:
        took = read_cost(inst, "resnet18", "grayscale_norm", a.heavy_input)
        engine = worth_it(len(inst), lambda: took)
        note(f"{len(inst)} slices of 512 px, JPEG 2000, to {a.heavy_input or 'the preset'} px; auto engine: "
             f"{'Ray Data' if engine.ray else 'in-process'} ({engine.why})")
        result("embed_heavy_read_ms", f"{took * 1000:.1f}")
        result("embed_heavy_auto", "ray" if engine.ray else "in-process")
        with multiprocessing.get_context("spawn").Pool(1) as pool:  # a reader's worker, after one block
            rss, anon = pool.apply(_reader_memory, (inst["path"].astype(str).tolist()[:25],
                                                    inst["frame"].astype(int).tolist()[:25], a.heavy_input))
        result("embed_heavy_reader_rss_mb", f"{rss / 2**20:.0f}")
        result("embed_heavy_reader_anon_mb", f"{anon / 2**20:.0f}")  # its own memory (READER_BYTES: 450 MB)
        ray_ips, inproc_ips = bench_parity(cohort, input_size=a.heavy_input, tag="embed_heavy",
                                           ray_options={"readers": engine.readers, "read_parallelism": engine.blocks})
    finally:
        ray.shutdown()
    result("embed_heavy_ray_images_per_s", f"{ray_ips:.1f}")
    result("embed_heavy_inprocess_images_per_s", f"{inproc_ips:.1f}")
    result("embed_heavy_ratio", f"{ray_ips / inproc_ips:.3f}")


# -- decode_scaling --------------------------------------------------------------------------------
def _decode_init() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker: the scaling measured is the workers'


def _decode_batch(paths: list[str]) -> int:
    """Read, decode and preprocess ``paths`` as the embedding stage does before its model."""
    from trainables.data.images import read_slice
    from trainables.encoders import Preprocessor

    pre = Preprocessor("grayscale_norm", 224)
    x = pre.batch(pre.slices([read_slice(p) for p in paths], None))
    assert x.shape[0] == len(paths)
    return len(paths)


@part
def decode(work: Path, a) -> None:
    root = cohort_dir(work, a.decode_patients, a.decode_size, a.compression)
    os.environ["SWEEPS_HOME"] = str(work / "home-decode")
    paths = load(root, a.decode_patients, a.decode_size, a.compression).instances["path"].tolist()[: a.decode_images]
    batches = [paths[i:i + 16] for i in range(0, len(paths), 16)]
    note(f"{len(paths)} images of {a.decode_size} px, {a.compression}, batches of 16")
    rates = {}
    ctx = multiprocessing.get_context("spawn")
    for workers in (1, 2):
        with ctx.Pool(workers, initializer=_decode_init) as pool:
            pool.map(_decode_batch, [paths[:2]] * workers, chunksize=1)  # imports and first read, untimed
            t = time.perf_counter()
            done = sum(pool.map(_decode_batch, batches, chunksize=1))
            rates[workers] = done / (time.perf_counter() - t)
        result(f"decode_images_per_s_{workers}", f"{rates[workers]:.1f}")
    result("decode_scaling", f"{rates[2] / rates[1]:.3f}")


# -- rescan -----------------------------------------------------------------------------------------
@part
def rescan(work: Path, a) -> None:
    from trainables.data import header_index

    root = cohort_dir(work, a.rescan_patients)
    home = work / "home-rescan"
    shutil.rmtree(home, ignore_errors=True)
    os.environ["SWEEPS_HOME"] = str(home)
    times = []
    for _ in range(2):
        t = time.perf_counter()
        cohort = load(root, a.rescan_patients)
        times.append(time.perf_counter() - t)
    index = header_index.scan(root / "images", cohort.instances["path"].tolist())
    assert index.n_read == 0, "the index was not reused"
    note(f"{len(cohort.instances)} slices; index file {header_index.index_path(root / 'images').stat().st_size} bytes")
    result("rescan_first_s", f"{times[0]:.2f}")
    result("rescan_second_s", f"{times[1]:.2f}")
    result("rescan", f"{times[1] / times[0]:.3f}")


# -- trial_growth, trial_memory ---------------------------------------------------------------------
def _handle(work: Path, n_patients: int):
    """The DataHandle of the quickstart space on an ``n_patients`` cohort, its embeddings cached."""
    from dataclasses import replace

    from sweeps.runner import prepare
    from sweeps.spec import load_space

    root = cohort_dir(work, n_patients)
    os.environ["SWEEPS_HOME"] = str(work / "home-trial")
    spec = load_space("quickstart")
    spec = replace(spec, cohort_options={**spec.cohort_options, "n_patients": n_patients, "root": str(root)})
    t = time.perf_counter()
    _, _, handle = prepare(spec, progress=False)
    note(f"{n_patients} patients: cohort + embeddings ready in {time.perf_counter() - t:.0f} s (untimed)")
    return handle


def one_trial(handle) -> dict:
    """What a Tune worker does for one trial, without Tune: its data, then ``evaluate``."""
    from trainables.pipeline import evaluate, flatten
    from trainables.trainable import trial_data

    data = trial_data(handle, TRIAL_CONFIG["encoder"], TRIAL_CONFIG["preprocessing"])
    results = evaluate(TRIAL_CONFIG, data, arms=handle.arms, n_folds=handle.folds, seed=handle.seed)
    return flatten(results, handle.metric, handle.mode)


class _TrialWorker:
    """One trial worker: a Ray actor of one CPU, as Tune runs a trial (Ray gives it OMP_NUM_THREADS=1;
    torch, BLAS and OpenMP get one thread each, as ``sweep_trial`` sets them: ``limit_threads``). Its first ``run`` is the worker's first trial:
    ``trial_data`` reads the bags that ``share_bags`` put into the object store (zero-copy), then
    ``evaluate``."""

    def pid(self) -> int:
        import trainables.trainable  # noqa: F401 - what a Tune worker has imported before its trial starts

        return os.getpid()

    def run(self, handle) -> tuple[float, int]:
        from trainables.threads import limit_threads

        limit_threads(1)
        t = time.perf_counter()
        one_trial(handle)
        return time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _pss(pid: int) -> int:
    """Proportional set size of ``pid`` in bytes (Linux /proc/PID/smaps_rollup), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _concurrent(handle, n: int) -> tuple[int, int, float, int]:
    """Run ``n`` trial workers (Ray actors, fresh processes) at once on the shared bags of ``handle``;
    (peak of their summed PSS, sum of their peak RSS, longest trial s, their summed PSS once started
    and imported, before the trial)."""
    import ray

    actors = [ray.remote(num_cpus=1)(_TrialWorker).remote() for _ in range(n)]
    try:
        pids = ray.get([a.pid.remote() for a in actors])  # started and imported: the clock starts after
        time.sleep(0.5)
        idle = sum(_pss(p) for p in pids)
        pending = [a.run.remote(handle) for a in actors]
        peak = 0
        while True:
            peak = max(peak, sum(_pss(p) for p in pids))
            done, _ = ray.wait(pending, num_returns=len(pending), timeout=0.1)
            if len(done) == len(pending):
                break
        got = ray.get(pending)
    finally:
        for a in actors:
            ray.kill(a)
    return peak, sum(r for _, r in got), max(s for s, _ in got), idle


@part
def trial(work: Path, a) -> None:
    """Trials as a sweep runs them: a Ray session, the bags put into its object store once by the
    driver (``trainables.trainable.share_bags``, as ``sweeps.runner.share`` does), trial workers
    reading them from there."""
    import ray

    from trainables.trainable import share_bags

    times, pss, rss, idle = {}, {}, {}, {}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for n in (a.small, a.large):
            handle = _handle(work, n)
            share_bags(handle)
            runs = [_concurrent(handle, 1) for _ in range(a.repeats)]
            times[n] = min(r[2] for r in runs)
            note(f"{n} patients: trial times {', '.join(f'{r[2]:.1f}' for r in runs)} s (the least is kept)")
            result(f"trial_s_{n}", f"{times[n]:.2f}")
            if n == a.large:
                pss[1], rss[1], idle[1] = max(r[0] for r in runs), max(r[1] for r in runs), max(r[3] for r in runs)
        result("trial_growth", f"{times[a.large] / times[a.small]:.3f}")
        note(f"linear growth would be {a.large / a.small:.1f}; the target is 1.2x that")
        pss[2], rss[2], longest, idle[2] = _concurrent(handle, 2)
        note(f"2 workers at once: longest trial {longest:.1f} s")
    finally:
        ray.shutdown()
    for n in (1, 2):
        result(f"trial_memory_pss_mb_{n}", f"{pss[n] / 2**20:.0f}")
        result(f"trial_memory_rss_mb_{n}", f"{rss[n] / 2**20:.0f}")
        result(f"trial_memory_idle_pss_mb_{n}", f"{idle[n] / 2**20:.0f}")  # the workers before their trial
    result("trial_memory", f"{pss[2] / pss[1]:.3f}")
    result("trial_memory_rss", f"{rss[2] / rss[1]:.3f}")
    # what the trials add to their started workers (bags read, fold copies, lazy imports), 2 / 1
    result("trial_memory_above_idle", f"{(pss[2] - idle[2]) / (pss[1] - idle[1]):.3f}")


# -- full_size_s --------------------------------------------------------------------------------------
@part
def full(work: Path, a) -> None:
    root = cohort_dir(work, a.full_patients)
    home = work / "home-full"
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "SWEEPS_HOME": str(home), "SWEEPS_REPORTS": str(home / "reports")}
    cmd = [sys.executable, "-m", "sweeps", "run", "quickstart", "--trials", "8", "--no-progress", "--name", "full",
           "--data", str(root), "--option", f"n_patients={a.full_patients}"]
    note(" ".join(cmd))
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:  # the PSS summed over the command's process tree (driver, raylet, Ray workers)
        while proc.poll() is None:
            peak[0] = max(peak[0], sum(_pss(pid) for pid in _tree(proc.pid)))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    sampler.join()
    if proc.returncode != 0:
        print(out[-3000:], err[-3000:])
        raise RuntimeError(f"the run exited with {proc.returncode}")
    result("full_size_s", f"{wall:.0f}")
    result("full_size_peak_pss_mb", f"{peak[0] / 2**20:.0f}")
    for line in err.splitlines():
        if "cohort synthetic" in line or "embedding cache" in line or "sweep full" in line:
            note(line.strip())


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc/PID/task/*/children (Linux)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


PARTS = {"embed": embed, "heavy": heavy, "decode": decode, "rescan": rescan, "trial": trial, "full": full}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", help="folder for the generated cohorts and homes (default: a temporary one, removed)")
    p.add_argument("--only", nargs="*", choices=sorted(PARTS), help="run only these parts")
    p.add_argument("--full", action="store_true", help="also the 3,000-patient run (long)")
    p.add_argument("--small", type=int, default=300)
    p.add_argument("--large", type=int, default=1200)
    p.add_argument("--rescan-patients", type=int, default=300)
    p.add_argument("--decode-patients", type=int, default=6)
    p.add_argument("--decode-size", type=int, default=512)
    p.add_argument("--decode-images", type=int, default=400)
    p.add_argument("--compression", default="rle")
    p.add_argument("--full-patients", type=int, default=3000)
    p.add_argument("--heavy-patients", type=int, default=20, help="patients of the 512-px JPEG 2000 cohort (heavy)")
    p.add_argument("--heavy-input", type=int, default=None, help="encoder input size for heavy (default: the preset's)")
    p.add_argument("--repeats", type=int, default=2, help="timed trials at each size; the least is kept (default 2)")
    a = p.parse_args(argv)
    chosen = a.only or [n for n in PARTS if n != "full" or a.full]
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="bench_scale-"))
    work.mkdir(parents=True, exist_ok=True)
    note(f"machine: {machine()}; work folder {work}")
    try:
        for name in chosen:
            PARTS[name](work, a)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
