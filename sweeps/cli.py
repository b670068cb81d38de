"""``python -m sweeps COMMAND``: run, resume, report, list, data synth|inspect|standin, weights fetch|list.

The commands are one table (:data:`COMMANDS`): name, help, the function and its arguments; options
several commands share (``--storage``, the Ray connection, ``--data``/``--option``) come from parent
parsers, so they read the same everywhere. :func:`main` returns the exit status (2: a clear error
in the input, printed without a traceback).

The model hub is never forced offline here: set ``HF_HUB_OFFLINE=1`` (and ``HF_HOME``) to run from a
prepared cache; an uncached model then fails at the space check within seconds, naming the fix.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys

from .runs import parse_options

# set (unless the caller did) when a command runs, not when this module is imported
RUN_ENVIRONMENT = {
    "RAY_AIR_NEW_OUTPUT": "0",  # the compact CLIReporter table, not a box per result
    "TUNE_GLOBAL_CHECKPOINT_S": "2",  # snapshot experiment state often: sweeps are small
}


def _run(a) -> int:
    from .runner import run

    run(a.space, num_samples=a.trials, concurrency=a.concurrency, cpus_per_trial=a.cpus_per_trial,
        gpus_per_trial=a.gpus_per_trial, address=a.address, name=a.name, dashboard_host=a.dashboard_host,
        progress=not a.no_progress, smoke_test=a.smoke, data=a.data, cohort_options=parse_options(a.option), track=a.track,
        argv=a.argv, test_fraction=a.test_fraction, test_data=a.test_data, early_stop=a.early_stop)
    return 0


def _resume(a) -> int:
    from .runner import resume

    resume(a.run, address=a.address, dashboard_host=a.dashboard_host, progress=not a.no_progress, track=a.track)
    return 0


def _report(a) -> int:
    from .report import write_report_files
    from .runner import no_run_message, reports_root, runs_root

    run_dir = runs_root() / a.run
    if not (run_dir / "sweep.json").exists():
        raise FileNotFoundError(no_run_message(a.run))
    for path in write_report_files(run_dir, reports_root() / a.run, html=a.html, k=a.k, reference=a.reference).values():
        print(path)
    return 0


def _tables() -> dict:
    """Every registry ``list`` shows, by the kind a space names it with."""
    from trainables.data import COHORTS
    from trainables.encoders import ENCODERS
    from trainables.tabular import TABULAR
    from trainables.text import TEXT_ENCODERS, TEXT_STEPS

    from .spec import COMPONENTS

    return {"cohort": COHORTS, "encoder": ENCODERS, **COMPONENTS, "tabular": TABULAR, "text": TEXT_ENCODERS,
            "text_step": TEXT_STEPS}


def _doc(obj) -> str:
    """A component's docstring (an encoder's paper)."""
    if hasattr(obj, "paper"):  # an EncoderSpec: a record, not a factory
        return f"{obj.source} {obj.arch}, input {obj.input_size} px. {obj.paper}".strip()
    return inspect.cleandoc(getattr(obj, "__doc__", None) or "")


def _first_line(obj) -> str:
    doc = _doc(obj)
    return " ".join(doc.split("\n\n")[0].split())


def _param_lines(table, name: str, indent: str, train_apart: bool) -> list[str]:
    """One line per declared parameter (allowed values, default, meaning); the training options of a
    learnable pooling are summarised when ``train_apart`` (they are listed once, apart)."""
    from trainables.training import TRAIN_PARAMS

    declared = table.params.get(name)
    if declared is None:
        return [f"{indent}(parameters not declared)"]
    train = train_apart and set(TRAIN_PARAMS) <= set(declared)
    lines = [f"{indent}{p.describe(k)}" for k, p in declared.items() if not (train and k in TRAIN_PARAMS)]
    if train:
        lines.append(f"{indent}+ the training options (below)")
    return lines


def _list(a) -> int:
    from trainables.encoders import SLICE_STEPS, TENSOR_STEPS
    from trainables.lookup import check as check_name
    from trainables.training import TRAIN_PARAMS

    from .spec import SpecError, available_spaces, load_space

    tables = _tables()
    if a.kind:  # one component: its whole docstring (the paper) and its parameters
        check_name("kind", a.kind, tables, error=SpecError)
        table = tables[a.kind]
        if not a.name:
            print(f"{a.kind}s: {', '.join(sorted(table))}")
            return 0
        table.check(a.name, f"list {a.kind}")
        factory = table[a.name]
        print(f"{a.kind} {a.name}")
        print(_doc(factory) or "(no docstring)")
        print("parameters:")
        print("\n".join(_param_lines(table, a.name, "  ", train_apart=False)) or "  (none)")
        return 0
    print("search spaces:")
    for name in available_spaces():
        try:
            spec = load_space(name)
            print(f"  {name:<22} {spec.description}")
        except Exception as exc:  # a broken space is listed with its error, not hidden
            print(f"  {name:<22} ERROR: {exc}")
    headers = {"tabular": "tabular preprocessing", "text": "text encoders", "text_step": "text steps"}
    for kind, table in tables.items():
        print(f"{headers.get(kind, kind + 's')} ({kind}):")
        for name in sorted(table):
            print(f"  {name:<22} {_first_line(table[name])}")
            if kind not in ("cohort", "encoder"):  # cohorts take adapter options; encoders are records
                for line in _param_lines(table, name, "      ", train_apart=True):
                    print(line)
    from trainables.encoders import NAMING_HELP

    print(f"encoder names: {NAMING_HELP}; weights per encoder: random (default), pretrained, packaged or a file")
    print(f"preprocessing steps ('+'-joined): {', '.join(sorted([*SLICE_STEPS, *TENSOR_STEPS, 'resize']))}")
    print("text encoder 'none': no text features")
    print("training options (learnable pooling parameters; the 'train' entry when fine-tuning):")
    for k, p in TRAIN_PARAMS.items():
        print(f"      {p.describe(k)}")
    print("one component in full: python -m sweeps list KIND NAME")
    return 0


def _inspect(a) -> int:
    import json

    from trainables.data import COHORTS
    from trainables.registry import build

    from .datainfo import format_summary, inspect_cohort
    from .spec import available_spaces, load_space

    name, opts, spec = a.cohort, {}, None
    if name.endswith(".py") or (name not in COHORTS and name in available_spaces()):  # a space: its cohort, as `run` reads it
        spec = load_space(name)
        name, opts = spec.cohort, dict(spec.cohort_options)
    if a.data:
        opts["root"] = os.path.abspath(a.data)
    opts.update(parse_options(a.option))
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

    try:
        out = synthetic.generate(a.out, seed=a.seed, n_patients=a.patients, size=a.size, compression=a.compression)
    except ValueError as exc:  # a size or compression this machine cannot write: said before anything is written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


def _args_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("space", help="a search space name (see `list`) or the path of a .py file defining SPEC")
    p.add_argument("--trials", type=int, help="number of trials (default: the space's num_samples)")
    p.add_argument("--concurrency", type=int, help="trials at a time (default: CPUs / cpus-per-trial)")
    p.add_argument("--cpus-per-trial", type=float, default=1)
    p.add_argument("--gpus-per-trial", type=float, default=0, help="fractional allowed, e.g. 0.25")
    p.add_argument("--name", help="run name (default: SPACE-TIMESTAMP)")
    p.add_argument("--smoke", action="store_true",
                   help="2 trials on a small cohort (40 synthetic patients, or a generated stand-in of a real layout)")
    p.add_argument("--track", action="append", metavar="TOOL[=URI]", help=TRACK_HELP)
    p.add_argument("--test-fraction", type=float, metavar="F",
                   help="set aside this fraction of patients as a test part (grouped, stratified, seeded); overrides the space's")
    p.add_argument("--test-data", metavar="PATH", help="a separate test cohort (same adapter), scored once after the sweep")
    p.add_argument("--early-stop", action="store_true",
                   help="stop trials whose running out-of-fold metric falls behind after their first folds (ASHA on "
                        "folds_done); stopped trials are listed apart in the report. Off by default")


def _args_resume(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("--track", action="append", metavar="TOOL[=URI]", help="as for run (a resumed run keeps its trackers)")


def _args_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("--html", action="store_true", help="also write report.html")
    p.add_argument("--k", type=int, default=5, help="trials in the post-hoc ensembles (default 5)")
    p.add_argument("--reference", help="a CSV of published results to set beside ours (e.g. the lumbar seed's)")


def _args_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", nargs="?", help="only this kind (pooling, fusion, head, sampling, tabular, text, ...)")
    p.add_argument("name", nargs="?", help="one component in full: its docstring (paper) and parameters")


def _args_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patients", type=int, default=300)
    p.add_argument("--size", type=int, default=64, help="slice width and height in pixels, a multiple of 8 (default 64)")
    p.add_argument("--compression", default="none", choices=("none", "rle", "jpeg2000", "jpegls"),
                   help="transfer syntax of the slices (lossless; default uncompressed): rle, jpeg2000 or jpegls "
                        "where pydicom has an encoder for it")


def _args_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("cohort", help="a cohort name (see `list`) or a search space name (inspects the cohort it uses)")
    p.add_argument("--check-images", action="store_true", help="decode every image and list the unreadable ones")
    p.add_argument("--json", action="store_true")


def _args_standin(p: argparse.ArgumentParser) -> None:
    p.add_argument("cohort")
    p.add_argument("--out", required=True)


def _parents() -> dict[str, argparse.ArgumentParser]:
    """Option groups several commands share, as argparse parent parsers."""
    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument("--storage", help="folder for run state (default .sweeps/runs; SWEEPS_RUNS)")
    ray = argparse.ArgumentParser(add_help=False)
    ray.add_argument("--address", help="join an existing Ray cluster (e.g. auto or ray://host:10001)")
    ray.add_argument("--dashboard-host", default="127.0.0.1", help="interface the Ray dashboard listens on")
    ray.add_argument("--no-progress", action="store_true")
    ray.add_argument("--dashboard", action="store_true",
                     help="run the driver as a Ray job (its log on the dashboard's job page), on a local Ray started and "
                          "stopped here or on --address; streams the log, exits with the driver's status")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data", help="the cohort's folder (or manifest file) on this machine")
    data.add_argument("--option", action="append", metavar="KEY=VALUE",
                      help="a cohort adapter option, e.g. uncertainty=ones (overrides the space's cohort_options)")
    return {"storage": storage, "ray": ray, "data": data}


# (command path, help, function, its own arguments, the shared option groups it takes)
COMMANDS = [
    (("run",), "run a search space as a Ray Tune + Optuna sweep and write its report", _run, _args_run,
     ("storage", "ray", "data")),
    (("resume",), "continue an interrupted run without rerunning finished trials", _resume, _args_resume,
     ("storage", "ray")),
    (("report",), "(re)write the report of a finished or interrupted run", _report, _args_report, ("storage",)),
    (("list",), "search spaces and every registered component with its parameters", _list, _args_list, ()),
    (("data", "synth"), "write the built-in synthetic cohort as DICOM", _synth, _args_synth, ()),
    (("data", "inspect"), "samples, patients, modalities, labels, flagged columns, quarantined files", _inspect,
     _args_inspect, ("data",)),
    (("data", "standin"), "write a small generated dataset in a real cohort's on-disk layout", _standin,
     _args_standin, ()),
]
GROUP_HELP = {"data": "datasets"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sweeps", description=__doc__.split("\n\n")[0])
    parents = _parents()
    subs = {(): p.add_subparsers(dest="command", required=True)}
    for path, help_text, fn, add_args, shared in COMMANDS:
        for depth in range(1, len(path)):  # a command group (``data``): made on first use
            group = path[:depth]
            if group not in subs:
                g = subs[group[:-1]].add_parser(group[-1], help=GROUP_HELP.get(group[-1]))
                subs[group] = g.add_subparsers(dest=f"{'_'.join(group)}_command", required=True)
        sp = subs[path[:-1]].add_parser(path[-1], help=help_text, parents=[parents[k] for k in shared])
        add_args(sp)
        sp.set_defaults(fn=fn)
    from .weights import add_parser as add_weights

    add_weights(subs[()])
    import importlib

    for cmd, text in MODULE_COMMANDS:  # commands in their own module: add_arguments(parser), main(args) -> int
        mod = importlib.import_module(f"{__package__}.{cmd}")
        c = subs[()].add_parser(cmd, help=text)
        mod.add_arguments(c)
        c.set_defaults(fn=mod.main)
    return p


TRACK_HELP = ("log trials to an experiment tracker, repeatable: mlflow[=URI] (default ./mlruns), tensorboard, "
              "wandb[=PROJECT]")
MODULE_COMMANDS = (
    ("dashboard", "serve optuna-dashboard over a run's Optuna study (loopback by default)"),
    ("compare", "the best configurations of several runs side by side, paired differences on shared patients"),
    ("rerun", "repeat a finished run into a new run and say whether its report came out identical"),
    ("finalize", "refit the chosen configuration, score the test part once, save the model"),
    ("predict", "predict a cohort with a run's model"),
    ("serve", "serve a run's model over HTTP (Ray Serve)"),
)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    a = parser().parse_args(argv)
    for key, value in RUN_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    a.argv = ["python", "-m", "sweeps", *(sys.argv[1:] if argv is None else argv)]  # as typed, for the report's recipe
    if getattr(a, "storage", None):
        os.environ["SWEEPS_RUNS"] = str(os.path.abspath(a.storage))
    from trainables.data.cohort import CohortError
    from trainables.registry import ComponentArgumentError, UnknownComponentError

    from trainables.cache import DiskFullError

    from .runner import ResourceError, SweepInterrupted
    from .spec import SpecError

    try:
        if getattr(a, "dashboard", False):  # the same command, minus --dashboard, as a Ray job (sweeps.jobs)
            from .jobs import precheck, run_as_job

            precheck(a)
            return run_as_job(a.argv[3:], label=f"{a.command} {getattr(a, 'space', None) or getattr(a, 'run', '')}",
                              address=a.address, dashboard_host=a.dashboard_host)
        return a.fn(a)
    except (SpecError, ResourceError, UnknownComponentError, ComponentArgumentError, CohortError, FileNotFoundError,
            FileExistsError, DiskFullError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SweepInterrupted, KeyboardInterrupt) as exc:  # Ctrl-C: the shell's 128 + SIGINT
        print(f"interrupted: {exc or 'stopped by Ctrl-C'}", file=sys.stderr)
        return 130
