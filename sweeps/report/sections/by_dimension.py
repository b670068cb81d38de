"""The "By <dimension>" sections (head, sampling, PCA size, tabular, fusion, text, encoder,
preprocessing; only those with at least two values in the run): per value and pooling, the best
configuration [CI] / median (n trials), and with repeated seeds the best one's mean ± SD over seeds."""

from __future__ import annotations

import numpy as np

from ..fmt import ci, label, mean_sd, number, table
from ..run import ReportOptions, RunView, config_key, dim_value

BY = ("head", "sampling", "pca_dim", "tabular", "fusion", "text", "encoder", "preprocessing")


def section(view: RunView, options: ReportOptions) -> list[str]:
    L = []
    for dim in BY:
        L += _by(view, dim)
    return L


def _by(view: RunView, dim: str) -> list[str]:
    metric, poolings, seeds = view.metric, view.poolings, view.repeated_seeds
    vals = sorted({str(dim_value(r.config, dim)) for r in view.rows})
    if len(vals) < 2:
        return []
    L = [f"## By {dim}", ""]
    text = f"{label(metric)} per {dim} and pooling: best [95% CI] / median over that value's trials (n trials)"
    L.append(text + ("; then the best configuration's mean ± SD over its seeds (n seeds)." if seeds else "."))
    L.append("")
    cells_by_value = []
    for val in vals:
        cells = [f"`{val}`"]
        for p in poolings:
            rs = [r for r in view.rows if r.arm == p and str(dim_value(r.config, dim)) == val]
            if not rs:
                cells.append("—")
                continue
            best = view.best(rs)
            median = number(np.median([r.metrics[metric] for r in rs]))
            cell = f"{ci(best.metrics[metric], view.ci_of(best)[metric])} / {median} (n={len(rs)})"
            if seeds:
                cell += f"; seeds {mean_sd([r.metrics[metric] for r in seeds[(config_key(best.config), best.arm)]])}"
            cells.append(cell)
        cells_by_value.append(cells)
    L.append(table([dim] + list(poolings), cells_by_value))
    L.append("")
    return L
