"""Finding a run folder from what a user types: a run name (under the runs folder) or a path.

Shared by the commands that read finished runs (dashboard, compare, rerun), and the one parser of
``--option KEY=VALUE`` (run, data inspect, predict: plain or JSON values, parsed the same everywhere)."""

from __future__ import annotations

from pathlib import Path


def find_run(run: str | Path) -> Path:
    """The run folder of ``run``: a folder holding a sweep.json, given by path or by name under the
    runs folder (``--storage`` / SWEEPS_RUNS, else ``<home>/runs``); FileNotFoundError naming both places."""
    from .runner import runs_root

    p = Path(run)
    if (p / "sweep.json").exists():
        return p.resolve()
    d = runs_root() / str(run)
    if (d / "sweep.json").exists():
        return d
    known = sorted(q.name for q in runs_root().glob("*") if (q / "sweep.json").exists()) if runs_root().exists() else []
    raise FileNotFoundError(f"no run {str(run)!r}: neither {d} nor {p.resolve()} holds a sweep.json; "
                            f"runs: {', '.join(known) or 'none'}")


def parse_options(pairs: list[str] | None) -> dict:
    """``["k=v", ...]`` -> ``{k: v}``: a value is read as JSON when it is JSON (``3``, ``true``,
    ``{"a": 1}``), else kept as text; a pair without ``=`` is a SpecError naming it."""
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
