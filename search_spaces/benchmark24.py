"""Benchmark, 24 distinct configurations: what ``benchmarks/bench_sweep.py --trials 24`` times against a
naive per-trial pipeline, and ``benchmarks/bench_search.py`` counts distinct configurations on. The
``benchmark`` space's cohort and arms (80 synthetic patients, resnet18, attention vs average pooling),
over 4 heads x 3 sampling strategies x 2 PCA sizes = 24 configurations: a 24-trial sweep evaluates each
exactly once (the searcher's exhaustive sampler), the same 24 in both ways."""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="benchmark24",
    description="benchmark space, 24 configurations: attention vs average pooling x 4 heads x 3 samplings x 2 PCA sizes, "
                "80-patient synthetic cohort",
    cohort="synthetic",
    cohort_options={"n_patients": 80},
    metric="f1_macro",
    mode="max",
    num_samples=24,
    compare={"pooling": ["mean", "attention"]},  # every trial runs both, on the same folds
    space={
        "encoder": "resnet18",
        "preprocessing": "grayscale_norm",
        "pca_dim": tune.choice([8, 16]),
        "pooling": {"attention": {"hidden_dim": 64}},
        "fusion": "concat",
        "tabular": False,
        "sampling": tune.choice(["none", "class_weight", "random_under"]),
        "head": tune.choice(["logreg", "lightgbm", "svc", "mlp"]),
    },
)
