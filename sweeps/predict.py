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
import os
from pathlib import Path

from .runs import parse_options


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a run name (its model/ folder) or the path of a model folder")
    p.add_argument("--data", required=True, help="the cohort's folder (or manifest file)")
    p.add_argument("--cohort", help="the cohort adapter (default: the one the model was trained on)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="a cohort adapter option")
    p.add_argument("--weights", help="the encoder weights file, when the model was trained with a local one")
    p.add_argument("--out", required=True, help="the CSV to write")
    p.add_argument("--storage", help="the folder the run was started with")


def main(a) -> int:
    import sys

    from .model import ModelError, load_cohort, load_model, predict_cohort

    try:
        model = load_model(model_dir(a.run))
        cohort = load_cohort(model, a.data, a.cohort, parse_options(a.option))
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
