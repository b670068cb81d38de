"""Seed 001 as the competition scored it: all 25 level x condition targets of RSNA 2024 in one trial
(one head per target, blanks masked), scored by the competition metric (sample-weighted log loss with
weights 1/2/4 per condition group plus any_severe_spinal; lower is better).

Fixed poolings only (a learned pooling would have to be trained for one target or for all: see the
single-target ``lumbar_seed`` space for attention vs average). Run with ``--data FOLDER`` (the Kaggle
layout) or ``--smoke`` on a generated stand-in.
"""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="lumbar_all_targets",
    description="RSNA lumbar, all 25 targets, competition metric: poolings x heads x sampling",
    cohort="rsna_lumbar",
    target="all",
    metric="rsna_score",
    mode="min",
    num_samples=8,
    space={
        "encoder": "resnet18",
        "preprocessing": "grayscale_norm",
        "pca_dim": 32,
        "pooling": tune.choice(["mean", "max"]),
        "fusion": "concat",
        "sampling": tune.choice(["none", "class_weight"]),
        "head": {"name": tune.choice(["logreg", "lightgbm"]), "logreg": {"C": tune.loguniform(1e-3, 1.0)}},
    },
)
