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
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from trainables.atomic import write_bytes, write_text
from trainables.paths import sweeps_home

from .spec import SweepSpec, load_space

log = logging.getLogger("sweeps")


class ResourceError(RuntimeError):
    """The sweep asks for resources the cluster does not have; raised before any trial starts."""


class SweepInterrupted(Exception):
    """Ctrl-C (SIGINT) stopped the trials; raised after the partial report is written (exit 130)."""

    def __init__(self, run_name: str, report: Path | None):
        where = f"the report of the trials finished so far is at {report}; " if report else ""
        super().__init__(f"run {run_name!r} was interrupted: {where}`python -m sweeps resume {run_name}` continues it")


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


def local_cpus() -> int:
    """CPUs this process may use (its affinity mask, which a container or taskset narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail in seconds if a cluster ``--address`` cannot be reached (``ray.init`` would retry for minutes).

    ``auto`` (a cluster started on this machine) and ``local`` are left to Ray; ``host:port`` and
    ``ray://host:port`` get a TCP connect to that port within ``timeout_s``."""
    import socket

    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ResourceError(f"--address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ResourceError(f"--address {address!r}: cannot reach {host}:{port} within {timeout_s:g}s ({exc}); "
                            "is the cluster up (`ray status` on its head) and the port open to this machine?") from None


def check_run_options(*, num_samples: int | None, concurrency: int | None, cpus_per_trial: float,
                      gpus_per_trial: float, address: str | None = None, available_cpus: float | None = None,
                      available_gpus: float | None = None) -> None:
    """Fail at once (``ResourceError``, exit 2) on run options that would make the sweep fail late,
    run without end, or leave its trials PENDING forever; called by ``run`` and ``resume`` before the
    cohort loads. ``num_samples`` None means the space's default. A local run compares the per-trial
    request with this machine's CPUs and GPUs (``available_*`` override them, for tests); with
    ``address`` the cluster is checked for reachability here and for resources once joined
    (``check_cluster_resources``)."""
    import math

    if num_samples is not None and (not float(num_samples).is_integer() or num_samples < 1):
        raise ResourceError(f"--trials must be a whole number >= 1, got {num_samples}")
    if concurrency is not None and (not float(concurrency).is_integer() or concurrency < 1):
        raise ResourceError(f"--concurrency must be a whole number >= 1, got {concurrency}")
    if not math.isfinite(cpus_per_trial) or cpus_per_trial <= 0:
        raise ResourceError(f"--cpus-per-trial must be > 0, got {cpus_per_trial:g} (a trial needs some CPU; "
                            "fractions such as 0.5 are allowed)")
    if cpus_per_trial > 1 and not float(cpus_per_trial).is_integer():
        raise ResourceError(f"--cpus-per-trial above 1 must be a whole number, got {cpus_per_trial:g}")
    if not math.isfinite(gpus_per_trial):
        raise ResourceError(f"--gpus-per-trial must be a number >= 0, got {gpus_per_trial}")
    if address:
        check_gpu_request(gpus_per_trial, available=float("inf"))  # sign and shape only; the cluster's GPUs once joined
        check_address(address)
        return
    cpus = float(local_cpus() if available_cpus is None else available_cpus)
    if cpus_per_trial > cpus:
        raise ResourceError(f"each trial asks for {cpus_per_trial:g} CPU but this machine has {cpus:g}: no trial could "
                            f"ever start (it would wait PENDING forever). Use --cpus-per-trial {int(cpus)} or less, "
                            "or join a cluster with larger nodes with --address.")
    check_gpu_request(gpus_per_trial, available_gpus)


def check_cluster_resources(cpus_per_trial: float, gpus_per_trial: float, nodes: list[dict]) -> None:
    """The per-trial request against the largest alive node of a joined cluster (``ray.nodes()``):
    a trial runs on one node, so a request no node can hold would wait forever."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    most_cpu = max((float(r.get("CPU", 0)) for r in alive), default=0.0)
    most_gpu = max((float(r.get("GPU", 0)) for r in alive), default=0.0)
    if cpus_per_trial > most_cpu:
        raise ResourceError(f"each trial asks for {cpus_per_trial:g} CPU but the largest node of the cluster has "
                            f"{most_cpu:g}: no trial could ever start. Use --cpus-per-trial {int(most_cpu) or 1} or less.")
    if gpus_per_trial > most_gpu:
        raise ResourceError(f"each trial asks for {gpus_per_trial:g} GPU but the largest node of the cluster has "
                            f"{most_gpu:g}: no trial could ever start. Use --gpus-per-trial {most_gpu:g} or less.")


def clean_debris() -> list[Path]:
    """Remove the hidden staging folders a killed run left behind (``trainables.staging``): report
    staging (``reports/<run>/.report-*``), half-generated cohorts and stand-ins (``data/**/.<name>.*``)
    and embedding cache temp folders (``cache/.tmp-*``). A folder whose owner process still runs (a
    concurrent sweep's) is kept. Returns the folders removed."""
    from trainables import staging

    gone = staging.sweep(home() / "cache", ".tmp-*")
    for parent in [home() / "data", *(p for p in (home() / "data").glob("*") if p.is_dir() and not p.name.startswith("."))]:
        gone += staging.sweep(parent, ".*")
    if reports_root().is_dir():
        for d in reports_root().iterdir():
            if d.is_dir():
                gone += staging.sweep(d, ".report-*")
    return gone


def no_run_message(run_name: str) -> str:
    """What ``run`` and ``resume`` both say about a run name, when there is no resumable run of it."""
    run_dir = runs_root() / run_name
    if run_dir.exists() and not (run_dir / "sweep.json").exists():
        return (f"{run_dir} exists but holds no sweep.json: it is not a run that can be resumed (one killed before "
                f"it started, or not a sweep's folder). Remove it, or start the run under another --name.")
    known = sorted(p.name for p in runs_root().glob("*") if (p / "sweep.json").exists()) if runs_root().exists() else []
    return f"no run {run_name!r} under {runs_root()}; runs: {', '.join(known) or 'none'}"


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
SMOKE_FINETUNE = {"epochs": 1, "max_slices": 4}  # a fine-tuning smoke trial: 1 epoch per fold, <= 4 slices per series


def smoke_finetune_space(space: dict) -> dict:
    """A fine-tuning space at its smallest (``SMOKE_FINETUNE``): ``train.epochs`` 1 and ``max_slices``
    at most 4 (0, every slice, becomes 4). The real training path still runs every fold with its
    per-epoch report; a ``grid_search`` value is kept (it sets how many trials run), as is a
    ``max_slices`` already below 4."""
    from trainables.finetune import DEFAULT_MAX_SLICES

    def grid(v) -> bool:
        return isinstance(v, dict) and "grid_search" in v

    out = dict(space)
    train = out.get("train", {})
    if isinstance(train, dict) and not grid(train.get("epochs")):
        out["train"] = {**train, "epochs": SMOKE_FINETUNE["epochs"]}
    slices = out.get("max_slices", DEFAULT_MAX_SLICES)
    if not grid(slices) and not (isinstance(slices, int) and 0 < slices <= SMOKE_FINETUNE["max_slices"]):
        out["max_slices"] = SMOKE_FINETUNE["max_slices"]
    return out


def smoke(spec: SweepSpec) -> SweepSpec:
    """The same space, made to finish in seconds: a small synthetic cohort, or for a real dataset
    a small generated stand-in in its on-disk layout (unless ``--data`` points at the real one); a
    fine-tuning space also trains less (:func:`smoke_finetune_space`)."""
    from dataclasses import replace

    from trainables.data import adapter, standin_root
    from trainables.data.adapter import resolve_options

    opts = dict(spec.cohort_options)
    resolve_options(spec.cohort, adapter(spec.cohort).OPTIONS, {k: v for k, v in opts.items() if k != "root"})
    if spec.cohort == "synthetic":
        opts["n_patients"] = min(opts.get("n_patients", 300), SMOKE_PATIENTS)
    elif not opts.get("root"):
        from trainables.data import STANDINS

        if spec.cohort not in STANDINS:
            from .spec import SpecError

            raise SpecError(f"space {spec.name!r}: cohort {spec.cohort!r} has no generated stand-in (it describes "
                            f"your own data): give --data PATH with --smoke (the manifest file), e.g. "
                            f"`python -m sweeps run SPACE --smoke --data my_export.csv`")
        opts["root"] = str(standin_root(spec.cohort))
    space = smoke_finetune_space(spec.space) if spec.trainable == "finetune" else spec.space
    return replace(spec, cohort_options=opts, num_samples=2 * spec.repeats, space=space,
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


def prepare(spec: SweepSpec, *, progress: bool = True, start: Callable[[], object] | None = None,
            resuming: tuple[str, dict] | None = None):
    """Stage 1 and 2: load the cohort and make sure every embedding the space can ask for is cached.

    Returns ``(cohort, fingerprints, handle)``: the sweep's labelled cohort, ``Cohort.fingerprints`` of
    the loaded cohort (``["images"]`` is the embedding cache's key part) and the trials' DataHandle.
    ``start``: starts Ray, called before the embedding stage (which may run on Ray Data).
    ``resuming``: ``(run name, its sweep.json)``; a changed cohort is refused before anything is embedded."""
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
    from .datainfo import cohort_problems

    problems = cohort_problems(cohort, names, needs_images=bool(spec.embeddings()))
    if problems:  # a doomed cohort stops here, before anything is embedded or any trial runs
        from trainables.data.cohort import CohortError

        raise CohortError(f"cohort {cohort.name!r} cannot be swept: " + "; ".join(problems))
    if spec.embeddings() and not cohort.modalities:
        from .spec import SpecError

        raise SpecError(f"space {spec.name!r} names an image encoder but cohort {cohort.name!r} has no image modalities")
    fps = cohort.fingerprints()
    fp = fps["images"]
    if resuming:
        check_same_cohort(*resuming, fps)
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
    return cohort, fps, handle


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


JOB_ADDRESS_ENV = "SWEEPS_JOB_RAY_ADDRESS"  # set by `--dashboard` (sweeps.jobs): the cluster its job was submitted to


def in_ray_job() -> bool:
    """Whether this process is the driver (entrypoint) of a submitted Ray job (``run --dashboard``,
    ``sweeps.jobs``): Ray sets this variable in a job's driver only, not in its tasks and actors."""
    return bool(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's switch: "0" makes a node take 127.0.0.1 as its address


def start_ray(address: str | None, dashboard_host: str, num_cpus: int | None, preload: bool = False):
    """Join ``address`` or start a local Ray instance whose every listener (GCS, raylet, object
    manager, workers, dashboard agent, runtime-env agent, metrics) is bound to loopback.

    Ray binds its gRPC servers to 127.0.0.1 only when the node's IP is 127.0.0.1, and it turns a
    requested ``_node_ip_address="127.0.0.1"`` into the machine's routable IP unless clusters are
    disabled (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, Ray's default on macOS/Windows). A local run
    sets that switch while Ray starts (its processes inherit it), then puts it back; the dashboard
    listens on ``dashboard_host`` (127.0.0.1 unless asked). A local run never joins a cluster found on
    the machine (``ray start``'s address file, ``RAY_ADDRESS``): ``--address auto`` asks for that; the
    driver of a submitted Ray job (``sweeps.jobs``) joins the job's cluster. Token auth stays disabled locally: nothing
    listens beyond this machine. Joining a cluster with ``address`` is the user's network choice
    (the README says what to secure there). ``preload``: a local instance's worker processes import the
    trial code as they start (:func:`preload_trial_code` says when that pays)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local dashboard without a token; it listens on 127.0.0.1
    if ray.is_initialized():
        return None
    kwargs = dict(address=address, log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
    if in_ray_job():  # the driver of a Ray job (`run --dashboard`): the cluster it was submitted to
        kwargs["address"] = os.environ.get(JOB_ADDRESS_ENV) or address  # None: Ray's RAY_ADDRESS
        ctx = ray.init(**kwargs)
    elif not address:  # "local": a new instance, never a cluster some `ray start` left in /tmp/ray/ray_current_cluster
        kwargs.update(address="local", include_dashboard=True, dashboard_host=dashboard_host, num_cpus=num_cpus)
        with _loopback_node(), _any_agent_port(), _preloaded_workers(num_cpus) if preload else nullcontext(), _worker_env():
            ctx = ray.init(**kwargs)
        ip = (getattr(ctx, "address_info", None) or {}).get("node_ip_address")
        if ip and ip != "127.0.0.1":
            log.warning("Ray's node address is %s, not loopback: its ports may be reachable from the network", ip)
    else:
        ctx = ray.init(**kwargs)
    url = getattr(ctx, "dashboard_url", None)
    if url:
        print(f"Ray dashboard: http://{url}", flush=True)
    return ctx


class _loopback_node:
    """While Ray starts: clusters off (env for Ray's processes, and the constant this process read
    at import), so the node's address is 127.0.0.1; both restored after."""

    def __enter__(self):
        from ray._private import ray_constants  # Ray reads the switch once, at import

        self.env, self.const = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
        os.environ[LOOPBACK_ENV] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False

    def __exit__(self, *exc):
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = self.const
        if self.env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = self.env


PRELOAD_ENV = "RAY_preload_python_modules"  # Ray's switch: modules a worker process imports before it takes work
# what a trial's actor imports first: the trial code (torch, scikit-learn, pandas: seconds) and Ray Tune's
# trainable machinery (0.9 s more, paid in the actor's __init__ otherwise)
TRIAL_MODULES = "trainables.trainable,ray.tune"


def preload_trial_code(cpus_per_trial: float, concurrency: int | None) -> bool:
    """Whether a local Ray's worker processes should import the trial code as they start. Ray starts
    one worker per CPU; with the trial code imported each holds about 390 MB of its own memory
    (``ray::IDLE``; ``benchmarks/bench_workers.py``: 392 against 42-59 MB), which a trial's actor needs anyway. So only
    when every one of them will run trials: 1 CPU (or less) per trial at full concurrency."""
    return cpus_per_trial <= 1 and (concurrency is None or concurrency * cpus_per_trial >= local_cpus())


SOFT_LIMIT_ENV = "RAY_num_workers_soft_limit"  # Ray's raylet setting: idle workers it keeps beyond the busy ones


class _preloaded_workers:
    """While a local Ray starts: its worker processes import the trial code (:data:`TRIAL_MODULES`)
    as they start, before they take work, unless the user set :data:`PRELOAD_ENV` (comma-separated
    modules) already. Ray starts a worker per CPU when the driver connects; they import while the
    driver loads the embeddings and shares them, so the first trial actors start in a worker that is
    ready instead of spending seconds on imports each (``benchmarks/bench_search.py``'s compute
    share). On a cluster of your own, ``RAY_preload_python_modules=trainables.trainable,ray.tune ray start ...``
    does the same.

    The raylet is also told to keep that many idle workers (:data:`SOFT_LIMIT_ENV` = the node's
    CPUs, unless the user set it). With Ray's default, an idle worker is killed once the CPUs are
    reserved: Tune reserves each trial's CPUs in a placement group before it creates the trial's
    actor, and the raylet's idle-worker check (every 200 ms) killed the started workers in that
    moment whenever Tune took longer than a tick, so the trial actors got new processes that
    imported everything again (in 2 of 3 ``bench_search`` runs before the fix, and in every run of
    ``tests/test_actors.py``'s probe, which waits a second between the two)."""

    def __init__(self, cpus: int | None = None):
        self.cpus = cpus

    def __enter__(self):
        self.env = os.environ.get(PRELOAD_ENV)
        if self.env is None:
            os.environ[PRELOAD_ENV] = TRIAL_MODULES
        self.soft = os.environ.get(SOFT_LIMIT_ENV)
        if self.soft is None:
            os.environ[SOFT_LIMIT_ENV] = str(int(self.cpus or local_cpus()))

    def __exit__(self, *exc):
        if self.env is None:
            os.environ.pop(PRELOAD_ENV, None)
        if self.soft is None:
            os.environ.pop(SOFT_LIMIT_ENV, None)


TUNE_WORKER_ENV = {"PL_DISABLE_FORK": "1"}  # what Tune sets on every trial actor (sweeps.actors.plain_trial_actors)
_local_worker_env: dict | None = None  # the environment the local Ray this process started gave its workers


def local_worker_env() -> dict | None:
    """The environment of the workers of the local Ray that :func:`start_ray` started (None: none, or
    a cluster joined by address, whose workers' environment this process does not know)."""
    return _local_worker_env


class _worker_env:
    """While a local Ray starts: Tune's trial-actor variables (:data:`TUNE_WORKER_ENV`) in the
    environment its processes inherit; the environment is recorded (:func:`local_worker_env`)."""

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in TUNE_WORKER_ENV}
        os.environ.update(TUNE_WORKER_ENV)

    def __exit__(self, exc_type, *exc):
        global _local_worker_env
        if exc_type is None:
            _local_worker_env = dict(os.environ)
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


loopback_node = _loopback_node  # public, for sweeps.jobs: a client of a loopback-bound cluster needs it too


class _any_agent_port:
    """While Ray starts: its dashboard agent's HTTP port is any free one (0), not the fixed 52365 that
    ``ray.init`` cannot change: with a second Ray instance on the machine that port is taken, and
    the agent (which Ray's job API submits through, ``run --dashboard``) would never come up."""

    NAME = "dashboard_agent_listen_port"

    def __enter__(self):
        from ray._private.parameter import RayParams

        f = RayParams.__init__
        names = f.__code__.co_varnames[:f.__code__.co_argcount]
        self.defaults = f.__defaults__
        k = names.index(self.NAME) - (len(names) - len(f.__defaults__)) if self.NAME in names else -1
        if 0 <= k < len(f.__defaults__):  # else another Ray version: left as it is
            f.__defaults__ = (*f.__defaults__[:k], 0, *f.__defaults__[k + 1:])

    def __exit__(self, *exc):
        from ray._private.parameter import RayParams

        RayParams.__init__.__defaults__ = self.defaults


def run(space: str, *, num_samples: int | None = None, concurrency: int | None = None, cpus_per_trial: float = 1,
        gpus_per_trial: float = 0, address: str | None = None, name: str | None = None,
        dashboard_host: str = "127.0.0.1", progress: bool = True, write_report: bool = True,
        smoke_test: bool = False, data: str | None = None, cohort_options: dict | None = None,
        track: list[str] | None = None, argv: list[str] | None = None,
        test_fraction: float | None = None, test_data: str | None = None, early_stop: bool = False) -> Path:
    """``argv``: the command as typed (recorded in sweep.json for the report's reproduction recipe).
    ``early_stop``: stop trials that fall behind after their first folds (:func:`scheduler`)."""
    from .track import check as check_tracking

    check_tracking(track)  # --track values and their packages, before anything slow
    spec = with_data(load_space(space), data, cohort_options)
    if test_fraction is not None:
        from dataclasses import replace

        spec = replace(spec, test_fraction=test_fraction)
        spec.validate()
    if smoke_test:
        spec = smoke(spec)
        if early_stop:
            log.info("--early-stop is ignored with --smoke: a smoke trial stopped early would leave no record to check")
            early_stop = False
    check_run_options(num_samples=num_samples, concurrency=concurrency, cpus_per_trial=cpus_per_trial,
                      gpus_per_trial=gpus_per_trial, address=address)  # before anything slow
    run_name = name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = runs_root() / run_name
    if run_dir.exists():
        if not (run_dir / "sweep.json").exists():
            raise FileExistsError(no_run_message(run_name))
        raise FileExistsError(f"run {run_name!r} exists at {run_dir}; use `python -m sweeps resume {run_name}`")
    clean_debris()
    pre = preload_trial_code(cpus_per_trial, concurrency)
    cohort, fp, handle = prepare(spec, progress=progress, start=lambda: start_ray(address, dashboard_host, None, pre))
    from .heldout import finalize_run

    handle, test = test_part(spec, handle, test_data, progress)  # the trials see the development part only
    share(spec, handle, lambda: start_ray(address, dashboard_host, None, pre))
    options = {"num_samples": spec.num_samples if num_samples is None else num_samples, "concurrency": concurrency, "cpus_per_trial": cpus_per_trial,
               "gpus_per_trial": gpus_per_trial, "address": address, "smoke": smoke_test, "data": spec.cohort_options.get("root"),
               "cohort_options": cohort_options or {}, "track": list(track or []),
               "space_arg": str(Path(space).resolve()) if space.endswith(".py") else space,
               "argv": list(argv) if argv else None, "space_sha256": space_sha256(space),
               "test_fraction": spec.test_fraction, "test_data": str(Path(test_data).resolve()) if test_data else None,
               "early_stop": bool(early_stop)}
    start_ray(address, dashboard_host, None, pre)
    interrupted = _tune(spec, handle, run_dir, options, cohort_summary(cohort, spec.target_names(cohort)), fp,
                        restore=False)
    if test is not None and not interrupted:
        finalize_run(run_dir, spec, handle, test)
    return _finish(run_dir, write_report, interrupted)


def resume(run_name: str, *, address: str | None = None, dashboard_host: str = "127.0.0.1", progress: bool = True,
           write_report: bool = True, track: list[str] | None = None) -> Path:
    run_dir = runs_root() / run_name
    meta_path = run_dir / "sweep.json"
    if not meta_path.exists():
        raise FileNotFoundError(no_run_message(run_name))
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
    check_run_options(num_samples=options["num_samples"], concurrency=options["concurrency"],
                      cpus_per_trial=options["cpus_per_trial"], gpus_per_trial=options["gpus_per_trial"],
                      address=options.get("address"))
    clean_debris()
    pre = preload_trial_code(options["cpus_per_trial"], options["concurrency"])
    cohort, fp, handle = prepare(spec, progress=progress, resuming=(run_name, meta),
                                 start=lambda: start_ray(options.get("address"), dashboard_host, None, pre))
    meta.setdefault("resumed", []).append(time.strftime("%Y-%m-%d %H:%M:%S"))  # the report's recipe says so
    write_text(meta_path, json.dumps(meta, indent=1, default=str))
    from .heldout import finalize_run

    handle, test = test_part(spec, handle, options.get("test_data"), progress)  # the same split as at the start
    share(spec, handle, lambda: start_ray(options.get("address"), dashboard_host, None, pre))
    start_ray(options.get("address"), dashboard_host, None, pre)
    interrupted = _tune(spec, handle, run_dir, options, meta["cohort"], fp, restore=True)
    if test is not None and not interrupted and not (run_dir / "model" / "test.json").exists():
        finalize_run(run_dir, spec, handle, test)
    return _finish(run_dir, write_report, interrupted)


def _encoders(spec: SweepSpec) -> list[dict]:
    """What each image encoder ran with (architecture, weights and their hash, input configuration,
    licence), for sweep.json and the report (trainables.encoders.format_encoder_lines)."""
    from trainables.encoders import describe_encoders

    return describe_encoders([enc for enc, _ in spec.embeddings()], spec.weights)


def check_same_cohort(run_name: str, meta: dict, now: dict[str, str]) -> None:
    """Refuse to resume on a cohort that is not the one the run started on (``Cohort.fingerprints``
    of the sweep's labelled cohort, kept in sweep.json): a resumed run would mix both in one report.
    Runs started before the parts were kept compare the image fingerprint only."""
    from trainables.data.cohort import CohortError

    before = meta.get("fingerprints") or {"images": meta["fingerprint"]}
    changed = [part for part, h in before.items() if now.get(part) != h]
    if changed:
        raise CohortError(f"the cohort changed since run {run_name!r} started: its {', '.join(changed)} differ "
                          f"({', '.join(f'{p} {before[p]} -> {now.get(p)}' for p in changed)}); a resumed run would "
                          "mix both versions in one report. Start a new run instead (or restore the data).")


def _tune(spec: SweepSpec, handle, run_dir: Path, options: dict, summary: dict, fp: dict, restore: bool) -> bool:
    """Run (or restore) the Tuner; True when Ctrl-C stopped it."""
    import ray
    from ray import tune

    from trainables.finetune import finetune_trial
    from trainables.named import named_trainable
    from trainables.trainable import sweep_trial

    handle.run_dir = str(run_dir)
    cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
    check_gpu_request(options["gpus_per_trial"], cluster_gpus)
    check_cluster_resources(options["cpus_per_trial"], options["gpus_per_trial"], ray.nodes())
    cpus = float(ray.cluster_resources().get("CPU", 1))
    concurrency = options["concurrency"] or max(1, int(cpus // options["cpus_per_trial"]))
    if options["gpus_per_trial"]:
        concurrency = min(concurrency, int(cluster_gpus / options["gpus_per_trial"] + 1e-9))
    trainable = named_trainable(  # actors named SweepTrial(<trial id>: <config>) in Ray's dashboard
        finetune_trial if spec.trainable == "finetune" else sweep_trial,
        {"cpu": options["cpus_per_trial"], "gpu": options["gpus_per_trial"]}, handle=handle,
    )
    sched = scheduler(spec, options)  # a restored Tuner keeps the one it started with: the same options
    remaining = None  # set when a resume finds Tune's state unreadable: a fresh Tuner here runs the rest
    if restore and not tune_state_readable(run_dir):
        remaining = restart_from_records(run_dir, options["num_samples"])
        if remaining <= 0:
            return False
    if restore and remaining is None:
        log.info("resuming %s: finished trials are kept, unfinished ones rerun", run_dir.name)
        tuner = tune.Tuner.restore(str(run_dir), trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
    else:
        if remaining is None:
            run_dir.mkdir(parents=True)
            skipped = None if handle.arms == spec.compare else {**spec.compare, "ran": next(iter(handle.arms.values()))[0],
                                                               "why": "at most one image instance per sample and modality"}
            meta = {"space": spec.name, "options": options, "concurrency": concurrency, "fingerprint": fp["images"],
                    "fingerprints": fp, "cohort": summary, "metric": spec.metric,
                    "mode": spec.mode, "seed": spec.seed, "folds": spec.folds,
                    "compare": spec.compare if skipped is None else {}, "compare_skipped": skipped,
                    "space_repr": _space_repr(spec.space), "versions": versions(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "description": spec.description, "target": summary["target"],
                    "encoders": _encoders(spec), "repeats": spec.repeats, "trainable": spec.trainable, "scheduler": spec.scheduler, "reference": str(Path(spec.reference).resolve()) if spec.reference else None,
                    "spec": {"cohort": spec.cohort, "cohort_options": spec.cohort_options, "target": spec.target,
                             "weights": spec.weights, "trainable": spec.trainable,
                             "reference": str(Path(spec.reference).resolve()) if spec.reference else None}}
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
            # whole or absent, and last: a run folder with a sweep.json is a run
            write_text(run_dir / "sweep.json", json.dumps(meta, indent=1, default=str))
        from .search import build as build_searcher  # deterministic, no repeats, study in optuna.journal
        from .search import uses_grid

        if uses_grid(spec.space):  # a full factorial: Tune's own grid runs every combination, in a fixed order
            searcher, param_space, num_samples = None, spec.space, options["num_samples"]
            if spec.repeats > 1:  # each combination `repeats` times with __trial_index__ 0.. (the seed offset)
                param_space = {**spec.space, "__trial_index__": tune.grid_search(list(range(spec.repeats)))}
                num_samples = max(1, num_samples // spec.repeats)
        else:
            searcher = build_searcher(spec, run_dir, options["num_samples"])
            if remaining is not None and (run_dir / "search.json").exists():
                searcher.restore_from_dir(str(run_dir))  # Tune's state is gone: rebuilt from search.json and the records
                param_space, num_samples = {}, remaining
            else:
                searcher.start()
                param_space, num_samples = {}, searcher.total_trials  # the searcher hands out whole configs
            if concurrency > spec.proposal_window and not searcher.exhaustive:
                log.info("concurrency %d > the space's proposal_window %d: at most %d trials run at once",
                         concurrency, spec.proposal_window, spec.proposal_window)
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=num_samples,
                                        scheduler=sched,
                                        max_concurrent_trials=concurrency, reuse_actors=True,
                                        trial_dirname_creator=_trial_dirname),
            run_config=tune.RunConfig(name=run_dir.name, storage_path=str(run_dir.parent), verbose=1,
                                      progress_reporter=_reporter(spec), callbacks=_tracking(options, run_dir),
                                      failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)),
        )
    log.info("sweep %s: %d trials, %d at a time, %s CPU + %s GPU each", run_dir.name, options["num_samples"], concurrency,
             options["cpus_per_trial"], options["gpus_per_trial"])
    from .actors import buffered_results, keep_idle_actors, plain_trial_actors

    # idle actors wait for the searcher's window instead of restarting; trial actors take Ray's started
    # workers; without a scheduler, a trial's per-fold results reach the driver in batches
    with keep_idle_actors(concurrency), plain_trial_actors(local_worker_env()), \
            buffered_results(sched is None):
        return fit_noting_sigint(tuner)  # a trial that raises is recorded (error.txt) and the sweep goes on


def scheduler(spec: SweepSpec, options: dict):
    """The Tune scheduler of a run: the space's (fine-tuning's per-epoch ASHA), or with ``--early-stop``
    (``options["early_stop"]``) ASHA on the per-fold reports of frozen trials
    (:func:`trainables.progress.fold_scheduler`) or on a fine-tuning space's per-epoch ones; None otherwise."""
    from dataclasses import replace

    from trainables.finetune import make_scheduler
    from trainables.progress import fold_scheduler

    if not options.get("early_stop"):
        return make_scheduler(spec)
    if spec.trainable == "finetune":
        return make_scheduler(replace(spec, scheduler=spec.scheduler or "asha"))
    return fold_scheduler(spec.metric, spec.mode, spec.folds)


def tune_state_readable(run_dir: Path) -> bool:
    """Whether Tune can restore ``run_dir``: its tuner.pkl and the newest experiment, searcher and
    generator state files load (a full disk leaves them empty or cut short)."""
    import pickle

    try:
        pickle.loads((run_dir / "tuner.pkl").read_bytes())
        states = sorted(run_dir.glob("experiment_state-*.json"))
        if not states:
            return False
        for pattern, pickled in (("experiment_state-*.json", False), ("search_gen_state-*.json", True),
                                 ("searcher-state-*.pkl", True)):
            for f in sorted(run_dir.glob(pattern))[-1:]:  # Tune pickles the generator state despite its .json name
                pickle.loads(f.read_bytes()) if pickled else json.loads(f.read_text())
    except Exception:  # noqa: BLE001 - whatever unpickling an empty or cut file raises
        return False
    return True


def restart_from_records(run_dir: Path, requested: int) -> int:
    """Tune's state of ``run_dir`` is unusable: set it aside (``.tune-state-unreadable-*``, with the
    folders of trials that left no record), keep every trial record, and return how many trials are
    still to run (requested minus those that ended: finished, failed or stopped early)."""
    from .report import load

    view = load(run_dir)
    aside = run_dir / f".tune-state-unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
    aside.mkdir()
    for f in run_dir.iterdir():
        if f.is_file() and (f.name == "tuner.pkl" or f.name.startswith(("experiment_state-", "search_gen_state-",
                                                                         "searcher-state-", "basic-variant-state-"))):
            os.replace(f, aside / f.name)
    from .search import SNAPSHOT_FILE

    if (run_dir / SNAPSHOT_FILE).exists():  # the searcher's part of Tune's snapshot: the trials Tune would resume,
        os.replace(run_dir / SNAPSHOT_FILE, aside / SNAPSHOT_FILE)  # and no Tune resumes them now: handed out again
    for trial, _params in view.unfinished:
        if (run_dir / f"trial_{trial}").is_dir():
            os.replace(run_dir / f"trial_{trial}", aside / f"trial_{trial}")
    remaining = (view.trials_requested or requested) - view.trials_ended
    log.warning("run %s: Tune's saved state is unreadable (a full disk?); set aside in %s. Restarting from the trial "
                "records: %d trial(s) ended, %d to run", run_dir.name, aside.name, view.trials_ended, max(0, remaining))
    return remaining


def fit_noting_sigint(tuner) -> bool:
    """``tuner.fit()``; True when SIGINT (Ctrl-C) stopped it. Tune catches the first SIGINT, saves its
    state and returns, putting back the SIGINT handler it found: a handler of ours installed before
    ``fit`` is back in place exactly when Tune was interrupted (a second Ctrl-C raises KeyboardInterrupt)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        tuner.fit()
        return False

    def ours(sig, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, ours)
    try:
        tuner.fit()
        return signal.getsignal(signal.SIGINT) is ours
    finally:
        signal.signal(signal.SIGINT, previous)


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
    progress = ["folds_done"] if spec.trainable != "finetune" else []  # a running trial's folds so far (its metric is the running one)
    return CLIReporter(metric_columns=list(dict.fromkeys([spec.metric, "auc_macro", "best_arm", *progress])), parameter_columns=params,
                       max_report_frequency=30, sort_by_metric=True, metric=spec.metric, mode=spec.mode)


def _finish(run_dir: Path, write_report: bool, interrupted: bool = False) -> Path:
    """Write the report (marked interrupted when fewer trials ended than were asked for); raise
    ``SweepInterrupted`` after it when Ctrl-C stopped the trials."""
    out = None
    if write_report:
        from .report import write_report as _write

        out = _write(run_dir, reports_root() / run_dir.name)
        print(f"Report: {out}", flush=True)
        from .track import log_report

        for line in log_report(json.loads((run_dir / "sweep.json").read_text())["options"].get("track"), run_dir, out):
            print(line, flush=True)
    if interrupted:
        raise SweepInterrupted(run_dir.name, out)
    return out or run_dir


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
