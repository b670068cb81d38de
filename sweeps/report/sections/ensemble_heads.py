"""The "Ensemble heads vs their best member" section: each ensemble-head row against the best single
head among its members run with the same encoder, preprocessing, PCA size, pooling arm, sampling,
tabular choice, fusion and repeat (so on the same folds): median difference, wins/ties/losses,
Wilcoxon p, per kind of ensemble."""

from __future__ import annotations

import json

import numpy as np

from ..fmt import PAIRED_HEADER, label, paired_cells, table
from ..run import TRIAL_INDEX, ReportOptions, Row, RunView, dim_value, head_label, head_members
from ..stats import paired_summary

MATCH_DIMS = ("encoder", "preprocessing", "pca_dim", "sampling", "tabular", "fusion")


def section(view: RunView, options: ReportOptions) -> list[str]:
    from trainables.heads import ENSEMBLES

    metric = view.metric
    ens = [r for r in view.rows if dim_value(r.config, "head") in ENSEMBLES]
    if not ens:
        return []

    def match(r: Row) -> str:
        return json.dumps([str(dim_value(r.config, d)) for d in MATCH_DIMS] + [r.arm, r.config.get(TRIAL_INDEX, 0)])

    singles: dict[str, list[Row]] = {}
    for r in view.rows:
        if dim_value(r.config, "head") not in ENSEMBLES:
            singles.setdefault(match(r), []).append(r)
    diffs: dict[str, list[float]] = {}
    unmatched: dict[str, int] = {}
    for r in ens:
        lab = head_label(r.config["head"])
        members = set(head_members(r.config["head"]))
        cands = [s for s in singles.get(match(r), []) if dim_value(s.config, "head") in members]
        if not cands:
            unmatched[lab] = unmatched.get(lab, 0) + 1
            continue
        diffs.setdefault(lab, []).append(r.metrics[metric] - view.best(cands).metrics[metric])
    L = ["## Ensemble heads vs their best member", ""]
    L.append(f"Each ensemble-head result against the best single head among its members run with the same encoder, "
             f"preprocessing, PCA size, pooling, sampling, tabular choice and fusion (and seed, so on the same folds): "
             f"{label(metric)} difference, ensemble − best member. The best member is picked by its own out-of-fold "
             f"score, which favours the member.")
    L.append("")
    if diffs:
        L.append(table(["ensemble"] + PAIRED_HEADER + ["unmatched"],
                       [[f"`{lab}`"] + paired_cells(paired_summary(np.array(d))) + [unmatched.get(lab, 0)]
                        for lab, d in sorted(diffs.items())]))
    else:
        L.append("No ensemble result has a matched member result in this run (the search never ran a member head with "
                 "the same other settings).")
    if set(unmatched) - set(diffs):
        L.append("")
        L.append("Without any matched member: " + ", ".join(f"`{lab}` ({n})" for lab, n in sorted(unmatched.items())
                                                            if lab not in diffs) + ".")
    L.append("")
    return L
