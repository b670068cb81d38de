"""An ensemble of per-modality models as a fusion: per modality, a head's class probabilities."""

from __future__ import annotations

import warnings

import numpy as np

from ..heads import HEADS, fit_head, predict_proba_full
from ..registry import Param
from .base import FUSIONS, check_fitted


def _row_keys(vectors: dict[str, np.ndarray], presence: np.ndarray) -> list[bytes]:
    """One byte string per sample: its presence and its present modalities' float32 values."""
    parts = [np.where(presence[:, k : k + 1], np.asarray(v, np.float32), np.float32(0))
             for k, v in enumerate(vectors.values())]
    rows = np.ascontiguousarray(np.concatenate([*parts, presence.astype(np.float32)], 1), np.float32)
    return rows.view(np.dtype((np.void, rows.shape[1] * 4))).ravel().tolist()


def _fit_member(head, X: np.ndarray, y: np.ndarray, w: np.ndarray | None, n_classes: int):
    """``head`` fitted on (X, y); the class prior where y has a single class (a head cannot fit that)."""
    if len(np.unique(y)) < 2:
        from sklearn.dummy import DummyClassifier

        return DummyClassifier(strategy="prior").fit(X, y)
    return fit_head(head, X, y, w)


@FUSIONS.register("per_modality_ensemble", params={
    "head": Param(str, "logreg", doc="the registered head fitted per modality (python -m sweeps list head)"),
    "inner_folds": Param(int, 5, low=2, doc="inner stratified folds giving the training samples' out-of-fold outputs"),
})
class PerModalityEnsembleFusion:
    """One model per modality (the lumbar seed's "multiple models"): ``head`` fitted on the training
    samples that have that modality; the fused vector is, per modality, its predicted class
    probabilities and a presence flag (zeros and flag 0 where the modality is absent): the input of a
    stacking head.

    Honest stacking: every model is fitted on the fold's training part only. The training samples'
    outputs are out-of-fold, from an inner ``StratifiedKFold(inner_folds)`` over those samples (plain,
    not patient-grouped: the fusion sees no patient ids, so a patient with several samples can sit on
    both sides of an inner split); the other samples' outputs come from the models fitted on all the
    training samples. ``fuse`` recognises the training samples by content (the exact float32 values
    and presence ``fit`` saw)."""

    def __init__(self, head: str = "logreg", inner_folds: int = 5):
        HEADS.check(head, "fusion per_modality_ensemble.head")
        if inner_folds < 2:
            raise ValueError(f"fusion 'per_modality_ensemble': inner_folds must be >= 2, got {inner_folds}")
        self.head = head
        self.inner_folds = inner_folds
        self.names_: list[str] | None = None

    def fit(self, vectors: dict[str, np.ndarray], presence: np.ndarray, y: np.ndarray, n_classes: int,
            class_weight: np.ndarray | None = None, seed: int = 0) -> "PerModalityEnsembleFusion":
        from sklearn.model_selection import StratifiedKFold

        presence, y = np.asarray(presence, bool), np.asarray(y)
        self.names_, self.n_classes_ = list(vectors), n_classes
        head = HEADS[self.head](seed=seed)
        w = None if class_weight is None else np.asarray(class_weight, np.float64)[y]
        self.models_ = {}
        oof = np.zeros((len(y), len(vectors), n_classes + 1), np.float32)
        for k, (m, v) in enumerate(vectors.items()):
            rows = np.flatnonzero(presence[:, k])
            if not len(rows):
                self.models_[m] = None
                continue
            X, yk, wk = np.asarray(v, np.float32)[rows], y[rows], None if w is None else w[rows]
            self.models_[m] = _fit_member(head, X, yk, wk, n_classes)
            oof[rows, k, n_classes] = 1.0
            n_splits = min(self.inner_folds, int(np.bincount(yk).max()))
            if n_splits < 2:  # a single sample: no held-out prediction possible, the prior stands in
                oof[rows, k, :n_classes] = np.bincount(yk, minlength=n_classes) / len(yk)
                continue
            with warnings.catch_warnings():  # a class rarer than n_splits: sklearn warns, folds still valid
                warnings.filterwarnings("ignore", message="The least populated class")
                splits = list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(X, yk))
            for itr, ite in splits:
                member = _fit_member(head, X[itr], yk[itr], None if wk is None else wk[itr], n_classes)
                oof[rows[ite], k, :n_classes] = predict_proba_full(member, X[ite], n_classes)
        self.train_outputs_ = dict(zip(_row_keys(vectors, presence), oof.reshape(len(y), -1)))
        return self

    def fuse(self, vectors: dict[str, np.ndarray], presence: np.ndarray) -> np.ndarray:
        check_fitted(self.names_, vectors, "per_modality_ensemble")
        presence = np.asarray(presence, bool)
        c = self.n_classes_
        out = np.zeros((len(presence), len(vectors), c + 1), np.float32)
        for k, (m, v) in enumerate(vectors.items()):
            rows = np.flatnonzero(presence[:, k])
            out[rows, k, c] = 1.0
            if len(rows) and self.models_[m] is not None:
                out[rows, k, :c] = predict_proba_full(self.models_[m], np.asarray(v, np.float32)[rows], c)
        out = out.reshape(len(presence), -1)
        for i, key in enumerate(_row_keys(vectors, presence)):  # training samples: their out-of-fold outputs
            if key in self.train_outputs_:
                out[i] = self.train_outputs_[key]
        return out
