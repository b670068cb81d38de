"""Cross-attention fusion: the sample's text tokens attend over each image modality's instances.

Unlike the other fusions in :mod:`trainables.fusion`, which see one pooled vector per modality, this one
reads the inputs before pooling (``uses_instances``: the pipeline passes the fold-standardised
instance bags and the joined, preprocessed texts). The words of a report can then pick *which*
slices or views matter ("left", "L4-L5"), which no pooled vector can express.

Per image modality m: the learned token embeddings (queries, ``dim``) attend over the instances
(keys and values, projected from D_m to ``dim`` by :class:`torch.nn.MultiheadAttention`, padding
masked); the outputs are averaged over the real (non-padding) tokens -> one (dim,) vector per
modality. A sample whose bag is empty (or absent) gets a zero vector for that modality. The vector
is the concatenation of those per-modality vectors, then (``include_vectors``) the other modalities'
vectors in ``vectors`` (text / tabular: standardised with the training statistics, 0 = the training
mean where absent), then one presence flag per modality; the pooled image vectors in ``vectors``
are not used (the attention replaces the pooling). It is trained jointly with a linear classifier
(cross-entropy, ``class_weight``, AdamW, full batch, samples in their given order) on the fold's
training samples by :func:`trainables.training.fit`, and ``fuse`` returns the penultimate features
for the trial's head.

Text: tokenised as the ``tokens`` text encoder does (:func:`trainables.text.tokenize`); the
vocabulary is the training texts' ``num_words`` most frequent words (ids from 2; 0 is padding);
each text keeps its first ``max_len`` known words. A sample with no text (empty, absent, or only
words unseen in training) is queried by a single learned "no text" token (id 1), so it still
attends over its images. Instance order is not encoded: the keys are the instance embeddings'
content only.

Trains on the CPU (a small model; CUDA's embedding backward is not deterministic): the same seed
gives the same features.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..registry import Param
from ..text import as_texts, tokenize
from ..training import TrainOptions, fit
from .base import FUSIONS, LR, MODALITY_DROPOUT, WEIGHT_DECAY, drop_modalities, positive_int, present_means

NO_TEXT = 1  # the id of the learned "no text" query token; 0 is padding, words start at 2
_NEEDS_BAGS = "cross_attention needs the trial's instance bags: it runs inside the pipeline"

Bags = dict[str, tuple[np.ndarray, np.ndarray]]


class _CrossAttentionNet(nn.Module):
    def __init__(self, n_tokens: int, image_dims: list[int], n_vector: int, n_modalities: int, dim: int, heads: int,
                 dropout: float, n_classes: int):
        super().__init__()
        self.embed = nn.Embedding(n_tokens, dim, padding_idx=0)
        self.attn = nn.ModuleList(nn.MultiheadAttention(dim, heads, dropout=dropout, kdim=d, vdim=d, batch_first=True)
                                  for d in image_dims)
        self.drop = nn.Dropout(dropout)
        self.out_dim = len(image_dims) * dim + n_vector + n_modalities
        self.clf = nn.Linear(self.out_dim, n_classes)

    def attend(self, ids: torch.Tensor, bags: list[tuple[torch.Tensor, torch.Tensor]], weights: bool = False):
        """Per image modality: (B, dim) token-averaged attention output and (``weights``) the (B, N)
        token-averaged attention weights (else None), both zero for a sample with an empty bag."""
        q = self.embed(ids)  # (B, T, dim)
        tok = (ids > 0).to(q.dtype)
        tok = tok / tok.sum(1, keepdim=True)  # every row has at least one token (a word or "no text")
        out = []
        for mha, (X, mask) in zip(self.attn, bags):
            has = mask.any(1, keepdim=True)  # (B, 1)
            first = torch.zeros_like(mask)
            first[:, 0] = True
            kpm = ~(mask | (first & ~has))  # an empty bag unmasks a (zero) key, so the softmax has no NaN
            X = torch.where(mask.unsqueeze(-1), X, torch.zeros((), dtype=X.dtype))
            o, w = mha(q, X, X, key_padding_mask=kpm, need_weights=weights)
            hf = has.to(q.dtype)
            out.append((torch.einsum("bt,btd->bd", tok, o) * hf,
                        None if w is None else torch.einsum("bt,btn->bn", tok, w) * hf))
        return out

    def features(self, ids, bags, vec: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        parts = [o for o, _ in self.attend(ids, bags)]
        return torch.cat([*parts, vec, present.to(vec.dtype)], 1)

    def forward(self, ids, bags, vec, present):
        return self.clf(self.drop(self.features(ids, bags, vec, present)))


@FUSIONS.register("cross_attention", params={
    "dim": positive_int(32, "width of the token queries and of each modality's attention output"),
    "heads": positive_int(2, "attention heads; must divide dim"),
    "max_len": positive_int(64, "known words kept per text (its first ones)"),
    "num_words": positive_int(5000, "vocabulary: the training texts' most frequent words"),
    "epochs": positive_int(60, "full-batch training epochs"),
    "lr": LR,
    "weight_decay": WEIGHT_DECAY,
    "modality_dropout": MODALITY_DROPOUT,
    "dropout": Param(float, 0.0, low=0.0, high=1.0, open_high=True, doc="dropout on the attention weights and the fused features; below 1"),
    "include_vectors": Param(bool, True, doc="append the non-image modalities' standardised vectors"),
})
class CrossAttentionFusion:
    """Text tokens (queries) cross-attend over each image modality's instances (keys/values); see
    the module docstring. ``heads`` must divide ``dim``; ``modality_dropout`` hides each present
    modality of a training sample with that probability (never all of them; a hidden text becomes
    the "no text" query); ``dropout`` acts on the attention weights and the fused features."""

    uses_instances = True
    kind = "cross_attention"

    def __init__(self, dim: int = 32, heads: int = 2, max_len: int = 64, num_words: int = 5000, epochs: int = 60,
                 lr: float = 1e-2, weight_decay: float = 1e-4, modality_dropout: float = 0.0, dropout: float = 0.0,
                 include_vectors: bool = True):
        if dim < 1 or heads < 1 or dim % heads:
            raise ValueError(f"fusion 'cross_attention': heads ({heads}) must divide dim ({dim})")
        if max_len < 1:
            raise ValueError(f"fusion 'cross_attention': max_len must be >= 1, got {max_len}")
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"fusion 'cross_attention': modality_dropout must be in [0, 1), got {modality_dropout}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"fusion 'cross_attention': dropout must be in [0, 1), got {dropout}")
        self.dim, self.heads, self.max_len, self.num_words = int(dim), int(heads), int(max_len), int(num_words)
        self.epochs, self.lr, self.weight_decay = int(epochs), float(lr), float(weight_decay)
        self.modality_dropout, self.dropout, self.include_vectors = float(modality_dropout), float(dropout), include_vectors
        self.names_: list[str] | None = None
        self.vocab_: dict[str, int] = {}

    # -- inputs --------------------------------------------------------------------------------

    def ids(self, texts: Sequence[str] | None, n: int) -> np.ndarray:
        """(n, T) int64 token ids under the fitted vocabulary (T <= max_len, trimmed to the longest
        text); a text with no known word is the single "no text" token."""
        seqs = [[NO_TEXT]] * n if texts is None else [
            [j for j in (self.vocab_.get(w) for w in tokenize(t)) if j is not None][: self.max_len] or [NO_TEXT]
            for t in as_texts(texts)]
        if len(seqs) != n:
            raise ValueError(f"fusion 'cross_attention': {len(seqs)} texts for {n} samples")
        out = np.zeros((n, max(map(len, seqs), default=1)), np.int64)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s
        return out

    def _inputs(self, vectors: dict[str, np.ndarray], presence: np.ndarray, bags: Bags | None, texts):
        """Tensors for the net: ids, [(X, mask)] per image modality, vector part, presence (B, M)."""
        if bags is None:
            raise ValueError(_NEEDS_BAGS)
        if self.names_ is None:
            raise RuntimeError("fusion 'cross_attention' is learned: call fit() on the training samples before fuse()")
        if list(vectors) != self.names_ or [m for m in self.names_ if m in bags] != self.images_:
            raise ValueError(f"fusion 'cross_attention' was fitted on modalities {self.names_} with instance bags for "
                             f"{self.images_}, got {list(vectors)} and bags for {list(bags)}")
        presence = np.asarray(presence, bool).copy()
        n = len(presence)
        tb = []
        for m in self.images_:
            X, mask = bags[m]
            k = self.names_.index(m)
            if len(X) != n:
                raise ValueError(f"fusion 'cross_attention': bag {m!r} has {len(X)} samples, presence {n}")
            mask = np.asarray(mask, bool) & presence[:, k : k + 1]  # an absent modality's instances never enter
            presence[:, k] = mask.any(1)
            tb.append((torch.as_tensor(np.asarray(X, np.float32)), torch.as_tensor(mask)))
        ids = self.ids(texts, n)
        if "text" in self.names_:  # a text marked absent is the "no text" query, whatever the string holds
            absent = ~presence[:, self.names_.index("text")]
            ids[absent] = 0
            ids[absent, 0] = NO_TEXT
            ids = ids[:, : max(1, int((ids > 0).sum(1).max(initial=0)))]
        vec = [np.where(presence[:, self.names_.index(m), None], (np.asarray(vectors[m], np.float32) - self.mu_[m])
                        / self.sd_[m], 0.0) for m in self.others_] if self.include_vectors else []
        vec = np.concatenate(vec, 1) if vec else np.zeros((n, 0))
        return (torch.as_tensor(ids), tb, torch.as_tensor(vec, dtype=torch.float32), torch.as_tensor(presence))

    # -- the fusion contract ---------------------------------------------------------------------

    def fit(self, vectors: dict[str, np.ndarray], presence: np.ndarray, y: np.ndarray, n_classes: int,
            class_weight: np.ndarray | None = None, seed: int = 0, *, bags: Bags | None = None,
            texts: Sequence[str] | None = None) -> "CrossAttentionFusion":
        """Vocabulary from ``texts`` and the net trained on ``y``: the fold's training samples only."""
        if bags is None:
            raise ValueError(_NEEDS_BAGS)
        images = [m for m in vectors if m in bags]
        if not images:
            raise ValueError("fusion 'cross_attention' needs at least one image modality with instance bags")
        presence = np.asarray(presence, bool)
        self.names_, self.images_ = list(vectors), images
        self.others_ = [m for m in self.names_ if m not in bags]
        counts = Counter(w for t in ([] if texts is None else as_texts(texts)) for w in tokenize(t))
        words = sorted(counts, key=lambda w: -counts[w])[: self.num_words]  # stable: ties keep first occurrence
        self.vocab_ = {w: i + 2 for i, w in enumerate(words)}
        self.mu_ = present_means({m: vectors[m] for m in self.others_},
                                  presence[:, [self.names_.index(m) for m in self.others_]])
        self.sd_ = {}
        for m in self.others_:
            rows = np.asarray(vectors[m], np.float32)[presence[:, self.names_.index(m)]]
            self.sd_[m] = (rows.std(0) if len(rows) > 1 else np.ones(rows.shape[1], np.float32)) + np.float32(1e-6)
        ids, tb, vec, present = self._inputs(vectors, presence, bags, texts)
        text_col = self.names_.index("text") if "text" in self.names_ else None
        no_text = torch.zeros_like(ids)
        no_text[:, 0] = NO_TEXT
        g = torch.Generator().manual_seed(seed)  # modality dropout

        def forward(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
            ids_e, tb_e, vec_e, pres_e = ids[idx], [(X[idx], mask[idx]) for X, mask in tb], vec[idx], present[idx]
            if self.modality_dropout > 0 and model.training:
                pres_e = drop_modalities(pres_e, self.modality_dropout, g)
                tb_e = [(X, mask & pres_e[:, self.names_.index(m), None]) for m, (X, mask) in zip(self.images_, tb_e)]
                keep_vec = torch.cat([pres_e[:, [self.names_.index(m)]].expand(-1, vectors[m].shape[1])
                                      for m in self.others_], 1) if self.include_vectors and self.others_ else None
                vec_e = vec_e if keep_vec is None else vec_e * keep_vec
                if text_col is not None:
                    ids_e = torch.where(pres_e[:, text_col, None], ids_e, no_text[idx])
            return model(ids_e, tb_e, vec_e, pres_e)

        options = TrainOptions(optimizer="adamw", lr=self.lr, weight_decay=self.weight_decay, epochs=self.epochs,
                               batch_size=len(present))
        with torch.random.fork_rng(devices=[]):  # seeded init and dropout, the caller's global RNG left as it was
            torch.manual_seed(seed)
            net = _CrossAttentionNet(len(self.vocab_) + 2, [X.shape[-1] for X, _ in tb], vec.shape[1],
                                     len(self.names_), self.dim, self.heads, self.dropout, n_classes)
            fit(net, forward, np.asarray(y), n_classes, options, class_weight=class_weight, seed=seed, device="cpu",
                shuffle=False)
        self.net_ = net.eval()
        return self

    @torch.inference_mode()
    def fuse(self, vectors: dict[str, np.ndarray], presence: np.ndarray, *, bags: Bags | None = None,
             texts: Sequence[str] | None = None) -> np.ndarray:
        """(n, d_out) float32 penultimate features of the trained net."""
        inputs = self._inputs(vectors, presence, bags, texts)  # checks the call before the net is touched
        return self.net_.features(*inputs).numpy().astype(np.float32)

    @torch.inference_mode()
    def attention_weights(self, bags: Bags, texts: Sequence[str] | None) -> dict[str, np.ndarray]:
        """{image modality: (n, N)} attention over the instances, averaged over heads and over the
        sample's real tokens (rows sum to 1; 0 on padding; all 0 for an empty bag)."""
        if self.names_ is None:
            raise RuntimeError("fusion 'cross_attention' is learned: call fit() on the training samples before use")
        if bags is None:
            raise ValueError(_NEEDS_BAGS)
        n = len(next(iter(bags.values()))[0])
        tb = [(torch.as_tensor(np.asarray(bags[m][0], np.float32)), torch.as_tensor(np.asarray(bags[m][1], bool)))
              for m in self.images_]
        out = self.net_.attend(torch.as_tensor(self.ids(texts, n)), tb, weights=True)
        return {m: w.numpy() for m, (_, w) in zip(self.images_, out)}
