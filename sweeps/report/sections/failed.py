"""The "Failed trials" section, with the trials ASHA stopped early and those an interruption left
unfinished."""

from __future__ import annotations

from ..fmt import number, table
from ..run import ReportOptions, RunView


def section(view: RunView, options: ReportOptions) -> list[str]:
    L = ["## Failed trials", ""]
    if view.failed:
        cells = []
        for trial, config, err in view.failed:
            lines = [ln for ln in err.strip().splitlines() if ln.strip()]
            cells.append([trial, view.config_str(config), "`" + (lines[-1] if lines else "?").replace("|", "\\|")[:300] + "`"])
        L.append(table(["trial", "configuration", "error (last line; full text in the trial's error.txt)"], cells))
    else:
        L.append("None.")
    L.append("")
    stopped = view.meta.get("stopped_early", [])
    if stopped:
        L.append(f"Stopped early by the ASHA scheduler ({len(stopped)}; their running signal was behind at a rung, "
                 "so they have no final out-of-fold record and are in no comparison or test): " + ", ".join(
                     f"{s['trial']} after {_progress(s)} (signal {number(s['signal'])})" for s in stopped) + ".")
        L.append("")
    if view.unfinished:
        L.append(f"Unfinished trials (the run was interrupted; `python -m sweeps resume {view.run_dir.name}` finishes them): "
                 + ", ".join(t for t, _ in view.unfinished) + ".")
        L.append("")
    return L


def _progress(s: dict) -> str:
    """``3 epoch(s)`` (fine-tuning) or ``2 of 5 folds`` (a frozen trial under --early-stop)."""
    return f"{s['epochs']} epoch(s)" if "epochs" in s else f"{s['folds']} of {s['n_folds']} folds"
