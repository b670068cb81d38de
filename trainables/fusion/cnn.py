"""CNN fusion: a 1-D convolution over the modality axis."""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Param
from .base import FUSIONS, positive_int
from .learned import LearnedFusion, learned_params


class _CNNBody(nn.Module):
    def __init__(self, dims: list[int], dim: int, channels: int, kernel_size: int, pool: str):
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(d, dim) for d in dims)
        self.conv = nn.Conv1d(dim + 1, channels, kernel_size, padding=kernel_size // 2)
        self.pool = pool
        self.out_dim = channels

    def forward(self, xs, present):
        H = torch.stack([p(x) for p, x in zip(self.proj, xs)], 1)  # (B, M, d)
        Z = torch.cat([H, present.unsqueeze(-1).to(H.dtype)], -1).transpose(1, 2)  # (B, d + 1, M)
        Z = torch.relu(self.conv(Z))  # (B, channels, L)
        return Z.amax(2) if self.pool == "max" else Z.mean(2)


@FUSIONS.register("cnn", params=learned_params(
    channels=positive_int(32, "convolution channels: the fused vector's width"),
    kernel_size=positive_int(3, "convolution width along the modality axis"),
    pool=Param(str, "max", choices=("max", "mean"), doc="pooling over the modality axis"),
))
class CNNFusion(LearnedFusion):
    """CNN fusion (the lumbar seed): each modality projected to ``dim``, stacked to (B, M, dim) with
    a presence channel, a 1-D convolution over the modality axis, ReLU, then max or mean pooling
    over that axis -> (B, channels), the penultimate features of the trained classifier."""

    kind = "cnn"

    def __init__(self, dim: int = 32, channels: int = 32, kernel_size: int = 3, pool: str = "max",
                 missing: str = "zero", modality_dropout: float = 0.0, epochs: int = 100, lr: float = 1e-2,
                 weight_decay: float = 1e-4, batch_size: int = 512):
        if pool not in ("max", "mean"):
            raise ValueError(f"fusion 'cnn': pool must be 'max' or 'mean', got {pool!r}")
        super().__init__(dim, missing, modality_dropout, epochs, lr, weight_decay, batch_size)
        self.channels = channels
        self.kernel_size = kernel_size
        self.pool = pool

    def _body(self, dims):
        return _CNNBody(dims, self.dim, self.channels, self.kernel_size, self.pool)
