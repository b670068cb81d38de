"""Reference files: published numbers to set beside ours (the "Reference comparison" section is
``sections/reference_comparison.py``; the space check imports ``load`` to reject a bad file before a run).

A reference is a CSV of someone else's results, one row per configuration. Two layouts are read:
the lumbar seed project's ``model_results.csv`` (percent strings, its own column and model names,
mapped to ours below, with the caveats its notebooks call for), and a generic one whose columns use
our names (``accuracy``, ``f1_macro``, ``auc_macro``, and optionally ``head`` and ``pooling``).
Each layout carries the caveats the section states plainly: why the numbers are not like for like.

A leaf: imports nothing from the report package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


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
