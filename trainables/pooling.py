"""Poolings: a bag of instance embeddings (slices of a series) -> one vector.

Contract: ``forward(x, mask)`` with ``x`` (B, N, D) float and ``mask`` (B, N) bool (True = a real
instance, False = padding) returns (B, out_dim). A bag with no real instance (a missing series)
pools to zeros. ``learnable`` poolings are trained by :func:`fit_poolers` on a fold's training part
only, never on the samples they are later scored on.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .registry import Param, Registry
from .training import TRAIN_PARAMS, fit, options_from, training_device

POOLINGS = Registry("pooling")

# a learnable pooling's parameters: its layer sizes plus the training options of fit_poolers
ATTENTION_PARAMS = {
    "hidden_dim": Param(int, 64, low=1, doc="attention hidden units"),
    "dropout": Param(float, 0.0, low=0, high=1, open_high=True, doc="dropout on the attention hidden layer"),
    **TRAIN_PARAMS,
}


class _Pool(nn.Module):
    learnable = False

    def __init__(self, in_dim: int):
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = in_dim

    def weights(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-instance weights (B, N) summing to 1 over real instances (0 for an empty bag)."""
        raise NotImplementedError


@POOLINGS.register("mean", params={})
class MeanPool(_Pool):
    """Average pooling over the real instances."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(x.dtype).unsqueeze(-1)  # (B, N, 1)
        return (x * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, D)

    def weights(self, x, mask):
        m = mask.to(x.dtype)
        return m / m.sum(1, keepdim=True).clamp_min(1.0)


@POOLINGS.register("max", params={})
class MaxPool(_Pool):
    """Element-wise max over the real instances."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        filled = x.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        out = filled.max(1).values  # (B, D)
        return torch.where(mask.any(1, keepdim=True), out, torch.zeros_like(out))


@POOLINGS.register("attention", params=ATTENTION_PARAMS)
class AttentionPool(_Pool):
    """Attention-based MIL pooling (Ilse, Tomczak & Welling, ICML 2018): a = softmax(w^T tanh(V h))."""

    learnable = True

    def __init__(self, in_dim: int, hidden_dim: int = 64, dropout: float = 0.0):
        super().__init__(in_dim)
        self.V = nn.Linear(in_dim, hidden_dim)
        self.w = nn.Linear(hidden_dim, 1, bias=False)
        self.drop = nn.Dropout(dropout)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.w(self.drop(torch.tanh(self.V(x)))).squeeze(-1)  # (B, N)

    def weights(self, x, mask):
        s = self.scores(x).masked_fill(~mask, float("-inf"))
        a = torch.softmax(s, dim=1)
        return torch.nan_to_num(a, nan=0.0)  # an all-padding bag gives NaN -> 0

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.weights(x, mask)  # (B, N)
        return torch.einsum("bn,bnd->bd", a, x)


@POOLINGS.register("gated_attention", params=ATTENTION_PARAMS)
class GatedAttentionPool(AttentionPool):
    """Gated attention MIL pooling (Ilse et al. 2018): a = softmax(w^T (tanh(V h) * sigmoid(U h)))."""

    def __init__(self, in_dim: int, hidden_dim: int = 64, dropout: float = 0.0):
        super().__init__(in_dim, hidden_dim, dropout)
        self.U = nn.Linear(in_dim, hidden_dim)

    def scores(self, x):
        return self.w(self.drop(torch.tanh(self.V(x)) * torch.sigmoid(self.U(x)))).squeeze(-1)


def fit_poolers(
    poolers: dict[str, _Pool],
    bags: dict[str, tuple[np.ndarray, np.ndarray]],
    y: np.ndarray,
    n_classes: int,
    *,
    epochs: int = 40,
    lr: float = 1e-2,
    batch_size: int = 512,  # full batch for cohorts of a few hundred: few, cheap steps
    weight_decay: float = 1e-4,
    class_weight: np.ndarray | None = None,
    seed: int = 0,
    on_epoch: Callable[[int, dict], None] | None = None,
    **options: Any,
) -> dict | None:
    """Train the learnable poolers jointly, end to end, as attention-MIL classifiers.

    Each modality's pooled vector goes through its own linear layer; the logits are summed over
    the modalities a sample has (a missing modality contributes nothing), and the whole is trained
    with cross-entropy on ``y`` by :func:`trainables.training.fit` under the training ``options``
    (named as in :class:`~trainables.training.TrainOptions`). Only the poolers' parameters are
    kept. Call with the fold's training samples only. Non-learnable poolers are left as they are.
    Returns the training history, or None when no pooler is learnable.
    """
    learn = {m: p for m, p in poolers.items() if p.learnable}
    if not learn:
        return None
    opts = options_from({"epochs": epochs, "lr": lr, "batch_size": batch_size, "weight_decay": weight_decay,
                         **options})
    device = training_device()
    torch.manual_seed(seed)  # the heads' init, dropout and input noise: reproducible from the seed
    heads = nn.ModuleDict({m: nn.Linear(p.out_dim, n_classes) for m, p in learn.items()})
    model = nn.ModuleDict({"heads": heads, "poolers": nn.ModuleDict(learn)})
    xs = {m: torch.as_tensor(bags[m][0], dtype=torch.float32, device=device) for m in learn}
    ms = {m: torch.as_tensor(bags[m][1], dtype=torch.bool, device=device) for m in learn}
    # input noise for the mean teacher is in units of each feature's spread over the real instances
    spread = {m: xs[m][ms[m]].std(0).nan_to_num(0.0) for m in learn} if opts.semi_supervised != "none" else {}

    def forward(model: nn.Module, idx: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        logits = torch.zeros(len(idx), n_classes, device=device)
        for m in learn:
            x, mask = xs[m][idx], ms[m][idx]
            if noise:
                x = x + noise * spread[m] * torch.randn_like(x)
            present = mask.any(1, keepdim=True).float()  # (b, 1)
            logits = logits + model["heads"][m](model["poolers"][m](x, mask)) * present
        return logits

    return fit(model, forward, y, n_classes, opts, class_weight=class_weight, seed=seed, on_epoch=on_epoch)


@torch.inference_mode()
def pool(pooler: _Pool, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    pooler.eval()
    return pooler(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(mask, dtype=torch.bool)).numpy()
