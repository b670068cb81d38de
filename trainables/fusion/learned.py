"""What the learned (torch) vector fusions share: standardised inputs, the missing-modality
stand-ins, modality dropout, and training the fusion body jointly with a linear classifier through
:func:`trainables.training.fit`. Each fusion (``attention``, ``cnn``, ``gated``) is a subclass in
its own module that supplies the body."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..registry import Param
from ..training import TrainOptions, fit, training_device
from .base import LR, MISSING, MODALITY_DROPOUT, WEIGHT_DECAY, check_fitted, drop_modalities, positive_int, present_means


def learned_params(dim: int = 32, **own: Param) -> dict[str, Param]:
    """The declared parameters of a learned fusion: its ``own`` ones, then those every learned fusion takes."""
    return {
        "dim": positive_int(dim, "width each modality is projected to"),
        **own,
        "missing": Param(str, "zero", choices=MISSING,
                         doc="stand-in for a missing modality: the zero vector, the training mean, or a learned neutral vector"),
        "modality_dropout": MODALITY_DROPOUT,
        "epochs": positive_int(100, "training epochs"),
        "lr": LR,
        "weight_decay": WEIGHT_DECAY,
        "batch_size": positive_int(512, "samples per training step (full batch for a few hundred samples)"),
    }


class FusionNet(nn.Module):
    """Stand-ins for missing modalities + a fusion body + a linear classifier used for training."""

    def __init__(self, body: nn.Module, fills: list[torch.Tensor], learn_fills: bool, n_classes: int):
        super().__init__()
        self.body = body
        self.fills = nn.ParameterList([nn.Parameter(f, requires_grad=learn_fills) for f in fills])
        self.clf = nn.Linear(body.out_dim, n_classes)

    def filled(self, xs: list[torch.Tensor], present: torch.Tensor) -> list[torch.Tensor]:
        return [torch.where(present[:, k : k + 1], x, f) for k, (x, f) in enumerate(zip(xs, self.fills))]

    def features(self, xs: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        return self.body(self.filled(xs, present), present)

    def forward(self, xs, present):
        return self.clf(self.features(xs, present))


class LearnedFusion:
    """Shared by the torch fusions: inputs standardised with the training samples' statistics,
    missing modalities replaced by their stand-in, the body trained jointly with a linear classifier
    on ``y`` (cross-entropy, ``class_weight``; AdamW; full batch for a few hundred samples) by
    :func:`trainables.training.fit`, like :func:`trainables.pooling.fit_poolers`. The batch order
    and the modality-dropout draws share one generator seeded with ``seed``. ``fuse`` returns the
    body's output (the penultimate features), for a head to use."""

    kind = ""

    def __init__(self, dim: int, missing: str, modality_dropout: float, epochs: int, lr: float,
                 weight_decay: float, batch_size: int):
        if missing not in MISSING:
            raise ValueError(f"fusion {self.kind!r}: missing must be one of {', '.join(MISSING)}, got {missing!r}")
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"fusion {self.kind!r}: modality_dropout must be in [0, 1), got {modality_dropout}")
        self.dim = dim
        self.missing = missing
        self.modality_dropout = modality_dropout
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.names_: list[str] | None = None

    def _body(self, dims: list[int]) -> nn.Module:
        raise NotImplementedError

    def train_options(self) -> TrainOptions:
        """The :class:`~trainables.training.TrainOptions` this fusion trains with."""
        return TrainOptions(optimizer="adamw", lr=self.lr, weight_decay=self.weight_decay, epochs=self.epochs,
                            batch_size=self.batch_size)

    def _inputs(self, vectors: dict[str, np.ndarray], presence: np.ndarray, device: Any = "cpu"):
        presence = np.asarray(presence, bool)
        xs = [torch.as_tensor(np.where(presence[:, k : k + 1], (np.asarray(v, np.float32) - self.mu_[m]) / self.sd_[m],
                                       0.0), dtype=torch.float32, device=device)
              for k, (m, v) in enumerate(vectors.items())]
        return xs, torch.as_tensor(presence, device=device)

    def fit(self, vectors: dict[str, np.ndarray], presence: np.ndarray, y: np.ndarray, n_classes: int,
            class_weight: np.ndarray | None = None, seed: int = 0) -> "LearnedFusion":
        presence = np.asarray(presence, bool)
        self.names_ = list(vectors)
        self.mu_ = present_means(vectors, presence)
        self.sd_ = {}
        for k, (m, v) in enumerate(vectors.items()):
            rows = np.asarray(v, np.float32)[presence[:, k]]
            self.sd_[m] = (rows.std(0) if len(rows) > 1 else np.ones(v.shape[1], np.float32)) + np.float32(1e-6)
        # stand-ins in standardised units: the training mean is 0, the raw zero vector is -mu/sd
        fills = [torch.as_tensor(-self.mu_[m] / self.sd_[m] if self.missing == "zero" else np.zeros_like(self.mu_[m]))
                 for m in self.names_]
        device = training_device()  # as fit_poolers: a GPU when the trial has one
        with torch.random.fork_rng(devices=[]):  # seeded init, the caller's global RNG left as it was
            torch.manual_seed(seed)
            net = FusionNet(self._body([v.shape[1] for v in vectors.values()]), fills, self.missing == "neutral",
                            n_classes)
        g = torch.Generator().manual_seed(seed)  # batch order (drawn by fit) and modality dropout, one stream
        xs, _ = self._inputs(vectors, presence, device)
        present = torch.as_tensor(presence)  # on the CPU, where the dropout draws are made

        def forward(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
            pres = present[idx.cpu()]
            if self.modality_dropout > 0 and model.training:
                pres = drop_modalities(pres, self.modality_dropout, g)
            return model([x[idx] for x in xs], pres.to(device))

        fit(net, forward, np.asarray(y), n_classes, self.train_options(), class_weight=class_weight, seed=seed,
            device=device, generator=g)
        self.net_ = net.cpu().eval()
        return self

    @torch.inference_mode()
    def fuse(self, vectors: dict[str, np.ndarray], presence: np.ndarray) -> np.ndarray:
        check_fitted(self.names_, vectors, self.kind)
        xs, present = self._inputs(vectors, presence)
        return self.net_.features(xs, present).numpy().astype(np.float32)
