"""Several targets in one trial (RSNA's 25 level x condition targets, CheXpert's 14 pathologies)."""

import numpy as np
import pandas as pd
import pytest

from trainables.pipeline import TrialData, evaluate


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 2, n), rng.integers(0, 3, n)
    tab = pd.DataFrame({"sa": a + rng.normal(0, 0.3, n), "sb": b + rng.normal(0, 0.3, n), "z": rng.normal(size=n)})
    noise = rng.integers(0, 2, n)
    Y = np.stack([a, b, noise], 1)
    Y[rng.random(n) < 0.3, 1] = -1  # 30% of the second target not labelled
    groups = np.array([f"P{i // 2}" for i in range(n)])
    targets = [("a", ("no", "yes")), ("b", ("x", "y", "z")), ("noise", ("0", "1"))]
    return TrialData(y=Y[:, 0], groups=groups, class_names=targets[0][1], modalities=[], bags={}, tabular=tab,
                     Y=Y, targets=targets)


def test_one_head_per_target_scored_on_its_labelled_samples_only():
    data = _data()
    (res,) = evaluate({"head": "logreg", "tabular": "simple"}, data, n_folds=4).values()
    m = res["metrics"]
    assert m["target/a/auc_macro"] > 0.9 and m["target/b/auc_macro"] > 0.9
    assert abs(m["target/noise/auc_macro"] - 0.5) < 0.12
    assert m["target/b/n"] == int((data.Y[:, 1] >= 0).sum()) < len(data.Y)
    assert np.isfinite(res["proba"]["b"]).all()  # every sample is predicted for every target ...
    lab = data.Y[:, 1] >= 0  # ... but scored only where labelled
    from trainables.metrics import compute_metrics

    assert m["target/b/f1_macro"] == pytest.approx(compute_metrics(data.Y[lab, 1], res["proba"]["b"][lab], "xyz")["f1_macro"])
    mean_auc = np.mean([m[f"target/{t}/auc_macro"] for t in ("a", "b", "noise")])
    assert m["auc_macro"] == pytest.approx(mean_auc)
    assert len(res["fold_metrics"]) == 4


def test_learned_parts_need_a_single_target():
    from tests.tests_helpers import make_bags

    X, mask, y, _ = make_bags(60, seed=0, n_inst=4, d=4)
    data = _data(60)
    data.modalities, data.bags = ["img"], {"img": (X, mask)}
    with pytest.raises(ValueError, match="several targets"):
        evaluate({"head": "logreg", "pooling": "attention"}, data, n_folds=3)
    with pytest.raises(ValueError, match="one target"):
        evaluate({"head": "logreg", "pooling": "mean", "fusion": "attention"}, data, n_folds=3)
    (res,) = evaluate({"head": "logreg", "pooling": "mean"}, data, n_folds=3).values()
    assert set(res["proba"]) == {"a", "b", "noise"}


def test_on_fold_with_several_targets_ends_at_the_final_metrics():
    data = _data()
    calls = []
    plain = evaluate({"head": "logreg", "tabular": "simple"}, data, n_folds=4)
    watched = evaluate({"head": "logreg", "tabular": "simple"}, data, n_folds=4,
                       on_fold=lambda done, n, partial: calls.append((done, n, partial)))
    assert [c[:2] for c in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    (arm,) = plain
    assert watched[arm]["metrics"] == plain[arm]["metrics"]
    assert calls[-1][2][arm]["metrics"] == plain[arm]["metrics"]
    assert calls[-1][2][arm]["fold_metrics"] == plain[arm]["fold_metrics"]
    assert calls[0][2][arm]["metrics"]["target/b/n"] < calls[1][2][arm]["metrics"]["target/b/n"] < plain[arm]["metrics"]["target/b/n"]
