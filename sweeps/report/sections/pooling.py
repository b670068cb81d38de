"""The "Attention vs average pooling" section: each pooling's best configuration with CIs and its
medians over the matched configurations, the paired differences against the base pooling (Wilcoxon
signed-rank), and with plots the ROC curves and the paired scatter."""

from __future__ import annotations

import numpy as np

from ..fmt import LABEL, PAIRED_HEADER, ci, label, number, paired_cells, table
from ..run import ReportOptions, Row, RunView, matched_key
from ..stats import SHOWN, paired_summary


def section(view: RunView, options: ReportOptions) -> list[str]:
    rows, metric, y, c = view.rows, view.metric, view.y, view.meta["cohort"]
    compare, poolings, plot_dir = view.compare, view.poolings, options.plot_dir
    L = ["## Attention vs average pooling", ""]
    skipped = view.meta.get("compare_skipped")
    if skipped:  # the runner found the comparison moot on this cohort and ran one arm
        L.append(f"Not compared: the space asked for {', '.join(skipped.get('pooling', []))}, but every sample has at most "
                 f"one image instance per modality, so every pooling returns that one embedding and the arms cannot "
                 f"differ. Only `{skipped.get('ran')}` was run; the best configurations are below.")
        L.append("")
        return L
    if not rows:
        L.append("No finished trials yet.")
        return L
    if not c["modalities"] or not c.get("instances") or not any("encoder" in r.config for r in rows):
        L.append("No image modality in this sweep: pooling does not apply. The best configurations are below.")
        return L
    if len(poolings) < 2:
        L.append(f"Only one pooling ({', '.join(poolings)}) was run in this sweep: no comparison; the row below is "
                 "the best configuration.")
        L.append("")
    by_key: dict[str, dict[str, Row]] = {}
    for r in rows:  # paired design: a trial is a pair; otherwise match on every other setting
        by_key.setdefault(r.trial if compare else matched_key(r.config), {})[r.arm] = r
    matched = {key: m for key, m in by_key.items() if all(p in m for p in poolings)}
    design = ("every trial evaluated each pooling on the same folds with all other settings equal (paired design)"
              if compare else "configurations that were run with every pooling")
    L.append(f"Matched configurations: **{len(matched)}** ({design}). For each pooling: its best configuration "
             f"(by {label(metric)}) with 95% CIs, and medians over the matched configurations.")
    L.append("")
    hdr = ["pooling", "matched configs"] + [f"best {LABEL[m]} [95% CI]" for m in SHOWN] + [f"median {LABEL[m]}" for m in SHOWN]
    cells = []
    for p in poolings:
        rs = [m[p] for m in matched.values()]
        if not rs:
            continue
        best = view.best(rs)
        cis = view.ci_of(best)
        cells.append([f"**{p}**", len(rs)] + [ci(best.metrics[m], cis[m]) for m in SHOWN]
                     + [number(np.median([r.metrics[m] for r in rs])) for m in SHOWN])
    L.append(table(hdr, cells))
    L.append("")
    if len(poolings) >= 2 and len(matched) >= 1:
        L += _paired(matched, poolings, metric)
    L.append("")
    if plot_dir is not None and matched:
        from ..plots import paired, roc

        bests = {}
        for p in poolings:
            rs = [m[p] for m in matched.values() if m[p].proba is not None]
            if rs:
                bests[p] = view.best(rs)
        links = ([roc({f"best {p} (trial {r.trial})": r.proba for p, r in bests.items()}, y, view.classes, plot_dir)]
                 if bests else [])  # several targets: no single ROC (see the per-target table)
        if len(poolings) >= 2:
            base = "mean" if "mean" in poolings else poolings[0]
            other = next(p for p in poolings if p != base)
            links.append(paired(np.array([m[base].metrics[metric] for m in matched.values()]),
                                np.array([m[other].metrics[metric] for m in matched.values()]),
                                base, other, label(metric), plot_dir))
        L.append(" ".join(f"![{n}]({n})" for n in links))
        L.append("")
        L.append("ROC curves are one-vs-rest per class, from the out-of-fold predictions of the best configuration "
                 "of each pooling; the paired plot shows every matched configuration (above the diagonal: the "
                 "second pooling scored higher).")
        L.append("")
    return L


def _paired(matched: dict[str, dict[str, Row]], poolings: list[str], metric: str) -> list[str]:
    """Paired differences of every pooling against the base one (``mean`` if run, else the first)."""
    base = "mean" if "mean" in poolings else poolings[0]
    out = [f"Paired differences against `{base}` over the matched configurations ({label(metric)}):", ""]
    cells = []
    for p in poolings:
        if p == base:
            continue
        d = np.array([m[p].metrics[metric] - m[base].metrics[metric] for m in matched.values()])
        cells.append([f"{p} − {base}"] + paired_cells(paired_summary(d)))
    out.append(table(["comparison"] + PAIRED_HEADER, cells))
    out.append("")
    out.append("The pairs share folds, so the test is paired; configurations chosen by the searcher are not independent "
               "draws, so read the p-value as descriptive.")
    return out
