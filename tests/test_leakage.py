"""The leakage guard flags columns that alone give the label away, out of fold and grouped by patient."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainables.data.leakage import column_scores, scan


def _cohort(n_patients=60, per_patient=2, k=3, seed=0):
    """Labels per patient (repeated on each of its rows), patient keys, and an rng."""
    rng = np.random.default_rng(seed)
    y_patient = rng.integers(0, k, n_patients)
    groups = np.repeat([f"P{i}" for i in range(n_patients)], per_patient)
    return np.repeat(y_patient, per_patient), groups, rng


def test_a_column_that_encodes_the_label_is_flagged_and_noise_is_not():
    y, groups, rng = _cohort()
    df = pd.DataFrame({"t_score": y * 1.5 + rng.normal(0, 0.2, len(y)), "noise": rng.normal(size=len(y)),
                       "colour": rng.choice(["red", "blue", "green"], len(y))})
    flagged = scan(df, y, groups, target="diagnosis")
    assert list(flagged) == ["t_score"]
    assert "alone predicts 'diagnosis' with AUC 1.00" in flagged["t_score"]
    assert "grouped by patient" in flagged["t_score"]


def test_many_category_column_tied_to_the_label_is_flagged():
    """Thirty categories, ten per class, interleaved: a depth-3 tree on one-hot or ordinal codes cannot
    separate them all (AUC about 0.58 and 0.93); on class frequencies it can."""
    y, groups, rng = _cohort(n_patients=150)
    codes = np.array([f"site{j * 3 + c}" for c, j in zip(y, rng.integers(0, 10, len(y)))])
    flagged = scan(pd.DataFrame({"site": codes}), y, groups)
    assert "site" in flagged


def test_a_column_whose_missingness_gives_the_label_away_is_flagged():
    y, groups, rng = _cohort(k=2)
    values = np.where(y == 1, np.nan, rng.normal(size=len(y)))
    assert "icu_days" in scan(pd.DataFrame({"icu_days": values}), y, groups)


def test_folds_are_grouped_by_patient_so_a_patient_key_is_not_a_predictor():
    """A per-patient code predicts perfectly if a patient's rows sit on both sides of a split; grouped,
    every held-out code is unseen and carries nothing."""
    y, groups, _ = _cohort(per_patient=4)
    df = pd.DataFrame({"patient_code": groups})
    auc, _ = column_scores(df, y, groups)["patient_code"]
    assert auc < 0.7
    assert scan(df, y, groups) == {}
    ungrouped = np.arange(len(y)).astype(str)  # every row its own group: the leak shows
    assert "patient_code" in scan(df, y, ungrouped)


def test_masked_rows_are_ignored():
    y, groups, rng = _cohort()
    df = pd.DataFrame({"score": y + rng.normal(0, 0.1, len(y)), "noise": rng.normal(size=len(y))})
    masked = y.copy()
    masked[rng.random(len(y)) < 0.3] = -1
    df.loc[masked == -1, "score"] = 99.0  # junk where unlabelled
    keep = masked != -1
    with_masked = scan(df, masked, groups)
    assert with_masked == scan(df[keep].reset_index(drop=True), masked[keep], groups[keep])
    assert list(with_masked) == ["score"]


def test_threshold_separates_strong_from_perfect_and_results_are_deterministic():
    y, groups, rng = _cohort(n_patients=200, k=2)
    df = pd.DataFrame({"weak": y + rng.normal(0, 0.6, len(y))})
    auc, _ = column_scores(df, y, groups)["weak"]
    assert 0.7 < auc < 0.95
    assert scan(df, y, groups) == {}
    assert "weak" in scan(df, y, groups, threshold=0.7)
    assert scan(df, y, groups, threshold=0.7, seed=3) == scan(df, y, groups, threshold=0.7, seed=3)


def test_constant_columns_and_single_class_inputs_give_nothing():
    y, groups, _ = _cohort()
    assert column_scores(pd.DataFrame({"site": ["knee"] * len(y)}), y, groups) == {}
    assert scan(pd.DataFrame({"x": np.arange(len(y))}), np.zeros(len(y), int), groups) == {}
