"""Ensembles beside their members: soft voting, stacking (nested logistic-regression meta-learner)
and bagging, against single heads, with attention and average pooling on the same folds."""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="ensembles",
    description="soft voting, stacking and bagging vs single heads, synthetic MRI cohort",
    cohort="synthetic",
    metric="f1_macro",
    mode="max",
    num_samples=16,
    compare={"pooling": ["mean", "attention"]},
    space={
        "encoder": "resnet18",
        "preprocessing": "grayscale_norm",
        "pca_dim": 16,
        "sampling": tune.choice(["none", "class_weight"]),
        "head": {
            "name": tune.choice(["logreg", "svc", "lightgbm", "soft_voting", "stacking", "bagging"]),
            "soft_voting": {"members": "logreg+svc+lightgbm"},
            "stacking": {"members": "logreg+svc+lightgbm"},
            "bagging": {"base": tune.choice(["logreg", "svc"])},
        },
    },
)
