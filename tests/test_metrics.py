"""``compute_metrics`` computes scikit-learn's metrics itself (bit for bit): checked here against
scikit-learn on fold-sized inputs with ties, absent classes, a missed class and two to five classes."""

import numpy as np
import pytest

from trainables.metrics import sklearn_metrics, binary_auc, compute_metrics


def _cases():
    rng = np.random.default_rng(0)
    for k in range(300):
        c = int(rng.integers(2, 6))
        n = int(rng.integers(4, 120))
        y = rng.integers(0, c, n)
        if k % 5 == 0:
            y[y == c - 1] = 0  # a class absent from y_true
        proba = rng.dirichlet(np.ones(c), n)
        if k % 3 == 0:
            proba = np.round(proba, 1)  # many tied scores
        if k % 7 == 0:
            proba[:, 1] = 0.0  # a class never predicted
        yield y, proba, [f"c{j}" for j in range(c)]


def test_compute_metrics_equals_scikit_learn_bit_for_bit():
    n = 0
    for y, proba, names in _cases():
        ours, ref = compute_metrics(y, proba, names), sklearn_metrics(y, proba, names)
        assert ours.keys() == ref.keys()
        for key in ref:
            assert ours[key] == ref[key] or (np.isnan(ours[key]) and np.isnan(ref[key])), (key, ours[key], ref[key])
        n += 1
    assert n == 300


def test_binary_auc_equals_roc_auc_score():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 200))
        pos = rng.random(n) < rng.uniform(0.1, 0.9)
        pos[0], pos[-1] = True, False
        score = np.round(rng.random(n), int(rng.integers(1, 4)))
        assert binary_auc(pos, score) == roc_auc_score(pos, score)


def test_one_class_has_no_auc_and_bad_labels_are_refused():
    m = compute_metrics(np.zeros(5, int), np.full((5, 2), 0.5), ["a", "b"])
    assert np.isnan(m["auc_macro"]) and m["accuracy"] == 1.0
    with pytest.raises(ValueError, match="rows"):
        compute_metrics(np.zeros(3, int), np.full((4, 2), 0.5), ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics(np.zeros(2, int), np.array([[np.nan, 1], [0.5, 0.5]]), ["a", "b"])
