"""``python -m sweeps compare``: runs' best configurations with CIs, paired differences on the same
patients, and a clear refusal where the runs do not share cohort, folds and seed (hand-built run
folders, no Ray)."""

from __future__ import annotations

import json

import numpy as np

from sweeps import cli
from sweeps.compare import compare
from sweeps.report.fmt import ci, signed_ci
from sweeps.report.stats import paired_bootstrap, patient_bootstrap
from tests.test_report import cohort, config, make_run, noisy_proba


def two_runs(tmp_path, **meta_b):
    y, groups = cohort()
    pa, pb_weak, pb = noisy_proba(y, 1.0, 1), noisy_proba(y, 0.5, 2), noisy_proba(y, 2.5, 3)
    a = make_run(tmp_path, y, groups, [{"id": "a1", "config": config("logreg"), "proba": {"mean": pa}}], compare=None,
                 name="run-a", fingerprint="fp1")
    b = make_run(tmp_path, y, groups, [{"id": "b1", "config": config("svc"), "proba": {"mean": pb_weak}},
                                       {"id": "b2", "config": config("lightgbm"), "proba": {"mean": pb}}],
                 compare=None, name="run-b", **{"fingerprint": "fp1", **meta_b})
    return a, b, y, groups, pa, pb


def test_the_table_shows_each_runs_best_with_the_reports_cis_and_the_paired_difference(tmp_path):
    a, b, y, groups, pa, pb = two_runs(tmp_path)
    text = compare([a, b])
    table = text.split("## Paired")[0]
    row_b = next(ln for ln in table.splitlines() if ln.startswith("| `run-b`"))
    assert "| b2 | mean |" in row_b and "head=lightgbm" in row_b  # the better of run-b's two trials
    f1 = json.loads((b / "trial_b2" / "checkpoint_000000" / "metrics.json").read_text())["arm/mean/f1_macro"]
    assert ci(f1, patient_bootstrap(y, pb.astype(np.float32), groups)["f1_macro"]) in row_b
    paired = text.split("## Paired")[1]
    d = paired_bootstrap(y, pb.astype(np.float32), pa.astype(np.float32), groups, "f1_macro")
    assert d[0] > 0 and signed_ci(*d) in paired  # run-b's best is the stronger one: a positive difference
    assert "not paired" not in paired


def test_runs_on_other_folds_or_another_cohort_are_refused_with_the_reason(tmp_path):
    a, b, *_ = two_runs(tmp_path, seed=1, fingerprint="fp2")
    text = compare([a, b])
    paired = text.split("## Paired")[1]
    assert "`run-b`: not paired with `run-a`" in paired
    assert "cohort fingerprint ('fp1' vs 'fp2')" in paired and "seed (0 vs 1)" in paired
    assert "difference [95% CI]" not in paired  # no paired table at all
    assert "| `run-b` |" in text.split("## Paired")[0]  # the side-by-side table is still there


def test_other_samples_are_refused_even_with_the_same_metadata(tmp_path):
    y, groups = cohort()
    a = make_run(tmp_path, y, groups, [{"id": "a", "config": config(), "proba": {"mean": noisy_proba(y, 1, 0)}}],
                 compare=None, name="a")
    y2, g2 = cohort(seed=5)
    b = make_run(tmp_path, y2, g2, [{"id": "b", "config": config(), "proba": {"mean": noisy_proba(y2, 1, 0)}}],
                 compare=None, name="b")
    assert "they differ in samples" in compare([a, b])


def test_the_command_prints_the_table_and_names_an_unknown_run(tmp_path, capsys, monkeypatch):
    a, b, *_ = two_runs(tmp_path)
    monkeypatch.setenv("SWEEPS_RUNS", str(tmp_path))
    assert cli.main(["compare", "run-a", "run-b"]) == 0
    assert "# Comparison: run-a, run-b" in capsys.readouterr().out
    assert cli.main(["compare", "run-a", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    out = tmp_path / "cmp.md"
    assert cli.main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert out.read_text().startswith("# Comparison")
