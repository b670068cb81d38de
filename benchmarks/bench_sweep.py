"""Wall time of one small sweep run the platform's way against the naive way, in one process.

- ours: ``sweeps.runner.prepare(spec)`` (cohort load + the encoder run ONCE, written to the embedding
  cache) and then a Ray Tune run of ``trainables.trainable.sweep_trial`` (trials read the cached
  embeddings). Timed twice: with a cold cache (fresh SWEEPS_HOME) and again with the cache warm
  (same SWEEPS_HOME: prepare only reloads the cohort and hits the cache).
- naive: a Ray Tune run of ``benchmarks/naive_trainable.py``'s ``naive_trial``, which loads the
  cohort and runs the encoder over every instance INSIDE every trial (what a seed notebook does per
  experiment), then the same ``evaluate`` / ``flatten``. Own fresh SWEEPS_HOME.

Both Tune runs are built identically: the ``benchmark24`` search space (``search_spaces/benchmark24.py``,
24 distinct configurations, its cohort size overridden by ``--patients``), the platform's searcher
(``sweeps.search.SweepSearcher``, seed spec.seed=0, as ``sweeps.runner`` builds it: with ``--trials 24``
it evaluates each of the 24 configurations once, the same 24 both ways), the same number of trials,
max_concurrent_trials=2, reuse_actors=True, 1 CPU per trial, verbose=0. The synthetic cohort is
generated once beforehand into a shared temporary folder and read by both; its generation is
excluded from both timings, and so is ``ray.init``. Each way runs in its own Ray, started as ``python -m
sweeps run`` starts it (``sweeps.runner.start_ray``: dashboard on loopback, worker processes importing the
trial code as they start, so that work overlaps what follows, as in a real run), and Tune runs as
``sweeps.runner`` runs it (``sweeps.actors.keep_idle_actors``).
Since the encoder is deterministic (seeded random init), matched configs must give the same metrics:
the script checks that both ways ran the same configs and prints the largest f1_macro difference.

For ours it also prints the compute share of each Tune run: the sum of the trials' compute times (the
seconds each spent inside ``evaluate``, ``compute_s`` as ``sweep_trial`` reports it) / (the run's wall
time x concurrency); the rest is actor start-up, Tune's own work and workers idle at the end. The
issue's ``compute_share`` target is measured on the quickstart (``benchmarks/bench_search.py``).

Run (from anywhere; about 4 minutes on 2 quiet cores at the defaults, up to ~7 when the machine is busy)::

    /work/venv/bin/python /work/main/benchmarks/bench_sweep.py            # 8 trials, 80 patients
    /work/venv/bin/python /work/main/benchmarks/bench_sweep.py --smoke    # 2 trials, 20 patients: checks the script

Flags: ``--trials N`` (default 8), ``--patients P`` (default 80), ``--smoke``, ``--cpus`` (Ray CPUs,
default 2), ``--keep`` (keep the temporary folder).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# before ray is imported: workers inherit the driver's environment, so they can import
# `trainables` (ours) and `naive_trainable` (naive) by name
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

SPACE = "benchmark24"
CONCURRENCY = 2
COMPARED = ("f1_macro", "auc_macro")  # metrics compared between matched configs (best arm and every arm)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--patients", type=int, default=80)
    p.add_argument("--smoke", action="store_true", help="2 trials, 20 patients: check that the script works")
    p.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray (default 2)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (cohort, homes, Tune runs)")
    a = p.parse_args(argv)
    if a.smoke:
        a.trials, a.patients = 2, 20
    return a


def fresh_ray(cpus: int) -> float:
    """Shut down Ray if it runs, start a local one as ``sweeps.runner.start_ray`` does (dashboard on
    loopback, worker processes importing the trial code as they start); returns seconds taken."""
    import ray

    from sweeps.runner import start_ray

    if ray.is_initialized():
        ray.shutdown()
    t0 = time.perf_counter()
    start_ray(None, "127.0.0.1", cpus, preload=cpus <= CONCURRENCY)  # as `python -m sweeps run` does
    return time.perf_counter() - t0


def tune_run(trainable, spec, n: int, storage: Path, name: str):
    """One Tune run, built the same way for both ways; returns (wall seconds, ResultGrid)."""
    from ray import tune

    from sweeps.search import SweepSearcher

    (storage / name).mkdir(parents=True, exist_ok=True)
    searcher = SweepSearcher(copy.deepcopy(spec.space), metric=spec.metric, mode=spec.mode, seed=spec.seed,
                             run_dir=storage / name, study_name=name, num_samples=n, repeats=spec.repeats,
                             window=spec.proposal_window)
    searcher.start()
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=searcher.total_trials,
                                    max_concurrent_trials=CONCURRENCY,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
    )
    from sweeps.actors import buffered_results, keep_idle_actors, plain_trial_actors
    from sweeps.runner import local_worker_env

    t0 = time.perf_counter()
    with keep_idle_actors(CONCURRENCY), plain_trial_actors(local_worker_env()), \
            buffered_results(True):  # as sweeps.runner runs Tune (no scheduler)
        grid = tuner.fit()
    return time.perf_counter() - t0, grid


def trials_of(grid, label: str) -> list[dict]:
    """[{"key", "config", "metrics", "time"}] in trial creation order; raises if any trial failed or did not finish."""
    rows = []
    for r in grid:
        if r.error is not None:
            raise RuntimeError(f"{label}: a trial failed: {r.error}")
        m = r.metrics or {}
        if not any(k in m for k in COMPARED):  # stopped before it reported (Ctrl-C): no ratio from a cut-short run
            raise RuntimeError(f"{label}: a trial did not finish ({r.path}); the run was interrupted")
        tag = str(m.get("experiment_tag", "")).split("_", 1)[0]  # "<creation counter>_<config>"
        rows.append({"idx": int(tag) if tag.isdigit() else len(rows),
                     "key": json.dumps(r.config, sort_keys=True, default=str), "config": r.config, "metrics": m,
                     "time": float(m.get("time_total_s", float("nan")))})
    rows.sort(key=lambda x: x["idx"])
    return rows


def metric_values(m: dict) -> dict[str, float]:
    """The compared metrics of one trial: the objective's best-arm values and every arm's."""
    out = {}
    for k, v in m.items():
        if any(k == c or (k.startswith("arm/") and k.endswith("/" + c)) for c in COMPARED):
            out[k] = float(v)
    return out


def compare(a: list[dict], b: list[dict]) -> dict:
    """Same configs? Largest |difference| of each compared metric between matched trials (by position
    when the two config sequences are identical, else by config), for the best arm ("objective")
    and for each arm."""
    same_seq = [x["key"] for x in a] == [x["key"] for x in b]
    same_set = Counter(x["key"] for x in a) == Counter(x["key"] for x in b)
    if same_seq:
        pairs = list(zip(a, b))
    else:
        by_key = {}
        for x in b:
            by_key.setdefault(x["key"], x)
        pairs = [(x, by_key[x["key"]]) for x in a if x["key"] in by_key]
    diffs: dict[tuple[str, str], float] = {}  # (arm or "objective", metric) -> max |d|
    for x, y in pairs:
        mx, my = metric_values(x["metrics"]), metric_values(y["metrics"])
        for k in mx.keys() & my.keys():
            va, vb = mx[k], my[k]
            if math.isnan(va) and math.isnan(vb):
                d = 0.0
            elif math.isnan(va) or math.isnan(vb):
                d = float("inf")
            else:
                d = abs(va - vb)
            where = ("objective", k) if not k.startswith("arm/") else tuple(k.split("/")[1:3])
            diffs[where] = max(diffs.get(where, 0.0), d)
    return {"same_seq": same_seq, "same_set": same_set, "matched": len(pairs), "diffs": diffs}


def describe(c: dict, arms: list[str]) -> str:
    parts = []
    for metric in COMPARED:
        vals = [f"objective (best arm) {c['diffs'].get(('objective', metric), float('nan')):.3g}"]
        vals += [f"arm {arm} {c['diffs'].get((arm, metric), float('nan')):.3g}" for arm in arms]
        parts.append(f"max |d {metric}|: " + ", ".join(vals))
    return (f"same config sequence {c['same_seq']}, same config set {c['same_set']}, {c['matched']} matched trials\n    "
            + "\n    ".join(parts))


def main(argv=None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    load0 = os.getloadavg()[0]

    import numpy as np
    import ray
    import torch
    from ray import tune

    import naive_trainable
    from sweeps.runner import prepare
    from sweeps.spec import load_space
    from trainables.data import synthetic
    from trainables.trainable import sweep_trial

    import optuna  # noqa: F401  (imported here so no import cost lands inside a timing)
    from ray.tune.search.optuna import OptunaSearch  # noqa: F401

    import sweeps.search  # noqa: F401

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    try:
        # -- the shared cohort, generated once (not timed in either way) --------------------------
        cohort_root = tmp / "cohort" / f"seed0-n{a.patients}"
        t0 = time.perf_counter()
        synthetic.ensure(cohort_root, seed=0, n_patients=a.patients)
        gen_s = time.perf_counter() - t0
        base = load_space(SPACE)
        spec = dataclasses.replace(base, cohort_options={**base.cohort_options, "n_patients": a.patients,
                                                         "root": str(cohort_root)})

        # -- a fresh Ray per way, started as `python -m sweeps run` starts it (not timed) -------------
        ray_s = fresh_ray(a.cpus)

        # -- ours, cold cache ----------------------------------------------------------------------
        home_ours = tmp / "home-ours"
        os.environ["SWEEPS_HOME"] = str(home_ours)
        t0 = time.perf_counter()
        cohort, _fp, handle = prepare(spec, progress=False)
        prep_cold = time.perf_counter() - t0
        n_inst, n_samples = len(cohort.instances), len(cohort.samples)
        n_pat = int(cohort.samples["patient_id"].nunique())
        fit_cold, grid = tune_run(tune.with_parameters(sweep_trial, handle=handle), spec, a.trials, home_ours / "runs",
                                  "ours-cold")
        ours_cold = trials_of(grid, "ours-cold")

        # -- ours, warm cache (same home: the cache entry written above is reused) ----------------
        ray_s = max(ray_s, fresh_ray(a.cpus))  # as a second `sweeps run` would: a new process, a new Ray
        t0 = time.perf_counter()
        _c, _fp, handle = prepare(spec, progress=False)
        prep_warm = time.perf_counter() - t0
        fit_warm, grid = tune_run(tune.with_parameters(sweep_trial, handle=handle), spec, a.trials, home_ours / "runs",
                                  "ours-warm")
        ours_warm = trials_of(grid, "ours-warm")

        # -- naive: cohort + encoder inside every trial --------------------------------------------
        home_naive = tmp / "home-naive"
        ray_s = max(ray_s, fresh_ray(a.cpus))
        os.environ["SWEEPS_HOME"] = str(home_naive)
        naive = tune.with_parameters(naive_trainable.naive_trial, cohort_root=str(cohort_root), n_patients=a.patients,
                                     arms=spec.compare, folds=spec.folds, seed=spec.seed, metric=spec.metric,
                                     mode=spec.mode)
        fit_naive, grid = tune_run(naive, spec, a.trials, home_naive / "runs", "naive")
        naive_rows = trials_of(grid, "naive")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if a.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    for label, rows in (("ours-cold", ours_cold), ("ours-warm", ours_warm), ("naive", naive_rows)):
        if len(rows) != a.trials:
            raise RuntimeError(f"{label}: {len(rows)} of {a.trials} trials ran; the run was interrupted")
    cold = prep_cold + fit_cold
    warm = prep_warm + fit_warm
    c_naive = compare(ours_cold, naive_rows)
    c_warm = compare(ours_cold, ours_warm)
    mean_t = lambda rows: float(np.nanmean([r["time"] for r in rows])) if rows else float("nan")  # noqa: E731

    print(f"bench_sweep: space {SPACE!r}, {a.trials} trials, {CONCURRENCY} at a time, reuse_actors=True, "
          f"1 CPU per trial, Ray CPUs {a.cpus}, driver torch threads {torch.get_num_threads()}, {os.cpu_count()} cores")
    print(f"cohort: synthetic, {n_pat} patients, {n_samples} samples, {n_inst} instances "
          f"(generated once in {gen_s:.1f}s beforehand and shared; generation excluded from both timings)")
    print(f"ray.init (a fresh Ray for each way, excluded from every timing): at most {ray_s:.1f}s")
    print()
    compute = lambda rows: sum(float(r["metrics"].get("compute_s", 0.0)) for r in rows)  # noqa: E731
    share_cold, share_warm = compute(ours_cold) / (fit_cold * CONCURRENCY), compute(ours_warm) / (fit_warm * CONCURRENCY)
    print(f"{'way':<11} {'prepare s':>10} {'tune s':>8} {'wall s':>8} {'s/trial':>8} {'compute s':>10} {'share':>6}")
    print(f"{'ours-cold':<11} {prep_cold:>10.1f} {fit_cold:>8.1f} {cold:>8.1f} {mean_t(ours_cold):>8.1f} "
          f"{compute(ours_cold):>10.1f} {share_cold:>6.2f}")
    print(f"{'ours-warm':<11} {prep_warm:>10.1f} {fit_warm:>8.1f} {warm:>8.1f} {mean_t(ours_warm):>8.1f} "
          f"{compute(ours_warm):>10.1f} {share_warm:>6.2f}")
    print(f"{'naive':<11} {'-':>10} {fit_naive:>8.1f} {fit_naive:>8.1f} {mean_t(naive_rows):>8.1f}")
    print("(prepare = cohort load + embed-or-cache-hit; s/trial = mean Tune time_total_s of a trial; compute s = sum of\n"
          " the trials' time inside evaluate; share = compute s / (tune s x concurrency))")
    print(f"load average: {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (2 quiet cores: below 2)")
    print()
    arms = list(spec.compare.get("pooling", []))
    for label, c in (("ours-cold vs naive", c_naive), ("ours-cold vs ours-warm", c_warm)):
        print(f"{label}: {describe(c, arms)}")
    learnable = [arm for arm in arms if arm in ("attention", "gated_attention")]
    fixed = [arm for arm in arms if arm not in learnable]
    dl = max((v for (arm, _m), v in {**c_naive["diffs"], **c_warm["diffs"]}.items() if arm in learnable), default=0.0)
    df = max((v for (arm, _m), v in {**c_naive["diffs"], **c_warm["diffs"]}.items() if arm in fixed), default=0.0)
    if dl > 0 and df == 0:
        print(f"note: the {'/'.join(fixed)} arm (nothing random in it) matches exactly, so both ways embedded and\n"
              f"      evaluated identically. The {'/'.join(learnable)} arm differs even between two runs of ours: its pooler\n"
              "      is built (weights initialised) from the global torch RNG before fit_poolers seeds it, and that\n"
              "      state is random per process and changes with every trial an actor has run before.")
    elif df > 0:
        print("WARNING: an arm with nothing random in it differs between matched trials: the two ways did not\n"
              "         compute the same thing (embeddings, bags or folds differ)")
    configs = Counter(json.loads(r["key"])["head"] + "/" + json.loads(r["key"])["sampling"] + "/pca"
                      + str(json.loads(r["key"])["pca_dim"]) for r in ours_cold)
    print(f"configs run (head/sampling/pca): {dict(sorted(configs.items()))}")
    print()
    print(f"ratio naive/ours-cold: {fit_naive / cold:.2f}x")
    print(f"ratio naive/ours-warm: {fit_naive / warm:.2f}x")
    print(f"RESULT distinct_{a.trials} {len({r['key'] for r in ours_cold})}")
    print(f"RESULT cold_ratio_{a.trials} {fit_naive / cold:.2f}")
    print(f"RESULT warm_ratio_{a.trials} {fit_naive / warm:.2f}")
    print(f"RESULT compute_share_{a.trials}_cold {share_cold:.3f}")
    print(f"RESULT compute_share_{a.trials}_warm {share_warm:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
