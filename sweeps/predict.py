"""``python -m sweeps predict RUN --data PATH [--cohort NAME] --out preds.csv``: a run's model on a cohort.

One row per sample (study): ``sample_id``, ``predicted``, ``p_<class>`` for every class (they sum to
1), ``modalities`` (the image modalities the sample has, ';'-joined), ``attention`` (JSON: modality ->
the weight of each slice, in slice order), and ``label`` when the cohort has the target column.

The cohort is read with the adapter the model was trained on (or ``--cohort``); a cohort that lacks
one of the model's modalities or tabular columns is refused with an error naming what is missing, before
anything is embedded. A sample without some series is predicted the way the model was trained to
handle a missing modality (zero-filled with a presence indicator). Images are embedded with the
model's encoder, preprocessing and weights (checked by content hash), through the embedding cache.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd


def model_dir(run: str) -> Path:
    """A run name (its ``<run>/model``) or the path of a model folder."""
    p = Path(run)
    if (p / "model.json").exists():
        return p
    if (p / "model" / "model.json").exists():
        return p / "model"
    from .runner import runs_root

    d = runs_root() / run / "model"
    if not (d / "model.json").exists():
        raise FileNotFoundError(f"no model for run {run!r} at {d}; write it with `python -m sweeps finalize {run}`")
    return d


def check_cohort(model, cohort) -> None:
    """Refuse a cohort that lacks the model's modalities or columns, naming them."""
    from .model import ModelError

    lacks = [m for m in model.modalities if m not in cohort.modalities]
    if lacks:
        raise ModelError(f"cohort {cohort.name!r} has no {', '.join(lacks)} series; the model was trained on "
                         f"{', '.join(model.modalities)} (cohort modalities: {', '.join(cohort.modalities) or 'none'})")
    cols = [c for c in model.tabular_columns if c not in cohort.samples.columns]
    if cols:
        raise ModelError(f"cohort {cohort.name!r} lacks the tabular column(s) {', '.join(cols)} the model expects "
                         f"({', '.join(model.tabular_columns)})")


def encoder_weights(model, weights: str | None = None) -> str | None:
    """The encoder weights to embed with, checked against the identity the model recorded."""
    from trainables.encoders import resolve_weights, weights_id

    from .model import ModelError

    enc = model.encoder
    spec = weights if weights is not None else enc["weights"]
    if spec == "local file":
        raise ModelError(f"the model's encoder {enc['name']!r} used a local weights file; give it with --weights PATH")
    w = resolve_weights(enc["name"], spec)
    if weights_id(w) != enc["weights_id"]:
        raise ModelError(f"encoder weights {w or 'random init'} are not the ones the model was trained with "
                         f"(identity {weights_id(w)} != {enc['weights_id']})")
    return w


def frame(model, sample_ids: list[str], pred, labels: list | None = None) -> pd.DataFrame:
    """The prediction table (see the module docstring)."""
    classes = model.class_names
    out = pd.DataFrame({"sample_id": sample_ids, "predicted": [classes[k] for k in pred.proba.argmax(1)]})
    for k, c in enumerate(classes):
        out[f"p_{c}"] = pred.proba[:, k]
    out["modalities"] = [";".join(m for m in model.modalities if pred.presence[m][i]) for i in range(len(sample_ids))]
    out["attention"] = [json.dumps({m: [round(float(x), 5) for x in a[i][np.isfinite(a[i])]]
                                    for m, a in pred.attention.items() if pred.presence[m][i]})
                        for i in range(len(sample_ids))]
    if labels is not None:
        out["label"] = labels
    return out


def predict_cohort(model, cohort, *, weights: str | None = None, progress: bool = False) -> pd.DataFrame:
    """The prediction table of every sample of ``cohort``."""
    from trainables.embed import embed_cohort
    from trainables.pipeline import build_bags

    check_cohort(model, cohort)
    s = cohort.samples
    ids = s["sample_id"].astype(str).tolist()
    bags = {}
    if model.encoder and model.modalities:
        enc = model.encoder
        entry = embed_cohort(cohort, enc["name"], enc["preprocessing"], weights=encoder_weights(model, weights),
                             input_size=enc["input_size"], progress=progress)
        bags = build_bags(entry.embeddings, entry.index, s["sample_id"].tolist(), model.modalities)
    tab = s[model.tabular_columns].reset_index(drop=True) if model.tabular_columns else None
    pred = model.predict(bags, tab, n=len(s))
    target = model.meta.get("target")
    labels = s[target].tolist() if target and target in s.columns else None
    return frame(model, ids, pred, labels)


def load_cohort(model, data: str, cohort: str | None = None, options: dict | None = None):
    from trainables.data import COHORTS
    from trainables.registry import build

    name = cohort or model.meta.get("adapter")
    if not name:
        raise ValueError("the model does not record its cohort adapter; give --cohort NAME")
    return build(COHORTS, {"name": name, name: {**(options or {}), "root": str(Path(data).resolve())}}, "cohort")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run name (its model/ folder) or the path of a model folder")
    p.add_argument("--data", required=True, help="the cohort's folder (or manifest file)")
    p.add_argument("--cohort", help="the cohort adapter (default: the one the model was trained on)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="a cohort adapter option")
    p.add_argument("--weights", help="the encoder weights file, when the model was trained with a local one")
    p.add_argument("--out", required=True, help="the CSV to write")
    p.add_argument("--storage", help="the folder the run was started with")


def _options(pairs: list[str] | None) -> dict:
    out = {}
    for pair in pairs or []:
        k, sep, v = pair.partition("=")
        if not sep:
            raise ValueError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def main(a) -> int:
    import sys

    from .model import ModelError, load_model

    try:
        model = load_model(model_dir(a.run))
        cohort = load_cohort(model, a.data, a.cohort, _options(a.option))
        table = predict_cohort(model, cohort, weights=a.weights, progress=True)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, out)
    print(f"{len(table)} predictions -> {out}")
    return 0
