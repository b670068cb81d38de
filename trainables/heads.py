"""Heads: fused vectors -> class probabilities, all behind the scikit-learn contract
(``fit(X, y, sample_weight=None)``, ``predict_proba``), torch heads included, so ensembles can
compose any of them.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from .registry import Registry

HEADS = Registry("head")


def _scaled(est) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("est", est)])


@HEADS.register("logreg")
def logreg(C: float = 1.0, max_iter: int = 2000, seed: int = 0):
    """Multinomial logistic regression (L2), on standardised features."""
    from sklearn.linear_model import LogisticRegression

    return _scaled(LogisticRegression(C=C, max_iter=max_iter, random_state=seed))


@HEADS.register("svc")
def svc(C: float = 1.0, kernel: str = "rbf", seed: int = 0):
    """Support vector classifier with Platt-scaled probabilities (Cortes & Vapnik 1995)."""
    from sklearn.svm import SVC

    return _scaled(SVC(C=C, kernel=kernel, probability=True, random_state=seed))


@HEADS.register("lightgbm")
def lightgbm(n_estimators: int = 150, learning_rate: float = 0.05, num_leaves: int = 15,
             colsample_bytree: float = 0.3, seed: int = 0, n_jobs: int = 1):
    """Gradient-boosted trees (Ke et al., NeurIPS 2017)."""
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
                          colsample_bytree=colsample_bytree, min_child_samples=5, random_state=seed,
                          n_jobs=n_jobs, verbose=-1)


@HEADS.register("mlp")
def mlp(hidden_dim: int = 128, dropout: float = 0.2, epochs: int = 60, lr: float = 1e-3,
        weight_decay: float = 1e-3, seed: int = 0):
    """A one-hidden-layer torch MLP trained with AdamW, behind the scikit-learn contract."""
    return _scaled(TorchMLPClassifier(hidden_dim=hidden_dim, dropout=dropout, epochs=epochs, lr=lr,
                                      weight_decay=weight_decay, seed=seed))


class TorchMLPClassifier(ClassifierMixin, BaseEstimator):
    def __init__(self, hidden_dim=128, dropout=0.2, epochs=60, lr=1e-3, weight_decay=1e-3, batch_size=64, seed=0):
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.seed = seed

    def fit(self, X, y, sample_weight=None):
        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        self.classes_ = np.unique(y)
        yi = torch.as_tensor(np.searchsorted(self.classes_, y), dtype=torch.long)
        w = torch.ones(len(yi)) if sample_weight is None else torch.as_tensor(sample_weight, dtype=torch.float32)
        torch.manual_seed(self.seed)
        g = torch.Generator().manual_seed(self.seed)
        self.model_ = torch.nn.Sequential(
            torch.nn.Linear(X.shape[1], self.hidden_dim), torch.nn.ReLU(), torch.nn.Dropout(self.dropout),
            torch.nn.Linear(self.hidden_dim, len(self.classes_)),
        )
        opt = torch.optim.AdamW(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        n = len(yi)
        for _ in range(self.epochs):
            perm = torch.randperm(n, generator=g)
            for s in range(0, n, self.batch_size):
                idx = perm[s : s + self.batch_size]
                loss = torch.nn.functional.cross_entropy(self.model_(X[idx]), yi[idx], reduction="none")
                loss = (loss * w[idx]).sum() / w[idx].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.model_.eval()
        return self

    @torch.inference_mode()
    def predict_proba(self, X):
        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        return torch.softmax(self.model_(X), dim=1).numpy()

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]


def fit_head(head, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None):
    """Fit a fresh clone of ``head``, routing ``sample_weight`` to the final estimator of a pipeline."""
    est = clone(head)
    if sample_weight is None:
        return est.fit(X, y)
    if isinstance(est, Pipeline):
        return est.fit(X, y, **{f"{est.steps[-1][0]}__sample_weight": sample_weight})
    return est.fit(X, y, sample_weight=sample_weight)


def predict_proba_full(model, X: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` with one column per class index, zeros for classes absent from training."""
    p = model.predict_proba(X)
    out = np.zeros((len(X), n_classes), dtype=np.float64)
    out[:, np.asarray(model.classes_, dtype=int)] = p
    return out
