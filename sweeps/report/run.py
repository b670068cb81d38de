"""A run as the report sees it: a typed view of its trial records, read once from the files (no Ray
session, so finished and interrupted runs alike), and the options every section gets.

Every section is ``section(view: RunView, options: ReportOptions) -> list[str]``.

The run folder's files are read in one place, ``read_run`` (with ``last_result``): ``sweep.json``
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

from trainables.progress import EPOCH_ATTR, FOLDS_ATTR, N_FOLDS, is_intermediate
from trainables.record import latest_record

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
    early by ASHA added under ``stopped_early``: ``{"trial", "signal", "epochs"}`` after per-epoch
    reports, ``{"trial", "signal", "folds", "n_folds"}`` after per-fold ones; such a trial has no record,
    so it is in no table or test), targets.npz's arrays, one Row per finished trial and
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
        rec = latest_record(d)  # the trial's own record (trainables/record.py): its newest complete checkpoint
        params = _read_json(d / "params.json") or (rec.config if rec else {})  # Tune's copy may be empty (full disk)
        if (d / "error.txt").exists():
            failed.append((trial, params, (d / "error.txt").read_text(errors="replace")))
            continue
        if rec is None:
            last = last_result(d)
            if last.get("done") and is_intermediate(last):  # stopped by ASHA after a per-epoch/fold report: not a crash
                meta.setdefault("stopped_early", []).append(
                    {"trial": trial, "signal": last.get(meta["metric"]),
                     **({"epochs": last[EPOCH_ATTR]} if EPOCH_ATTR in last
                        else {"folds": last[FOLDS_ATTR], "n_folds": last[N_FOLDS]})})
            else:
                unfinished.append((trial, params))
            continue
        for arm, m in rec.arms.items():
            rows.append(Row(trial, arm, rec.config, m, rec.oof.get(arm), rec.attention.get(arm, {}),
                            rec.per_target.get(arm, {})))
    # by content, not by Tune's random trial ids: the same trials give the same order (and ties fall the same way)
    rows.sort(key=lambda r: (config_key(r.config), int(r.config.get(TRIAL_INDEX, 0)), r.arm, r.trial))
    return meta, targets, rows, failed, unfinished


def read_held_out(run_dir: Path) -> dict | None:
    """The held-out test of a run (``sweeps.heldout`` writes ``model/test.json`` and ``model/test.npz``):
    ``{"info": test.json, "arrays": test.npz's arrays}``, or None when the run has none."""
    folder = Path(run_dir) / "model"
    if not (folder / "test.json").exists() or not (folder / "test.npz").exists():
        return None
    with np.load(folder / "test.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return {"info": json.loads((folder / "test.json").read_text()), "arrays": arrays}


def _read_json(path: Path) -> dict:
    """A JSON file's content, {} when it is missing, empty or cut short (Tune's files on a full disk)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def last_result(trial_dir: Path) -> dict:
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


def config_str(config: dict, swept: tuple[tuple[str, ...], ...] = (), arm: str | None = None) -> str:
    """``head=logreg, sampling=none, ..., text=tfidf, train.lr=0.0012``: the DIMENSIONS a config has, then
    every other value the space swept (``swept``: :func:`swept_paths` of the run's space), nested or not.

    A parameter of a component the config did not pick is left out (``head.svc.C`` when the head is
    logreg), and so is a pooling's parameter on another pooling ``arm``'s row."""
    parts = []
    for dim in DIMENSIONS:
        if dim in config:
            parts.append(f"{dim}={dim_value(config, dim)}")
    for path in swept:
        if path[0] in DIMENSIONS and path[1:] in ((), ("name",)) or path in (("pooling",), ("pooling", "name")):
            continue  # shown above, or the pooling arm's own column
        if len(path) >= 3 and path[0] in config and dim_value(config, path[0]) not in ("", path[1]):
            continue  # a parameter of a component this config did not pick
        if path[0] == "pooling" and len(path) >= 3 and arm is not None and arm != path[1]:
            continue
        value = path_value(config, path)
        if value is not _ABSENT:
            parts.append(f"{path_label(path)}={format_value(value)}")
    return ", ".join(parts)


_ABSENT = object()


DOMAIN_KEYS = {"domain", "type", "low", "high", "log"}  # a numeric tune domain in space_repr (runner._space_repr)


def swept_paths(space_repr: dict | None) -> tuple[tuple[str, ...], ...]:
    """The key paths of a space (as sweep.json's ``space_repr`` writes it: a tune domain is
    ``{"choice": [...]}`` or ``{"domain": "...", "low": ..., ...}``, a grid ``{"grid_search": [...]}``) whose value was
    searched, in the space's order: ``(("pca_dim",), ("text", "name"), ("train", "lr"))``."""
    out: list[tuple[str, ...]] = []

    def walk(node, path):
        if isinstance(node, dict):
            if set(node) in ({"choice"}, {"grid_search"}) or ("domain" in node and set(node) <= DOMAIN_KEYS):
                out.append(path)
                return
            for k, v in node.items():
                walk(v, (*path, str(k)))

    walk(space_repr or {}, ())
    return tuple(p for p in out if p)


def path_value(config: dict, path: tuple[str, ...]):
    """The value at a key path of a trial config (``_ABSENT`` when it has none)."""
    node = config
    for k in path:
        if not isinstance(node, dict) or k not in node:
            return _ABSENT
        node = node[k]
    return node


def path_label(path: tuple[str, ...]) -> str:
    """``text.name`` -> ``text``, ``train.lr`` -> ``train.lr``: a key path as shown in tables."""
    return ".".join(path[:-1] if len(path) > 1 and path[-1] == "name" else path)


def format_value(value) -> str:
    """A swept value for a table: floats to 3 significant digits, a component dict by its name."""
    if value is _ABSENT:
        return ""
    if isinstance(value, dict):
        return str(value.get("name", value))
    if isinstance(value, float) and not float(value).is_integer():
        return f"{value:.3g}"
    return str(value)


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
    def swept(self) -> tuple[tuple[str, ...], ...]:
        """The key paths the space searched (:func:`swept_paths` of sweep.json's ``space_repr``)."""
        return swept_paths(self.meta.get("space_repr"))

    def config_str(self, config: dict, arm: str | None = None) -> str:
        """:func:`config_str` with every value this run swept."""
        return config_str(config, self.swept, arm)

    @cached_property
    def seeds(self) -> dict[tuple[str, str], list[Row]]:
        """``seed_groups`` of the rows."""
        return seed_groups(self.rows)

    @property
    def repeated_seeds(self) -> dict[tuple[str, str], list[Row]] | None:
        """``seeds`` when the run repeated configurations over seeds, else None."""
        return self.seeds if has_repeats(self.seeds) else None

    @property
    def trials_requested(self) -> int | None:
        """The trials the run was asked for (None when sweep.json does not say). A space without
        domains repeated over seeds runs whole repeats, so the smaller of both counts is taken."""
        n = self.meta.get("options", {}).get("num_samples")
        if not n:
            return None
        repeats = int(self.meta.get("repeats") or 1)
        return min(n, max(1, n // repeats) * repeats) if repeats > 1 else int(n)

    @property
    def trials_ended(self) -> int:
        """Trials that ran to an end: finished (a record), failed (an error), or stopped early by ASHA."""
        return len({r.trial for r in self.rows}) + len(self.failed) + len(self.meta.get("stopped_early", []))

    @property
    def interrupted(self) -> bool:
        """Whether fewer trials ended than were asked for: a run stopped by Ctrl-C or a kill, not resumed."""
        return self.trials_requested is not None and self.trials_ended < self.trials_requested

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

    @cached_property
    def held_out(self) -> dict | None:
        """``read_held_out`` of the run."""
        return read_held_out(self.run_dir)

    def ranked(self, rs: list[Row]) -> list[Row]:
        return sorted(rs, key=lambda r: r.metrics[self.metric], reverse=(self.mode == "max"))


def load(run_dir: Path) -> RunView:
    """Read a run folder into a RunView."""
    run_dir = Path(run_dir)
    meta, t, rows, failed, unfinished = read_run(run_dir)
    return RunView(run_dir, meta, t["y"], t["groups"], [str(c) for c in meta["cohort"]["classes"]], rows, failed,
                   unfinished, t)
