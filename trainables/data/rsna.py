"""RSNA 2024 Lumbar Spine Degenerative Classification: the Kaggle layout as a cohort, the
competition metric, and a small generated stand-in in the same layout.

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

import difflib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .cohort import MASKED, Cohort, CohortError, Target
from .files import atomic_dir
from .images import ImageReadError, order_series

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
        raise CohortError(f"{path}: line 1 (header): no column(s) {missing}{_did_you_mean(missing[0], df.columns)}")
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
                          f"the 25 condition/level columns{_did_you_mean(extra[0], TARGET_NAMES)}")
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
def load(root: str | Path, *, strict: bool = False, images_dir: str = "train_images",
         modalities: Sequence[str] | None = None, targets: Sequence[str] | None = None,
         max_studies: int | None = None, labels_only: bool = False) -> Cohort:
    """The RSNA 2024 lumbar spine training set at ``root`` as a validated cohort (see the module doc).

    ``targets`` and ``modalities`` restrict to some of them (in the order given); ``max_studies``
    keeps the first studies of ``train.csv``; ``labels_only`` loads labels without images;
    ``strict`` raises on an unreadable image file instead of quarantining it.
    """
    root = Path(root)
    names = _choose(targets, TARGET_NAMES, "target")
    mods = _choose(modalities, MODALITIES, "modality")
    if max_studies is not None and (not isinstance(max_studies, int) or max_studies < 1):
        raise CohortError(f"max_studies must be a positive integer, got {max_studies!r}")
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
    for study, series_id, modality in series[["study_id", "series_id", "modality"]].itertuples(index=False):
        ordered = _order(_slice_files(images / study / series_id), quarantine, strict)
        if not ordered:
            missing += 1
            continue
        start = next_order.get((study, modality), 0)
        next_order[(study, modality)] = start + len(ordered)
        frames.append(pd.DataFrame({"sample_id": study, "modality": modality,
                                    "order": np.arange(start, start + len(ordered)),
                                    "path": [p for p, _ in ordered], "frame": 0, "series_id": series_id}))
    columns = ["sample_id", "modality", "order", "path", "frame", "series_id"]
    instances = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return instances[columns], missing


def _slice_files(folder: Path) -> list[str]:
    """Absolute paths (symlinks kept as they are) of the slice files in ``folder``; [] if absent."""
    if not folder.is_dir():
        return []
    return [os.path.abspath(p) for p in folder.iterdir()
            if p.suffix.lower() in SLICE_SUFFIXES and not p.name.startswith(".") and p.is_file()]


def _order(files: list[str], quarantine: list[dict], strict: bool) -> list[tuple[str, float]]:
    """``order_series(files)``, setting aside each file it cannot read (one at a time: the error
    names the file) until the rest orders; ``strict`` raises on the first instead."""
    remaining = list(files)
    while remaining:
        try:
            return order_series(remaining)
        except ImageReadError as exc:
            if strict or exc.path not in remaining:
                raise CohortError(f"{exc.path}: unreadable image file ({exc.reason}); strict=True stops here, "
                                  f"strict=False would quarantine it") from None
            quarantine.append({"path": exc.path, "reason": exc.reason})
            remaining.remove(exc.path)
    return []


def _choose(asked: Sequence[str] | str | None, valid: Sequence[str], what: str) -> list[str]:
    """``asked`` checked against ``valid`` (all of them when None), duplicates dropped, order kept."""
    if asked is None:
        return list(valid)
    asked = [asked] if isinstance(asked, str) else list(dict.fromkeys(asked))
    if not asked:
        raise CohortError(f"no {what} chosen; valid: {list(valid)}")
    for a in asked:
        if a not in valid:
            raise CohortError(f"unknown {what} {a!r}; valid: {list(valid)}{_did_you_mean(a, valid)}")
    return asked


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f". Did you mean {close[0]!r}?" if close else ""


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
        raise ValueError(f"unknown target {unknown[0]!r}; valid: {list(TARGET_NAMES)}{_did_you_mean(unknown[0], TARGET_NAMES)}")
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


# -- the generated stand-in ----------------------------------------------------------------------
_FIRST = ["Henrike", "Bartosz", "Yuki", "Matteo", "Adaeze", "Soren", "Celestine", "Grigori", "Paloma", "Tunde"]
_LAST = ["Van-Ostrander", "Kwiatkowska", "Hashimura", "Bellweather", "Onyekachi", "Strandqvist", "Zamfirescu",
         "Marchetti", "Oyelaran", "Thistlewood"]


def standin(out: str | Path, *, n_studies: int = 12, seed: int = 0, labels_csv: str | Path | None = None,
            series_csv: str | Path | None = None) -> Path:
    """Write a small dataset in the Kaggle layout at ``out`` (which must not exist) and return it.

    The three CSVs plus ``train_images/`` with tiny 32x32 16-bit DICOM slices carrying
    ImagePositionPatient/ImageOrientationPatient/InstanceNumber, under shuffled random file names,
    with made-up PatientName/PatientID/PatientBirthDate in their headers. A slice's pixel values
    encode its true position (about ``1000 + 100 * k``). Ids and labels come from the first
    ``n_studies`` rows of ``labels_csv`` (with ``series_csv``, by default the series CSV beside it)
    when given, else they are made up. Built so that loading it exercises the edge cases: one study
    has two Sagittal T2/STIR series, one series folder is absent, one is empty and (from 3 studies)
    the last study has no image folder at all. ``truth.json`` records the true slice order and the
    missing series. Written in a temporary folder renamed into place.
    """
    import pydicom  # noqa: F401  (fail early with ImportError if missing)

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; remove it or choose another folder")
    if n_studies < 1:
        raise ValueError(f"n_studies must be at least 1, got {n_studies}")
    rng = np.random.default_rng(seed)
    if labels_csv is not None:
        labels_csv = Path(labels_csv)
        labels = read_labels(labels_csv).head(n_studies).reset_index(drop=True)
        series = read_series(Path(series_csv) if series_csv else labels_csv.parent / SERIES_CSV)
        series = series[series["study_id"].isin(labels["study_id"])]
        series = series[["study_id", "series_id", "series_description"]].reset_index(drop=True)
    else:
        labels, series = _made_up_tables(rng, n_studies)
    series = _with_two_stir(rng, labels, series)
    with atomic_dir(out) as tmp:
        truth = _write_standin(tmp, rng, labels, series)
        (tmp / "truth.json").write_text(json.dumps(truth, indent=1))
    return out


def _made_up_tables(rng: np.random.Generator, n_studies: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random study/series ids, one series of each type per study, labels about 70/20/10 with ~4% blank."""
    studies = _unique_ids(rng, n_studies, 10**6, 4 * 10**9)
    labels = pd.DataFrame({"study_id": studies})
    for name in TARGET_NAMES:
        values = rng.choice(np.array(CLASSES, dtype=object), n_studies, p=[0.7, 0.2, 0.1])
        values[rng.random(n_studies) < 0.04] = np.nan
        labels[name] = values
    series_ids = _unique_ids(rng, 3 * n_studies, 10**8, 4 * 10**9, taken=studies)
    rows = [(study, series_ids[3 * i + j], desc)
            for i, study in enumerate(studies) for j, desc in enumerate(MODALITY_OF)]
    return labels, pd.DataFrame(rows, columns=["study_id", "series_id", "series_description"])


def _unique_ids(rng: np.random.Generator, n: int, low: int, high: int, taken: Iterable[str] = ()) -> list[str]:
    """``n`` distinct random integers in [low, high) as strings, none of them in ``taken``."""
    seen, ids = set(taken), []
    while len(ids) < n:
        value = str(rng.integers(low, high))
        if value not in seen:
            seen.add(value)
            ids.append(value)
    return ids


def _with_two_stir(rng: np.random.Generator, labels: pd.DataFrame, series: pd.DataFrame) -> pd.DataFrame:
    """The series table with one study holding two Sagittal T2/STIR series (a made-up second one added
    to the second study, or the first, unless some study already has two)."""
    stir = series[series["series_description"] == "Sagittal T2/STIR"]
    if stir["study_id"].duplicated().any():
        return series
    study = labels["study_id"].iloc[min(1, len(labels) - 1)]
    new_id = _unique_ids(rng, 1, 10**8, 4 * 10**9, taken=[*series["series_id"], *labels["study_id"]])[0]
    extra = pd.DataFrame([(study, new_id, "Sagittal T2/STIR")], columns=series.columns)
    at = series.index[series["study_id"] == study].max() + 1 if (series["study_id"] == study).any() else len(series)
    return pd.concat([series.iloc[:at], extra, series.iloc[at:]], ignore_index=True)


def _write_standin(root: Path, rng: np.random.Generator, labels: pd.DataFrame, series: pd.DataFrame) -> dict:
    """Write the CSVs and the DICOM tree; return the truth record."""
    labels.to_csv(root / LABELS_CSV, index=False)
    series.to_csv(root / SERIES_CSV, index=False)
    stir = series[series["series_description"] == "Sagittal T2/STIR"]
    two_stir = stir["study_id"][stir["study_id"].duplicated()].iloc[0]
    studies = labels["study_id"].tolist()
    no_folder = {studies[-1]} if len(studies) >= 3 else set()
    candidates = series.index[~series["study_id"].isin({two_stir, *no_folder})].tolist()
    picked = [int(i) for i in rng.permutation(candidates)[:2]]
    fate = {i: "absent" if k == 0 else "empty" for k, i in enumerate(picked)}
    fate.update({i: "no_study_folder" for i in series.index[series["study_id"].isin(no_folder)]})
    identity = {s: {"PatientName": f"{_LAST[rng.integers(len(_LAST))]}^{_FIRST[rng.integers(len(_FIRST))]}",
                    "PatientID": f"PID-{rng.integers(10**5, 10**6)}-{rng.integers(10**3, 10**4)}",
                    "PatientBirthDate": f"{rng.integers(1930, 2000)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"}
                for s in studies}
    images = root / "train_images"
    truth = {"two_stir_study": two_stir, "series": {}}
    for i, (study, series_id, desc) in series[["study_id", "series_id", "series_description"]].iterrows():
        record = {"study_id": study, "modality": MODALITY_OF[desc], "missing": fate.get(i), "files_in_order": []}
        truth["series"][series_id] = record
        if fate.get(i) in ("absent", "no_study_folder"):
            continue
        folder = images / study / series_id
        folder.mkdir(parents=True)
        if fate.get(i) == "empty":
            continue
        record["files_in_order"] = _write_series(folder, rng, desc, identity[study], study)
    return truth


def _write_series(folder: Path, rng: np.random.Generator, desc: str, identity: dict, study: str,
                  size: int = 32) -> list[str]:
    """Write one series of 5 to 9 slices in shuffled order under random names; return the names in
    true slice order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    n = int(rng.integers(5, 10))
    names = [f"{v}.dcm" for v in _unique_ids(rng, n, 10**6, 10**7)]
    sagittal = desc.startswith("Sagittal")
    # sagittal: slices step along -x, normal row x column = (-1, 0, 0); axial: along +z, normal (0, 0, 1)
    iop = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0] if sagittal else [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    series_uid = generate_uid()
    pattern = (np.add.outer(np.arange(size), np.arange(size)) % 7).astype(np.uint16)
    for k in rng.permutation(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.{study}"
        ds.SeriesInstanceUID = series_uid
        ds.Modality = "MR"
        ds.SeriesDescription = desc
        ds.PatientName = identity["PatientName"]
        ds.PatientID = identity["PatientID"]
        ds.PatientBirthDate = identity["PatientBirthDate"]
        ds.InstanceNumber = int(k + 1)
        pos = [-4.0 * k, -60.0, 40.0] if sagittal else [-60.0, -60.0, 4.0 * k]
        ds.ImagePositionPatient = [float(v) for v in pos]
        ds.ImageOrientationPatient = iop
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 4.0
        ds.Rows, ds.Columns = size, size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = (1000 + 100 * int(k) + pattern).astype("<u2").tobytes()
        ds.save_as(folder / names[k], enforce_file_format=True)
    return names
