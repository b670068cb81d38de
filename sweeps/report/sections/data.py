"""The report's title and its "Data and method" section: the cohort, the evaluation, what the
brackets mean, repeats, trial counts and versions."""

from __future__ import annotations

import time

import numpy as np

from ..fmt import label
from ..run import ReportOptions, RunView
from ..stats import N_BOOT


def _samples(c: dict) -> str:
    """What a sample is, for "n = 162 samples (...)": one image each, or a study of several."""
    most = c.get("max_instances")
    if most is None:  # a run written before the summary said
        return "samples (studies)"
    if not c.get("modalities") or most == 0:
        return "samples (rows of the cohort; no image)"
    if most == 1:
        return "samples (one image each per modality)"
    return f"samples (studies: up to {most} image instances each per modality)"


def _learned(view: RunView) -> str:
    """What the trials fitted, as the run's configurations say (a fine-tuning run has no PCA)."""
    if view.meta.get("trainable") == "finetune":
        return "the image encoder, pooling and heads"
    if not view.rows:  # nothing finished: the general list
        return "standardisation, PCA, attention pooling, tabular imputation, resampling, head"
    configs = [r.config for r in view.rows]
    parts = ["standardisation"]
    if any(c.get("pca_dim") for c in configs):
        parts.append("PCA")
    if any(r.arm not in ("mean", "max") for r in view.rows if view.meta["cohort"].get("modalities")):
        parts.append("attention pooling")
    if any(c.get("tabular") not in (None, False, "none") for c in configs):
        parts.append("tabular imputation")
    parts += ["resampling", "head"]
    return ", ".join(parts)


def section(view: RunView, options: ReportOptions) -> list[str]:
    meta, y, groups, rows, metric, mode = view.meta, view.y, view.groups, view.rows, view.metric, view.mode
    c = meta["cohort"]
    n, n_pat = len(y), len(np.unique(groups))
    seeds = view.repeated_seeds

    L = [f"# Sweep report: {view.run_dir.name}", ""]
    if view.interrupted:  # never let a partial run read as a finished one
        L += [f"**Interrupted ({view.trials_ended} of {view.trials_requested} trials)**: this report covers the trials "
              f"finished before the run stopped. `python -m sweeps resume {view.run_dir.name}` runs the rest.", ""]
    L.append(f"Space **{meta['space']}**: {meta.get('description', '')}. Objective: {label(metric)} ({mode}). "
             f"Started {meta['started']}; report written {time.strftime('%Y-%m-%d %H:%M:%S')}.")
    L.append("")
    L.append("## Data and method")
    L.append("")
    L.append(f"- Cohort **{c['name']}**: {c['description']}.")
    predicted = c.get("predicted_targets", {})
    if len(predicted) > 1:
        L.append(f"- n = {c['samples']} {_samples(c)} from {c['patients']} patients, {c['instances']} image instances. "
                 f"{len(predicted)} targets in every trial, one head per target; a sample not labelled for a target "
                 f"(masked) neither trains nor scores its head. The trial's accuracy, macro-F1 and macro-AUC are means "
                 f"over the targets (per-target figures with CIs below).")
    else:
        L.append(f"- n = {c['samples']} {_samples(c)} from {c['patients']} patients, {c['instances']} image instances. "
                 f"Target `{c['target']}`: " + ", ".join(f"{lab} {cnt}" for lab, cnt in c["label_counts"].items()) + ".")
    if c.get("quarantined"):
        L.append(f"- Quarantined: {c['quarantined']} unreadable image file(s) left out "
                 f"(`python -m sweeps data inspect` lists them with the reason).")
    if c.get("flagged"):
        L.append("- Left out of the features by the adapter's leakage guard: " + "; ".join(
            f"`{col}` ({why})" for col, why in c["flagged"].items()) + ".")
    for m, k in (c.get("no_readable_image") or {}).items():
        L.append(f"- {k} sample(s) have no readable {m} image (every listed file unreadable): they count as missing {m} "
                 f"(fusion sees no {m} for them), not as samples with an image.")
    dups = c.get("duplicates") or {}
    if dups.get("groups"):
        L.append(f"- Identical images under different patients: {dups['groups']} ({dups['samples']} samples), found by a "
                 f"hash of the decoded pixels; " + ("their patients were grouped together for every split."
                                                    if dups.get("merged") else
                                                    "NOT grouped (merge_duplicates=False): copies may sit on both sides "
                                                    "of a split, so these figures may be optimistic."))
    L.append("- Image modalities (samples present / missing): " + (", ".join(
        f"{m} {s['present']}/{s['missing']}" for m, s in c["modalities"].items()) or "none (tabular and text only)") + ".")
    L.append(f"- Evaluation: {meta['folds']}-fold stratified cross-validation grouped by patient (no patient on both "
             f"sides), seed {meta['seed']}. Every metric comes from out-of-fold predictions over all n = {n} samples. "
             f"Everything learned ({_learned(view)}) is fitted on each fold's training part only.")
    L.append(f"- Brackets are 95% confidence intervals: percentile bootstrap over the {n_pat} patients "
             f"({N_BOOT} resamples, seed 0) of the out-of-fold predictions. They reflect sampling of patients, not the "
             f"selection of the best configuration among many (a best-of-sweep figure is optimistic).")
    if meta.get("trainable") == "finetune":
        L.append("- Fine-tuning: the image encoder, the pooling and per-modality linear heads were trained end to end "
                 "inside each fold on its training part (no frozen embeddings, PCA or separate head)"
                 + (f"; the {meta['scheduler']} scheduler stopped trials whose per-epoch signal fell behind" if meta.get("scheduler") else "")
                 + ".")
    if seeds:
        n_seeds = sorted({len(g) for g in seeds.values()})
        L.append(f"- Repeated seeds: configurations ran {'/'.join(map(str, n_seeds))} times, repeat r using seed "
                 f"{meta['seed']} + r for its folds and models; \"mean ± SD (n)\" is over those seeds (SD with n − 1).")
    if meta.get("options", {}).get("early_stop") and meta.get("trainable") != "finetune":
        n_stop = len(meta.get("stopped_early", []))
        L.append(f"- Early stopping (--early-stop): ASHA on each trial's running out-of-fold {meta['metric']} after "
                 f"1, 2, 4 ... of its {meta['folds']} folds stopped {n_stop} trial(s) that fell behind; they are listed "
                 "under Failed trials, apart from every table and test here. Which trials stop depends on the order "
                 "trials reach a rung, so above concurrency 1 the run is not reproducible trial for trial.")
    srch = meta.get("search")
    if srch:
        slots = len(srch["slots"])
        if srch["sampler"] == "exhaustive":
            what = f"exhaustive: {srch['note']}"
        else:
            what = (f"Optuna TPE (seed {srch['seed']}, constant liar) proposed {slots} distinct configuration(s) "
                    f"(proposal i waits for trials 0..i−{srch['window']}, told in trial order: the same at any concurrency)")
        rep = srch["repeats_answered"]
        L.append(f"- Search: {what}; {rep} proposal(s) repeated an evaluated configuration and were answered from its "
                 f"result, not rerun; each configuration counts once"
                 + (f"; resumed {len(srch['resumes'])} time(s)" if srch.get("resumes") else "") + ".")
    stopped = len(meta.get("stopped_early", []))
    L.append(f"- Trials: {len({r.trial for r in rows})} finished, {len(view.failed)} failed, "
             + (f"{stopped} stopped early, " if stopped else "") + f"{len(view.unfinished)} unfinished. "
             f"Versions: " + ", ".join(f"{pkg} {ver}" for pkg, ver in meta["versions"].items()) + ".")
    L.append("")
    return L
