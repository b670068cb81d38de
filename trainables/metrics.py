"""Metrics from out-of-fold predictions (their confidence intervals: ``sweeps.report.stats``).

``compute_metrics(y_true, proba, class_names)`` returns a flat dict with fixed names: ``accuracy``,
``f1_macro``, ``auc_macro`` (one-vs-rest, macro over the classes present), ``balanced_accuracy``
and ``recall_<class>`` for each class.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np


METRICS = ("accuracy", "f1_macro", "auc_macro", "balanced_accuracy")


@dataclass(frozen=True)
class Objective:
    """A score only some trials report (a competition's metric over some of their targets).

    The scoring code lives with the cohort that defines it and is named here by module and
    attribute, resolved when a trial first scores (so neither this module nor the pipeline imports
    an adapter, and a Ray worker resolves it without the driver's imports):

    - ``targets(names, classes) -> list[str]``: which of a trial's targets it scores;
    - ``score(labels, proba) -> dict``: ``score`` plus named parts, reported as ``NAME`` and
      ``PREFIX/part``.
    """

    name: str
    mode: str  # "min" or "max"
    module: str
    targets: str
    score: str
    prefix: str
    doc: str = ""

    def resolve(self, attr: str):
        return getattr(importlib.import_module(self.module), attr)


OBJECTIVES: dict[str, Objective] = {}


def register_objective(objective: Objective) -> Objective:
    if objective.name in OBJECTIVES or objective.name in METRICS:
        raise ValueError(f"objective {objective.name!r} is registered twice")
    OBJECTIVES[objective.name] = objective
    return objective


register_objective(Objective("rsna_score", "min", "trainables.data.rsna", "scored_targets", "competition_score",
                             "rsna", "RSNA 2024 lumbar competition score (multi-target lumbar sweeps)"))
# name -> mode of every registered objective (the space check reads it)
EXTRA_OBJECTIVES = {name: o.mode for name, o in OBJECTIVES.items()}


def objective_metrics(names: Sequence[str], classes: Mapping[str, Sequence[str]], Y: np.ndarray,
                      proba: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Every registered objective that applies to some of a trial's targets, over out-of-fold
    predictions: ``Y`` (n, T) class index per target (-1 masked), ``proba[target]`` (n, k)."""
    out: dict[str, Any] = {}
    for o in OBJECTIVES.values():
        scored = o.resolve(o.targets)(list(names), classes)
        if scored:
            score = o.resolve(o.score)({t: Y[:, list(names).index(t)] for t in scored}, {t: proba[t] for t in scored})
            out.update({o.name: score["score"], **{f"{o.prefix}/{k}": v for k, v in score.items() if k != "score"}})
    return out


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for the boolean labels ``positive`` (both classes present): the same
    computation as ``sklearn.metrics.roc_auc_score`` (its ROC curve, collinear points dropped, the
    trapezoid rule), bit for bit, without its input validation, which costs ~30x the arithmetic on the
    few hundred samples of a fold (``tests/test_components.py`` compares the two)."""
    from scipy.integrate import trapezoid

    order = np.argsort(score, kind="stable")[::-1]  # descending score (the order within a tie does not change the curve)
    s = score[order]
    hits = positive[order].astype(np.float64)
    idx = np.concatenate([np.nonzero(np.diff(s))[0], [len(s) - 1]])  # last position of each distinct score
    tps = np.cumsum(hits, dtype=np.float64)[idx]
    fps = 1 + idx.astype(np.float64) - tps
    if len(fps) > 2:  # drop points collinear with their neighbours
        keep = np.where(np.concatenate([[True], np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), [True]]))[0]
        fps, tps = fps[keep], tps[keep]
    tps = np.concatenate([[0.0], tps])
    fps = np.concatenate([[0.0], fps])
    return float(trapezoid(tps / tps[-1], fps / fps[-1]))


def auc_macro(y_true: np.ndarray, proba: np.ndarray) -> float:
    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    aucs = [binary_auc(y_true == c, proba[:, c]) for c in present]
    return float(np.mean(aucs))


def compute_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: list[str] | tuple[str, ...]) -> dict[str, float]:
    """The metrics of ``proba`` (n, C) against ``y_true`` (n,) class indices 0..C-1. The values are
    scikit-learn's (``accuracy_score``, ``f1_score(average="macro", zero_division=0)``, one-vs-rest
    ``roc_auc_score``, ``balanced_accuracy_score``, ``recall_score(average=None, zero_division=0)``),
    computed from the confusion counts in numpy, bit for bit the same: a trial scores every fold of
    every arm, and scikit-learn's validation of each call cost more than the rest of the scoring."""
    y_true = np.asarray(y_true)
    proba = np.asarray(proba)
    if len(y_true) != len(proba):
        raise ValueError(f"y_true has {len(y_true)} rows but proba has {len(proba)}")
    if not np.isfinite(proba).all():
        raise ValueError("predicted probabilities contain NaN or inf")
    k = len(class_names)
    if len(y_true) == 0 or not np.issubdtype(y_true.dtype, np.integer) or y_true.min() < 0 or y_true.max() >= k:
        return sklearn_metrics(y_true, proba, class_names)  # not class indices: scikit-learn says what is wrong
    pred = proba.argmax(1)
    tp = np.bincount(y_true[pred == y_true], minlength=k).astype(np.float64)  # (C,) per class
    true_sum = np.bincount(y_true, minlength=k).astype(np.float64)
    pred_sum = np.bincount(pred, minlength=k).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(true_sum > 0, tp / np.where(true_sum > 0, true_sum, 1), 0.0)
        denom = true_sum + pred_sum
        f1 = np.where(denom > 0, 2.0 * tp / np.where(denom > 0, denom, 1), 0.0)
    out = {
        "accuracy": float(np.average(pred == y_true)),
        "f1_macro": float(np.mean(f1)),
        "auc_macro": auc_macro(y_true, proba),
        "balanced_accuracy": float(np.mean(recall[true_sum > 0])),
    }
    for name, r in zip(class_names, recall):
        out[f"recall_{name}"] = float(r)
    return out


def sklearn_metrics(y_true: np.ndarray, proba: np.ndarray, class_names) -> dict[str, float]:
    """``compute_metrics`` through scikit-learn itself (the reference the fast path is tested against)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score, roc_auc_score

    labels = np.arange(len(class_names))
    pred = proba.argmax(1)
    present = np.unique(y_true)
    out = {
        "accuracy": float(accuracy_score(y_true, pred)),
        "f1_macro": float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)),
        "auc_macro": float(np.mean([roc_auc_score(y_true == c, proba[:, c]) for c in present])) if len(present) > 1
        else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
    }
    rec = recall_score(y_true, pred, labels=labels, average=None, zero_division=0)
    for name, r in zip(class_names, rec):
        out[f"recall_{name}"] = float(r)
    return out
