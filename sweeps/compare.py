"""``python -m sweeps compare RUN_A RUN_B ...``: the runs' best configurations side by side, and
paired differences where the runs scored the same patients on the same folds.

Output (markdown, to stdout or ``--out``):

- one table, a row per run: its space, cohort, finished trials, best trial (by the run's own
  objective), pooling and configuration, and accuracy / macro-F1 / macro-AUC with 95% patient-bootstrap
  CIs (the report's statistics, ``sweeps.report.stats``);
- paired differences of each later run's best against the first run's best: ``B - A`` for each
  metric, with a 95% CI from a paired bootstrap over patients (the same resample for both, so what
  the two share cancels). Only where the two runs share the cohort fingerprint, the samples and their
  order, the labels, the folds and the seed (the same out-of-fold split of the same patients); for
  any other pair the section says which of these differ and computes nothing.

The numbers are those of ``python -m sweeps report``: the same RunView, bootstrap seed and formatting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SAME = {"fingerprint": "cohort fingerprint", "folds": "folds", "seed": "seed", "target": "target"}  # sweep.json fields
# two runs must share to be paired, with their names in messages


class CompareError(ValueError):
    """The runs cannot be compared as asked; the message says why."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run names (under the runs folder) or run folders; "
                                                        "the first is the baseline of the paired differences")
    p.add_argument("--out", help="write the markdown here (default: print it)")
    p.add_argument("--storage", help="the folder the runs were started with")


def pairing_problems(a, b) -> list[str]:
    """Why runs ``a`` and ``b`` (RunViews) cannot be paired patient by patient: [] when they can."""
    out = []
    for key, what in SAME.items():
        va, vb = a.meta.get(key), b.meta.get(key)
        if va != vb:
            out.append(f"{what} ({va!r} vs {vb!r})")
    if not out:
        if len(a.y) != len(b.y) or not np.array_equal(a.groups, b.groups):
            out.append(f"samples ({len(a.y)} vs {len(b.y)}, or patients in another order)")
        elif not np.array_equal(a.y, b.y):
            out.append("labels")
    return out


def compare(run_dirs: list[Path]) -> str:
    """The comparison's markdown for ``run_dirs`` (the first is the baseline)."""
    from .report import load
    from .report.fmt import LABEL, ci, signed_ci, table
    from .report.run import config_str
    from .report.stats import SHOWN, paired_bootstrap

    if len(run_dirs) < 2:
        raise CompareError("compare needs at least two runs")
    views = [load(d) for d in run_dirs]
    names = [v.run_dir.name for v in views]
    if len(set(names)) < len(names):
        names = [str(v.run_dir) for v in views]
    best = [v.best(v.rows) if v.rows else None for v in views]

    L = [f"# Comparison: {', '.join(names)}", ""]
    L.append("Each run's best configuration by its own objective, with 95% CIs (percentile bootstrap over patients "
             "of the out-of-fold predictions, 1000 resamples, seed 0). A best-of-sweep figure is optimistic: it is "
             "the maximum over the run's trials.")
    L.append("")
    hdr = ["run", "space", "cohort (samples)", "objective", "trials", "best trial", "pooling", "configuration"] + [
        f"{LABEL[m]} [95% CI]" for m in SHOWN]
    cells = []
    for name, v, b in zip(names, views, best):
        c = v.meta.get("cohort", {})
        row = [f"`{name}`", v.meta.get("space", ""), f"{c.get('name', '?')} ({len(v.y)})", f"{LABEL.get(v.metric, v.metric)} ({v.mode})",
               len({r.trial for r in v.rows})]
        if b is None:
            row += ["—", "—", "no finished trial"] + ["—"] * len(SHOWN)
        else:
            cis = v.ci_of(b)
            row += [b.trial, b.arm, config_str(b.config)] + [ci(b.metrics.get(m, np.nan), cis[m]) for m in SHOWN]
        cells.append(row)
    L.append(table(hdr, cells))
    L.append("")

    L.append(f"## Paired differences against `{names[0]}`")
    L.append("")
    L.append("Best configuration of each run minus the baseline's, on the same patients: the difference on all samples "
             "with a 95% CI from a paired bootstrap over patients (one resample applied to both runs). Computed only "
             f"for runs that share the baseline's {', '.join(SAME.values())}, samples and labels.")
    L.append("")
    rows, refused = [], []
    a, ba = views[0], best[0]
    for name, v, b in zip(names[1:], views[1:], best[1:]):
        problems = pairing_problems(a, v)
        if not problems and (ba is None or b is None):
            problems = ["a run without a finished trial"]
        if not problems and (ba.proba is None or b.proba is None):
            problems = ["out-of-fold probabilities missing (several targets in one trial)"]
        if problems:
            refused.append(f"- `{name}`: not paired with `{names[0]}`: they differ in " + "; ".join(problems) + ".")
            continue
        diffs = [signed_ci(*paired_bootstrap(a.y, b.proba, ba.proba, a.groups, m)) for m in SHOWN]
        rows.append([f"`{name}` − `{names[0]}`", len(a.y), len(np.unique(a.groups))] + diffs)
    if rows:
        L.append(table(["difference", "n samples", "n patients"] + [f"{LABEL[m]} difference [95% CI]" for m in SHOWN], rows))
        L.append("")
    if refused:
        L += refused
        L.append("")
    return "\n".join(L)


def main(args: argparse.Namespace) -> int:
    import os

    from .runs import find_run

    if getattr(args, "storage", None):
        os.environ["SWEEPS_RUNS"] = str(Path(args.storage).resolve())
    try:
        text = compare([find_run(r) for r in args.runs])
    except (CompareError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, out)
        print(out)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m sweeps.compare", description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
