"""Attention fusion: a learned score per modality, softmax over the present ones, weighted sum."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..registry import Param
from .base import FUSIONS, check_fitted, positive_int
from .learned import LearnedFusion, learned_params


class _AttentionBody(nn.Module):
    def __init__(self, dims: list[int], dim: int, hidden_dim: int, per_modality: bool):
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(d, dim) for d in dims)
        self.score = nn.Sequential(nn.Linear(dim, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, 1))
        self.per_modality = per_modality
        self.out_dim = dim * (1 + len(dims) * per_modality)

    def project(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([p(x) for p, x in zip(self.proj, xs)], 1)  # (B, M, d)

    def weights(self, H: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Softmax over the present modalities: exactly 0 for a missing one, summing to 1 over the
        others (all 0 for a sample with none)."""
        anyp = present.any(1, keepdim=True)
        s = self.score(H).squeeze(-1).masked_fill(~present, float("-inf")).masked_fill(~anyp, 0.0)
        return torch.softmax(s, 1) * anyp

    def forward(self, xs, present):
        H = self.project(xs)
        fused = torch.einsum("bm,bmd->bd", self.weights(H, present), H)
        return torch.cat([fused, H.flatten(1)], 1) if self.per_modality else fused


@FUSIONS.register("attention", params=learned_params(
    hidden_dim=positive_int(32, "hidden width of the MLP that scores each modality"),
    per_modality=Param(bool, False, doc="append the projected modality vectors to the weighted sum"),
))
class AttentionFusion(LearnedFusion):
    """Dynamic weighting (the lumbar seed): each modality projected to ``dim``, a score per modality
    from a small MLP, softmax over the present modalities only (a missing one is masked out and the
    weights renormalise), weighted sum -> (B, dim). With ``per_modality`` the projected modality
    vectors are appended (an absent one as its ``missing`` stand-in, the only place ``missing``
    acts here: the weighted sum never sees absent modalities)."""

    kind = "attention"

    def __init__(self, dim: int = 32, hidden_dim: int = 32, per_modality: bool = False, missing: str = "zero",
                 modality_dropout: float = 0.0, epochs: int = 100, lr: float = 1e-2, weight_decay: float = 1e-4,
                 batch_size: int = 512):
        super().__init__(dim, missing, modality_dropout, epochs, lr, weight_decay, batch_size)
        self.hidden_dim = hidden_dim
        self.per_modality = per_modality

    def _body(self, dims):
        return _AttentionBody(dims, self.dim, self.hidden_dim, self.per_modality)

    @torch.inference_mode()
    def modality_weights(self, vectors: dict[str, np.ndarray], presence: np.ndarray) -> np.ndarray:
        """(B, M) attention weight of each modality, 0 where absent."""
        check_fitted(self.names_, vectors, self.kind)
        xs, present = self._inputs(vectors, presence)
        body = self.net_.body
        return body.weights(body.project(self.net_.filled(xs, present)), present).numpy()
