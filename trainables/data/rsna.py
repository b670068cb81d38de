"""RSNA 2024 Lumbar Spine Degenerative Classification: the Kaggle layout as a cohort, the
competition metric (the small generated stand-in in the same layout is :mod:`trainables.data.standins.rsna`).

Layout under ``root`` (as Kaggle ships it):

- ``train.csv``: ``study_id`` and 25 ``<condition>_<level>`` columns valued ``Normal/Mild``,
  ``Moderate``, ``Severe`` or blank (not labelled);
- ``train_series_descriptions.csv``: ``study_id, series_id, series_description`` with the
  description one of ``Sagittal T1``, ``Sagittal T2/STIR``, ``Axial T2``;
- ``train_images/<study_id>/<series_id>/<instance>.dcm``.

What :func:`load` makes of it:

- One sample per study; ``sample_id`` = ``patient_id`` = ``study_id`` (RSNA has one study per
  patient).
- 25 masked 3-class targets in ``train.csv`` order; a blank stays NaN ("not labelled").
- Modalities ``sagittal_t1``, ``sagittal_t2_stir``, ``axial_t2``. A study may have several series
  of one type (342 study/type pairs in the real data, mostly Axial T2): all of them are kept, series
  after series in the order of their lines in the series CSV, ``order`` running on across them
  (0..n1-1 for the first, n1.. for the second); the ``series_id`` column of ``instances`` tells them
  apart.
- Slices within a series are ordered by :func:`trainables.data.images.order_series` (position along
  the slice normal, then Instance Number, then natural file-name order; non-DICOM slices in natural
  file-name order). Files ending in ``.dcm``, ``.png``, ``.jpg``, ``.jpeg`` or ``.npy`` are slices
  (one slice a file, ``frame`` 0); other files and hidden files are ignored.
- A listed series whose folder is absent or holds no slice: that modality is missing for that study
  (no instance rows), counted in one summary log line. A study with no images at all is still a
  sample: its labels are usable and every modality is missing for it.
- A file whose header cannot be read while ordering (corrupt or truncated before its pixel data) is
  set aside in ``quarantine`` as ``{"path", "reason"}``, unless ``strict=True``, which raises
  naming it. A file whose header reads but whose pixel data is damaged is only found when
  :func:`~trainables.data.images.read_slice` reads it.
- No ``train_images`` folder is an error unless ``labels_only=True`` (labels and series checked,
  no instances).

Line numbers in errors are spreadsheet lines (the header is line 1), one CSV row per line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..lookup import check as check_name
from .adapter import Param, hint, need_root, resolve_options
from .cohort import MASKED, Cohort, CohortError, Target
from . import header_index
from .quarantine import order_or_quarantine

log = logging.getLogger("sweeps.data.rsna")

NAME = "rsna_lumbar"
LABELS_CSV = "train.csv"
SERIES_CSV = "train_series_descriptions.csv"
CONDITIONS = ("spinal_canal_stenosis", "left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing",
              "left_subarticular_stenosis", "right_subarticular_stenosis")
LEVELS = ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")
TARGET_NAMES = tuple(f"{c}_{lv}" for c in CONDITIONS for lv in LEVELS)  # train.csv column order
CLASSES = ("Normal/Mild", "Moderate", "Severe")
MODALITY_OF = {"Sagittal T1": "sagittal_t1", "Sagittal T2/STIR": "sagittal_t2_stir", "Axial T2": "axial_t2"}
MODALITIES = tuple(MODALITY_OF.values())
SLICE_SUFFIXES = frozenset({".dcm", ".png", ".jpg", ".jpeg", ".npy"})
SAMPLE_WEIGHTS = (1.0, 2.0, 4.0)  # Normal/Mild, Moderate, Severe: the competition's sample weights
# The metric's condition groups: left and right sides are scored together.
GROUPS = {
    "spinal_canal_stenosis": ("spinal_canal_stenosis",),
    "neural_foraminal_narrowing": ("left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing"),
    "subarticular_stenosis": ("left_subarticular_stenosis", "right_subarticular_stenosis"),
}


# -- reading the CSVs ----------------------------------------------------------------------------
def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a CSV as strings (a blank cell is ``""``), index = spreadsheet line number; blank lines
    dropped; a missing file, unparsable content or missing column is a CohortError naming the file."""
    if not path.is_file():
        raise CohortError(f"{path}: file not found (the RSNA 2024 layout has {LABELS_CSV}, {SERIES_CSV} "
                          f"and train_images/)")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CohortError(f"{path}: not a readable CSV ({str(exc).strip().splitlines()[0]})") from None
    df.index = pd.RangeIndex(2, len(df) + 2, name="line")
    df = df[(df != "").any(axis=1)]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise CohortError(f"{path}: line 1 (header): no column(s) {missing}{hint(missing[0], df.columns)}")
    return df


def _check_ids(path: Path, df: pd.DataFrame, key: list[str]) -> None:
    """Every ``key`` cell non-blank and the ``key`` tuple unique, or a CohortError naming the line."""
    for col in key:
        blank = df[col].str.strip() == ""
        if blank.any():
            raise CohortError(f"{path}: line {blank.idxmax()}, column {col!r}: blank id")
    dup = df.duplicated(subset=key, keep=False)
    if dup.any():
        lines = df.index[dup]
        first = df.loc[lines[0], key].tolist()
        raise CohortError(f"{path}: lines {lines[0]} and {lines[1]}: {'/'.join(key)} {'/'.join(first)} appears twice")


def read_labels(path: str | Path, targets: Sequence[str] = TARGET_NAMES) -> pd.DataFrame:
    """``train.csv`` checked: ``study_id`` (str) and the ``targets`` columns, blank as NaN.

    Every one of the 25 columns must be present and no other; a value other than the three classes
    or blank is a CohortError naming line, column and value.
    """
    path = Path(path)
    df = _read_csv(path, ["study_id", *TARGET_NAMES])
    extra = [c for c in df.columns if c not in ("study_id", *TARGET_NAMES)]
    if extra:
        raise CohortError(f"{path}: line 1 (header): unexpected column(s) {extra}; expected study_id and "
                          f"the 25 condition/level columns{hint(extra[0], TARGET_NAMES)}")
    _check_ids(path, df, ["study_id"])
    values = df[list(TARGET_NAMES)]
    bad = ~values.isin(CLASSES) & (values != "")
    if bad.any().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        line, col = bad.index[r], bad.columns[c]
        raise CohortError(f"{path}: line {line}, column {col!r}: unknown label {values.loc[line, col]!r}; "
                          f"expected one of {list(CLASSES)} or blank (not labelled)")
    return df[["study_id", *targets]].replace("", np.nan)


def read_series(path: str | Path) -> pd.DataFrame:
    """``train_series_descriptions.csv`` checked, with a ``modality`` column; index = line number.

    An unknown description is a CohortError naming line and value.
    """
    path = Path(path)
    df = _read_csv(path, ["study_id", "series_id", "series_description"])
    _check_ids(path, df, ["study_id", "series_id"])
    unknown = ~df["series_description"].isin(list(MODALITY_OF))
    if unknown.any():
        line = unknown.idxmax()
        raise CohortError(f"{path}: line {line}, column 'series_description': unknown description "
                          f"{df.loc[line, 'series_description']!r}; known: {list(MODALITY_OF)}")
    out = df[["study_id", "series_id", "series_description"]].copy()
    out["modality"] = out["series_description"].map(MODALITY_OF)
    return out


# -- the cohort ----------------------------------------------------------------------------------
OPTIONS = {
    "images_dir": Param(str, "train_images", doc="the folder under root holding <study>/<series>/*.dcm"),
    "modalities": Param((list, tuple, str), None, nullable=True,
                        doc=f"keep only these series types, in this order (default all: {', '.join(MODALITIES)})"),
    "targets": Param((list, tuple, str), None, nullable=True,
                     doc="keep only these of the 25 condition/level targets, in this order (default all)"),
    "max_studies": Param(int, None, low=1, nullable=True, doc="keep the first studies of train.csv"),
    "labels_only": Param(bool, False, doc="load the labels without images (no train_images folder needed)"),
}


def load(root: str | Path | None = None, *, strict: bool = False, **options) -> Cohort:
    """The RSNA 2024 lumbar spine training set at ``root`` as a validated cohort (see the module doc).

    ``options`` (``OPTIONS``): ``targets`` and ``modalities`` restrict to some of them (in the order given);
    ``max_studies`` keeps the first studies of ``train.csv``; ``labels_only`` loads labels without images;
    ``strict`` raises on an unreadable image file instead of quarantining it.
    """
    o = resolve_options(NAME, OPTIONS, options)
    root = need_root(NAME, root, "the folder holding train.csv and train_images/")
    images_dir, max_studies, labels_only = o["images_dir"], o["max_studies"], o["labels_only"]
    names = _choose(o["targets"], TARGET_NAMES, "target")
    mods = _choose(o["modalities"], MODALITIES, "modality")
    images = root / images_dir
    if not labels_only and not images.is_dir():
        raise CohortError(f"{images}: folder not found; the RSNA layout keeps the DICOM slices there "
                          f"(images_dir=...) - pass labels_only=True to load the labels without images")
    labels = read_labels(root / LABELS_CSV, names)
    series = read_series(root / SERIES_CSV)
    orphans = int((~series["study_id"].isin(labels["study_id"])).sum())
    if orphans:
        log.info("%s: %d series in %s belong to no study of %s: ignored", NAME, orphans, SERIES_CSV, LABELS_CSV)
    if max_studies is not None:
        labels = labels.head(max_studies)
    samples = labels.rename(columns={"study_id": "sample_id"}).reset_index(drop=True)
    samples.insert(1, "patient_id", samples["sample_id"])
    series = series[series["study_id"].isin(samples["sample_id"]) & series["modality"].isin(mods)]

    quarantine: list[dict] = []
    if labels_only:
        instances = pd.DataFrame(columns=["sample_id", "modality", "order", "path", "frame", "series_id"])
        note = "labels only"
    else:
        instances, missing = _instances(images, series, quarantine, strict)
        if missing:
            log.info("%s: %d of %d listed series have no slices under %s (folder absent or empty, or every "
                     "file unreadable): that modality is missing for their studies", NAME, missing, len(series), images)
        if quarantine:
            log.warning("%s: %d unreadable image file(s) quarantined (cohort.quarantine lists them)", NAME,
                        len(quarantine))
        note = f"{len(series) - missing} of {len(series)} listed series with slices, {len(instances)} slices"
    return Cohort(
        name=NAME, samples=samples, instances=instances,
        targets=[Target(n, "multiclass", CLASSES, masked=True) for n in names], modalities=mods,
        description=f"RSNA 2024 lumbar spine degenerative classification: {len(samples)} studies, "
                    f"{len(names)} targets, {note}",
        quarantine=quarantine,
    )


def _instances(images: Path, series: pd.DataFrame, quarantine: list[dict], strict: bool) -> tuple[pd.DataFrame, int]:
    """One row per slice of every listed series, ``order`` running on across a study's series of one
    modality (series in CSV line order); returns the rows and the number of series without slices."""
    frames, missing = [], 0
    next_order: dict[tuple[str, str], int] = {}
    listed = [(study, series_id, modality, _slice_files(images / study / series_id))
              for study, series_id, modality in series[["study_id", "series_id", "modality"]].itertuples(index=False)]
    index = header_index.scan(images, [f for *_, files in listed for f in files])  # headers read once, in parallel
    for study, series_id, modality, files in listed:
        ordered = order_or_quarantine(files, quarantine, strict, index)
        if not ordered:
            missing += 1
            continue
        start = next_order.get((study, modality), 0)
        next_order[(study, modality)] = start + len(ordered)
        frames.append(pd.DataFrame({"sample_id": study, "modality": modality,
                                    "order": np.arange(start, start + len(ordered)),
                                    "path": [p for p, _ in ordered], "frame": 0, "series_id": series_id}))
    index.flush()  # the series' orders, for the next load
    columns = ["sample_id", "modality", "order", "path", "frame", "series_id"]
    instances = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return instances[columns], missing


def _slice_files(folder: Path) -> list[str]:
    """Absolute paths (symlinks kept as they are) of the slice files in ``folder``; [] if absent."""
    if not folder.is_dir():
        return []
    return [os.path.abspath(p) for p in folder.iterdir()
            if p.suffix.lower() in SLICE_SUFFIXES and not p.name.startswith(".") and p.is_file()]


def _choose(asked: Sequence[str] | str | None, valid: Sequence[str], what: str) -> list[str]:
    """``asked`` checked against ``valid`` (all of them when None), duplicates dropped, order kept."""
    if asked is None:
        return list(valid)
    asked = [asked] if isinstance(asked, str) else list(dict.fromkeys(asked))
    if not asked:
        raise CohortError(f"no {what} chosen; valid: {list(valid)}")
    for a in asked:
        check_name(what, a, valid, what + "s", error=CohortError)
    return asked


# -- the competition metric ----------------------------------------------------------------------
# Followed: the competition's metric notebook, as copied in public solution repositories (function
# ``score(solution, submission, row_id_column_name, any_severe_scalar)``): per condition group
# ('spinal', 'foraminal', 'subarticular' matched in the row id, so left and right are pooled)
# ``sklearn.metrics.log_loss(y_true, y_pred, sample_weight)`` with sample weights 1/2/4 for
# Normal/Mild/Moderate/Severe; ``any_severe_spinal`` per study: label = max over the spinal levels of
# the Severe indicator, weight = max over those levels of the sample weight (so 4 when a level is
# Severe, else 2 when one is Moderate, else 1), prediction = max over the levels of P(Severe); the
# score is the average of the four losses (any_severe_scalar = 1). Unlabelled levels are not in the
# solution, so they are not scored and take no part in the maxima. sklearn's log_loss clips to
# [eps, 1 - eps] (eps = float64 machine epsilon) and then renormalises each row.
_EPS = float(np.finfo(np.float64).eps)


def weighted_log_loss(y: np.ndarray, proba: np.ndarray, weights: Sequence[float] = SAMPLE_WEIGHTS, *,
                      sample_weight: np.ndarray | None = None) -> float:
    """Sample-weighted multiclass log loss ``sum(w * -log p[y]) / sum(w)``.

    ``y``: class index per row, ``MASKED`` (-1) rows ignored; ``proba``: ``(n, k)`` probabilities,
    clipped to [eps, 1-eps] and renormalised per row; a row's weight is ``weights[y]`` unless
    ``sample_weight`` gives one per row. NaN when no row is labelled.
    """
    y = np.asarray(y).ravel()
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != y.shape[0]:
        raise ValueError(f"proba must be (n, k) with n = len(y) = {y.shape[0]}, got shape {proba.shape}")
    if not np.isfinite(proba).all() or (proba < 0).any():
        raise ValueError("probabilities must be finite and non-negative")
    keep = y != MASKED
    if ((y[keep] < 0) | (y[keep] >= proba.shape[1]) | (y[keep] != np.round(y[keep]))).any():
        raise ValueError(f"labels must be class indices 0..{proba.shape[1] - 1} or {MASKED} (masked)")
    if not keep.any():
        return float("nan")
    yk = y[keep].astype(np.int64)
    if sample_weight is None:
        if len(weights) != proba.shape[1]:
            raise ValueError(f"{len(weights)} class weights for {proba.shape[1]} classes")
        w = np.asarray(weights, dtype=np.float64)[yk]
    else:
        w = np.asarray(sample_weight, dtype=np.float64).ravel()[keep]
    p = np.clip(proba[keep], _EPS, 1 - _EPS)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-(w * np.log(p[np.arange(len(yk)), yk])).sum() / w.sum())


def scored_targets(names: Sequence[str], classes: Mapping[str, Sequence[str]]) -> list[str]:
    """The targets of a trial the competition score covers: lumbar targets with the competition's classes
    (the ``rsna_score`` objective in :data:`trainables.metrics.OBJECTIVES` calls this)."""
    return [t for t in names if t in TARGET_NAMES and tuple(classes[t]) == tuple(CLASSES)]


def competition_score(labels: Mapping[str, np.ndarray], proba: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The RSNA 2024 score of per-study predictions (see the comment above for the definition followed).

    ``labels[target]``: class index per study (-1 masked), same study order for every target;
    ``proba[target]``: ``(n_studies, 3)`` probabilities in ``CLASSES`` order. Keys are target names
    (any subset of the 25). Returns the weighted log loss of each group, ``any_severe_spinal`` and
    ``score``, their mean; a part with no labelled row is NaN and left out of the mean.
    """
    unknown = [n for n in labels if n not in TARGET_NAMES]
    if unknown:
        check_name("target", unknown[0], TARGET_NAMES, error=ValueError)
    absent = [n for n in labels if n not in proba]
    if absent:
        raise ValueError(f"no prediction for target(s) {absent}")
    lengths = {len(np.asarray(labels[n])) for n in labels} | {len(np.asarray(proba[n])) for n in labels}
    if len(lengths) > 1:
        raise ValueError(f"every target needs one row per study; got lengths {sorted(lengths)}")

    out: dict[str, float] = {}
    for group, conditions in GROUPS.items():
        names = [n for n in labels if n.rsplit("_", 2)[0] in conditions]
        out[group] = (weighted_log_loss(np.concatenate([np.asarray(labels[n]).ravel() for n in names]),
                                        np.concatenate([np.asarray(proba[n], dtype=np.float64) for n in names]))
                      if names else float("nan"))

    spinal = [n for n in labels if n.startswith("spinal_canal_stenosis_")]
    out["any_severe_spinal"] = float("nan")
    if spinal:
        y = np.stack([np.asarray(labels[n]).ravel() for n in spinal], axis=1)
        p_severe = np.stack([np.asarray(proba[n], dtype=np.float64)[:, 2] for n in spinal], axis=1)
        scored = y != MASKED
        study = scored.any(axis=1)
        any_severe = ((y == 2) & scored).any(axis=1).astype(np.int64)
        weight = np.where(scored, np.asarray(SAMPLE_WEIGHTS)[np.where(scored, y, 0).astype(np.int64)], 0.0).max(axis=1)
        pred = np.clip(np.where(scored, p_severe, 0.0).max(axis=1), 0.0, 1.0)
        out["any_severe_spinal"] = weighted_log_loss(np.where(study, any_severe, MASKED),
                                                     np.stack([1 - pred, pred], axis=1), sample_weight=weight)
    parts = np.array([out[k] for k in (*GROUPS, "any_severe_spinal")])
    out["score"] = float(np.nanmean(parts)) if np.isfinite(parts).any() else float("nan")
    return out
