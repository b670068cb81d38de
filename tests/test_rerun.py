"""The report's reproduction recipe and ``python -m sweeps rerun``: the recorded command, space hash,
fingerprint, seed, versions and resumes; a rerun's verdict (identical or not) from the two reports;
refusals before anything slow."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sweeps import runner
from sweeps.report import build_report
from sweeps.rerun import RerunError, normalise, plan, verdict
from tests.test_report import cohort, config, make_run, noisy_proba, section_text


def _trials(y, ids, signal=1.0):
    return [{"id": t, "config": config(h), "proba": {"mean": noisy_proba(y, signal + 0.3 * i, i)}}
            for i, (t, h) in enumerate(zip(ids, ["logreg", "svc", "lightgbm"]))]


def test_the_recipe_shows_the_recorded_command_hash_fingerprint_seed_versions_and_resumes(tmp_path):
    y, groups = cohort()
    opts = {"argv": ["python", "-m", "sweeps", "run", "quickstart", "--trials", "3"], "space_arg": "quickstart",
            "space_sha256": "ab" * 32, "num_samples": 3}
    run = make_run(tmp_path, y, groups, _trials(y, ["a", "b", "c"]), compare=None, options=opts, fingerprint="f00d",
                   concurrency=2, resumed=["2025-01-02 03:04:05"])
    body = section_text(build_report(run), "Reproduce this run")
    assert "Command, as typed: `python -m sweeps run quickstart --trials 3`" in body
    assert f"SHA-256 of its file `{'ab' * 32}`" in body and "Cohort fingerprint `f00d`; seed 0, 5 folds" in body
    assert "3 trials, 2 at a time." in body and f"numpy {np.__version__}" in body
    assert "Resumed: yes, 1 time(s) (2025-01-02 03:04:05)" in body
    assert "`python -m sweeps rerun run`" in body
    api = make_run(tmp_path, y, groups, _trials(y, ["a"]), compare=None, name="api",
                   options={"space_arg": "quickstart", "num_samples": 4, "smoke": True, "track": ["tensorboard"]})
    body = section_text(build_report(api), "Reproduce this run")
    assert "equivalent: `python -m sweeps run quickstart --trials 4 --smoke --track tensorboard`" in body
    assert "Resumed: no." in body and "SHA-256 of its file not recorded" in body


def test_the_verdict_ignores_run_names_trial_ids_and_times_but_not_numbers(tmp_path):
    y, groups = cohort()
    a = make_run(tmp_path, y, groups, _trials(y, ["aaaa1111", "aaaa2222", "aaaa3333"]), compare=None, name="orig")
    same = make_run(tmp_path, y, groups, _trials(y, ["bbbb1111", "bbbb2222", "bbbb3333"]), compare=None, name="orig-rerun",
                    started="2031-05-05 05:05:05")
    v = verdict(a, same)
    assert v["identical"] and v["differences"] == 0 and v["run"] == "orig"
    other = make_run(tmp_path, y, groups, _trials(y, ["cccc1111", "cccc2222", "cccc3333"], signal=1.5), compare=None,
                     name="orig-rerun2")
    v = verdict(a, other)
    assert not v["identical"] and v["differences"] > 0
    assert any(ln.startswith("+") and "head=" in ln for ln in v["first_differences"])  # the tables moved
    lines = normalise("# Sweep report: x\nStarted 2025-01-01 00:00:00; report written now\n| t1 | x |\n"
                      "## Reproduce this run\n- cmd\n## Next\nfine", ["x"], ["t1"])
    assert lines == ["| <trial> | <run> |", "", "## Next", "fine"]


def test_a_rerun_is_refused_for_an_unfinished_run_or_an_edited_space_file(tmp_path):
    y, groups = cohort()
    space = tmp_path / "myspace.py"
    space.write_text("# a space\n")
    run = make_run(tmp_path, y, groups, _trials(y, ["a"]), compare=None, name="r",
                   options={"space_arg": str(space), "space_sha256": runner.space_sha256(str(space))})
    assert plan(run)["space"] == str(space) and plan(run)["early_stop"] is False
    stopping = make_run(tmp_path, y, groups, _trials(y, ["a"]), compare=None, name="r-es",
                        options={"space_arg": str(space), "early_stop": True})
    assert plan(stopping)["early_stop"] is True, "a rerun stops trials early as the original did"
    space.write_text("# edited\n")
    with pytest.raises(RerunError, match="myspace.py changed since run 'r'"):
        plan(run)
    (run / "trial_late").mkdir()  # a trial folder without a checkpoint or error: unfinished
    with pytest.raises(RerunError, match=r"run 'r' is unfinished \(1 trial\(s\)\): finish it with `python -m sweeps resume r`"):
        plan(run)


def test_a_smoke_run_reruns_into_a_new_run_with_identical_tables(ray_session, sweeps_home, capsys):
    from sweeps import cli

    assert cli.main(["run", "quickstart", "--smoke", "--name", "rr-orig", "--no-progress"]) == 0
    orig = runner.runs_root() / "rr-orig"
    meta = json.loads((orig / "sweep.json").read_text())
    assert meta["options"]["argv"] == ["python", "-m", "sweeps", "run", "quickstart", "--smoke", "--name", "rr-orig",
                                       "--no-progress"]
    assert meta["options"]["space_sha256"] == runner.space_sha256("quickstart") and meta["concurrency"] >= 1
    capsys.readouterr()
    assert cli.main(["rerun", "rr-orig", "--no-progress"]) == 0, capsys.readouterr().out
    assert "the report came out identical" in capsys.readouterr().out
    new = runner.runs_root() / "rr-orig-rerun"
    meta2 = json.loads((new / "sweep.json").read_text())
    assert meta2["rerun_of"]["identical"] and meta2["options"]["num_samples"] == meta["options"]["num_samples"]
    report = (runner.reports_root() / "rr-orig-rerun" / "report.md").read_text()
    assert "This run repeats `rr-orig`: its report came out **identical**" in report
    assert "Command, as typed: `python -m sweeps rerun rr-orig --no-progress`" in report


def test_the_report_does_not_depend_on_tunes_random_trial_ids(tmp_path):
    """The same trials under other (random) ids, in another alphabetical order: the same report once
    ids and names are masked (rows are ordered by content; failed on the id-ordered rows)."""
    y, groups = cohort()
    heads = ["logreg", "svc", "lightgbm", "mlp", "logreg", "svc"]
    trials = [{"config": config(h, pca_dim=16 * (1 + i % 2), sampling=("none", "smote", "class_weight")[i // 2]), "proba": {"mean": noisy_proba(y, 0.5 + 0.4 * i, i),
                                                                         "attention": noisy_proba(y, 0.7 + 0.4 * i, 50 + i)}}
              for i, h in enumerate(heads)]
    space = {"head": {"choice": ["logreg", "svc", "lightgbm", "mlp"]}, "pca_dim": {"choice": [16, 32]}}
    a = make_run(tmp_path, y, groups, [{**t, "id": f"a{i}"} for i, t in enumerate(trials)], name="one", space_repr=space)
    b = make_run(tmp_path, y, groups, [{**t, "id": f"b{9 - i}"} for i, t in enumerate(trials)], name="two", space_repr=space)
    text = build_report(a)
    assert "## Which choices mattered" in text and "## Post-hoc ensembles" in text
    v = verdict(a, b)
    assert v["identical"], v["first_differences"]
