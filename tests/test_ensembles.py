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
