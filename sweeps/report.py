"""The markdown report of a run, from Tune's trial folders and the out-of-fold predictions each
trial saved. It reads files only (no Ray session), so it works on finished and interrupted runs
alike, and the same run always gives the same report apart from its timestamp (the bootstrap is
seeded).

Every figure carries n and a 95% confidence interval: a percentile bootstrap that resamples
patients (all of a patient's studies together) from the out-of-fold predictions.

Sections: data and method; attention vs average pooling (paired); by head / sampling / PCA /
tabular; ensemble heads vs their best member; top configurations (mean ± SD over repeated seeds
where the run has them); post-hoc ensembles (``posthoc.py``); attention weights over slices;
the reference comparison (``reference.py``); failed trials. Optionally also as HTML.
"""

from __future__ import annotations

import json
from collections import defaultdict
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

N_BOOT = 1000
SHOWN = ("accuracy", "f1_macro", "auc_macro")
LABEL = {"accuracy": "accuracy", "f1_macro": "macro-F1", "auc_macro": "macro-AUC", "balanced_accuracy": "bal. acc.",
         "rsna_score": "RSNA 2024 score (weighted log loss)"}
DIMENSIONS = ("head", "sampling", "pca_dim", "tabular", "encoder", "preprocessing", "fusion")
TRIAL_INDEX = "__trial_index__"  # Tune's Repeater: the repeat (seed offset) of an otherwise identical config


@dataclass
class Row:
    """One (trial, pooling arm) evaluation."""

    trial: str
    arm: str
    config: dict
    metrics: dict
    proba: np.ndarray | None
    attn: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (n, N_max) OOF weights, NaN = padding
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # several targets: target -> (n, C_t) OOF proba


# -- metrics under resampling weights (same definitions as trainables.metrics) -------------------
# A bootstrap resample repeats samples; counting sample i w_i times is the same as weighting it by
# w_i, so every resample is a row of a weight matrix W (n_boot, n) and each metric is computed for
# all rows at once: accuracy and the confusion matrix as weighted counts, the AUC as a weighted
# Mann-Whitney statistic (ties count one half) over the scores sorted once.
CHUNK = 200  # resamples per block: bounds memory at CHUNK x n floats per array


def _weighted(metric: str, y: np.ndarray, proba: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``metric`` of ``proba`` against ``y`` under each row of sample weights ``W``: (n_boot,)."""
    k = proba.shape[1]
    pred = proba.argmax(1)
    if metric == "accuracy":
        return (W @ (pred == y)) / W.sum(1)
    if metric in ("f1_macro", "balanced_accuracy"):
        onehot = np.zeros((len(y), k * k))
        onehot[np.arange(len(y)), y * k + pred] = 1
        cm = (W @ onehot).reshape(-1, k, k)  # weighted confusion matrices
        tp = np.diagonal(cm, axis1=1, axis2=2)
        support = cm.sum(2)
        if metric == "balanced_accuracy":
            rec = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
            return rec.sum(1) / (support > 0).sum(1)
        denom = cm.sum(1) + support
        return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0).mean(1)
    if metric == "auc_macro":
        total = np.zeros(len(W))
        defined = np.zeros(len(W))
        for c in range(k):
            order = np.argsort(proba[:, c], kind="stable")
            s = proba[order, c]
            starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # tie groups of equal scores
            pos = (y[order] == c).astype(float)
            Wo = W[:, order]
            gpos = np.add.reduceat(Wo * pos, starts, axis=1)
            gneg = np.add.reduceat(Wo * (1 - pos), starts, axis=1)
            below = np.cumsum(gneg, 1) - gneg
            npos, nneg = gpos.sum(1), gneg.sum(1)
            ok = (npos > 0) & (nneg > 0)
            auc = (gpos * (below + 0.5 * gneg)).sum(1) / np.where(ok, npos * nneg, 1)
            total += np.where(ok, auc, 0)
            defined += ok
        return np.where(defined > 0, total / np.maximum(defined, 1), np.nan)
    raise KeyError(metric)


def _fast(metric: str, y: np.ndarray, proba: np.ndarray) -> float:
    """``metric`` on all samples (every weight 1)."""
    return float(_weighted(metric, y, proba, np.ones((1, len(y))))[0])


def _resample_weights(groups: np.ndarray, n_boot: int, seed: int):
    """Blocks of sample-weight rows, one per resample of the patients (with replacement, all of a
    patient's samples together), from a seeded generator: the same groups and seed, the same draws."""
    rng = np.random.default_rng(seed)
    _, inv = np.unique(groups, return_inverse=True)
    n_pat = inv.max() + 1
    for b0 in range(0, n_boot, CHUNK):
        b = min(CHUNK, n_boot - b0)
        pick = rng.integers(0, n_pat, (b, n_pat))
        counts = np.bincount((np.arange(b)[:, None] * n_pat + pick).ravel(), minlength=b * n_pat).reshape(b, n_pat)
        yield counts[:, inv].astype(float)


def _quantiles(vals: np.ndarray) -> tuple[float, float]:
    vals = vals[np.isfinite(vals)]
    return (float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))) if len(vals) else (np.nan, np.nan)


def patient_bootstrap(y, proba, groups, metrics=SHOWN, n_boot=N_BOOT, seed=0) -> dict[str, tuple[float, float]]:
    """95% percentile CIs, resampling patients with replacement."""
    vals = {m: [] for m in metrics}
    for W in _resample_weights(groups, n_boot, seed):
        for m in metrics:
            vals[m].append(_weighted(m, y, proba, W))
    return {m: _quantiles(np.concatenate(v)) for m, v in vals.items()}


def paired_bootstrap(y, proba_a, proba_b, groups, metric: str, n_boot=N_BOOT, seed=0) -> tuple[float, float, float]:
    """``metric(a) - metric(b)`` on all samples, with a 95% percentile CI from resampling patients,
    the same draw for both (a paired bootstrap: what the two share cancels)."""
    diff = _fast(metric, y, proba_a) - _fast(metric, y, proba_b)
    vals = [_weighted(metric, y, proba_a, W) - _weighted(metric, y, proba_b, W)
            for W in _resample_weights(groups, n_boot, seed)]
    return (float(diff), *_quantiles(np.concatenate(vals)))


# -- reading a run ----------------------------------------------------------------------------
def read_run(run_dir: Path):
    meta = json.loads((run_dir / "sweep.json").read_text())
    t = np.load(run_dir / "targets.npz", allow_pickle=False)
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
    return meta, t, rows, failed, unfinished


def _last_result(trial_dir: Path) -> dict:
    """The last row of Tune's result.json for a trial ({} if none or unreadable)."""
    f = trial_dir / "result.json"
    try:
        lines = [ln for ln in f.read_text().splitlines() if ln.strip()] if f.exists() else []
        return json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return {}


def _dim_value(config: dict, dim: str):
    v = config.get(dim, "")
    if isinstance(v, dict):
        return v.get("name", "")
    return v


def _matched_key(config: dict) -> str:
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


def _seed_mean(g: list[Row], metric: str) -> float:
    return float(np.mean([r.metrics[metric] for r in g]))


def _seed_stat(g: list[Row], metric: str) -> str:
    vals = np.array([r.metrics[metric] for r in g], dtype=float)
    sd = _f(float(vals.std(ddof=1))) if len(vals) > 1 else "n/a"
    return f"{_f(float(vals.mean()))} ± {sd} (n={len(vals)})"


# -- formatting -------------------------------------------------------------------------------
def _f(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _ci(v: float, ci: tuple[float, float]) -> str:
    return f"{_f(v)} [{_f(ci[0])}, {_f(ci[1])}]"


def _signed_ci(d: float, lo: float, hi: float) -> str:
    s = lambda x: "n/a" if not np.isfinite(x) else f"{x:+.3f}"  # noqa: E731
    return f"{s(d)} [{s(lo)}, {s(hi)}]"


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _config_str(config: dict) -> str:
    parts = []
    for dim in DIMENSIONS:
        if dim in config:
            parts.append(f"{dim}={_dim_value(config, dim)}")
    return ", ".join(parts)


def _label(metric: str) -> str:
    return LABEL.get(metric, metric)


# -- a run, read once, with what every section needs ----------------------------------------------
@dataclass
class RunView:
    """A read run: its metadata, targets, rows (one per trial and pooling arm), failed and
    unfinished trials, and a memo of the rows' bootstrap CIs."""

    run_dir: Path
    meta: dict
    y: np.ndarray
    groups: np.ndarray
    classes: list[str]
    rows: list[Row]
    failed: list
    unfinished: list
    _cis: dict = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return self.meta["metric"]

    @property
    def mode(self) -> str:
        return self.meta["mode"]

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
    run_dir = Path(run_dir)
    meta, t, rows, failed, unfinished = read_run(run_dir)
    return RunView(run_dir, meta, t["y"], t["groups"], [str(c) for c in meta["cohort"]["classes"]], rows, failed,
                   unfinished)


# -- the report -------------------------------------------------------------------------------
def build_report(run_dir: Path, plot_dir: Path | None = None, *, k: int = 5, reference: str | Path | None = None) -> str:
    """The report's markdown; with ``plot_dir``, PNG plots are written there and linked. ``k``: the
    number of members of the post-hoc ensembles. ``reference``: a CSV of published numbers to set
    beside ours (default: the ``reference`` named in the run's sweep.json, if any)."""
    v = load(run_dir)
    meta, y, groups, rows, metric, mode = v.meta, v.y, v.groups, v.rows, v.metric, v.mode
    c = meta["cohort"]
    n, n_pat = len(y), len(np.unique(groups))
    seeds = seed_groups(rows)
    repeats = has_repeats(seeds)

    L = [f"# Sweep report: {v.run_dir.name}", ""]
    L.append(f"Space **{meta['space']}**: {meta.get('description', '')}. Objective: {_label(metric)} ({mode}). "
             f"Started {meta['started']}; report written {time.strftime('%Y-%m-%d %H:%M:%S')}.")
    L.append("")
    L.append("## Data and method")
    L.append("")
    L.append(f"- Cohort **{c['name']}**: {c['description']}.")
    predicted = c.get("predicted_targets", {})
    if len(predicted) > 1:
        L.append(f"- n = {c['samples']} samples (studies) from {c['patients']} patients, {c['instances']} image instances. "
                 f"{len(predicted)} targets in every trial, one head per target; a sample not labelled for a target "
                 f"(masked) neither trains nor scores its head. The trial's accuracy, macro-F1 and macro-AUC are means "
                 f"over the targets (per-target figures with CIs below).")
    else:
        L.append(f"- n = {c['samples']} samples (studies) from {c['patients']} patients, {c['instances']} image instances. "
                 f"Target `{c['target']}`: " + ", ".join(f"{lab} {cnt}" for lab, cnt in c["label_counts"].items()) + ".")
    if c.get("quarantined"):
        L.append(f"- Quarantined: {c['quarantined']} unreadable image file(s) left out "
                 f"(`python -m sweeps data inspect` lists them with the reason).")
    if c.get("flagged"):
        L.append("- Left out of the features by the adapter's leakage guard: " + "; ".join(
            f"`{col}` ({why})" for col, why in c["flagged"].items()) + ".")
    L.append("- Image modalities (samples present / missing): " + (", ".join(
        f"{m} {s['present']}/{s['missing']}" for m, s in c["modalities"].items()) or "none (tabular and text only)") + ".")
    L.append(f"- Evaluation: {meta['folds']}-fold stratified cross-validation grouped by patient (no patient on both "
             f"sides), seed {meta['seed']}. Every metric comes from out-of-fold predictions over all n = {n} samples. "
             f"Everything learned (standardisation, PCA, attention pooling, tabular imputation, resampling, head) is "
             f"fitted on each fold's training part only.")
    L.append(f"- Brackets are 95% confidence intervals: percentile bootstrap over the {n_pat} patients "
             f"({N_BOOT} resamples, seed 0) of the out-of-fold predictions. They reflect sampling of patients, not the "
             f"selection of the best configuration among many (a best-of-sweep figure is optimistic).")
    if meta.get("trainable") == "finetune":
        L.append("- Fine-tuning: the image encoder, the pooling and per-modality linear heads were trained end to end "
                 "inside each fold on its training part (no frozen embeddings, PCA or separate head)"
                 + (f"; the {meta['scheduler']} scheduler stopped trials whose per-epoch signal fell behind" if meta.get("scheduler") else "")
                 + ".")
    if repeats:
        n_seeds = sorted({len(g) for g in seeds.values()})
        L.append(f"- Repeated seeds: configurations ran {'/'.join(map(str, n_seeds))} times, repeat r using seed "
                 f"{meta['seed']} + r for its folds and models; \"mean ± SD (n)\" is over those seeds (SD with n − 1).")
    L.append(f"- Trials: {len({r.trial for r in rows})} finished, {len(v.failed)} failed, {len(v.unfinished)} unfinished. "
             f"Versions: " + ", ".join(f"{pkg} {ver}" for pkg, ver in meta["versions"].items()) + ".")
    L.append("")

    compare = meta.get("compare", {}).get("pooling")
    poolings = compare or sorted({r.arm for r in rows})
    L.append("## Attention vs average pooling")
    L.append("")
    if not rows:
        L.append("No finished trials yet.")
    elif not c["modalities"] or not c.get("instances"):
        L.append("No image modality in this sweep: pooling does not apply. The best configurations are below.")
    else:
        if len(poolings) < 2:
            L.append(f"Only one pooling ({', '.join(poolings)}) was run in this sweep: no comparison; the row below is "
                     "the best configuration.")
            L.append("")
        by_key: dict[str, dict[str, Row]] = {}
        for r in rows:  # paired design: a trial is a pair; otherwise match on every other setting
            by_key.setdefault(r.trial if compare else _matched_key(r.config), {})[r.arm] = r
        matched = {key: m for key, m in by_key.items() if all(p in m for p in poolings)}
        design = ("every trial evaluated each pooling on the same folds with all other settings equal (paired design)"
                  if compare else "configurations that were run with every pooling")
        L.append(f"Matched configurations: **{len(matched)}** ({design}). For each pooling: its best configuration "
                 f"(by {_label(metric)}) with 95% CIs, and medians over the matched configurations.")
        L.append("")
        hdr = ["pooling", "matched configs"] + [f"best {LABEL[m]} [95% CI]" for m in SHOWN] + [f"median {LABEL[m]}" for m in SHOWN]
        table = []
        for p in poolings:
            rs = [m[p] for m in matched.values()]
            if not rs:
                continue
            best = v.best(rs)
            ci = v.ci_of(best)
            table.append([f"**{p}**", len(rs)] + [_ci(best.metrics[m], ci[m]) for m in SHOWN]
                         + [_f(np.median([r.metrics[m] for r in rs])) for m in SHOWN])
        L.append(_table(hdr, table))
        L.append("")
        if len(poolings) >= 2 and len(matched) >= 1:
            L.append(_paired_section(matched, poolings, metric))
        L.append("")
        if plot_dir is not None and matched:
            from . import plots

            bests = {}
            for p in poolings:
                rs = [m[p] for m in matched.values() if m[p].proba is not None]
                if rs:
                    bests[p] = v.best(rs)
            links = ([plots.roc({f"best {p} (trial {r.trial})": r.proba for p, r in bests.items()}, y, v.classes, plot_dir)]
                     if bests else [])  # several targets: no single ROC (see the per-target table)
            if len(poolings) >= 2:
                base = "mean" if "mean" in poolings else poolings[0]
                other = next(p for p in poolings if p != base)
                links.append(plots.paired(np.array([m[base].metrics[metric] for m in matched.values()]),
                                          np.array([m[other].metrics[metric] for m in matched.values()]),
                                          base, other, _label(metric), plot_dir))
            L.append(" ".join(f"![{n}]({n})" for n in links))
            L.append("")
            L.append("ROC curves are one-vs-rest per class, from the out-of-fold predictions of the best configuration "
                     "of each pooling; the paired plot shows every matched configuration (above the diagonal: the "
                     "second pooling scored higher).")
            L.append("")
    for dim in ("head", "sampling", "pca_dim", "tabular", "fusion", "text", "encoder", "preprocessing"):
        L += _by_dim_section(v, dim, poolings, seeds if repeats else None)
    L += _per_target_section(v)
    L += _missing_section(v)
    L += _ensemble_member_section(v)
    L += _top_section(v, seeds if repeats else None, plot_dir)
    from . import posthoc

    L += posthoc.section(v, k=k)
    L += _attention_section(v, plot_dir)
    reference = reference if reference is not None else meta.get("reference")
    if reference:
        from . import reference as ref

        L += ref.section(v, Path(reference))
    L.append("## Failed trials")
    L.append("")
    if v.failed:
        table = []
        for trial, config, err in v.failed:
            lines = [ln for ln in err.strip().splitlines() if ln.strip()]
            table.append([trial, _config_str(config), "`" + (lines[-1] if lines else "?").replace("|", "\\|")[:300] + "`"])
        L.append(_table(["trial", "configuration", "error (last line; full text in the trial's error.txt)"], table))
    else:
        L.append("None.")
    L.append("")
    stopped = meta.get("stopped_early", [])
    if stopped:
        L.append(f"Stopped early by the ASHA scheduler ({len(stopped)}; their per-epoch signal was behind at a rung, "
                 "so they have no final out-of-fold record): " + ", ".join(
                     f"{s['trial']} after {s['epochs']} epoch(s) (signal {_f(s['signal'])})" for s in stopped) + ".")
        L.append("")
    if v.unfinished:
        L.append(f"Unfinished trials (the run was interrupted; `python -m sweeps resume {v.run_dir.name}` finishes them): "
                 + ", ".join(t for t, _ in v.unfinished) + ".")
        L.append("")
    return "\n".join(L)


def _per_target_section(v: RunView) -> list[str]:
    """Several targets: the best trial's figures per target, each on its labelled samples, with CIs."""
    t = np.load(v.run_dir / "targets.npz", allow_pickle=False)
    if "Y" not in t.files:
        return []
    rows = [r for r in v.rows if r.targets]
    if not rows:
        return []
    best = v.best(rows)
    names = [str(x) for x in t["target_names"]]
    L = ["## Per target", "",
         f"Best trial {best.trial} ({best.arm}; {_config_str(best.config)}), by {_label(v.metric)}: each target scored "
         "on its labelled samples only (n), out of fold, with 95% patient-bootstrap CIs.", ""]
    extra = {k: val for k, val in best.metrics.items() if k == "rsna_score" or k.startswith("rsna/")}
    if extra:
        L.append("RSNA 2024 competition metric of this trial (lower is better): " + ", ".join(
            f"{k.split('/')[-1]} {_f(val)}" for k, val in sorted(extra.items())) + ".")
        L.append("")
    table = []
    for k, name in enumerate(names):
        lab = t["Y"][:, k] >= 0
        if name not in best.targets or lab.sum() == 0:
            continue
        y_t, p_t, g_t = t["Y"][lab, k], best.targets[name][lab], v.groups[lab]
        classes = [str(x) for x in t[f"classes__{name}"]]
        ci = patient_bootstrap(y_t, p_t, g_t, metrics=("auc_macro", "f1_macro"))
        counts = ", ".join(f"{c} {int((y_t == j).sum())}" for j, c in enumerate(classes))
        table.append([f"`{name}`", int(lab.sum()), counts, _ci(_fast("auc_macro", y_t, p_t), ci["auc_macro"]),
                      _ci(_fast("f1_macro", y_t, p_t), ci["f1_macro"])])
    L.append(_table(["target", "n labelled", "labels", "AUC [95% CI]", "macro-F1 [95% CI]"], table))
    L.append("")
    return L


def _missing_section(v: RunView) -> list[str]:
    """Simulated missingness (``missing_eval``): a modality removed from a fraction of the scored samples
    at test time, for the best configuration of each fusion / missing-modality strategy."""
    keyed = [r for r in v.rows if any(k.startswith("missing/") for k in r.metrics)]
    if not keyed:
        return []
    metric = v.metric if v.metric in ("f1_macro", "auc_macro", "balanced_accuracy") else "auc_macro"

    def strategy(r: Row) -> str:
        f = r.config.get("fusion", "concat")
        if isinstance(f, dict):
            name = f.get("name")
            params = f.get(name, {}) if isinstance(name, str) else {}
            extra = ", ".join(f"{k}={params[k]}" for k in ("missing", "modality_dropout") if k in params)
            return f"{name}" + (f" ({extra})" if extra else "")
        return str(f)

    by_strategy: dict[str, Row] = {}
    for r in v.ranked(keyed):
        by_strategy.setdefault(f"{strategy(r)} / {r.arm}", r)
    mods = sorted({k.split("/")[1] for r in keyed for k in r.metrics if k.startswith("missing/")})
    fracs = sorted({float(k.split("/")[2]) for r in keyed for k in r.metrics if k.startswith("missing/")})
    L = ["## Simulated missing modalities", "",
         f"{_label(metric)} of the best configuration of each fusion strategy / pooling when a modality is removed at "
         "test time from a fraction of the scored samples (models trained as usual; removals nested: a sample "
         "removed at 25% is also removed at 50%). n = " f"{len(v.y)}.", ""]
    table = []
    for name, r in by_strategy.items():
        for m in mods:
            vals = [r.metrics.get(f"missing/{m}/{fr:g}/{metric}") for fr in fracs]
            if all(x is None for x in vals):
                continue
            table.append([name, f"`{m}`"] + [_f(x) if x is not None else "—" for x in vals])
    L.append(_table(["fusion / pooling", "modality removed"] + [f"{fr:.0%} removed" for fr in fracs], table))
    L.append("")
    return L


def _by_dim_section(v: RunView, dim: str, poolings: list[str], seeds: dict | None) -> list[str]:
    """Best [CI] / median per value of one dimension and pooling; with repeated seeds, the best
    configuration's mean ± SD over its seeds too."""
    metric = v.metric
    vals = sorted({str(_dim_value(r.config, dim)) for r in v.rows})
    if len(vals) < 2:
        return []
    L = [f"## By {dim}", ""]
    text = f"{_label(metric)} per {dim} and pooling: best [95% CI] / median over that value's trials (n trials)"
    L.append(text + ("; then the best configuration's mean ± SD over its seeds (n seeds)." if seeds else "."))
    L.append("")
    table = []
    for val in vals:
        cells = [f"`{val}`"]
        for p in poolings:
            rs = [r for r in v.rows if r.arm == p and str(_dim_value(r.config, dim)) == val]
            if not rs:
                cells.append("—")
                continue
            best = v.best(rs)
            cell = f"{_ci(best.metrics[metric], v.ci_of(best)[metric])} / {_f(np.median([r.metrics[metric] for r in rs]))} (n={len(rs)})"
            if seeds:
                cell += f"; seeds {_seed_stat(seeds[(config_key(best.config), best.arm)], metric)}"
            cells.append(cell)
        table.append(cells)
    L.append(_table([dim] + list(poolings), table))
    L.append("")
    return L


def _top_section(v: RunView, seeds: dict | None, plot_dir: Path | None) -> list[str]:
    """The ten best configurations with CIs and fold SD. With repeated seeds each configuration is
    listed once, ranked by its mean over seeds, with the CIs of its first seed."""
    metric, y = v.metric, v.y
    L = ["## Top configurations", ""]
    if seeds:
        order = sorted(seeds.values(), key=lambda g: _seed_mean(g, metric), reverse=(v.mode == "max"))[:10]
        top = [g[0] for g in order]
        L.append(f"Each configuration once, ranked by its mean {_label(metric)} over seeds; the CI and fold-SD columns "
                 f"are those of its first seed (`{TRIAL_INDEX}` 0).")
        L.append("")
    else:
        top = v.ranked(v.rows)[:10]
    if not top:
        return L
    hdr = ["#", "trial", "pooling", "configuration"] + [f"{LABEL[m]} [95% CI]" for m in SHOWN] + [f"{_label(metric)} fold SD"]
    if seeds:
        hdr.append(f"{_label(metric)} over seeds: mean ± SD (n)")
    table = []
    for i, r in enumerate(top, 1):
        ci = v.ci_of(r)
        cells = [i, r.trial, r.arm, _config_str(r.config)] + [_ci(r.metrics[m], ci[m]) for m in SHOWN] + [
            _f(r.metrics.get(f"{metric}_fold_sd", np.nan))]
        if seeds:
            cells.append(_seed_stat(seeds[(config_key(r.config), r.arm)], metric))
        table.append(cells)
    L.append(_table(hdr, table))
    L.append("")
    best = top[0]
    if any(k.startswith("recall_") for k in best.metrics):  # one target (several: see "Per target")
        L.append(f"Per-class recall of the top configuration (n = {len(y)}): " + ", ".join(
            f"{name} {_f(best.metrics.get(f'recall_{name}', np.nan))} (n={int((y == i).sum())})"
            for i, name in enumerate(v.classes)) + ".")
        L.append("")
    if plot_dir is not None and best.proba is not None:
        from . import plots

        name = plots.confusion(y, best.proba, v.classes, f"top: {best.arm}, trial {best.trial}", plot_dir)
        L.append(f"![confusion matrix of the top configuration]({name})")
        L.append("")
    return L


def _paired_stats(d: np.ndarray) -> list:
    """n, median, wins/ties/losses and the Wilcoxon signed-rank p of paired differences ``d``."""
    from scipy.stats import wilcoxon

    wins, ties, losses = int((d > 1e-12).sum()), int((np.abs(d) <= 1e-12).sum()), int((d < -1e-12).sum())
    try:
        pval = wilcoxon(d).pvalue if np.any(np.abs(d) > 1e-12) and len(d) >= 2 else np.nan
    except ValueError:
        pval = np.nan
    return [len(d), _f(float(np.median(d))), f"{wins}/{ties}/{losses}", "n/a" if not np.isfinite(pval) else f"{pval:.3g}"]


PAIRED_HEADER = ["n pairs", "median difference", "wins/ties/losses", "Wilcoxon signed-rank p"]


def _paired_section(matched: dict, poolings: list[str], metric: str) -> str:
    base = "mean" if "mean" in poolings else poolings[0]
    out = [f"Paired differences against `{base}` over the matched configurations ({_label(metric)}):", ""]
    table = []
    for p in poolings:
        if p == base:
            continue
        d = np.array([m[p].metrics[metric] - m[base].metrics[metric] for m in matched.values()])
        table.append([f"{p} − {base}"] + _paired_stats(d))
    out.append(_table(["comparison"] + PAIRED_HEADER, table))
    out.append("")
    out.append("The pairs share folds, so the test is paired; configurations chosen by the searcher are not independent "
               "draws, so read the p-value as descriptive.")
    return "\n".join(out)


# -- ensemble heads against their best member ---------------------------------------------------
MATCH_DIMS = ("encoder", "preprocessing", "pca_dim", "sampling", "tabular", "fusion")


def _members_of(head) -> list[str]:
    """The member heads of an ensemble head config (``members`` or ``base``, else the factory default)."""
    import inspect

    from trainables.heads import HEADS

    name = _dim_value({"head": head}, "head")
    params = head.get(name, {}) if isinstance(head, dict) else {}
    sig = inspect.signature(HEADS[name]).parameters
    key = "base" if "base" in sig else "members"
    return [m for m in str(params.get(key, sig[key].default)).split("+") if m]


def _head_label(head) -> str:
    """``stacking(logreg+svc)``, ``bagging(xgboost)``: an ensemble with its members."""
    return f"{_dim_value({'head': head}, 'head')}({'+'.join(_members_of(head))})"


def _ensemble_member_section(v: RunView) -> list[str]:
    """Each ensemble-head row against the best single head among its members run with the same
    encoder, preprocessing, PCA size, pooling arm, sampling, tabular choice, fusion and repeat (so
    on the same folds): median difference, wins/ties/losses, Wilcoxon p, per kind of ensemble."""
    from trainables.heads import ENSEMBLES

    metric = v.metric
    ens = [r for r in v.rows if _dim_value(r.config, "head") in ENSEMBLES]
    if not ens:
        return []

    def match(r: Row) -> str:
        return json.dumps([str(_dim_value(r.config, d)) for d in MATCH_DIMS] + [r.arm, r.config.get(TRIAL_INDEX, 0)])

    singles: dict[str, list[Row]] = {}
    for r in v.rows:
        if _dim_value(r.config, "head") not in ENSEMBLES:
            singles.setdefault(match(r), []).append(r)
    diffs: dict[str, list[float]] = {}
    unmatched: dict[str, int] = {}
    for r in ens:
        label = _head_label(r.config["head"])
        members = set(_members_of(r.config["head"]))
        cands = [s for s in singles.get(match(r), []) if _dim_value(s.config, "head") in members]
        if not cands:
            unmatched[label] = unmatched.get(label, 0) + 1
            continue
        diffs.setdefault(label, []).append(r.metrics[metric] - v.best(cands).metrics[metric])
    L = ["## Ensemble heads vs their best member", ""]
    L.append(f"Each ensemble-head result against the best single head among its members run with the same encoder, "
             f"preprocessing, PCA size, pooling, sampling, tabular choice and fusion (and seed, so on the same folds): "
             f"{_label(metric)} difference, ensemble − best member. The best member is picked by its own out-of-fold "
             f"score, which favours the member.")
    L.append("")
    if diffs:
        L.append(_table(["ensemble"] + PAIRED_HEADER + ["unmatched"],
                        [[f"`{lab}`"] + _paired_stats(np.array(d)) + [unmatched.get(lab, 0)] for lab, d in sorted(diffs.items())]))
    else:
        L.append("No ensemble result has a matched member result in this run (the search never ran a member head with "
                 "the same other settings).")
    if set(unmatched) - set(diffs):
        L.append("")
        L.append("Without any matched member: " + ", ".join(f"`{lab}` ({n})" for lab, n in sorted(unmatched.items())
                                                            if lab not in diffs) + ".")
    L.append("")
    return L


# -- attention weights over slices ----------------------------------------------------------------
def _attention_section(v: RunView, plot_dir: Path | None) -> list[str]:
    """Where the best attention trial looked: its out-of-fold attention weights per slice for two
    correctly predicted samples of the most severe class (the last in the cohort's class order) and
    two others (correctly predicted, from different classes where possible). Nothing when no trial
    saved attention weights."""
    rs = [r for r in v.rows if r.attn and r.proba is not None]
    if not rs or plot_dir is None:
        return []
    from . import plots

    best = v.best(rs)
    y, proba = v.y, best.proba
    pred = proba.argmax(1)
    conf = proba[np.arange(len(y)), pred]
    sev = len(v.classes) - 1

    def pick(mask: np.ndarray, count: int, taken=()) -> list[int]:
        idx = np.array([i for i in np.flatnonzero(mask) if i not in taken], dtype=int)
        return [int(i) for i in idx[np.argsort(-conf[idx], kind="stable")][:count]]

    chosen = pick((y == sev) & (pred == sev), 2)
    others = [i for c in range(sev) for i in pick((y == c) & (pred == c), 1)][: 4 - len(chosen)]  # one per class first
    others += pick((y != sev) & (pred == y), 4 - len(chosen) - len(others), taken=others)
    others += pick(y != sev, 4 - len(chosen) - len(others), taken=others)
    panels = [(f"sample {i}: true {v.classes[y[i]]}, predicted {v.classes[pred[i]]} (p={conf[i]:.2f})",
               {m: w[i][np.isfinite(w[i])] for m, w in best.attn.items()}) for i in chosen + others]
    name = plots.attention(panels, f"attention weights, {best.arm}, trial {best.trial}", plot_dir)
    L = ["## Attention over slices", ""]
    L.append(f"Out-of-fold attention weights per slice (slices in position order) of the best attention "
             f"configuration (trial {best.trial}, `{best.arm}`), for {len(chosen)} correctly predicted "
             f"`{v.classes[sev]}` sample(s) and {len(others)} of the other classes (the most confidently predicted; "
             f"dotted: uniform attention, 1/slices). Sample numbers are rows of the cohort's sample table.")
    L.append("")
    L.append(f"![attention weights over slices]({name})")
    L.append("")
    return L


# -- writing ------------------------------------------------------------------------------------
HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.4}}
table{{border-collapse:collapse;margin:1em 0;font-size:0.9em}}th,td{{border:1px solid #ccc;padding:3px 6px}}
th{{background:#f3f3f3}}img{{max-width:100%}}code{{background:#f6f6f6}}</style></head>
<body>
{body}
</body></html>
"""


def to_html(markdown_text: str, title: str) -> str:
    """The report as a standalone HTML page (the ``markdown`` package, with tables); PNGs stay
    beside it and are referenced by their relative names, as in the markdown."""
    try:
        import markdown
    except ImportError:
        raise ImportError("HTML reports need the markdown package: pip install markdown  (or: pip install -e '.[html]')") from None
    import html

    return HTML_PAGE.format(title=html.escape(title), body=markdown.markdown(markdown_text, extensions=["tables"]))


def write_report(run_dir: Path, out_dir: Path, *, html: bool = False, k: int = 5,
                 reference: str | Path | None = None) -> Path:
    """Write ``out_dir/report.md`` atomically (temp folder, then rename), with its PNG plots beside it
    and, with ``html``, ``report.html`` too. ``k`` and ``reference``: as in ``build_report``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out_dir))  # plots and text written here first
    try:
        text = build_report(Path(run_dir), plot_dir=staging, k=k, reference=reference)
        if html:
            (staging / "report.html").write_text(to_html(text, f"Sweep report: {Path(run_dir).name}"))
        (staging / "report.md").write_text(text)
        for f in sorted(staging.iterdir(), key=lambda p: p.name == "report.md"):  # report.md last
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / "report.md"
