"""Heads: fused vectors -> class probabilities, all behind the scikit-learn contract
(``fit(X, y, sample_weight=None)``, ``predict_proba``), torch heads included, so ensembles can
compose any of them.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.preprocessing import StandardScaler

from .registry import Param, Registry, UnknownComponentError
from .training import TrainOptions, fit

# heads that need a package outside the core dependencies: head -> (module, how to install it)
OPTIONAL = {"xgboost": ("xgboost", "pip install xgboost-cpu  (or: pip install -e '.[xgboost]')")}


class MissingDependencyError(UnknownComponentError, ImportError):
    """A head whose optional package is not installed. It is an UnknownComponentError so that the
    space check (which turns those into SpecError) stops the sweep before it starts."""


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def require(name: str, where: str = "") -> None:
    """Raise MissingDependencyError when head ``name`` needs a package that is not importable."""
    if name in OPTIONAL and not _importable(OPTIONAL[name][0]):
        module, how = OPTIONAL[name]
        at = f" (at {where})" if where else ""
        raise MissingDependencyError(f"head {name!r}{at} needs the optional package {module!r}, which is not "
                                     f"installed: {how}")


class HeadRegistry(Registry):
    """The head table; ``check`` also fails when a head's optional package is missing, so a space
    naming it (as a head, an ensemble member or a bagging base) is refused before the sweep."""

    def check(self, name: str, where: str = "") -> str:
        super().check(name, where)
        require(name, where)
        return name


HEADS = HeadRegistry("head")


class Scaled(ClassifierMixin, BaseEstimator):
    """Standardise the features (fitted on the training data), then fit ``estimator``; unlike a
    Pipeline it takes ``sample_weight`` directly, so ensembles can pass weights to their members."""

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, y, sample_weight=None):
        self.scaler_ = StandardScaler().fit(X)
        self.estimator_ = clone(self.estimator)
        Xs = self.scaler_.transform(X)
        if sample_weight is None:
            self.estimator_.fit(Xs, y)
        else:
            self.estimator_.fit(Xs, y, sample_weight=sample_weight)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X):
        return self.estimator_.predict_proba(self.scaler_.transform(X))

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]


@HEADS.register("logreg", params={"C": Param(float, 1.0, low=0, open_low=True, doc="inverse L2 strength"),
                                   "max_iter": Param(int, 2000, low=1, doc="solver iterations")})
def logreg(C: float = 1.0, max_iter: int = 2000, seed: int = 0):
    """Multinomial logistic regression (L2), on standardised features."""
    from sklearn.linear_model import LogisticRegression

    return Scaled(LogisticRegression(C=C, max_iter=max_iter, random_state=seed))


@HEADS.register("svc", params={"C": Param(float, 1.0, low=0, open_low=True, doc="inverse regularisation strength"),
                                "kernel": Param(str, "rbf", choices=("linear", "poly", "rbf", "sigmoid"), doc="kernel")})
def svc(C: float = 1.0, kernel: str = "rbf", seed: int = 0):
    """Support vector classifier with Platt-scaled probabilities (Cortes & Vapnik 1995)."""
    from sklearn.svm import SVC

    return Scaled(SVC(C=C, kernel=kernel, probability=True, random_state=seed))


@HEADS.register("lightgbm", params={
    "n_estimators": Param(int, 150, low=1, doc="boosting rounds"),
    "learning_rate": Param(float, 0.05, low=0, open_low=True, doc="shrinkage"),
    "num_leaves": Param(int, 15, low=2, doc="leaves per tree"),
    "colsample_bytree": Param(float, 0.3, low=0, high=1, open_low=True, doc="share of features per tree"),
    "n_jobs": Param(int, 1, doc="threads (-1: all)")})
def lightgbm(n_estimators: int = 150, learning_rate: float = 0.05, num_leaves: int = 15,
             colsample_bytree: float = 0.3, seed: int = 0, n_jobs: int = 1):
    """Gradient-boosted trees (Ke et al., NeurIPS 2017)."""
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
                          colsample_bytree=colsample_bytree, min_child_samples=5, random_state=seed,
                          n_jobs=n_jobs, verbose=-1)


@HEADS.register("mlp", params={
    "hidden_dim": Param(int, 128, low=1, doc="hidden units"),
    "dropout": Param(float, 0.2, low=0, high=1, open_high=True, doc="dropout after the hidden layer"),
    "epochs": Param(int, 60, low=1, doc="training epochs"),
    "lr": Param(float, 1e-3, low=0, open_low=True, doc="AdamW learning rate"),
    "weight_decay": Param(float, 1e-3, low=0, doc="AdamW weight decay")})
def mlp(hidden_dim: int = 128, dropout: float = 0.2, epochs: int = 60, lr: float = 1e-3,
        weight_decay: float = 1e-3, seed: int = 0):
    """A one-hidden-layer torch MLP trained with AdamW, behind the scikit-learn contract."""
    return Scaled(TorchMLPClassifier(hidden_dim=hidden_dim, dropout=dropout, epochs=epochs, lr=lr,
                                      weight_decay=weight_decay, seed=seed))


@HEADS.register("xgboost", params={
    "n_estimators": Param(int, 200, low=1, doc="boosting rounds"),
    "learning_rate": Param(float, 0.05, low=0, open_low=True, doc="shrinkage"),
    "max_depth": Param(int, 4, low=1, doc="tree depth"),
    "subsample": Param(float, 0.8, low=0, high=1, open_low=True, doc="share of rows per tree"),
    "colsample_bytree": Param(float, 0.5, low=0, high=1, open_low=True, doc="share of features per tree"),
    "min_child_weight": Param(float, 1.0, low=0, doc="minimum hessian per leaf"),
    "reg_lambda": Param(float, 1.0, low=0, doc="L2 on leaf weights"),
    "n_jobs": Param(int, 1, doc="threads (-1: all)")})
def xgboost(n_estimators: int = 200, learning_rate: float = 0.05, max_depth: int = 4, subsample: float = 0.8,
            colsample_bytree: float = 0.5, min_child_weight: float = 1.0, reg_lambda: float = 1.0, seed: int = 0,
            n_jobs: int = 1):
    """Gradient-boosted trees, XGBoost (Chen & Guestrin, KDD 2016); an optional dependency
    (``xgboost-cpu``). ``{"name": "bagging", "bagging": {"base": "xgboost"}}`` bags it."""
    require("xgboost")
    return XGBHead(n_estimators=n_estimators, learning_rate=learning_rate, max_depth=max_depth, subsample=subsample,
                   colsample_bytree=colsample_bytree, min_child_weight=min_child_weight, reg_lambda=reg_lambda,
                   seed=seed, n_jobs=n_jobs)


class XGBHead(ClassifierMixin, BaseEstimator):
    """XGBClassifier behind the contract. XGBoost wants labels 0..k-1 with none missing; the labels
    are encoded among those present, so a training part that lacks a class (a bagging draw) fits."""

    def __init__(self, n_estimators=200, learning_rate=0.05, max_depth=4, subsample=0.8, colsample_bytree=0.5,
                 min_child_weight=1.0, reg_lambda=1.0, seed=0, n_jobs=1):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(self, X, y, sample_weight=None):
        from xgboost import XGBClassifier

        self.classes_ = np.unique(y)
        self.model_ = XGBClassifier(n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                                    max_depth=self.max_depth, subsample=self.subsample,
                                    colsample_bytree=self.colsample_bytree, min_child_weight=self.min_child_weight,
                                    reg_lambda=self.reg_lambda, random_state=self.seed, n_jobs=self.n_jobs,
                                    tree_method="hist", verbosity=0)
        self.model_.fit(np.asarray(X), np.searchsorted(self.classes_, y), sample_weight=sample_weight)
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(np.asarray(X))

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]


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
        """Train on (X, y) with :func:`trainables.training.fit` on the CPU: AdamW, shuffled batches of
        ``batch_size``, the loss weighted by ``sample_weight`` (all ones when None)."""
        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        self.classes_ = np.unique(y)
        yi = np.searchsorted(self.classes_, y)
        w = np.ones(len(yi), np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
        torch.manual_seed(self.seed)  # init and dropout
        self.model_ = torch.nn.Sequential(
            torch.nn.Linear(X.shape[1], self.hidden_dim), torch.nn.ReLU(), torch.nn.Dropout(self.dropout),
            torch.nn.Linear(self.hidden_dim, len(self.classes_)),
        )
        options = TrainOptions(optimizer="adamw", lr=self.lr, weight_decay=self.weight_decay, epochs=self.epochs,
                               batch_size=self.batch_size)
        fit(self.model_, lambda model, idx: model(X[idx]), yi, len(self.classes_), options, seed=self.seed,
            sample_weight=w, device="cpu")
        return self

    @torch.inference_mode()
    def predict_proba(self, X):
        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        return torch.softmax(self.model_(X), dim=1).numpy()

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]


# -- ensembles: heads made of heads ------------------------------------------------------------
# ``members`` is a '+'-joined list of head names (a plain string, so Optuna can choose among lists).

def _members(members: str, seed: int) -> list[tuple[str, object]]:
    names = [m for m in members.split("+") if m]
    if len(names) < 2:
        raise ValueError(f"an ensemble needs at least two members, got {members!r}")
    out = []
    for k, name in enumerate(names):
        HEADS.check(name, "ensemble members")
        if name in ENSEMBLES:
            raise ValueError(f"ensemble member {name!r} is itself an ensemble; nest them in code, not in a space")
        out.append((f"{name}{k}", HEADS[name](seed=seed)))
    return out


@HEADS.register("soft_voting", params={
    "members": Param(str, "logreg+svc+lightgbm", doc="'+'-joined head names (two or more, no ensembles)")})
def soft_voting(members: str = "logreg+svc+lightgbm", seed: int = 0):
    """Average of the members' predicted probabilities."""
    from sklearn.ensemble import VotingClassifier

    return VotingClassifier(_members(members, seed), voting="soft")


@HEADS.register("stacking", params={
    "members": Param(str, "logreg+svc+lightgbm", doc="'+'-joined head names (two or more, no ensembles)"),
    "inner_folds": Param(int, 5, low=2, doc="inner folds for the meta-learner's out-of-fold inputs")})
def stacking(members: str = "logreg+svc+lightgbm", inner_folds: int = 5, seed: int = 0):
    """Stacked generalisation (Wolpert 1992): a logistic-regression meta-learner fitted on the
    members' out-of-fold probabilities from an inner split of the training fold only (nested: the
    scored fold never reaches the meta-learner)."""
    from sklearn.ensemble import StackingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    return StackingClassifier(_members(members, seed), final_estimator=LogisticRegression(max_iter=2000),
                              cv=StratifiedKFold(inner_folds, shuffle=True, random_state=seed),
                              stack_method="predict_proba")


@HEADS.register("bagging", params={
    "base": Param(str, "logreg", doc="the head bagged (any registered head but an ensemble)"),
    "n_estimators": Param(int, 10, low=1, doc="bootstrap replicates"),
    "max_samples": Param(float, 0.8, low=0, high=1, open_low=True, doc="share of training rows per replicate")})
def bagging(base: str = "logreg", n_estimators: int = 10, max_samples: float = 0.8, seed: int = 0):
    """Bootstrap aggregating (Breiman 1996) over any registered head."""
    from sklearn.ensemble import BaggingClassifier

    HEADS.check(base, "bagging base")
    if base in ENSEMBLES:
        raise ValueError(f"bagging base {base!r} is itself an ensemble")
    return BaggingClassifier(HEADS[base](seed=seed), n_estimators=n_estimators, max_samples=max_samples,
                             random_state=seed)


ENSEMBLES = ("soft_voting", "stacking", "bagging")


def fit_head(head, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None):
    """Fit a fresh clone of ``head`` (with ``sample_weight`` when given)."""
    est = clone(head)
    if sample_weight is None:
        return est.fit(X, y)
    return est.fit(X, y, sample_weight=sample_weight)


def predict_proba_full(model, X: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` with one column per class index, zeros for classes absent from training."""
    p = model.predict_proba(X)
    out = np.zeros((len(X), n_classes), dtype=np.float64)
    out[:, np.asarray(model.classes_, dtype=int)] = p
    return out
