"""kill -9 of a running sweep, then `resume`: finished trials are kept and not rerun, and the run ends
with the requested number of trials, every configuration once (issue 12 item 1)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def _finished(run_dir: Path) -> dict[str, float]:
    """Trials whose record is complete (trainables.record.read_record reads it), with metrics.json's mtime."""
    from trainables.record import METRICS, read_record

    return {ck.parent.name: (ck / METRICS).stat().st_mtime_ns
            for ck in run_dir.glob("trial_*/checkpoint_*") if read_record(ck) is not None}


N = 6  # enough trials that the sweep is still running when two have finished


def test_kill_9_then_resume_finishes_without_rerunning_finished_trials(tmp_path):
    env = {**os.environ, "SWEEPS_HOME": str(tmp_path / "home"), "SWEEPS_REPORTS": str(tmp_path / "reports")}
    # Tune snapshots its experiment state once at the start and then rarely: the trials that finish
    # before the kill are unknown to (or unfinished in) the snapshot that resume restores
    env_killed = {**env, "TUNE_GLOBAL_CHECKPOINT_S": "3600"}
    cmd = [sys.executable, "-m", "sweeps", "run", "quickstart", "--smoke", "--trials", str(N), "--concurrency", "1",
           "--name", "killed", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env_killed, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    run_dir = tmp_path / "home" / "runs" / "killed"
    deadline = time.time() + 400
    while time.time() < deadline and len(_finished(run_dir)) < 2 and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    before = _finished(run_dir)
    assert 2 <= len(before) < N

    res = subprocess.run([sys.executable, "-m", "sweeps", "resume", "killed", "--no-progress"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    after = _finished(run_dir)
    assert len(after) == N, f"expected {N} finished trials after resume, got {len(after)}"
    for trial, mtime in before.items():
        assert after.get(trial) == mtime, f"finished trial {trial} was rerun"
    from sweeps.search import config_key, read_records

    keys = [config_key(r["config"]) for r in read_records(run_dir).values()]
    assert len(set(keys)) == len(keys) == N, "a configuration was run twice"
    import json

    search = json.loads((run_dir / "search.json").read_text())  # the searcher's log survived Tune's restore
    assert len(search["slots"]) == N and all(s["told"] for s in search["slots"]) and search["resumes"]
    assert (tmp_path / "reports" / "killed" / "report.md").exists()
    report = (tmp_path / "reports" / "killed" / "report.md").read_text()
    assert "- Resumed: yes, 1 time(s)" in report  # the reproduction recipe says the run was resumed
