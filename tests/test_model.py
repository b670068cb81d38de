"""The model artifact: fitted like a trial's fold, saved in safe formats, loaded, refused when incompatible."""

import json

import numpy as np
import pandas as pd
import pytest

from sweeps.model import IncompatibleModelError, Model, ModelError, load_model
from tests_helpers import make_bags
from trainables.pipeline import TrialData, evaluate
from trainables.splits import grouped_folds


def _data(n=60, seed=0):
    X, m, y, _ = make_bags(n, seed, d=12)
    m[: n // 6, 8:] = False  # some shorter bags
    rng = np.random.default_rng(seed)
    tab = pd.DataFrame({"age": rng.normal(50, 10, n).round(1), "sex": rng.choice(["F", "M"], n),
                        "bmi": np.where(rng.random(n) < 0.2, np.nan, rng.normal(26, 3, n))})
    groups = np.repeat(np.arange(n // 2), 2)
    X2 = rng.normal(size=(n, 5, 12)).astype(np.float32)
    m2 = np.ones((n, 5), bool)
    m2[::7] = False  # a modality missing for some samples
    return TrialData(y, groups, ("a", "b"), ["s", "t"], {"s": (X, m), "t": (X2, m2)}, tab)


CONFIGS = [
    {"head": "logreg", "pca_dim": 4, "pooling": {"attention": {"hidden_dim": 8}}, "tabular": True,
     "sampling": "class_weight"},
    {"head": "mlp", "pca_dim": 0, "pooling": "mean", "tabular": False, "sampling": "smote"},
    {"head": "lightgbm", "pca_dim": 6, "pooling": {"attention": {"hidden_dim": 8}}, "tabular": "simple",
     "sampling": "random_under"},
    {"head": "svc", "pca_dim": 4, "pooling": {"attention": {"hidden_dim": 8}}, "tabular": True, "sampling": "none"},
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["head"])
def test_model_fit_matches_the_trial_pipeline_on_a_fold_and_survives_save_load(config, tmp_path):
    data = _data()
    folds = grouped_folds(data.y, data.groups, 3, 0)
    tr, te = folds[0]
    arms = {"pooling": ["mean", "attention"]}
    ref = evaluate(config, data, arms=arms, n_folds=3, seed=0)
    for arm in arms["pooling"]:
        model = Model.fit(config, data, tr, arm=arm, seed=0)
        bags_te = {m: (X[te], mask[te]) for m, (X, mask) in data.bags.items()}
        pred = model.predict(bags_te, data.tabular.iloc[te])
        np.testing.assert_allclose(pred.proba, ref[arm]["proba"][te], atol=1e-5)
        np.testing.assert_allclose(pred.proba.sum(1), 1, atol=1e-6)
        if arm == "attention":  # the attention the trial recorded for the same samples
            np.testing.assert_allclose(pred.attention["s"], ref[arm]["attention"]["s"][te], atol=1e-5)
        saved = model.save(tmp_path / f"m-{arm}")
        assert not list(saved.glob("*.pkl")) and (saved / "tensors.safetensors").exists()
        again = load_model(saved).predict(bags_te, data.tabular.iloc[te])
        np.testing.assert_allclose(again.proba, pred.proba, atol=1e-6)


def test_predict_names_missing_columns_and_handles_a_missing_modality(tmp_path):
    data = _data()
    model = Model.fit(CONFIGS[0], data, arm="attention")
    with pytest.raises(ModelError, match="bmi"):
        model.predict({m: b for m, b in data.bags.items()}, data.tabular.drop(columns=["bmi"]))
    only_s = model.predict({"s": data.bags["s"]}, data.tabular)  # modality "t" absent for every sample
    assert not only_s.presence["t"].any()
    np.testing.assert_allclose(only_s.proba.sum(1), 1, atol=1e-6)


def test_load_refuses_another_format_and_another_sklearn(tmp_path):
    path = Model.fit(CONFIGS[0], _data(), arm="mean").save(tmp_path / "m")
    meta = json.loads((path / "model.json").read_text())
    (path / "model.json").write_text(json.dumps({**meta, "format": 999}))
    with pytest.raises(IncompatibleModelError, match="format 999.*finalize"):
        load_model(path)
    meta["versions"]["scikit-learn"] = "0.1.0"
    (path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(IncompatibleModelError, match="scikit-learn 0.1.0"):
        load_model(path)


def test_unsafe_types_in_a_skops_file_are_refused(tmp_path):
    import skops.io as sio

    from sweeps.model import skops_load

    class Evil:
        pass

    sio.dump({"x": Evil()}, tmp_path / "bad.skops")
    with pytest.raises(ModelError, match="allow-list"):
        skops_load(tmp_path / "bad.skops")
