"""Adapter for the series layout (RSNA-like): a labels table, a series table, and one folder of
DICOM slices per series: ``labels.csv`` (study_id, patient key, targets, tabular, text),
``series.csv`` (study_id, series_id, series_description), ``images/<study_id>/<series_id>/*.dcm``.

Slices are ordered by ImagePositionPatient projected on the slice normal (InstanceNumber as the
fallback) by :func:`trainables.data.images.order_series`, which reads geometry tags only, once: later loads
use the header index (:mod:`trainables.data.header_index`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .cohort import Cohort, CohortError, Target
from . import header_index


def load_series_layout(root: Path, *, name: str, modality_of: dict[str, str], target: str, classes, tabular=(),
                       text=(), patient_col: str = "patient_key", description: str = "") -> Cohort:
    root = Path(root)
    for f in ("labels.csv", "series.csv"):
        if not (root / f).exists():
            raise CohortError(f"{root / f}: file not found (expected the series layout: labels.csv, series.csv, images/)")
    labels = pd.read_csv(root / "labels.csv", dtype={"study_id": str, patient_col: str})
    series = pd.read_csv(root / "series.csv", dtype={"study_id": str, "series_id": str})
    for col in ("study_id", patient_col, target):
        if col not in labels.columns:
            raise CohortError(f"{root / 'labels.csv'}: no column {col!r}")
    if labels[target].isna().any():
        row = labels.index[labels[target].isna()][0]
        raise CohortError(f"{root / 'labels.csv'}: row {row + 2} (study {labels.loc[row, 'study_id']}) has no {target!r} label")
    samples = labels.rename(columns={"study_id": "sample_id", patient_col: "patient_id"})
    samples = samples[["sample_id", "patient_id", target, *tabular, *text]].reset_index(drop=True)
    listed = []
    for r in series.itertuples(index=False):
        desc = r.series_description
        if desc not in modality_of:
            raise CohortError(f"{root / 'series.csv'}: series {r.series_id} has unknown description {desc!r}; "
                              f"known: {sorted(modality_of)}")
        folder = root / "images" / r.study_id / r.series_id
        files = sorted(e.path for e in os.scandir(folder) if e.is_file()) if folder.is_dir() else []  # no stat per file
        if not files:  # a series with no slices counts as missing, and says where
            raise CohortError(f"{folder}: series {r.series_id} of study {r.study_id} has no slices")
        listed.append((r, files))
    index = header_index.scan(root / "images", [f for _, files in listed for f in files])  # read once, in parallel
    rows = []
    for r, files in listed:
        desc = r.series_description
        for k, (path, _) in enumerate(index.order(files)):
            rows.append((r.study_id, modality_of[desc], k, path, 0))
    index.flush()  # the series' orders, for the next load
    instances = pd.DataFrame(rows, columns=["sample_id", "modality", "order", "path", "frame"])
    return Cohort(name=name, samples=samples, instances=instances,
                  targets=[Target(target, "multiclass", tuple(classes))],
                  modalities=list(dict.fromkeys(modality_of.values())), tabular=list(tabular), text=list(text),
                  description=description)
