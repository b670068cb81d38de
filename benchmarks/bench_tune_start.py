"""What a Ray Tune run's start costs the driver before its first trial, with and without callbacks.

Before it starts, Tune records which kinds of callbacks a run was given (``ray.air._internal.usage
.tag_callbacks``, part of Ray's usage record). To recognise its own integrations it imports their
modules, and ``ray.air.integrations.mlflow`` imports MLflow when it is installed (it is: the ``track``
extra). A run given no callbacks skips the tag. Each case runs in a fresh process with its own local
Ray (1 CPU), an untimed first Tune run without callbacks (Tune's own imports on a first run), then the
timed Tune run of 2 trials of a trivial trainable:

- ``callback``: one do-nothing callback, as ``benchmarks/bench_search.py``'s ``Timeline`` (and a sweep
  with ``--track tensorboard``) gives Tune;
- ``callback_preimported``: the same, with ``ray.air.integrations.mlflow`` imported before the timing
  (what ``bench_search.py`` does so that its instrument costs the runs nothing);
- ``none``: no callbacks, as ``python -m sweeps run`` without ``--track`` runs Tune.

Prints, per case, the seconds from ``tuner.fit()`` to Tune's first call into its callbacks
(``setup``: for ``none``, a callback added to Tune's own default list, which the tag does not see),
and whether MLflow was imported by the end of the run::

    RESULT tune_start_s_<case> S
    RESULT mlflow_imported_<case> 0|1

Run: ``PYTHONPATH=$PWD python benchmarks/bench_tune_start.py`` (about 40 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ("callback", "callback_preimported", "none")

CHILD = r"""
import json, os, sys, tempfile, time
import ray
from ray import tune
from ray.tune import Callback

case = sys.argv[1]
if case == "callback_preimported":
    import ray.air.integrations.mlflow  # noqa: F401
seen = {}

class Mark(Callback):
    def setup(self, **info):
        seen.setdefault("setup", time.perf_counter())

def trial(config):
    tune.report({"x": config["x"]})

ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
tmp = tempfile.mkdtemp()
tune.Tuner(trial, param_space={"x": tune.grid_search([0])},  # untimed, no callbacks: Tune's own first-run imports
           run_config=tune.RunConfig(storage_path=tmp, name="warm", verbose=0)).fit()
already = "mlflow" in sys.modules
callbacks = [Mark()] if case != "none" else []
if case == "none":  # Tune's own default callbacks are added after the tag: a marker there is not tagged
    import ray.tune.utils.callback as cb
    make = cb._create_default_callbacks
    def with_mark(callbacks, **kw):
        out = make(callbacks, **kw)
        out.append(Mark())
        return out
    import ray.tune.tune as tt
    tt._create_default_callbacks = with_mark
tuner = tune.Tuner(trial, param_space={"x": tune.grid_search([1, 2])},
                   run_config=tune.RunConfig(storage_path=tmp, name="t", verbose=0, callbacks=callbacks))
t0 = time.perf_counter()
tuner.fit()
print("JSON " + json.dumps({"start_s": seen["setup"] - t0, "mlflow": "mlflow" in sys.modules, "before": already}))
ray.shutdown()
"""


def run_case(case: str) -> dict:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0"),
           "RAY_AUTH_MODE": "disabled", "RAY_AIR_NEW_OUTPUT": "0"}
    out = subprocess.run([sys.executable, "-c", CHILD, case], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    for line in out.stdout.splitlines():
        if line.startswith("JSON "):
            return json.loads(line[5:])
    raise RuntimeError(f"case {case}: no result (exit {out.returncode}): {out.stderr[-2000:]}")


def main() -> int:
    print(f"# load average at the start {os.getloadavg()[0]:.1f}")
    for case in CASES:
        r = run_case(case)
        if r["before"] and case != "callback_preimported":
            raise RuntimeError(f"case {case}: MLflow was imported before the timing; the case measures nothing")
        print(f"# {case}: {r['start_s']:.2f} s from tuner.fit() to the first callback; MLflow imported: {r['mlflow']}")
        print(f"RESULT tune_start_s_{case} {r['start_s']:.3f}")
        print(f"RESULT mlflow_imported_{case} {int(r['mlflow'])}")
    print(f"# load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
