"""What the searcher (``sweeps/search.py``) buys and costs, in one process with one Ray session.

1. **quickstart, 16 trials, 2 at a time**, run twice on the same prepared cohort and embeddings:
   - ours: ``SweepSearcher`` (proposals in the space's fixed window, repeats answered not run), Tune run
     as ``sweeps.runner`` runs it (idle actors kept while the window waits, trial actors in the workers Ray
     started with the trial code imported: ``sweeps.actors``),
   - free-running: what ``sweeps.runner`` did before it, ``OptunaSearch(TPESampler(seed, n_startup_trials=8))``
     with ``max_concurrent_trials=2`` (proposals as soon as a slot frees, results as they come).
   For each: wall time of the Tune run, configurations computed more than once (trials minus distinct
   configurations, from Tune's results), and utilisation = sum of trial times / (wall x concurrency),
   the share of worker time spent in trials. The window's cost is the utilisation it loses.
   Ours also gives the compute share = sum of trial compute times / (wall x concurrency), a trial's
   compute time being the seconds it spent inside ``evaluate`` (``compute_s``, which
   ``sweep_trial`` reports to Tune): what is left is actor start-up (imports), Tune's scheduling and
   result handling, the record's checkpoint, and workers idle while the other finishes. The runs are
   timed with a callback (``Timeline``), which a ``sweeps run`` without ``--track`` does not give Tune;
   what a callback alone costs Tune's start (it imports MLflow: ``benchmarks/bench_tune_start.py``) is
   paid before the timing.
2. **benchmark24, 24 trials**: distinct configurations among them (the space has 24).

Prints ``RESULT repeats_recomputed N`` (ours, target 0), ``RESULT repeats_recomputed_free N``,
``RESULT wall_window_s``, ``RESULT wall_free_s``, ``RESULT util_window``, ``RESULT util_free``,
``RESULT window_cost`` (1 - util_window / util_free), ``RESULT compute_share`` (ours, quickstart;
target >= 0.8), ``RESULT idle_{start,between,end}_s`` and ``RESULT report_s`` (where the rest went, see
:func:`idle_times`; ``report_s``: the trials' seconds handing per-fold results to Tune) and
``RESULT distinct_24 N``.

Run (about 12 minutes on 2 quiet cores at the defaults; ``--smoke`` 40 patients, about 4)::

    PYTHONPATH=. /work/main/.venv/bin/python benchmarks/bench_search.py [--smoke] [--cpus 2] [--keep] [--home H]

Wall times depend on the machine and its load; repeats and distinct counts do not.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONCURRENCY = 2


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="quickstart on the 40-patient smoke cohort")
    p.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray (default 2)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--home", help="SWEEPS_HOME to reuse (its cohorts and embedding cache; preparing is not timed)")
    return p.parse_args(argv)


def idle_times(events: list[tuple], fit_start: float, fit_end: float) -> dict[str, float]:
    """Worker seconds outside trials, summed over the workers, from the driver's view of each trial
    (``on_trial_start`` to ``on_trial_complete``, by the worker's pid): ``start`` (from the Tune run's
    start to each worker's first trial: actor start-up, and the trial code's imports where a worker has
    not finished them), ``between`` (between two trials of one worker: Tune's hand-over, and the searcher's
    proposal window), ``end`` (from each worker's last trial to the run's end)."""
    spans: dict[int, list[tuple[float, float]]] = {}
    began: dict[str, float] = {}
    pid_of: dict[str, int] = {}
    for t, kind, tid, pid in events:
        if kind == "start":
            began[tid] = t
        elif kind == "result" and pid is not None:
            pid_of[tid] = pid
        elif kind == "complete" and tid in began:
            spans.setdefault(pid_of.get(tid, -1), []).append((began[tid], t))
    out = {"start": 0.0, "between": 0.0, "end": 0.0}
    for runs in spans.values():
        runs.sort()
        out["start"] += runs[0][0] - fit_start
        out["between"] += sum(max(0.0, b[0] - a[1]) for a, b in zip(runs, runs[1:]))
        out["end"] += fit_end - runs[-1][1]
    return out


def tune_run(trainable, searcher, n: int, storage: Path, name: str, param_space=None, keep_actors: bool = False):
    """One Tune run; returns (wall seconds, [(config, time_total_s, compute_s)], idle worker seconds
    (:func:`idle_times`)). ``keep_actors``: as ``sweeps.runner`` runs Tune
    (``sweeps.actors``: idle actors wait for the window, per-fold results in batches)."""
    from sweeps.actors import buffered_results, keep_idle_actors, plain_trial_actors
    from sweeps.runner import local_worker_env

    from ray import tune
    from ray.tune import Callback

    events: list[tuple] = []

    class Timeline(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            events.append((time.time(), "start", trial.trial_id, None))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            events.append((time.time(), "result", trial.trial_id, result.get("pid")))

        def on_trial_complete(self, iteration, trials, trial, **info):
            events.append((time.time(), "complete", trial.trial_id, None))

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=copy.deepcopy(param_space or {}),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=n, max_concurrent_trials=CONCURRENCY,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0, callbacks=[Timeline()],
                                  failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
    )
    t0, s0 = time.perf_counter(), time.time()
    with keep_idle_actors(CONCURRENCY if keep_actors else 0), plain_trial_actors(local_worker_env() if keep_actors else None), \
            buffered_results(keep_actors):
        grid = tuner.fit()
    wall = time.perf_counter() - t0
    idle = idle_times(events, s0, s0 + wall)
    rows = []
    reporting[0] = 0.0
    for r in grid:
        if r.error is not None:
            raise RuntimeError(f"{name}: a trial failed: {r.error}")
        m = r.metrics or {}
        rows.append((r.config, float(m.get("time_total_s", 0.0)), float(m.get("compute_s", 0.0))))
        reporting[0] += float(m.get("report_s", 0.0))
    return wall, rows, idle


reporting = [0.0]  # seconds the trials of the last tune_run spent handing per-fold results to Tune


def recomputed(rows) -> tuple[int, int]:
    """(configurations computed more than once: trials - distinct, distinct configurations)."""
    from sweeps.search import config_key

    keys = Counter(config_key(c) for c, *_ in rows)
    return sum(v - 1 for v in keys.values()), len(keys)


def main(argv=None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from sweeps.runner import prepare, smoke
    from sweeps.search import SweepSearcher
    from sweeps.spec import load_space
    from trainables.trainable import sweep_trial

    # Tune tags a run's callbacks (ray.air._internal.usage.tag_callbacks) as it starts, importing its
    # integrations to recognise them; ray.air.integrations.mlflow imports MLflow, about 0.6 s of the
    # driver's CPU (benchmarks/bench_tune_start.py). Only a run given callbacks pays it: this script's Timeline is one, a `sweeps run` without
    # --track has none. Imported here, untimed, so that the bench's own instrument costs the runs nothing.
    import ray.air.integrations.mlflow  # noqa: F401

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench_search_"))
    os.environ["SWEEPS_HOME"] = str(Path(a.home).resolve()) if a.home else str(tmp / "home")
    try:
        from sweeps.runner import start_ray

        start_ray(None, "127.0.0.1", a.cpus, preload=a.cpus <= CONCURRENCY)  # as `python -m sweeps run` starts it
        spec = load_space("quickstart")
        if a.smoke:
            spec = dataclasses.replace(smoke(spec), num_samples=spec.num_samples)
        n = spec.num_samples
        t0 = time.perf_counter()
        cohort, _fp, handle = prepare(spec, progress=False)
        prep = time.perf_counter() - t0
        trainable = tune.with_parameters(sweep_trial, handle=handle)

        def ours(sp, trainable, name, k):
            run_dir = tmp / "runs" / name
            run_dir.mkdir(parents=True)
            s = SweepSearcher(copy.deepcopy(sp.space), metric=sp.metric, mode=sp.mode, seed=sp.seed, run_dir=run_dir,
                              study_name=name, num_samples=k, repeats=sp.repeats, window=sp.proposal_window)
            s.start()
            wall, rows, idle = tune_run(trainable, s, s.total_trials, tmp / "runs", name, keep_actors=True)
            state = json.loads((run_dir / "search.json").read_text())
            return wall, rows, state, idle

        wall_w, rows_w, state, idle_w = ours(spec, trainable, "quickstart-window", n)
        report_w = reporting[0]
        free = OptunaSearch(metric=spec.metric, mode=spec.mode,  # exactly as sweeps.runner built it before
                            sampler=optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=8))
        wall_f, rows_f, _idle_f = tune_run(trainable, free, n, tmp / "runs", "quickstart-free", param_space=spec.space)

        b24 = load_space("benchmark24")
        _c, _fp, h24 = prepare(b24, progress=False)
        wall_24, rows_24, state_24, _idle_24 = ours(b24, tune.with_parameters(sweep_trial, handle=h24), "benchmark24", 24)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if a.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    util = lambda rows, wall: sum(t for _, t, _c in rows) / (wall * CONCURRENCY)  # noqa: E731
    share = sum(c for *_, c in rows_w) / (wall_w * CONCURRENCY)
    rec_w, dist_w = recomputed(rows_w)
    rec_f, dist_f = recomputed(rows_f)
    rec_24, dist_24 = recomputed(rows_24)
    uw, uf = util(rows_w, wall_w), util(rows_f, wall_f)
    print(f"bench_search: quickstart ({len(cohort.samples)} samples{', smoke cohort' if a.smoke else ''}), {n} trials, "
          f"{CONCURRENCY} at a time, Ray CPUs {a.cpus}, {os.cpu_count()} cores; prepare {prep:.1f}s (not timed below)")
    print(f"{'searcher':<34} {'trials':>6} {'distinct':>8} {'recomputed':>10} {'wall s':>7} {'utilisation':>11}")
    print(f"{'ours (window ' + str(state['window']) + ', repeats answered)':<34} {len(rows_w):>6} {dist_w:>8} {rec_w:>10} "
          f"{wall_w:>7.1f} {uw:>11.2f}")
    print(f"{'free-running OptunaSearch (before)':<34} {len(rows_f):>6} {dist_f:>8} {rec_f:>10} {wall_f:>7.1f} {uf:>11.2f}")
    print(f"ours: {state['repeats_answered']} proposal(s) repeated an evaluated configuration and were answered from it")
    print(f"ours: compute share {share:.3f} (sum of the trials' time inside evaluate {sum(c for *_, c in rows_w):.1f}s / "
          f"(wall {wall_w:.1f}s x {CONCURRENCY})); load average at the end {os.getloadavg()[0]:.1f}")
    print(f"ours: worker seconds outside trials (both workers): {idle_w['start']:.1f} before each one's first trial, "
          f"{idle_w['between']:.1f} between trials, {idle_w['end']:.1f} after each one's last; in trials but outside "
          f"evaluate: {sum(t - c for _, t, c in rows_w):.1f} (of which handing per-fold results to Tune: {report_w:.1f})")
    print(f"benchmark24: {len(rows_24)} trials, {dist_24} distinct, sampler {state_24['sampler']} ({state_24['note']}), "
          f"{wall_24:.1f}s")
    print(f"RESULT repeats_recomputed {rec_w}")
    print(f"RESULT repeats_recomputed_free {rec_f}")
    print(f"RESULT wall_window_s {wall_w:.1f}")
    print(f"RESULT wall_free_s {wall_f:.1f}")
    print(f"RESULT util_window {uw:.3f}")
    print(f"RESULT util_free {uf:.3f}")
    print(f"RESULT window_cost {1 - uw / uf:.3f}")
    print(f"RESULT compute_share {share:.3f}")
    for k, v in idle_w.items():
        print(f"RESULT idle_{k}_s {v:.1f}")
    print(f"RESULT report_s {report_w:.2f}")
    print(f"RESULT distinct_24 {dist_24}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
