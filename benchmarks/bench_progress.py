"""What per-fold intermediate results (``trainables/progress.py``) cost a sweep, in one Ray session.

A frozen trial now reports after each fold but the last (``n_folds - 1`` extra ``tune.report`` calls,
no checkpoint) before its final result. Tune's function trainables report synchronously: each report
waits for the driver's controller loop to take it. This measures that cost alone, with stand-in
trials that sleep ``--fold-s`` per fold (no compute, so the machine's load disturbs it little):

- ``once``: each trial sleeps ``folds x fold_s`` and reports once (before intermediates);
- ``per_fold``: the same sleep, one report per fold (the last one final).

Both are run ``--rounds`` times alternately (ratios within one run). Prints
``RESULT progress_wall_once_s``, ``RESULT progress_wall_per_fold_s`` (medians),
``RESULT progress_cost_per_report_ms`` = (per_fold - once) x concurrency / extra reports, and
``RESULT progress_overhead_share`` = per_fold / once - 1.

Run (about 2 minutes at the defaults)::

    PYTHONPATH=. /work/main/.venv/bin/python benchmarks/bench_progress.py [--trials 24] [--folds 5] [--fold-s 0.2] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def result(name: str, value) -> None:
    print(f"RESULT {name} {value}", flush=True)


def trial(config: dict) -> None:
    from ray import tune

    from trainables.progress import fold_result

    n, per_fold = config["folds"], config["per_fold"]
    for f in range(1, n + 1):
        time.sleep(config["fold_s"])
        if per_fold and f < n:
            tune.report(fold_result({"f1_macro": 0.5 + 0.01 * f, "best_arm": "mean"}, f, n))
    tune.report(fold_result({"f1_macro": 0.6, "best_arm": "mean"}, n, n))


def sweep(args, per_fold: bool, storage: str, k: int) -> float:
    from ray import tune

    t0 = time.perf_counter()
    tune.Tuner(
        tune.with_resources(trial, {"cpu": 1}),
        param_space={"folds": args.folds, "fold_s": args.fold_s, "per_fold": per_fold, "i": tune.grid_search(list(range(args.trials)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=args.concurrency, reuse_actors=True),
        run_config=tune.RunConfig(name=f"{'fold' if per_fold else 'once'}-{k}", storage_path=storage, verbose=0),
    ).fit()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--fold-s", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    import ray

    ray.init(address="local", num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    print(f"# load average {os.getloadavg()[0]:.1f}; {args.trials} trials x {args.folds} folds x {args.fold_s}s, "
          f"concurrency {args.concurrency}", flush=True)
    walls = {False: [], True: []}
    with tempfile.TemporaryDirectory() as storage:
        sweep(args, False, storage, -1)  # warm-up: actors, imports
        for k in range(args.rounds):
            for per_fold in (False, True):
                walls[per_fold].append(sweep(args, per_fold, storage, k))
                print(f"# round {k} {'per_fold' if per_fold else 'once'}: {walls[per_fold][-1]:.2f}s", flush=True)
    ray.shutdown()
    once, fold = statistics.median(walls[False]), statistics.median(walls[True])
    extra = args.trials * (args.folds - 1)
    result("progress_wall_once_s", f"{once:.2f}")
    result("progress_wall_per_fold_s", f"{fold:.2f}")
    result("progress_cost_per_report_ms", f"{1000 * (fold - once) * args.concurrency / extra:.1f}")
    result("progress_overhead_share", f"{fold / once - 1:.3f}")
    print(f"# load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
