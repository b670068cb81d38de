"""The "Reproduce this run" section: what it takes to get these numbers again. The command as typed
(or, for a run started through the Python API, the equivalent command), ``python -m sweeps rerun``,
the space file's SHA-256, the cohort fingerprint, seed and folds, the trial budget and concurrency,
the package versions, whether the run was resumed, and for a rerun whether its report came out the
same as the original's (recorded by ``sweeps/rerun.py`` in sweep.json ``rerun_of``). Everything here
comes from sweep.json; a run started before a field was recorded says "not recorded"."""

from __future__ import annotations

import json
import shlex

from ..run import ReportOptions, RunView

TITLE = "## Reproduce this run"


def section(view: RunView, options: ReportOptions) -> list[str]:
    meta = view.meta
    opts = meta.get("options", {})
    L = [TITLE, ""]
    if opts.get("argv"):
        L.append(f"- Command, as typed: `{shlex.join(opts['argv'])}`")
    elif opts:
        L.append(f"- Command: not recorded (started through the Python API); equivalent: `{equivalent_command(meta)}`")
    else:
        L.append("- Command: not recorded.")
    L.append(f"- The same again into a new run, with a verdict on whether the tables match: "
             f"`python -m sweeps rerun {view.run_dir.name}`")
    sha = opts.get("space_sha256")
    L.append(f"- Search space `{opts.get('space_arg', meta.get('space', '?'))}`: SHA-256 of its file "
             + (f"`{sha}`" if sha else "not recorded") + ".")
    L.append(f"- Cohort fingerprint `{meta.get('fingerprint', 'not recorded')}`; seed {meta.get('seed', '?')}, "
             f"{meta.get('folds', '?')} folds grouped by patient.")
    budget = [f"{opts['num_samples']} trials" if opts.get("num_samples") else None,
              f"{meta['concurrency']} at a time" if meta.get("concurrency") else None,
              "smoke test (small cohort)" if opts.get("smoke") else None]
    if any(budget):
        L.append("- " + ", ".join(b for b in budget if b) + ".")
    versions = meta.get("versions")
    L.append("- Package versions: " + (", ".join(f"{k} {v}" for k, v in versions.items()) if versions else "not recorded") + ".")
    resumed = meta.get("resumed") or []
    if resumed:
        L.append(f"- Resumed: yes, {len(resumed)} time(s) ({', '.join(resumed)}); its finished trials were kept and "
                 "unfinished ones rerun.")
    else:
        L.append("- Resumed: no.")
    rerun = meta.get("rerun_of")
    if rerun:
        L.append("")
        L.append(verdict_lines(rerun))
    L.append("")
    return L


def verdict_lines(rerun: dict) -> str:
    """The rerun verdict as a paragraph (and the first differing lines, if any)."""
    head = f"This run repeats `{rerun['run']}`"
    if rerun.get("identical"):
        text = f"{head}: its report came out **identical** to the original's ({rerun.get('compared', '')})."
    else:
        text = (f"{head}: its report **differs** from the original's in {rerun.get('differences', '?')} line(s) "
                f"({rerun.get('compared', '')}).")
    notes = rerun.get("notes") or []
    if notes:
        text += " " + " ".join(notes)
    first = rerun.get("first_differences") or []
    if first:
        text += "\n\n```diff\n" + "\n".join(first) + "\n```"
    return text


def equivalent_command(meta: dict) -> str:
    """A ``python -m sweeps run`` command with the recorded options."""
    o = meta.get("options", {})
    cmd = ["python", "-m", "sweeps", "run", str(o.get("space_arg", meta.get("space", "?")))]
    if o.get("num_samples"):
        cmd += ["--trials", str(o["num_samples"])]
    if o.get("concurrency"):
        cmd += ["--concurrency", str(o["concurrency"])]
    if o.get("cpus_per_trial", 1) != 1:
        cmd += ["--cpus-per-trial", f"{o['cpus_per_trial']:g}"]
    if o.get("gpus_per_trial"):
        cmd += ["--gpus-per-trial", f"{o['gpus_per_trial']:g}"]
    if o.get("address"):
        cmd += ["--address", str(o["address"])]
    if o.get("smoke"):
        cmd.append("--smoke")
    elif o.get("data"):
        cmd += ["--data", str(o["data"])]
    for k, v in (o.get("cohort_options") or {}).items():
        cmd += ["--option", f"{k}={v if isinstance(v, str) else json.dumps(v)}"]
    for t in o.get("track") or []:
        cmd += ["--track", t]
    return shlex.join(cmd)
