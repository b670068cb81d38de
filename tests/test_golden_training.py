"""Golden outputs of every torch model trained inside a trial (learned fusions, cross-attention, the
torch MLP head, the token text network), recorded from the code before their loops moved onto
:func:`trainables.training.fit`. Same seed, same data -> the same numbers, exactly.

Regenerate (only when a change of numbers is intended, and say so in the commit):
``SWEEPS_WRITE_GOLDEN=1 python -m pytest tests/test_golden_training.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.fusion import FUSIONS
from trainables.heads import TorchMLPClassifier
from trainables.registry import build
from trainables.text import TokenSequenceEncoder

GOLDEN = Path(__file__).parent / "golden" / "training.npz"
WORDS = "left right effusion edema normal mass nodule clear lung base apex heart size stable".split()


def _data(seed: int = 0, n: int = 60):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    vectors = {"t1": rng.normal(size=(n, 6)).astype(np.float32) + y[:, None],
               "t2": rng.normal(size=(n, 4)).astype(np.float32) - y[:, None],
               "text": rng.normal(size=(n, 5)).astype(np.float32)}
    presence = rng.random((n, 3)) > 0.25
    presence[:, 0] |= ~presence.any(1)
    bags = {}
    for m, d in (("t1", 6), ("t2", 4)):
        X = rng.normal(size=(n, 5, d)).astype(np.float32) + y[:, None, None] * 0.5
        mask = rng.random((n, 5)) > 0.3
        bags[m] = (X, mask)
    texts = [" ".join(rng.choice(WORDS, rng.integers(0, 8))) + (" effusion" if c == 1 else "") for c in y]
    return vectors, presence, y, bags, texts


CASES = {  # name -> fusion spec (trained with a class weight, so the weighted loss is pinned too)
    "attention": {"name": "attention", "attention": {"dim": 8, "hidden_dim": 8, "per_modality": True, "missing": "neutral",
                                                     "modality_dropout": 0.3, "epochs": 6, "batch_size": 16}},
    "cnn": {"name": "cnn", "cnn": {"dim": 8, "channels": 6, "missing": "zero", "epochs": 5, "pool": "mean"}},
    "gated": {"name": "gated", "gated": {"dim": 4, "missing": "mean", "modality_dropout": 0.2, "epochs": 4,
                                         "batch_size": 25, "lr": 5e-3}},
    "cross_attention": {"name": "cross_attention", "cross_attention": {"dim": 8, "heads": 2, "epochs": 5,
                                                                       "modality_dropout": 0.3, "dropout": 0.1}},
}


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread, as a trial runs (OMP_NUM_THREADS=1): float reductions split over threads
    differ in their last bits, so the goldens are recorded and compared on one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def outputs() -> dict[str, np.ndarray]:
    torch.manual_seed(123)  # the global RNG state the callers leave must not matter: it is set here for the heads
    vectors, presence, y, bags, texts = _data()
    cw = np.array([1.0, 2.0, 0.5])
    out = {}
    for name, spec in CASES.items():
        f = build(FUSIONS, spec)
        extra = {"bags": bags, "texts": texts} if getattr(f, "uses_instances", False) else {}
        f.fit(vectors, presence, y, 3, class_weight=cw, seed=7, **extra)
        out[f"fusion_{name}"] = f.fuse(vectors, presence, **extra)
    X = np.concatenate(list(vectors.values()), 1)
    out["mlp"] = TorchMLPClassifier(hidden_dim=16, epochs=5, batch_size=16, seed=3).fit(X, y).predict_proba(X)
    sw = np.linspace(0.5, 2.0, len(y))
    out["mlp_weighted"] = TorchMLPClassifier(hidden_dim=16, dropout=0.3, epochs=4, seed=4).fit(X, y, sample_weight=sw).predict_proba(X)
    for mode, pooling in (("embedding", "max"), ("ids", "mean")):
        enc = TokenSequenceEncoder(max_len=12, emb_dim=8, hidden_dim=16, out_dim=8, epochs=4, batch_size=16,
                                   input_mode=mode, pooling=pooling)
        enc.fit(texts, y, 3, class_weight=cw, seed=5)
        out[f"tokens_{mode}"] = enc.transform(texts)
        out[f"tokens_{mode}_proba"] = enc.predict_proba(texts)
    return out


@pytest.mark.skipif(torch.cuda.is_available(), reason="recorded on the CPU; the learned fusions train on a GPU when there is one")
def test_torch_models_reproduce_their_golden_outputs():
    got = outputs()
    if os.environ.get("SWEEPS_WRITE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        np.savez_compressed(GOLDEN, **got)
        pytest.skip(f"golden outputs written to {GOLDEN}")
    want = np.load(GOLDEN)
    assert sorted(want.files) == sorted(got)
    for k in want.files:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)  # bit for bit
