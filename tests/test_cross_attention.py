"""Cross-attention fusion: report tokens attend over image instances (issue 4, item 3)."""

import time

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from sweeps.spec import SpecError, SweepSpec
from trainables.fusion import FUSIONS
from trainables.pipeline import TrialData, evaluate
from trainables.registry import build

torch.set_num_threads(1)  # the machine is shared

FILLER = ["finding", "seen", "mild", "on", "the", "side", "image", "noted"]


def _planted(n=500, N=8, D=16, seed=0):
    """Each bag has N/2 "left" and N/2 "right" instances (a side direction in feature space); all of
    one side are bright, the other dark. The text names a side; y = whether the named side is the
    bright one. Pooled bags and the text alone carry no signal: only which-instance-the-text-names does."""
    rng = np.random.default_rng(seed)
    u_side, u_bright = np.linalg.qr(rng.normal(size=(D, 2)))[0].T * 2.0  # orthogonal directions spread over all dims
    side = np.array([rng.permutation([1] * (N // 2) + [-1] * (N // 2)) for _ in range(n)])  # (n, N)
    bright_side = rng.choice([-1, 1], n)
    named = rng.choice([-1, 1], n)
    bright = (side == bright_side[:, None]).astype(float)
    X = (rng.normal(scale=0.5, size=(n, N, D)) + side[..., None] * u_side + bright[..., None] * u_bright).astype(np.float32)
    y = (named == bright_side).astype(int)
    texts = [" ".join([*rng.choice(FILLER, 3), "left" if s == 1 else "right", *rng.choice(FILLER, 2)]) for s in named]
    return X, np.ones((n, N), bool), y, texts, side


def _bow(texts):
    return np.array([[t.split().count("left"), t.split().count("right")] for t in texts], np.float32)


def _held_out_auc(fusion, vectors, pres, y, bags=None, texts=None, n_train=400):
    tr = slice(0, n_train)
    ctx = {} if bags is None else {"bags": bags, "texts": texts}
    ctx_tr = {} if bags is None else {"bags": {m: (X[tr], k[tr]) for m, (X, k) in bags.items()}, "texts": texts[tr]}
    fusion.fit({m: v[tr] for m, v in vectors.items()}, pres[tr], y[tr], 2, seed=0, **ctx_tr)
    Z = fusion.fuse(vectors, pres, **ctx)
    clf = LogisticRegression(max_iter=2000).fit(Z[tr], y[tr])
    return roc_auc_score(y[n_train:], clf.predict_proba(Z[n_train:])[:, 1])


def test_text_picks_the_instance_pooled_fusions_cannot_see():
    X, mask, y, texts, side = _planted()
    vectors = {"ct": X.mean(1), "text": _bow(texts)}
    pres = np.ones((len(y), 2), bool)
    bags = {"ct": (X, mask)}
    t0 = time.perf_counter()
    cross = _held_out_auc(build(FUSIONS, {"name": "cross_attention", "cross_attention": {"dim": 16}}),
                          vectors, pres, y, bags, texts)
    assert time.perf_counter() - t0 < 5  # CPU-fast: ~0.5 s here
    blind = _held_out_auc(build(FUSIONS, {"name": "cross_attention", "cross_attention": {"dim": 16}}),
                          {"ct": X.mean(1)}, pres[:, :1], y, bags, [""] * len(y))
    pooled = _held_out_auc(build(FUSIONS, "attention"), vectors, pres, y)
    assert cross > 0.9
    assert blind < 0.65 and pooled < 0.65  # (~0.53 and ~0.41 here: no signal without the words' pointing)
    # the word moves the attention: "left" puts more weight on the left instances than "right" does
    f = build(FUSIONS, {"name": "cross_attention", "cross_attention": {"dim": 16}})
    f.fit(vectors, pres, y, 2, bags=bags, texts=texts)
    w_left, w_right = (f.attention_weights(bags, [word] * len(y))["ct"] for word in ("left", "right"))
    np.testing.assert_allclose(w_left.sum(1), 1.0, rtol=1e-5)
    on_left = side > 0
    assert (w_left * on_left).sum(1).mean() - (w_right * on_left).sum(1).mean() > 0.3


def test_vocabulary_comes_from_the_training_texts_only():
    X, mask, y, texts, _ = _planted(60)
    texts = list(texts)
    texts[50] = "zebra " + texts[50]  # a word only a scored sample has
    f = build(FUSIONS, {"name": "cross_attention", "cross_attention": {"epochs": 2, "num_words": 10}})
    f.fit({"ct": X[:40].mean(1)}, np.ones((40, 1), bool), y[:40], 2, bags={"ct": (X[:40], mask[:40])}, texts=texts[:40])
    assert "zebra" not in f.vocab_ and {"left", "right"} <= set(f.vocab_) and len(f.vocab_) == 10
    assert sorted(f.vocab_.values()) == list(range(2, 12))  # 0 padding, 1 the "no text" token
    ids = f.ids(["zebra zebra", "", "left zebra"], 3)
    np.testing.assert_array_equal(ids[:2, 0], 1)  # unseen words only / empty: the "no text" query
    assert ids[2, 0] == f.vocab_["left"] and ids[2, 1:].sum() == 0


def test_empty_bags_and_texts_give_finite_features_and_absent_content_is_ignored():
    X, mask, y, texts, _ = _planted(80)
    mask = mask.copy()
    mask[:10] = False  # empty bags, in training and scoring
    mask[10:20, 3:] = False
    X2 = X.copy()
    X2[~mask] = np.nan  # padding content never enters
    texts = ["" if i % 3 == 0 else t for i, t in enumerate(texts)]
    tab = np.random.default_rng(0).normal(size=(80, 3)).astype(np.float32)
    vectors = {"ct": X.mean(1), "mr": X[:, :4].mean(1), "text": _bow(texts), "tabular": tab}
    pres = np.ones((80, 4), bool)
    pres[:10, 0] = False
    pres[:, 2] = [t != "" for t in texts]
    bags = {"ct": (X2, mask), "mr": (X[:, :4], np.ones((80, 4), bool))}
    f = build(FUSIONS, {"name": "cross_attention", "cross_attention": {"epochs": 5, "modality_dropout": 0.3,
                                                                       "dropout": 0.1}})
    f.fit(vectors, pres, y, 2, bags=bags, texts=texts)
    Z = f.fuse(vectors, pres, bags=bags, texts=texts)
    assert Z.shape == (80, 2 * 32 + 2 + 3 + 4) and np.isfinite(Z).all()
    np.testing.assert_array_equal(Z[:10, :32], 0.0)  # an empty bag: a zero vector for that modality
    w = f.attention_weights(bags, texts)["ct"]
    assert np.isfinite(w).all() and (w[:10] == 0).all() and (w[10:20, 3:] == 0).all()
    # a modality marked absent: neither its instances nor its text reach the output
    pres2 = pres.copy()
    pres2[:, 1] = False
    pres2[:, 2] = False
    other = {"mr": (X[:, :4] * 5 + 1, bags["mr"][1]), "ct": bags["ct"]}
    a = f.fuse(vectors, pres2, bags=bags, texts=texts)
    b = f.fuse({**vectors, "text": vectors["text"] + 7}, pres2, bags=other, texts=["right left"] * 80)
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="needs the trial's instance bags"):
        f.fuse(vectors, pres)
    with pytest.raises(RuntimeError, match="call fit"):
        build(FUSIONS, "cross_attention").fuse(vectors, pres, bags=bags, texts=texts)


def test_same_seed_same_features_and_global_rng_untouched():
    X, mask, y, texts, _ = _planted(80)
    args = ({"ct": X.mean(1)}, np.ones((80, 1), bool), y, 2)
    ctx = {"bags": {"ct": (X, mask)}, "texts": texts}

    def run(seed):
        f = build(FUSIONS, {"name": "cross_attention", "cross_attention": {"epochs": 10, "dropout": 0.2,
                                                                           "modality_dropout": 0.2}})
        return f.fit(*args, seed=seed, **ctx).fuse(args[0], args[1], **ctx)

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = run(0)
    assert torch.rand(1) == before
    np.testing.assert_array_equal(a, run(0))
    assert not np.array_equal(a, run(1))


def _trial_data(n=360):
    X, mask, y, texts, _ = _planted(n, seed=3)
    Xm, maskm, *_ = _planted(n, N=4, seed=4)  # an uninformative second modality
    maskm[:20] = False  # some samples lack it
    return TrialData(y=y, groups=np.array([f"P{i}" for i in range(n)]), class_names=("no", "yes"),
                     modalities=["ct", "mr"], bags={"ct": (X * 3 + 1, mask), "mr": (Xm, maskm)},
                     texts=pd.DataFrame({"report": texts, "indication": [""] * n}))


def test_runs_inside_the_pipeline_with_missing_eval():
    config = {"head": "logreg", "pooling": "mean", "text": {"name": "tfidf", "tfidf": {"dim": 8}},
              "fusion": {"name": "cross_attention", "cross_attention": {"dim": 16}}, "missing_eval": [0.5]}
    (res,) = evaluate(config, _trial_data(), n_folds=3).values()
    assert res["metrics"]["auc_macro"] > 0.8
    assert set(res["missing"]) == {("ct", 0.5), ("mr", 0.5), ("text", 0.5)}
    # without the text the named side is unknown: removing it from half the samples costs AUC
    assert res["missing"][("text", 0.5)]["auc_macro"] < res["metrics"]["auc_macro"] - 0.1
    (plain,) = evaluate({**config, "fusion": "attention", "missing_eval": []}, _trial_data(), n_folds=3).values()
    assert plain["metrics"]["auc_macro"] < 0.65


def test_spec_accepts_it_and_catches_a_typo():
    base = {"head": "logreg", "text": {"name": "tfidf"}}
    SweepSpec(name="t", space={**base, "fusion": {"name": "cross_attention", "cross_attention": {
        "dim": 16, "heads": 4, "max_len": 32, "num_words": 100, "epochs": 5, "lr": 1e-3, "weight_decay": 0.0,
        "modality_dropout": 0.1, "dropout": 0.1, "include_vectors": False}}}).validate()
    with pytest.raises(SpecError, match="heads"):
        SweepSpec(name="t", space={**base, "fusion": {"name": "cross_attention",
                                                      "cross_attention": {"headz": 2}}}).validate()
    with pytest.raises(ValueError, match="must divide dim"):
        build(FUSIONS, {"name": "cross_attention", "cross_attention": {"dim": 10, "heads": 3}})
