"""Seed 000, knee osteoporosis: knee X-ray features fused with clinical data (the seed's late fusion
of ResNet50 features and an ANN on the clinical sheet), normal / osteopenia / osteoporosis.

Done right: the T-score and Z-score define the diagnosis, so the knee adapter's leakage guard keeps
them out of the features; imputation is fitted on training folds only; folds are grouped by patient;
osteopenia recall (the seed's headline) is in every report table with its CI.

Run on the real layout with ``--data FOLDER`` (patient_details.csv|xlsx and images/<class>/...), or
``--smoke`` on a generated stand-in.
"""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="knee_fusion",
    description="knee X-ray + clinical sheet: image-only vs fused, imputation, ANN vs linear heads",
    cohort="knee",
    metric="f1_macro",
    mode="max",
    num_samples=16,
    space={
        "encoder": tune.choice(["resnet50", "resnet18"]),
        "preprocessing": tune.choice(["grayscale_norm", "grayscale_norm+hist_eq"]),
        "pooling": "mean",  # one to a few radiographs per patient
        "pca_dim": 32,
        "fusion": "concat",
        "tabular": tune.choice(["none", "simple", "iterative_rf"]),
        "sampling": tune.choice(["class_weight", "smote"]),
        "head": {"name": tune.choice(["mlp", "logreg", "lightgbm"])},
    },
)
