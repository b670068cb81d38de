# Run: python -m sweeps run benchmarks/missing_strategies.py   (the README quotes its table)
"""Missing-modality handling head to head on the synthetic MRI cohort: the CNN fusion (the lumbar
seed's) with zero fill, the training-mean embedding or a learned neutral vector for an absent series,
each with and without modality dropout (6 trials, a grid), re-scored with each series removed from 25/50/100% of the
scored samples (the report's "Simulated missing modalities" table)."""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="missing_strategies",
    description="CNN fusion: zero vs mean vs learned-neutral fill, modality dropout, simulated missing series",
    cohort="synthetic",
    metric="f1_macro",
    mode="max",
    num_samples=1,  # the grid: 3 fills x 2 dropout rates = 6 trials
    space={
        "encoder": "resnet18",
        "preprocessing": "grayscale_norm",
        "pca_dim": 16,
        "pooling": {"name": "attention", "attention": {"hidden_dim": 32}},
        "tabular": "simple",
        "fusion": {"name": "cnn", "cnn": {"missing": tune.grid_search(["zero", "mean", "neutral"]),
                                          "modality_dropout": tune.grid_search([0.0, 0.3])}},
        "missing_eval": [0.0, 0.25, 0.5, 1.0],
        "sampling": "class_weight",
        "head": "logreg",
    },
)
