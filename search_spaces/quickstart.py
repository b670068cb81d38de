"""Quickstart: attention vs average pooling, across heads, sampling strategies and PCA sizes, on the
built-in synthetic MRI cohort (300 patients; a lesion planted in a few slices of one series type)."""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="quickstart",
    description="attention vs average pooling x heads x sampling, synthetic MRI cohort",
    cohort="synthetic",
    metric="f1_macro",
    mode="max",
    num_samples=16,
    compare={"pooling": ["mean", "attention"]},  # every trial runs both, on the same folds
    test_fraction=0.2,  # 20% of the patients held out, scored once after the sweep (report: "Held-out test")
    space={
        "encoder": "resnet18",
        "preprocessing": "grayscale_norm",
        "pca_dim": tune.choice([16, 32]),
        "pooling": {"attention": {"hidden_dim": tune.choice([32, 64])}},
        "fusion": "concat",
        "tabular": tune.choice([False, True]),
        "sampling": tune.choice(["none", "class_weight", "smote", "random_under"]),
        "head": tune.choice(["logreg", "svc", "lightgbm", "mlp"]),
    },
)
