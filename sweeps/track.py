"""Experiment tracking through Ray Tune's own logger callbacks: ``--track mlflow[=URI]``,
``--track tensorboard``, ``--track wandb[=PROJECT]`` (repeatable; each tool optional, an extra in
pyproject).

- **mlflow** (``ray.air.integrations.mlflow.MLflowLoggerCallback``): one MLflow experiment per sweep
  (named after the run folder) holding one *sweep run* (tag ``sweeps.role=sweep``) and, nested under it
  (``mlflow.parentRunId``), one run per trial (tag ``sweeps.role=trial``) with the trial's configuration
  as params (nested keys flattened with ``/``) and every numeric result the trial reports as metrics,
  step = Tune's ``training_iteration`` (a trial reporting per fold gives one point per fold). After the
  sweep, ``log_report`` attaches the report (``report.md``, its plots, ``report.html`` if any) to the sweep
  run under ``report/`` and closes it. URI default: ``./mlruns`` of the current folder (MLflow's file
  store; MLflow 3 keeps that store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE``, which this
  module sets for file URIs only). Any tracking URI MLflow accepts works (``sqlite:///mlflow.db``,
  ``http://127.0.0.1:5000``). The sweep run's id is kept in ``<run_dir>/tracking.json`` so a resumed
  sweep adds its trials under the same sweep run.
- **tensorboard** (``ray.tune.logger.TBXLoggerCallback``, tensorboardX): event files in each trial's
  folder of the run (``tensorboard --logdir <run_dir>``); the report is added as a text summary in
  ``<run_dir>/report_tb``.
- **wandb** (``ray.air.integrations.wandb.WandbLoggerCallback``), where the ``wandb`` package is
  installed: project ``PROJECT`` (default ``sweeps``), group = the run name; offline unless W&B
  credentials are configured (``WANDB_API_KEY`` or ``WANDB_MODE``). The report is logged as a W&B
  artifact of a ``report`` job in the same group.

Contract: ``parse``/``check`` raise TrackError (a one-line message naming the flag and the install
command) before anything slow; ``callbacks(specs, run_dir)`` returns the Tune callbacks (``[]`` for no
specs); ``log_report(specs, run_dir, report_path)`` logs the written report. Trial configs and metrics
only leave the machine if the URI (or W&B account) points elsewhere: the defaults are local.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .spec import SpecError

TRACKERS = {
    "mlflow": ("mlflow", "pip install mlflow-skinny  (or: pip install -e '.[mlflow]')"),
    "tensorboard": ("tensorboardX", "pip install tensorboardX  (or: pip install -e '.[tensorboard]')"),
    "wandb": ("wandb", "pip install wandb  (or: pip install -e '.[wandb]')"),
}
STATE = "tracking.json"  # in the run folder: the MLflow sweep run to resume under


class TrackError(SpecError):
    """A ``--track`` value that cannot work here; the message names it and what to do."""


def parse(spec: str) -> tuple[str, str | None]:
    """``"mlflow=file:/tmp/x"`` -> ``("mlflow", "file:/tmp/x")``; ``"tensorboard"`` -> ``("tensorboard", None)``."""
    name, _, value = str(spec).partition("=")
    name = name.strip().lower()
    if name not in TRACKERS:
        raise TrackError(f"--track {spec!r}: unknown tracker {name!r}; choose from {', '.join(TRACKERS)} "
                         f"(e.g. --track mlflow or --track mlflow=sqlite:///mlflow.db)")
    if name == "tensorboard" and value:
        raise TrackError(f"--track {spec!r}: tensorboard takes no value (its event files go in the run folder)")
    return name, (value or None)


def check(specs: list[str] | None) -> list[tuple[str, str | None]]:
    """The parsed specs, each tool importable; TrackError otherwise (before anything slow)."""
    import importlib.util

    out = [parse(s) for s in specs or []]
    for name, _ in out:
        module, install = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise TrackError(f"--track {name} needs the {module} package, which is not installed: {install}")
    if len({n for n, _ in out}) < len(out):
        raise TrackError(f"--track: each tracker once, got {', '.join(specs)}")
    return out


def mlflow_uri(value: str | None) -> str:
    """A tracking URI: the value as given when it has a scheme, else a local path (default ``./mlruns``)
    as an absolute ``file:`` URI; file stores are allowed explicitly (MLflow 3)."""
    scheme = value.split(":", 1)[0] if value and ":" in value else ""
    if len(scheme) > 1 and scheme != "file":  # sqlite:///..., http://..., databricks, ...
        uri = value
    else:
        path = value[5:] if value and value.startswith("file:") else (value or "mlruns")
        uri = Path(path).expanduser().resolve().as_uri()
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def _state(run_dir: Path) -> dict:
    f = Path(run_dir) / STATE
    return json.loads(f.read_text()) if f.exists() else {}


def _save_state(run_dir: Path, state: dict) -> None:
    f = Path(run_dir) / STATE
    tmp = f.with_name(f".{STATE}.tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, f)


def sweep_run(uri: str, run_dir: Path) -> tuple[str, str]:
    """``(experiment_id, run_id)`` of the run's MLflow sweep run: the one recorded in tracking.json for
    this URI, else a new one (experiment named after the run folder, created if needed)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    rec = _state(run_dir).get("mlflow", {})
    if rec.get("uri") == uri and rec.get("run_id"):
        return rec["experiment_id"], rec["run_id"]
    exp = client.get_experiment_by_name(run_dir.name)
    exp_id = exp.experiment_id if exp else client.create_experiment(run_dir.name)
    meta = json.loads((run_dir / "sweep.json").read_text()) if (run_dir / "sweep.json").exists() else {}
    tags = {"sweeps.role": "sweep", "sweeps.run": run_dir.name, "sweeps.space": str(meta.get("space", "")),
            "sweeps.metric": str(meta.get("metric", "")), "sweeps.cohort_fingerprint": str(meta.get("fingerprint", ""))}
    run = client.create_run(exp_id, run_name=run_dir.name, tags=tags)
    for k in ("seed", "folds", "mode"):
        if k in meta:
            client.log_param(run.info.run_id, k, meta[k])
    _save_state(run_dir, {**_state(run_dir), "mlflow": {"uri": uri, "experiment_id": exp_id, "run_id": run.info.run_id}})
    return exp_id, run.info.run_id


def callbacks(track_specs: list[str] | None, run_dir: Path) -> list:
    """Ray Tune logger callbacks for ``track_specs`` (``--track`` values) of the run in ``run_dir``."""
    out = []
    run_dir = Path(run_dir)
    for name, value in check(track_specs):
        if name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            uri = mlflow_uri(value)
            _, parent = sweep_run(uri, run_dir)
            out.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=run_dir.name,
                                            tags={"mlflow.parentRunId": parent, "sweeps.role": "trial",
                                                  "sweeps.run": run_dir.name}))
        elif name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            out.append(TBXLoggerCallback())
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            kwargs = {}
            if not (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")):
                kwargs["mode"] = "offline"  # nothing leaves the machine without an account configured
            out.append(WandbLoggerCallback(project=value or "sweeps", group=run_dir.name, **kwargs))
    return out


def log_report(track_specs: list[str] | None, run_dir: Path, report_path: Path) -> list[str]:
    """Log a written report (``report.md`` and the files beside it) to each tracker; returns one line
    per tracker saying where it went."""
    run_dir, report_path = Path(run_dir), Path(report_path)
    files = sorted(p for p in report_path.parent.iterdir() if p.is_file() and p.suffix in (".md", ".png", ".html"))
    said = []
    for name, value in check(track_specs):
        if name == "mlflow":
            from mlflow.tracking import MlflowClient

            uri = mlflow_uri(value)
            _, run_id = sweep_run(uri, run_dir)
            client = MlflowClient(tracking_uri=uri)
            for f in files:
                client.log_artifact(run_id, str(f), artifact_path="report")
            client.set_terminated(run_id, "FINISHED")
            said.append(f"MLflow: experiment {run_dir.name!r} at {uri} (report attached to run {run_id})")
        elif name == "tensorboard":
            from tensorboardX import SummaryWriter

            with SummaryWriter(str(run_dir / "report_tb")) as w:
                w.add_text("report", report_path.read_text())
            said.append(f"TensorBoard: tensorboard --logdir {run_dir}")
        elif name == "wandb":
            import wandb

            mode = None if (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")) else "offline"
            run = wandb.init(project=value or "sweeps", group=run_dir.name, job_type="report", name=f"{run_dir.name}-report",
                             mode=mode, dir=str(run_dir))
            art = wandb.Artifact(f"{run_dir.name}-report", type="report")
            for f in files:
                art.add_file(str(f))
            run.log_artifact(art)
            run.finish()
            said.append(f"W&B: project {value or 'sweeps'!r}, group {run_dir.name!r}" + (" (offline)" if mode else ""))
    return said
