import numpy as np
import pytest

from trainables.splits import grouped_folds


def test_no_patient_on_both_sides_of_any_split():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), rng.integers(1, 4, 60))  # patients with 1 to 3 studies
    y = rng.integers(0, 3, len(groups))
    folds = grouped_folds(y, groups, 5, seed=0)
    seen = np.zeros(len(y), int)
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        seen[te] += 1
    assert (seen == 1).all(), "every sample is scored exactly once (out-of-fold)"


def test_synthetic_cohort_patients_with_two_studies_stay_together(small_cohort):
    c = small_cohort
    groups = c.samples["patient_id"].to_numpy()
    assert c.samples["patient_id"].duplicated().any(), "the cohort should have patients with two studies"
    for tr, te in grouped_folds(c.labels(), groups, 5, 0):
        assert not set(groups[tr]) & set(groups[te])


def test_too_few_patients_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 5 patients"):
        grouped_folds(np.array([0, 1, 0]), np.array([1, 2, 3]), 5)
