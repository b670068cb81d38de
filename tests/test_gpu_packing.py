"""Fractional GPUs as far as a machine without one allows: on a local Ray cluster that declares one
logical GPU, four trials asking for 0.25 GPU each run at the same time, and train on CPU tensors
because CUDA is not really there (``training_device()`` is "cpu" when torch sees no GPU; a trial that
moved a tensor to "cuda" would fail and leave no record). The sweep runs in a separate process with
its own Ray session, so the tests' shared session (conftest) is not disturbed. The real-GPU version
is ``benchmarks/bench_gpu.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent("""
    import json, sys
    import ray
    import torch
    from sweeps import runner

    ctx = ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    assert ray.cluster_resources().get("GPU") == 1.0
    run_dir = runner.run("quickstart", smoke_test=True, num_samples=4, concurrency=4, gpus_per_trial=0.25,
                         cpus_per_trial=0.5, address=ctx.address_info["address"], name="packing",
                         progress=False, write_report=False,
                         test_fraction=0.0)  # no held-out refit on the driver: this test is about the trials
    print("RUN_DIR", run_dir)
    print("CUDA", torch.cuda.is_available())
    ray.shutdown()
""")


def _spans(run_dir: Path) -> list[tuple[float, float]]:
    """(start, end) of each finished trial from Tune's result.json: end = timestamp (whole seconds),
    start = end - time_total_s."""
    spans = []
    for result in sorted(run_dir.glob("*/result.json")):
        rows = [json.loads(x) for x in result.read_text().splitlines() if x.strip()]
        if rows:
            end = float(rows[-1]["timestamp"])
            spans.append((end - float(rows[-1]["time_total_s"]), end))
    return spans


def test_four_quarter_gpu_trials_share_one_logical_gpu_at_once(smoke_embeddings, tmp_path):
    # the session's home: its smoke cohort and embeddings are reused; the run and report go to tmp_path
    env = {**os.environ, "SWEEPS_HOME": str(smoke_embeddings), "SWEEPS_RUNS": str(tmp_path / "runs"),
           "SWEEPS_REPORTS": str(tmp_path / "reports"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-c", DRIVER], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1100)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("RUN_DIR ", "CUDA ")))
    if lines["CUDA"] == "True":  # a real GPU: the trials trained there, no fallback to check
        print("torch sees a GPU here: the CPU fallback is not exercised, only the packing")
    run_dir = Path(lines["RUN_DIR"])
    assert not list(run_dir.glob("*/error.txt")), "a trial failed (did it try to use CUDA?)"
    spans = _spans(run_dir)
    assert len(spans) == 4
    # every trial was running at one moment: the latest start comes before the earliest end. Tune's
    # timestamp is the end truncated to the second (ray.train's session: int(mktime(now))), so a trial's
    # true end is in [end, end + 1) and its true start in [start, start + 1): one second of margin on
    # the start side covers both (a second on each side, as this test had, refused 4 trials of 3 s that
    # overlapped by 1.8 s once the trials got faster)
    latest_start, earliest_end = max(s for s, _ in spans), min(e for _, e in spans)
    assert latest_start + 1.0 <= earliest_end, f"trial spans do not all overlap: {spans}"
