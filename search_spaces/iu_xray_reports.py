"""Seeds 002/003, text half: IU-Xray (OpenI) report text, normal vs abnormal, on the reports as
distributed (NLMCXR_reports.tgz), with a BERT-family encoder (the offline MiniLM, or BioBERT from a
local folder), TF-IDF, or the token-sequence baseline of seed 003.

Done right: the label comes from the MeSH tags, which are derived from the findings and impression;
so the text read here is the indication only (the adapter's ``sections``; findings/impression are
flagged as label-carrying and must be asked for explicitly). Learned text encoders are fitted on
training folds only. Runs on the real reports with ``--data ../shared/data/iu-xray`` (no images there:
a text-only cohort), or ``--smoke`` on a generated stand-in.
"""

from ray import tune

from sweeps.spec import SweepSpec

SPEC = SweepSpec(
    name="iu_xray_reports",
    description="IU-Xray indication text: TF-IDF vs token baseline vs frozen MiniLM, normal vs abnormal",
    cohort="iu_xray",
    cohort_options={"sections": ["indication"]},
    metric="auc_macro",
    mode="max",
    num_samples=8,
    space={
        "text": {
            "name": tune.choice(["tfidf", "tokens", "transformer"]),
            "steps": ["clean"],
            "tfidf": {"dim": tune.choice([32, 64])},
            "tokens": {"max_len": 100, "epochs": 10},
            "transformer": {"path": "minilm", "pooling": "mean"},  # or a local BioBERT folder
        },
        "sampling": tune.choice(["none", "class_weight"]),
        "head": {"name": tune.choice(["logreg", "lightgbm"])},
    },
)
