"""Gated fusion: a gated multimodal unit over M modalities."""

from __future__ import annotations

import torch
from torch import nn

from .base import FUSIONS
from .learned import LearnedFusion, learned_params


class _GatedBody(nn.Module):
    def __init__(self, dims: list[int], dim: int):
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(d, dim) for d in dims)
        m = len(dims)
        self.gate = nn.Linear(m * dim + m, m * dim)
        self.out_dim = m * dim

    def forward(self, xs, present):
        H = torch.stack([torch.tanh(p(x)) for p, x in zip(self.proj, xs)], 1)  # (B, M, d)
        pf = present.to(H.dtype)
        context = torch.cat([(H * pf.unsqueeze(-1)).flatten(1), pf], 1)  # the present modalities only
        return (torch.sigmoid(self.gate(context)).view_as(H) * H).flatten(1)


@FUSIONS.register("gated", params=learned_params())
class GatedFusion(LearnedFusion):
    """Gated fusion, a gated multimodal unit (Arevalo et al., ICLR workshop 2017) for M modalities:
    h_m = tanh(W_m x_m), each scaled element-wise by a sigmoid gate computed from all present
    modalities' h and the presence flags -> (B, M * dim). An absent modality enters as its
    ``missing`` stand-in (gated), and never into the gates' context."""

    kind = "gated"

    def __init__(self, dim: int = 32, missing: str = "zero", modality_dropout: float = 0.0, epochs: int = 100,
                 lr: float = 1e-2, weight_decay: float = 1e-4, batch_size: int = 512):
        super().__init__(dim, missing, modality_dropout, epochs, lr, weight_decay, batch_size)

    def _body(self, dims):
        return _GatedBody(dims, self.dim)
