"""Seed 001, RSNA 2024 lumbar spine: MRI series embedded per slice, average vs attention pooling,
SVC / LightGBM / bagging / MLP heads, class-weighted loss vs SMOTE, missing series.

Done right: the attention pooling is trained (on training folds only), not a random layer; every
configuration runs both poolings on the same patient-grouped folds (paired comparison); a missing
series is a zero vector plus a presence flag, never a dropped study; blanks are masked, not a class.

One target per sweep (``target=``): L4/L5 spinal canal stenosis has the most Moderate/Severe cases.
Run on the Kaggle layout with ``--data FOLDER`` (train.csv, train_series_descriptions.csv,
train_images/), or ``--smoke`` on a generated stand-in.
"""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="lumbar_seed",
    description="RSNA lumbar: mean vs attention pooling x heads x class weights vs SMOTE, missing series",
    cohort="rsna_lumbar",
    target="spinal_canal_stenosis_l4_l5",
    metric="f1_macro",
    mode="max",
    num_samples=16,
    compare={"pooling": ["mean", "attention"]},
    space={
        "encoder": "resnet18",
        "preprocessing": tune.choice(["grayscale_norm", "grayscale_norm+hist_eq"]),
        "pca_dim": 32,
        "pooling": {"attention": {"hidden_dim": 64}},
        "fusion": "concat",
        "sampling": tune.choice(["class_weight", "smote"]),
        "head": {"name": tune.choice(["svc", "lightgbm", "bagging", "mlp"]), "bagging": {"base": "svc"}},
    },
)
