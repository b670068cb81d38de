"""Concatenation fusions: ``concat`` (zero fill) and ``concat_impute`` (zero or training-mean fill)."""

from __future__ import annotations

import numpy as np

from ..registry import Param
from .base import FUSIONS, PRESENCE_INDICATORS, check_fitted, present_means


@FUSIONS.register("concat", params={"presence_indicators": PRESENCE_INDICATORS})
class ConcatFusion:
    """Late fusion by concatenation; a missing modality is zero-filled and a presence indicator
    per modality is appended, so a head can tell "absent" from "all-zero"."""

    def __init__(self, presence_indicators: bool = True):
        self.presence_indicators = presence_indicators

    def fuse(self, vectors: dict[str, np.ndarray], presence: np.ndarray) -> np.ndarray:
        names = list(vectors)
        filled = {m: np.where(presence[:, k : k + 1], vectors[m], 0.0) for k, m in enumerate(names)}  # (B, D_m)
        images = [m for m in names if m not in ("text", "tabular")]
        parts = [filled[m] for m in images]
        if self.presence_indicators:  # tabular is never absent as a block (its NaNs are imputed)
            parts.append(presence[:, [k for k, m in enumerate(names) if m != "tabular"]].astype(np.float32))
        parts += [filled[m] for m in ("text", "tabular") if m in filled]
        return np.concatenate(parts, axis=1).astype(np.float32)


@FUSIONS.register("concat_impute", params={
    "missing": Param(str, "zero", choices=("zero", "mean"),
                     doc="stand-in for a missing modality: the zero vector or the training samples' mean"),
    "presence_indicators": PRESENCE_INDICATORS,
})
class ConcatImputeFusion:
    """Concatenation (modalities in the given order) with a chosen stand-in for a missing modality,
    ``zero`` or the training ``mean``, and presence indicators for every modality. Unlike
    ``concat`` it has a ``fit`` (the means come from the training samples only)."""

    def __init__(self, missing: str = "zero", presence_indicators: bool = True):
        if missing not in ("zero", "mean"):
            raise ValueError(f"concat_impute: missing must be 'zero' or 'mean', got {missing!r} "
                             "('neutral' is learned: use the attention, cnn or gated fusion)")
        self.missing = missing
        self.presence_indicators = presence_indicators
        self.names_: list[str] | None = None

    def fit(self, vectors, presence, y, n_classes, class_weight=None, seed=0) -> "ConcatImputeFusion":
        self.names_ = list(vectors)
        self.means_ = present_means(vectors, np.asarray(presence, bool))
        return self

    def fuse(self, vectors: dict[str, np.ndarray], presence: np.ndarray) -> np.ndarray:
        if self.missing == "mean":
            check_fitted(self.names_, vectors, "concat_impute")
        presence = np.asarray(presence, bool)
        parts = []
        for k, (m, v) in enumerate(vectors.items()):
            fill = self.means_[m] if self.missing == "mean" else np.zeros(v.shape[1], np.float32)
            parts.append(np.where(presence[:, k : k + 1], v, fill))
        if self.presence_indicators:
            parts.append(presence.astype(np.float32))
        return np.concatenate(parts, axis=1).astype(np.float32)
