"""Patient-grouped, stratified k-fold splits: no patient ever sits on both sides of a split."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def grouped_folds(y: np.ndarray, groups: np.ndarray, n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"{n_splits} folds need at least {n_splits} patients; the cohort has {n_groups}")
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds = []
    for train, test in cv.split(np.zeros(len(y)), y, groups):
        if np.intersect1d(groups[train], groups[test]).size:
            raise AssertionError("a patient is on both sides of a split")  # never: StratifiedGroupKFold groups
        folds.append((train, test))
    return folds


def holdout_split(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(development, test) row indices: about ``fraction`` of the patients set aside as a test part,
    grouped by patient (all of a patient's samples on one side) and stratified on ``y``, seeded.

    The test part is one fold of ``round(1 / fraction)`` patient-grouped stratified folds, so its size
    is ``fraction`` rounded to 1/k (0.2 -> one fold of 5)."""
    if not 0 < fraction < 1:
        raise ValueError(f"test fraction must be in (0, 1), got {fraction}")
    k = max(2, int(round(1 / fraction)))
    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise ValueError(f"a test part of {fraction:g} needs at least {k} patients; the cohort has {n_groups}")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    dev, test = next(cv.split(np.zeros(len(y)), y, groups))
    if np.intersect1d(groups[dev], groups[test]).size:
        raise AssertionError("a patient is on both sides of the test split")
    return np.sort(dev), np.sort(test)
