"""Runs a sweep: cohort -> embeddings (cached) -> Ray Tune + Optuna trials -> report.

Run state lives in ``<home>/runs/<run>/`` (Tune's experiment folder plus our ``sweep.json``), so a
run killed at any point can be resumed with ``python -m sweeps resume RUN``: Tune restores its
experiment state and the Optuna searcher, finished trials are kept, unfinished ones are rerun.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path

from .spec import SweepSpec, load_space

log = logging.getLogger("sweeps")


class ResourceError(RuntimeError):
    """The sweep asks for resources the cluster does not have; raised before any trial starts."""


def home() -> Path:
    return Path(os.environ.get("SWEEPS_HOME", Path.cwd() / ".sweeps")).resolve()


def runs_root() -> Path:
    """Where runs (Tune's experiment folders) live: ``--storage`` / SWEEPS_RUNS, else ``<home>/runs``."""
    return Path(os.environ["SWEEPS_RUNS"]).resolve() if os.environ.get("SWEEPS_RUNS") else home() / "runs"


def reports_root() -> Path:
    return Path(os.environ.get("SWEEPS_REPORTS", Path.cwd() / "reports")).resolve()


def check_gpu_request(gpus_per_trial: float, available: float | None = None) -> None:
    """Fail at once if trials ask for GPUs that are not there (a trial waiting for a GPU that never
    comes would sit PENDING forever)."""
    if gpus_per_trial < 0:
        raise ResourceError(f"--gpus-per-trial must be >= 0, got {gpus_per_trial}")
    if gpus_per_trial > 1 and not float(gpus_per_trial).is_integer():
        raise ResourceError(f"--gpus-per-trial above 1 must be a whole number, got {gpus_per_trial}")
    if gpus_per_trial == 0:
        return
    if available is None:
        import torch

        available = float(torch.cuda.device_count())
    if available < gpus_per_trial:
        raise ResourceError(
            f"each trial asks for {gpus_per_trial} GPU but {'this machine' if available == 0 else 'the cluster'} "
            f"has {available:g} GPU(s). Run with --gpus-per-trial 0 (CPU), or join a cluster that has GPUs with --address."
        )


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "timm", "ray", "optuna", "scikit-learn", "lightgbm", "imbalanced-learn", "pydicom", "numpy", "pandas"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


SMOKE_PATIENTS = 40


def smoke(spec: SweepSpec) -> SweepSpec:
    """The same space, made to finish in seconds: a small synthetic cohort, or for a real dataset
    a small generated stand-in in its on-disk layout (unless ``--data`` points at the real one)."""
    from dataclasses import replace

    from trainables.data import standin_root

    opts = dict(spec.cohort_options)
    if spec.cohort == "synthetic":
        opts["n_patients"] = min(opts.get("n_patients", 300), SMOKE_PATIENTS)
    elif not opts.get("root"):
        opts["root"] = str(standin_root(spec.cohort))
    return replace(spec, cohort_options=opts, num_samples=2 * spec.repeats,
                   scheduler=None)  # a smoke trial stopped early would leave no record to check


def with_data(spec: SweepSpec, data: str | None, options: dict | None = None) -> SweepSpec:
    """``--data PATH``: the cohort's folder (or manifest file) on this machine; ``--option``: adapter options."""
    from dataclasses import replace

    opts = {**spec.cohort_options, **(options or {})}
    if data:
        opts["root"] = str(Path(data).resolve())
    return replace(spec, cohort_options=opts)


def load_cohort(spec: SweepSpec):
    from trainables.data import COHORTS
    from trainables.registry import build

    return build(COHORTS, {"name": spec.cohort, spec.cohort: spec.cohort_options}, "cohort")


def prepare(spec: SweepSpec, *, progress: bool = True):
    """Stage 1 and 2: load the cohort and make sure every embedding the space can ask for is cached."""
    import numpy as np

    from trainables.embed import embed_cohort
    from trainables.encoders import resolve_weights
    from trainables.trainable import DataHandle

    t0 = time.time()
    cohort = load_cohort(spec)
    names = spec.target_names(cohort)
    target = cohort.target(names[0])
    log.info("cohort %s: %d samples, %d patients, %d instances (%.1fs)", cohort.name, len(cohort.samples),
             cohort.samples["patient_id"].nunique(), len(cohort.instances), time.time() - t0)
    if cohort.quarantine:
        log.warning("cohort %s: %d files quarantined (unreadable); `python -m sweeps data inspect` lists them",
                    cohort.name, len(cohort.quarantine))
    if spec.embeddings() and not cohort.modalities:
        from .spec import SpecError

        raise SpecError(f"space {spec.name!r} names an image encoder but cohort {cohort.name!r} has no image modalities")
    fp = cohort.fingerprint()
    entries = {}
    finetune = spec.trainable == "finetune"
    if finetune:  # no embedding stage: each trial reads the slices and trains the encoder; entries: encoder -> weights
        if len(names) > 1:
            from .spec import SpecError

            raise SpecError(f"space {spec.name!r}: trainable='finetune' predicts one target, not {len(names)}")
        entries = {enc: resolve_weights(enc, spec.weights.get(enc)) or "" for enc, _ in spec.embeddings()}
    for enc, pre in [] if finetune else spec.embeddings():  # the whole cohort: one cache entry serves every target
        weights = resolve_weights(enc, spec.weights.get(enc))
        entry = embed_cohort(cohort, enc, pre, weights=weights, fingerprint=fp, progress=progress)
        entries[f"{enc}|{pre}"] = str(entry.path)
        known = {q["path"] for q in cohort.quarantine}  # slices the embed stage could not read join the record
        cohort.quarantine += [{"path": q["path"], "reason": q["reason"]} for q in getattr(entry, "quarantine", [])
                              if q["path"] not in known]
    full = cohort
    Y = None
    if len(names) > 1:  # several targets in one trial: keep samples labelled for at least one of them
        Y = np.stack([cohort.labels(t) for t in names], 1)
        cohort = cohort.subset(Y.max(1) >= 0)
        Y = Y[Y.max(1) >= 0]
        log.info("%d targets; labelled samples per target: %s", len(names),
                 ", ".join(f"{t}={int((Y[:, k] >= 0).sum())}" for k, t in enumerate(names)))
    else:
        cohort = cohort.labelled(target.name)
    if len(cohort.samples) < len(full.samples):
        log.info("%d of %d samples are labelled for %s (blanks are masked, not a class)", len(cohort.samples),
                 len(full.samples), ", ".join(names))
    s = cohort.samples
    tab = s[cohort.tabular].reset_index(drop=True) if cohort.tabular else None
    texts = s[cohort.text].fillna("").astype(str).reset_index(drop=True) if cohort.text else None
    if "text" in spec.space and texts is not None:  # the frozen transformer runs here once; trials read its cache
        from trainables.text_features import precompute

        precompute(spec.space["text"], texts)
    handle = DataHandle(
        sample_ids=s["sample_id"].tolist(), y=cohort.labels(target.name) if Y is None else Y[:, 0],
        groups=s["patient_id"].to_numpy(),
        class_names=target.classes, modalities=cohort.modalities if spec.embeddings() else [], tabular=tab,
        entries=entries, metric=spec.metric, mode=spec.mode, folds=spec.folds, seed=spec.seed, arms=spec.compare,
        texts=texts, Y=Y,
        targets=[(t, cohort.target(t).classes) for t in names] if Y is not None else None,
        instances=cohort.instances[["sample_id", "modality", "order", "path", "frame"]] if finetune else None,
    )
    return cohort, fp, handle


def cohort_summary(cohort, targets: list[str]) -> dict:
    """What the report says about the data: ``cohort`` is the sweep's (labelled) cohort."""
    s, i = cohort.samples, cohort.instances
    present = i.groupby("modality")["sample_id"].nunique().to_dict() if len(i) else {}
    t = cohort.target(targets[0])
    per_target = {name: {**{c: int((s[name] == c).sum()) for c in cohort.target(name).classes},
                         "masked": int(s[name].isna().sum())} for name in targets}
    return {
        "name": cohort.name, "description": cohort.description, "samples": len(s), "patients": int(s["patient_id"].nunique()),
        "instances": len(i), "modalities": {m: {"present": int(present.get(m, 0)), "missing": len(s) - int(present.get(m, 0))}
                                            for m in cohort.modalities},
        "target": t.name, "classes": list(t.classes),
        "label_counts": {c: int((s[t.name] == c).sum()) for c in t.classes},
        "tabular": cohort.tabular, "text": cohort.text, "targets": len(cohort.targets),
        "predicted_targets": per_target, "quarantined": len(cohort.quarantine), "flagged": dict(cohort.flagged),
    }


def start_ray(address: str | None, dashboard_host: str, num_cpus: int | None):
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local dashboard without a token; it listens on 127.0.0.1
    if ray.is_initialized():
        return None
    kwargs = dict(address=address, log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
    if not address:
        kwargs.update(include_dashboard=True, dashboard_host=dashboard_host, num_cpus=num_cpus)
    ctx = ray.init(**kwargs)
    url = getattr(ctx, "dashboard_url", None)
    if url:
        print(f"Ray dashboard: http://{url}", flush=True)
    return ctx


def run(space: str, *, num_samples: int | None = None, concurrency: int | None = None, cpus_per_trial: float = 1,
        gpus_per_trial: float = 0, address: str | None = None, name: str | None = None,
        dashboard_host: str = "127.0.0.1", progress: bool = True, write_report: bool = True,
        smoke_test: bool = False, data: str | None = None, cohort_options: dict | None = None) -> Path:
    spec = with_data(load_space(space), data, cohort_options)
    if smoke_test:
        spec = smoke(spec)
    if not address:
        check_gpu_request(gpus_per_trial)  # before anything slow
    run_name = name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = runs_root() / run_name
    if run_dir.exists():
        raise FileExistsError(f"run {run_name!r} exists at {run_dir}; use `python -m sweeps resume {run_name}`")
    cohort, fp, handle = prepare(spec, progress=progress)
    options = {"num_samples": num_samples or spec.num_samples, "concurrency": concurrency, "cpus_per_trial": cpus_per_trial,
               "gpus_per_trial": gpus_per_trial, "address": address, "smoke": smoke_test, "data": spec.cohort_options.get("root"),
               "cohort_options": cohort_options or {},
               "space_arg": str(Path(space).resolve()) if space.endswith(".py") else space}
    start_ray(address, dashboard_host, None)
    _tune(spec, handle, run_dir, options, cohort_summary(cohort, spec.target_names(cohort)), fp, restore=False)
    return _finish(run_dir, write_report)


def resume(run_name: str, *, address: str | None = None, dashboard_host: str = "127.0.0.1", progress: bool = True,
           write_report: bool = True) -> Path:
    run_dir = runs_root() / run_name
    meta_path = run_dir / "sweep.json"
    if not meta_path.exists():
        known = sorted(p.name for p in runs_root().glob("*") if (p / "sweep.json").exists()) if runs_root().exists() else []
        raise FileNotFoundError(f"no run {run_name!r} under {runs_root()}; runs: {', '.join(known) or 'none'}")
    meta = json.loads(meta_path.read_text())
    options = meta["options"]
    spec = with_data(load_space(options.get("space_arg", meta["space"])), options.get("data"), options.get("cohort_options"))
    if options.get("smoke"):
        spec = smoke(spec)
    if address:
        options["address"] = address
    if not options.get("address"):
        check_gpu_request(options["gpus_per_trial"])
    cohort, fp, handle = prepare(spec, progress=progress)
    if fp != meta["fingerprint"]:
        raise RuntimeError(f"the cohort changed since run {run_name!r} started (fingerprint {fp} != {meta['fingerprint']}); "
                           "start a new run instead")
    start_ray(options.get("address"), dashboard_host, None)
    _tune(spec, handle, run_dir, options, meta["cohort"], fp, restore=True)
    return _finish(run_dir, write_report)


def _tune(spec: SweepSpec, handle, run_dir: Path, options: dict, summary: dict, fp: str, restore: bool) -> None:
    import ray
    from ray import tune

    from trainables.finetune import finetune_trial, make_scheduler
    from trainables.trainable import sweep_trial

    handle.run_dir = str(run_dir)
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
    check_gpu_request(options["gpus_per_trial"], cluster_gpus)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    concurrency = options["concurrency"] or max(1, int(cpus // options["cpus_per_trial"]))
    if options["gpus_per_trial"]:
        concurrency = min(concurrency, int(cluster_gpus / options["gpus_per_trial"] + 1e-9))
    trainable = tune.with_resources(
        tune.with_parameters(finetune_trial if spec.trainable == "finetune" else sweep_trial, handle=handle),
        {"cpu": options["cpus_per_trial"], "gpu": options["gpus_per_trial"]},
    )
    if restore:
        log.info("resuming %s: finished trials are kept, unfinished ones rerun", run_dir.name)
        tuner = tune.Tuner.restore(str(run_dir), trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
    else:
        run_dir.mkdir(parents=True)
        meta = {"space": spec.name, "options": options, "fingerprint": fp, "cohort": summary, "metric": spec.metric,
                "mode": spec.mode, "seed": spec.seed, "folds": spec.folds, "compare": spec.compare,
                "space_repr": _space_repr(spec.space), "versions": versions(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "description": spec.description, "target": summary["target"],
                "repeats": spec.repeats, "trainable": spec.trainable, "scheduler": spec.scheduler, "reference": str(Path(spec.reference).resolve()) if spec.reference else None}
        (run_dir / "sweep.json").write_text(json.dumps(meta, indent=1))
        import numpy as np

        extra = {}
        if handle.Y is not None:  # several targets: every target's labels (-1 masked) and classes for the report
            extra = {"Y": handle.Y, "target_names": np.array([t for t, _ in handle.targets]),
                     **{f"classes__{t}": np.array(c) for t, c in handle.targets}}
        np.savez(run_dir / "targets.npz", y=handle.y, groups=handle.groups.astype(str), classes=np.array(handle.class_names),
                 **extra)
        from .search import build as build_searcher  # deterministic, no repeats, study in optuna.journal
        from .search import uses_grid

        if uses_grid(spec.space):  # a full factorial: Tune's own grid runs every combination, in a fixed order
            searcher, param_space, num_samples = None, spec.space, options["num_samples"]
            if spec.repeats > 1:  # each combination `repeats` times with __trial_index__ 0.. (the seed offset)
                param_space = {**spec.space, "__trial_index__": tune.grid_search(list(range(spec.repeats)))}
                num_samples = max(1, num_samples // spec.repeats)
        else:
            searcher = build_searcher(spec, run_dir, options["num_samples"])
            searcher.start()
            param_space, num_samples = {}, searcher.total_trials  # the searcher hands out whole configs
            if concurrency > spec.proposal_window and not searcher.exhaustive:
                log.info("concurrency %d > the space's proposal_window %d: at most %d trials run at once",
                         concurrency, spec.proposal_window, spec.proposal_window)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=num_samples,
                                        scheduler=make_scheduler(spec),
                                        max_concurrent_trials=concurrency, reuse_actors=True,
                                        trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(name=run_dir.name, storage_path=str(run_dir.parent), verbose=1,
                                      progress_reporter=_reporter(spec),
                                      failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
        )
    log.info("sweep %s: %d trials, %d at a time, %s CPU + %s GPU each", run_dir.name, options["num_samples"], concurrency,
             options["cpus_per_trial"], options["gpus_per_trial"])
    tuner.fit()  # a trial that raises is recorded (error.txt) and the sweep goes on


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _reporter(spec: SweepSpec):
    from ray.tune import CLIReporter

    params = [k for k in ("head", "sampling", "pca_dim", "tabular", "encoder") if k in spec.space]
    return CLIReporter(metric_columns=[spec.metric, "auc_macro", "best_arm"], parameter_columns=params,
                       max_report_frequency=30, sort_by_metric=True, metric=spec.metric, mode=spec.mode)


def _finish(run_dir: Path, write_report: bool) -> Path:
    if not write_report:
        return run_dir
    from .report import write_report as _write

    out = _write(run_dir, reports_root() / run_dir.name)
    print(f"Report: {out}", flush=True)
    return out


def _space_repr(space) -> dict:
    def conv(v):
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        from ray.tune.search.sample import Categorical, Domain

        if isinstance(v, Categorical):
            return {"choice": list(v.categories)}
        if isinstance(v, Domain):
            return {"domain": repr(v)}
        return v

    return conv(space)
