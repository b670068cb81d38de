import numpy as np
import pytest

from sweeps.spec import SpecError, SweepSpec
from tests_helpers import make_bags
from trainables.pipeline import TrialData, evaluate


def _data(shuffle: bool):
    X, m, y, _ = make_bags(240, 5)
    if shuffle:
        y = np.random.default_rng(0).permutation(y)
    return TrialData(y, np.arange(len(y)), ("a", "b"), ["s"], {"s": (X, m)})


@pytest.mark.parametrize("head", ["stacking", "soft_voting", "bagging"])
def test_ensemble_on_label_shuffled_data_scores_at_chance_and_learns_real_labels(head):
    spec = {"head": {"name": head, head: {"members": "logreg+svc"} if head != "bagging" else {"base": "logreg"}}}
    real = evaluate(spec, _data(False), arms={"pooling": ["max"]}, n_folds=4)["max"]["metrics"]["auc_macro"]
    shuffled = evaluate(spec, _data(True), arms={"pooling": ["max"]}, n_folds=4)["max"]["metrics"]["auc_macro"]
    assert real > 0.9, f"positive control: {head} should learn the real labels (AUC {real:.2f})"
    assert abs(shuffled - 0.5) < 0.1, f"{head} on shuffled labels scored AUC {shuffled:.2f}: something leaks"


def test_ensemble_member_typo_is_caught_before_the_sweep():
    spec = SweepSpec(name="ens", space={"encoder": "resnet18", "pooling": "mean",
                                        "head": {"name": "stacking", "stacking": {"members": "logreg+svk"}}})
    with pytest.raises(SpecError, match="Did you mean 'svc'"):
        spec.validate()


@pytest.mark.parametrize("head", [{"name": "xgboost", "xgboost": {"n_estimators": 60}},
                                  {"name": "bagging", "bagging": {"base": "xgboost", "n_estimators": 4}}],
                         ids=["xgboost", "bagged-xgboost"])
def test_xgboost_with_and_without_bagging_learns_and_scores_chance_on_shuffled_labels(head):
    pytest.importorskip("xgboost", reason="optional dependency: pip install xgboost-cpu")
    real = evaluate({"head": head}, _data(False), arms={"pooling": ["max"]}, n_folds=4)["max"]["metrics"]["auc_macro"]
    shuffled = evaluate({"head": head}, _data(True), arms={"pooling": ["max"]}, n_folds=4)["max"]["metrics"]["auc_macro"]
    assert real > 0.9, f"positive control: {head['name']} should learn the real labels (AUC {real:.2f})"
    assert abs(shuffled - 0.5) < 0.1, f"{head['name']} on shuffled labels scored AUC {shuffled:.2f}"


def test_xgboost_fits_a_training_part_that_lacks_a_class():
    pytest.importorskip("xgboost", reason="optional dependency: pip install xgboost-cpu")
    from trainables.heads import HEADS, fit_head, predict_proba_full

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), np.repeat([0, 2], 30)  # class 1 absent, as in a bagging draw
    X[y == 2, 0] += 3
    p = predict_proba_full(fit_head(HEADS["xgboost"](n_estimators=20), X, y), X, 3)
    assert p.shape == (60, 3) and np.all(p[:, 1] == 0) and (p.argmax(1) == y).mean() > 0.9


@pytest.mark.parametrize("head", ["xgboost", {"name": "bagging", "bagging": {"base": "xgboost"}},
                                  {"name": "soft_voting", "soft_voting": {"members": "logreg+xgboost"}}],
                         ids=["head", "bagging-base", "ensemble-member"])
def test_a_space_naming_xgboost_without_it_installed_is_refused_before_the_sweep(head, monkeypatch):
    import sys

    from trainables.heads import HEADS

    monkeypatch.setitem(sys.modules, "xgboost", None)  # makes `import xgboost` fail, as when not installed
    spec = SweepSpec(name="xgb", space={"encoder": "resnet18", "pooling": "mean", "head": head})
    with pytest.raises(SpecError, match=r"needs the optional package 'xgboost'.*pip install xgboost-cpu"):
        spec.validate()
    with pytest.raises(ImportError, match="pip install xgboost-cpu"):
        HEADS["xgboost"]()
