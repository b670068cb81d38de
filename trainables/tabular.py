"""Tabular preprocessing, as named components a space can sweep; each is fitted on a fold's
training part only and then applied to every sample.

- ``none``: no tabular features.
- ``simple``: median imputation (with missing-value indicators) and scaling for numeric columns,
  most-frequent imputation and one-hot encoding for categorical ones.
- ``iterative_rf``: the lumbar seed's method: iterative imputation of the numeric columns with a
  random-forest regressor (scikit-learn's ``IterativeImputer``), fitted on the training part only,
  then the same scaling and one-hot encoding.

A space writes ``"tabular": "iterative_rf"``, ``{"name": "iterative_rf", "iterative_rf": {"n_estimators": 50}}``
or the booleans ``True`` (= ``simple``) / ``False`` (= ``none``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .registry import Param, Registry

TABULAR = Registry("tabular preprocessing")

_COMMON = {"scale": Param(bool, True, doc="standardise the numeric columns"),
           "indicators": Param(bool, True, doc="add missing-value indicator columns")}


def normalise(value) -> object:
    """``True``/``False`` are shorthands for ``simple``/``none``."""
    if value is True:
        return "simple"
    if value is False or value is None:
        return "none"
    return value


def _split(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    num = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    return num, [c for c in df.columns if c not in num]


class _Tabular:
    """Common part: build a ColumnTransformer from the numeric imputer, fit on the training rows."""

    def __init__(self, scale: bool = True, indicators: bool = True):
        self.scale = scale
        self.indicators = indicators

    def numeric_imputer(self, seed: int):
        raise NotImplementedError

    def fit_transform(self, df: pd.DataFrame, train: np.ndarray, seed: int = 0) -> np.ndarray:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        num, cat = _split(df)
        steps = [self.numeric_imputer(seed)] + ([StandardScaler()] if self.scale else [])
        parts = []
        if num:
            parts.append(("num", make_pipeline(*steps), num))
        if cat:
            parts.append(("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                               OneHotEncoder(handle_unknown="ignore", sparse_output=False)), cat))
        if not parts:
            self.fitted_ = (None, num, cat)
            return np.zeros((len(df), 0), np.float32)
        cat_df = df.copy()
        cat_df[cat] = cat_df[cat].astype(object).where(cat_df[cat].notna(), np.nan)
        ct = ColumnTransformer(parts)
        ct.fit(cat_df.iloc[train])
        self.fitted_ = (ct, num, cat)  # kept for ``transform`` (a saved model applies it to new samples)
        return np.asarray(ct.transform(cat_df), dtype=np.float32)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """The transform ``fit_transform`` fitted, applied to new rows (same columns): (n, d) float32."""
        ct, num, cat = self.fitted_
        if ct is None:
            return np.zeros((len(df), 0), np.float32)
        cat_df = df[num + cat].copy()
        cat_df[cat] = cat_df[cat].astype(object).where(cat_df[cat].notna(), np.nan)
        return np.asarray(ct.transform(cat_df), dtype=np.float32)


@TABULAR.register("none", params={})
class NoTabular:
    """No tabular features."""

    def fit_transform(self, df: pd.DataFrame, train: np.ndarray, seed: int = 0) -> None:
        return None


@TABULAR.register("simple", params=_COMMON)
class SimpleTabular(_Tabular):
    """Median imputation (+ missing indicators), scaling, one-hot encoding."""

    def numeric_imputer(self, seed: int):
        from sklearn.impute import SimpleImputer

        return SimpleImputer(strategy="median", add_indicator=self.indicators)


@TABULAR.register("iterative_rf", params={
    "n_estimators": Param(int, 30, low=1, doc="trees in the imputing random forest"),
    "max_iter": Param(int, 5, low=1, doc="imputation rounds"),
    "max_depth": Param(int, 8, low=1, nullable=True, doc="tree depth (None: unlimited)"),
    **_COMMON})
class IterativeRFTabular(_Tabular):
    """Iterative imputation with a random-forest estimator (the lumbar seed's), then scaling and one-hot."""

    def __init__(self, n_estimators: int = 30, max_iter: int = 5, max_depth: int | None = 8, scale: bool = True,
                 indicators: bool = True):
        super().__init__(scale, indicators)
        self.n_estimators, self.max_iter, self.max_depth = n_estimators, max_iter, max_depth

    def numeric_imputer(self, seed: int):
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.experimental import enable_iterative_imputer  # noqa: F401
        from sklearn.impute import IterativeImputer

        rf = RandomForestRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth, random_state=seed, n_jobs=1)
        return IterativeImputer(estimator=rf, max_iter=self.max_iter, random_state=seed, add_indicator=self.indicators,
                                skip_complete=True)
