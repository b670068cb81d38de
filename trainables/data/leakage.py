"""Leakage guard: find tabular columns that alone predict the label almost perfectly.

A column such as the knee sheet's T-score (which *defines* the osteoporosis diagnosis) or an ICU
outcome recorded after the image lets a model learn the answer instead of the patient. ``scan`` fits,
for each column on its own, a depth-3 decision tree and scores its out-of-fold predictions, with folds
grouped by patient (a patient's rows never sit on both sides). A column whose macro one-vs-rest AUC or
balanced accuracy reaches ``threshold`` is reported with its scores.

Encodings, fitted on each fold's training part only:

- numeric columns: the value (NaN replaced by the training median) and a missing indicator, so that a
  column whose *missingness* gives the label away is caught too;
- other columns: each category replaced by its smoothed class frequencies in the training part
  (unseen categories and NaN-as-a-category included). A depth-3 tree on one-hot columns can only
  look at 8 categories; class frequencies let it use all of them in a few splits.

Text columns (free-text notes, reports) are screened by ``scan_text``/``text_scores`` with a simple text
model instead: TF-IDF of words and word pairs (terms in at least two notes) and an L2 logistic
regression, both fitted on each fold's training part, scored out of fold on the same patient-grouped
folds; the terms that carry the label are the largest coefficients of the model fitted on all labelled
notes (named per class). Text predicts a label far less directly than a copied column, so its default
threshold is lower (``TEXT_THRESHOLD``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.tree import DecisionTreeClassifier

__all__ = ["scan", "column_scores", "scan_text", "text_scores", "TEXT_THRESHOLD"]

MAX_DEPTH = 3
MAX_FOLDS = 5
TEXT_THRESHOLD = 0.85  # out-of-fold AUC at which a text column alone is flagged
TOP_TERMS = 6


def scan(df: pd.DataFrame, y: np.ndarray, groups: np.ndarray, *, threshold: float = 0.95, seed: int = 0,
         target: str = "the label") -> dict[str, str]:
    """Return ``{column: reason}`` for every column of ``df`` that alone predicts ``y`` with
    out-of-fold macro AUC or balanced accuracy >= ``threshold``.

    ``y`` holds class indices (``-1`` = not labelled: those rows are ignored); ``groups`` the patient
    key of each row. ``target`` names the label in the reasons. Deterministic for a given ``seed``.
    """
    out = {}
    for col, (auc, bacc) in column_scores(df, y, groups, seed=seed).items():
        if max(auc, bacc) >= threshold:
            out[col] = (f"alone predicts {target!r} with AUC {auc:.2f} and balanced accuracy {bacc:.2f} "
                        f"(out-of-fold, grouped by patient; flagged at >= {threshold:.2f})")
    return out


def column_scores(df: pd.DataFrame, y: np.ndarray, groups: np.ndarray, *, seed: int = 0) -> dict[str, tuple[float, float]]:
    """``{column: (macro one-vs-rest AUC, balanced accuracy)}`` of each column's out-of-fold tree.

    Constant or empty columns, and inputs with fewer than two labelled classes or patients, give no entry.
    """
    prepared = _prepare(df, y, groups, seed)
    if prepared is None:
        return {}
    df, y, classes, folds = prepared
    scores = {}
    for col in df.columns:
        values = df[col]
        if values.nunique(dropna=False) < 2:
            continue
        proba = _oof_proba(values, y, len(classes), folds, seed)
        scores[col] = (_macro_auc(y, proba), float(balanced_accuracy_score(y, proba.argmax(1))))
    return scores


def _prepare(df: pd.DataFrame, y, groups, seed: int):
    """The labelled rows (re-indexed), their labels as 0..K-1, the classes, and grouped stratified folds;
    None with fewer than two labelled classes or patients."""
    y = np.asarray(y)
    groups = np.asarray(groups)
    if not (len(df) == len(y) == len(groups)):
        raise ValueError(f"df, y and groups differ in length: {len(df)}, {len(y)}, {len(groups)}")
    keep = y != -1
    df, y, groups = df.loc[keep].reset_index(drop=True), y[keep], groups[keep]
    classes = np.unique(y)
    y = np.searchsorted(classes, y)  # 0..K-1
    n_splits = min(MAX_FOLDS, len(np.unique(groups)), int(np.bincount(y).max()) if len(y) else 0)
    if len(classes) < 2 or n_splits < 2:
        return None
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has only n members": fine for a screen
        warnings.simplefilter("ignore", UserWarning)
        folds = list(splitter.split(np.zeros(len(y)), y, groups))
    return df, y, classes, folds


def scan_text(df: pd.DataFrame, y: np.ndarray, groups: np.ndarray, *, threshold: float = TEXT_THRESHOLD,
              seed: int = 0, target: str = "the label", class_names=None) -> dict[str, str]:
    """``{text column: reason}`` for every column of ``df`` whose notes alone predict ``y`` with out-of-fold
    macro AUC >= ``threshold`` (TF-IDF + logistic regression, folds grouped by patient); the reason names
    the terms that carry the label. ``class_names``: the names of ``y``'s class indices, for the reason."""
    out = {}
    for col, (auc, bacc, terms) in text_scores(df, y, groups, seed=seed, class_names=class_names).items():
        if auc >= threshold:
            out[col] = (f"text alone predicts {target!r} with AUC {auc:.2f} and balanced accuracy {bacc:.2f} "
                        f"(TF-IDF + logistic regression, out-of-fold, grouped by patient; flagged at >= "
                        f"{threshold:.2f}); terms carrying the label: {terms}")
    return out


def text_scores(df: pd.DataFrame, y: np.ndarray, groups: np.ndarray, *, seed: int = 0,
                class_names=None) -> dict[str, tuple[float, float, str]]:
    """``{text column: (macro AUC, balanced accuracy, top terms)}`` of each column's out-of-fold text model.
    Columns with fewer than two distinct non-empty notes, or no term in two notes, give no entry."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    prepared = _prepare(df, y, groups, seed)
    if prepared is None:
        return {}
    df, y, classes, folds = prepared
    names = [str(c) for c in (class_names if class_names is not None else classes)]
    names = [names[int(c)] if class_names is not None else names[i] for i, c in enumerate(classes)]
    k = len(classes)

    def model():
        return (TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, stop_words="english"),
                LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced"))

    out = {}
    for col in df.columns:
        docs = df[col].fillna("").astype(str).str.strip().to_numpy(dtype=object)
        if len(set(d for d in docs if d)) < 2:
            continue
        proba = np.zeros((len(y), k))
        try:
            for train, test in folds:
                vec, clf = model()
                x_train = vec.fit_transform(docs[train])
                if len(np.unique(y[train])) < 2:
                    proba[test] = np.bincount(y[train], minlength=k) / len(train)
                    continue
                clf.fit(x_train, y[train])
                proba[np.ix_(test, clf.classes_)] = clf.predict_proba(vec.transform(docs[test]))
            vec, clf = model()
            clf.fit(vec.fit_transform(docs), y)
        except ValueError:  # "empty vocabulary": no term in two notes
            continue
        out[col] = (_macro_auc(y, proba), float(balanced_accuracy_score(y, proba.argmax(1))),
                    _top_terms(vec.get_feature_names_out(), clf.coef_, [names[int(c)] for c in clf.classes_],
                               _name_like(docs)))
    return out


def _name_like(docs) -> set[str]:
    """Lower-cased words that only ever appear Title-cased ('Edgar', never 'edgar' or 'EDGAR'): likely
    names of people or places, never shown as terms (a note may name a person)."""
    import re

    seen: dict[str, bool] = {}
    for doc in docs:
        for w in re.findall(r"[^\W\d_]{2,}", doc):
            titled = w[0].isupper() and w[1:].islower()
            seen[w.lower()] = seen.get(w.lower(), True) and titled
    return {w for w, titled in seen.items() if titled}


def _top_terms(vocab: np.ndarray, coef: np.ndarray, class_names: list[str], withheld: set[str] = frozenset()) -> str:
    """``'covid' (-> covid), ...``: the largest positive coefficients, per class (binary: the positive class
    and, by the negative coefficients, the other); terms with a name-like word (``withheld``) left out."""
    keep = np.array([not (set(t.split()) & withheld) for t in vocab], dtype=bool)
    if coef.shape[0] == 1:  # binary: positive class and negative class
        per_class = [(class_names[1], coef[0]), (class_names[0], -coef[0])]
        n = TOP_TERMS // 2
    else:
        per_class = list(zip(class_names, coef))
        n = max(1, TOP_TERMS // len(class_names)) if len(class_names) <= TOP_TERMS else 1
    parts = []
    for name, c in per_class:
        c = np.where(keep, c, -np.inf)
        best = np.argsort(-c)[:n]
        parts += [f"{vocab[i]!r} (-> {name})" for i in best if np.isfinite(c[i]) and c[i] > 0]
    return ", ".join(parts[: 2 * TOP_TERMS]) or "none stand out"


def _oof_proba(values: pd.Series, y: np.ndarray, k: int, folds, seed: int) -> np.ndarray:
    """Out-of-fold class probabilities of a depth-3 tree on one column's encoding."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    raw = values.to_numpy(dtype=np.float64, na_value=np.nan) if numeric else None
    cats = None if numeric else values.astype("string").fillna("\0<NA>").to_numpy(dtype=object)
    proba = np.zeros((len(y), k))
    for train, test in folds:
        if numeric:
            x_train, x_test = _encode_numeric(raw, train, test)
        else:
            x_train, x_test = _encode_categorical(cats, y, k, train, test)
        tree = DecisionTreeClassifier(max_depth=MAX_DEPTH, random_state=seed).fit(x_train, y[train])
        proba[np.ix_(test, tree.classes_)] = tree.predict_proba(x_test)
    return proba


def _encode_numeric(raw: np.ndarray, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value with NaN -> training median (0 if the training part is all NaN), plus a missing flag."""
    med = np.nanmedian(raw[train]) if np.isfinite(raw[train]).any() else 0.0
    x = np.column_stack([np.where(np.isnan(raw), med, raw), np.isnan(raw)])
    return x[train], x[test]


def _encode_categorical(cats: np.ndarray, y: np.ndarray, k: int, train: np.ndarray,
                        test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each category -> its class frequencies in the training part, smoothed towards the training
    prior with weight 1 (unseen categories get the prior)."""
    prior = np.bincount(y[train], minlength=k) / len(train)
    codes, uniques = pd.factorize(cats[train])
    counts = np.zeros((len(uniques), k))
    np.add.at(counts, (codes, y[train]), 1.0)
    table = (counts + prior) / (counts.sum(1, keepdims=True) + 1.0)
    index = pd.Index(uniques)
    def encode(rows: np.ndarray) -> np.ndarray:
        pos = index.get_indexer(cats[rows])
        return np.where(pos[:, None] >= 0, table[pos], prior)
    return encode(train), encode(test)


def _macro_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary AUC, or the macro one-vs-rest AUC over the classes present."""
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=np.arange(proba.shape[1])))
