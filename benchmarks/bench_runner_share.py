"""The compute share of a sweep as ``python -m sweeps run`` itself runs it, not an emulation.

``benchmarks/bench_search.py`` rebuilds the runner's Tune run around its own instrument (Ray started
before the cohort load, a callback timing each trial). This script runs the runner itself,
``sweeps.runner.run(SPACE)``, in this process, exactly as the command does (it starts its own Ray after
the cohort load, shares the embeddings, splits off the test part, then runs Tune), and measures:

- the wall time of the runner's Tune run (its ``fit_noting_sigint`` call, wrapped here, untouched);
- the trials' compute (``compute_s``, the seconds each spent inside ``evaluate``, from the last line of
  each trial's ``result.json``);

and prints ``RESULT runner_compute_share`` = compute / (Tune wall x concurrency), the issue's
``compute_share`` measured on the real command, with ``RESULT runner_tune_s`` and
``RESULT runner_compute_s``. The held-out part, model and report run after the timing, as usual.

Run (the quickstart; about 2 minutes with a warm SWEEPS_HOME, more on a first run)::

    PYTHONPATH=$PWD python benchmarks/bench_runner_share.py [--home H] [--space quickstart] [--trials N]

``--home H``: a SWEEPS_HOME holding the space's cohort and embeddings (a warm run; the new run folder is
removed afterwards); without it a fresh temporary one (a user's first run: cohort load and embedding first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", help="a SWEEPS_HOME with the space's cohort and embeddings cached (warm run)")
    p.add_argument("--space", default="quickstart")
    p.add_argument("--trials", type=int, default=None, help="trials (default: the space's)")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_runner_share_"))
    os.environ["SWEEPS_HOME"] = str(Path(a.home).resolve()) if a.home else str(tmp / "home")
    os.environ["SWEEPS_REPORTS"] = str(tmp / "reports")
    load0 = os.getloadavg()[0]

    import ray

    import sweeps.runner as runner
    from sweeps.report.run import last_result

    fit = runner.fit_noting_sigint
    timed: dict[str, float] = {}

    def timed_fit(tuner):
        t = time.perf_counter()
        try:
            return fit(tuner)
        finally:
            timed["tune_s"] = time.perf_counter() - t

    name = f"bench-share-{os.getpid()}"
    run_dir = runner.runs_root() / name
    if run_dir.exists():  # removed at the end: never one this script did not make
        raise SystemExit(f"{run_dir} exists; remove it or use another --home")
    runner.fit_noting_sigint = timed_fit
    t0 = time.perf_counter()
    try:
        runner.run(a.space, num_samples=a.trials, name=name, progress=False, write_report=False)
        total = time.perf_counter() - t0
        meta = json.loads((run_dir / "sweep.json").read_text())
        concurrency = int(meta["concurrency"])
        results = {d.name: last_result(d) for d in sorted(run_dir.glob("trial_*"))}  # {} for a trial with no result
    finally:
        runner.fit_noting_sigint = fit
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    missing = [t for t, r in results.items() if "compute_s" not in r]
    if not results or missing:
        raise RuntimeError(f"trials without compute_s: {missing or 'no trials'}")
    compute = sum(float(r["compute_s"]) for r in results.values())
    share = compute / (timed["tune_s"] * concurrency)
    print(f"# {a.space}: {len(results)} trials, {concurrency} at a time; the command took {total:.1f} s, its Tune run "
          f"{timed['tune_s']:.1f} s; the trials' time inside evaluate {compute:.1f} s; "
          f"{'warm (--home)' if a.home else 'first run (fresh SWEEPS_HOME)'}; load average {load0:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"RESULT runner_tune_s {timed['tune_s']:.1f}")
    print(f"RESULT runner_compute_s {compute:.1f}")
    print(f"RESULT runner_compute_share {share:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
