"""Faults a real lab meets (issue 12): damaged cache entries, full disks, concurrent sweeps, debris of
kills, doomed cohorts, Ctrl-C, Tune's files cut short, Ray's listeners, and the fault suite: a sweep
killed (SIGKILL of its process group) during embedding, trials and report writing, then resumed.

The fast cases come first; the sweeps (subprocesses of ``python -m sweeps``) after them."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainables import cache, staging

REPO = Path(__file__).resolve().parents[1]


# -- item 2: the fingerprint covers every input a trial reads ------------------------------------
def test_fingerprints_cover_labels_tabular_and_text_but_the_cache_key_only_pixels(small_cohort):
    from trainables.data.cohort import Cohort

    c = small_cohort
    base = c.fingerprints()
    assert base["images"] == c.fingerprint()  # the cache key part: unchanged by this change

    def changed(**cols):
        s = c.samples.copy()
        for col, f in cols.items():
            s[col] = f(s[col])
        other = Cohort(c.name, s, c.instances, c.targets, c.modalities, c.tabular, c.text)
        now = other.fingerprints(base["images"])
        assert other.fingerprint() == base["images"]  # labels etc. never invalidate embeddings
        return {k for k in base if now[k] != base[k]}

    target = c.targets[0].name
    assert changed(**{target: lambda v: v.where(v.index >= 13, c.targets[0].classes[-1])}) == {"labels"}
    assert changed(age=lambda v: v + 1) == {"tabular"}
    assert changed(report=lambda v: v + " x") == {"text"}
    assert changed(patient_id=lambda v: v.where(v.index != 0, "P9999")) == {"samples"}
    shuffled = Cohort(c.name, c.samples.sample(frac=1, random_state=0), c.instances, c.targets, c.modalities,
                      c.tabular, c.text)
    assert shuffled.fingerprints(base["images"]) == base  # row order is not a change


def test_resume_refuses_a_changed_cohort_and_names_the_part():
    from sweeps.runner import check_same_cohort
    from trainables.data.cohort import CohortError

    meta = {"fingerprint": "a", "fingerprints": {"images": "a", "samples": "s", "labels": "l", "tabular": "t", "text": "x"}}
    check_same_cohort("r", meta, dict(meta["fingerprints"]))
    with pytest.raises(CohortError, match="its labels differ"):
        check_same_cohort("r", meta, {**meta["fingerprints"], "labels": "l2"})
    check_same_cohort("old", {"fingerprint": "a"}, {"images": "a", "labels": "whatever"})  # a run from before the parts


# -- item 5: a cache entry cut short is detected and rebuilt ----------------------------------
def _entry(root, key="k1", n=6, d=4):
    index = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "modality": "m", "order": range(n)})
    return cache.write(root, key, np.arange(n * d, dtype=np.float32).reshape(n, d), index, {"n": n})


@pytest.mark.parametrize("damage", ["truncate_npy", "empty_npy", "truncate_index", "empty_meta"])
def test_a_damaged_cache_entry_is_removed_with_its_name_logged(tmp_path, caplog, damage):
    e = _entry(tmp_path)
    f = {"truncate_npy": "embeddings.npy", "empty_npy": "embeddings.npy", "truncate_index": "index.csv",
         "empty_meta": "meta.json"}[damage]
    data = (e.path / f).read_bytes()
    (e.path / f).write_bytes(b"" if damage.startswith("empty") else data[: len(data) - 40])
    with caplog.at_level(logging.WARNING, logger="sweeps.cache"):
        assert cache.lookup(tmp_path, "k1") is None  # old code: ValueError: mmap length is greater than file size
    assert str(e.path) in caplog.text and "damaged" in caplog.text
    assert not e.path.exists()
    assert _entry(tmp_path).embeddings.shape == (6, 4)  # rebuilt in place


def test_embed_rebuilds_a_truncated_entry(small_cohort, tmp_path, caplog):
    from trainables import embed

    cohort = small_cohort.subset(small_cohort.samples.index.to_numpy() < 3)
    first = embed.embed_cohort(cohort, "resnet18", "grayscale_norm", cache_root=tmp_path, progress=False)
    want = np.asarray(first.embeddings).copy()
    npy = first.path / "embeddings.npy"
    npy.write_bytes(npy.read_bytes()[:-1000])
    with caplog.at_level(logging.INFO):
        again = embed.embed_cohort(cohort, "resnet18", "grayscale_norm", cache_root=tmp_path, progress=False)
    assert "damaged" in caplog.text and "embedding cache written" in caplog.text
    np.testing.assert_allclose(np.asarray(again.embeddings), want, rtol=1e-4, atol=1e-4)


# -- item 4: a cache write on a full disk names the folder and the space needed -------------------
def test_a_cache_write_on_a_full_disk_says_where_and_how_much(tmp_path, monkeypatch):
    def full(path, arr, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    index = pd.DataFrame({"sample_id": ["a", "b"], "modality": "m", "order": [0, 1]})
    with pytest.raises(cache.DiskFullError) as info:
        cache.write(tmp_path, "k", np.zeros((2, 1024), np.float32), index, {})
    msg = str(info.value)
    assert str(tmp_path) in msg and "8192 bytes" not in msg and re.search(r"needs about \d+ bytes", msg)
    assert int(re.search(r"needs about (\d+) bytes", msg).group(1)) >= 2 * 1024 * 4
    assert info.value.errno == errno.ENOSPC
    assert not list(tmp_path.glob(".tmp-*"))  # nothing half-written left


# -- item 6: two sweeps on one SWEEPS_HOME generate the same cohort at once ---------------------
def test_two_processes_generating_the_same_cohort_both_succeed(tmp_path):
    code = ("import sys; from trainables.data import synthetic; "
            "print(synthetic.ensure(sys.argv[1], seed=0, n_patients=6))")
    out = tmp_path / "cohort"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    res = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-2000:] for r in res]  # old code: Directory not empty
    assert (out / "COMPLETE").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the losers dropped their copies


def test_the_loser_of_a_race_keeps_the_winners_folder(tmp_path):
    from trainables.data.files import atomic_dir

    out = tmp_path / "x"
    done = lambda p: (p / "COMPLETE").exists()  # noqa: E731
    with atomic_dir(out, complete=done) as a:
        (a / "COMPLETE").write_text("a")
        with atomic_dir(out, complete=done) as b:  # the winner renames first
            (b / "COMPLETE").write_text("b")
    assert (out / "COMPLETE").read_text() == "b"
    with pytest.raises(FileExistsError):  # without a completeness test, an existing folder stays an error
        with atomic_dir(out):
            pass


def test_concurrent_cache_writers_both_get_the_entry(tmp_path):
    errors = []

    def one():
        try:
            _entry(tmp_path, "same", n=2000, d=64)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert cache.lookup(tmp_path, "same").embeddings.shape == (2000, 64)


def test_concurrent_standin_generation_uses_the_winners_copy(tmp_path, monkeypatch):
    from trainables.data import STANDINS, standin_root

    monkeypatch.setenv("SWEEPS_HOME", str(tmp_path))
    name = sorted(STANDINS)[0]
    roots, errors = [], []

    def one():
        try:
            roots.append(standin_root(name))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors
    assert len(set(roots)) == 1 and roots[0].is_dir()


# -- item 7: debris of a kill is swept by the next run; a folder without sweep.json -------------
def test_staging_left_by_a_dead_process_is_swept_and_a_live_ones_kept(tmp_path, monkeypatch):
    from sweeps.runner import clean_debris

    monkeypatch.setenv("SWEEPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SWEEPS_REPORTS", str(tmp_path / "reports"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    made = {
        "report": staging.make(tmp_path / "reports" / "run1", ".report-"),
        "cohort": staging.make(tmp_path / "home" / "data" / "synthetic-v1", ".seed0-n40."),
        "standin": staging.make(tmp_path / "home" / "data" / "standins", ".rsna."),
        "cache": staging.make(tmp_path / "home" / "cache", ".tmp-abc-"),
    }
    for d in made.values():
        (d / staging.OWNER).write_text(f"{os.uname().nodename} {dead.pid}\n")
        (d / "payload").write_bytes(b"x" * 1000)
    live = staging.make(tmp_path / "reports" / "run1", ".report-")  # this process: a concurrent run's
    old = tmp_path / "home" / "cache" / ".tmp-legacy"  # an older writer's, no owner file: swept once old
    old.mkdir()
    young = tmp_path / "home" / "cache" / ".tmp-young"
    young.mkdir()
    os.utime(old, (time.time() - 2 * staging.GRACE_S,) * 2)
    (tmp_path / "home" / "data" / "synthetic-v1" / "seed0-n40").mkdir()  # a real cohort folder: never touched
    gone = clean_debris()
    assert set(gone) == {*made.values(), old}
    assert live.exists() and young.exists() and (tmp_path / "home" / "data" / "synthetic-v1" / "seed0-n40").exists()


def test_a_run_folder_without_sweep_json_gets_one_message_from_run_and_resume(tmp_path, monkeypatch, capsys):
    from sweeps.cli import main

    monkeypatch.setenv("SWEEPS_HOME", str(tmp_path))
    (tmp_path / "runs" / "half").mkdir(parents=True)
    assert main(["run", "quickstart", "--smoke", "--name", "half", "--no-progress"]) == 2
    from_run = capsys.readouterr().err
    assert main(["resume", "half", "--no-progress"]) == 2
    from_resume = capsys.readouterr().err
    assert main(["report", "half"]) == 2
    from_report = capsys.readouterr().err
    assert from_run == from_resume == from_report
    assert "holds no sweep.json" in from_run and str(tmp_path / "runs" / "half") in from_run


# -- item 9: doomed cohorts stop before anything is embedded; `data inspect` says the same -------
def _doomed(c, how):
    from trainables.data.cohort import Cohort

    s, i = c.samples.copy(), c.instances
    if how == "one class":
        s[c.targets[0].name] = c.targets[0].classes[0]
    elif how == "no samples":
        s, i = s.iloc[:0], i.iloc[:0]
    elif how == "no readable image":
        i = i.iloc[:0]
    return Cohort(c.name, s, i, c.targets, c.modalities, c.tabular, c.text,
                  quarantine=[{"path": "x.dcm", "reason": "truncated"}] if how == "no readable image" else [])


@pytest.mark.parametrize("how, words", [("one class", "has one class"), ("no samples", "no samples"),
                                        ("no readable image", "no readable image")])
def test_a_doomed_cohort_is_an_error_before_anything_is_embedded(small_cohort, monkeypatch, how, words):
    import sweeps.runner as runner
    from sweeps.datainfo import format_summary, inspect_cohort
    from sweeps.spec import load_space
    from trainables import embed
    from trainables.data.cohort import CohortError

    doomed = _doomed(small_cohort, how)
    monkeypatch.setattr(runner, "load_cohort", lambda spec: doomed)
    monkeypatch.setattr(embed, "run_encoder", lambda *a, **k: (_ for _ in ()).throw(AssertionError("embedded")))
    with pytest.raises(CohortError, match=words) as info:
        runner.prepare(load_space("quickstart"), progress=False)
    text = format_summary(inspect_cohort(doomed))
    assert "cannot run a sweep on this cohort" in text and words in text
    assert str(info.value).split("cannot be swept: ")[1].split("; ")[0] in text  # the same words
    assert not inspect_cohort(small_cohort)["problems"]


# == sweeps in subprocesses: Ctrl-C, Ray's listeners, Tune's files cut short, kills ==================
# One SWEEPS_HOME for the module: the first sweep generates the smoke cohort and embeds it (and is
# killed while embedding); the others reuse that cache.
SPACE = ["quickstart", "--smoke", "--concurrency", "1", "--no-progress"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return {**os.environ, "SWEEPS_HOME": str(root / "home"), "SWEEPS_REPORTS": str(root / "reports"),
            "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def _start(env, *args) -> subprocess.Popen:
    """``python -m sweeps ARGS`` in its own process group (as a terminal runs it), output to a log."""
    log = open(Path(env["SWEEPS_HOME"]).parent / f"{args[0]}-{time.time_ns()}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "sweeps", *args], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    proc.log = Path(log.name)  # proc.stdout is None: the output goes to this file
    return proc


def _cli(env, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeps", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _here(env, monkeypatch) -> None:
    """The module's SWEEPS_HOME and SWEEPS_REPORTS for a command run in this process (``sweeps.cli.main``):
    one that stops before Ray starts costs no subprocess."""
    monkeypatch.setenv("SWEEPS_HOME", env["SWEEPS_HOME"])
    monkeypatch.setenv("SWEEPS_REPORTS", env["SWEEPS_REPORTS"])


def _output(proc) -> str:
    return proc.log.read_text()[-4000:]


def _records(run_dir: Path) -> dict[str, int]:
    """Trials whose record is complete (config, metrics and OOF arrays readable) -> metrics.json's mtime."""
    out = {}
    for ck in Path(run_dir).glob("trial_*/checkpoint_*"):
        try:
            json.loads((ck / "config.json").read_text())
            json.loads((ck / "metrics.json").read_text())
            np.load(ck / "oof.npz").files
        except (OSError, ValueError, EOFError):
            continue
        out[ck.parent.name] = (ck / "metrics.json").stat().st_mtime_ns
    return out


def _wait(proc, cond, timeout=420, every=0.2) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not cond():
        time.sleep(every)
    assert proc.poll() is None, f"the sweep ended before the moment to interrupt it:\n{_output(proc)}"
    assert cond(), f"timed out waiting:\n{_output(proc)}"


def _kill(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and every Ray process it started
    proc.wait()


def _assert_complete(env, name, requested) -> str:
    """Every record intact, as many trials as requested (at least, until item 1 lands), the report whole
    and not marked interrupted, no staging debris beside it."""
    run_dir = Path(env["SWEEPS_HOME"]) / "runs" / name
    recs = _records(run_dir)
    assert len(recs) >= requested, recs
    report = Path(env["SWEEPS_REPORTS"]) / name / "report.md"
    text = report.read_text()
    assert "Interrupted" not in text and "## Data and method" in text
    assert f"- Trials: {len(recs)} finished, 0 failed, 0 unfinished" in text  # every record reaches the report
    assert not list(report.parent.glob(".report-*"))
    return text


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for st in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = st.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(st.parent.name))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        out.add(p)
        todo += children.get(p, [])
    return out


def _listeners(pids: set[int]) -> list[tuple[str, str]]:
    """(local address, process) of every listening TCP socket of ``pids`` (``ss -ltnp``)."""
    import shutil

    assert shutil.which("ss"), "`ss` not found: install iproute2 (.ci/run does)"
    ss = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    out = []
    for line in ss.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            out.append((line.split()[3], ",".join(re.findall(r'"([^"]+)"', line))))
    return out


def _loopback(addr: str) -> bool:
    host = addr.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "::1", "::ffff:127.0.0.1") or host.startswith("127.")


def test_kill_during_embedding_run_again_kill_during_report_writing_then_resume(env, monkeypatch, capsys):
    """The fault suite's kills during embedding and during report writing, on one run. A kill while the
    encoder runs leaves no run (sweep.json is written after the embeddings) and no cache entry: `resume`
    says there is nothing to resume. Running again sweeps the dead run's staging folders, embeds and
    runs the trials; a local run starts its own Ray, whatever cluster address the machine advertises (a
    dead one here, as a killed `ray start` leaves in /tmp/ray/ray_current_cluster). A kill while it
    writes the report leaves its staging folder and no report.md; `resume` completes the run."""
    from sweeps.cli import main

    home, out = Path(env["SWEEPS_HOME"]), Path(env["SWEEPS_REPORTS"]) / "emb"
    proc = _start(env, "run", *SPACE, "--name", "emb")
    # the embedding stage has begun (cohort generated, Ray started): the smoke cohort's 2153 slices take
    # tens of seconds; a moment more and the encoder is running
    _wait(proc, lambda: "embedding stage:" in proc.log.read_text(), every=0.05)
    time.sleep(1)
    assert not list(home.glob("cache/*/meta.json")), "embedding finished before the kill"
    _kill(proc)
    debris = staging.make(out, ".report-")  # as a killed report writer leaves
    (debris / staging.OWNER).write_text(f"{os.uname().nodename} {proc.pid}\n")
    assert not (home / "runs" / "emb" / "sweep.json").exists()
    _here(env, monkeypatch)  # refused before anything slow: the `resume` command in this process
    assert main(["resume", "emb"]) == 2
    assert "no run 'emb'" in capsys.readouterr().err  # nothing to resume: the run never started

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    env = {**env, "RAY_ADDRESS": dead}
    proc = _start(env, "run", *SPACE, "--trials", "2", "--name", "emb")
    _wait(proc, lambda: not debris.exists() and bool(list(out.glob(".report-*"))), every=0.01)  # its own staging
    _kill(proc)
    assert list(out.glob(".report-*")) and not (out / "report.md").exists()
    assert not debris.exists()  # the dead run's staging folder was swept
    assert len(_records(home / "runs" / "emb")) == 2  # the run again got through its trials
    res = _cli(env, "resume", "emb", "--no-progress")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    _assert_complete(env, "emb", 2)


CTRLC_TRIALS = 16  # the Ctrl-C lands after the first of them: "k of 16" with 1 <= k < 16 (a smoke trial on a
# warm actor takes well under a second now, and the socket checks before the signal about as long as a few
# of them: fewer trials could all end before the signal arrives)


def test_ctrl_c_exits_130_marks_the_report_and_resume_completes_it_and_ray_listens_on_loopback(env):
    """Items 3 and 10: SIGINT to the sweep's process group (what Ctrl-C sends) stops it with exit 130
    and a report marked "Interrupted (k of 16 trials)"; `resume` finishes it. While trials run, every
    listening socket of the run's processes (Ray's GCS, raylet, workers, agents, dashboard) is on loopback."""
    run_dir = Path(env["SWEEPS_HOME"]) / "runs" / "ctrlc"
    proc = _start(env, "run", *SPACE, "--trials", str(CTRLC_TRIALS), "--name", "ctrlc")
    _wait(proc, lambda: len(_records(run_dir)) >= 1)
    seen = []
    for _ in range(3):  # workers come and go: look a few times
        seen += _listeners(_descendants(proc.pid))
        time.sleep(0.3)
    names = {n for _, n in seen}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), seen
    exposed = sorted({(a, n) for a, n in seen if not _loopback(a)})
    assert not exposed, f"listening beyond loopback: {exposed}"
    os.killpg(proc.pid, signal.SIGINT)
    rc = proc.wait(timeout=300)
    assert rc == 130, _output(proc)
    text = (Path(env["SWEEPS_REPORTS"]) / "ctrlc" / "report.md").read_text()
    m = re.search(rf"\*\*Interrupted \((\d+) of {CTRLC_TRIALS} trials\)\*\*", text)
    assert m and 1 <= int(m.group(1)) < CTRLC_TRIALS, text[:600]
    assert text.index("Interrupted") < text.index("## Data and method")  # at the top
    res = _cli(env, "resume", "ctrlc", "--no-progress")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    _assert_complete(env, "ctrlc", CTRLC_TRIALS)


def test_report_and_resume_survive_tunes_files_empty_or_cut_short(env, monkeypatch, capsys):
    """Item 4: a full disk leaves Tune's files empty or cut short; the report and resume read the
    trials' own records and sweep.json."""
    import shutil

    from sweeps.cli import main

    src = Path(env["SWEEPS_HOME"]) / "runs" / "ctrlc"
    assert (src / "sweep.json").exists(), "needs the run of the Ctrl-C test"
    run_dir = src.parent / "fulldisk"
    shutil.copytree(src, run_dir)
    before = _records(run_dir)
    for f in [*run_dir.glob("trial_*/params.json"), run_dir / "tuner.pkl", *run_dir.glob("experiment_state-*.json"),
              *run_dir.glob("searcher-state-*.pkl"), *run_dir.glob("search_gen_state-*.json")]:
        f.write_bytes(b"")
    for f in run_dir.glob("trial_*/result.json"):
        f.write_bytes(f.read_bytes()[:50])
    _here(env, monkeypatch)
    assert main(["report", "fulldisk"]) == 0, capsys.readouterr().err[-3000:]  # no Ray: in this process
    ours = (Path(env["SWEEPS_REPORTS"]) / "fulldisk" / "report.md").read_text()
    theirs = (Path(env["SWEEPS_REPORTS"]) / "ctrlc" / "report.md").read_text()
    strip = lambda t: re.sub(r"report written [0-9: -]+", "", t).replace("fulldisk", "ctrlc")  # noqa: E731
    assert strip(ours) == strip(theirs)
    res = _cli(env, "resume", "fulldisk", "--no-progress")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "unreadable" in res.stdout + res.stderr
    assert _records(run_dir) == before  # nothing rerun, nothing lost
    _assert_complete(env, "fulldisk", CTRLC_TRIALS)


def test_resume_refuses_a_relabelled_cohort(env, monkeypatch, capsys, caplog):
    """Item 2: relabel 13 rows of the cohort a finished run used: resume refuses, naming the labels.
    The refusal comes before Ray starts: the `resume` command runs in this process."""
    from sweeps.cli import main

    labels = next(Path(env["SWEEPS_HOME"]).glob("data/synthetic-v1/*/labels.csv"))
    original = labels.read_bytes()
    df = pd.read_csv(labels, dtype=str)
    df.loc[:12, "severity"] = df.loc[:12, "severity"].map({"none": "severe", "moderate": "none", "severe": "none"})
    _here(env, monkeypatch)
    from sweeps import runner

    started, real_start = [], runner.start_ray
    monkeypatch.setattr(runner, "start_ray", lambda *a, **k: started.append(a) or real_start(*a, **k))
    try:
        df.to_csv(labels, index=False)
        with caplog.at_level(logging.INFO):
            rc = main(["resume", "ctrlc", "--no-progress"])
    finally:
        labels.write_bytes(original)
    out = capsys.readouterr()
    assert rc == 2, out.out[-2000:] + out.err[-2000:]
    assert "the cohort changed since run 'ctrlc' started: its labels differ" in out.err
    assert "embedding cache" not in out.out + out.err + caplog.text  # refused before the embed stage
    assert started == []  # nor was Ray started (this process may hold the test session's Ray already)


KILLED_TRIALS = 6  # enough that the sweep is still running when two have finished


def _finished(run_dir: Path) -> dict[str, int]:
    """Trials whose record ``trainables.record.read_record`` reads, with metrics.json's mtime."""
    from trainables.record import METRICS, read_record

    return {ck.parent.name: (ck / METRICS).stat().st_mtime_ns
            for ck in run_dir.glob("trial_*/checkpoint_*") if read_record(ck) is not None}


def test_kill_9_during_trials_then_resume_keeps_finished_trials_and_runs_each_configuration_once(env):
    """Item 1 and the fault suite's kill during trials: kill -9 of a running sweep's process group
    after two trials finished, then `resume`: the finished trials are kept and not rerun, the run ends
    with the requested number of trials, every configuration once, the searcher's log (search.json)
    survives Tune's restore, and the report is complete and says the run was resumed once."""
    run_dir = Path(env["SWEEPS_HOME"]) / "runs" / "killed"
    # Tune snapshots its experiment state once at the start and then rarely: the trials that finish
    # before the kill are unknown to (or unfinished in) the snapshot that resume restores
    proc = _start({**env, "TUNE_GLOBAL_CHECKPOINT_S": "3600"}, "run", *SPACE, "--trials", str(KILLED_TRIALS),
                  "--name", "killed")
    _wait(proc, lambda: len(_finished(run_dir)) >= 2, every=0.1)
    _kill(proc)
    before, before_records = _finished(run_dir), _records(run_dir)
    assert 2 <= len(before) < KILLED_TRIALS and len(before_records) >= 2, (before, before_records)

    res = _cli(env, "resume", "killed", "--no-progress")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    after, after_records = _finished(run_dir), _records(run_dir)
    assert len(after) == len(after_records) == KILLED_TRIALS, (after, after_records)
    for trial, mtime in before.items():
        assert after.get(trial) == mtime, f"finished trial {trial} was rerun"
    assert all(after_records[t] == m for t, m in before_records.items())
    from sweeps.search import config_key, read_records

    keys = [config_key(r["config"]) for r in read_records(run_dir).values()]
    assert len(set(keys)) == len(keys) == KILLED_TRIALS, "a configuration was run twice"
    configs = [json.loads(next((run_dir / t).glob("checkpoint_*/config.json")).read_text()) for t in after_records]
    keys = {json.dumps({k: v for k, v in c.items() if k != "__trial_index__"}, sort_keys=True) for c in configs}
    assert len(keys) == len(configs), "a configuration was counted twice"
    search = json.loads((run_dir / "search.json").read_text())  # the searcher's log survived Tune's restore
    assert len(search["slots"]) == KILLED_TRIALS and all(s["told"] for s in search["slots"]) and search["resumes"]
    report = _assert_complete(env, "killed", KILLED_TRIALS)
    assert "- Resumed: yes, 1 time(s)" in report  # the reproduction recipe says the run was resumed


def test_tune_state_readable_reads_tunes_own_pickled_generator_state(tmp_path):
    """Tune writes search_gen_state-*.json as a cloudpickle despite its name: intact files are readable
    (so `resume` takes Tune's own restore, which resumes the trial Ctrl-C cut short), an emptied one is not."""
    import json
    import pickle

    from ray.tune.utils.util import _atomic_save

    from sweeps.runner import tune_state_readable

    (tmp_path / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    (tmp_path / "experiment_state-2026.json").write_text(json.dumps({"trial_data": []}))
    _atomic_save({"counter": 2}, str(tmp_path), "search_gen_state-2026.json", "tmp-search_gen_state-2026.json")
    assert tune_state_readable(tmp_path)
    (tmp_path / "search_gen_state-2026.json").write_bytes(b"")
    assert not tune_state_readable(tmp_path)
