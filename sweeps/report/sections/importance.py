"""The "Which choices mattered" section: hyperparameter importance over the finished trials (Optuna's
fANOVA) as a table, and with plots a parallel-coordinates plot of every evaluation.

The searched dimensions are those of the space as the run recorded it (sweep.json ``space_repr``:
``{"choice": [...]}`` for a categorical, ``{"domain": ..., "low", "high", "log", "type"}`` for a number;
a number recorded without bounds takes the range of the values tried), nested ones named by their dotted
path (``pooling.attention.hidden_dim``). With a paired pooling design, the pooling arm is one more
categorical dimension (``pooling (arm)``) and each (trial, arm) one evaluation. The evaluations go into
an in-memory Optuna study (``optuna.trial.create_trial``) and fANOVA (a seeded random forest) splits the
objective's variance between the dimensions; the figures are shares summing to 1, of the variance
explained over the tried region, not effect sizes or p-values, and with few trials they are rough.

Skipped with a one-line reason when fewer than MIN_TRIALS trials finished or nothing was searched.
"""

from __future__ import annotations

import json

import numpy as np

from ..fmt import label, number, table
from ..run import ReportOptions, RunView

MIN_TRIALS = 4
ARM = "pooling (arm)"
TITLE = "## Which choices mattered"


def section(view: RunView, options: ReportOptions) -> list[str]:
    L = [TITLE, ""]
    dims = searched(view.meta.get("space_repr"))
    evals = [r for r in view.rows if np.isfinite(r.metrics.get(view.metric, np.nan))]  # rows: in content order
    if not dims:
        return L + ["Skipped: the run searched no dimension (a fixed configuration, or a space not recorded).", ""]
    n_trials = len({r.trial for r in evals})
    if n_trials < MIN_TRIALS:
        return L + [f"Skipped: {n_trials} finished trial(s); importance needs at least {MIN_TRIALS}.", ""]
    params, dists, values = points(view, dims, evals)
    if not dists:
        return L + ["Skipped: every searched dimension took a single value in the finished trials.", ""]
    importances = fanova(params, dists, values, view.mode)
    best = view.best(evals)
    best_params = params[next(i for i, r in enumerate(evals) if r is best)]
    L.append(f"Share of the variance of {label(view.metric)} over the {len(evals)} finished evaluations explained by each "
             f"searched dimension (Optuna's fANOVA, a random forest with seed 0; shares sum to 1). These are rough with few "
             f"trials and describe the region the sweep tried, not effects outside it.")
    L.append("")
    cells = [[f"`{name}`", number(importances.get(name, 0.0)), _values_tried(dists[name], params, name),
              _cell(best_params.get(name))] for name in sorted(dists, key=lambda n: -importances.get(n, 0.0))]
    L.append(table(["dimension", "importance", "values tried", f"best evaluation's value (trial {best.trial})"], cells))
    L.append("")
    if options.plot_dir is not None:
        name = parallel_coordinates(params, values, dists, view.metric, options.plot_dir)
        L.append(f"![parallel coordinates: each line one evaluation, coloured by {label(view.metric)}]({name})")
        L.append("")
    return L


def searched(space_repr, prefix: str = "") -> dict[str, dict]:
    """Dotted name -> recorded domain of every searched dimension in ``space_repr`` (nested dicts)."""
    out = {}
    for k, v in (space_repr or {}).items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and ("choice" in v or "domain" in v):
            out[name] = v
        elif isinstance(v, dict):
            out.update(searched(v, f"{name}."))
    return out


def lookup(config: dict, name: str):
    """The value at a dotted path of a config (None when absent)."""
    v = config
    for part in name.split("."):
        if not isinstance(v, dict) or part not in v:
            return None
        v = v[part]
    return v


def _plain(v):
    """A value Optuna's categorical accepts (None, bool, int, float, str): others as sorted JSON."""
    return v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v, sort_keys=True, default=str)


def points(view: RunView, dims: dict[str, dict], evals: list):
    """``(params, distributions, values)``: one params dict per evaluation (dimensions it has), the
    Optuna distribution of each dimension that took more than one value, and the objective (n,)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    params = [{name: _plain(lookup(r.config, name)) for name in dims if lookup(r.config, name) is not None} for r in evals]
    if len({r.arm for r in view.rows}) > 1:
        for p, r in zip(params, evals):
            p[ARM] = r.arm
        dims = {**dims, ARM: {"choice": sorted({r.arm for r in view.rows})}}
    dists = {}
    for name, d in dims.items():
        vals = [p[name] for p in params if name in p]
        if len(set(map(str, vals))) < 2 or len(vals) < len(params):  # constant, or conditional: not comparable
            continue
        if "choice" in d:
            choices = [_plain(c) for c in d["choice"]]
            choices += [v for v in dict.fromkeys(vals) if v not in choices]
            dists[name] = CategoricalDistribution(choices)
        else:
            lo = min(vals) if d.get("low") is None else min(d["low"], min(vals))
            hi = max(vals) if d.get("high") is None else max(d["high"], max(vals))
            ints = d.get("type") == "int" or all(isinstance(v, int) and not isinstance(v, bool) for v in vals)
            log = bool(d.get("log")) and lo > 0
            dists[name] = IntDistribution(int(lo), int(hi), log=log) if ints else FloatDistribution(float(lo), float(hi), log=log)
    params = [{k: v for k, v in p.items() if k in dists} for p in params]
    return params, dists, np.array([r.metrics[view.metric] for r in evals], dtype=float)


def fanova(params: list[dict], dists: dict, values: np.ndarray, mode: str) -> dict[str, float]:
    """fANOVA importances of the dimensions, from an in-memory Optuna study of the evaluations."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for p, v in zip(params, values):
        study.add_trial(optuna.trial.create_trial(params=p, distributions={k: dists[k] for k in p}, value=float(v)))
    return get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), normalize=True)


def _values_tried(dist, params: list[dict], name: str) -> str:
    vals = [p[name] for p in params]
    if hasattr(dist, "choices"):
        counts = {c: sum(1 for v in vals if v == c) for c in dist.choices}
        return ", ".join(f"{_cell(c)} ({n})" for c, n in counts.items() if n)
    return f"{_cell(min(vals))} … {_cell(max(vals))} ({len(set(vals))} distinct)"


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "—" if v is None else f"`{v}`"


def parallel_coordinates(params: list[dict], values: np.ndarray, dists: dict, metric: str, out) -> str:
    """One vertical axis per dimension (categories spaced evenly, numbers scaled to their range, log
    where the domain is) and one for the objective; one line per evaluation, coloured by the objective,
    the best drawn last. Writes ``importance.png`` in ``out`` and returns its name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(dists)
    jitter = np.random.default_rng(0).uniform(-0.03, 0.03, len(values))  # lines on one category stay apart
    cols, ticks = [], []
    for name in names:
        d, vals = dists[name], [p[name] for p in params]
        if hasattr(d, "choices"):
            pos = {c: i / max(1, len(d.choices) - 1) for i, c in enumerate(d.choices)}
            cols.append([pos[v] + j for v, j in zip(vals, jitter)])
            ticks.append([(pos[c], str(c)) for c in d.choices])
        else:
            f = np.log if d.log else (lambda x: x)
            lo, hi = f(d.low), f(d.high)
            cols.append([(f(v) - lo) / (hi - lo) if hi > lo else 0.5 for v in vals])
            ticks.append([(0.0, f"{d.low:.3g}"), (1.0, f"{d.high:.3g}")])
    vlo, vhi = float(values.min()), float(values.max())
    cols.append(list((values - vlo) / (vhi - vlo) if vhi > vlo else np.full(len(values), 0.5)))
    ticks.append([(0.0, f"{vlo:.3f}"), (1.0, f"{vhi:.3f}")])
    X = np.array(cols).T  # (evaluations, dimensions + 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * (len(names) + 1)), 4.2))
    cmap = plt.get_cmap("viridis")
    for i in np.argsort(X[:, -1], kind="stable"):  # the best last, on top
        ax.plot(range(X.shape[1]), X[i], color=cmap(X[i, -1]), alpha=0.75, lw=1.2)
    for j, tk in enumerate(ticks):
        ax.axvline(j, color="k", lw=0.6)
        for y, text in tk:
            ax.text(j + 0.03, y, text, fontsize=7, va="center")
    ax.set_xticks(range(X.shape[1]), [*names, label(metric)], rotation=20, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_ylim(-0.08, 1.08)
    ax.set_xlim(-0.2, X.shape[1] - 0.6)
    ax.set_title(f"{len(values)} evaluations, coloured by {label(metric)}", fontsize=9)
    fig.tight_layout()
    name = "importance.png"
    fig.savefig(out / name, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return name
