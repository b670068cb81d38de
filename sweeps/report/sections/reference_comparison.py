"""The "Reference comparison" section: per classifier and per pooling, the best row of a reference
file (``../reference.py``: the lumbar seed project's published table, or a generic one) beside our
best configuration with its 95% CI, then the caveats that make the numbers not like for like. The
file is ``options.reference``, else the ``reference`` named in the run's sweep.json; none, no section."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fmt import ci, label, number, table
from ..reference import load
from ..run import ReportOptions, Row, RunView, dim_value, head_label
from ..stats import SHOWN


def _ours_key(r: Row, kind: str) -> str:
    """Our name of a row's pooling or head (``bagging(xgboost)`` for an ensemble: its members matter)."""
    from trainables.heads import ENSEMBLES

    if kind == "pooling":
        return r.arm
    name = dim_value(r.config, "head")
    return head_label(r.config["head"]) if name in ENSEMBLES else name


def section(view: RunView, options: ReportOptions) -> list[str]:
    reference = options.reference if options.reference is not None else view.meta.get("reference")
    if not reference:
        return []
    path = Path(reference)
    layout, ref = load(path)
    metric = view.metric
    c = view.meta["cohort"]
    theirs_by = metric if metric in SHOWN and ref[metric].notna().any() else next(m for m in SHOWN if ref[m].notna().any())
    L = ["## Reference comparison", ""]
    L.append(f"Published numbers from `{path.name}` ({layout.name}, {len(ref)} configurations) beside ours. For each "
             f"group: their best row by their {label(theirs_by)}, and our best configuration by {label(metric)} "
             f"with 95% patient-bootstrap CIs (n = {len(view.y)} samples). Read the caveats below before the numbers.")
    L.append("")
    hdr = ["group", "source", "results"] + [label(m) for m in SHOWN]
    for kind in ("classifier", "pooling"):
        if kind not in ref.columns:
            continue
        cells = []
        for value in sorted(ref[kind].unique()):
            part = ref[ref[kind] == value]
            best = part.loc[part[theirs_by].fillna(-np.inf).idxmax()]  # accuracy, F1, AUC: higher is better
            cells.append([f"`{value}`", f"theirs: best of {len(part)} by {label(theirs_by)}", len(part)]
                         + [number(best[m]) for m in SHOWN])
            names = layout.ours.get(kind, {}).get(value, (value,))
            ours = [r for r in view.rows if _ours_key(r, kind) in names]
            ours_label = "ours: " + ("/".join(f"`{n}`" for n in names) if names else "no counterpart")
            if ours:
                b = view.best(ours)
                cis = view.ci_of(b)
                cells.append(["", f"{ours_label}, best (trial {b.trial})", len(ours)] + [ci(b.metrics[m], cis[m]) for m in SHOWN])
            else:
                cells.append(["", ours_label + (", not run in this sweep" if names else ""), 0] + ["—"] * len(SHOWN))
        L.append(f"### Per {kind}")
        L.append("")
        L.append(table(hdr, cells))
        L.append("")
    L.append("Caveats:")
    L.append("")
    L.append(f"- **Different cohort and labels.** Ours: cohort `{c['name']}`, target `{c['target']}`, n = {c['samples']} "
             f"samples from {c['patients']} patients. Theirs: {layout.name}. Unless both are the same cohort with the "
             f"same label definition, only the ranking of methods can be compared, not the numbers.")
    L += [f"- {line}" for line in layout.caveats]
    L.append("- **Best-of selection on both sides.** A best row per group is optimistic for them and for us; our CIs "
             "cover the sampling of patients, not that selection.")
    L.append("")
    return L
