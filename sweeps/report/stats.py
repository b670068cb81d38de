"""The report's statistics, one implementation each: metrics under bootstrap resampling weights,
patient-bootstrap CIs, the paired bootstrap of a difference, and the paired signed-rank summary.

A bootstrap resample repeats samples; counting sample i w_i times is the same as weighting it by
w_i, so every resample is a row of a weight matrix W (n_boot, n) and each metric is computed for
all rows at once: accuracy and the confusion matrix as weighted counts, the AUC as a weighted
Mann-Whitney statistic (ties count one half) over the scores sorted once. The definitions are those
of ``trainables.metrics`` (a test holds them equal on explicit resamples).

A leaf: imports nothing from the report package.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 1000
SHOWN = ("accuracy", "f1_macro", "auc_macro")  # the metrics every table shows, with CIs
CHUNK = 200  # resamples per block: bounds memory at CHUNK x n floats per array
TIE = 1e-12  # paired differences within this of zero are ties


def weighted_scores(metric: str, y: np.ndarray, proba: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``metric`` of ``proba`` (n, C) against ``y`` (n,) under each row of sample weights ``W``
    (n_boot, n): (n_boot,)."""
    k = proba.shape[1]
    pred = proba.argmax(1)
    if metric == "accuracy":
        return (W @ (pred == y)) / W.sum(1)
    if metric in ("f1_macro", "balanced_accuracy"):
        onehot = np.zeros((len(y), k * k))
        onehot[np.arange(len(y)), y * k + pred] = 1
        cm = (W @ onehot).reshape(-1, k, k)  # weighted confusion matrices
        tp = np.diagonal(cm, axis1=1, axis2=2)
        support = cm.sum(2)
        if metric == "balanced_accuracy":
            rec = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
            return rec.sum(1) / (support > 0).sum(1)
        denom = cm.sum(1) + support
        return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0).mean(1)
    if metric == "auc_macro":
        total = np.zeros(len(W))
        defined = np.zeros(len(W))
        for c in range(k):
            order = np.argsort(proba[:, c], kind="stable")
            s = proba[order, c]
            starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # tie groups of equal scores
            pos = (y[order] == c).astype(float)
            Wo = W[:, order]
            gpos = np.add.reduceat(Wo * pos, starts, axis=1)
            gneg = np.add.reduceat(Wo * (1 - pos), starts, axis=1)
            below = np.cumsum(gneg, 1) - gneg
            npos, nneg = gpos.sum(1), gneg.sum(1)
            ok = (npos > 0) & (nneg > 0)
            auc = (gpos * (below + 0.5 * gneg)).sum(1) / np.where(ok, npos * nneg, 1)
            total += np.where(ok, auc, 0)
            defined += ok
        return np.where(defined > 0, total / np.maximum(defined, 1), np.nan)
    raise KeyError(metric)


def score(metric: str, y: np.ndarray, proba: np.ndarray) -> float:
    """``metric`` on all samples (every weight 1)."""
    return float(weighted_scores(metric, y, proba, np.ones((1, len(y))))[0])


def resample_weights(groups: np.ndarray, n_boot: int, seed: int):
    """Blocks of sample-weight rows (at most CHUNK, len(groups)), one per resample of the patients
    (with replacement, all of a patient's samples together), from a seeded generator: the same
    groups and seed, the same draws."""
    rng = np.random.default_rng(seed)
    _, inv = np.unique(groups, return_inverse=True)
    n_pat = inv.max() + 1
    for b0 in range(0, n_boot, CHUNK):
        b = min(CHUNK, n_boot - b0)
        pick = rng.integers(0, n_pat, (b, n_pat))
        counts = np.bincount((np.arange(b)[:, None] * n_pat + pick).ravel(), minlength=b * n_pat).reshape(b, n_pat)
        yield counts[:, inv].astype(float)


def quantiles(vals: np.ndarray) -> tuple[float, float]:
    """The 2.5% and 97.5% quantiles of the finite values (NaN, NaN when there are none)."""
    vals = vals[np.isfinite(vals)]
    return (float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))) if len(vals) else (np.nan, np.nan)


def patient_bootstrap(y, proba, groups, metrics=SHOWN, n_boot=N_BOOT, seed=0) -> dict[str, tuple[float, float]]:
    """95% percentile CIs, resampling patients with replacement."""
    vals = {m: [] for m in metrics}
    for W in resample_weights(groups, n_boot, seed):
        for m in metrics:
            vals[m].append(weighted_scores(m, y, proba, W))
    return {m: quantiles(np.concatenate(v)) for m, v in vals.items()}


def paired_bootstrap(y, proba_a, proba_b, groups, metric: str, n_boot=N_BOOT, seed=0) -> tuple[float, float, float]:
    """``metric(a) - metric(b)`` on all samples, with a 95% percentile CI from resampling patients,
    the same draw for both (a paired bootstrap: what the two share cancels)."""
    diff = score(metric, y, proba_a) - score(metric, y, proba_b)
    vals = [weighted_scores(metric, y, proba_a, W) - weighted_scores(metric, y, proba_b, W)
            for W in resample_weights(groups, n_boot, seed)]
    return (float(diff), *quantiles(np.concatenate(vals)))


@dataclass(frozen=True)
class PairedSummary:
    """Paired differences summarised: how many, their median, wins/ties/losses (ties within TIE of
    zero) and the Wilcoxon signed-rank p-value (NaN when every difference is a tie, fewer than two
    pairs, or the test refuses)."""

    n: int
    median: float
    wins: int
    ties: int
    losses: int
    p: float


def paired_summary(d: np.ndarray) -> PairedSummary:
    """The summary of paired differences ``d`` (n,)."""
    from scipy.stats import wilcoxon

    wins, ties, losses = int((d > TIE).sum()), int((np.abs(d) <= TIE).sum()), int((d < -TIE).sum())
    try:
        pval = wilcoxon(d).pvalue if np.any(np.abs(d) > TIE) and len(d) >= 2 else np.nan
    except ValueError:
        pval = np.nan
    return PairedSummary(len(d), float(np.median(d)), wins, ties, losses, pval)


# -- DeLong's test and calibration (the held-out test section) -----------------------------------------
def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong placement values by midranks (Sun & Xu 2014): V10 (m,) for the positives,
    V01 (n,) for the negatives; ties count one half."""
    from scipy.stats import rankdata

    m, n = len(pos), len(neg)
    tz = rankdata(np.concatenate([pos, neg]))  # midranks in the pooled sample
    tx, ty = rankdata(pos), rankdata(neg)
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
    return float(auc), (tz[:m] - tx) / n, 1.0 - (tz[m:] - ty) / m


@dataclass(frozen=True)
class DeLong:
    """Paired AUC comparison: the two AUCs, their difference, its standard error, z and two-sided p."""

    auc_a: float
    auc_b: float
    diff: float
    se: float
    z: float
    p: float


def delong_test(y: np.ndarray, proba_a: np.ndarray, proba_b: np.ndarray) -> DeLong:
    """DeLong, DeLong & Clarke-Pearson (1988) for two models scored on the same samples, with the
    fast midrank algorithm of Sun & Xu (2014). Two classes: the AUC of the second class's probability,
    exactly DeLong's. More classes: the one-vs-rest macro AUC (the mean over the classes that have
    positives and negatives); its variance comes from each sample's influence, summed over the classes
    (a sample is a positive of its class and a negative of the others), with DeLong's (k - 1)
    denominators. ``proba_*`` (n, C); ``y`` (n,) class indices."""
    from scipy.stats import norm

    y = np.asarray(y)
    C = proba_a.shape[1]
    classes = [1] if C == 2 else [c for c in range(C) if 0 < (y == c).sum() < len(y)]
    if not classes or (C == 2 and not 0 < (y == 1).sum() < len(y)):
        return DeLong(np.nan, np.nan, np.nan, np.nan, np.nan, np.nan)
    infl = np.zeros(len(y))  # each sample's influence on the difference of the macro AUCs
    aucs_a, aucs_b = [], []
    for c in classes:
        pos, neg = y == c, y != c
        m, n = pos.sum(), neg.sum()
        a, v10a, v01a = _placements(proba_a[pos, c], proba_a[neg, c])
        b, v10b, v01b = _placements(proba_b[pos, c], proba_b[neg, c])
        aucs_a.append(a)
        aucs_b.append(b)
        d = a - b
        fac_m = 1 / np.sqrt(m * (m - 1)) if m > 1 else 0.0
        fac_n = 1 / np.sqrt(n * (n - 1)) if n > 1 else 0.0
        infl[pos] += ((v10a - v10b) - d) * fac_m / len(classes)
        infl[neg] += ((v01a - v01b) - d) * fac_n / len(classes)
    A, B = float(np.mean(aucs_a)), float(np.mean(aucs_b))
    var = float((infl ** 2).sum())  # two classes: S10/m + S01/n of the differences, DeLong's exactly
    se = float(np.sqrt(var))
    if se <= 0:
        return DeLong(A, B, A - B, 0.0, np.nan, 1.0 if A == B else 0.0)
    z = (A - B) / se
    return DeLong(A, B, A - B, se, float(z), float(2 * norm.sf(abs(z))))


def delong_variance(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """(AUC, DeLong variance) of one binary score (``y`` in {0, 1})."""
    auc, v10, v01 = _placements(score[y == 1], score[y == 0])
    m, n = len(v10), len(v01)
    return auc, float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)


def brier(y: np.ndarray, proba: np.ndarray) -> float:
    """Multi-class Brier score: mean over samples of the squared distance to the one-hot label."""
    onehot = np.eye(proba.shape[1])[y]
    return float(((proba - onehot) ** 2).sum(1).mean())


def reliability(y: np.ndarray, proba: np.ndarray, bins: int = 10):
    """Top-class confidence in ``bins`` equal-width bins: (mean confidence, accuracy, count) per
    non-empty bin, and the expected calibration error (the count-weighted mean |accuracy - confidence|)."""
    conf, pred = proba.max(1), proba.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            rows.append((float(conf[sel].mean()), float((pred[sel] == y[sel]).mean()), int(sel.sum())))
    ece = sum(n * abs(a - c) for c, a, n in rows) / max(len(y), 1)
    return rows, float(ece)
