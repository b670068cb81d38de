"""Seed 004, chest X-rays (CheXpert / MIMIC-CXR style CSV, DICOM or JPEG) with 14 pathology labels in
1 / 0 / -1 / blank: all 14 in one trial, one head per pathology, uncertain and blank labels handled by
the adapter's policy (``uncertainty``: ignore / ones / zeros; choose with --option or cohort_options),
per-pathology AUC in the report.

Done right: the report text that the labels were extracted from is flagged and not a feature here;
folds are grouped by patient; masked labels neither train nor score a head.
Run with ``--data labels.csv`` (paths relative to its folder) or ``--smoke`` on a generated stand-in.
"""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="chexpert_multilabel",
    description="CheXpert-style 14 pathologies in one trial: per-pathology AUC, views pooled, age/sex/view",
    cohort="chexpert",
    cohort_options={"uncertainty": "ignore"},
    target="all",
    metric="auc_macro",
    mode="max",
    num_samples=8,
    space={
        "encoder": "resnet18",
        "preprocessing": tune.choice(["grayscale_norm", "grayscale_norm+clahe"]),
        "pca_dim": 32,
        "pooling": "mean",
        "fusion": "concat",
        "tabular": tune.choice(["none", "simple"]),
        "sampling": tune.choice(["none", "class_weight"]),
        "head": {"name": tune.choice(["logreg", "lightgbm"])},
    },
)
