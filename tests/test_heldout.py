"""The held-out test part: the split, DeLong's test, calibration, subgroups."""

import numpy as np
import pandas as pd
import pytest

from sweeps.heldout import subgroups
from sweeps.report.stats import brier, delong_test, delong_variance, reliability
from trainables.splits import holdout_split


def test_holdout_split_is_grouped_stratified_seeded_and_about_the_fraction():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(100), rng.integers(1, 3, 100))
    y = rng.choice(3, len(groups), p=[0.7, 0.2, 0.1])
    dev, test = holdout_split(y, groups, 0.2, seed=3)
    assert not set(groups[dev]) & set(groups[test])
    assert sorted(np.r_[dev, test]) == list(range(len(y)))
    assert 0.15 < len(np.unique(groups[test])) / 100 < 0.25
    assert set(y[test]) == {0, 1, 2}  # stratified: every class in the test part
    again = holdout_split(y, groups, 0.2, seed=3)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(holdout_split(y, groups, 0.2, seed=4)[1], test)
    with pytest.raises(ValueError, match="at least 5 patients"):
        holdout_split(y[:3], groups[:3], 0.2)


def _brute_delong(y, s):
    """DeLong's placement values by double loops (the definition), and the variance of the AUC."""
    pos, neg = s[y == 1], s[y == 0]
    psi = lambda a, b: 1.0 if a > b else 0.5 if a == b else 0.0  # noqa: E731
    v10 = np.array([np.mean([psi(p, q) for q in neg]) for p in pos])
    v01 = np.array([np.mean([psi(p, q) for p in pos]) for q in neg])
    return v10.mean(), v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg), v10, v01


def test_delong_matches_its_definition_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    s = np.round(rng.random(40) + 0.4 * y, 1)  # rounded: ties
    auc, var, _, _ = _brute_delong(y, s)
    a2, v2 = delong_variance(y, s)
    assert a2 == pytest.approx(auc) and v2 == pytest.approx(var)


def test_delong_paired_test_matches_the_brute_force_covariance():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 50)
    sa, sb = rng.random(50) + 0.8 * y, rng.random(50) + 0.3 * y
    _, _, a10, a01 = _brute_delong(y, sa)
    _, _, b10, b01 = _brute_delong(y, sb)
    m, n = (y == 1).sum(), (y == 0).sum()
    S10, S01 = np.cov(np.stack([a10, b10])), np.cov(np.stack([a01, b01]))
    S = S10 / m + S01 / n
    se = np.sqrt(S[0, 0] + S[1, 1] - 2 * S[0, 1])
    pa, pb = np.stack([1 - sa, sa], 1), np.stack([1 - sb, sb], 1)
    d = delong_test(y, pa, pb)
    assert d.se == pytest.approx(se) and d.diff == pytest.approx(a10.mean() - b10.mean())
    from scipy.stats import norm

    assert d.p == pytest.approx(2 * norm.sf(abs(d.diff / se)))
    assert delong_test(y, pa, pa).p == 1.0  # the same model: no difference


def test_macro_delong_with_three_classes_is_calibrated_under_the_null():
    """Two different but equally good models: p < 0.05 in about 5% of draws, not far more."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(200):
        y = rng.integers(0, 3, 90)
        base = np.eye(3)[y] * 0.8
        pa = base + rng.random((90, 3))
        pb = base + rng.random((90, 3))
        hits += delong_test(y, pa / pa.sum(1, keepdims=True), pb / pb.sum(1, keepdims=True)).p < 0.05
    assert hits / 200 < 0.1
    y = rng.integers(0, 3, 120)  # and it sees a real difference
    good, bad = np.eye(3)[y] * 2 + rng.random((120, 3)), np.eye(3)[y] * 0.1 + rng.random((120, 3))
    assert delong_test(y, good, bad).p < 1e-3


def test_brier_and_ece_by_hand():
    y = np.array([0, 1, 1, 0])
    p = np.array([[0.95, 0.05], [0.15, 0.85], [0.65, 0.35], [0.45, 0.55]])
    assert brier(y, p) == pytest.approx(np.mean([0.005, 0.045, 0.845, 0.605]))
    bins, ece = reliability(y, p, bins=10)
    # confidences 0.95 (right), 0.85 (right), 0.65 (wrong), 0.55 (wrong), one per bin
    assert ece == pytest.approx((0.05 + 0.15 + 0.65 + 0.55) / 4)
    assert sum(n for *_, n in bins) == 4


def test_subgroups_infer_sex_and_age_bands():
    df = pd.DataFrame({"age": [30, 45.5, 70, np.nan], "sex": ["F", "M", None, "F"], "bmi": [1, 2, 3, 4]})
    g = subgroups(df)
    assert list(g) == ["age", "sex"]
    assert list(g["age"]) == ["<40", "40-59", "60+", "unknown"]
    assert list(g["sex"]) == ["F", "M", "unknown", "F"]


def test_a_run_started_without_a_test_part_never_gets_one_carved_afterwards():
    """The quickstart space now holds out 20%; a run made before (its trials saw every sample) must be
    finalized and resumed without a test part, or its "test" patients would be ones the trials saw."""
    from sweeps.finalize import spec_of_run

    old = {"space": "quickstart", "options": {"smoke": True}}
    assert spec_of_run(old).test_fraction == 0.0
    assert spec_of_run({**old, "options": {"smoke": True, "test_fraction": 0.2}}).test_fraction == 0.2
