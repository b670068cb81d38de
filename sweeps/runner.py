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
from typing import Callable

from trainables.atomic import write_bytes, write_text
from trainables.paths import sweeps_home

from .spec import SweepSpec, load_space

log = logging.getLogger("sweeps")


class ResourceError(RuntimeError):
    """The sweep asks for resources the cluster does not have; raised before any trial starts."""


def home() -> Path:
    return sweeps_home()


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


def space_file(space: str) -> Path | None:
    """The file a space argument names: the ``.py`` path, or the packaged ``search_spaces/NAME.py``."""
    if space.endswith(".py"):
        return Path(space).resolve()
    import importlib.util

    try:
        found = importlib.util.find_spec(f"search_spaces.{space}")
    except (ImportError, ValueError):
        return None
    return Path(found.origin) if found and found.origin else None


def space_sha256(space: str) -> str | None:
    """SHA-256 of the space file's bytes (None when it cannot be found)."""
    import hashlib

    f = space_file(space)
    return hashlib.sha256(f.read_bytes()).hexdigest() if f and f.exists() else None


def load_cohort(spec: SweepSpec):
    from trainables.data import COHORTS
    from trainables.registry import build

    return build(COHORTS, {"name": spec.cohort, spec.cohort: spec.cohort_options}, "cohort")


def prepare(spec: SweepSpec, *, progress: bool = True, start: Callable[[], object] | None = None):
    """Stage 1 and 2: load the cohort and make sure every embedding the space can ask for is cached."""
    import numpy as np

    from trainables.embed import embed_cohort
    from trainables.encoders import resolve_weights, weights_for
    from trainables.handle import DataHandle

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
        entries = {enc: resolve_weights(enc, weights_for(spec.weights, enc)) or "" for enc, _ in spec.embeddings()}
    if start is not None and spec.embeddings() and not finetune:
        start()  # Ray up before the embedding stage, which runs on Ray Data where that pays (trainables.embed_ray)
    engine = os.environ.get("SWEEPS_EMBED_ENGINE", "auto")  # auto | ray | local
    for enc, pre in [] if finetune else spec.embeddings():  # the whole cohort: one cache entry serves every target
        weights = resolve_weights(enc, weights_for(spec.weights, enc))
        entry = embed_cohort(cohort, enc, pre, weights=weights, fingerprint=fp, progress=progress, engine=engine)
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
    moot = moot_pooling_compare(spec, cohort)
    if moot:  # one instance per sample: every pooling returns that instance; run one arm, the report says why
        log.info("%s", moot["why"])
        handle.arms = {"pooling": [moot["ran"]]}
    return cohort, fp, handle


def moot_pooling_compare(spec: SweepSpec, cohort) -> dict | None:
    """``{"pooling": [...], "ran": arm, "why": text}`` when the space compares poolings that cannot differ on
    this cohort: every sample has at most one instance in every modality, so mean, attention and any other
    pooling of a bag of one return that one embedding. None when the comparison is real (or there is none)."""
    arms = list(spec.compare.get("pooling") or [])
    if len(arms) < 2 or not spec.embeddings() or spec.trainable != "frozen":
        return None
    i = cohort.instances
    most = int(i.groupby(["sample_id", "modality"]).size().max()) if len(i) else 0
    if most > 1:
        return None
    ran = "mean" if "mean" in arms else arms[0]
    return {"pooling": arms, "ran": ran,
            "why": f"every sample has at most one image instance per modality, so the poolings compared "
                   f"({', '.join(arms)}) all return that one embedding and cannot differ: only {ran} was run"}


def test_part(spec: SweepSpec, handle, test_data: str | None = None, progress: bool = True):
    """``(development handle, test handle or None)``: the space's ``test_fraction`` of the patients set
    aside (``sweeps.heldout.split_test``), or a separate test cohort at ``test_data`` (the same adapter
    and options, prepared like the development cohort; the whole of ``handle`` is then development)."""
    from .heldout import split_test

    if not test_data:
        return split_test(spec, handle)
    from dataclasses import replace

    from .spec import SpecError

    if spec.test_fraction:
        raise SpecError(f"space {spec.name!r}: give a test_fraction or a separate test cohort (--test-data), not both")
    _, _, test = prepare(replace(with_data(spec, test_data), test_fraction=0.0), progress=progress)
    if tuple(test.class_names) != tuple(handle.class_names) or test.modalities != handle.modalities:
        raise SpecError(f"test cohort {test_data}: classes {list(test.class_names)} / modalities {test.modalities} differ "
                        f"from the development cohort's {list(handle.class_names)} / {handle.modalities}")
    log.info("separate test cohort %s: %d samples; the trials never see it", test_data, len(test.y))
    return handle, test


def share(spec: SweepSpec, handle, start: Callable[[], object]) -> None:
    """Put the development samples' bags into Ray's object store once (``trainables.trainable.share_bags``):
    trials on any node read them zero-copy, without the driver's files. After the test part is split off,
    so the shared bags are exactly the trials' samples."""
    if spec.trainable == "finetune" or not handle.entries:
        return
    from trainables.trainable import share_bags

    start()
    share_bags(handle)


def cohort_summary(cohort, targets: list[str]) -> dict:
    """What the report says about the data: ``cohort`` is the sweep's (labelled) cohort."""
    from .datainfo import no_readable_image

    s, i = cohort.samples, cohort.instances
    later = {q["path"] for q in cohort.quarantine if q.get("modality") is None}  # set aside by the embed stage
    readable = i[~i["path"].isin(later)] if len(i) else i  # a sample whose every instance was set aside lacks it
    present = readable.groupby("modality")["sample_id"].nunique().to_dict() if len(readable) else {}
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
        "max_instances": int(i.groupby(["sample_id", "modality"]).size().max()) if len(i) else 0,
        "no_readable_image": no_readable_image(cohort, [q for q in cohort.quarantine if q.get("modality") is None]),
        "duplicates": {"groups": len(cohort.duplicates), "samples": sum(len(d["samples"]) for d in cohort.duplicates),
                       "merged": bool(cohort.duplicates_merged)},
    }


def start_ray(address: str | None, dashboard_host: str, num_cpus: int | None):
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local dashboard without a token; it listens on 127.0.0.1
    if ray.is_initialized():
        return None
    # no --address: a Ray of our own ("local"), never a cluster some other process started on this machine
    kwargs = dict(address=address or "local", log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
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
        smoke_test: bool = False, data: str | None = None, cohort_options: dict | None = None,
        track: list[str] | None = None, argv: list[str] | None = None,
        test_fraction: float | None = None, test_data: str | None = None) -> Path:
    """``argv``: the command as typed (recorded in sweep.json for the report's reproduction recipe)."""
    from .track import check as check_tracking

    check_tracking(track)  # --track values and their packages, before anything slow
    spec = with_data(load_space(space), data, cohort_options)
    if test_fraction is not None:
        from dataclasses import replace

        spec = replace(spec, test_fraction=test_fraction)
        spec.validate()
    if smoke_test:
        spec = smoke(spec)
    if not address:
        check_gpu_request(gpus_per_trial)  # before anything slow
    run_name = name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = runs_root() / run_name
    if run_dir.exists():
        raise FileExistsError(f"run {run_name!r} exists at {run_dir}; use `python -m sweeps resume {run_name}`")
    cohort, fp, handle = prepare(spec, progress=progress, start=lambda: start_ray(address, dashboard_host, None))
    from .heldout import finalize_run

    handle, test = test_part(spec, handle, test_data, progress)  # the trials see the development part only
    share(spec, handle, lambda: start_ray(address, dashboard_host, None))
    options = {"num_samples": num_samples or spec.num_samples, "concurrency": concurrency, "cpus_per_trial": cpus_per_trial,
               "gpus_per_trial": gpus_per_trial, "address": address, "smoke": smoke_test, "data": spec.cohort_options.get("root"),
               "cohort_options": cohort_options or {}, "track": list(track or []),
               "space_arg": str(Path(space).resolve()) if space.endswith(".py") else space,
               "argv": list(argv) if argv else None, "space_sha256": space_sha256(space),
               "test_fraction": spec.test_fraction, "test_data": str(Path(test_data).resolve()) if test_data else None}
    start_ray(address, dashboard_host, None)
    _tune(spec, handle, run_dir, options, cohort_summary(cohort, spec.target_names(cohort)), fp, restore=False)
    if test is not None:
        finalize_run(run_dir, spec, handle, test)
    return _finish(run_dir, write_report)


def resume(run_name: str, *, address: str | None = None, dashboard_host: str = "127.0.0.1", progress: bool = True,
           write_report: bool = True, track: list[str] | None = None) -> Path:
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
    from dataclasses import replace

    spec = replace(spec, test_fraction=options.get("test_fraction") or 0.0)  # as started (none before test parts)
    if address:
        options["address"] = address
    if track and list(track) != options.get("track", []):  # Tune restores the callbacks the run started with
        from .track import TrackError

        raise TrackError(f"run {run_name!r} tracks with {options.get('track') or 'nothing'} (set when it started); "
                         f"a resumed run keeps its trackers: resume without --track, or rerun it with other ones")
    if not options.get("address"):
        check_gpu_request(options["gpus_per_trial"])
    cohort, fp, handle = prepare(spec, progress=progress,
                                 start=lambda: start_ray(options.get("address"), dashboard_host, None))
    if fp != meta["fingerprint"]:
        raise RuntimeError(f"the cohort changed since run {run_name!r} started (fingerprint {fp} != {meta['fingerprint']}); "
                           "start a new run instead")
    meta.setdefault("resumed", []).append(time.strftime("%Y-%m-%d %H:%M:%S"))  # the report's recipe says so
    tmp = meta_path.with_name(".sweep.json.tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_path)
    from .heldout import finalize_run

    handle, test = test_part(spec, handle, options.get("test_data"), progress)  # the same split as at the start
    share(spec, handle, lambda: start_ray(options.get("address"), dashboard_host, None))
    start_ray(options.get("address"), dashboard_host, None)
    _tune(spec, handle, run_dir, options, meta["cohort"], fp, restore=True)
    if test is not None and not (run_dir / "model" / "test.json").exists():
        finalize_run(run_dir, spec, handle, test)
    return _finish(run_dir, write_report)


def _encoders(spec: SweepSpec) -> list[dict]:
    """What each image encoder ran with (architecture, weights and their hash, input configuration,
    licence), for sweep.json and the report (trainables.encoders.format_encoder_lines)."""
    from trainables.encoders import describe_encoders

    return describe_encoders([enc for enc, _ in spec.embeddings()], spec.weights)


def _tune(spec: SweepSpec, handle, run_dir: Path, options: dict, summary: dict, fp: str, restore: bool) -> None:
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

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
        skipped = None if handle.arms == spec.compare else {**spec.compare, "ran": next(iter(handle.arms.values()))[0],
                                                           "why": "at most one image instance per sample and modality"}
        meta = {"space": spec.name, "options": options, "concurrency": concurrency, "fingerprint": fp, "cohort": summary, "metric": spec.metric,
                "mode": spec.mode, "seed": spec.seed, "folds": spec.folds,
                "compare": spec.compare if skipped is None else {}, "compare_skipped": skipped,
                "space_repr": _space_repr(spec.space), "versions": versions(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "description": spec.description, "target": summary["target"],
                "encoders": _encoders(spec), "repeats": spec.repeats, "trainable": spec.trainable, "scheduler": spec.scheduler, "reference": str(Path(spec.reference).resolve()) if spec.reference else None,
                "spec": {"cohort": spec.cohort, "cohort_options": spec.cohort_options, "target": spec.target,
                         "weights": spec.weights, "trainable": spec.trainable,
                         "reference": str(Path(spec.reference).resolve()) if spec.reference else None}}
        write_text(run_dir / "sweep.json", json.dumps(meta, indent=1, default=str))
        import io

        import numpy as np

        extra = {}
        if handle.Y is not None:  # several targets: every target's labels (-1 masked) and classes for the report
            extra = {"Y": handle.Y, "target_names": np.array([t for t, _ in handle.targets]),
                     **{f"classes__{t}": np.array(c) for t, c in handle.targets}}
        buf = io.BytesIO()
        np.savez(buf, y=handle.y, groups=handle.groups.astype(str), classes=np.array(handle.class_names),
                 sample_ids=np.array([str(x) for x in handle.sample_ids]), **extra)
        write_bytes(run_dir / "targets.npz", buf.getvalue())
        if _has_domain(spec.space):
            searcher = OptunaSearch(metric=spec.metric, mode=spec.mode,
                                    sampler=optuna.samplers.TPESampler(seed=spec.seed, n_startup_trials=8))
        else:  # nothing to search: Optuna refuses an empty space, Tune's basic generator repeats the config
            log.info("space %s has no tune domains: running the fixed configuration", spec.name)
            searcher = None
        param_space, num_samples = spec.space, options["num_samples"]
        if spec.repeats > 1:  # each configuration runs `repeats` times with __trial_index__ 0.. (the seed offset)
            if searcher is not None:
                from ray.tune.search import Repeater

                searcher = Repeater(searcher, repeat=spec.repeats, set_index=True)
            else:
                param_space = {**spec.space, "__trial_index__": tune.grid_search(list(range(spec.repeats)))}
                num_samples = max(1, num_samples // spec.repeats)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=num_samples,
                                        scheduler=make_scheduler(spec),
                                        max_concurrent_trials=concurrency, reuse_actors=True,
                                        trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(name=run_dir.name, storage_path=str(run_dir.parent), verbose=1,
                                      progress_reporter=_reporter(spec), callbacks=_tracking(options, run_dir),
                                      failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
        )
    log.info("sweep %s: %d trials, %d at a time, %s CPU + %s GPU each", run_dir.name, options["num_samples"], concurrency,
             options["cpus_per_trial"], options["gpus_per_trial"])
    tuner.fit()  # a trial that raises is recorded (error.txt) and the sweep goes on


def _has_domain(space) -> bool:
    from ray.tune.search.sample import Domain

    if isinstance(space, dict):
        return any(_has_domain(v) for v in space.values())
    return isinstance(space, Domain)


def _tracking(options: dict, run_dir: Path) -> list:
    from .track import callbacks

    return callbacks(options.get("track"), run_dir)


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _reporter(spec: SweepSpec):
    from ray.tune import CLIReporter

    from .report.run import swept_paths

    params = [f"{k}/name" if isinstance(spec.space[k], dict) and "name" in spec.space[k] else k
              for k in ("head", "sampling", "pca_dim", "tabular", "encoder") if k in spec.space]
    params += [p for p in ("/".join(path) for path in swept_paths(_space_repr(spec.space)))
               if p not in params]  # every swept value, nested ones as a/b
    return CLIReporter(metric_columns=list(dict.fromkeys([spec.metric, "auc_macro", "best_arm"])), parameter_columns=params,
                       max_report_frequency=30, sort_by_metric=True, metric=spec.metric, mode=spec.mode)


def _finish(run_dir: Path, write_report: bool) -> Path:
    if not write_report:
        return run_dir
    from .report import write_report as _write

    out = _write(run_dir, reports_root() / run_dir.name)
    print(f"Report: {out}", flush=True)
    from .track import log_report

    for line in log_report(json.loads((run_dir / "sweep.json").read_text())["options"].get("track"), run_dir, out):
        print(line, flush=True)
    return out


def _space_repr(space) -> dict:
    def conv(v):
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        from ray.tune.search.sample import Categorical, Domain, Float, Integer

        if isinstance(v, Categorical):
            return {"choice": list(v.categories)}
        if isinstance(v, Domain):  # numbers: their bounds and scale too (the report's importance section reads them)
            sampler = v.get_sampler()
            log = "LogUniform" in type(getattr(sampler, "sampler", sampler)).__name__
            return {"domain": repr(v), "type": "int" if isinstance(v, Integer) else "float" if isinstance(v, Float) else None,
                    "low": getattr(v, "lower", None), "high": getattr(v, "upper", None), "log": log}
        return v

    return conv(space)
