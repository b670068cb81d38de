"""The "Per target" section (several targets per trial): the best trial's AUC and macro-F1 per
target, each on its labelled samples only, with patient-bootstrap CIs; the RSNA score when reported."""

from __future__ import annotations

from ..fmt import ci, label, number, table
from ..run import ReportOptions, RunView
from ..stats import patient_bootstrap, score


def section(view: RunView, options: ReportOptions) -> list[str]:
    t = view.target_arrays
    if "Y" not in t:
        return []
    rows = [r for r in view.rows if r.targets]
    if not rows:
        return []
    best = view.best(rows)
    names = [str(x) for x in t["target_names"]]
    L = ["## Per target", "",
         f"Best trial {best.trial} ({best.arm}; {view.config_str(best.config, best.arm)}), by {label(view.metric)}: each target scored "
         "on its labelled samples only (n), out of fold, with 95% patient-bootstrap CIs.", ""]
    extra = {k: val for k, val in best.metrics.items() if k == "rsna_score" or k.startswith("rsna/")}
    if extra:
        L.append("RSNA 2024 competition metric of this trial (lower is better): " + ", ".join(
            f"{k.split('/')[-1]} {number(val)}" for k, val in sorted(extra.items())) + ".")
        L.append("")
    cells = []
    for k, name in enumerate(names):
        lab = t["Y"][:, k] >= 0
        if name not in best.targets or lab.sum() == 0:
            continue
        y_t, p_t, g_t = t["Y"][lab, k], best.targets[name][lab], view.groups[lab]
        classes = [str(x) for x in t[f"classes__{name}"]]
        cis = patient_bootstrap(y_t, p_t, g_t, metrics=("auc_macro", "f1_macro"))
        counts = ", ".join(f"{c} {int((y_t == j).sum())}" for j, c in enumerate(classes))
        cells.append([f"`{name}`", int(lab.sum()), counts, ci(score("auc_macro", y_t, p_t), cis["auc_macro"]),
                      ci(score("f1_macro", y_t, p_t), cis["f1_macro"])])
    L.append(table(["target", "n labelled", "labels", "AUC [95% CI]", "macro-F1 [95% CI]"], cells))
    L.append("")
    return L
