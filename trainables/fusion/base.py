"""The fusion registry and the helpers the fusions share. A leaf of the fusion package: it imports
nothing from the fusion modules, so each of them can import it and register itself.

Declared parameters (``FUSIONS.params[name]``) are validation as data: the space check and
``python -m sweeps list`` read them; tests/test_fusion_params.py checks that every registered fusion
declares exactly its constructor's keyword parameters, with the same defaults.
"""

from __future__ import annotations

import numpy as np
import torch

from ..registry import Param, Registry

FUSIONS = Registry("fusion")
MISSING = ("zero", "neutral", "mean")  # stand-ins for a missing modality (see the package docstring)

# parameters several fusions declare the same way
PRESENCE_INDICATORS = Param(bool, True, doc="append one presence flag per modality, so a head can tell absent from all-zero")
MODALITY_DROPOUT = Param(float, 0.0, low=0.0, high=1.0, open_high=True,
                         doc="probability of hiding each present modality of a training sample (never all); below 1")
LR = Param(float, 1e-2, low=0.0, open_low=True, doc="AdamW learning rate (> 0)")
WEIGHT_DECAY = Param(float, 1e-4, low=0.0, doc="AdamW weight decay")


def positive_int(default: int, doc: str) -> Param:
    """A whole-number parameter >= 1."""
    return Param(int, default, low=1, doc=doc)


def present_means(vectors: dict[str, np.ndarray], presence: np.ndarray) -> dict[str, np.ndarray]:
    """Per modality, the mean vector of the samples that have it (zeros when none has)."""
    out = {}
    for k, (m, v) in enumerate(vectors.items()):
        rows = np.asarray(v, np.float64)[presence[:, k]]
        out[m] = (rows.mean(0) if len(rows) else np.zeros(v.shape[1])).astype(np.float32)
    return out


def check_fitted(fitted: list[str] | None, vectors: dict, kind: str) -> None:
    """Raise unless the fusion ``kind`` was fitted (``fitted`` = its modality names) on ``vectors``' modalities."""
    if fitted is None:
        raise RuntimeError(f"fusion {kind!r} is learned: call fit() on the training samples before fuse()")
    if list(vectors) != fitted:
        raise ValueError(f"fusion {kind!r} was fitted on modalities {fitted}, got {list(vectors)}")


def drop_modalities(present: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Hide each present modality with probability ``p``; a sample keeps at least one it had."""
    u = torch.rand(present.shape, generator=g)
    keep = present & (u >= p)
    lost = present.any(1) & ~keep.any(1)
    pick = torch.where(present, u, torch.full_like(u, -1.0)).argmax(1)  # a random present one
    keep[lost, pick[lost]] = True
    return keep
