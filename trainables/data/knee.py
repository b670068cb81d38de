"""Knee osteoporosis adapter: a clinical sheet (one row per patient) and, optionally, class folders of
knee X-rays.

The sheet (``patient_details.csv`` or ``.xlsx``, as in the Mendeley "Knee Osteoporosis" v2 dataset) has
messy headers ("Joint Pain:", "Weight (KG) ", "BMI: ", "height  (meter)"). They are cleaned to
snake_case: stripped, lower-cased, trailing colons dropped, a unit in brackets kept as a suffix
("height  (meter)" -> ``height_m``, "Weight (KG) " -> ``weight_kg``), every other run of non-alphanumerics
-> "_". ``S.No`` is dropped; ``Patient Id`` becomes ``patient_id`` (also the ``sample_id``: one sample per
patient); ``Diagnosis`` becomes the target ``diagnosis`` (normal / osteopenia / osteoporosis, matched after
lower-casing and stripping). Text cells of the other columns are stripped and lower-cased ("obesity " and
"R.knee " become "obesity" and "r.knee"); blanks are NaN.

Leakage: the T-score *defines* the diagnosis (WHO: > -1 normal, -1 to -2.5 osteopenia, <= -2.5
osteoporosis). The leakage guard (:mod:`trainables.data.leakage`) runs on every clinical column and flags
the T-score; the adapter also flags the Z-score, the same bone-density measurement referenced to the
patient's age group (alone it scores below the guard's threshold, with age it largely recovers the
T-score). Flagged columns stay in ``samples`` and go to ``cohort.flagged``, out of ``cohort.tabular``
unless named in ``allow_leaky``.

Images (``images/<class>/<file>``; class folder names matched like the diagnosis) are joined to the
sheet by patient id, by the first rule that applies:

1. ``images/images.csv`` with columns ``file`` (path relative to ``images/``) and ``patient_id``: the
   Mendeley images are named per class without patient ids, so this mapping is the only join for them;
2. otherwise the file name: its stem, or else its leading token before ``_``, ``-``, a space or a dot
   ("OP1_left.png", "N12-2.jpg"), equal to a patient id (case-insensitive).

A file's class folder must agree with its patient's diagnosis (else an error naming the file). A file that
joins no patient, and one that cannot be read, goes to ``cohort.quarantine`` (``strict``: an error). A
path in ``images.csv`` that does not exist is a missing instance (``strict``: an error). Without an image
folder the cohort is tabular-only: no modalities, no instances.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..lookup import unknown as unknown_name
from .adapter import Param, as_text, hint, need_root, resolve_options
from .cohort import Cohort, CohortError, Target
from .images import order_series
from .quarantine import unreadable

__all__ = ["NAME", "OPTIONS", "load", "clean_header", "CLASSES", "TARGET", "REAL_HEADER"]

CLASSES = ("normal", "osteopenia", "osteoporosis")
TARGET = "diagnosis"
MODALITY = "xray"
SHEET_NAMES = ("patient_details.csv", "patient_details.xlsx")
MAPPING = "images.csv"
DROPPED = ("s_no",)
UNITS = {"meter": "m", "meters": "m", "metre": "m", "metres": "m"}
DEFINING = {"z_score_value": "bone-density Z-score: the T-score's measurement referenced to the patient's age "
                            "group; the T-score defines {target!r} and age plus Z-score recovers much of it"}

# The real sheet's header, as published (messy on purpose: the stand-in must exercise the cleaning).
REAL_HEADER = [
    "S.No", "Patient Id", "Joint Pain:", "Gender", "Age", "Menopause Age", "height  (meter)", "Weight (KG) ",
    "Smoker", "Alcoholic", "Diabetic", "Hypothyroidism", "Number of Pregnancies", "Seizer Disorder",
    "Estrogen Use", "Occupation ", "History of Fracture", "Dialysis:", "Family History of Osteoporosis",
    "Maximum Walking distance (km)", "Daily Eating habits", "Medical History", "T-score Value", "Z-Score Value",
    "BMI: ", "Site", "Obesity", "Diagnosis",
]


def clean_header(name: str) -> str:
    """``"height  (meter)"`` -> ``"height_m"``, ``"Joint Pain:"`` -> ``"joint_pain"``, ``"BMI: "`` -> ``"bmi"``."""
    s = str(name).strip().lower().rstrip(":").strip()
    s = re.sub(r"\(([^)]*)\)", lambda m: " " + UNITS.get(m.group(1).strip(), m.group(1)), s)
    return re.sub(r"[^0-9a-z]+", "_", s).strip("_")


NAME = "knee"
OPTIONS = {
    "sheet": Param((str, os.PathLike), None, nullable=True,
                   doc="the clinical sheet, .csv or .xlsx (default: root/patient_details.csv or .xlsx)"),
    "images": Param((str, os.PathLike), None, nullable=True,
                    doc="the folder of class folders of X-rays (default: root/images when present; none: tabular only)"),
    "allow_leaky": Param((list, tuple), (), doc="flagged columns to keep in tabular anyway (cleaned names)"),
    "threshold": Param(float, 0.95, low=0.5, high=1.0, doc="the leakage guard's AUC / balanced-accuracy threshold"),
}


def load(root: str | Path | None = None, *, strict: bool = False, **options) -> Cohort:
    """The knee cohort from ``sheet`` (default ``root/patient_details.csv`` or ``.xlsx``) and ``images``
    (default ``root/images`` when present; none: a tabular-only cohort).

    ``options`` (``OPTIONS``): ``allow_leaky``: flagged columns to keep in ``tabular`` anyway (cleaned
    names); ``threshold``: the leakage guard's AUC / balanced-accuracy threshold.
    """
    from .leakage import column_scores, scan  # scikit-learn, imported when a cohort is loaded

    o = resolve_options(NAME, OPTIONS, options)
    sheet, images, allow_leaky, threshold = o["sheet"], o["images"], o["allow_leaky"], o["threshold"]
    if sheet is None:
        root = need_root(NAME, root, "the folder holding the clinical sheet and image folders")
        found = [root / n for n in SHEET_NAMES if (root / n).is_file()]
        if not found:
            raise CohortError(f"knee: {root}: no {' or '.join(SHEET_NAMES)}; pass sheet= to name the sheet")
        sheet = found[0]
    root = Path(root) if root is not None else None
    if images is None and root is not None and (root / "images").is_dir():
        images = root / "images"
    sheet = Path(sheet)
    samples = _read_sheet(sheet)

    features = [c for c in samples.columns if c not in ("sample_id", "patient_id", TARGET)]
    unknown = [c for c in allow_leaky if c not in features]
    if unknown:
        raise CohortError("knee: " + unknown_name("column", unknown[0], features, "allow_leaky"))
    y = samples[TARGET].map({c: k for k, c in enumerate(CLASSES)}).to_numpy()
    groups = samples["patient_id"].to_numpy()
    flagged = scan(samples[features], y, groups, threshold=threshold, target=TARGET)
    for col, why in DEFINING.items():
        if col in features and col not in flagged:
            scores = column_scores(samples[[col]], y, groups).get(col)
            alone = f"; alone: AUC {scores[0]:.2f}, balanced accuracy {scores[1]:.2f} out-of-fold" if scores else ""
            flagged[col] = why.format(target=TARGET) + alone
    tabular = [c for c in features if c not in flagged or c in allow_leaky]

    if images is None:
        instances = pd.DataFrame(columns=["sample_id", "modality", "order", "path", "frame"])
        quarantine, missing = [], 0
    else:
        instances, quarantine, missing = _join_images(Path(images), samples, strict)
    description = (f"knee osteoporosis: {len(samples)} patients, {len(instances)} X-ray images"
                   + (f" ({missing} listed image file(s) missing)" if missing else "")
                   + ("" if images is not None else " (sheet only: tabular cohort)"))
    return Cohort(name="knee-osteoporosis", samples=samples, instances=instances,
                  targets=[Target(TARGET, "multiclass", CLASSES)], modalities=[MODALITY] if images is not None else [],
                  tabular=tabular, description=description, quarantine=quarantine, flagged=flagged)


def _read_sheet(sheet: Path) -> pd.DataFrame:
    """The cleaned sheet: ``sample_id``, ``patient_id``, ``diagnosis`` first, then the clinical columns."""
    if not sheet.is_file():
        raise CohortError(f"knee: sheet {sheet}: file not found")
    suffix = sheet.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm"):
            raw = pd.read_excel(sheet, dtype={"Patient Id": str})
        elif suffix == ".csv":
            raw = pd.read_csv(sheet, dtype={"Patient Id": str})
        else:
            raise CohortError(f"knee: sheet {sheet}: unsupported type {suffix!r}; use .csv or .xlsx")
    except ImportError as exc:
        raise CohortError(f"knee: sheet {sheet}: reading .xlsx needs openpyxl (pip install openpyxl): {exc}") from None
    except CohortError:
        raise
    except Exception as exc:  # parser errors of any kind
        raise CohortError(f"knee: sheet {sheet}: cannot be read ({exc})") from None

    names = [clean_header(c) for c in raw.columns]
    seen: dict[str, str] = {}
    for original, name in zip(raw.columns, names):
        if name in seen:
            raise CohortError(f"knee: sheet {sheet}: headers {seen[name]!r} and {original!r} both clean to {name!r}")
        seen[name] = original
    df = raw.set_axis(names, axis=1).drop(columns=[c for c in DROPPED if c in names])
    for col in ("patient_id", TARGET):
        if col not in df.columns:
            raise CohortError(f"knee: sheet {sheet}: no column {col!r} after cleaning the headers"
                              f"{hint(col, df.columns)}; columns: {list(df.columns)}")

    problems = []  # lines as in a spreadsheet: the header is line 1, row i is line i + 2
    ids = as_text(df["patient_id"])
    problems += [f"line {i + 2}: blank patient id" for i in np.flatnonzero(ids.isna())]
    dup = ids[ids.duplicated(keep=False) & ids.notna()]
    for pid, rows in dup.groupby(dup, sort=False).groups.items():
        problems.append(f"patient id {pid!r} appears on {' and '.join(f'line {i + 2}' for i in rows)}")
    diagnosis = as_text(df[TARGET]).str.lower()
    for i in np.flatnonzero(~diagnosis.isin(CLASSES)):
        value = diagnosis.iloc[i]
        problems.append(f"line {i + 2}, column {seen[TARGET]!r}: " + (f"blank; known: {list(CLASSES)}" if pd.isna(value)
                        else unknown_name("diagnosis", value, CLASSES, noun="values")))
    if problems:
        raise CohortError(f"knee: sheet {sheet}: " + "; ".join(problems[:20])
                          + (f"; ... and {len(problems) - 20} more" if len(problems) > 20 else ""))

    clinical = df.drop(columns=["patient_id", TARGET])
    for col in clinical.columns:
        if not pd.api.types.is_numeric_dtype(clinical[col]):
            clinical[col] = as_text(clinical[col]).str.lower()
    return pd.concat([pd.DataFrame({"sample_id": ids, "patient_id": ids, TARGET: diagnosis}), clinical], axis=1)


def _join_images(images: Path, samples: pd.DataFrame, strict: bool) -> tuple[pd.DataFrame, list[dict], int]:
    """Instances (one per readable image), quarantine records and the count of missing listed files."""
    if not images.is_dir():
        raise CohortError(f"knee: images folder {images}: not found")
    files = []  # (class, path) for every image file under a class folder
    for entry in sorted(images.iterdir()):
        if entry.name.startswith(".") or entry.name == MAPPING:
            continue
        if not entry.is_dir():
            raise CohortError(f"knee: {entry}: expected class folders {list(CLASSES)} in {images}, found a file")
        label = entry.name.strip().lower()
        if label not in CLASSES:
            raise CohortError(f"knee: {entry}: " + unknown_name("class folder", entry.name, CLASSES))
        files += [(label, p) for p in sorted(entry.rglob("*")) if p.is_file() and not p.name.startswith(".")]

    diagnosis = dict(zip(samples["patient_id"], samples[TARGET]))
    problems, quarantine, missing = [], [], 0
    if (images / MAPPING).is_file():
        owner, missing = _mapping(images, diagnosis, strict)
        unjoined = "not listed in images.csv"
    else:
        by_lower = {pid.lower(): pid for pid in diagnosis}
        owner = {}
        for _, p in files:
            pid = by_lower.get(p.stem.lower()) or by_lower.get(re.split(r"[_\-\s.]", p.stem)[0].lower())
            if pid is not None:
                owner[p.resolve()] = pid
        if files and not owner:
            raise CohortError(f"knee: {images}: no image file name starts with a patient id of the sheet (e.g. "
                              f"{files[0][1].name!r}); add {images / MAPPING} with columns file,patient_id")
        unjoined = "no patient id of the sheet matches the file name (stem or leading token)"
    joined = []
    for label, p in files:
        pid = owner.get(p.resolve())
        if pid is None:
            if strict:
                problems.append(f"{p}: {unjoined}")
            quarantine.append({"path": str(p), "reason": unjoined})
        elif diagnosis[pid] != label:
            raise CohortError(f"knee: {p}: image in class folder {label!r} but patient {pid!r} has diagnosis "
                              f"{diagnosis[pid]!r} in the sheet")
        else:
            joined.append((pid, str(p.resolve())))
    bad = unreadable([p for _, p in joined])
    if strict:
        problems += [f"{p}: unreadable ({reason})" for p, reason in bad.items()]
    if problems:
        raise CohortError("knee: " + "; ".join(problems[:20]) + (f"; ... and {len(problems) - 20} more"
                                                                 if len(problems) > 20 else ""))
    quarantine += [{"path": p, "reason": reason} for p, reason in bad.items()]
    per_patient: dict[str, list[str]] = {}
    for pid, p in joined:
        if p not in bad:
            per_patient.setdefault(pid, []).append(p)
    rows = [(pid, MODALITY, k, p, 0) for pid, paths in per_patient.items()
            for k, (p, _) in enumerate(order_series(paths))]
    return pd.DataFrame(rows, columns=["sample_id", "modality", "order", "path", "frame"]), quarantine, missing


def _mapping(images: Path, diagnosis: dict[str, str], strict: bool) -> tuple[dict[Path, str], int]:
    """``images.csv``: {absolute file: patient id} and the number of listed files that do not exist."""
    table = pd.read_csv(images / MAPPING, dtype=str)
    for col in ("file", "patient_id"):
        if col not in table.columns:
            raise CohortError(f"knee: {images / MAPPING}: no column {col!r}; columns: {list(table.columns)}")
    owner, missing = {}, []
    for i, (file, pid) in enumerate(zip(table["file"].str.strip(), table["patient_id"].str.strip())):
        if pid not in diagnosis:
            raise CohortError(f"knee: {images / MAPPING}: line {i + 2}: patient id {pid!r} is not in the sheet"
                              f"{hint(pid, diagnosis)}")
        path = (images / file).resolve()
        if not path.is_file():
            missing.append(f"line {i + 2}: file not found: {file!r}")
        owner[path] = pid
    if strict and missing:
        raise CohortError(f"knee: {images / MAPPING}: " + "; ".join(missing[:20]))
    return owner, len(missing)
