"""The top configurations of a run as files a user can rerun: ``best_config.json`` (the ten best
configurations, each complete: nested values, the pooling arm and the objective) and ``best_space.py``
(a search space whose values are the best configuration's, as constants, on the same cohort, data,
cohort options, target, folds and seed: ``python -m sweeps run best_space.py``).

A leaf beside ``run.py``: reads only the RunView. ``best_space.py`` needs the run's spec fields, which the
runner records in sweep.json under ``spec``; a run without them gets ``best_config.json`` only.
"""

from __future__ import annotations

import json
import pprint

from .run import TRIAL_INDEX, RunView

__all__ = ["best_config", "best_space_source", "rerun_config"]

TOP = 10


def rerun_config(view: RunView, config: dict, arm: str) -> dict:
    """A trial config as a space of constants: the repeat index dropped and, in a paired pooling design
    (where the trial config holds only the poolings' parameters), the arm's pooling named."""
    out = {k: v for k, v in config.items() if k != TRIAL_INDEX}
    if view.compare:
        pooling = out.get("pooling")
        params = {k: v for k, v in pooling.items() if k == arm} if isinstance(pooling, dict) else {}
        out["pooling"] = {"name": arm, **params} if params else arm
    return out


def best_config(view: RunView) -> dict:
    """``{"space", "metric", "mode", "best", "top"}``: the best configuration and the ten best, each
    ``{"rank", "trial", "pooling", "value", "config"}`` with ``config`` ready to use as a space."""
    seeds = view.repeated_seeds
    if seeds:  # each configuration once, by its mean over seeds
        import numpy as np

        groups = sorted(seeds.values(), key=lambda g: float(np.mean([r.metrics[view.metric] for r in g])),
                        reverse=(view.mode == "max"))
        ranked = [(g[0], float(np.mean([r.metrics[view.metric] for r in g]))) for g in groups]
    else:
        ranked = [(r, float(r.metrics[view.metric])) for r in view.ranked(view.rows)]
    top = [{"rank": i, "trial": r.trial, "pooling": r.arm, "value": value, "config": rerun_config(view, r.config, r.arm)}
           for i, (r, value) in enumerate(ranked[:TOP], 1)]
    return {"space": view.meta.get("space"), "metric": view.metric, "mode": view.mode,
            "best": top[0] if top else None, "top": top}


def best_space_source(view: RunView, best: dict) -> str | None:
    """The text of ``best_space.py``: a SweepSpec with ``best``'s configuration as constants, or None when
    the run did not record its spec fields or has no finished configuration."""
    spec = view.meta.get("spec")
    if not spec or not best.get("best"):
        return None
    b = best["best"]
    fields = {
        "name": f"{view.meta.get('space', 'run')}_best",
        "description": f"the best configuration of run {view.run_dir.name} (trial {b['trial']}, {b['pooling']}; "
                       f"{view.metric} {b['value']:.4f}), every value fixed",
        "cohort": spec["cohort"], "cohort_options": spec.get("cohort_options", {}), "target": spec.get("target"),
        "metric": view.metric, "mode": view.mode, "folds": int(view.meta["folds"]), "seed": int(view.meta["seed"]),
        "num_samples": 1, "weights": spec.get("weights", {}), "trainable": spec.get("trainable", "frozen"),
        "reference": spec.get("reference"),
        "space": b["config"],
    }
    body = ",\n".join(f"    {k}=" + pprint.pformat(v, width=100, sort_dicts=False).replace("\n", "\n" + " " * (5 + len(k)))
                      for k, v in fields.items())
    return (f'"""Rerun of the best configuration of run {view.run_dir.name} (written with its report).\n\n'
            f'Every value is a constant: ``python -m sweeps run best_space.py`` reruns this one configuration on the\n'
            f'same cohort, data, folds and seed."""\n\nfrom sweeps.spec import SweepSpec\n\nSPEC = SweepSpec(\n{body},\n)\n')


def dumps(best: dict) -> str:
    return json.dumps(best, indent=1, default=str) + "\n"
