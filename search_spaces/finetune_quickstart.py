"""Fine-tuning quickstart: resnet18 trained end to end inside each trial (32 px, 8 slices per series, CPU-sized)
on a 40-patient synthetic MRI cohort, with mean or attention pooling; ASHA stops poor trials on their
per-epoch reports."""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="finetune_quickstart",
    description="resnet18 fine-tuned end to end (32 px, 8 slices per series), mean vs attention pooling, ASHA, "
                "40-patient synthetic MRI cohort",
    cohort="synthetic",
    cohort_options={"n_patients": 40},
    metric="f1_macro",
    mode="max",
    num_samples=4,
    trainable="finetune",
    scheduler="asha",
    space={
        "encoder": "resnet18",
        "preprocessing": "grayscale_norm",
        "input_size": 32,
        "max_slices": 8,
        "pooling": {"name": tune.choice(["mean", "attention"]), "attention": {"hidden_dim": 32}},
        "train": {"epochs": tune.choice([2, 3]), "lr": tune.loguniform(3e-4, 3e-3), "batch_size": 8,
                  "optimizer": "adamw", "class_weighted": True},
    },
)
