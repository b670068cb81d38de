"""Seed 000, clinical half: the knee sheet alone (the seed's ANN on clinical data), on the real
sheet as distributed, normal / osteopenia / osteoporosis.

The T-score and Z-score that define the diagnosis are flagged by the knee adapter's leakage guard and
left out; imputation (median or the lumbar seed's iterative random forest) is fitted on training folds.
Runs on the real sheet with ``--data ../shared/data/knee-osteoporosis``.
"""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="knee_clinical",
    description="knee clinical sheet alone (T/Z-scores excluded): imputation x sampling x heads",
    cohort="knee",
    metric="f1_macro",
    mode="max",
    num_samples=12,
    space={
        "tabular": tune.choice(["simple", "iterative_rf"]),
        "sampling": tune.choice(["none", "class_weight", "smote"]),
        "head": {"name": tune.choice(["mlp", "logreg", "lightgbm"])},
    },
)
