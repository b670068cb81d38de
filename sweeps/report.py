"""The markdown report of a run, from Tune's trial folders and the out-of-fold predictions each
trial saved. It reads files only (no Ray session), so it works on finished and interrupted runs
alike, and the same run always gives the same report apart from its timestamp (the bootstrap is
seeded).

Every figure carries n and a 95% confidence interval: a percentile bootstrap that resamples
patients (all of a patient's studies together) from the out-of-fold predictions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

N_BOOT = 1000
SHOWN = ("accuracy", "f1_macro", "auc_macro")
LABEL = {"accuracy": "accuracy", "f1_macro": "macro-F1", "auc_macro": "macro-AUC", "balanced_accuracy": "bal. acc."}
DIMENSIONS = ("head", "sampling", "pca_dim", "tabular", "encoder", "preprocessing", "fusion")


@dataclass
class Row:
    """One (trial, pooling arm) evaluation."""

    trial: str
    arm: str
    config: dict
    metrics: dict
    proba: np.ndarray | None


# -- fast metrics for the bootstrap (same definitions as trainables.metrics) ----------------------
def _fast(metric: str, y: np.ndarray, proba: np.ndarray, k: int) -> float:
    pred = proba.argmax(1)
    if metric == "accuracy":
        return float((pred == y).mean())
    if metric in ("f1_macro", "balanced_accuracy"):
        cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
        tp = np.diag(cm).astype(float)
        if metric == "balanced_accuracy":
            support = cm.sum(1)
            return float(np.mean(tp[support > 0] / support[support > 0]))
        denom = cm.sum(0) + cm.sum(1)
        f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
        return float(f1.mean())
    if metric == "auc_macro":
        from scipy.stats import rankdata

        aucs = []
        for c in range(k):
            pos = y == c
            npos, nneg = pos.sum(), (~pos).sum()
            if npos == 0 or nneg == 0:
                continue
            r = rankdata(proba[:, c])
            aucs.append((r[pos].sum() - npos * (npos + 1) / 2) / (npos * nneg))
        return float(np.mean(aucs)) if aucs else float("nan")
    raise KeyError(metric)


def patient_bootstrap(y, proba, groups, metrics=SHOWN, n_boot=N_BOOT, seed=0) -> dict[str, tuple[float, float]]:
    """95% percentile CIs, resampling patients with replacement."""
    rng = np.random.default_rng(seed)
    k = proba.shape[1]
    uniq, inv = np.unique(groups, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(len(uniq)))
    ends = np.append(starts[1:], len(inv))
    vals = {m: [] for m in metrics}
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), len(uniq))
        idx = np.concatenate([order[starts[p] : ends[p]] for p in pick])
        for m in metrics:
            v = _fast(m, y[idx], proba[idx], k)
            if np.isfinite(v):
                vals[m].append(v)
    return {m: (float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))) if v else (np.nan, np.nan)
            for m, v in vals.items()}


# -- reading a run ----------------------------------------------------------------------------
def read_run(run_dir: Path):
    meta = json.loads((run_dir / "sweep.json").read_text())
    t = np.load(run_dir / "targets.npz", allow_pickle=False)
    rows, failed, unfinished = [], [], []
    for d in sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("trial_")):
        trial = d.name.split("_", 1)[1]  # trial_<id>
        ckpts = sorted(d.glob("checkpoint_*/metrics.json"))
        params = json.loads((d / "params.json").read_text()) if (d / "params.json").exists() else {}
        if (d / "error.txt").exists():
            failed.append((trial, params, (d / "error.txt").read_text()))
            continue
        if not ckpts:
            unfinished.append((trial, params))
            continue
        ck = ckpts[-1].parent
        config = json.loads((ck / "config.json").read_text())
        result = json.loads((ck / "metrics.json").read_text())
        oof = np.load(ck / "oof.npz")
        arms = sorted({k.split("/")[1] for k in result if k.startswith("arm/")})
        for arm in arms:
            m = {k.split("/", 2)[2]: v for k, v in result.items() if k.startswith(f"arm/{arm}/")}
            rows.append(Row(trial, arm, config, m, oof[arm] if arm in oof.files else None))
    return meta, t, rows, failed, unfinished


def _dim_value(config: dict, dim: str):
    v = config.get(dim, "")
    if isinstance(v, dict):
        return v.get("name", "")
    return v


def _matched_key(config: dict) -> str:
    return json.dumps({k: v for k, v in config.items() if k != "pooling"}, sort_keys=True)


# -- formatting -------------------------------------------------------------------------------
def _f(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _ci(v: float, ci: tuple[float, float]) -> str:
    return f"{_f(v)} [{_f(ci[0])}, {_f(ci[1])}]"


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _config_str(config: dict) -> str:
    parts = []
    for dim in DIMENSIONS:
        if dim in config:
            parts.append(f"{dim}={_dim_value(config, dim)}")
    return ", ".join(parts)


# -- the report -------------------------------------------------------------------------------
def build_report(run_dir: Path, plot_dir: Path | None = None) -> str:
    """The report's markdown; with ``plot_dir``, PNG plots are written there and linked."""
    run_dir = Path(run_dir)
    meta, t, rows, failed, unfinished = read_run(run_dir)
    y, groups = t["y"], t["groups"]
    metric, mode = meta["metric"], meta["mode"]
    better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
    c = meta["cohort"]
    n, n_pat = len(y), len(np.unique(groups))
    cis: dict[tuple[str, str], dict] = {}

    def ci_of(r: Row) -> dict:
        key = (r.trial, r.arm)
        if key not in cis:
            cis[key] = patient_bootstrap(y, r.proba, groups) if r.proba is not None else {m: (np.nan, np.nan) for m in SHOWN}
        return cis[key]

    L = [f"# Sweep report: {run_dir.name}", ""]
    L.append(f"Space **{meta['space']}**: {meta.get('description', '')}. Objective: {LABEL.get(metric, metric)} ({mode}). "
             f"Started {meta['started']}; report written {time.strftime('%Y-%m-%d %H:%M:%S')}.")
    L.append("")
    L.append("## Data and method")
    L.append("")
    L.append(f"- Cohort **{c['name']}**: {c['description']}.")
    L.append(f"- n = {c['samples']} samples (studies) from {c['patients']} patients, {c['instances']} image instances. "
             f"Target `{c['target']}`: " + ", ".join(f"{k} {v}" for k, v in c["label_counts"].items()) + ".")
    L.append("- Modalities (samples present / missing): " + ", ".join(
        f"{m} {v['present']}/{v['missing']}" for m, v in c["modalities"].items()) + ".")
    L.append(f"- Evaluation: {meta['folds']}-fold stratified cross-validation grouped by patient (no patient on both "
             f"sides), seed {meta['seed']}. Every metric comes from out-of-fold predictions over all n = {n} samples. "
             f"Everything learned (standardisation, PCA, attention pooling, tabular imputation, resampling, head) is "
             f"fitted on each fold's training part only.")
    L.append(f"- Brackets are 95% confidence intervals: percentile bootstrap over the {n_pat} patients "
             f"({N_BOOT} resamples, seed 0) of the out-of-fold predictions. They reflect sampling of patients, not the "
             f"selection of the best configuration among many (a best-of-sweep figure is optimistic).")
    L.append(f"- Trials: {len({r.trial for r in rows})} finished, {len(failed)} failed, {len(unfinished)} unfinished. "
             f"Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".")
    L.append("")

    compare = meta.get("compare", {}).get("pooling")
    poolings = compare or sorted({r.arm for r in rows})
    L.append("## Attention vs average pooling")
    L.append("")
    if not rows:
        L.append("No finished trials yet.")
    else:
        by_key: dict[str, dict[str, Row]] = {}
        for r in rows:  # paired design: a trial is a pair; otherwise match on every other setting
            by_key.setdefault(r.trial if compare else _matched_key(r.config), {})[r.arm] = r
        matched = {k: v for k, v in by_key.items() if all(p in v for p in poolings)}
        design = ("every trial evaluated each pooling on the same folds with all other settings equal (paired design)"
                  if compare else "configurations that were run with every pooling")
        L.append(f"Matched configurations: **{len(matched)}** ({design}). For each pooling: its best configuration "
                 f"(by {LABEL.get(metric, metric)}) with 95% CIs, and medians over the matched configurations.")
        L.append("")
        hdr = ["pooling", "matched configs"] + [f"best {LABEL[m]} [95% CI]" for m in SHOWN] + [f"median {LABEL[m]}" for m in SHOWN]
        table = []
        for p in poolings:
            rs = [v[p] for v in matched.values()]
            if not rs:
                continue
            best = rs[0]
            for r in rs[1:]:
                if better(r.metrics[metric], best.metrics[metric]):
                    best = r
            ci = ci_of(best)
            table.append([f"**{p}**", len(rs)] + [_ci(best.metrics[m], ci[m]) for m in SHOWN]
                         + [_f(np.median([r.metrics[m] for r in rs])) for m in SHOWN])
        L.append(_table(hdr, table))
        L.append("")
        if len(poolings) >= 2 and len(matched) >= 1:
            L.append(_paired_section(matched, poolings, metric))
        L.append("")
        if plot_dir is not None and matched:
            from . import plots

            bests = {}
            for p in poolings:
                rs = [v[p] for v in matched.values() if v[p].proba is not None]
                if rs:
                    bests[p] = (max if mode == "max" else min)(rs, key=lambda r: r.metrics[metric])
            classes = list(c["classes"])
            links = [plots.roc({f"best {p} (trial {r.trial})": r.proba for p, r in bests.items()}, y, classes, plot_dir)]
            if len(poolings) >= 2:
                base = "mean" if "mean" in poolings else poolings[0]
                other = next(p for p in poolings if p != base)
                links.append(plots.paired(np.array([v[base].metrics[metric] for v in matched.values()]),
                                          np.array([v[other].metrics[metric] for v in matched.values()]),
                                          base, other, LABEL.get(metric, metric), plot_dir))
            L.append(" ".join(f"![{n}]({n})" for n in links))
            L.append("")
            L.append("ROC curves are one-vs-rest per class, from the out-of-fold predictions of the best configuration "
                     "of each pooling; the paired plot shows every matched configuration (above the diagonal: the "
                     "second pooling scored higher).")
            L.append("")
    for dim in ("head", "sampling", "pca_dim", "tabular"):
        vals = sorted({str(_dim_value(r.config, dim)) for r in rows})
        if len(vals) < 2:
            continue
        L.append(f"## By {dim}")
        L.append("")
        L.append(f"{LABEL.get(metric, metric)} per {dim} and pooling: best [95% CI] / median over that value's trials (n trials).")
        L.append("")
        hdr = [dim] + [f"{p}" for p in poolings]
        table = []
        for v in vals:
            cells = [f"`{v}`"]
            for p in poolings:
                rs = [r for r in rows if r.arm == p and str(_dim_value(r.config, dim)) == v]
                if not rs:
                    cells.append("—")
                    continue
                best = max(rs, key=lambda r: r.metrics[metric]) if mode == "max" else min(rs, key=lambda r: r.metrics[metric])
                ci = ci_of(best)[metric]
                cells.append(f"{_ci(best.metrics[metric], ci)} / {_f(np.median([r.metrics[metric] for r in rs]))} (n={len(rs)})")
            table.append(cells)
        L.append(_table(hdr, table))
        L.append("")
    L.append("## Top configurations")
    L.append("")
    top = sorted(rows, key=lambda r: r.metrics[metric], reverse=(mode == "max"))[:10]
    if top:
        hdr = ["#", "trial", "pooling", "configuration"] + [f"{LABEL[m]} [95% CI]" for m in SHOWN] + [f"{LABEL[metric]} fold SD"]
        table = []
        for i, r in enumerate(top, 1):
            ci = ci_of(r)
            table.append([i, r.trial, r.arm, _config_str(r.config)] + [_ci(r.metrics[m], ci[m]) for m in SHOWN]
                         + [_f(r.metrics.get(f"{metric}_fold_sd", np.nan))])
        L.append(_table(hdr, table))
        L.append("")
        best = top[0]
        rec = {k[len("recall_"):]: v for k, v in best.metrics.items() if k.startswith("recall_")}
        L.append(f"Per-class recall of the top configuration (n = {n}): " + ", ".join(
            f"{k} {_f(v)} (n={int((y == i).sum())})" for i, (k, v) in enumerate(rec.items())) + ".")
        L.append("")
        if plot_dir is not None and best.proba is not None:
            from . import plots

            name = plots.confusion(y, best.proba, list(c["classes"]), f"top: {best.arm}, trial {best.trial}", plot_dir)
            L.append(f"![confusion matrix of the top configuration]({name})")
            L.append("")
    L.append("## Failed trials")
    L.append("")
    if failed:
        table = []
        for trial, config, err in failed:
            lines = [ln for ln in err.strip().splitlines() if ln.strip()]
            table.append([trial, _config_str(config), "`" + (lines[-1] if lines else "?").replace("|", "\\|")[:300] + "`"])
        L.append(_table(["trial", "configuration", "error (last line; full text in the trial's error.txt)"], table))
    else:
        L.append("None.")
    L.append("")
    if unfinished:
        L.append(f"Unfinished trials (the run was interrupted; `python -m sweeps resume {run_dir.name}` finishes them): "
                 + ", ".join(t for t, _ in unfinished) + ".")
        L.append("")
    return "\n".join(L)


def _paired_section(matched: dict, poolings: list[str], metric: str) -> str:
    from scipy.stats import wilcoxon

    base = "mean" if "mean" in poolings else poolings[0]
    out = [f"Paired differences against `{base}` over the matched configurations ({LABEL.get(metric, metric)}):", ""]
    table = []
    for p in poolings:
        if p == base:
            continue
        d = np.array([v[p].metrics[metric] - v[base].metrics[metric] for v in matched.values()])
        wins, ties, losses = int((d > 1e-12).sum()), int((np.abs(d) <= 1e-12).sum()), int((d < -1e-12).sum())
        try:
            pval = wilcoxon(d).pvalue if np.any(np.abs(d) > 1e-12) and len(d) >= 2 else np.nan
        except ValueError:
            pval = np.nan
        table.append([f"{p} − {base}", len(d), _f(float(np.median(d))), f"{wins}/{ties}/{losses}",
                      "n/a" if not np.isfinite(pval) else f"{pval:.3g}"])
    out.append(_table(["comparison", "n pairs", "median difference", "wins/ties/losses", "Wilcoxon signed-rank p"], table))
    out.append("")
    out.append("The pairs share folds, so the test is paired; configurations chosen by the searcher are not independent "
               "draws, so read the p-value as descriptive.")
    return "\n".join(out)


def write_report(run_dir: Path, out_dir: Path) -> Path:
    """Write ``out_dir/report.md`` atomically (temp file, then rename), with its PNG plots beside it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out_dir))  # plots and text written here first
    try:
        (staging / "report.md").write_text(build_report(Path(run_dir), plot_dir=staging))
        for f in sorted(staging.iterdir(), key=lambda p: p.name == "report.md"):  # report.md last
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / "report.md"
