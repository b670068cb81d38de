"""The "Top configurations" section: the ten best configurations with CIs and fold SD (with
repeated seeds each configuration once, ranked by its mean over seeds, with the CIs of its first
seed), the top one's per-class recall, and with plots its confusion matrix."""

from __future__ import annotations

import numpy as np

from ..fmt import LABEL, ci, label, mean_sd, number, table
from ..run import TRIAL_INDEX, ReportOptions, RunView, config_key
from ..stats import SHOWN


def section(view: RunView, options: ReportOptions) -> list[str]:
    metric, y, seeds, plot_dir = view.metric, view.y, view.repeated_seeds, options.plot_dir
    L = ["## Top configurations", ""]
    if seeds:
        order = sorted(seeds.values(), key=lambda g: float(np.mean([r.metrics[metric] for r in g])),
                       reverse=(view.mode == "max"))[:10]
        top = [g[0] for g in order]
        L.append(f"Each configuration once, ranked by its mean {label(metric)} over seeds; the CI and fold-SD columns "
                 f"are those of its first seed (`{TRIAL_INDEX}` 0).")
        L.append("")
    else:
        top = view.ranked(view.rows)[:10]
    if not top:
        return L
    hdr = ["#", "trial", "pooling", "configuration"] + [f"{LABEL[m]} [95% CI]" for m in SHOWN] + [f"{label(metric)} fold SD"]
    if seeds:
        hdr.append(f"{label(metric)} over seeds: mean ± SD (n)")
    cells = []
    for i, r in enumerate(top, 1):
        cis = view.ci_of(r)
        row = [i, r.trial, r.arm, view.config_str(r.config, r.arm)] + [ci(r.metrics[m], cis[m]) for m in SHOWN] + [
            number(r.metrics.get(f"{metric}_fold_sd", np.nan))]
        if seeds:
            row.append(mean_sd([s.metrics[metric] for s in seeds[(config_key(r.config), r.arm)]]))
        cells.append(row)
    L.append(table(hdr, cells))
    L.append("")
    best = top[0]
    if any(k.startswith("recall_") for k in best.metrics):  # one target (several: see "Per target")
        L.append(f"Per-class recall of the top configuration (n = {len(y)}): " + ", ".join(
            f"{name} {number(best.metrics.get(f'recall_{name}', np.nan))} (n={int((y == i).sum())})"
            for i, name in enumerate(view.classes)) + ".")
        L.append("")
    if plot_dir is not None and best.proba is not None:
        from ..plots import confusion

        name = confusion(y, best.proba, view.classes, f"top: {best.arm}, trial {best.trial}", plot_dir)
        L.append(f"![confusion matrix of the top configuration]({name})")
        L.append("")
    return L
