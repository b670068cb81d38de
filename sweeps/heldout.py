"""The held-out test part and ``python -m sweeps finalize RUN``.

A space's ``test_fraction`` (or ``--test-fraction``) sets aside a test part before the sweep starts:
about that fraction of the patients, grouped by patient and stratified on the target, seeded with the
space's seed (``trainables.splits.holdout_split``). The trials get a DataHandle that holds the
development part only, so their cross-validation never sees a test sample.

After the sweep, ``finalize_run`` takes the best configuration by the space's metric, and the best
of each compared pooling arm, refits each on the whole development part (``sweeps.model.Model.fit``),
and scores them once on the test part. It writes:

- ``<run>/model/``: the chosen configuration as a model artifact (``sweeps.model``);
- ``<run>/model/test.json``: sizes, the configurations, their cross-validated and test metrics, and
  how many times the test part was used (1; ``--force`` re-scores and says so);
- ``<run>/model/test.npz``: the test labels, pseudonymous patient keys, each model's probabilities
  and the demographic subgroup of each sample (sex, age band), for the report's held-out section.

A run without a test part still gets its model (refitted on all of its samples), and no test files.
``python -m sweeps finalize RUN`` (``sweeps.finalize``) does this for a finished run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

log = logging.getLogger("sweeps")

TEST_FILE = "test.json"
TEST_ARRAYS = "test.npz"
DEMOGRAPHIC_NAMES = {"sex": "sex", "gender": "sex", "age": "age"}  # inferred when a cohort marks none
AGE_BANDS = ((0, 40, "<40"), (40, 60, "40-59"), (60, 200, "60+"))


def subset_handle(handle, rows: np.ndarray):
    """The DataHandle restricted to ``rows`` (positions in its sample order)."""
    rows = np.asarray(rows)
    pick = (lambda df: None if df is None else df.iloc[rows].reset_index(drop=True))
    ids = [handle.sample_ids[i] for i in rows]
    inst = handle.instances
    if inst is not None:
        inst = inst[inst["sample_id"].isin(set(ids))].reset_index(drop=True)
    return replace(handle, sample_ids=ids, y=handle.y[rows], groups=handle.groups[rows], tabular=pick(handle.tabular),
                   texts=pick(handle.texts), Y=None if handle.Y is None else handle.Y[rows], instances=inst,
                   shared=None)  # bags shared for the whole sample list do not fit a subset


def split_test(spec, handle):
    """``(development handle, test handle or None)``: the test part the space asks for, set aside."""
    from trainables.splits import holdout_split

    from .spec import SpecError

    f = float(getattr(spec, "test_fraction", 0) or 0)
    if not f:
        return handle, None
    if handle.Y is not None or spec.trainable != "frozen":
        raise SpecError(f"space {spec.name!r}: test_fraction works with one target and trainable='frozen' for now")
    try:
        dev, test = holdout_split(handle.y, handle.groups, f, spec.seed)
    except ValueError as exc:
        raise SpecError(f"space {spec.name!r}: {exc}") from None
    log.info("test part set aside: %d samples (%d patients); the trials see the %d development samples only",
             len(test), len(np.unique(handle.groups[test])), len(dev))
    return subset_handle(handle, dev), subset_handle(handle, test)


def demographic_columns(columns, marked=None) -> dict[str, str]:
    """{column: "sex" | "age"}: the cohort's marked demographic columns, else inferred from names."""
    if marked:
        return {c: ("age" if "age" in c.lower() else "sex") for c in marked if c in columns}
    return {c: DEMOGRAPHIC_NAMES[c.lower()] for c in columns if c.lower() in DEMOGRAPHIC_NAMES}


def subgroups(tabular, marked=None) -> dict[str, np.ndarray]:
    """{column: (n,) subgroup label}: sex as given, age in bands; "unknown" where missing."""
    import pandas as pd

    out = {}
    if tabular is None:
        return out
    for col, kind in demographic_columns(list(tabular.columns), marked).items():
        v = tabular[col]
        if kind == "age":
            num = pd.to_numeric(v, errors="coerce").to_numpy(float)
            lab = np.full(len(v), "unknown", dtype=object)
            for lo, hi, name in AGE_BANDS:
                lab[(num >= lo) & (num < hi)] = name
            out[col] = np.array(lab.tolist(), dtype=str)
        else:
            out[col] = np.array(v.astype(object).where(v.notna(), "unknown").astype(str).tolist(), dtype=str)
    return out


def encoder_info(spec, config: dict) -> dict | None:
    """What the model needs to embed new images the way its training images were."""
    from trainables.encoders import ENCODERS, resolve_weights, weights_id

    enc = config.get("encoder")
    if not enc:
        return None
    w = spec.weights.get(enc)
    return {"name": enc, "preprocessing": config.get("preprocessing", "grayscale_norm"),
            "input_size": int(ENCODERS[enc].input_size), "weights": w if w in (None, "packaged") else "local file",
            "weights_id": weights_id(resolve_weights(enc, w))}


def chosen_rows(run_dir: Path):
    """(chosen row, {arm: best row of that arm}) from the run's trial records, by the space's metric."""
    from .report.run import load

    view = load(run_dir)
    rows = [r for r in view.rows if np.isfinite(r.metrics.get(view.metric, np.nan))]
    if not rows:
        raise RuntimeError(f"run {run_dir.name!r} has no finished trial to choose from")
    best = view.best(rows)
    arms = {p: view.best([r for r in rows if r.arm == p]) for p in view.poolings if any(r.arm == p for r in rows)}
    arms.setdefault(best.arm, best)
    return best, arms, view


def finalize_run(run_dir: Path, spec, dev, test=None, *, force: bool = False) -> Path:
    """Refit the chosen configuration (and each arm's best) on ``dev``, save the model, and score them
    once on ``test`` (when given). Returns ``<run>/model``."""
    from trainables.metrics import compute_metrics
    from trainables.trainable import trial_data

    from .model import Model

    run_dir = Path(run_dir)
    out = run_dir / "model"
    prev = None
    if test is not None and (out / TEST_FILE).exists():
        prev = json.loads((out / TEST_FILE).read_text())
        if not force:
            raise FileExistsError(f"run {run_dir.name!r}: its test part was already used ({prev.get('evaluated')}); "
                                  "a second look at the test part is no longer a held-out test. `finalize --force` "
                                  "re-scores it and records the count")
    best, arms, view = chosen_rows(run_dir)
    fitted, probas, summary = {}, {}, {}
    for arm, row in sorted(arms.items(), key=lambda kv: kv[1] is not best):  # the chosen one first
        key = (row.trial, row.arm)
        if key not in fitted:
            cfg = row.config
            data = trial_data(dev, cfg.get("encoder"), cfg.get("preprocessing", "grayscale_norm"))
            fitted[key] = Model.fit(cfg, data, arm=row.arm, seed=spec.seed, encoder=encoder_info(spec, cfg),
                                    extra={"run": run_dir.name, "trial": row.trial, "metric": view.metric,
                                           "cv": {k: row.metrics.get(k) for k in ("accuracy", "f1_macro", "auc_macro")},
                                           "cohort": view.meta["cohort"]["name"], "adapter": spec.cohort,
                                           "target": view.meta.get("target"),
                                           "chosen": row is best})
        if test is not None:
            td = trial_data(test, row.config.get("encoder"), row.config.get("preprocessing", "grayscale_norm"))
            pred = fitted[key].predict(td.bags, td.tabular, n=len(td.y))
            probas[arm] = pred.proba
            summary[arm] = {"trial": row.trial, "arm": row.arm, "config": row.config, "chosen": row is best,
                            "cv": row.metrics.get(view.metric), "test": compute_metrics(td.y, pred.proba, td.class_names)}
    model = fitted[(best.trial, best.arm)]
    model.save(out)
    explanations = {}
    if test is not None and spec.cohort == "synthetic" and spec.test_fraction:  # a known truth: do the explanations find the lesion?
        explanations = explain_on_truth(spec, {a: fitted[(r.trial, r.arm)] for a, r in arms.items()}, test, out)
    if test is None:
        log.info("model written: %s (no test part in this run)", out)
        return out
    groups = {f"demo__{c}": v for c, v in subgroups(test.tabular).items()}
    np.savez(out / (".tmp-" + TEST_ARRAYS), y=test.y, groups=test.groups.astype(str), classes=np.array(test.class_names),
             **{f"proba__{a}": p for a, p in probas.items()}, **groups)
    os.replace(out / (".tmp-" + TEST_ARRAYS), out / TEST_ARRAYS)
    info = {"used": (prev or {}).get("used", 0) + 1, "evaluated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "fraction": float(spec.test_fraction), "seed": spec.seed, "metric": view.metric,
            "source": "fraction" if spec.test_fraction else "separate cohort",
            "n_samples": int(len(test.y)), "n_patients": int(len(np.unique(test.groups))),
            "n_dev_samples": int(len(dev.y)), "n_dev_patients": int(len(np.unique(dev.groups))),
            "chosen": best.arm, "models": summary, "demographic": sorted(c[6:] for c in groups),
            "explanations": explanations}
    tmp = out / (".tmp-" + TEST_FILE)
    tmp.write_text(json.dumps(info, indent=1, default=str))
    os.replace(tmp, out / TEST_FILE)
    m = summary[best.arm]["test"]
    print(f"Held-out test ({info['n_samples']} samples, {info['n_patients']} patients, used once): chosen "
          f"{best.arm} (trial {best.trial}) accuracy {m['accuracy']:.3f}, macro-F1 {m['f1_macro']:.3f}, "
          f"macro-AUC {m['auc_macro']:.3f}", flush=True)
    return out


def explain_on_truth(spec, models: dict, test, out: Path) -> dict:
    """{arm: ``sweeps.explain.lesion_scores``} on the test part's studies of a synthetic cohort, with a
    few Grad-CAM overlays of the chosen model in ``out/explain``; an arm whose measurement fails
    records the error instead (the model and the test scores stand)."""
    from trainables.data import synthetic

    from .explain import lesion_scores

    opts = {**{k: p.default for k, p in synthetic.OPTIONS.items()}, **spec.cohort_options}
    seed, n, size, compression = int(opts["seed"]), int(opts["n_patients"]), int(opts["size"]), str(opts["compression"])
    # the run's own cohort: every option, or a default-size one would be generated, its lesion in other pixels
    root = opts.get("root") or synthetic.ensure(None, seed=seed, n_patients=n, size=size, compression=compression)
    res = {}
    for k, (arm, model) in enumerate(models.items()):
        try:
            overlays = None
            if model.meta.get("chosen"):
                overlays = out / "explain"
                overlays.mkdir(exist_ok=True)
            res[arm] = lesion_scores(model, root, seed, n, limit=40, overlays=overlays, only=set(test.sample_ids),
                                     size=size, compression=compression)
        except Exception as exc:  # noqa: BLE001  (a measurement, not the model: record and go on)
            log.warning("explanations for %s could not be measured: %s", arm, exc)
            res[arm] = {"error": f"{type(exc).__name__}: {exc}"}
    return res
