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
