"""The "By <dimension>" sections (head, sampling, PCA size, tabular, fusion, text, encoder,
preprocessing, then every other value the space swept, nested ones included (``train.lr``), pooling
parameters apart; only those with at least two values in the run): per value and pooling, the best
configuration [CI] / median (n trials), and with repeated seeds the best one's mean ± SD over seeds."""

from __future__ import annotations

import numpy as np

from ..fmt import ci, label, mean_sd, number, table
from ..run import ReportOptions, RunView, config_key, dim_value, format_value, path_label, path_value

BY = ("head", "sampling", "pca_dim", "tabular", "fusion", "text", "encoder", "preprocessing")


def section(view: RunView, options: ReportOptions) -> list[str]:
    L = []
    for dim in BY:
        L += _by(view, dim, lambda config, dim=dim: str(dim_value(config, dim)))
    for path in view.swept:  # the other swept values, nested ones included
        name = path_label(path)
        node = path_value(view.meta.get("space_repr") or {}, path)
        if name in BY or path[0] == "pooling" or not (isinstance(node, dict) and ("choice" in node or "grid_search" in node)):
            continue  # shown above, a pooling arm's parameter, or a continuous range (one value per trial)
        L += _by(view, name, lambda config, path=path: format_value(path_value(config, path)))
    return L


def _by(view: RunView, dim: str, value_of) -> list[str]:
    metric, poolings, seeds = view.metric, view.poolings, view.repeated_seeds
    vals = sorted({value_of(r.config) for r in view.rows})
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
            rs = [r for r in view.rows if r.arm == p and value_of(r.config) == val]
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
