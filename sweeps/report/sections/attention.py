"""The "Attention over slices" section (with plots only): where the best attention trial looked, its
out-of-fold attention weights per slice for two correctly predicted samples of the most severe class
(the last in the cohort's class order) and two others (correctly predicted, from different classes
where possible). Nothing when no trial saved attention weights."""

from __future__ import annotations

import numpy as np

from ..run import ReportOptions, RunView


def section(view: RunView, options: ReportOptions) -> list[str]:
    plot_dir = options.plot_dir
    rs = [r for r in view.rows if r.attn and r.proba is not None]
    if not rs or plot_dir is None:
        return []
    from ..plots import attention

    best = view.best(rs)
    y, proba = view.y, best.proba
    pred = proba.argmax(1)
    conf = proba[np.arange(len(y)), pred]
    sev = len(view.classes) - 1

    def pick(mask: np.ndarray, count: int, taken=()) -> list[int]:
        idx = np.array([i for i in np.flatnonzero(mask) if i not in taken], dtype=int)
        return [int(i) for i in idx[np.argsort(-conf[idx], kind="stable")][:count]]

    chosen = pick((y == sev) & (pred == sev), 2)
    others = [i for c in range(sev) for i in pick((y == c) & (pred == c), 1)][: 4 - len(chosen)]  # one per class first
    others += pick((y != sev) & (pred == y), 4 - len(chosen) - len(others), taken=others)
    others += pick(y != sev, 4 - len(chosen) - len(others), taken=others)
    ids = view.target_arrays.get("sample_ids")  # runs written before sample ids were saved: row numbers
    names = [str(ids[i]) if ids is not None and len(ids) == len(y) else str(i) for i in range(len(y))]
    panels = [(f"sample {names[i]}: true {view.classes[y[i]]}, predicted {view.classes[pred[i]]} (p={conf[i]:.2f})",
               {m: w[i][np.isfinite(w[i])] for m, w in best.attn.items()}) for i in chosen + others]
    name = attention(panels, f"attention weights, {best.arm}, trial {best.trial}", plot_dir)
    L = ["## Attention over slices", ""]
    L.append(f"Out-of-fold attention weights per slice (slices in position order) of the best attention "
             f"configuration (trial {best.trial}, `{best.arm}`), for {len(chosen)} correctly predicted "
             f"`{view.classes[sev]}` sample(s) and {len(others)} of the other classes (the most confidently predicted; "
             f"dotted: uniform attention, 1/slices). "
             + ("Samples are named by their sample_id." if ids is not None else "Sample numbers are rows of the cohort's sample table."))
    L.append("")
    L.append(f"![attention weights over slices]({name})")
    L.append("")
    return L
