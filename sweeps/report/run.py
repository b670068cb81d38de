"""A run as the report sees it: a typed view of its trial records, read once from the files (no Ray
session, so finished and interrupted runs alike), and the options every section gets.

Every section is ``section(view: RunView, options: ReportOptions) -> list[str]``.

The run folder's files are read in one place, ``read_run`` (with ``_last_result``): ``sweep.json``
and ``targets.npz`` (written by the runner), ``search.json`` (the searcher's, as ``meta["search"]``),
and per trial ``params.json``, ``error.txt``, ``result.json`` and the last
``checkpoint_*/{config.json, metrics.json, oof.npz}`` with their key scheme (``arm/<arm>/<metric>``,
``<arm>``, ``<arm>__t__<target>``, ``attn__<arm>__<modality>``).
Nothing else in the report opens a run's files.

A leaf: imports only the statistics (for the memo of each row's CIs).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .stats import patient_bootstrap

TRIAL_INDEX = "__trial_index__"  # Tune's Repeater: the repeat (seed offset) of an otherwise identical config
DIMENSIONS = ("head", "sampling", "pca_dim", "tabular", "encoder", "preprocessing", "fusion")  # shown in config_str


@dataclass
class Row:
    """One (trial, pooling arm) evaluation."""

    trial: str
    arm: str
    config: dict
    metrics: dict
    proba: np.ndarray | None  # (n, C) OOF probabilities; None when the trial saved none (several targets)
    attn: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (n, N_max) OOF weights, NaN = padding
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # several targets: target -> (n, C_t) OOF proba


@dataclass
class ReportOptions:
    """What a report is asked for beside its run: ``k``, the members of the post-hoc ensembles;
    ``reference``, a CSV of published numbers (None: the one named in the run's sweep.json, if any;
    empty: none); ``plot_dir``, where PNG plots are written and linked from (None: no plots)."""

    k: int = 5
    reference: str | Path | None = None
    plot_dir: Path | None = None


# -- reading a run's files: the only code that opens them ------------------------------------------
def read_run(run_dir: Path):
    """``(meta, targets, rows, failed, unfinished)`` of a run folder: sweep.json (with trials stopped
    early by ASHA added under ``stopped_early``), targets.npz's arrays, one Row per finished trial and
    pooling arm (its last checkpoint), failed trials as (trial, params, error text) and unfinished ones
    as (trial, params)."""
    meta = json.loads((run_dir / "sweep.json").read_text())
    if (run_dir / "search.json").exists():  # the searcher's log (sweeps/search.py): sampler, repeats answered
        meta["search"] = json.loads((run_dir / "search.json").read_text())
    with np.load(run_dir / "targets.npz", allow_pickle=False) as t:
        targets = {k: t[k] for k in t.files}
    rows, failed, unfinished = [], [], []
    for d in sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("trial_")):
        trial = d.name.split("_", 1)[1]  # trial_<id>
        ckpts = sorted(d.glob("checkpoint_*/metrics.json"))
        params = json.loads((d / "params.json").read_text()) if (d / "params.json").exists() else {}
        if (d / "error.txt").exists():
            failed.append((trial, params, (d / "error.txt").read_text()))
            continue
        if not ckpts:
            last = _last_result(d)
            if last.get("done") and "epochs_done" in last:  # stopped by ASHA after a per-epoch report: not a crash
                meta.setdefault("stopped_early", []).append(
                    {"trial": trial, "epochs": last["epochs_done"], "signal": last.get(meta["metric"])})
            else:
                unfinished.append((trial, params))
            continue
        ck = ckpts[-1].parent
        config = json.loads((ck / "config.json").read_text())
        result = json.loads((ck / "metrics.json").read_text())
        oof = np.load(ck / "oof.npz")
        arms = sorted({k.split("/")[1] for k in result if k.startswith("arm/")})
        for arm in arms:
            m = {k.split("/", 2)[2]: v for k, v in result.items() if k.startswith(f"arm/{arm}/")}
            attn = {f.split("__", 2)[2]: oof[f] for f in sorted(oof.files) if f.startswith(f"attn__{arm}__")}
            per_target = {f.split("__t__", 1)[1]: oof[f] for f in sorted(oof.files) if f.startswith(f"{arm}__t__")}
            rows.append(Row(trial, arm, config, m, oof[arm] if arm in oof.files else None, attn, per_target))
    return meta, targets, rows, failed, unfinished


def _last_result(trial_dir: Path) -> dict:
    """The last row of Tune's result.json for a trial ({} if none or unreadable)."""
    f = trial_dir / "result.json"
    try:
        lines = [ln for ln in f.read_text().splitlines() if ln.strip()] if f.exists() else []
        return json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return {}


# -- configurations --------------------------------------------------------------------------------
def dim_value(config: dict, dim: str):
    """The value of one dimension of a trial config: a component's name when it is a dict
    (``{"name": "stacking", ...}`` -> ``stacking``), else the value ("" when absent)."""
    v = config.get(dim, "")
    if isinstance(v, dict):
        return v.get("name", "")
    return v


def config_str(config: dict) -> str:
    """``head=logreg, sampling=none, ...``: the DIMENSIONS a config has."""
    parts = []
    for dim in DIMENSIONS:
        if dim in config:
            parts.append(f"{dim}={dim_value(config, dim)}")
    return ", ".join(parts)


def matched_key(config: dict) -> str:
    """A configuration's identity apart from its pooling (configs run with several poolings share it)."""
    return json.dumps({k: v for k, v in config.items() if k != "pooling"}, sort_keys=True)


def config_key(config: dict) -> str:
    """A configuration's identity apart from its repeat: trial configs that differ only in
    ``__trial_index__`` (Tune's Repeater) share it."""
    return json.dumps({k: v for k, v in config.items() if k != TRIAL_INDEX}, sort_keys=True, default=str)


def seed_groups(rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    """(config_key, pooling arm) -> its rows over repeated seeds, by ``__trial_index__`` then trial id."""
    out: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        out.setdefault((config_key(r.config), r.arm), []).append(r)
    for g in out.values():
        g.sort(key=lambda r: (int(r.config.get(TRIAL_INDEX, 0)), r.trial))
    return out


def has_repeats(groups: dict[tuple[str, str], list[Row]]) -> bool:
    """Whether some configuration ran with more than one ``__trial_index__`` (a config the searcher
    merely proposed twice, without the key, is not a repeat)."""
    return any(len({r.config.get(TRIAL_INDEX) for r in g}) > 1 for g in groups.values())


def head_members(head) -> list[str]:
    """The member heads of an ensemble head config (``members`` or ``base``, else the factory default)."""
    import inspect

    from trainables.heads import HEADS

    name = dim_value({"head": head}, "head")
    params = head.get(name, {}) if isinstance(head, dict) else {}
    sig = inspect.signature(HEADS[name]).parameters
    key = "base" if "base" in sig else "members"
    return [m for m in str(params.get(key, sig[key].default)).split("+") if m]


def head_label(head) -> str:
    """``stacking(logreg+svc)``, ``bagging(xgboost)``: an ensemble head with its members."""
    return f"{dim_value({'head': head}, 'head')}({'+'.join(head_members(head))})"


# -- a run, read once, with what every section needs ----------------------------------------------
@dataclass
class RunView:
    """A read run: its metadata, targets (``y`` (n,), patient ``groups`` (n,), class names, and every
    array of targets.npz in ``target_arrays``), rows (one per trial and pooling arm), failed and
    unfinished trials, and a memo of the rows' bootstrap CIs."""

    run_dir: Path
    meta: dict
    y: np.ndarray
    groups: np.ndarray
    classes: list[str]
    rows: list[Row]
    failed: list
    unfinished: list
    target_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    _cis: dict = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.meta["metric"]

    @property
    def mode(self) -> str:
        return self.meta["mode"]

    @property
    def compare(self) -> list[str] | None:
        """The poolings every trial evaluated side by side (paired design), or None."""
        return self.meta.get("compare", {}).get("pooling")

    @property
    def poolings(self) -> list[str]:
        """The poolings compared: the paired design's, else every pooling arm that finished."""
        return self.compare or sorted({r.arm for r in self.rows})

    @cached_property
    def seeds(self) -> dict[tuple[str, str], list[Row]]:
        """``seed_groups`` of the rows."""
        return seed_groups(self.rows)

    @property
    def repeated_seeds(self) -> dict[tuple[str, str], list[Row]] | None:
        """``seeds`` when the run repeated configurations over seeds, else None."""
        return self.seeds if has_repeats(self.seeds) else None

    def ci_of(self, r: Row) -> dict[str, tuple[float, float]]:
        key = (r.trial, r.arm)
        if key not in self._cis:
            cis = patient_bootstrap(self.y, r.proba, self.groups) if r.proba is not None else {}
            # metrics without a bootstrap here (several targets' means, the RSNA score): no CI, shown as such
            self._cis[key] = defaultdict(lambda: (np.nan, np.nan), cis)
        return self._cis[key]

    def best(self, rs: list[Row]) -> Row:
        """The best row by the objective (the earliest among ties)."""
        pick = max if self.mode == "max" else min
        return pick(rs, key=lambda r: r.metrics[self.metric])

    def ranked(self, rs: list[Row]) -> list[Row]:
        return sorted(rs, key=lambda r: r.metrics[self.metric], reverse=(self.mode == "max"))


def load(run_dir: Path) -> RunView:
    """Read a run folder into a RunView."""
    run_dir = Path(run_dir)
    meta, t, rows, failed, unfinished = read_run(run_dir)
    return RunView(run_dir, meta, t["y"], t["groups"], [str(c) for c in meta["cohort"]["classes"]], rows, failed,
                   unfinished, t)
