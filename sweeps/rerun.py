"""``python -m sweeps rerun RUN [--name NEW]``: repeat a finished run into a new run, and say whether
its report came out the same.

The rerun uses what the original recorded in its sweep.json: the space (by name, or the same
``.py`` file), its data folder and adapter options, the smoke setting, the trial budget, the
concurrency the sweep actually ran at, CPUs and GPUs per trial and the cluster address. It refuses,
before anything slow, when the original is unfinished (resume it first) or when the space file's
content changed since (its SHA-256 differs from the recorded one).

The verdict compares the two reports as the current code writes them (both rebuilt from their run
folders, so a report-format change between the runs does not count), after removing what must
differ: the title and the timestamp line, the "Reproduce this run" section, any line with a clock
time or a duration, and the run names and Tune's random trial ids (masked). It is written into the
new run's sweep.json (``rerun_of``: identical, number of differing lines, the first ones, notes on
a changed cohort fingerprint or package versions), which the new report's recipe section shows.

Exit status: 0 identical, 1 different, 2 refused or failed.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from pathlib import Path

RECIPE_TITLE = "## Reproduce this run"
CLOCK = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?|\b\d+(\.\d+)?\s?(s|ms|min|seconds|minutes)\b|\bwall[- ]time\b")
COMPARED = ("report markdown without its title, timestamps, durations, the reproduction section, "
            "run names and trial ids")


class RerunError(RuntimeError):
    """The run cannot be repeated as it was; the message says why and what to do."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a finished run (name under the runs folder, or its folder)")
    p.add_argument("--name", help="the new run's name (default: RUN-rerun, RUN-rerun2, ...)")
    p.add_argument("--storage", help="the folder the run was started with (the rerun goes there too)")
    p.add_argument("--no-progress", action="store_true")


def normalise(text: str, names: list[str], trial_ids: list[str]) -> list[str]:
    """The report's lines with what must differ between two runs of one command removed or masked."""
    if RECIPE_TITLE in text:  # drop the recipe section (to the next section or the end)
        head, tail = text.split(RECIPE_TITLE, 1)
        text = head + (tail[tail.index("\n## "):] if "\n## " in tail else "")
    out = []
    for line in text.splitlines():
        if line.startswith("# Sweep report:") or CLOCK.search(line):
            continue
        for words, mask in ((names, "<run>"), (trial_ids, "<trial>")):  # whole names only (not inside a word)
            if words:
                alt = "|".join(map(re.escape, sorted(words, key=len, reverse=True)))
                line = re.sub(r"(?<![\w-])(" + alt + r")(?![\w-])", mask, line)
        out.append(line)
    return out


def verdict(orig_dir: Path, new_dir: Path) -> dict:
    """Whether the two runs' reports match (see the module doc); the dict stored as ``rerun_of``."""
    from .report import build_report, load

    views = [load(orig_dir), load(new_dir)]
    ids = sorted({t for v in views for t in [r.trial for r in v.rows] + [f[0] for f in v.failed] + [u[0] for u in v.unfinished]})
    names = [orig_dir.name, new_dir.name]
    a = normalise(build_report(orig_dir), names, ids)
    b = normalise(build_report(new_dir), names, ids)
    diff = [ln for ln in difflib.unified_diff(a, b, "original", "rerun", n=0, lineterm="")
            if not ln.startswith(("---", "+++", "@@"))]
    notes = []
    ma, mb = views[0].meta, views[1].meta
    if ma.get("fingerprint") != mb.get("fingerprint"):
        notes.append(f"The cohort changed: fingerprint {ma.get('fingerprint')} then, {mb.get('fingerprint')} now.")
    va, vb = ma.get("versions", {}), mb.get("versions", {})
    changed = [f"{k} {va.get(k)} -> {vb.get(k)}" for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)]
    if changed:
        notes.append("Package versions changed: " + ", ".join(changed) + ".")
    if not ma.get("options", {}).get("space_sha256"):
        notes.append("The original did not record its space file's hash, so an edited space file could not be ruled out.")
    return {"run": orig_dir.name, "identical": not diff, "differences": sum(1 for ln in diff if ln.startswith("+")),
            "first_differences": diff[:20], "compared": COMPARED, "notes": notes}


def plan(orig_dir: Path) -> dict:
    """The keyword arguments of ``runner.run`` that repeat the original; RerunError when it cannot be."""
    from .report import load
    from .runner import space_file, space_sha256

    meta = json.loads((orig_dir / "sweep.json").read_text())
    o = meta.get("options") or {}
    if not o.get("space_arg") and not meta.get("space"):
        raise RerunError(f"run {orig_dir.name!r}: its sweep.json records no space to rerun")
    space = o.get("space_arg") or meta["space"]
    unfinished = load(orig_dir).unfinished
    if unfinished:
        raise RerunError(f"run {orig_dir.name!r} is unfinished ({len(unfinished)} trial(s)): finish it with "
                         f"`python -m sweeps resume {orig_dir.name}` before repeating it")
    recorded, now = o.get("space_sha256"), space_sha256(space)
    if recorded and now != recorded:
        raise RerunError(f"the search space file {space_file(space) or space} changed since run {orig_dir.name!r} "
                         f"(SHA-256 {recorded} then, {now or 'file missing'} now): the rerun would not be the same "
                         f"experiment; restore the file (or start a new run)")
    return {"space": space, "num_samples": o.get("num_samples"),
            "concurrency": meta.get("concurrency") or o.get("concurrency"),
            "cpus_per_trial": o.get("cpus_per_trial", 1), "gpus_per_trial": o.get("gpus_per_trial", 0),
            "address": o.get("address"), "smoke_test": bool(o.get("smoke")), "data": o.get("data"),
            "cohort_options": o.get("cohort_options") or {}, "early_stop": bool(o.get("early_stop"))}


def free_name(orig: Path) -> str:
    for i in range(1, 1000):
        name = f"{orig.name}-rerun" + (str(i) if i > 1 else "")
        if not (orig.parent / name).exists():
            return name
    raise RerunError(f"no free rerun name next to {orig}")


def rerun(run: str, *, name: str | None = None, progress: bool = True, argv: list[str] | None = None) -> tuple[Path, dict]:
    """Repeat ``run`` into ``name``; returns (the new report's path, the verdict)."""
    from .report import write_report
    from .runner import reports_root, runs_root
    from .runner import run as start
    from .runs import find_run

    orig = find_run(run)
    if orig.parent != runs_root():  # a run given by its folder: the rerun goes beside it
        os.environ["SWEEPS_RUNS"] = str(orig.parent)
    kwargs = plan(orig)
    name = name or free_name(orig)
    new_dir = start(**kwargs, name=name, progress=progress, write_report=False, argv=argv)
    v = verdict(orig, new_dir)
    meta_path = new_dir / "sweep.json"
    meta = json.loads(meta_path.read_text())
    meta["rerun_of"] = v
    tmp = meta_path.with_name(".sweep.json.tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_path)
    return write_report(new_dir, reports_root() / new_dir.name), v


def main(args: argparse.Namespace) -> int:
    from .spec import SpecError

    if getattr(args, "storage", None):
        os.environ["SWEEPS_RUNS"] = str(Path(args.storage).resolve())
    try:
        report, v = rerun(args.run, name=args.name, progress=not args.no_progress, argv=getattr(args, "argv", None))
    except (RerunError, FileNotFoundError, FileExistsError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Report: {report}")
    if v["identical"]:
        print(f"Rerun of {v['run']}: the report came out identical ({v['compared']}).")
        return 0
    print(f"Rerun of {v['run']}: the report differs in {v['differences']} line(s); the first:", *v["first_differences"][:10],
          sep="\n")
    return 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m sweeps.rerun", description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
