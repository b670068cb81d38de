"""A trial worker's thread pools sized to the CPUs Ray gave it.

Ray tells a worker its share through ``OMP_NUM_THREADS`` (the actor's CPUs, set when its task starts:
``ray._private.utils.set_omp_num_threads_if_unset``). Libraries that read that variable when they
load do not see it in a worker that loaded them before: the workers ``sweeps.runner.start_ray`` starts
with ``RAY_preload_python_modules`` import torch, numpy, scikit-learn and SciPy as they start. Measured
in such a worker on this 2-core machine (tests/test_actors.py's probe): ``OMP_NUM_THREADS=1``, yet
OpenBLAS (numpy's and SciPy's), OpenMP and torch each ran 2 threads. With two trials at a time, every
eigendecomposition, L-BFGS step and LightGBM tree then fought for the cores, its threads spinning
(``benchmarks/bench_sweep.py`` measures sweeps as they run; the README quotes the figures before and
after this). On a 16-core box running 16 trials at a time, the oversubscription is 16-fold.

:func:`limit_threads` sets torch's intra-op pool and, through ``threadpoolctl``, every BLAS and OpenMP
pool loaded so far; OpenMP runtimes loaded later read ``OMP_NUM_THREADS``, which is set by then.
"""

from __future__ import annotations

import logging
import os


def worker_cpus() -> int:
    """The CPUs this process may use: ``OMP_NUM_THREADS`` where Ray (or the user) set it, else 1. A value
    that is not a whole number is logged as a warning naming the variable, and 1 is used."""
    raw = os.environ.get("OMP_NUM_THREADS", "1") or "1"
    try:
        return max(1, int(raw))
    except ValueError:
        logging.getLogger("sweeps.threads").warning("OMP_NUM_THREADS=%r is not a whole number; the trial uses 1 thread", raw)
        return 1


def pool_sizes() -> dict[str, int]:
    """{pool: threads} of this process: each BLAS or OpenMP library ``threadpoolctl`` finds (by API and
    file name) and ``"torch"`` (its intra-op pool). What :func:`limit_threads` sets."""
    import threadpoolctl
    import torch

    out = {f"{i['internal_api']}:{os.path.basename(i['filepath'])}": int(i["num_threads"])
           for i in threadpoolctl.threadpool_info()}
    out["torch"] = torch.get_num_threads()
    return out


def limit_threads(n: int | None = None) -> int:
    """Size torch's, BLAS's and OpenMP's thread pools in this process to ``n`` (default
    :func:`worker_cpus`); returns ``n``. The limit stays for the life of the process."""
    import threadpoolctl
    import torch

    n = worker_cpus() if n is None else max(1, int(n))
    torch.set_num_threads(n)
    threadpoolctl.threadpool_limits(limits=n)
    return n
