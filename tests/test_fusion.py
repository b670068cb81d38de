"""Fusion strategies and missing-modality handling: each learned fusion finds a signal, attention
weights renormalise over the present modalities, fitting depends on its arguments only, modality
dropout and the missing-modality stand-ins change what is learned, and the per-modality ensemble's
training outputs are out-of-fold."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, log_loss, roc_auc_score

from sweeps.spec import SpecError, SweepSpec
from trainables.fusion import FUSIONS, drop_modalities
from trainables.heads import HEADS, fit_head, predict_proba_full
from trainables.pipeline import TrialData, evaluate
from trainables.registry import build

FITTED = ["attention", "cnn", "gated", "per_modality_ensemble", "concat_impute"]
TORCH = ["attention", "cnn", "gated"]



# fusions of one vector per modality (cross_attention reads the slices and words itself: tests/test_cross_attention.py)
VECTOR_FUSIONS = sorted(n for n in FUSIONS if not getattr(FUSIONS[n], "uses_instances", False))

@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny nets and regressions: one thread (torch and BLAS), as a trial runs them
    (OMP_NUM_THREADS=1), and ~10x faster than two contended ones on a shared machine."""
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def _signal_in_b(n, seed, miss=0.2):
    """Three modalities; only b carries the label; a and text are missing at random."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    v = {"a": rng.normal(size=(n, 16)), "b": rng.normal(size=(n, 8)), "text": rng.normal(size=(n, 12))}
    v["b"][:, 0] += 1.5 * (2 * y - 1)
    pres = np.ones((n, 3), bool)
    pres[:, 0] = rng.random(n) > miss
    pres[:, 2] = rng.random(n) > miss
    return {m: x.astype(np.float32) for m, x in v.items()}, pres, y


def _far_from_zero(n, seed, miss_a):
    """a: strongly informative and centred far from the zero vector; b: weakly informative, always
    present. ``miss_a``: the fraction of samples without a."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = rng.normal(size=(n, 8)) + 6.0
    a[:, 0] += 2.0 * (2 * y - 1)
    b = rng.normal(size=(n, 8))
    b[:, 0] += 0.8 * (2 * y - 1)
    pres = np.ones((n, 2), bool)
    pres[:, 0] = rng.random(n) >= miss_a
    return {"a": a.astype(np.float32), "b": b.astype(np.float32)}, pres, y


def _head_scores(fusion, train, test, seed=0):
    """Fit ``fusion`` on train, a logistic-regression head on its fused training vectors; return the
    test labels and the head's P(y=1) on the fused test vectors."""
    (vtr, ptr, ytr), (vte, pte, yte) = train, test
    fusion.fit(vtr, ptr, ytr, 2, seed=seed)
    clf = LogisticRegression(max_iter=2000).fit(fusion.fuse(vtr, ptr), ytr)
    return yte, clf.predict_proba(fusion.fuse(vte, pte))[:, 1]


@pytest.mark.parametrize("name", FITTED)
def test_each_fitted_fusion_finds_a_signal_carried_by_one_modality(name):
    yte, p = _head_scores(build(FUSIONS, name), _signal_in_b(300, 0), _signal_in_b(300, 1))
    assert roc_auc_score(yte, p) > 0.8


@pytest.mark.parametrize("name", VECTOR_FUSIONS)
def test_a_missing_modalitys_content_never_reaches_the_fused_vector(name):
    v, pres, y = _signal_in_b(120, 2)
    f = build(FUSIONS, name)
    if hasattr(f, "fit"):
        f.fit(v, pres, y, 2, seed=0)
    junk = {m: np.where(pres[:, [k]], x, np.float32(np.nan)) for k, (m, x) in enumerate(v.items())}
    junk["a"][~pres[:, 0]] = 1e6
    out = f.fuse(v, pres)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(f.fuse(junk, pres), out)


@pytest.mark.parametrize("name", ["attention", "cnn", "gated", "per_modality_ensemble"])
def test_a_learned_fusion_refuses_to_fuse_before_fit_or_on_other_modalities(name):
    v, pres, y = _signal_in_b(60, 3)
    f = build(FUSIONS, name)
    with pytest.raises(RuntimeError, match="fit"):
        f.fuse(v, pres)
    f.fit(v, pres, y, 2)
    with pytest.raises(ValueError, match="fitted on modalities"):
        f.fuse({"b": v["b"], "a": v["a"], "text": v["text"]}, pres)


def test_attention_weights_are_zero_for_missing_modalities_and_renormalise_over_the_others():
    v, pres, y = _signal_in_b(200, 4)
    f = build(FUSIONS, "attention").fit(v, pres, y, 2, seed=0)
    pres = np.array([[1, 1, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]] * 8, bool)
    vv = {m: x[: len(pres)] for m, x in v.items()}
    w = f.modality_weights(vv, pres)
    assert w.shape == pres.shape
    assert np.all(w[~pres] == 0.0), "a missing modality gets weight exactly 0"
    np.testing.assert_allclose(w[pres.any(1)].sum(1), 1.0, atol=1e-6)
    assert np.all(w[:, 1][pres[:, 1] & (pres.sum(1) > 1)] < 1), "a present modality does not take all the weight"
    np.testing.assert_array_equal(f.fuse(vv, pres)[~pres.any(1)], 0.0)  # no modality: nothing to weigh
    full = f.modality_weights(vv, np.ones_like(pres))
    assert not np.allclose(full[pres.all(1)], 1 / 3), "weights are learned, not uniform"


@pytest.mark.parametrize("name", TORCH + ["per_modality_ensemble"])
def test_fit_depends_on_its_arguments_only(name):
    """One fusion serves every fold of a trial on a reused actor: a fit must not depend on the
    global RNG, must not disturb it, and must carry nothing over from an earlier fit."""
    fold1, fold2 = _signal_in_b(150, 5), _signal_in_b(150, 6)
    probe = _signal_in_b(50, 7)[:2]
    torch.manual_seed(1)
    fresh = build(FUSIONS, name).fit(*fold2, 2, seed=3).fuse(*probe)
    f = build(FUSIONS, name).fit(*fold1, 2, seed=3)
    torch.manual_seed(2)
    np.random.seed(2)
    state = torch.get_rng_state()
    f.fit(*fold2, 2, seed=3)
    assert torch.equal(torch.get_rng_state(), state), "fit must leave the global torch RNG alone"
    np.testing.assert_array_equal(f.fuse(*probe), fresh)
    reseeded = build(FUSIONS, name).fit(*fold2, 2, seed=4)  # the ensemble's seed draws its inner folds
    assert not np.array_equal(reseeded.fuse(*fold2[:2]), f.fuse(*fold2[:2])), "the seed is used"


def test_modality_dropout_hides_present_modalities_but_never_all_of_a_sample():
    g = torch.Generator().manual_seed(0)
    present = torch.rand(2000, 4, generator=g) > 0.3
    kept = drop_modalities(present, 0.6, g)
    assert not (kept & ~present).any(), "an absent modality is never brought back"
    assert torch.equal(kept.any(1), present.any(1)), "a sample keeps at least one modality it had"
    several = present.sum(1) >= 3
    frac = 1 - kept[several].sum() / present[several].sum()
    assert 0.4 < frac < 0.65  # about p, a little less where a sample would have lost them all


def test_modality_dropout_teaches_the_fusion_to_cope_without_its_strongest_modality():
    """Trained on complete samples, tested with the strong modality missing everywhere (zero-filled):
    only the fusion trained with modality dropout has learned to predict from b alone."""
    train, test = _far_from_zero(300, 0, 0.0), _far_from_zero(400, 100, 1.0)
    acc = {}
    for p in (0.0, 0.3):
        yte, prob = _head_scores(build(FUSIONS, {"name": "cnn", "cnn": {"modality_dropout": p}}), train, test)
        acc[p] = balanced_accuracy_score(yte, prob > 0.5)
    assert acc[0.3] > acc[0.0] + 0.08, acc


@pytest.mark.parametrize("name,missing", [("cnn", "mean"), ("cnn", "neutral"), ("gated", "mean"),
                                          ("gated", "neutral"), ("concat_impute", "mean")])
def test_mean_and_neutral_stand_ins_beat_zero_fill_under_heavy_test_time_missingness(name, missing):
    """The zero vector is far from the data of a; with a removed from 90% of the test samples, a zero
    stand-in is read as an extreme value while the mean / neutral one is read as "no information"."""
    train, test = _far_from_zero(300, 0, 0.0), _far_from_zero(400, 100, 0.9)
    score = {}
    for m in ("zero", missing):
        yte, prob = _head_scores(build(FUSIONS, {"name": name, name: {"missing": m}}), train, test)
        score[m] = log_loss(yte, prob), balanced_accuracy_score(yte, prob > 0.5)
    assert score[missing][0] < score["zero"][0] - 0.2, score
    assert score[missing][1] > score["zero"][1] + 0.05, score


@pytest.mark.parametrize("name", ["cnn", "gated"])
def test_the_neutral_vector_is_learned_where_training_sees_the_modality_missing(name):
    """It starts at the training mean: identical to ``mean`` when training never lacks the modality,
    moved by training once modality dropout hides it."""
    train, test = _far_from_zero(200, 0, 0.0), _far_from_zero(100, 100, 0.5)
    out = {}
    for missing in ("mean", "neutral"):
        for p in (0.0, 0.3):
            f = build(FUSIONS, {"name": name, name: {"missing": missing, "modality_dropout": p}})
            out[missing, p] = f.fit(*train, 2, seed=0).fuse(*test[:2])
    absent = ~test[1][:, 0]
    np.testing.assert_array_equal(out["neutral", 0.0], out["mean", 0.0])
    assert not np.allclose(out["neutral", 0.3][absent], out["mean", 0.3][absent], atol=1e-4)


def test_per_modality_ensemble_gives_out_of_fold_outputs_for_its_training_samples():
    """Pure noise: a logistic regression fitted on all the training samples separates them in-sample
    (AUC ~1), but the fused training outputs come from an inner cross-validation (AUC ~0.5)."""
    rng = np.random.default_rng(8)
    n = 120
    y = rng.integers(0, 2, n)
    v = {"a": rng.normal(size=(n, 150)).astype(np.float32), "b": rng.normal(size=(n, 150)).astype(np.float32)}
    pres = np.ones((n, 2), bool)
    pres[rng.random(n) < 0.2, 1] = False
    f = build(FUSIONS, "per_modality_ensemble").fit(v, pres, y, 2, seed=0)
    out = f.fuse(v, pres).reshape(n, 2, 3)  # per modality: P(class 0), P(class 1), presence flag
    in_sample = fit_head(HEADS["logreg"](seed=0), v["a"], y).predict_proba(v["a"])[:, 1]
    assert roc_auc_score(y, in_sample) > 0.95
    assert abs(roc_auc_score(y, out[:, 0, 1]) - 0.5) < 0.15
    np.testing.assert_array_equal(out[:, :, 2], pres)
    np.testing.assert_array_equal(out[~pres[:, 1], 1, :2], 0.0)
    # samples fit never saw get the models fitted on all the training samples that have the modality
    new = {m: x[:20] + np.float32(0.01) for m, x in v.items()}
    full_b = fit_head(HEADS["logreg"](seed=0), v["b"][pres[:, 1]], y[pres[:, 1]])
    got = f.fuse(new, pres[:20]).reshape(20, 2, 3)
    np.testing.assert_allclose(got[pres[:20, 1], 1, :2],
                               predict_proba_full(full_b, new["b"][pres[:20, 1]], 2), rtol=1e-5)


def test_bad_fusion_parameters_are_refused():
    with pytest.raises(SpecError, match="modality_dropout"):  # a typo, caught before the sweep starts
        SweepSpec(name="t", space={"head": "logreg", "tabular": True,
                                   "fusion": {"name": "cnn", "cnn": {"modality_dropuot": 0.2}}}).validate()
    from ray import tune

    SweepSpec(name="t", space={"head": "logreg", "tabular": True, "fusion": {
        "name": tune.choice(["concat", "attention", "cnn", "gated", "per_modality_ensemble", "concat_impute"]),
        "attention": {"missing": tune.choice(["zero", "neutral", "mean"]), "modality_dropout": tune.uniform(0, 0.5)},
        "cnn": {"kernel_size": 3, "pool": "mean"}, "gated": {"dim": 16},
        "per_modality_ensemble": {"head": "svc", "inner_folds": 3},
        "concat_impute": {"missing": "mean"}}}).validate()
    with pytest.raises(ValueError, match="'neutral' is learned"):
        build(FUSIONS, {"name": "concat_impute", "concat_impute": {"missing": "neutral"}})
    with pytest.raises(ValueError, match="missing must be one of"):
        build(FUSIONS, {"name": "gated", "gated": {"missing": "median"}})
    with pytest.raises(ValueError, match="modality_dropout"):
        build(FUSIONS, {"name": "attention", "attention": {"modality_dropout": 1.0}})


@pytest.mark.parametrize("name", FITTED)
def test_a_trial_runs_with_the_fusion_and_learns(name):
    """Inside ``evaluate``: two image series (one missing for a fifth of the samples) and tabular."""
    rng = np.random.default_rng(9)
    n = 120
    y = rng.integers(0, 2, n)
    bags = {}
    for m, shift in (("sag", 1.2), ("ax", 0.0)):
        X = rng.normal(size=(n, 4, 6)).astype(np.float32)
        X[:, :, 0] += shift * (2 * y[:, None] - 1)
        mask = np.ones((n, 4), bool)
        if m == "ax":
            mask[rng.random(n) < 0.2] = False
        bags[m] = (X, mask)
    tab = pd.DataFrame({"age": rng.normal(size=n) + 0.5 * y, "noise": rng.normal(size=n)})
    data = TrialData(y=y, groups=np.arange(n), class_names=("neg", "pos"), modalities=["sag", "ax"], bags=bags,
                     tabular=tab)
    res = evaluate({"head": "logreg", "pooling": "mean", "fusion": name, "tabular": True,
                    "sampling": "class_weight"}, data, n_folds=3)
    (arm,) = res
    np.testing.assert_allclose(res[arm]["proba"].sum(1), 1.0)
    assert res[arm]["metrics"]["auc_macro"] > 0.8
