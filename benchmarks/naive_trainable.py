"""The naive baseline trainable for ``bench_sweep.py``: what a seed notebook does per experiment.

Inside EVERY trial it loads the synthetic cohort from disk (parsing the series layout and reading
every DICOM header to order the slices), runs the image encoder over every instance, builds the
bags, and only then runs the same ``evaluate`` / ``flatten`` as the platform's trainable
(``trainables.trainable.sweep_trial``). Nothing is cached between trials.

Ray workers import this module by name, so the benchmark puts /work/main and /work/main/benchmarks
on PYTHONPATH before ``ray.init``. Use it as::

    tune.with_parameters(naive_trial, cohort_root=..., n_patients=80, arms={"pooling": ["mean", "attention"]},
                         folds=5, seed=0, metric="f1_macro", mode="max")
"""

from __future__ import annotations


def naive_trial(config: dict, cohort_root: str, n_patients: int, arms: dict, folds: int, seed: int, metric: str,
                mode: str) -> None:
    from ray import tune

    from trainables.data import synthetic
    from trainables.embed import run_encoder
    from trainables.pipeline import TrialData, build_bags, evaluate, flatten
    from trainables.threads import limit_threads

    limit_threads()  # as sweep_trial does: torch, BLAS and OpenMP pools to the trial's CPUs

    # 1. cohort, from disk, every trial (the same call the platform's cohort adapter makes)
    cohort = synthetic.load(cohort_root, n_patients=n_patients)  # already generated there: read only
    # 2. the encoder over every instance, every trial
    emb = run_encoder(cohort.instances, config["encoder"], config.get("preprocessing", "grayscale_norm"),
                      input_size=64, progress=False)
    # 3. bags, then exactly what sweep_trial runs
    sample_ids = cohort.samples["sample_id"].tolist()
    bags = build_bags(emb, cohort.instances, sample_ids, cohort.modalities)
    tab = cohort.samples[cohort.tabular].reset_index(drop=True) if cohort.tabular else None
    data = TrialData(cohort.labels(), cohort.samples["patient_id"].to_numpy(), cohort.targets[0].classes,
                     cohort.modalities, bags, tab)
    results = evaluate(config, data, arms=arms, n_folds=folds, seed=seed)
    tune.report(flatten(results, metric, mode))
