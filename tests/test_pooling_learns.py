"""Attention pooling must learn to pick out the one informative instance of a bag, which average
pooling cannot see and an untrained attention does not find."""

import torch

from trainables.heads import HEADS, fit_head, predict_proba_full
from trainables.metrics import auc_macro
from trainables.pooling import AttentionPool, GatedAttentionPool, MeanPool, fit_poolers, pool
from trainables.registry import build

from tests_helpers import make_bags


def _auc_of(pooler, Xtr, mtr, ytr, Xte, mte, yte):
    head = build(HEADS, "logreg", seed=0)
    model = fit_head(head, pool(pooler, Xtr, mtr), ytr)
    return auc_macro(yte, predict_proba_full(model, pool(pooler, Xte, mte), 2))


def test_trained_attention_finds_the_lesion_instance_and_beats_mean_and_untrained_attention():
    Xtr, mtr, ytr, _ = make_bags(300, 0)
    Xte, mte, yte, lesion = make_bags(200, 1)
    torch.manual_seed(0)
    untrained = AttentionPool(8, hidden_dim=16)
    trained = AttentionPool(8, hidden_dim=16)
    trained.load_state_dict(untrained.state_dict())
    fit_poolers({"m": trained}, {"m": (Xtr, mtr)}, ytr, 2, epochs=150, lr=1e-2, seed=0)

    pos = yte == 1
    with torch.inference_mode():
        w_trained = trained.weights(torch.as_tensor(Xte), torch.as_tensor(mte)).numpy()
        w_untrained = untrained.weights(torch.as_tensor(Xte), torch.as_tensor(mte)).numpy()
    on_lesion = w_trained[pos, lesion[pos]].mean()
    assert on_lesion > 0.5, f"trained attention puts {on_lesion:.2f} weight on the lesion instance"
    assert w_untrained[pos, lesion[pos]].mean() < 0.2

    auc_att = _auc_of(trained, Xtr, mtr, ytr, Xte, mte, yte)
    auc_mean = _auc_of(MeanPool(8), Xtr, mtr, ytr, Xte, mte, yte)
    auc_untrained = _auc_of(untrained, Xtr, mtr, ytr, Xte, mte, yte)
    assert auc_att > 0.95, auc_att
    assert auc_mean < 0.75, auc_mean
    assert auc_untrained < 0.8, auc_untrained


def test_gated_attention_learns_too():
    Xtr, mtr, ytr, _ = make_bags(300, 2)
    Xte, mte, yte, _ = make_bags(200, 3)
    g = GatedAttentionPool(8, hidden_dim=16)
    fit_poolers({"m": g}, {"m": (Xtr, mtr)}, ytr, 2, epochs=150, lr=1e-2, seed=0)
    assert _auc_of(g, Xtr, mtr, ytr, Xte, mte, yte) > 0.95


def test_fit_poolers_ignores_samples_missing_the_modality():
    Xtr, mtr, ytr, _ = make_bags(100, 4)
    mtr[:10] = False  # ten samples lack this series
    Xtr[:10] = 0
    a = AttentionPool(8, hidden_dim=8)
    fit_poolers({"m": a}, {"m": (Xtr, mtr)}, ytr, 2, epochs=5, seed=0)
    assert all(torch.isfinite(p).all() for p in a.parameters())
