"""Fusions: per-modality vectors -> one vector per sample.

Contract: ``fuse({modality: (B, D_m)}, presence (B, M)) -> (B, D_fused)`` with modalities in a fixed
order (the image modalities, then ``text`` and ``tabular`` when the trial uses them; column k of
``presence`` belongs to the k-th modality); a missing modality is never a crash. A fusion with
learned parts also has ``fit(vectors, presence, y, n_classes, class_weight=None, seed=0)``, which the
trial calls with the fold's training samples only.
"""

from __future__ import annotations

import numpy as np

from .registry import Registry

FUSIONS = Registry("fusion")


@FUSIONS.register("concat")
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
