"""What a Ray worker that imported the trial code costs, and what a trial actor's own runtime
environment costs in start-up: the figures behind ``sweeps.runner.preload_trial_code`` and
``sweeps.actors.plain_trial_actors``.

1. Memory: a local Ray (2 CPUs) started with and without ``RAY_preload_python_modules=trainables.trainable``;
   after 15 s the idle workers' (``ray::IDLE``) RSS and private memory from ``/proc/PID/smaps_rollup``.
2. Start-up: in the preloaded Ray, an actor with a runtime environment of its own (as Tune gives every
   trainable: ``{"env_vars": {"PL_DISABLE_FORK": "1"}}``) and one without; seconds until each answers.

Prints ``RESULT idle_worker_private_mb_plain``, ``RESULT idle_worker_private_mb_preloaded``,
``RESULT actor_ready_s_own_env`` and ``RESULT actor_ready_s_started_worker``. Linux only (``/proc``).

Run: ``PYTHONPATH=. python benchmarks/bench_workers.py`` (about a minute).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import os, subprocess, sys, time
import ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
time.sleep(15)
pids = subprocess.run(["pgrep", "-f", "ray::IDLE"], capture_output=True, text=True).stdout.split()
for p in pids:
    d = {}
    for line in open(f"/proc/{p}/smaps_rollup").read().splitlines()[1:]:
        k, v = line.split(":", 1)
        d[k] = int(v.split()[0]) // 1024
    print("MEM", d["Rss"], d["Private_Clean"] + d["Private_Dirty"], flush=True)
if os.environ.get("RAY_preload_python_modules"):
    class A:
        def ping(self):
            return os.getpid()
    for label, opts in (("started", {}), ("own_env", {"runtime_env": {"env_vars": {"PL_DISABLE_FORK": "1"}}})):
        t = time.time()
        a = ray.remote(num_cpus=1, **opts)(A).remote()
        ray.get(a.ping.remote())
        print("READY", label, round(time.time() - t, 2), flush=True)
        ray.kill(a)
        time.sleep(3)
"""


def run(preload: bool) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_preload_python_modules", None)
    if preload:
        env["RAY_preload_python_modules"] = "trainables.trainable"
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
                          check=True).stdout


def main() -> int:
    plain, pre = run(False), run(True)
    mem = lambda out: [tuple(map(int, ln.split()[1:])) for ln in out.splitlines() if ln.startswith("MEM")]  # noqa: E731
    ready = {ln.split()[1]: float(ln.split()[2]) for ln in pre.splitlines() if ln.startswith("READY")}
    mp, mr = mem(plain), mem(pre)
    print(f"idle workers, plain (RSS, private MB): {mp}; preloaded: {mr}; load average {os.getloadavg()[0]:.1f}")
    print(f"RESULT idle_worker_private_mb_plain {max(m for _, m in mp)}")
    print(f"RESULT idle_worker_private_mb_preloaded {max(m for _, m in mr)}")
    print(f"RESULT actor_ready_s_own_env {ready['own_env']}")
    print(f"RESULT actor_ready_s_started_worker {ready['started']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
