"""Contract tests driven by the registries: every registered component is built and run, so a new
component is tested the day it is added."""

import numpy as np
import pytest
import torch

from trainables.encoders import ENCODERS, Preprocessor, create_encoder
from trainables.fusion import FUSIONS
from trainables.heads import HEADS, fit_head, predict_proba_full
from trainables.metrics import compute_metrics
from trainables.pooling import POOLINGS
from trainables.registry import build
from trainables.sampling import SAMPLINGS



# fusions of one vector per modality (cross_attention reads the slices and words itself: tests/test_cross_attention.py)
VECTOR_FUSIONS = sorted(n for n in FUSIONS if not getattr(FUSIONS[n], "uses_instances", False))

@pytest.mark.parametrize("name", sorted(POOLINGS))
def test_pooling_contract_shape_padding_and_empty_bags(name):
    torch.manual_seed(0)
    p = build(POOLINGS, name, in_dim=6)
    x = torch.randn(3, 5, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    out = p(x, mask)
    assert out.shape == (3, p.out_dim)
    assert torch.isfinite(out).all()
    assert torch.all(out[2] == 0), "a bag with no instance (missing series) pools to zeros"
    junk = x.clone()
    junk[0, 3:] = 1e6  # padding content must not matter
    assert torch.allclose(p(junk, mask)[0], out[0])


@pytest.mark.parametrize("name", VECTOR_FUSIONS)
def test_fusion_zero_fills_missing_modalities(name):
    f = build(FUSIONS, name)
    rng = np.random.default_rng(0)
    vecs = {"a": rng.normal(size=(8, 3)).astype(np.float32), "b": rng.normal(size=(8, 2)).astype(np.float32)}
    presence = np.ones((8, 2), bool)
    presence[1::2, 1] = False
    if hasattr(f, "fit"):
        f.fit(vecs, presence, np.array([0, 1] * 4), 2)
    out = f.fuse(vecs, presence)
    assert out.shape[0] == 8 and np.isfinite(out).all()
    junk = {**vecs, "b": np.where(presence[:, [1]], vecs["b"], 7.0).astype(np.float32)}
    np.testing.assert_array_equal(f.fuse(junk, presence), out)  # what sits in a missing modality never matters


@pytest.mark.parametrize("name", sorted(SAMPLINGS))
def test_sampling_returns_consistent_training_sets(name):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = np.array([0] * 45 + [1] * 10 + [2] * 5)
    Xr, yr, w = build(SAMPLINGS, name).resample(X, y, 0)
    assert len(Xr) == len(yr) and (w is None or len(w) == len(yr))
    counts = np.bincount(yr, minlength=3)
    if name in ("smote", "random_under"):
        assert counts.min() == counts.max(), f"{name} should balance the classes, got {counts}"
    if name == "class_weight":
        assert np.allclose([w[yr == c].sum() for c in range(3)], len(y) / 3)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_learns_a_separable_problem_and_returns_probabilities(name):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    X = rng.normal(size=(120, 5)) + np.eye(3, 5)[y] * 4
    model = fit_head(build(HEADS, name, seed=0), X, y, None)
    proba = predict_proba_full(model, X, 3)
    assert proba.shape == (120, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert compute_metrics(y, proba, ["a", "b", "c"])["accuracy"] > 0.9
    w = np.where(y == 0, 0.0, 1.0)  # sample_weight reaches the estimator: class 0 weightless
    model_w = fit_head(build(HEADS, name, seed=0), X, y, w + 1e-9)
    assert predict_proba_full(model_w, X, 3)[y == 0, 0].mean() < proba[y == 0, 0].mean()


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_embeds_a_batch(name):
    model, dim = create_encoder(name, 64)
    x = Preprocessor("grayscale_norm+imagenet_norm", 64).batch([np.random.rand(50, 70).astype(np.float32)] * 2)
    assert x.shape == (2, 3, 64, 64)
    with torch.inference_mode():
        out = model(x)
    assert out.shape == (2, dim) and torch.isfinite(out).all()


def test_random_init_is_deterministic_so_cache_keys_are_honest():
    a, _ = create_encoder("resnet18", 64)
    b, _ = create_encoder("resnet18", 64)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))


def test_local_weights_file_is_loaded_and_a_mismatch_is_named(tmp_path):
    from trainables.encoders import WeightsError, weights_id

    src, _ = create_encoder("resnet18", 64)
    for p in src.parameters():
        torch.nn.init.constant_(p, 0.01)
    f = tmp_path / "w.pth"
    torch.save(src.state_dict(), f)
    loaded, _ = create_encoder("resnet18", 64, weights=str(f))
    assert torch.equal(next(loaded.parameters()), next(src.parameters()))
    assert weights_id(str(f)) != weights_id(None)
    torch.save({"nope": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="bad.pth"):
        create_encoder("resnet18", 64, weights=str(tmp_path / "bad.pth"))


def test_batched_normalisation_equals_per_slice_normalisation():
    rng = np.random.default_rng(0)
    imgs = [rng.normal(size=(40, 40)).astype(np.float32) * (k + 1) for k in range(5)]
    for spec in ("grayscale_norm", "hist_eq", "grayscale_norm+hist_eq"):
        pre = Preprocessor(spec, 64)
        for a, b in zip(pre.slices(imgs), [pre.slice(im) for im in imgs]):
            assert np.allclose(a, b, atol=1e-6)
