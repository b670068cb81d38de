"""The compute of the ``benchmark24`` sweep's 24 trials on one worker, before and after the per-trial cuts
of issue 16 item 8, in one process (no Ray, so no actor start-up or scheduling in the figures).

- before: what each trial computed before: its attention poolers fitted afresh (the worker's memo of
  fitted poolers emptied before every trial) and its metrics through scikit-learn
  (``trainables.metrics.sklearn_metrics``);
  and its torch models (attention poolers, the MLP head) trained with ``torch.optim`` (``FlatAdam`` off);
- after: the code as it is: poolers fitted once per fold, PCA size and class weighting on a worker and
  reused by its later trials (``trainables.pipeline._fitted_poolers``), metrics in numpy, the poolers and
  the MLP head trained with ``trainables.training.FlatAdam`` (the same arithmetic on one flat buffer).

Both run the same 24 configurations on the same ``TrialData`` (its PCA memo warmed for both beforehand)
with one thread in every pool (torch, BLAS, OpenMP: ``trainables.threads.limit_threads(1)``), as a
trial does; the results must be identical (checked, bit for bit). Timed in
CPU seconds of this process (``time.process_time``), which a busy machine inflates less than wall time;
wall seconds are printed beside them.

Prints ``RESULT trial_cpu_before_s``, ``RESULT trial_cpu_after_s`` and ``RESULT trial_cpu_ratio`` (before / after).

Run::

    PYTHONPATH=. /work/main/.venv/bin/python benchmarks/bench_trial.py [--patients 80] [--work DIR]

``--work DIR`` keeps the synthetic cohort and the embedding cache there (``DIR/cohort``, ``DIR/home``)
and reuses them on the next run; by default a temporary folder is used and removed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patients", type=int, default=80)
    p.add_argument("--work", help="folder for the cohort and the embedding cache, reused across runs")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")

    import numpy as np
    import torch

    import trainables.pipeline as pipeline
    from sweeps.runner import prepare
    from sweeps.spec import load_space
    from trainables.data import synthetic
    from trainables.metrics import sklearn_metrics
    from trainables.trainable import trial_data

    import trainables.training as training
    from trainables.threads import limit_threads

    limit_threads(1)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="bench_trial_"))
    try:
        root = work / "cohort" / f"seed0-n{a.patients}"
        synthetic.ensure(root, seed=0, n_patients=a.patients)
        os.environ["SWEEPS_HOME"] = str(work / "home")
        base = load_space("benchmark24")
        spec = dataclasses.replace(base, cohort_options={**base.cohort_options, "n_patients": a.patients, "root": str(root)})
        _cohort, _fp, handle = prepare(spec, progress=False)
        data = trial_data(handle, "resnet18", "grayscale_norm")
        space = spec.space
        configs = [{**space, "pca_dim": pca, "sampling": s, "head": h, "pooling": {"name": "attention", **space["pooling"]}}
                   for pca in space["pca_dim"].categories for s in space["sampling"].categories
                   for h in space["head"].categories]

        def run(before: bool) -> tuple[float, float, list]:
            real, flat = pipeline.compute_metrics, training.FlatAdam.usable
            if before:
                pipeline.compute_metrics = sklearn_metrics
                training.FlatAdam.usable = staticmethod(lambda params, o: False)
            data.extra.pop("fitted_poolers", None)
            out = []
            c0, w0 = time.process_time(), time.perf_counter()
            try:
                for config in configs:
                    if before:
                        data.extra.pop("fitted_poolers", None)
                    out.append(pipeline.evaluate(config, data, arms=handle.arms, n_folds=handle.folds, seed=handle.seed))
            finally:
                pipeline.compute_metrics, training.FlatAdam.usable = real, flat
            return time.process_time() - c0, time.perf_counter() - w0, out

        import torch._dynamo  # noqa: F401  (torch.optim's first step imports it, ~3 s once per worker: not timed here)

        for pca in space["pca_dim"].categories:  # imports, and the PCA memo for both sizes: neither side pays them
            pipeline.evaluate({**configs[0], "pca_dim": pca}, data, arms=handle.arms, n_folds=handle.folds, seed=handle.seed)
        cpu_b, wall_b, res_b = run(True)
        cpu_a, wall_a, res_a = run(False)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)

    same = all(np.array_equal(rb[arm]["proba"], ra[arm]["proba"]) and rb[arm]["metrics"] == ra[arm]["metrics"]
               and all(np.array_equal(rb[arm]["attention"][m], ra[arm]["attention"][m], equal_nan=True)
                       for m in rb[arm]["attention"])
               for rb, ra in zip(res_b, res_a) for arm in rb)
    print(f"bench_trial: benchmark24, {len(configs)} configurations, {len(data.y)} samples, {handle.folds} folds, "
          f"arms {handle.arms}, one torch thread; load average {os.getloadavg()[0]:.1f}")
    print(f"before: {cpu_b:.1f} CPU s ({wall_b:.1f} wall s); after: {cpu_a:.1f} CPU s ({wall_a:.1f} wall s); "
          f"results identical: {same}")
    if not same:
        print("ERROR: before and after differ")
        return 1
    print(f"RESULT trial_cpu_before_s {cpu_b:.2f}")
    print(f"RESULT trial_cpu_after_s {cpu_a:.2f}")
    print(f"RESULT trial_cpu_ratio {cpu_b / cpu_a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
