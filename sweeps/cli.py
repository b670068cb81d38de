"""``python -m sweeps COMMAND``: run, resume, report, list, data synth|inspect|standin."""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the compact CLIReporter table, not a box per result
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # snapshot experiment state often: sweeps are small


def _run(a) -> int:
    from .runner import run

    run(a.space, num_samples=a.trials, concurrency=a.concurrency, cpus_per_trial=a.cpus_per_trial,
        gpus_per_trial=a.gpus_per_trial, address=a.address, name=a.name, dashboard_host=a.dashboard_host,
        progress=not a.no_progress, smoke_test=a.smoke, data=a.data, cohort_options=_options(a.option))
    return 0


def _resume(a) -> int:
    from .runner import resume

    resume(a.run, address=a.address, dashboard_host=a.dashboard_host, progress=not a.no_progress)
    return 0


def _report(a) -> int:
    from .report import write_report
    from .runner import no_run_message, reports_root, runs_root

    run_dir = runs_root() / a.run
    if not (run_dir / "sweep.json").exists():
        raise FileNotFoundError(no_run_message(a.run))
    print(write_report(run_dir, reports_root() / a.run, html=a.html, k=a.k, reference=a.reference))
    return 0


def _list(a) -> int:
    from trainables.data import COHORTS
    from trainables.encoders import ENCODERS, SLICE_STEPS, TENSOR_STEPS

    from .spec import COMPONENTS, available_spaces, load_space

    print("search spaces:")
    for name in available_spaces():
        try:
            spec = load_space(name)
            print(f"  {name:<22} {spec.description}")
        except Exception as exc:  # a broken space is listed with its error, not hidden
            print(f"  {name:<22} ERROR: {exc}")
    tables = {"cohort": COHORTS, "encoder": ENCODERS, **COMPONENTS}
    for kind, table in tables.items():
        print(f"{kind}s: {', '.join(sorted(table))}")
    print(f"preprocessing steps ('+'-joined): {', '.join(sorted([*SLICE_STEPS, *TENSOR_STEPS, 'resize']))}")
    from trainables.tabular import TABULAR
    from trainables.text import TEXT_ENCODERS, TEXT_STEPS
    from trainables.training import TRAIN_OPTION_NAMES

    print(f"tabular: {', '.join(sorted(TABULAR))}")
    print(f"text encoders: {', '.join(sorted(TEXT_ENCODERS))} (or none); text steps: {', '.join(sorted(TEXT_STEPS))}")
    print(f"training options (pooling params; 'train' when fine-tuning): {', '.join(sorted(TRAIN_OPTION_NAMES))}")
    return 0


def _options(pairs: list[str]) -> dict:
    """``--option key=value`` pairs; values parsed as JSON where they can be (numbers, lists, true/false)."""
    import json

    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            from .spec import SpecError

            raise SpecError(f"--option {pair!r}: expected KEY=VALUE, e.g. --option uncertainty=ones")
        k, v = pair.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _inspect(a) -> int:
    import json

    from trainables.data import COHORTS
    from trainables.registry import build

    from .datainfo import format_summary, inspect_cohort
    from .spec import available_spaces, load_space

    name, opts, spec = a.cohort, {}, None
    if name not in COHORTS and name in available_spaces():  # a space name: inspect the cohort it runs on
        spec = load_space(name)
        name, opts = spec.cohort, dict(spec.cohort_options)
    if a.data:
        opts["root"] = os.path.abspath(a.data)
    opts.update(_options(a.option))
    cohort = build(COHORTS, {"name": name, name: opts}, "cohort")
    info = inspect_cohort(cohort, check_images=a.check_images, **({} if spec is None else {
        "targets": spec.target_names(cohort), "needs_images": bool(spec.embeddings())}))
    print(json.dumps(info, indent=1, default=str) if a.json else format_summary(info))
    return 0


def _standin(a) -> int:
    from trainables.data import STANDINS

    STANDINS.check(a.cohort, "cohort")
    print(STANDINS[a.cohort](a.out))
    return 0


def _synth(a) -> int:
    from trainables.data import synthetic

    out = synthetic.generate(a.out, seed=a.seed, n_patients=a.patients)
    print(out)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sweeps", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a search space as a Ray Tune + Optuna sweep and write its report")
    r.add_argument("space", help="a search space name (see `list`) or the path of a .py file defining SPEC")
    r.add_argument("--trials", type=int, help="number of trials (default: the space's num_samples)")
    r.add_argument("--concurrency", type=int, help="trials at a time (default: CPUs / cpus-per-trial)")
    r.add_argument("--cpus-per-trial", type=float, default=1)
    r.add_argument("--gpus-per-trial", type=float, default=0, help="fractional allowed, e.g. 0.25")
    r.add_argument("--address", help="join an existing Ray cluster (e.g. auto or ray://host:10001)")
    r.add_argument("--storage", help="folder for run state (default .sweeps/runs; SWEEPS_RUNS)")
    r.add_argument("--name", help="run name (default: SPACE-TIMESTAMP)")
    r.add_argument("--dashboard-host", default="127.0.0.1", help="interface the Ray dashboard listens on")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--data", help="the cohort's folder (or manifest file) on this machine, for spaces on a real dataset")
    r.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a cohort adapter option, e.g. uncertainty=ones (overrides the space's cohort_options)")
    r.add_argument("--smoke", action="store_true",
                   help="2 trials on a small cohort (40 synthetic patients, or a generated stand-in of a real layout)")
    r.set_defaults(fn=_run)

    s = sub.add_parser("resume", help="continue an interrupted run without rerunning finished trials")
    s.add_argument("run")
    s.add_argument("--storage", help="the folder the run was started with")
    s.add_argument("--address")
    s.add_argument("--dashboard-host", default="127.0.0.1")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(fn=_resume)

    rp = sub.add_parser("report", help="(re)write the report of a finished or interrupted run")
    rp.add_argument("run")
    rp.add_argument("--storage", help="the folder the run was started with")
    rp.add_argument("--html", action="store_true", help="also write report.html")
    rp.add_argument("--k", type=int, default=5, help="trials in the post-hoc ensembles (default 5)")
    rp.add_argument("--reference", help="a CSV of published results to set beside ours (e.g. the lumbar seed's)")
    rp.set_defaults(fn=_report)

    ls = sub.add_parser("list", help="search spaces and every registered component")
    ls.set_defaults(fn=_list)

    d = sub.add_parser("data", help="datasets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    sy = dsub.add_parser("synth", help="write the built-in synthetic cohort as DICOM")
    sy.add_argument("--out", required=True)
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--patients", type=int, default=300)
    sy.set_defaults(fn=_synth)
    di = dsub.add_parser("inspect", help="samples, patients, modalities, labels, flagged columns, quarantined files")
    di.add_argument("cohort", help="a cohort name (see `list`) or a search space name (inspects the cohort it uses)")
    di.add_argument("--data", help="the cohort's folder (or manifest file)")
    di.add_argument("--option", action="append", metavar="KEY=VALUE", help="an adapter option, e.g. uncertainty=ones")
    di.add_argument("--check-images", action="store_true", help="decode every image and list the unreadable ones")
    di.add_argument("--json", action="store_true")
    di.set_defaults(fn=_inspect)
    st = dsub.add_parser("standin", help="write a small generated dataset in a real cohort's on-disk layout")
    st.add_argument("cohort")
    st.add_argument("--out", required=True)
    st.set_defaults(fn=_standin)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    a = parser().parse_args(argv)
    if getattr(a, "storage", None):
        os.environ["SWEEPS_RUNS"] = str(os.path.abspath(a.storage))
    from trainables.data.cohort import CohortError
    from trainables.registry import ComponentArgumentError, UnknownComponentError

    from trainables.cache import DiskFullError

    from .runner import ResourceError, SweepInterrupted
    from .spec import SpecError

    try:
        return a.fn(a)
    except (SpecError, ResourceError, UnknownComponentError, ComponentArgumentError, CohortError, FileNotFoundError,
            FileExistsError, DiskFullError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SweepInterrupted, KeyboardInterrupt) as exc:  # Ctrl-C: the shell's 128 + SIGINT
        print(f"interrupted: {exc or 'stopped by Ctrl-C'}", file=sys.stderr)
        return 130
