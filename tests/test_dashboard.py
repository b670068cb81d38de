"""``python -m sweeps dashboard RUN``: optuna-dashboard over a run's journal, on loopback, as a real
server process answering real HTTP requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("optuna_dashboard", reason="optuna-dashboard not installed (pip install -e '.[dashboard]')")


def make_run_with_study(root: Path, name: str = "quickstart-20250101-000000", n_trials: int = 3) -> Path:
    """A run folder with a sweep.json and a real Optuna study in optuna.journal (the searcher's layout)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    run = root / name
    run.mkdir(parents=True)
    (run / "sweep.json").write_text(json.dumps({"space": "quickstart", "metric": "f1_macro", "mode": "max"}))
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(run / "optuna.journal")))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + (t.suggest_categorical("head", ["logreg", "svc"]) == "svc"),
                   n_trials=n_trials)
    return run


def start(args: list[str], env_extra: dict | None = None):
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "sweeps", "dashboard", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp{,6}) of the sockets listening on ``port``."""
    out = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(f).exists():
            continue
        for line in Path(f).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.rsplit(":", 1)
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                out.add(addr)
    return out


def test_dashboard_serves_the_runs_study_on_loopback_only(tmp_path):
    run = make_run_with_study(tmp_path)
    proc = start([str(run), "--port", "0"])
    try:
        line = proc.stdout.readline()  # "optuna-dashboard for run NAME: http://127.0.0.1:PORT/ ..."
        assert "http://127.0.0.1:" in line, line + proc.stderr.read() if proc.poll() is not None else line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        deadline, body = time.time() + 30, None
        while body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    body = json.loads(r.read())
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        names = [s["study_name"] for s in body["study_summaries"]]
        assert names == [run.name]
        sid = body["study_summaries"][0]["study_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{sid}", timeout=10) as r:
            study = json.loads(r.read())
        assert len(study["trials"]) == 3 and {p["name"] for p in study["trials"][0]["params"]} == {"x", "head"}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/studies/{sid}", method="DELETE")
        with pytest.raises(urllib.error.HTTPError) as refused:  # read-only by default: the study is the searcher's
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 403
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as r:
            assert [s["study_name"] for s in json.loads(r.read())["study_summaries"]] == [run.name]
        if Path("/proc/net/tcp").exists():
            assert listening_addresses(port) == {"0100007F"}, "listens beyond 127.0.0.1"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_dashboard_follows_the_journal_while_a_sweep_writes_it(tmp_path):
    """Trials added to the journal after the server started are served (live during a sweep)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from sweeps.dashboard import make_server

    run = make_run_with_study(tmp_path, n_trials=2)
    server = make_server(run, port=0)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/studies"
        sid = json.loads(urllib.request.urlopen(url, timeout=10).read())["study_summaries"][0]["study_id"]
        assert len(json.loads(urllib.request.urlopen(f"{url}/{sid}", timeout=10).read())["trials"]) == 2
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(run / "optuna.journal")))
        study = optuna.load_study(study_name=run.name, storage=storage)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        deadline = time.time() + 20  # optuna-dashboard caches a study's trials for 2 s
        while len(json.loads(urllib.request.urlopen(f"{url}/{sid}", timeout=10).read())["trials"]) != 4:
            assert time.time() < deadline, "the dashboard never showed the trials added after it started"
            time.sleep(0.5)
    finally:
        server.shutdown()
        server.server_close()


def test_a_run_without_a_journal_gets_a_clear_message(tmp_path):
    run = tmp_path / "old-run"
    run.mkdir()
    (run / "sweep.json").write_text("{}")
    proc = start([str(run), "--port", "0"])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "has no Optuna study on disk" in err and "optuna.journal" in err and "Traceback" not in err


def test_an_unknown_run_is_named(tmp_path):
    proc = start(["no-such-run", "--port", "0"], {"SWEEPS_RUNS": str(tmp_path)})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no run 'no-such-run'" in err
