"""Tabular preprocessing components, tabular-only trials, masked targets and repeats in a trial."""

import numpy as np
import pandas as pd
import pytest

from sweeps.spec import SpecError, SweepSpec
from trainables.pipeline import TrialData, evaluate
from trainables.registry import build
from trainables.tabular import TABULAR


def _correlated(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x2 = rng.normal(size=n)
    df = pd.DataFrame({"x1": 2 * x2 + rng.normal(0, 0.05, n), "x2": x2, "site": rng.choice(["a", "b"], n)})
    truth = df["x1"].copy()
    hole = rng.random(n) < 0.3
    df.loc[hole, "x1"] = np.nan
    return df, truth, hole


def test_iterative_rf_imputes_from_the_other_columns_better_than_the_median():
    df, truth, hole = _correlated()
    train = np.arange(len(df))
    errs = {}
    for name in ("simple", "iterative_rf"):
        tab = build(TABULAR, {"name": name, name: {"scale": False, "indicators": False}}, "tabular")
        out = tab.fit_transform(df, train, seed=0)
        errs[name] = float(np.abs(out[hole, 0] - truth[hole]).mean())
    assert errs["iterative_rf"] < 0.3 * errs["simple"], errs


@pytest.mark.parametrize("name", ["simple", "iterative_rf"])
def test_tabular_preprocessing_is_fitted_on_the_training_rows_only(name):
    df, _, _ = _correlated(120)
    train, rest = np.arange(80), np.arange(80, 120)
    a = build(TABULAR, name, "tabular").fit_transform(df, train, seed=0)
    moved = df.copy()
    moved.loc[rest, "x2"] = moved.loc[rest, "x2"] * 100 + 50  # wild values outside the training rows
    moved.loc[rest, "site"] = "c"  # a category never seen in training: all-zero one-hot, not an error
    b = build(TABULAR, name, "tabular").fit_transform(moved, train, seed=0)
    np.testing.assert_allclose(a[train], b[train], rtol=1e-5, atol=1e-5)
    assert not np.allclose(a[rest], b[rest])


def test_none_gives_no_features_and_booleans_are_shorthands():
    from trainables.tabular import normalise

    assert build(TABULAR, "none", "tabular").fit_transform(pd.DataFrame({"a": [1.0]}), np.array([0])) is None
    assert normalise(True) == "simple" and normalise(False) == "none"


def _tab_only_data(n=200, seed=0, masked=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    tab = pd.DataFrame({"signal": y + rng.normal(0, 0.4, n), "noise": rng.normal(size=n)})
    tab.loc[rng.random(n) < 0.2, "signal"] = np.nan
    groups = np.array([f"P{i // 2}" for i in range(n)])
    return TrialData(y=y, groups=groups, class_names=("neg", "pos"), modalities=[], bags={}, tabular=tab)


def test_a_trial_runs_on_tabular_alone_and_learns_from_it():
    data = _tab_only_data()
    res = evaluate({"head": "logreg", "tabular": "iterative_rf"}, data, n_folds=3)
    (arm,) = res
    assert res[arm]["metrics"]["auc_macro"] > 0.8
    with pytest.raises(ValueError, match="no features"):
        evaluate({"head": "logreg", "tabular": "none"}, data, n_folds=3)


def test_repeat_index_changes_the_folds_and_so_the_predictions():
    data = _tab_only_data()
    a = evaluate({"head": "logreg", "tabular": True}, data, n_folds=3)
    b = evaluate({"head": "logreg", "tabular": True, "__trial_index__": 1}, data, n_folds=3)
    c = evaluate({"head": "logreg", "tabular": True, "__trial_index__": 0}, data, n_folds=3)
    (arm,) = a
    assert not np.allclose(a[arm]["proba"], b[arm]["proba"])
    np.testing.assert_array_equal(a[arm]["proba"], c[arm]["proba"])


def test_space_checks_tabular_names_and_feature_sources():
    ok = SweepSpec(name="t", cohort="knee", space={"head": "logreg", "tabular": "iterative_rf"})
    ok.validate()
    assert ok.embeddings() == []
    from ray import tune

    SweepSpec(name="t", space={"head": "logreg", "tabular": tune.choice([False, True, "iterative_rf"])}).validate()
    with pytest.raises(SpecError, match="iterative_rf"):
        SweepSpec(name="t", space={"head": "logreg", "tabular": "iterativ_rf"}).validate()
    with pytest.raises(SpecError, match="nothing to learn from"):
        SweepSpec(name="t", space={"head": "logreg"}).validate()
    with pytest.raises(SpecError, match="pooling"):
        SweepSpec(name="t", space={"head": "logreg", "encoder": "resnet18"}).validate()
    with pytest.raises(SpecError, match="repeats"):
        SweepSpec(name="t", num_samples=5, repeats=2, space={"head": "logreg", "tabular": True}).validate()


def test_masked_labels_are_not_a_class_and_labelled_drops_them():
    from trainables.data.cohort import MASKED, Cohort, CohortError, Target

    samples = pd.DataFrame({"sample_id": ["a", "b", "c"], "patient_id": ["1", "2", "3"], "t": ["x", np.nan, "y"]})
    inst = pd.DataFrame({"sample_id": ["a", "b"], "modality": ["m", "m"], "order": [0, 0], "path": ["/a", "/b"], "frame": [0, 0]})
    c = Cohort("c", samples, inst, [Target("t", "binary", ("x", "y"), masked=True)], ["m"])
    assert c.labels("t").tolist() == [0, MASKED, 1]
    lab = c.labelled("t")
    assert lab.samples["sample_id"].tolist() == ["a", "c"] and lab.instances["sample_id"].tolist() == ["a"]
    with pytest.raises(CohortError, match="sample 'b'"):  # unmasked targets still reject blanks
        Cohort("c", samples, inst, [Target("t", "binary", ("x", "y"))], ["m"])
    with pytest.raises(CohortError, match="also declared as features"):
        Cohort("c", samples, inst, [Target("t", "binary", ("x", "y"), masked=True)], ["m"], tabular=["t"])


def test_simulated_missingness_removes_a_modality_at_test_time_only():
    from tests.tests_helpers import make_bags

    X, mask, y, _ = make_bags(160, seed=3, n_inst=6, d=8)
    X[:, :, 1] += y[:, None] * 1.5  # the mean of this modality carries the label
    groups = np.array([f"P{i}" for i in range(len(y))])
    data = TrialData(y=y, groups=groups, class_names=("a", "b"), modalities=["img"], bags={"img": (X, mask)})
    cfg = {"head": "logreg", "pooling": "mean", "missing_eval": [0.0, 0.5, 1.0]}
    (res,) = evaluate(cfg, data, n_folds=3).values()
    auc = {frac: res["missing"][("img", frac)]["auc_macro"] for frac in (0.0, 0.5, 1.0)}
    assert auc[0.0] == pytest.approx(res["metrics"]["auc_macro"])  # nothing removed: the plain result
    assert auc[0.0] > 0.85 and auc[1.0] == pytest.approx(0.5, abs=0.05) and auc[1.0] < auc[0.5] < auc[0.0]
    with pytest.raises(SpecError, match="missing_eval"):
        SweepSpec(name="t", space={"head": "logreg", "tabular": True, "missing_eval": [1.5]}).validate()
