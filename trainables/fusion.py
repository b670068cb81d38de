"""Fusions: per-modality vectors -> one vector per sample.

Contract: ``fuse({modality: (B, D_m)}, presence (B, M)) -> (B, D_fused)`` with modalities in a fixed
order; a missing modality is never a crash.
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
        parts = []
        for k, (m, v) in enumerate(vectors.items()):
            parts.append(np.where(presence[:, k : k + 1], v, 0.0))  # (B, D_m)
        if self.presence_indicators:
            parts.append(presence.astype(np.float32))  # (B, M)
        return np.concatenate(parts, axis=1).astype(np.float32)
