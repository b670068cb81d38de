"""Fusions: per-modality vectors -> one vector per sample.

Contract: ``fuse({modality: (B, D_m)}, presence (B, M)) -> (B, D_fused)`` with modalities in a fixed
order (the image modalities, then ``text`` and ``tabular`` when the trial uses them; column k of
``presence`` belongs to the k-th modality); a missing modality is never a crash, and its vector's
content never reaches the output. A fusion with learned parts also has
``fit(vectors, presence, y, n_classes, class_weight=None, seed=0)``, which the trial calls with the
fold's training samples only; ``fuse`` is then applied to every sample. ``fit`` starts afresh each
call (one instance serves every fold) and depends on its arguments only (not on the global RNG).

Missing modalities (``missing`` on the fusions below; ``concat`` keeps its zero fill):

- ``zero``: the raw zero vector stands in for the absent modality;
- ``mean``: the mean of the training samples that have the modality;
- ``neutral``: a vector per modality learned with the fusion, initialised at the training mean (it
  moves only where training sees the modality absent: really missing, or dropped by
  ``modality_dropout``; weight decay pulls it back toward the mean). It needs a trained fusion, so
  ``concat_impute`` does not offer it.

``modality_dropout`` (learned fusions): during training each present modality of a sample is hidden
with that probability (never all of a sample's modalities), so the fusion learns to cope with
missing inputs.

Cross-attention between image instances and report tokens is ``cross_attention``
(``trainables/cross_attention.py``): it reads the instance bags and the texts themselves (a fusion
with ``uses_instances = True`` gets them from the pipeline), so it replaces the pooling rather than
following it.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from .heads import HEADS, fit_head, predict_proba_full
from .registry import Registry

FUSIONS = Registry("fusion")
MISSING = ("zero", "neutral", "mean")


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


def _present_means(vectors: dict[str, np.ndarray], presence: np.ndarray) -> dict[str, np.ndarray]:
    """Per modality, the mean vector of the samples that have it (zeros when none has)."""
    out = {}
    for k, (m, v) in enumerate(vectors.items()):
        rows = np.asarray(v, np.float64)[presence[:, k]]
        out[m] = (rows.mean(0) if len(rows) else np.zeros(v.shape[1])).astype(np.float32)
    return out


def _check_names(fitted: list[str] | None, vectors: dict, kind: str) -> None:
    if fitted is None:
        raise RuntimeError(f"fusion {kind!r} is learned: call fit() on the training samples before fuse()")
    if list(vectors) != fitted:
        raise ValueError(f"fusion {kind!r} was fitted on modalities {fitted}, got {list(vectors)}")


@FUSIONS.register("concat_impute")
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
        self.means_ = _present_means(vectors, np.asarray(presence, bool))
        return self

    def fuse(self, vectors: dict[str, np.ndarray], presence: np.ndarray) -> np.ndarray:
        if self.missing == "mean":
            _check_names(self.names_, vectors, "concat_impute")
        presence = np.asarray(presence, bool)
        parts = []
        for k, (m, v) in enumerate(vectors.items()):
            fill = self.means_[m] if self.missing == "mean" else np.zeros(v.shape[1], np.float32)
            parts.append(np.where(presence[:, k : k + 1], v, fill))
        if self.presence_indicators:
            parts.append(presence.astype(np.float32))
        return np.concatenate(parts, axis=1).astype(np.float32)


# -- learned (torch) fusions ---------------------------------------------------------------------


class _FusionNet(nn.Module):
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


def _drop_modalities(present: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Hide each present modality with probability ``p``; a sample keeps at least one it had."""
    u = torch.rand(present.shape, generator=g)
    keep = present & (u >= p)
    lost = present.any(1) & ~keep.any(1)
    pick = torch.where(present, u, torch.full_like(u, -1.0)).argmax(1)  # a random present one
    keep[lost, pick[lost]] = True
    return keep


class _LearnedFusion:
    """Shared by the torch fusions: inputs standardised with the training samples' statistics,
    missing modalities replaced by their stand-in, the body trained jointly with a linear classifier
    on ``y`` (cross-entropy, ``class_weight``; AdamW; full batch for a few hundred samples), like
    :func:`trainables.pooling.fit_poolers`. ``fuse`` returns the body's output (the penultimate
    features), for a head to use."""

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

    def _inputs(self, vectors: dict[str, np.ndarray], presence: np.ndarray, device="cpu"):
        presence = np.asarray(presence, bool)
        xs = [torch.as_tensor(np.where(presence[:, k : k + 1], (np.asarray(v, np.float32) - self.mu_[m]) / self.sd_[m],
                                       0.0), dtype=torch.float32, device=device)
              for k, (m, v) in enumerate(vectors.items())]
        return xs, torch.as_tensor(presence, device=device)

    def fit(self, vectors: dict[str, np.ndarray], presence: np.ndarray, y: np.ndarray, n_classes: int,
            class_weight: np.ndarray | None = None, seed: int = 0) -> "_LearnedFusion":
        presence = np.asarray(presence, bool)
        self.names_ = list(vectors)
        self.mu_ = _present_means(vectors, presence)
        self.sd_ = {}
        for k, (m, v) in enumerate(vectors.items()):
            rows = np.asarray(v, np.float32)[presence[:, k]]
            self.sd_[m] = (rows.std(0) if len(rows) > 1 else np.ones(v.shape[1], np.float32)) + np.float32(1e-6)
        # stand-ins in standardised units: the training mean is 0, the raw zero vector is -mu/sd
        fills = [torch.as_tensor(-self.mu_[m] / self.sd_[m] if self.missing == "zero" else np.zeros_like(self.mu_[m]))
                 for m in self.names_]
        device = "cuda" if torch.cuda.is_available() else "cpu"  # as fit_poolers: a GPU when the trial has one
        with torch.random.fork_rng(devices=[]):  # seeded init, the caller's global RNG left as it was
            torch.manual_seed(seed)
            net = _FusionNet(self._body([v.shape[1] for v in vectors.values()]), fills, self.missing == "neutral",
                             n_classes)
        net.to(device)
        g = torch.Generator().manual_seed(seed)
        xs, _ = self._inputs(vectors, presence, device)
        present = torch.as_tensor(presence)  # on the CPU, where the dropout draws are made
        yt = torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)
        cw = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32, device=device)
        loss_fn = nn.CrossEntropyLoss(weight=cw)
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=self.lr,
                                weight_decay=self.weight_decay)
        n = len(yt)
        batch = max(1, min(self.batch_size, n))
        net.train()
        for _ in range(self.epochs):
            perm = torch.randperm(n, generator=g)
            for start in range(0, n, batch):
                idx = perm[start : start + batch]
                pres = present[idx]
                if self.modality_dropout > 0:
                    pres = _drop_modalities(pres, self.modality_dropout, g)
                idx = idx.to(device)
                loss = loss_fn(net([x[idx] for x in xs], pres.to(device)), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.net_ = net.cpu().eval()
        return self

    @torch.inference_mode()
    def fuse(self, vectors: dict[str, np.ndarray], presence: np.ndarray) -> np.ndarray:
        _check_names(self.names_, vectors, self.kind)
        xs, present = self._inputs(vectors, presence)
        return self.net_.features(xs, present).numpy().astype(np.float32)


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


@FUSIONS.register("attention")
class AttentionFusion(_LearnedFusion):
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
        _check_names(self.names_, vectors, self.kind)
        xs, present = self._inputs(vectors, presence)
        body = self.net_.body
        return body.weights(body.project(self.net_.filled(xs, present)), present).numpy()


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


@FUSIONS.register("cnn")
class CNNFusion(_LearnedFusion):
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


@FUSIONS.register("gated")
class GatedFusion(_LearnedFusion):
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


# -- an ensemble of per-modality models ------------------------------------------------------------


def _row_keys(vectors: dict[str, np.ndarray], presence: np.ndarray) -> list[bytes]:
    """One byte string per sample: its presence and its present modalities' float32 values."""
    parts = [np.where(presence[:, k : k + 1], np.asarray(v, np.float32), np.float32(0))
             for k, v in enumerate(vectors.values())]
    rows = np.ascontiguousarray(np.concatenate([*parts, presence.astype(np.float32)], 1), np.float32)
    return rows.view(np.dtype((np.void, rows.shape[1] * 4))).ravel().tolist()


def _fit_member(head, X: np.ndarray, y: np.ndarray, w: np.ndarray | None, n_classes: int):
    """``head`` fitted on (X, y); the class prior where y has a single class (a head cannot fit that)."""
    if len(np.unique(y)) < 2:
        from sklearn.dummy import DummyClassifier

        return DummyClassifier(strategy="prior").fit(X, y)
    return fit_head(head, X, y, w)


@FUSIONS.register("per_modality_ensemble")
class PerModalityEnsembleFusion:
    """One model per modality (the lumbar seed's "multiple models"): ``head`` fitted on the training
    samples that have that modality; the fused vector is, per modality, its predicted class
    probabilities and a presence flag (zeros and flag 0 where the modality is absent): the input of a
    stacking head.

    Honest stacking: every model is fitted on the fold's training part only. The training samples'
    outputs are out-of-fold, from an inner ``StratifiedKFold(inner_folds)`` over those samples (plain,
    not patient-grouped: the fusion sees no patient ids, so a patient with several samples can sit on
    both sides of an inner split); the other samples' outputs come from the models fitted on all the
    training samples. ``fuse`` recognises the training samples by content (the exact float32 values
    and presence ``fit`` saw)."""

    def __init__(self, head: str = "logreg", inner_folds: int = 5):
        HEADS.check(head, "fusion per_modality_ensemble.head")
        if inner_folds < 2:
            raise ValueError(f"fusion 'per_modality_ensemble': inner_folds must be >= 2, got {inner_folds}")
        self.head = head
        self.inner_folds = inner_folds
        self.names_: list[str] | None = None

    def fit(self, vectors: dict[str, np.ndarray], presence: np.ndarray, y: np.ndarray, n_classes: int,
            class_weight: np.ndarray | None = None, seed: int = 0) -> "PerModalityEnsembleFusion":
        from sklearn.model_selection import StratifiedKFold

        presence, y = np.asarray(presence, bool), np.asarray(y)
        self.names_, self.n_classes_ = list(vectors), n_classes
        head = HEADS[self.head](seed=seed)
        w = None if class_weight is None else np.asarray(class_weight, np.float64)[y]
        self.models_ = {}
        oof = np.zeros((len(y), len(vectors), n_classes + 1), np.float32)
        for k, (m, v) in enumerate(vectors.items()):
            rows = np.flatnonzero(presence[:, k])
            if not len(rows):
                self.models_[m] = None
                continue
            X, yk, wk = np.asarray(v, np.float32)[rows], y[rows], None if w is None else w[rows]
            self.models_[m] = _fit_member(head, X, yk, wk, n_classes)
            oof[rows, k, n_classes] = 1.0
            n_splits = min(self.inner_folds, int(np.bincount(yk).max()))
            if n_splits < 2:  # a single sample: no held-out prediction possible, the prior stands in
                oof[rows, k, :n_classes] = np.bincount(yk, minlength=n_classes) / len(yk)
                continue
            with warnings.catch_warnings():  # a class rarer than n_splits: sklearn warns, folds still valid
                warnings.filterwarnings("ignore", message="The least populated class")
                splits = list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(X, yk))
            for itr, ite in splits:
                member = _fit_member(head, X[itr], yk[itr], None if wk is None else wk[itr], n_classes)
                oof[rows[ite], k, :n_classes] = predict_proba_full(member, X[ite], n_classes)
        self.train_outputs_ = dict(zip(_row_keys(vectors, presence), oof.reshape(len(y), -1)))
        return self

    def fuse(self, vectors: dict[str, np.ndarray], presence: np.ndarray) -> np.ndarray:
        _check_names(self.names_, vectors, "per_modality_ensemble")
        presence = np.asarray(presence, bool)
        c = self.n_classes_
        out = np.zeros((len(presence), len(vectors), c + 1), np.float32)
        for k, (m, v) in enumerate(vectors.items()):
            rows = np.flatnonzero(presence[:, k])
            out[rows, k, c] = 1.0
            if len(rows) and self.models_[m] is not None:
                out[rows, k, :c] = predict_proba_full(self.models_[m], np.asarray(v, np.float32)[rows], c)
        out = out.reshape(len(presence), -1)
        for i, key in enumerate(_row_keys(vectors, presence)):  # training samples: their out-of-fold outputs
            if key in self.train_outputs_:
                out[i] = self.train_outputs_[key]
        return out


from . import cross_attention  # noqa: E402,F401  (registers the "cross_attention" fusion)
