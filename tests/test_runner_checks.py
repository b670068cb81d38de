"""Runner checks made before any trial: a pooling comparison that cannot differ, the cohort summary the
report reads, the console table's columns."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from sweeps.runner import _reporter, cohort_summary, moot_pooling_compare
from sweeps.spec import load_space
from trainables.data.cohort import Cohort, Target


def _cohort(per_sample: int, quarantine=()) -> Cohort:
    samples = pd.DataFrame({"sample_id": ["a", "b", "c"], "patient_id": ["P1", "P2", "P3"], "y": ["0", "1", "0"]})
    inst = pd.DataFrame([(s, "mri", k, f"/x/{s}{k}.png", 0) for s in ("a", "b") for k in range(per_sample)],
                        columns=["sample_id", "modality", "order", "path", "frame"])
    return Cohort("t", samples, inst, [Target("y", "binary", ("0", "1"))], ["mri"], quarantine=list(quarantine))


def test_a_comparison_of_poolings_over_bags_of_one_is_moot_and_runs_one_arm():
    spec = load_space("quickstart")  # compare mean vs attention
    moot = moot_pooling_compare(spec, _cohort(1))
    assert moot["ran"] == "mean" and moot["pooling"] == ["mean", "attention"] and "cannot differ" in moot["why"]
    assert moot_pooling_compare(spec, _cohort(3)) is None
    assert moot_pooling_compare(replace(spec, compare={}), _cohort(1)) is None


def test_the_summary_says_what_a_sample_is_and_counts_image_less_samples():
    later = [{"path": "/x/b0.png", "reason": "cannot decode"}]  # set aside by the embed stage
    c = cohort_summary(_cohort(1, later), ["y"])
    assert c["max_instances"] == 1 and c["no_readable_image"] == {"mri": 1}
    assert c["modalities"]["mri"] == {"present": 1, "missing": 2}  # b's only image was unreadable
    assert c["duplicates"] == {"groups": 0, "samples": 0, "merged": False}
    assert cohort_summary(_cohort(2, later), ["y"])["no_readable_image"] == {}  # b still has b1


def test_the_console_table_lists_each_metric_once_and_nested_swept_values():
    spec = load_space("finetune_quickstart")
    r = _reporter(replace(spec, metric="auc_macro"))
    assert r._metric_columns == ["auc_macro", "best_arm"]
    assert "train/lr" in r._parameter_columns
