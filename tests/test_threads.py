"""A trial's thread pools match the CPUs Ray gave it (trainables/threads.py): Ray's preloaded workers
load numpy, torch and SciPy before Ray sets OMP_NUM_THREADS for the trial, so BLAS and OpenMP start
with a thread per core (shown in a real preloaded worker by tests/test_actors.py's probe); two trials at a
time then oversubscribe the cores."""

from __future__ import annotations

import os

import pytest

from trainables.threads import pool_sizes as _pools

needs_two_cores = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every pool has one thread anyway")


@needs_two_cores
def test_sweep_trial_limits_every_pool_to_its_cpus(monkeypatch):
    """sweep_trial, outside Ray (tune.report and the record captured), in a process whose pools are
    wider than OMP_NUM_THREADS says: after the trial every pool has one thread."""
    import threadpoolctl
    import torch
    import ray.tune

    from test_progress import _handle
    from trainables import trainable

    handle, data = _handle()
    monkeypatch.setattr(ray.tune, "report", lambda metrics, **kw: None)
    monkeypatch.setattr(trainable, "trial_data", lambda *a: data)
    monkeypatch.setattr(trainable, "report_record", lambda *a, **kw: None)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch_before = torch.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=2):  # as a Ray worker starts (see the test above)
        torch.set_num_threads(2)
        assert any(v > 1 for k, v in _pools().items() if k != "torch")
        try:
            trainable.sweep_trial({"head": "logreg", "pooling": "mean"}, handle)
            assert set(_pools().values()) == {1}, _pools()
        finally:
            torch.set_num_threads(torch_before)


def test_a_bad_omp_num_threads_is_named_in_a_warning_and_one_thread_is_used(monkeypatch, caplog):
    from trainables.threads import worker_cpus

    monkeypatch.setenv("OMP_NUM_THREADS", "two")
    with caplog.at_level("WARNING", logger="sweeps.threads"):
        assert worker_cpus() == 1
    assert "OMP_NUM_THREADS='two'" in caplog.text
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert worker_cpus() == 3
