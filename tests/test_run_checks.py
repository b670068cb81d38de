"""Run options checked before anything slow (issue 12, item 8): each bad flag is a clear error, exit 2,
in seconds, before the cohort loads."""

import socket
import time

import pytest

from sweeps.cli import main
from sweeps.runner import ResourceError, check_cluster_resources, check_run_options


def _loads_no_cohort(monkeypatch):
    """Make loading a cohort (or generating one) fail the test: the check must come first."""
    import sweeps.runner as runner

    def boom(*a, **k):
        raise AssertionError("the cohort was loaded before the options were checked")

    monkeypatch.setattr(runner, "load_cohort", boom)


@pytest.mark.parametrize("flags, words", [
    (["--cpus-per-trial", "64"], ["64 CPU", "PENDING forever"]),
    (["--cpus-per-trial", "0"], ["--cpus-per-trial must be > 0"]),
    (["--cpus-per-trial", "-1"], ["--cpus-per-trial must be > 0"]),
    (["--trials", "-1"], ["--trials must be a whole number >= 1"]),
    (["--trials", "0"], ["--trials must be a whole number >= 1"]),
    (["--trials", "-2"], ["--trials must be a whole number >= 1"]),
    (["--concurrency", "0"], ["--concurrency must be a whole number >= 1"]),
    (["--concurrency", "-1"], ["--concurrency must be a whole number >= 1"]),
    (["--gpus-per-trial", "-0.5"], ["--gpus-per-trial must be >= 0"]),
    (["--option", "n_patients=abc"], ["n_patients", "int"]),
])
def test_a_bad_run_option_is_exit_2_before_the_cohort_loads(flags, words, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SWEEPS_HOME", str(tmp_path))
    monkeypatch.setattr("sweeps.runner.local_cpus", lambda: 2)  # the 2-core machine of the issue
    if "--option" not in flags:
        _loads_no_cohort(monkeypatch)
    t0 = time.time()
    assert main(["run", "quickstart", "--smoke", "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert time.time() - t0 < 20
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("COMPLETE"))  # no cohort generated


def test_an_unreachable_address_fails_in_seconds(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SWEEPS_HOME", str(tmp_path))
    _loads_no_cohort(monkeypatch)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    assert main(["run", "quickstart", "--smoke", "--address", f"127.0.0.1:{port}"]) == 2
    assert time.time() - t0 < 15
    err = capsys.readouterr().err
    assert f"cannot reach 127.0.0.1:{port}" in err
    t0 = time.time()  # a blackholed address (TEST-NET-1, never routed) times out quickly too
    with pytest.raises(ResourceError, match="cannot reach"):
        check_run_options(num_samples=2, concurrency=None, cpus_per_trial=1, gpus_per_trial=0,
                          address="ray://192.0.2.123:10001")
    assert time.time() - t0 < 10


def test_resources_are_checked_against_the_machine_and_the_cluster():
    ok = dict(num_samples=4, concurrency=2, cpus_per_trial=1, gpus_per_trial=0)
    check_run_options(**ok, available_cpus=2, available_gpus=0)
    check_run_options(**{**ok, "cpus_per_trial": 0.5}, available_cpus=2, available_gpus=0)
    with pytest.raises(ResourceError, match="this machine has 2"):
        check_run_options(**{**ok, "cpus_per_trial": 4}, available_cpus=2, available_gpus=0)
    with pytest.raises(ResourceError, match="GPU"):
        check_run_options(**{**ok, "gpus_per_trial": 1}, available_cpus=2, available_gpus=0)
    with pytest.raises(ResourceError, match="whole number"):
        check_run_options(**{**ok, "cpus_per_trial": 1.5}, available_cpus=2, available_gpus=0)
    nodes = [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}, {"Alive": False, "Resources": {"CPU": 64.0}}]
    check_cluster_resources(8, 1, nodes)
    with pytest.raises(ResourceError, match="largest node of the cluster has 8"):
        check_cluster_resources(16, 0, nodes)
    with pytest.raises(ResourceError, match="largest node of the cluster has 1"):
        check_cluster_resources(1, 2, nodes)
