"""The trial record (trainables/record.py): written and read back whole, a cut-short or missing file
reads as no record, the key scheme, and how a finished trial is found on resume."""

import json

import numpy as np
import pytest

from trainables.record import (ARRAYS, CONFIG, METRICS, TrialRecord, arm_key, attention_key, find_completed,
                               latest_record, read_record, result_arrays, target_key, write_record)


def _results(rng, n=6):
    """Per-arm results as the pipeline returns them: one arm with one target and attention, one with two targets."""
    return {
        "mean": {"proba": rng.random((n, 3)), "attention": {"t1": rng.random((n, 4)).astype(np.float32)}},
        "attention": {"proba": {"effusion": rng.random((n, 2)), "edema": np.full((n, 2), np.nan)}},
    }


def _record(tmp_path, name="ck"):
    rng = np.random.default_rng(0)
    results = _results(rng)
    config = {"pooling": {"name": "mean"}, "head": "logreg", "seed_obj": object.__name__, "__trial_index__": 1}
    metrics = {"auc_macro": 0.75, "best_arm": "mean", arm_key("mean", "auc_macro"): 0.75,
               arm_key("mean", "missing/t1/0.5/f1_macro"): 0.5, arm_key("attention", "auc_macro"): 0.6}
    arrays = result_arrays(results)
    return write_record(tmp_path / name, config, metrics, arrays), config, metrics, results


def test_key_scheme():
    assert arm_key("mean", "auc_macro") == "arm/mean/auc_macro"
    assert target_key("mean", "effusion") == "mean__t__effusion"
    assert attention_key("attention", "t2") == "attn__attention__t2"
    arrays = result_arrays(_results(np.random.default_rng(1)))
    assert sorted(arrays) == ["attention__t__edema", "attention__t__effusion", "attn__mean__t1", "mean"]
    assert arrays["mean"].dtype == np.float32 and arrays["attention__t__effusion"].dtype == np.float32


def test_round_trip(tmp_path):
    d, config, metrics, results = _record(tmp_path)
    assert sorted(p.name for p in d.iterdir()) == sorted([ARRAYS, CONFIG, METRICS]), "no temporary file is left"
    r = read_record(d)
    assert isinstance(r, TrialRecord) and r.path == d
    assert r.config == json.loads(json.dumps(config, sort_keys=True, default=str))
    assert r.metrics == metrics
    assert list(r.arms) == ["attention", "mean"]
    assert r.arms["mean"] == {"auc_macro": 0.75, "missing/t1/0.5/f1_macro": 0.5}
    assert r.arms["attention"] == {"auc_macro": 0.6}
    np.testing.assert_array_equal(r.oof["mean"], results["mean"]["proba"].astype(np.float32))
    assert "attention" not in r.oof  # several targets: per target only
    assert list(r.per_target["attention"]) == ["edema", "effusion"]
    np.testing.assert_array_equal(r.per_target["attention"]["effusion"],
                                  results["attention"]["proba"]["effusion"].astype(np.float32))
    assert r.per_target["mean"] == {} and r.attention["attention"] == {}
    np.testing.assert_array_equal(r.attention["mean"]["t1"], results["mean"]["attention"]["t1"])


@pytest.mark.parametrize("name", [ARRAYS, CONFIG, METRICS])
def test_a_cut_short_or_missing_file_is_no_record(tmp_path, name):
    d, *_ = _record(tmp_path)
    f = d / name
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    assert read_record(d) is None
    f.unlink()
    assert read_record(d) is None


def test_a_file_that_is_not_a_record_is_no_record(tmp_path):
    d, *_ = _record(tmp_path)
    (d / METRICS).write_text("[1, 2]")
    assert read_record(d) is None


def test_find_completed_takes_the_newest_complete_record_of_the_same_config(tmp_path):
    run = tmp_path / "run"
    trial = run / "trial_abc"
    old, config, metrics, _ = _record(trial, "checkpoint_000000")
    assert find_completed(config, run, trial_id="abc").path == old
    assert find_completed({**config, "head": "svc"}, run, trial_id="abc") is None  # another configuration
    assert find_completed(config, run, trial_id="other") is None
    assert find_completed(config, "", trial_id="abc") is None
    new, *_ = _record(trial, "checkpoint_000001")
    assert find_completed(config, run, trial_id="abc").path == new
    assert latest_record(trial).path == new
    (new / ARRAYS).write_bytes(b"PK\x03\x04 cut")  # killed while Tune copied it
    assert find_completed(config, run, trial_id="abc").path == old
    assert latest_record(trial).path == old


def test_read_record_gives_what_the_report_reads(tmp_path):
    """The report's run view builds one row per arm from the trial's record, as read_record decodes it."""
    from sweeps.report.run import read_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "sweep.json").write_text(json.dumps({"metric": "auc_macro"}))
    np.savez(run / "targets.npz", y=np.zeros(6))
    d, *_ = _record(run / "trial_abc", "checkpoint_000000")
    r = read_record(d)
    _, _, rows, _, _ = read_run(run)
    assert [row.arm for row in rows] == list(r.arms)
    for row in rows:
        assert row.config == r.config and row.metrics == r.arms[row.arm]
        assert (row.proba is None) == (row.arm not in r.oof)
        if row.proba is not None:
            np.testing.assert_array_equal(row.proba, r.oof[row.arm])
        assert list(row.attn) == list(r.attention[row.arm]) and list(row.targets) == list(r.per_target[row.arm])
