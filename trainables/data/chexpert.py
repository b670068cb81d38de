"""Adapter for CheXpert / MIMIC-CXR style label tables: one CSV row per image, 14 pathology columns.

The CSV (CheXpert's ``train.csv``/``valid.csv``, or a MIMIC-CXR table merged to one row per image):

- an image path column (``Path``), relative to ``image_root``. CheXpert lists its paths from the
  folder above the CSV (``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg`` from
  inside ``CheXpert-v1.0-small/``): a path whose first folder repeats ``image_root``'s own name (and is
  not a folder inside it) is resolved from ``image_root``'s parent. ``image_root`` defaults to the
  CSV's folder.
- the 14 pathology columns with 1 (positive), 0 (negative), -1 (uncertain) or blank (not mentioned).
  Values may be written ``1.0``/``-1.0``. Anything else is an error naming the row and column.
- optional ``Sex``, ``Age``, ``Frontal/Lateral``, ``AP/PA`` (CheXpert) or ``ViewPosition`` (MIMIC),
  and a report column (``Report``, ``Reports`` or ``report``, or ``report_col``).

Samples are studies. CheXpert: patient = the image's grandparent folder, study = its parent folder
(``patient00001`` / ``study1``; ``sample_id = "patient00001/study1"`` because study names repeat across
patients; MIMIC-CXR-JPG paths ``files/p10/p10000032/s50414267/x.jpg`` split the same way). A CSV with
``subject_id`` and ``study_id`` columns (MIMIC) uses those instead: patient = subject_id, sample =
study_id. The views of a study are instances of modality ``frontal`` or ``lateral``, from the
``Frontal/Lateral`` column, else ``ViewPosition`` (PA/AP... frontal; LATERAL/LL/RL lateral), else the
file name (``..._frontal.jpg``). An image whose view cannot be told is left out, counted and logged.

Labels are given per image row but belong to the study: rows of one study that disagree are an error
naming the rows. Targets, one per pathology, ``Target(name, "binary", ("0", "1"), masked=True)``, named
in snake_case (``PATHOLOGIES``: "No Finding" -> ``no_finding``, "Pleural Effusion" ->
``pleural_effusion``, ...). The policies of the CheXpert paper (Irvin et al. 2019) for -1:
``uncertainty="ignore"`` (U-Ignore: masked, NaN), ``"ones"`` (U-Ones: "1"), ``"zeros"`` (U-Zeros: "0");
for blank: ``blank="ignore"`` (masked) or ``"zeros"`` (not mentioned = negative).

Tabular features (when present): ``sex``, ``age`` and ``ap_pa`` (the projection of the study's first
frontal image: AP or PA). Nothing else of the CSV is carried over, and DICOM headers are only probed
for readability: no name, id or date read from them reaches the cohort.

Text: with a report column the cohort has a text column ``report``. The CheXpert labels are *extracted
from that report* (by the CheXpert labeler), so ``flagged["report"]`` says a text model reading it
reads the answer. A CSV with reports but no image path column (the labeler's
``labeled_reports.csv``) is a text-only cohort: one sample per row (``sample_id = patient_id`` = the
row's 1-based position among the data rows, or subject_id/study_id when present), no modalities.

Files: an image that is not there is a missing instance (no row), counted and logged once; one that
cannot be opened (``probe_image``) is quarantined as ``{"path", "reason"}`` (``strict=True`` raises).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .adapter import Param, need_root, resolve_options
from .cohort import Cohort, CohortError, Target
from .quarantine import INSTANCE_COLUMNS, check_instances

__all__ = ["NAME", "OPTIONS", "PATHOLOGIES", "load"]

log = logging.getLogger(__name__)

PATHOLOGIES = {
    "No Finding": "no_finding",
    "Enlarged Cardiomediastinum": "enlarged_cardiomediastinum",
    "Cardiomegaly": "cardiomegaly",
    "Lung Opacity": "lung_opacity",
    "Lung Lesion": "lung_lesion",
    "Edema": "edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural_effusion",
    "Pleural Other": "pleural_other",
    "Fracture": "fracture",
    "Support Devices": "support_devices",
}
UNCERTAINTY = {"ignore": np.nan, "ones": "1", "zeros": "0"}  # what -1 becomes
BLANK = {"ignore": np.nan, "zeros": "0"}  # what a blank (not mentioned) becomes
REPORT_COLUMNS = ("Report", "Reports", "report")
REPORT_FLAG = ("the CheXpert labels are extracted from this report text by the CheXpert labeler: "
               "a text model reading it reads the answer")
_LATERAL_POSITIONS = {"LATERAL", "LL", "RL", "XTABLE LATERAL", "LARGE LATERAL"}


NAME = "chexpert"
OPTIONS = {
    "image_root": Param((str, os.PathLike), None, nullable=True,
                        doc="the folder the Path column is relative to (default: the CSV's folder)"),
    "path_col": Param(str, "Path", doc="the image path column"),
    "uncertainty": Param(str, "ignore", choices=tuple(UNCERTAINTY),
                         doc="what -1 (uncertain) becomes: ignore (masked), ones, zeros (the CheXpert paper's U-policies)"),
    "blank": Param(str, "ignore", choices=tuple(BLANK), doc="what a blank (not mentioned) becomes: ignore (masked), zeros"),
    "report_col": Param(str, None, nullable=True, doc=f"the report text column (default: the first of {', '.join(REPORT_COLUMNS)})"),
}


def load(root: str | Path | None = None, *, strict: bool = False, **options) -> Cohort:
    """Load a CheXpert/MIMIC-style CSV (``root``: the CSV, or a folder holding ``train.csv``) as a cohort."""
    o = resolve_options(NAME, OPTIONS, options)
    image_root, path_col, uncertainty, blank, report_col = (o[k] for k in OPTIONS)
    csv = need_root(NAME, root, "the labels CSV, or the folder holding train.csv")
    if csv.is_dir():
        csv = csv / "train.csv"
    if not csv.is_file():
        raise CohortError(f"{csv}: file not found (expected a CheXpert-style CSV)")
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CohortError(f"{csv}: not a readable CSV ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    df.columns = [c.strip() for c in df.columns]
    df.index = df.index + 2  # the spreadsheet row: the header is row 1
    missing = [c for c in PATHOLOGIES if c not in df.columns]
    if missing:
        raise CohortError(f"{csv}: pathology column(s) {missing} missing; expected all of {list(PATHOLOGIES)}")
    labels = _parse_labels(df, csv)
    report = _report_column(df, csv, report_col)

    if path_col not in df.columns:
        if report is None:
            raise CohortError(f"{csv}: no image path column {path_col!r} and no report column "
                              f"({', '.join(REPORT_COLUMNS)}): nothing to learn from")
        return _text_only(df, labels, report, csv, uncertainty, blank)

    ids = _ids(df, csv, path_col)
    _check_study_labels(labels, ids["sample_id"], csv)
    root = Path(image_root) if image_root is not None else csv.parent
    paths = _resolve(df[path_col], root)
    dup = paths.duplicated(keep=False)
    if dup.any():
        raise CohortError(f"{csv}: rows {list(paths.index[dup][:5])} list the same image "
                          f"{paths[dup].iloc[0]!r} (column {path_col!r})")
    view = _views(df, csv, path_col)

    first = ~ids["sample_id"].duplicated()
    samples = ids.loc[first, ["sample_id", "patient_id"]].reset_index(drop=True)
    for col, name in PATHOLOGIES.items():
        samples[name] = _apply_policy(labels.loc[first, col], uncertainty, blank).to_numpy()
    tabular = _tabular(df, csv, ids["sample_id"], view, first, samples)
    text = []
    if report is not None:
        samples["report"] = df.loc[first, report].to_numpy()
        text = ["report"]

    known = view.notna()
    if (~known).any():
        log.warning("chexpert %s: view unknown for %d image(s) (no Frontal/Lateral or ViewPosition value, no "
                    "'frontal'/'lateral' in the file name), left out; e.g. row %d", csv.name, int((~known).sum()),
                    int(view.index[~known][0]))
    rows = pd.DataFrame({"sample_id": ids["sample_id"], "modality": view, "path": paths})[known]
    rows = rows.sort_values(["sample_id", "modality", "path"], key=_natural_sort)
    instances, quarantine, n_missing = check_instances(rows, name=f"chexpert {csv.name}", strict=strict)

    description = (f"CheXpert-style {csv.name}: {len(samples)} studies of {samples['patient_id'].nunique()} "
                   f"patients, {len(instances)} images ({n_missing} absent, {len(quarantine)} quarantined, "
                   f"{int((~known).sum())} of unknown view); uncertain (-1) -> {uncertainty}, blank -> {blank}")
    return Cohort(name=NAME, samples=samples, instances=instances, targets=_targets(),
                  modalities=["frontal", "lateral"], tabular=tabular, text=text, description=description,
                  quarantine=quarantine, flagged={"report": REPORT_FLAG} if text else {})


# -- parsing ------------------------------------------------------------------------------------
def _parse_labels(df: pd.DataFrame, csv: Path) -> pd.DataFrame:
    """The 14 pathology columns as floats (1, 0, -1, NaN for blank); any other value is an error."""
    raw = df[list(PATHOLOGIES)].apply(lambda s: s.str.strip())
    num = raw.apply(pd.to_numeric, errors="coerce")
    bad = (raw != "") & ~num.isin([1.0, 0.0, -1.0])
    if bad.to_numpy().any():
        row, col = bad.stack()[lambda s: s].index[0]
        raise CohortError(f"{csv}: row {row}, column {col!r}: value {raw.at[row, col]!r} is not one of 1, 0, -1 or blank")
    return num


def _apply_policy(values: pd.Series, uncertainty: str, blank: str) -> pd.Series:
    """1 -> "1", 0 -> "0", -1 and blank by policy (NaN = masked)."""
    out = values.map({1.0: "1", 0.0: "0", -1.0: UNCERTAINTY[uncertainty]})
    return out.where(values.notna(), BLANK[blank]).astype(object)


def _report_column(df: pd.DataFrame, csv: Path, report_col: str | None) -> str | None:
    if report_col is not None:
        if report_col not in df.columns:
            raise CohortError(f"{csv}: report column {report_col!r} not found; columns: {list(df.columns)}")
        return report_col
    return next((c for c in REPORT_COLUMNS if c in df.columns), None)


def _ids(df: pd.DataFrame, csv: Path, path_col: str) -> pd.DataFrame:
    """patient_id and sample_id per row: subject_id/study_id columns, else the path's folders."""
    if {"subject_id", "study_id"} <= set(df.columns):
        ids = pd.DataFrame({"patient_id": df["subject_id"].str.strip(), "sample_id": df["study_id"].str.strip()})
        for col, src in (("patient_id", "subject_id"), ("sample_id", "study_id")):
            if (ids[col] == "").any():
                raise CohortError(f"{csv}: row {ids.index[ids[col] == ''][0]}, column {src!r}: blank")
        other = ids.groupby("sample_id")["patient_id"].nunique()
        if (other > 1).any():
            study = other.index[other > 1][0]
            raise CohortError(f"{csv}: study_id {study!r} belongs to several subject_id values "
                              f"(rows {list(ids.index[ids['sample_id'] == study][:5])})")
        return ids
    parts = df[path_col].str.strip().str.replace("\\", "/", regex=False).str.extract(r"([^/]+)/([^/]+)/[^/]+$")
    bad = parts[0].isna()
    if bad.any():
        row = parts.index[bad][0]
        raise CohortError(f"{csv}: row {row}, column {path_col!r}: path {df.at[row, path_col]!r} does not name "
                          f"<patient>/<study>/<image> (and there are no subject_id/study_id columns)")
    return pd.DataFrame({"patient_id": parts[0], "sample_id": parts[0] + "/" + parts[1]})


def _check_study_labels(labels: pd.DataFrame, sample_id: pd.Series, csv: Path) -> None:
    """Every image row of a study must carry the same labels."""
    differs = labels.groupby(sample_id.to_numpy()).nunique(dropna=False) > 1
    if differs.to_numpy().any():
        study, col = differs.stack()[lambda s: s].index[0]
        rows = list(sample_id.index[sample_id == study])
        values = [None if np.isnan(v) else v for v in labels.loc[rows, col]]
        raise CohortError(f"{csv}: rows {rows} (study {study!r}) disagree on column {col!r}: {values}; "
                          f"labels belong to the study and must agree across its images")


def _resolve(paths: pd.Series, root: Path) -> pd.Series:
    """Absolute paths; a path whose first folder is ``root``'s own name, and not a folder inside
    ``root``, is taken from root's parent (CheXpert's ``CheXpert-v1.0-small/train/...``)."""
    rel = paths.str.strip().str.replace("\\", "/", regex=False)
    root = root.resolve()
    from_parent = (rel.str.split("/").str[0] == root.name) & (not (root / root.name).is_dir())
    return pd.Series(np.where(from_parent, str(root.parent), str(root)), index=rel.index) + "/" + rel


def _views(df: pd.DataFrame, csv: Path, path_col: str) -> pd.Series:
    """``frontal``/``lateral`` per row (NaN where nothing tells)."""
    name = df[path_col].str.lower().str.extract(r"(frontal|lateral)[^/]*$")[0]
    if "Frontal/Lateral" in df.columns:
        given = df["Frontal/Lateral"].str.strip().str.lower()
        bad = ~given.isin(["frontal", "lateral", ""])
        if bad.any():
            row = given.index[bad][0]
            raise CohortError(f"{csv}: row {row}, column 'Frontal/Lateral': value {df.at[row, 'Frontal/Lateral']!r} "
                              f"is not Frontal or Lateral")
        return given.mask(given == "").fillna(name)
    if "ViewPosition" in df.columns:
        pos = df["ViewPosition"].str.strip().str.upper()
        by_pos = pd.Series(np.select([pos.isin(_LATERAL_POSITIONS) | pos.str.contains("LAT"),
                                      pos.str.match(r"^(PA|AP)\b")], ["lateral", "frontal"], ""), index=pos.index)
        return by_pos.mask(by_pos == "").fillna(name)
    return name


def _tabular(df: pd.DataFrame, csv: Path, sample_id: pd.Series, view: pd.Series, first: pd.Series,
             samples: pd.DataFrame) -> list[str]:
    """Add sex, age and ap_pa to ``samples`` when the CSV has them; return their names."""
    out = []
    sex = next((c for c in ("Sex", "sex") if c in df.columns), None)
    if sex:
        value = df.loc[first, sex].str.strip()
        samples["sex"] = value.mask(value == "").to_numpy()
        out.append("sex")
    age = next((c for c in ("Age", "age") if c in df.columns), None)
    if age:
        raw = df[age].str.strip()
        num = pd.to_numeric(raw, errors="coerce")
        bad = (raw != "") & num.isna()
        if bad.any():
            row = raw.index[bad][0]
            raise CohortError(f"{csv}: row {row}, column {age!r}: value {raw[row]!r} is not a number")
        samples["age"] = num[first].to_numpy(dtype=float)
        out.append("age")
    proj = next((c for c in ("AP/PA", "ViewPosition") if c in df.columns), None)
    if proj:
        value = df[proj].str.strip().str.upper()
        value = value.where((view == "frontal") & (value != ""))
        per_study = value.groupby(sample_id.to_numpy()).first()  # first frontal image's projection
        samples["ap_pa"] = samples["sample_id"].map(per_study).to_numpy()
        out.append("ap_pa")
    return out


def _text_only(df: pd.DataFrame, labels: pd.DataFrame, report: str, csv: Path, uncertainty: str,
               blank: str) -> Cohort:
    """One sample per report row, no image modalities."""
    if {"subject_id", "study_id"} <= set(df.columns):
        samples = pd.DataFrame({"sample_id": df["study_id"].str.strip().to_numpy(),
                                "patient_id": df["subject_id"].str.strip().to_numpy()})
    else:
        row_id = [str(k + 1) for k in range(len(df))]
        samples = pd.DataFrame({"sample_id": row_id, "patient_id": row_id})
    dup = samples["sample_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        raise CohortError(f"{csv}: rows {list(df.index[dup][:5])} repeat study_id {samples['sample_id'][dup].iloc[0]!r}")
    for col, name in PATHOLOGIES.items():
        samples[name] = _apply_policy(labels[col], uncertainty, blank).to_numpy()
    samples["report"] = df[report].to_numpy()
    instances = pd.DataFrame({c: pd.Series(dtype=object if c in ("sample_id", "modality", "path") else np.int64)
                              for c in INSTANCE_COLUMNS})
    return Cohort(name=NAME, samples=samples, instances=instances, targets=_targets(), modalities=[],
                  text=["report"], flagged={"report": REPORT_FLAG},
                  description=f"CheXpert-style reports {csv.name}: {len(samples)} reports, text only; "
                              f"uncertain (-1) -> {uncertainty}, blank -> {blank}")


def _targets() -> list[Target]:
    return [Target(name, "binary", ("0", "1"), masked=True) for name in PATHOLOGIES.values()]


def _natural_sort(col: pd.Series) -> pd.Series:
    """Sort key putting 'view2' before 'view10'."""
    if col.name != "path":
        return col
    return col.map(lambda p: tuple((0, int(t), "") if t.isdigit() else (1, 0, t)
                                   for t in re.split(r"(\d+)", p) if t))
