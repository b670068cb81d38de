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
