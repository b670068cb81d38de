"""The "Post-hoc ensembles" section: ensembles of a finished sweep's best trials, from the
out-of-fold (OOF) probabilities every trial saved: soft voting of the top k, and stacking with a
logistic-regression meta-learner.

Scored honestly by nesting: an outer patient-grouped split over the OOF predictions; in each outer
fold the trials are ranked, the top k chosen and the meta-learner fitted on the other folds only,
and the held-out fold is predicted. No sample is scored by an ensemble whose members or weights were
chosen with it. The best single trial is chosen the same nested way, so "ensemble vs best member"
compares like with like.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import numpy as np

from trainables.splits import grouped_folds

from ..fmt import LABEL, ci, label, signed_ci, table
from ..run import ReportOptions, RunView
from ..stats import SHOWN, paired_bootstrap, patient_bootstrap, score

KINDS = ("soft_voting", "stacking", "best_member")
NAMES = {"soft_voting": "soft voting (mean probability)", "stacking": "stacking (logistic-regression meta-learner)",
         "best_member": "best single trial"}


@dataclass
class PosthocResult:
    k: int  # members per ensemble (k asked for, or fewer when fewer candidates)
    folds: list[np.ndarray]  # the outer folds' held-out sample indices
    selected: list[list[str]]  # per outer fold: the members, ranked on the other folds only, best first
    proba: dict[str, np.ndarray]  # kind -> (n, C) OOF probabilities, every row from its own outer fold


def rank(y: np.ndarray, candidates: dict[str, np.ndarray], idx: np.ndarray, metric: str, mode: str) -> list[str]:
    """Candidate names best first by ``metric`` on the samples ``idx`` only (NaN last, ties by name)."""
    worst = -np.inf if mode == "max" else np.inf
    scores = {}
    for name, p in candidates.items():
        s = score(metric, y[idx], p[idx])
        scores[name] = s if np.isfinite(s) else worst
    sign = -1 if mode == "max" else 1
    return sorted(scores, key=lambda n: (sign * scores[n], n))


def _stack(X_tr: np.ndarray, y_tr: np.ndarray, X_te: np.ndarray, n_classes: int) -> np.ndarray:
    """Fit the multinomial logistic-regression meta-learner on the training part's member
    probabilities; predict the held-out part (a column per class, zeros for classes absent from training)."""
    from sklearn.linear_model import LogisticRegression

    meta = LogisticRegression(max_iter=2000).fit(X_tr, y_tr)
    out = np.zeros((len(X_te), n_classes))
    out[:, meta.classes_.astype(int)] = meta.predict_proba(X_te)
    return out


def nested_ensembles(y: np.ndarray, groups: np.ndarray, candidates: dict[str, np.ndarray], metric: str, mode: str,
                     k: int = 5, n_folds: int = 5, seed: int = 0) -> PosthocResult:
    """Soft voting and stacking of the top ``k`` candidates ({name: (n, C) OOF probabilities}), and
    the best single candidate, each chosen and fitted per outer fold (patient-grouped, stratified)
    on the other folds, then predicting the held-out one."""
    if len(candidates) < 2:
        raise ValueError(f"post-hoc ensembles need at least two candidates, got {len(candidates)}")
    k = min(k, len(candidates))
    n_classes = next(iter(candidates.values())).shape[1]
    out = {kind: np.zeros((len(y), n_classes)) for kind in KINDS}
    folds = grouped_folds(y, groups, n_folds, seed)
    selected = []
    for tr, te in folds:
        top = rank(y, candidates, tr, metric, mode)[:k]
        selected.append(top)
        P = [candidates[name] for name in top]
        out["best_member"][te] = P[0][te]
        out["soft_voting"][te] = np.mean([p[te] for p in P], axis=0)
        out["stacking"][te] = _stack(np.hstack([p[tr] for p in P]), y[tr], np.hstack([p[te] for p in P]), n_classes)
    return PosthocResult(k, [te for _, te in folds], selected, out)


def section(view: RunView, options: ReportOptions) -> list[str]:
    """The report's "Post-hoc ensembles" section of ``options.k`` members (empty when fewer than two
    trials have predictions)."""
    k = options.k
    candidates, seen = {}, set()
    for r in view.rows:  # a configuration the searcher proposed twice is one candidate, not two votes
        key = (json.dumps(r.config, sort_keys=True, default=str), r.arm)
        if r.proba is not None and key not in seen:
            seen.add(key)
            candidates[f"{r.trial}/{r.arm}"] = r.proba
    if len(candidates) < 2:
        return []
    metric, y, groups = view.metric, view.y, view.groups
    n_folds, seed = int(view.meta["folds"]), int(view.meta["seed"])
    res = nested_ensembles(y, groups, candidates, metric, view.mode, k=k, n_folds=n_folds, seed=seed)
    L = ["## Post-hoc ensembles", ""]
    L.append(f"Ensembles of the sweep's best trials, from the out-of-fold probabilities of the {len(candidates)} distinct "
             f"finished (configuration, pooling) evaluations (a configuration proposed twice counts once): soft voting of the top k = {res.k}{'' if res.k == k else f' (k asked: {k})'}, and stacking of the same "
             f"k with a multinomial logistic-regression meta-learner on their probabilities. Nested, so both are honest: "
             f"an outer {n_folds}-fold split over the out-of-fold predictions (stratified, grouped by patient, seed "
             f"{seed}); in each outer fold the trials are ranked by {label(metric)} on the other folds only, the top "
             f"k taken and the meta-learner fitted there, and the held-out fold predicted. The best single trial is "
             f"chosen the same way (the top-ranked on the other folds), so it may differ between outer folds and its "
             f"row can differ from the top configuration above.")
    L.append("")
    cells = []
    for kind in KINDS:
        p = res.proba[kind]
        cis = patient_bootstrap(y, p, groups)
        members = 1 if kind == "best_member" else res.k
        cells.append([NAMES[kind], members] + [ci(score(m, y, p), cis[m]) for m in SHOWN])
    L.append(table(["ensemble", "members"] + [f"{LABEL[m]} [95% CI]" for m in SHOWN], cells))
    L.append("")
    L.append(f"Paired against the best single trial on the same samples ({label(metric)}, ensemble − best member, "
             f"95% CI from a paired bootstrap over patients: the same resample for both):")
    L.append("")
    rows = []
    for kind in ("soft_voting", "stacking"):
        d, lo, hi = paired_bootstrap(y, res.proba[kind], res.proba["best_member"], groups, metric)
        rows.append([f"{NAMES[kind]} − best single trial", signed_ci(d, lo, hi)])
    L.append(table(["comparison", f"difference in {label(metric)} [95% CI]"], rows))
    L.append("")
    counts = Counter(name for top in res.selected for name in top)
    firsts = Counter(top[0] for top in res.selected)
    order = {name: i for i, name in enumerate(candidates)}  # the rows' order: by configuration, not by trial id
    L.append(f"Members chosen (in how many of the {n_folds} outer folds; ranked first): " + ", ".join(
        f"{name} ({counts[name]}; {firsts[name]})" for name in sorted(counts, key=lambda n: (-counts[n], -firsts[n], order[n])))
        + ".")
    L.append("")
    L.append("Caveat: nesting keeps each scored fold out of choosing the members and fitting the meta-learner, but the "
             "base trials' hyperparameters were themselves chosen by a search whose objective saw every sample's "
             "out-of-fold score; some optimism remains that only a held-out cohort removes. Brackets: patient "
             f"bootstrap as above (n = {len(y)} samples, {np.unique(groups).size} patients).")
    L.append("")
    return L
