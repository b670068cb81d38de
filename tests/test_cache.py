import logging

import numpy as np
import pytest

from trainables import cache, embed


def test_second_embed_reuses_the_cache_and_says_so(small_cohort, tmp_path, caplog, monkeypatch):
    fp = small_cohort.fingerprint()
    first = embed.embed_cohort(small_cohort, "resnet18", "grayscale_norm", cache_root=tmp_path, fingerprint=fp,
                               progress=False)
    assert first.embeddings.shape == (len(small_cohort.instances), 512)

    def boom(*a, **k):
        raise AssertionError("the encoder ran although the cache holds these embeddings")

    monkeypatch.setattr(embed, "run_encoder", boom)
    with caplog.at_level(logging.INFO, logger="sweeps.embed"):
        second = embed.embed_cohort(small_cohort, "resnet18", "grayscale_norm", cache_root=tmp_path, fingerprint=fp)
    assert second.key == first.key
    assert np.array_equal(np.asarray(second.embeddings), np.asarray(first.embeddings))
    assert "reused" in caplog.text


def test_key_changes_with_preprocessing_encoder_and_content(small_cohort):
    fp = small_cohort.fingerprint()
    k = embed.cache_key(fp, "resnet18", "grayscale_norm")
    assert k != embed.cache_key(fp, "resnet18", "hist_eq")
    assert k != embed.cache_key(fp, "efficientnet_b0", "grayscale_norm")
    assert k != embed.cache_key("0" * 32, "resnet18", "grayscale_norm")


def test_fingerprint_changes_when_a_pixel_file_changes(small_cohort, tmp_path):
    import shutil

    from trainables.data.cohort import Cohort

    inst = small_cohort.instances.copy()
    copy = tmp_path / "x.dcm"
    shutil.copy(inst.loc[0, "path"], copy)
    inst.loc[0, "path"] = str(copy)
    c = Cohort(small_cohort.name, small_cohort.samples, inst, small_cohort.targets, small_cohort.modalities)
    before = c.fingerprint()
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    assert c.fingerprint() != before


def test_a_write_interrupted_midway_leaves_no_readable_entry(tmp_path, monkeypatch):
    import pandas as pd

    index = pd.DataFrame({"sample_id": ["a", "b"], "modality": ["m", "m"], "order": [0, 1]})
    real_save = np.save
    calls = []

    def save_then_die(path, arr, *a, **k):
        real_save(path, arr[:1], *a, **k)  # half the data reaches the disk...
        calls.append(path)
        raise KeyboardInterrupt  # ...then the process is interrupted

    monkeypatch.setattr(np, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        cache.write(tmp_path, "k1", np.zeros((2, 3)), index, {})
    assert calls
    assert cache.lookup(tmp_path, "k1") is None
    assert not (tmp_path / "k1").exists()
    assert not list(tmp_path.glob(".tmp-*")), "the temporary folder is removed"
    monkeypatch.setattr(np, "save", real_save)
    entry = cache.write(tmp_path, "k1", np.ones((2, 3)), index, {})
    assert np.asarray(entry.embeddings).sum() == 6


def test_stale_temp_folders_from_a_killed_writer_are_ignored_and_swept(tmp_path):
    (tmp_path / ".tmp-k2-dead").mkdir()
    (tmp_path / ".tmp-k2-dead" / "embeddings.npy").write_bytes(b"partial")
    assert cache.lookup(tmp_path, "k2") is None
    assert cache.sweep_stale(tmp_path, older_than_s=0) == 1
