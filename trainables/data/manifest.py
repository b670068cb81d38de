"""Generic manifest adapter: a CSV or parquet table, one row per sample, becomes a cohort.

The manifest names, per row, the sample and patient keys, one or more target columns, tabular and text
columns, and image columns. Each image column maps to a modality and holds, per row, one of:

- the path of one image file (DICOM, PNG/JPEG/BMP/TIFF, ``.npy``);
- the path of a folder of slices (a DICOM series, ordered by :func:`~trainables.data.images.order_series`:
  position along the slice normal, then Instance Number, then natural file-name order);
- several such paths separated by ``;`` (instances follow in the order given).

Relative paths are resolved against ``image_root`` (default: the manifest's folder). A blank cell means the
sample has no image of that modality. Several image columns may feed one modality (in column order).

Validation collects every problem before raising one :class:`CohortError` that lists them (capped at
``MAX_PROBLEMS`` lines, with a count of the rest): missing columns (with a did-you-mean), blank or
duplicate sample ids, blank patient ids, unknown and blank labels (blank is allowed only for a target
named in ``masked_targets``), and, with ``strict``, missing and unreadable image files. Lines are
numbered as in a spreadsheet (the header is line 1) for CSV, rows from 1 for parquet.

Without ``strict``, a missing image path is a missing instance (counted in the cohort's description),
and an unreadable file (read by :func:`read_slice`) goes to ``cohort.quarantine``.

Tabular columns are kept as read: numbers stay numeric, anything else is categorical, blanks are NaN.
Text columns: blank -> "".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..lookup import check as check_name, unknown as unknown_name
from ..registry import REQUIRED
from .adapter import Param, as_text, hint, need_root, resolve_options
from .cohort import Cohort, CohortError, Target
from .images import ImageReadError, order_series
from .quarantine import unreadable

__all__ = ["NAME", "OPTIONS", "load", "load_config", "MAX_PROBLEMS"]

MAX_PROBLEMS = 50
NAME = "manifest"
OPTIONS = {
    "targets": Param(dict, REQUIRED, doc="{column: classes in index order, or None for the sorted distinct values}"),
    "sample_col": Param(str, "sample_id", doc="the sample key column"),
    "patient_col": Param(str, "patient_id", doc="the patient key column (the grouping key of every split)"),
    "image_cols": Param(dict, None, nullable=True, doc="{image column: modality}"),
    "tabular": Param((list, tuple), (), doc="tabular feature columns"),
    "text": Param((list, tuple), (), doc="text columns"),
    "image_root": Param((str, os.PathLike), None, nullable=True,
                        doc="the folder relative image paths are resolved against (default: the manifest's folder)"),
    "masked_targets": Param((list, tuple), (), doc="targets whose blanks mean 'not labelled'"),
    "name": Param(str, None, nullable=True, doc="the cohort's name (default: the manifest's file stem)"),
}


def load(root: str | Path | None = None, *, strict: bool = False, **options) -> Cohort:
    """Read the manifest at ``root`` (``.csv`` or ``.parquet``) into a validated cohort.

    ``options`` (``OPTIONS``): ``targets``: ``{column: classes}``, classes in index order, or None to use the
    sorted distinct values. ``image_cols``: ``{column: modality}``. ``masked_targets``: targets whose blanks
    mean "not labelled". ``name``: the cohort's name (default: the manifest's file stem).
    """
    o = resolve_options(NAME, OPTIONS, options)
    targets, sample_col, patient_col, image_cols, tabular, text, image_root, masked_targets, name = (o[k] for k in OPTIONS)
    path = need_root(NAME, root, "the manifest .csv or .parquet file")
    image_cols = dict(image_cols or {})
    df, where = _read_table(path)
    root = Path(image_root) if image_root is not None else path.parent
    problems: list[str] = []

    wanted = {sample_col, patient_col, *targets, *image_cols, *tabular, *text}
    missing_cols = sorted(c for c in wanted if c not in df.columns)
    problems += [f"column {c!r} not found{hint(c, map(str, df.columns))}" for c in missing_cols]
    problems += [f"masked target {t!r} is not one of the targets {list(targets)}" for t in masked_targets
                 if t not in targets]
    present = wanted - set(missing_cols)

    keys = {}
    for col in (sample_col, patient_col):
        if col in present:
            keys[col] = as_text(df[col])
            problems += [f"{where(i)}, column {col!r}: blank" for i in np.flatnonzero(keys[col].isna())]
    if sample_col in keys:
        ids = keys[sample_col]
        dup = ids[ids.duplicated(keep=False) & ids.notna()]
        for sid, rows in dup.groupby(dup, sort=False).groups.items():
            problems.append(f"{sample_col} {sid!r} appears on {' and '.join(where(i) for i in rows)}")

    labels, target_list = {}, []
    for col, classes in targets.items():
        if col not in present:
            continue
        values = as_text(df[col])
        known = tuple(str(c) for c in classes) if classes is not None else tuple(sorted(values.dropna().unique()))
        masked = col in masked_targets
        if not masked:
            problems += [f"{where(i)}, column {col!r}: no label (blank; list {col!r} in masked_targets if a "
                         f"blank means 'not labelled')" for i in np.flatnonzero(values.isna())]
        unknown = values.notna() & ~values.isin(known)
        for i in np.flatnonzero(unknown):
            problems.append(f"{where(i)}, column {col!r}: " + unknown_name("label", values.iloc[i], known, noun="values"))
        labels[col] = values
        target_list.append(Target(col, "binary" if len(known) == 2 else "multiclass", known, masked=masked))

    parts, missing_files = [], []  # parts: (row, modality, column, files of one path)
    for col, modality in image_cols.items():
        if col not in present:
            continue
        cells = as_text(df[col])
        for i in np.flatnonzero(cells.notna()):
            for part in (p.strip() for p in cells.iloc[i].split(";")):
                full = (root / part).resolve() if part else None
                if full is None or not full.exists():
                    missing_files.append(f"{where(i)}, column {col!r}: file not found: {part!r}")
                elif full.is_dir():
                    files = sorted(str(f) for f in full.iterdir() if f.is_file() and not f.name.startswith("."))
                    if not files:
                        missing_files.append(f"{where(i)}, column {col!r}: folder has no files: {part!r}")
                    parts.append((i, modality, col, files))
                else:
                    parts.append((i, modality, col, [str(full)]))

    bad = unreadable([f for *_, files in parts for f in files])
    rows = []  # (row, modality, path) in instance order
    for i, modality, col, files in parts:
        try:
            ordered = [p for p, _ in order_series([f for f in files if f not in bad])]
        except ImageReadError as exc:
            problems.append(f"{where(i)}, column {col!r}: cannot order the slices ({exc})")
            continue
        rows += [(i, modality, p) for p in ordered]
    if strict:
        problems += missing_files + [f"{where(i)}, column {col!r}: unreadable image {f} ({bad[f]})"
                                     for i, _, col, files in parts for f in files if f in bad]
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise CohortError(f"manifest {path}: {len(problems)} problem(s):\n  - " + "\n  - ".join(shown) + more)

    samples = pd.DataFrame({"sample_id": keys[sample_col], "patient_id": keys[patient_col]})
    for col in targets:
        samples[col] = labels[col]
    for col in tabular:
        samples[col] = df[col]
    for col in text:
        samples[col] = df[col].astype(object).where(df[col].notna(), "").map(str)
    instances = pd.DataFrame([(samples["sample_id"].iloc[i], m, p, 0) for i, m, p in rows],
                             columns=["sample_id", "modality", "path", "frame"])
    instances.insert(2, "order", instances.groupby(["sample_id", "modality"]).cumcount())
    description = f"manifest {path.name}: {len(samples)} samples, {len(instances)} image instances"
    if missing_files:
        description += f", {len(missing_files)} image path(s) missing (missing instances)"
    return Cohort(name=name or path.stem, samples=samples, instances=instances, targets=target_list,
                  modalities=list(dict.fromkeys(image_cols.values())), tabular=list(tabular), text=list(text),
                  description=description,
                  quarantine=[{"path": f, "reason": reason} for f, reason in bad.items()])


def load_config(config: Mapping) -> Cohort:
    """:func:`load` from a plain dict: ``{"path": ..., "targets": {...}, ...}`` with :func:`load`'s keywords."""
    for key in config:
        check_name("manifest config key", key, ["path", *OPTIONS, "strict"], error=CohortError)
    for key in ("path", "targets"):
        if key not in config:
            raise CohortError(f"manifest config: {key!r} is required")
    config = dict(config)
    return load(config.pop("path"), **config)


def _read_table(path: Path):
    """The manifest as a DataFrame and a function naming row ``i`` (0-based) as the user sees it."""
    if not path.is_file():
        raise CohortError(f"manifest {path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path), lambda i: f"row {i + 1}"
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ","), lambda i: f"line {i + 2}"
    except Exception as exc:  # parser errors of any kind
        raise CohortError(f"manifest {path}: cannot be read as {suffix[1:]} ({exc})") from None
    raise CohortError(f"manifest {path}: unsupported type {suffix!r}; use .csv, .tsv or .parquet")
