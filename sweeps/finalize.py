"""``python -m sweeps finalize RUN``: rebuild a finished run's data and held-out split (the embedding
cache makes this cheap), refit the chosen configuration and each arm's best on the development part,
save ``<run>/model`` and score the test part once (``sweeps.heldout.finalize_run``). The runner does
the same at the end of a sweep that has a test part; this command is for runs finished without one,
or interrupted before it. A test part already scored is refused (``--force`` re-scores and counts)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from .heldout import TEST_FILE, finalize_run


def spec_of_run(meta: dict):
    """The SweepSpec a run was started with (as ``resume`` rebuilds it)."""
    from .runner import smoke, with_data
    from .spec import load_space

    options = meta["options"]
    spec = with_data(load_space(options.get("space_arg", meta["space"])), options.get("data"), options.get("cohort_options"))
    if options.get("smoke"):
        spec = smoke(spec)
    # a run started before test parts existed had none: its trials saw every sample, so none is carved now
    return replace(spec, test_fraction=options.get("test_fraction") or 0.0)


def finalize(run_name: str, *, force: bool = False, progress: bool = False) -> Path:
    """``python -m sweeps finalize RUN``: rebuild the run's data (cache hits), the same split, and finalize."""
    from .runner import prepare, runs_root, test_part

    run_dir = runs_root() / run_name
    if not (run_dir / "sweep.json").exists():
        raise FileNotFoundError(f"no run {run_name!r} under {runs_root()}")
    meta = json.loads((run_dir / "sweep.json").read_text())
    spec = spec_of_run(meta)
    done = run_dir / "model" / TEST_FILE
    test_data = meta["options"].get("test_data")
    if (spec.test_fraction or test_data) and done.exists() and not force:  # before the slow part: say it at once
        raise FileExistsError(f"run {run_name!r}: its test part was already used "
                              f"({json.loads(done.read_text()).get('evaluated')}); a second look at the test part is "
                              "no longer a held-out test. `finalize --force` re-scores it and records the count")
    cohort, fp, handle = prepare(spec, progress=progress)
    if fp != meta["fingerprint"]:
        raise RuntimeError(f"the cohort changed since run {run_name!r} started; its test part cannot be rebuilt")
    dev, test = test_part(spec, handle, test_data, progress)
    return finalize_run(run_dir, spec, dev, test, force=force)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run name (under the runs folder)")
    p.add_argument("--storage", help="the folder the run was started with")
    p.add_argument("--force", action="store_true", help="score the test part again (recorded in test.json)")


def main(a) -> int:
    out = finalize(a.run, force=a.force)
    print(out)
    return 0
