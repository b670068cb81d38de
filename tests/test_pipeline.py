import numpy as np
import torch

from trainables.pipeline import TrialData, evaluate
from tests_helpers import make_bags


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
