"""The sweep followable in Ray's dashboard (issue 16, item 4): ``run --dashboard`` submits the driver
as a Ray job whose log is on the dashboard's job page, and each trial's actor is named after its
trial and configuration. Checked on a real Ray with its real dashboard, through the dashboard's HTTP
API and a headless-browser screenshot (no mocks). One Ray instance (with a dashboard, held by a
subprocess) serves the module's sweep; the Ctrl-C test starts and stops its own, as a user's
command does."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sweeps.jobs import driver_args, entrypoint, forwarded_env, submission_id
from sweeps.runner import JOB_ADDRESS_ENV
from trainables.named import CLASS_NAME, config_summary, named_trainable, trial_label

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "RAY_AUTH_MODE": "disabled"}


def _get(url: str):
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


# --- no Ray ------------------------------------------------------------------------------------------

def test_the_job_runs_the_same_command_minus_the_flag():
    args = ["run", "quickstart", "--smoke", "--dashboard", "--name", "x y", "--address", "auto"]
    assert driver_args(args) == ["run", "quickstart", "--smoke", "--name", "x y", "--address", "auto"]
    cmd = entrypoint(["run", "quickstart", "--name", "x y"], cwd="/a b", python="/py")
    assert cmd == "cd '/a b' && exec /py -m sweeps run quickstart --name 'x y'"
    env = forwarded_env({"SWEEPS_HOME": "/h", "HF_HUB_OFFLINE": "1", "PYTHONPATH": "/p", "HOME": "/root", "SECRET": "s",
                         JOB_ADDRESS_ENV: "10.0.0.1:6379"})
    assert env["SWEEPS_HOME"] == "/h" and env["HF_HUB_OFFLINE"] == "1" and env["PYTHONPATH"] == "/p"
    assert "HOME" not in env and "SECRET" not in env and JOB_ADDRESS_ENV not in env  # set per job, never inherited
    assert env["RAY_JOB_STOP_SIGNAL"] == "SIGINT"  # Ray stops the job with the driver's own Ctrl-C
    assert re.fullmatch(r"sweeps-run-my_space-\d{8}-\d{6}", submission_id("run /x/my_space.py"))


def test_trial_actor_class_is_named_and_tune_still_sees_the_function():
    from ray.tune.experiment import Experiment

    from trainables.trainable import sweep_trial

    cls = named_trainable(sweep_trial, {"cpu": 1, "gpu": 0})
    assert cls.__name__ == CLASS_NAME == "SweepTrial"  # Ray's class_name for the actor
    assert Experiment.get_trainable_name(cls) == "sweep_trial"  # trial names, ids and folders as before
    label = trial_label("ab12_00003", {"head": {"name": "mlp", "hidden": 64}, "pooling": {"attention": {"hidden_dim": 32}},
                                       "pca_dim": 16, "lr": 0.001234, "__trial_index__": 1})
    assert label == "SweepTrial(ab12_00003: head=mlp(hidden=64) pooling=attention(hidden_dim=32) pca_dim=16 lr=0.00123)"
    long = config_summary({f"k{i}": "v" * 20 for i in range(20)})
    assert len(long) == 160 and long.endswith("…")


def test_dashboard_flag_refuses_bad_input_before_ray_starts(capsys):
    from sweeps.cli import main

    for argv, says in ((["run", "no_such_space_here"], "no_such_space_here"),
                       (["resume", "no_such_run_here"], "no_such_run_here"),
                       # a dashboard URL is where jobs go, not a cluster the driver (or a resumed run) can join
                       (["run", "quickstart", "--address", "http://127.0.0.1:8265"], "not its dashboard's URL")):
        assert main([*argv, "--dashboard"]) == 2
        err = capsys.readouterr().err
        assert says in err and "Ray job" not in err  # refused before any job was submitted


# --- one real Ray with its dashboard -----------------------------------------------------------------

HOLD = ("import sys, ray; from sweeps.runner import start_ray; start_ray(None, '127.0.0.1', 2); "
        "print('GCS', ray.get_runtime_context().gcs_address, flush=True); sys.stdin.read(); ray.shutdown()")


@pytest.fixture(scope="module")
def dashboard(sweeps_home):
    """A local Ray (2 CPUs, every listener on loopback) with its dashboard, held by a subprocess
    until the module ends; yields ``(dashboard URL, cluster address)``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=_env(), cwd=REPO, start_new_session=True)
    try:
        url = gcs = None
        for line in proc.stdout:  # start_ray prints the dashboard's address, the holder the cluster's
            m = re.search(r"Ray dashboard: (http://\S+)", line)
            url = m.group(1) if m else url
            if line.startswith("GCS "):
                gcs = line.split()[1]
                break
        assert url and url.startswith("http://127.0.0.1:") and gcs, "the Ray holder did not start"
        yield url, gcs
    finally:
        proc.stdin.close()  # the holder shuts its Ray down
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_smoke_sweep_as_a_ray_job_is_on_the_dashboard_with_named_trial_actors(dashboard, sweeps_home, tmp_path):
    from sweeps.runner import runs_root

    dashboard, cluster = dashboard
    name = "raydash-smoke"
    streamed = subprocess.run([sys.executable, "-m", "sweeps", "run", "quickstart", "--smoke", "--dashboard",
                               "--address", cluster, "--name", name, "--no-progress"], capture_output=True, text=True,
                              env=_env(), cwd=REPO, timeout=900)
    assert streamed.returncode == 0, streamed.stdout[-3000:] + streamed.stderr[-3000:]
    assert f"sweep {name}: 2 trials" in streamed.stdout and "Report:" in streamed.stdout  # the driver's log, here
    assert "SUCCEEDED" in streamed.stderr

    # the job's page: the job, its status and the driver's log, through the dashboard's HTTP API
    jobs = [j for j in _get(f"{dashboard}/api/jobs/") if f"--name {name}" in (j.get("entrypoint") or "")]
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert job["type"] == "SUBMISSION" and job["status"] == "SUCCEEDED" and job["driver_exit_code"] == 0
    assert "--dashboard" not in job["entrypoint"] and job["job_id"]  # the driver joined this cluster
    logs = _get(f"{dashboard}/api/jobs/{job['submission_id']}/logs")["logs"]
    assert f"sweep {name}: 2 trials" in logs and "Report:" in logs

    # the trial actors: class SweepTrial, repr naming a trial of this run and its configuration
    trials = {p.name.removeprefix("trial_") for p in (runs_root() / name).glob("trial_*") if p.is_dir()}
    assert len(trials) == 2
    actors = _get(f"{dashboard}/api/v0/actors?detail=1&limit=1000")["data"]["result"]["result"]
    ours = [a for a in actors if a["job_id"] == job["job_id"] and a["class_name"] == CLASS_NAME]
    assert ours, [(a["class_name"], a.get("repr_name")) for a in actors]
    assert not [a for a in actors if a["job_id"] == job["job_id"] and a["class_name"] == "ImplicitFunc"]
    started = set()
    for a in ours:
        m = re.fullmatch(r"SweepTrial\((\w+): (.+)\)", a["repr_name"])
        assert m and m.group(1) in trials and "head=" in m.group(2) and "sampling=" in m.group(2), a["repr_name"]
        log = urllib.request.urlopen(f"{dashboard}/api/v0/logs/file?actor_id={a['actor_id']}&suffix=out",
                                     timeout=60).read().decode(errors="replace")
        started |= set(re.findall(r"SweepTrial\((\w+): [^\n]*\) starts", log))  # one line per trial the actor ran
    assert started == trials

    # what a person sees: the job's page and the actors page, in a headless browser
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium): dashboard pages not screenshotted")
    from PIL import Image
    import numpy as np

    dom = ""
    for page in (f"#/jobs/{job['submission_id']}", "#/actors"):
        shot = tmp_path / (page.replace("/", "_").strip("#_") + ".png")
        dump = ["--dump-dom"] if page == "#/actors" else []  # the same load screenshotted and its DOM printed
        dom += subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                               "--window-size=1400,900", "--virtual-time-budget=15000", *dump, f"{dashboard}/{page}"],
                              check=True, timeout=180, capture_output=True, text=True).stdout
        img = np.asarray(Image.open(shot).convert("L"))
        assert img.shape == (900, 1400) and img.std() > 5, page  # a drawn page, not a blank one
    assert "SweepTrial(" in dom  # the actors page lists the trials by name


def _stat(pid: int) -> tuple[int, str, str] | None:
    """``(parent pid, state, start time)`` of a process from /proc, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], fields[19]


def _descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (children, theirs, ...): pid -> start time."""
    stats = {int(p.name): _stat(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    out, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child, st in stats.items():
            if st and st[0] == parent and child not in out:
                out[child] = st[2]
                todo.append(child)
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the processes Ray started")
def test_ctrl_c_stops_the_job_and_the_ray_it_started(sweeps_home):
    """The user's command: a local Ray started and stopped by it; Ctrl-C reaches the driver as its own
    Ctrl-C (exit 130, 'interrupted'), and nothing of that Ray is left running."""
    proc = subprocess.Popen([sys.executable, "-m", "sweeps", "run", "quickstart", "--smoke", "--dashboard",
                             "--name", "raydash-interrupted", "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env(), cwd=REPO, start_new_session=True)
    seen, started = [], {}
    try:
        for line in proc.stdout:
            seen.append(line)
            if "Running entrypoint for job" in line and not started:  # the driver runs: interrupt it
                time.sleep(2)
                started = _descendants(proc.pid)  # the Ray it started: gcs, raylet, dashboard, the job's driver
                proc.send_signal(signal.SIGINT)
        rc = proc.wait(180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = "".join(seen)
    assert rc == 130, out[-3000:]
    assert "stopping Ray job" in out and "interrupted" in out and "STOPPED" in out, out[-3000:]
    assert len(started) >= 3, started

    def alive() -> list[int]:
        return [pid for pid, t in started.items() if (st := _stat(pid)) and st[2] == t and st[1] != "Z"]

    deadline = time.time() + 2  # the stopped Ray's processes are gone within 2 s of the command (as before)
    while (left := alive()) and time.time() < deadline:
        time.sleep(0.1)
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in left]
