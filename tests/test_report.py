"""The report from a run folder built by hand (the files trials write), without Ray: repeated seeds,
ensemble heads vs their best member, attention-weight plots, the reference comparison, HTML, and
byte-identical regeneration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sweeps.report import build_report, plots, write_report
from tests.conftest import shared_data
from trainables.metrics import compute_metrics

CLASSES = ("none", "moderate", "severe")


def cohort(n_patients: int = 60, seed: int = 0):
    """Targets of a small cohort: 3 classes (70/20/10), some patients with two studies."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"p{i:03d}" for i in range(n_patients)], rng.choice([1, 2], n_patients, p=[0.8, 0.2]))
    y = rng.choice(3, len(groups), p=[0.7, 0.2, 0.1])
    return y, groups


def noisy_proba(y: np.ndarray, signal: float, seed: int, k: int = 3) -> np.ndarray:
    """Probabilities that lean towards the true class by ``signal`` (0: pure noise)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (len(y), k)) + signal * np.eye(k)[y]
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def make_run(root: Path, y, groups, trials: list[dict], *, metric="f1_macro", name="run", compare=("mean", "attention"),
             **meta_extra) -> Path:
    """Write a run folder as the runner and trials do: sweep.json, targets.npz, and per trial
    ``trial_<id>/checkpoint_000000/{config.json, metrics.json, oof.npz}``. Each trial is
    ``{"id", "config", "proba": {arm: (n, C)}, "metrics": {arm: overrides}, "attn": {arm: {modality: (n, N)}}}``."""
    run = root / name
    run.mkdir(parents=True)
    counts = {c: int((y == i).sum()) for i, c in enumerate(CLASSES)}
    meta = {"space": "fake", "description": "hand-built run", "metric": metric, "mode": "max", "seed": 0, "folds": 5,
            "compare": {"pooling": list(compare)} if compare else {}, "started": "2025-01-01 00:00:00",
            "versions": {"numpy": np.__version__},
            "cohort": {"name": "synthetic", "description": "test cohort", "samples": len(y),
                       "patients": len(np.unique(groups)), "instances": 10 * len(y), "target": "severity",
                       "label_counts": counts, "classes": list(CLASSES),
                       "modalities": {"sagittal_t2": {"present": len(y), "missing": 0}}}, **meta_extra}
    (run / "sweep.json").write_text(json.dumps(meta))
    np.savez(run / "targets.npz", y=y, groups=groups.astype(str), classes=np.array(CLASSES))
    for t in trials:
        ck = run / f"trial_{t['id']}" / "checkpoint_000000"
        ck.mkdir(parents=True)
        flat = {}
        for arm, p in t["proba"].items():
            m = {**compute_metrics(y, p, CLASSES), f"{metric}_fold_sd": 0.02, **t.get("metrics", {}).get(arm, {})}
            flat.update({f"arm/{arm}/{k}": v for k, v in m.items()})
        arrays = {arm: p.astype(np.float32) for arm, p in t["proba"].items()}
        for arm, mods in t.get("attn", {}).items():
            arrays.update({f"attn__{arm}__{mod}": a for mod, a in mods.items()})
        np.savez_compressed(ck / "oof.npz", **arrays)
        (ck / "config.json").write_text(json.dumps(t["config"], sort_keys=True))
        (ck / "metrics.json").write_text(json.dumps(flat, sort_keys=True))
    return run


def config(head="logreg", **kw) -> dict:
    return {"encoder": "resnet18", "preprocessing": "grayscale_norm", "pca_dim": 16, "sampling": "none",
            "tabular": False, "fusion": "concat", "head": head, **kw}


def paired_trials(y, n: int, seed: int = 0) -> list[dict]:
    """``n`` trials with a mean and an attention arm (attention a little better)."""
    heads = ["logreg", "svc", "lightgbm", "mlp"]
    return [{"id": f"t{i:02d}", "config": config(heads[i % 4], pca_dim=16 + i),
             "proba": {"mean": noisy_proba(y, 1.0, seed + 2 * i), "attention": noisy_proba(y, 2.0, seed + 2 * i + 1)}}
            for i in range(n)]


def section_text(text: str, title: str) -> str:
    assert f"## {title}" in text, f"no section {title!r}"
    return text.split(f"## {title}")[1].split("\n## ")[0]


def _strip_time(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if "report written" not in ln)


# -- statistics -------------------------------------------------------------------------------
def test_bootstrap_metrics_equal_the_metrics_of_the_explicit_patient_resample():
    from sweeps.report.stats import resample_weights, weighted_scores

    y, groups = cohort(80, 3)
    proba = noisy_proba(y, 0.8, 1)
    proba[:, 1] = np.round(proba[:, 1], 1)  # ties in the scores
    _, inv = np.unique(groups, return_inverse=True)
    W = next(resample_weights(groups, 30, 0))
    for w in W:
        assert all(len(set(w[inv == p])) == 1 for p in range(inv.max() + 1)), "a patient's samples go together"
        idx = np.repeat(np.arange(len(y)), w.astype(int))
        ref = compute_metrics(y[idx], proba[idx], CLASSES)
        for m in ("accuracy", "f1_macro", "auc_macro", "balanced_accuracy"):
            assert abs(weighted_scores(m, y, proba, w[None])[0] - ref[m]) < 1e-12, m


def test_per_class_recall_is_reported_in_class_order(tmp_path):
    y, groups = cohort()
    always_none = np.tile([0.8, 0.1, 0.1], (len(y), 1))
    trials = [{"id": "t0", "config": config(), "proba": {"mean": always_none}}]
    text = build_report(make_run(tmp_path, y, groups, trials, compare=None))
    n0, n1, n2 = (int((y == c).sum()) for c in range(3))
    assert f"none 1.000 (n={n0}), moderate 0.000 (n={n1}), severe 0.000 (n={n2})." in text


# -- repeated seeds ---------------------------------------------------------------------------
def test_repeated_seeds_are_grouped_into_mean_and_sd_next_to_each_configuration(tmp_path):
    y, groups = cohort()
    f1 = {"a": [0.60, 0.64, 0.62], "b": [0.70, 0.50, 0.60]}  # b has the best single seed, a the best mean
    trials = []
    for name, head in (("a", "logreg"), ("b", "svc")):
        for r, score in enumerate(f1[name]):
            trials.append({"id": f"{name}{r}", "config": config(head, __trial_index__=r),
                           "proba": {"mean": noisy_proba(y, 1.0, r)}, "metrics": {"mean": {"f1_macro": score}}})
    run = make_run(tmp_path, y, groups, trials, compare=None)
    text = build_report(run)
    top = section_text(text, "Top configurations")
    assert "over seeds: mean ± SD (n)" in top
    assert "0.620 ± 0.020 (n=3)" in top and "0.600 ± 0.100 (n=3)" in top
    lines = [ln for ln in top.splitlines() if ln.startswith("| 1 ") or ln.startswith("| 2 ") or ln.startswith("| 3 ")]
    assert len(lines) == 2, "each configuration once, not once per seed"
    assert "head=logreg" in lines[0], "ranked by the mean over seeds, not the best seed"
    by_head = section_text(text, "By head")
    assert "seeds 0.620 ± 0.020 (n=3)" in by_head and "seeds 0.600 ± 0.100 (n=3)" in by_head
    assert "Repeated seeds" in text


def test_without_repeats_the_report_shows_nothing_about_seeds(tmp_path):
    y, groups = cohort()
    trials = paired_trials(y, 4)
    trials.append({**trials[0], "id": "dup"})  # the searcher proposed a config twice: not a repeat
    text = build_report(make_run(tmp_path, y, groups, trials))
    assert "seeds" not in text.lower()
    assert "± " not in text


# -- ensemble heads vs their best member ------------------------------------------------------
def test_ensemble_heads_are_compared_with_their_best_matched_member(tmp_path):
    y, groups = cohort()
    p = noisy_proba(y, 1.0, 0)
    stack = {"name": "stacking", "stacking": {"members": "logreg+svc"}}
    trials = []
    # three matched settings (pca 8, 16, 32); the ensemble beats its best member twice and loses once
    for pca, ens, lr, sv, lgb in ((8, 0.70, 0.60, 0.65, 0.90), (16, 0.62, 0.61, 0.55, 0.95), (32, 0.50, 0.58, 0.52, 0.99)):
        for head, score in ((stack, ens), ("logreg", lr), ("svc", sv), ("lightgbm", lgb)):  # lightgbm: not a member
            trials.append({"id": f"{_name(head)}{pca}", "config": config(head, pca_dim=pca), "proba": {"mean": p},
                           "metrics": {"mean": {"f1_macro": score}}})
    trials.append({"id": "lonely", "config": config(stack, pca_dim=64), "proba": {"mean": p},  # no member at pca 64
                   "metrics": {"mean": {"f1_macro": 0.9}}})
    text = build_report(make_run(tmp_path, y, groups, trials, compare=None))
    sec = section_text(text, "Ensemble heads vs their best member")
    row = next(ln for ln in sec.splitlines() if ln.startswith("| `stacking(logreg+svc)`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # differences vs the best member (not lightgbm): 0.70-0.65, 0.62-0.61, 0.50-0.58
    assert cells[1] == "3" and cells[2] == "0.010" and cells[3] == "2/0/1", cells
    assert cells[5] == "1", "the ensemble without a matched member is counted, not paired"


def _name(head) -> str:
    return head if isinstance(head, str) else head["name"]


def test_no_ensemble_heads_no_ensemble_section(tmp_path):
    y, groups = cohort()
    text = build_report(make_run(tmp_path, y, groups, paired_trials(y, 3)))
    assert "Ensemble heads vs their best member" not in text


# -- attention weights ------------------------------------------------------------------------
def _attention(n: int, n_max: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, n_max + 1, n)
    w = rng.random((n, n_max))
    w[np.arange(n_max)[None, :] >= lengths[:, None]] = np.nan  # padding
    return w / np.nansum(w, 1, keepdims=True)


def test_attention_weights_are_plotted_for_two_severe_and_two_other_samples(tmp_path, monkeypatch):
    y, groups = cohort()
    trials = paired_trials(y, 3)
    attn = _attention(len(y), 12, 0)
    trials[1]["attn"] = {"attention": {"sagittal_t2": attn}}
    trials[1]["metrics"] = {"attention": {"f1_macro": 0.99}}  # the best attention trial
    trials[2]["attn"] = {"attention": {"sagittal_t2": _attention(len(y), 12, 1)}}
    run = make_run(tmp_path, y, groups, trials)
    seen = {}
    real = plots.attention

    def spy(panels, title, out, **kw):
        seen["panels"], seen["title"] = panels, title
        return real(panels, title, out, **kw)

    monkeypatch.setattr(plots, "attention", spy)
    out = write_report(run, tmp_path / "out")
    text = out.read_text()
    assert "](attention.png)" in section_text(text, "Attention over slices")
    assert (tmp_path / "out" / "attention.png").stat().st_size > 1000
    assert "trial t01" in seen["title"]
    other_classes = {y[int(title.split()[1].rstrip(":"))] for title, _ in seen["panels"][2:]}
    assert other_classes == {0, 1}, "one of each other class"
    proba = trials[1]["proba"]["attention"]
    assert len(seen["panels"]) == 4
    for k, (title, weights) in enumerate(seen["panels"]):
        i = int(title.split()[1].rstrip(":"))
        if k < 2:
            assert y[i] == 2 and proba[i].argmax() == 2, "first two: correctly predicted samples of the most severe class"
        else:
            assert y[i] != 2 and proba[i].argmax() == y[i], "then two correctly predicted samples of the other classes"
        w = weights["sagittal_t2"]
        assert len(w) == int(np.isfinite(attn[i]).sum()) and np.allclose(w, attn[i][np.isfinite(attn[i])]), \
            "the sample's own weights, padding dropped"


def test_without_attention_arrays_there_is_no_attention_section(tmp_path):
    y, groups = cohort()
    out = write_report(make_run(tmp_path, y, groups, paired_trials(y, 3)), tmp_path / "out")
    assert "Attention over slices" not in out.read_text()
    assert not (tmp_path / "out" / "attention.png").exists()


# -- reference comparison ---------------------------------------------------------------------
def test_reference_comparison_sets_the_seed_results_beside_ours_with_caveats(tmp_path):
    data = shared_data()
    if data is None or not (data / "seed-results" / "model_results.csv").exists():
        pytest.skip("seed-results not present: set SWEEPS_SHARED_DATA")
    ref = data / "seed-results" / "model_results.csv"
    y, groups = cohort()
    trials = paired_trials(y, 4)
    trials.append({"id": "bx", "config": config({"name": "bagging", "bagging": {"base": "xgboost"}}),
                   "proba": {"mean": noisy_proba(y, 1.0, 9), "attention": noisy_proba(y, 1.5, 10)}})
    run = make_run(tmp_path, y, groups, trials, reference=str(ref))
    sec = section_text(build_report(run), "Reference comparison")
    lines = sec.splitlines()
    svc = lines.index(next(ln for ln in lines if ln.startswith("| `SVC`")))
    assert "best of 12 by macro-F1 | 12 | 0.909 | 0.642 | 0.636 |" in lines[svc], "their best SVC row (90.94%, 64.20%, 63.60%)"
    assert "ours: `svc`, best (trial t01)" in lines[svc + 1] and "[" in lines[svc + 1]
    bag = lines.index(next(ln for ln in lines if ln.startswith("| `Ensemble(XBGBagging)`")))
    assert "`bagging(xgboost)`, best (trial bx)" in lines[bag + 1]
    xgb = lines.index(next(ln for ln in lines if ln.startswith("| `XGBoost`")))
    assert "not run in this sweep" in lines[xgb + 1]
    aal = lines.index(next(ln for ln in lines if ln.startswith("| `AAL`")))
    assert "`attention`" in lines[aal + 1]
    mn = lines.index(next(ln for ln in lines if ln.startswith("| `MN152`")))
    assert "no counterpart" in lines[mn + 1]
    for caveat in ("untrained", "Different cohort and labels", "folds where it was defined", "test-set size"):
        assert caveat in sec, caveat


def test_a_generic_reference_table_and_the_argument_override(tmp_path):
    y, groups = cohort()
    ref = tmp_path / "theirs.csv"
    ref.write_text("head,pooling,accuracy,f1_macro,auc_macro\nlogreg,mean,0.8,0.55,0.7\nlogreg,attention,0.85,0.6,\n")
    run = make_run(tmp_path, y, groups, paired_trials(y, 4))
    assert "Reference comparison" not in build_report(run)
    sec = section_text(build_report(run, reference=ref), "Reference comparison")
    assert "| `logreg` | theirs: best of 2 by macro-F1 | 2 | 0.850 | 0.600 | n/a |" in sec
    assert "ours: `logreg`, best (trial t00)" in sec


def test_a_bad_reference_is_named_with_file_line_and_column(tmp_path):
    from sweeps.report.reference import ReferenceError

    y, groups = cohort()
    run = make_run(tmp_path, y, groups, paired_trials(y, 2))
    with pytest.raises(ReferenceError, match="nope.csv not found"):
        build_report(run, reference=tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("head,accuracy,f1_macro\nsvc,0.8,0.5\nlogreg,high,0.4\n")
    with pytest.raises(ReferenceError, match=r"bad.csv, line 3, column 'accuracy': 'high'"):
        build_report(run, reference=bad)



def test_the_space_check_rejects_a_bad_reference_before_the_run(tmp_path):
    from sweeps.spec import SpecError, SweepSpec

    bad = tmp_path / "bad.csv"
    bad.write_text("head,accuracy\nsvc,high\n")
    space = {"encoder": "resnet18", "pooling": "mean", "head": "logreg"}
    with pytest.raises(SpecError, match=r"space 'x': reference: reference file .*bad.csv, line 2, column 'accuracy'"):
        SweepSpec(name="x", space=space, reference=str(bad)).validate()
    ok = tmp_path / "ok.csv"
    ok.write_text("head,accuracy\nsvc,0.8\n")
    SweepSpec(name="x", space=space, reference=str(ok)).validate()

# -- HTML and regeneration --------------------------------------------------------------------
def test_html_report_renders_the_tables_and_links_the_plots(tmp_path):
    y, groups = cohort()
    out = write_report(make_run(tmp_path, y, groups, paired_trials(y, 4)), tmp_path / "out", html=True)
    page = (out.parent / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "<th>pooling</th>" in page
    for png in ("roc.png", "paired.png", "confusion.png"):
        assert f'src="{png}"' in page and (out.parent / png).exists()
    assert "|---|" not in page, "tables converted, not left as markdown"


def test_html_without_the_markdown_package_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    y, groups = cohort()
    run = make_run(tmp_path, y, groups, paired_trials(y, 2))
    monkeypatch.setitem(sys.modules, "markdown", None)
    with pytest.raises(ImportError, match="pip install markdown"):
        write_report(run, tmp_path / "out", html=True)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_failing_html_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    from sweeps import report

    y, groups = cohort()
    run = make_run(tmp_path, y, groups, paired_trials(y, 3))

    def boom(*a, **k):
        raise RuntimeError("converter broke")

    monkeypatch.setattr(report, "to_html", boom)
    with pytest.raises(RuntimeError, match="converter broke"):
        write_report(run, tmp_path / "out", html=True)
    assert list((tmp_path / "out").iterdir()) == []


def test_the_same_run_gives_the_same_report_apart_from_its_timestamp(tmp_path):
    y, groups = cohort()
    trials = paired_trials(y, 6)
    trials[0]["attn"] = {"attention": {"sagittal_t2": _attention(len(y), 10, 3)}}
    trials.append({"id": "sv", "config": config({"name": "soft_voting", "soft_voting": {"members": "logreg+svc"}}),
                   "proba": {"mean": noisy_proba(y, 1.2, 50), "attention": noisy_proba(y, 2.2, 51)}})
    ref = tmp_path / "theirs.csv"
    ref.write_text("head,accuracy,f1_macro,auc_macro\nsvc,0.8,0.55,0.7\n")
    run = make_run(tmp_path, y, groups, trials, reference=str(ref))
    a = write_report(run, tmp_path / "a", html=True)
    b = write_report(run, tmp_path / "b", html=True)
    text = a.read_text()
    for title in ("Post-hoc ensembles", "Ensemble heads vs their best member", "Attention over slices",
                  "Reference comparison"):
        assert f"## {title}" in text
    assert _strip_time(text) == _strip_time(b.read_text())
    assert _strip_time((a.parent / "report.html").read_text()) == _strip_time((b.parent / "report.html").read_text())
    pngs = sorted(p.name for p in a.parent.glob("*.png"))
    assert pngs == ["attention.png", "confusion.png", "paired.png", "roc.png"]
    for name in pngs:
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes(), name
