"""Benchmark: the small fixed sweep that ``benchmarks/bench_sweep.py`` times against a naive
per-trial pipeline (cohort load + encoder inside every trial). A smaller synthetic cohort (80
patients), one encoder and preprocessing, attention vs average pooling over two heads and two
sampling strategies."""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="benchmark",
    description="benchmark space: attention vs average pooling x 2 heads x 2 samplings, 80-patient synthetic cohort",
    cohort="synthetic",
    cohort_options={"n_patients": 80},
    metric="f1_macro",
    mode="max",
    num_samples=8,
    compare={"pooling": ["mean", "attention"]},  # every trial runs both, on the same folds
    space={
        "encoder": "resnet18",
        "preprocessing": "grayscale_norm",
        "pca_dim": 16,
        # constant: the compared arms (mean, attention) come from `compare`; this only fixes the
        # attention arm's parameters (64 is its default, written out so the benchmark is explicit)
        "pooling": {"attention": {"hidden_dim": 64}},
        "fusion": "concat",
        "tabular": False,
        "sampling": tune.choice(["none", "class_weight"]),
        "head": tune.choice(["logreg", "lightgbm"]),
    },
)
