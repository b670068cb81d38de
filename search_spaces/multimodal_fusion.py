"""Image + report text + tabular on the synthetic MRI cohort: does each modality add to the image
series, which fusion uses them best, and how each copes when a series is missing at test time.

Image-only vs +text vs +tabular (``text``/``tabular`` "none" turns a modality off); concat vs learned
attention over modalities vs the CNN fusion with a learned neutral vector or zero fill for missing
inputs; ``missing_eval`` re-scores every trained model with the lesion series (sagittal_t2) and the
other modalities removed from 25/50/100% of the scored samples: the report's "Simulated missing
modalities" table.
"""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="multimodal_fusion",
    description="image vs image+text vs image+tabular, fusion strategies, simulated missing series",
    cohort="synthetic",
    metric="f1_macro",
    mode="max",
    num_samples=16,
    space={
        "encoder": "resnet18",
        "preprocessing": "grayscale_norm",
        "pca_dim": 16,
        "pooling": {"name": "attention", "attention": {"hidden_dim": 32}},
        "text": {"name": tune.choice(["none", "tfidf"]), "steps": ["clean"], "tfidf": {"dim": 16}},
        "tabular": tune.choice(["none", "simple"]),
        "fusion": {"name": tune.choice(["concat", "attention", "cnn"]),
                   "cnn": {"missing": tune.choice(["zero", "neutral"]), "modality_dropout": 0.2}},
        "missing_eval": [0.0, 0.25, 0.5, 1.0],
        "sampling": "class_weight",
        "head": "logreg",
    },
)
