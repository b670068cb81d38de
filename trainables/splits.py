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
