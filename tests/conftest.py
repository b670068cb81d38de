"""Shared fixtures: one temporary SWEEPS_HOME, one small synthetic cohort and one Ray session for
the whole test session (ray.init costs seconds; tests share it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sweeps_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("sweeps_home")
    old = {k: os.environ.get(k) for k in ("SWEEPS_HOME", "SWEEPS_REPORTS")}
    os.environ["SWEEPS_HOME"] = str(home)
    os.environ["SWEEPS_REPORTS"] = str(home / "reports")
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def small_cohort(sweeps_home):
    """A 40-patient synthetic cohort (the size `--smoke` uses), generated once."""
    from trainables.data import synthetic

    return synthetic.load(n_patients=40)


@pytest.fixture(scope="session")
def smoke_embeddings(small_cohort, sweeps_home):
    """The session's SWEEPS_HOME with the quickstart smoke sweep's cohort and embeddings (resnet18,
    grayscale_norm) in its cache, made once: tests that run that sweep in a subprocess point it at
    this home (or a copy) instead of generating and embedding the cohort again."""
    from sweeps.runner import prepare, smoke
    from sweeps.spec import load_space

    prepare(smoke(load_space("quickstart")), progress=False)
    return sweeps_home


@pytest.fixture(scope="session")
def ray_session(sweeps_home):
    import ray

    # "local": a new instance, never a cluster a `ray start` on this machine left in /tmp/ray/ray_current_cluster
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def shared_data() -> Path | None:
    p = Path(os.environ.get("SWEEPS_SHARED_DATA", REPO.parent / "shared" / "data"))
    return p if p.exists() else None
