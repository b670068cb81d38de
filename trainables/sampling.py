"""Class-imbalance strategies, applied to a fold's training part only (never to the scored part).

Each maps ``(X, y, seed)`` to ``(X', y', sample_weight or None)``.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from .registry import Param, Registry

SAMPLINGS = Registry("sampling")


def balanced_class_weight(y: np.ndarray, n_classes: int) -> np.ndarray:
    """sklearn's 'balanced' weights, n / (k * count), for every class index (absent ones get 1)."""
    w = np.ones(n_classes, dtype=np.float64)
    present = np.unique(y)
    w[present] = compute_class_weight("balanced", classes=present, y=y)
    return w


@SAMPLINGS.register("none", params={})
class NoSampling:
    """Leave the training part as it is."""

    uses_class_weight = False

    def resample(self, X, y, seed=0):
        return X, y, None


@SAMPLINGS.register("class_weight", params={})
class ClassWeight:
    """Weight each sample by its class's balanced weight (a weighted loss)."""

    uses_class_weight = True

    def resample(self, X, y, seed=0):
        w = balanced_class_weight(y, int(y.max()) + 1)
        return X, y, w[y]


@SAMPLINGS.register("smote", params={"k_neighbors": Param(int, 5, low=1, doc="neighbours interpolated between")})
class Smote:
    """SMOTE oversampling of the minority classes (Chawla et al., JAIR 2002), via imbalanced-learn."""

    uses_class_weight = False

    def __init__(self, k_neighbors: int = 5):
        self.k_neighbors = k_neighbors

    def resample(self, X, y, seed=0):
        from imblearn.over_sampling import SMOTE

        smallest = np.bincount(y)[np.bincount(y) > 0].min()
        k = min(self.k_neighbors, smallest - 1)
        if k < 1:  # a class with a single training sample: SMOTE cannot interpolate
            return X, y, None
        Xr, yr = SMOTE(k_neighbors=k, random_state=seed).fit_resample(X, y)
        return Xr, yr, None


@SAMPLINGS.register("random_under", params={})
class RandomUnder:
    """Random undersampling of the majority classes, via imbalanced-learn."""

    uses_class_weight = False

    def resample(self, X, y, seed=0):
        from imblearn.under_sampling import RandomUnderSampler

        Xr, yr = RandomUnderSampler(random_state=seed).fit_resample(X, y)
        return Xr, yr, None
