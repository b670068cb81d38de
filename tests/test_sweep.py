"""End to end: smoke sweeps of every search space through Ray Tune + Optuna, in one shared Ray session."""

import json
from pathlib import Path

import pydicom
import numpy as np
import pytest

from sweeps import runner
from sweeps.spec import available_spaces, load_space


@pytest.fixture(scope="module")
def quickstart_run(ray_session, sweeps_home):
    return runner.run("quickstart", name="qs-smoke", smoke_test=True, progress=False)


def _trial_dirs(run_dir: Path):
    return [p for p in run_dir.iterdir() if p.name.startswith("trial_")]


@pytest.mark.parametrize("space", available_spaces())
def test_every_search_space_runs_a_two_trial_smoke_sweep(space, ray_session, sweeps_home, quickstart_run):
    report = quickstart_run if space == "quickstart" else runner.run(space, name=f"{space}-smoke", smoke_test=True,
                                                                     progress=False)
    run_dir = runner.runs_root() / report.parent.name
    trials = _trial_dirs(run_dir)
    grid = [len(v["grid_search"]) for v in load_space(space).space.values() if isinstance(v, dict) and "grid_search" in v]
    assert len(trials) == 2 * int(np.prod(grid))  # a grid space runs each grid point twice
    for t in trials:
        assert not (t / "error.txt").exists(), (t / "error.txt").read_text()
        assert list(t.glob("checkpoint_*/oof.npz")), "each trial saves its out-of-fold predictions"
    text = report.read_text()
    assert "## Attention vs average pooling" in text
    assert "grouped by patient" in text
    spec = load_space(space)
    if spec.target == "all":  # several targets: per-target figures, and the competition metric for RSNA
        assert "## Per target" in text
        if spec.cohort == "rsna_lumbar":
            assert "RSNA 2024 competition metric" in text and "any_severe_spinal" in text


def test_quickstart_report_compares_poolings_with_n_and_ci(quickstart_run):
    text = quickstart_run.read_text()
    section = text.split("## Attention vs average pooling")[1].split("## ")[0]
    assert "| **mean** |" in section and "| **attention** |" in section
    assert "Matched configurations: **2**" in section
    assert "[" in section and "Wilcoxon" in section
    meta = json.loads((runner.runs_root() / "qs-smoke" / "sweep.json").read_text())
    assert f"n = {meta['cohort']['samples']} samples" in text


def test_report_regenerates_identically_apart_from_timestamp(quickstart_run, tmp_path):
    from sweeps.report import write_report

    again = write_report(runner.runs_root() / "qs-smoke", tmp_path)
    strip = lambda t: "\n".join(ln for ln in t.splitlines() if "report written" not in ln)  # noqa: E731
    assert strip(again.read_text()) == strip(quickstart_run.read_text())
    pngs = sorted(p.name for p in quickstart_run.parent.glob("*.png"))
    assert pngs == ["attention.png", "confusion.png", "held_out_reliability.png", "paired.png", "roc.png"]
    for name in pngs:
        assert (tmp_path / name).read_bytes() == (quickstart_run.parent / name).read_bytes(), name
        assert f"]({name})" in quickstart_run.read_text(), "every plot is linked from the markdown"


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(ray_session, sweeps_home, tmp_path):
    space = tmp_path / "failing.py"
    space.write_text(
        "from ray import tune\nfrom sweeps.spec import SweepSpec\n"
        "SPEC = SweepSpec(name='failing', num_samples=2, compare={'pooling': ['mean', 'max']},\n"
        "    space={'encoder': 'resnet18', 'pca_dim': tune.choice([8, 16]),\n"
        "           'head': {'name': 'stacking', 'stacking': {'members': 'logreg+svc', 'inner_folds': 1000}}})\n"
    )  # valid by every declaration (the space check passes), impossible on ~30 training samples: fails in the trial
    report = runner.run(str(space), name="failing-run", smoke_test=True, progress=False)
    run_dir = runner.runs_root() / "failing-run"
    errors = [t / "error.txt" for t in _trial_dirs(run_dir)]
    assert len(errors) == 2 and all(e.exists() for e in errors), "both trials ran and both failures were recorded"
    text = report.read_text()
    failed = text.split("## Failed trials")[1]
    assert failed.count("n_splits=1000") == 2, "each failed trial's error names the bad value"
    assert "2 failed" in text


def _identities(cohort) -> set[str]:
    out = set()
    for path in cohort.instances.groupby("sample_id").head(1).path:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out |= {str(ds.PatientName), str(ds.PatientID), str(ds.PatientBirthDate)}
        out |= set(str(ds.PatientName).split("^"))
    return {s for s in out if len(s) >= 4}


def test_no_dicom_header_identity_reaches_any_output_file(quickstart_run, small_cohort, sweeps_home):
    ids = _identities(small_cohort)
    assert len(ids) > 10
    scanned = 0
    for root in (sweeps_home / "runs", sweeps_home / "cache", sweeps_home / "reports"):
        for f in root.rglob("*"):
            if f.is_file():
                blob = f.read_bytes()
                scanned += 1
                for s in ids:
                    assert s.encode() not in blob, f"{s!r} from a DICOM header found in {f}"
    assert scanned > 10


def test_a_report_that_fails_midway_leaves_nothing_half_written(quickstart_run, tmp_path, monkeypatch):
    from sweeps.report import plots
    from sweeps.report import write_report

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "confusion", boom)  # fails after the ROC and paired plots were drawn
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(runner.runs_root() / "qs-smoke", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == [], "no report, no stray plot, no staging folder"


def test_quickstart_holds_out_a_test_part_that_the_trials_never_saw_and_scores_it_once(quickstart_run):
    import numpy as np

    from sweeps import load_model
    from sweeps.finalize import finalize

    run = runner.runs_root() / "qs-smoke"
    info = json.loads((run / "model" / "test.json").read_text())
    dev, test = np.load(run / "targets.npz"), np.load(run / "model" / "test.npz")
    assert info["used"] == 1 and info["fraction"] == 0.2
    assert not set(dev["groups"]) & set(test["groups"])  # no test patient in any trial
    assert len(dev["y"]) + len(test["y"]) == json.loads((run / "sweep.json").read_text())["cohort"]["samples"]
    section = quickstart_run.read_text().split("## Held-out test")[1].split("\n## ")[0]
    for needle in ("used once", "[95% CI]", "DeLong", "Brier", "ECE", "| sex |", "| age |", "reliability"):
        assert needle in section, needle
    assert load_model(run / "model").class_names == ["none", "moderate", "severe"]
    with pytest.raises(FileExistsError, match="already used"):
        finalize("qs-smoke")
