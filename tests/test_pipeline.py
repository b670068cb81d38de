import numpy as np
import pytest
import torch

from trainables.pipeline import TrialData, evaluate
from tests_helpers import make_bags


@pytest.fixture(autouse=True)
def one_thread():
    """Small models on a shared 2-core machine: one torch thread avoids oversubscription (the pooler
    reuse test took 37-50 s with 2 threads under load, 8 s with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_trial_is_reproducible_whatever_the_global_rng_state():
    """Ray reuses actors: the global torch RNG differs from trial to trial. A trial's result must
    depend on its seed only (attention pooler initialisation included)."""
    X, m, y, _ = make_bags(60, 0)
    d = TrialData(y, np.arange(60), ("a", "b"), ["s"], {"s": (X, m)})
    out = []
    for state in (1, 2):
        torch.manual_seed(state)
        out.append(evaluate({"head": "logreg", "pooling": "attention"}, d, n_folds=3)["attention"]["proba"])
    assert np.array_equal(out[0], out[1])


def test_paired_arms_share_folds_and_differ_only_in_pooling():
    X, m, y, _ = make_bags(60, 1)
    d = TrialData(y, np.arange(60), ("a", "b"), ["s"], {"s": (X, m)})
    r = evaluate({"head": "logreg"}, d, arms={"pooling": ["mean", "attention"]}, n_folds=3)
    assert set(r) == {"mean", "attention"}
    assert not np.array_equal(r["mean"]["proba"], r["attention"]["proba"])
    assert len(r["mean"]["fold_metrics"]) == len(r["attention"]["fold_metrics"]) == 3


def test_standardise_is_fitted_on_training_instances_and_leaves_padding_zero():
    from trainables.pipeline import _standardise

    rng = np.random.default_rng(0)
    X = (rng.normal(size=(40, 6, 10)) * 5 + 3).astype(np.float32)
    mask = np.ones((40, 6), bool)
    mask[:, 4:] = False  # two padding slots per bag
    X[~mask] = 99.0
    train = np.arange(30)
    for pca in (0, 4):
        Z, m = _standardise({"s": (X, mask)}, train, pca)["s"]
        real = Z[train][mask[train]]
        assert Z.shape[-1] == (pca or 10)
        assert np.allclose(real.mean(0), 0, atol=1e-4)
        assert np.allclose(real.std(0), 1, atol=1e-3), "standardised (or whitened) on the training part"
        assert np.all(Z[~mask] == 0), "padding stays zero"


def test_fold_bags_keep_fitted_statistics_only_and_read_only_bags_stay_untouched():
    """A worker's fold memo holds the standardisers fitted on each fold (a few kB a modality), never the
    standardised bags (n, N, k): those are rebuilt on each use, equal to ``_standardise``'s; bags shared
    read-only (Ray's object store) are never written."""
    from trainables.pipeline import _fold_bags, _standardise

    rng = np.random.default_rng(1)
    X = (rng.normal(size=(50, 7, 12)) * 2 + 1).astype(np.float32)
    mask = rng.random((50, 7)) > 0.3
    X[~mask] = 0.0
    X.flags.writeable = False
    d = TrialData(np.zeros(50, int), np.arange(50), ("a", "b"), ["s"], {"s": (X, mask)})
    train = np.arange(10, 50)
    for pca in (0, 5):
        expected = _standardise({"s": (X, mask)}, train, pca)["s"][0]
        for _ in range(2):  # computed, then from the memo
            Z, m = _fold_bags(d, train, pca)["s"]
            assert np.array_equal(Z, expected) and m is mask
    kept = [a for fitted in d.extra["fold_bags"].values() for per_modality in fitted.values() for a in per_modality]
    assert kept and all(a is None or a.nbytes <= 12 * 5 * 4 for a in kept), "only (D,) statistics and a (D, k) projection"


def _standardiser_before(X, mask, train, pca_dim):
    """The standardiser as it was fitted before one eigh served every pca_dim of a fold (reference)."""
    rows, slots = np.nonzero(mask[train])
    real_tr = X[train[rows], slots].copy()
    mu, sd = real_tr.mean(0), real_tr.std(0) + 1e-6
    if pca_dim and pca_dim < X.shape[-1] and len(real_tr) > pca_dim:
        R = (real_tr - mu) / sd
        evals, evecs = np.linalg.eigh(R.T @ R / len(R))
        W = evecs[:, ::-1][:, :pca_dim] / np.sqrt(np.maximum(evals[::-1][:pca_dim], 1e-6))
        return mu, sd, (W / sd[:, None]).astype(np.float32)
    return mu, sd, None


def test_one_eigh_per_fold_serves_every_pca_dim_bit_for_bit(monkeypatch):
    """The fold memo keeps the leading eigenpairs once per fold: pca_dim 3, then 5 and 1 reuse them (one
    eigh); 8 and 11 need more than is kept and compute again; 12 (= D) is no PCA. Every projection equals,
    bit for bit, the one the standardiser fitted alone before this memo existed."""
    import trainables.pipeline as pipeline

    rng = np.random.default_rng(4)
    X = (rng.normal(size=(40, 6, 12)) * 3 - 1).astype(np.float32)
    mask = rng.random((40, 6)) > 0.25
    X[~mask] = 0.0
    d = TrialData(np.zeros(40, int), np.arange(40), ("a", "b"), ["s"], {"s": (X, mask)})
    train = np.arange(5, 40)
    order = (3, 5, 1, 3, 8, 11, 12)
    refs = [_standardiser_before(X, mask, train, pca) for pca in order]
    calls, real_eigh = [], np.linalg.eigh
    monkeypatch.setattr(pipeline.np.linalg, "eigh", lambda a: calls.append(a.shape) or real_eigh(a))
    monkeypatch.setattr(pipeline, "EIG_KEEP", 6)
    for pca, (ref_mu, ref_sd, ref_P) in zip(order, refs):
        pipeline._fold_bags(d, train, pca)
        (fold,) = d.extra["fold_moments"]
        mu, sd, P = d.extra["fold_bags"][(pca, fold)]["s"]
        assert np.array_equal(mu, ref_mu) and np.array_equal(sd, ref_sd), pca
        assert (P is None) == (ref_P is None) and (P is None or np.array_equal(P, ref_P)), pca
    assert len(calls) == 3, calls  # 3 (keeps 6: serves 5, 1), 8, 11


def test_fitted_poolers_are_reused_across_trials_with_the_same_numbers(monkeypatch):
    """A reused actor's trials that differ only after the pooling (head, resampling) reuse the attention
    poolers the first one fitted: the same probabilities, attention and torch RNG state afterwards as
    fitting afresh. Class weights change what the pooler learns: fitted again."""
    import trainables.pipeline as pl

    X, m, y, _ = make_bags(60, 2)
    calls = []
    real = pl.fit_poolers
    monkeypatch.setattr(pl, "fit_poolers", lambda *a, **k: calls.append(1) or real(*a, **k))

    def data():
        return TrialData(y, np.arange(60), ("a", "b"), ["s"], {"s": (X, m)})

    shared = data()
    configs = [{"head": "logreg", "pooling": "attention"}, {"head": "mlp", "pooling": "attention", "sampling": "random_under"}]
    reused = []
    for c in configs:
        reused.append(evaluate(c, shared, n_folds=3))
        reused[-1]["rng"] = torch.rand(3)
    assert len(calls) == 3  # one fit per fold, for both trials
    for c, r in zip(configs, reused):
        fresh = evaluate(c, data(), n_folds=3)
        assert np.array_equal(r["attention"]["proba"], fresh["attention"]["proba"])
        assert np.array_equal(r["attention"]["attention"]["s"], fresh["attention"]["attention"]["s"], equal_nan=True)
        assert torch.equal(r["rng"], torch.rand(3))
    evaluate({"head": "logreg", "pooling": "attention", "sampling": "class_weight"}, shared, n_folds=3)
    assert len(calls) == 3 + 3 + 3 * 2  # two fresh trials above, then class weights: new fits


def _record_folds():
    calls = []
    return calls, lambda done, n, partial: calls.append((done, n, partial))


def test_on_fold_reports_the_running_out_of_fold_metric_and_changes_nothing():
    """on_fold is called once per fold with the metrics of the samples scored so far; after the last
    fold they are the final ones; the results are those of a run without the callback."""
    from trainables.metrics import compute_metrics
    from trainables.pipeline import flatten
    from trainables.splits import grouped_folds

    X, m, y, _ = make_bags(60, 2)
    d = TrialData(y, np.arange(60), ("a", "b"), ["s"], {"s": (X, m)})
    config, arms = {"head": "logreg"}, {"pooling": ["mean", "max"]}
    plain = evaluate(config, d, arms=arms, n_folds=3)
    calls, on_fold = _record_folds()
    watched = evaluate(config, d, arms=arms, n_folds=3, on_fold=on_fold)
    assert [(c[0], c[1]) for c in calls] == [(1, 3), (2, 3), (3, 3)]
    for a in plain:
        assert np.array_equal(plain[a]["proba"], watched[a]["proba"]) and plain[a]["metrics"] == watched[a]["metrics"]
    final = flatten(plain, "auc_macro")
    assert flatten(calls[-1][2], "auc_macro")["auc_macro"] == final["auc_macro"]
    assert {k: v for k, v in flatten(calls[-1][2], "auc_macro").items() if "fold_sd" not in k} == \
        {k: v for k, v in final.items() if "fold_sd" not in k and "missing" not in k}
    folds = grouped_folds(y, np.arange(60), 3, 0)
    first = folds[0][1]
    for a in plain:  # after fold 1: the metric over fold 1's samples, from the final out-of-fold probabilities
        assert calls[0][2][a]["metrics"]["auc_macro"] == compute_metrics(y[np.sort(first)], plain[a]["proba"][np.sort(first)],
                                                                         ("a", "b"))["auc_macro"]
        assert len(calls[0][2][a]["fold_metrics"]) == 1
    assert calls[0][2]["mean"]["metrics"]["auc_macro"] != calls[1][2]["mean"]["metrics"]["auc_macro"]
