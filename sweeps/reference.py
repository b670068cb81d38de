"""Published numbers beside ours: the report's "Reference comparison" section.

A reference is a CSV of someone else's results, one row per configuration. Two layouts are read:
the lumbar seed project's ``model_results.csv`` (percent strings, its own column and model names,
mapped to ours below, with the caveats its notebooks call for), and a generic one whose columns use
our names (``accuracy``, ``f1_macro``, ``auc_macro``, and optionally ``head`` and ``pooling``).
For each comparable group (per classifier, per pooling) the section sets their best row beside our
best configuration with its 95% CI, and states plainly why the numbers are not like for like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .report import SHOWN, RunView, _ci, _dim_value, _f, _head_label, _label, _table


class ReferenceError(ValueError):
    """A reference file that cannot be read or matched; the message names the file."""


@dataclass
class Layout:
    """How to read one kind of reference file."""

    name: str
    metrics: dict[str, str]  # our metric -> their column
    groups: dict[str, str] = field(default_factory=dict)  # "classifier" / "pooling" -> their column
    ours: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)  # group kind -> their value -> our names
    caveats: tuple[str, ...] = ()


LUMBAR_SEED = Layout(
    name="the lumbar seed project's published results (RSNA 2024 lumbar spine)",
    metrics={"accuracy": "TsAccuracy", "f1_macro": "F1Score", "auc_macro": "AUC-ROC"},
    groups={"classifier": "Model", "pooling": "EmbeddingNetwork"},
    ours={
        "classifier": {"SVC": ("svc",), "LGBM": ("lightgbm",), "XGBoost": ("xgboost",),
                       "Ensemble(XBGBagging)": ("bagging(xgboost)",), "ANN": ("mlp",)},
        # AAL: their attention network; ResNet50: slice embeddings averaged; MN152: a 3D MedicalNet volume
        # encoder, which has no counterpart here
        "pooling": {"AAL": ("attention", "gated_attention"), "ResNet50": ("mean",), "MN152": ()},
    },
    caveats=(
        "**Their split and n.** Most of their rows come from one train/test hold-out (`K-Fold` NIL), the ANN rows from "
        "their own k-fold; the table gives no test-set size (the seed projects tested on 48 to 133 samples), no "
        "confidence interval, and their configurations were compared on that same test set. Ours are out-of-fold over "
        "every sample, grouped by patient, with patient-bootstrap CIs.",
        "**Their attention was not trained.** Their `AAL` (attention) embeddings came from a randomly initialised, "
        "untrained attention layer and a random 2048→512 projection; ours is trained on each fold's training part.",
        "**Their AUC** was averaged over the folds where it was defined (folds missing a class were dropped); ours is "
        "the one-vs-rest macro AUC over all out-of-fold predictions.",
        "**Their F1** averaging (macro or weighted) is not stated, and their accuracy on imbalanced labels rewards the "
        "majority class (compare their accuracy with their F1).",
        "**Their `MN152`** is a 3D MedicalNet volume encoder with no counterpart in this sweep; their `ResNet50` rows "
        "average slice embeddings, which we set beside our `mean` pooling.",
    ),
)

GENERIC = Layout(
    name="a generic results table",
    metrics={"accuracy": "accuracy", "f1_macro": "f1_macro", "auc_macro": "auc_macro"},
    groups={"classifier": "head", "pooling": "pooling"},
    caveats=("**Their split, n and selection** are not recorded in the file: read their numbers as point estimates "
             "without uncertainty, possibly chosen on their test set.",),
)

LAYOUTS = (LUMBAR_SEED, GENERIC)


def _number(x) -> float:
    """``"90.94%"`` -> 0.9094; plain numbers as they are; blanks -> NaN."""
    if isinstance(x, str):
        x = x.strip()
        if not x:
            return np.nan
        if x.endswith("%"):
            return float(x[:-1]) / 100
    return float(x)


def load(path: Path) -> tuple[Layout, pd.DataFrame]:
    """Read a reference CSV: its layout, and a table with our metric names (fractions) beside their
    grouping columns. Raises ReferenceError naming the file when it is missing or unrecognised."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceError(f"reference file {path} not found")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise ReferenceError(f"reference file {path}: cannot be read as CSV ({exc})") from None
    raw.columns = [c.strip() for c in raw.columns]
    layout = next((lay for lay in LAYOUTS if any(col in raw.columns for col in lay.metrics.values())), None)
    if layout is None:
        raise ReferenceError(f"reference file {path}: no metric column found; expected one of "
                             + ", ".join(sorted({c for lay in LAYOUTS for c in lay.metrics.values()})))
    table = pd.DataFrame(index=raw.index)
    for ours, col in layout.metrics.items():
        vals = []
        for line, val in enumerate(raw[col] if col in raw.columns else [""] * len(raw), start=2):  # line 1: header
            try:
                vals.append(_number(val))
            except ValueError:
                raise ReferenceError(f"reference file {path}, line {line}, column {col!r}: {val!r} is not a number") from None
        table[ours] = np.array(vals, dtype=float)
    if table.isna().all().all():
        raise ReferenceError(f"reference file {path}: no numbers in its metric columns "
                             + ", ".join(c for c in layout.metrics.values() if c in raw.columns))
    for kind, col in layout.groups.items():
        if col in raw.columns:
            table[kind] = raw[col].str.strip()
    return layout, table


def _ours_key(r, kind: str) -> str:
    """Our name of a row's pooling or head (``bagging(xgboost)`` for an ensemble: its members matter)."""
    from trainables.heads import ENSEMBLES

    if kind == "pooling":
        return r.arm
    name = _dim_value(r.config, "head")
    return _head_label(r.config["head"]) if name in ENSEMBLES else name


def section(v: RunView, path: Path) -> list[str]:
    """The "Reference comparison" section: per classifier and per pooling, their best row beside our
    best configuration (with its 95% CI), then the caveats."""
    layout, ref = load(path)
    metric = v.metric
    c = v.meta["cohort"]
    theirs_by = metric if metric in SHOWN and ref[metric].notna().any() else next(m for m in SHOWN if ref[m].notna().any())
    L = ["## Reference comparison", ""]
    L.append(f"Published numbers from `{path.name}` ({layout.name}, {len(ref)} configurations) beside ours. For each "
             f"group: their best row by their {_label(theirs_by)}, and our best configuration by {_label(metric)} "
             f"with 95% patient-bootstrap CIs (n = {len(v.y)} samples). Read the caveats below before the numbers.")
    L.append("")
    hdr = ["group", "source", "results"] + [_label(m) for m in SHOWN]
    for kind in ("classifier", "pooling"):
        if kind not in ref.columns:
            continue
        table = []
        for value in sorted(ref[kind].unique()):
            part = ref[ref[kind] == value]
            best = part.loc[part[theirs_by].fillna(-np.inf).idxmax()]  # accuracy, F1, AUC: higher is better
            table.append([f"`{value}`", f"theirs: best of {len(part)} by {_label(theirs_by)}", len(part)]
                         + [_f(best[m]) for m in SHOWN])
            names = layout.ours.get(kind, {}).get(value, (value,))
            ours = [r for r in v.rows if _ours_key(r, kind) in names]
            label = "ours: " + ("/".join(f"`{n}`" for n in names) if names else "no counterpart")
            if ours:
                b = v.best(ours)
                ci = v.ci_of(b)
                table.append(["", f"{label}, best (trial {b.trial})", len(ours)] + [_ci(b.metrics[m], ci[m]) for m in SHOWN])
            else:
                table.append(["", label + (", not run in this sweep" if names else ""), 0] + ["—"] * len(SHOWN))
        L.append(f"### Per {kind}")
        L.append("")
        L.append(_table(hdr, table))
        L.append("")
    L.append("Caveats:")
    L.append("")
    L.append(f"- **Different cohort and labels.** Ours: cohort `{c['name']}`, target `{c['target']}`, n = {c['samples']} "
             f"samples from {c['patients']} patients. Theirs: {layout.name}. Unless both are the same cohort with the "
             f"same label definition, only the ranking of methods can be compared, not the numbers.")
    L += [f"- {line}" for line in layout.caveats]
    L.append("- **Best-of selection on both sides.** A best row per group is optimistic for them and for us; our CIs "
             "cover the sampling of patients, not that selection.")
    L.append("")
    return L
