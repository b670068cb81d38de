"""Metrics from out-of-fold predictions (their confidence intervals: ``sweeps.report.stats``).

``compute_metrics(y_true, proba, class_names)`` returns a flat dict with fixed names: ``accuracy``,
``f1_macro``, ``auc_macro`` (one-vs-rest, macro over the classes present), ``balanced_accuracy``
and ``recall_<class>`` for each class.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score, roc_auc_score

METRICS = ("accuracy", "f1_macro", "auc_macro", "balanced_accuracy")
# objectives only some trials report: the RSNA 2024 lumbar competition score (multi-target lumbar sweeps; min)
EXTRA_OBJECTIVES = {"rsna_score": "min"}


def auc_macro(y_true: np.ndarray, proba: np.ndarray) -> float:
    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    aucs = [roc_auc_score(y_true == c, proba[:, c]) for c in present]
    return float(np.mean(aucs))


def compute_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: list[str] | tuple[str, ...]) -> dict[str, float]:
    y_true = np.asarray(y_true)
    proba = np.asarray(proba)
    if len(y_true) != len(proba):
        raise ValueError(f"y_true has {len(y_true)} rows but proba has {len(proba)}")
    if not np.isfinite(proba).all():
        raise ValueError("predicted probabilities contain NaN or inf")
    labels = np.arange(len(class_names))
    pred = proba.argmax(1)
    out = {
        "accuracy": float(accuracy_score(y_true, pred)),
        "f1_macro": float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)),
        "auc_macro": auc_macro(y_true, proba),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
    }
    rec = recall_score(y_true, pred, labels=labels, average=None, zero_division=0)
    for name, r in zip(class_names, rec):
        out[f"recall_{name}"] = float(r)
    return out

