"""Seeds 002 and 003: chest X-ray (frontal and lateral views) + report text, normal vs abnormal
(IU-Xray): ResNet features with ImageNet normalisation (seed 002) fused with a text encoder (seed 003's
token-sequence network, or TF-IDF), late fusion by concatenation, learned attention over modalities, or cross-attention from the
indication's words to the images.

Done right: only the indication is read (findings and impression carry the label); the token model
and TF-IDF are fitted on training folds; a missing view is a missing modality, not a dropped study.
Needs the PNG images beside the reports: ``--data FOLDER`` (NLMCXR_reports.tgz + images/), or
``--smoke`` on a generated stand-in.
"""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="iu_xray_multimodal",
    description="IU-Xray frontal+lateral X-rays + indication text: fusion strategies x text encoders",
    cohort="iu_xray",
    cohort_options={"sections": ["indication"]},
    metric="auc_macro",
    mode="max",
    num_samples=8,
    space={
        "encoder": "resnet18",
        "preprocessing": "grayscale_norm+imagenet_norm",
        "pooling": "mean",
        "pca_dim": 32,
        "text": {"name": tune.choice(["tokens", "tfidf"]), "steps": ["clean"], "tokens": {"epochs": 10}},
        "fusion": {"name": tune.choice(["concat", "attention", "cross_attention"]), "attention": {"modality_dropout": 0.2},
                   "cross_attention": {"dim": 16}},  # indication words attend over each view's images
        "sampling": "class_weight",
        "head": {"name": tune.choice(["logreg", "mlp"])},
    },
)
