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

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .cohort import Cohort, CohortError, Target
from .images import order_series
from .leakage import column_scores, scan
from .manifest import as_text, atomic_dir, did_you_mean, unreadable

__all__ = ["load", "standin", "clean_header", "CLASSES", "TARGET"]

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
_REAL_HEADER = [
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


def load(root: str | Path | None = None, *, sheet: str | Path | None = None, images: str | Path | None = None,
         allow_leaky: Sequence[str] = (), strict: bool = False, threshold: float = 0.95) -> Cohort:
    """The knee cohort from ``sheet`` (default ``root/patient_details.csv`` or ``.xlsx``) and ``images``
    (default ``root/images`` when present; none: a tabular-only cohort).

    ``allow_leaky``: flagged columns to keep in ``tabular`` anyway (cleaned names).
    ``threshold``: the leakage guard's AUC / balanced-accuracy threshold.
    """
    root = Path(root) if root is not None else None
    if sheet is None:
        if root is None:
            raise CohortError("knee: give root (a folder with patient_details.csv) or sheet=")
        found = [root / n for n in SHEET_NAMES if (root / n).is_file()]
        if not found:
            raise CohortError(f"knee: {root}: no {' or '.join(SHEET_NAMES)}; pass sheet= to name the sheet")
        sheet = found[0]
    if images is None and root is not None and (root / "images").is_dir():
        images = root / "images"
    sheet = Path(sheet)
    samples = _read_sheet(sheet)

    features = [c for c in samples.columns if c not in ("sample_id", "patient_id", TARGET)]
    unknown = [c for c in allow_leaky if c not in features]
    if unknown:
        raise CohortError(f"knee: allow_leaky names unknown column {unknown[0]!r}"
                          f"{did_you_mean(unknown[0], features)}; columns: {features}")
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
                              f"{did_you_mean(col, list(df.columns))}; columns: {list(df.columns)}")

    problems = []  # lines as in a spreadsheet: the header is line 1, row i is line i + 2
    ids = as_text(df["patient_id"])
    problems += [f"line {i + 2}: blank patient id" for i in np.flatnonzero(ids.isna())]
    dup = ids[ids.duplicated(keep=False) & ids.notna()]
    for pid, rows in dup.groupby(dup, sort=False).groups.items():
        problems.append(f"patient id {pid!r} appears on {' and '.join(f'line {i + 2}' for i in rows)}")
    diagnosis = as_text(df[TARGET]).str.lower()
    for i in np.flatnonzero(~diagnosis.isin(CLASSES)):
        value = diagnosis.iloc[i]
        problems.append(f"line {i + 2}, column {seen[TARGET]!r}: " + ("blank" if pd.isna(value) else
                        f"unknown diagnosis {value!r}{did_you_mean(value, CLASSES)}") + f"; known: {list(CLASSES)}")
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
            raise CohortError(f"knee: {entry}: unknown class folder {entry.name!r}{did_you_mean(label, CLASSES)}; "
                              f"known: {list(CLASSES)}")
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
                              f"{did_you_mean(pid, list(diagnosis))}")
        path = (images / file).resolve()
        if not path.is_file():
            missing.append(f"line {i + 2}: file not found: {file!r}")
        owner[path] = pid
    if strict and missing:
        raise CohortError(f"knee: {images / MAPPING}: " + "; ".join(missing[:20]))
    return owner, len(missing)


def standin(out: str | Path, *, n_patients: int = 30, seed: int = 0) -> Path:
    """Write a small stand-in at ``out`` (which must not exist): ``patient_details.csv`` with the real
    sheet's messy header and ``images/<Class>/<patient id>_<k>.png`` (32x32 grey; about 1 patient in 10
    has none). Labels follow the T-score rule; images get darker and grainier with the class (weakly).
    Built in a temporary folder and renamed into place."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.resize([0, 1, 1, 2], n_patients))
    counters = {0: 0, 1: 0, 2: 0}
    rows, pictures = [], []
    for i, k in enumerate(labels):
        counters[k] += 1
        pid = f"{('N', 'OP', 'OS')[k]}{counters[k]}"
        female = rng.random() < 0.7
        age = int(np.clip(rng.normal(50 + 5 * k, 9), 25, 85))
        t_score = round(float(rng.uniform(*((-0.9, 1.5), (-2.4, -1.1), (-4.0, -2.6))[k])), 2)
        height = round(float(rng.normal(1.6, 0.08)), 5)
        weight = int(rng.normal(68, 11))
        bmi = weight / height**2
        rows.append([
            i + 1, pid, rng.choice(["yes", "no"]), "female" if female else "male", age,
            int(rng.integers(40, 52)) if female and age > 50 else np.nan, height, weight,
            rng.choice(["yes", "no"]), "no", rng.choice(["yes", "no"], p=[0.2, 0.8]), rng.choice(["yes", "no"]),
            int(rng.integers(0, 7)) if female else np.nan, "no", rng.choice(["yes", "no"], p=[0.1, 0.9]),
            rng.choice(["h.wife", "teacher ", "farmer", "shopkeeper"]), rng.choice(["no", "L.knee", "R.knee "]),
            "no", rng.choice(["yes", "no"]), float(rng.choice([0.5, 1, 2, 5])),
            rng.choice(["normal", "low protiens", "low fats"]), rng.choice(["normal", "no", "B.P"]),
            t_score, round(t_score + (age - 50) * 0.03 + float(rng.normal(0, 0.4)), 2), bmi, "knee",
            "normal weight" if bmi < 25 else rng.choice(["over weight", "overweight", "obesity "]),
            CLASSES[k],
        ])
        n_images = 0 if i % 10 == 9 else int(rng.integers(1, 3))
        pictures += [(CLASSES[k].capitalize(), f"{pid}_{j + 1}.png", _knee_image(rng, k)) for j in range(n_images)]
    with atomic_dir(out) as tmp:
        pd.DataFrame(rows, columns=_REAL_HEADER).to_csv(tmp / "patient_details.csv", index=False)
        for folder, name, pixels in pictures:
            (tmp / "images" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(tmp / "images" / folder / name)
    return Path(out)


def _knee_image(rng: np.random.Generator, k: int, size: int = 32) -> np.ndarray:
    """A grey 8-bit image: a bright 'bone' band whose brightness falls and grain rises with class ``k``."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    bone = np.exp(-((xx - 0.5) ** 2) / 0.02) * (150 - 15 * k)
    grain = rng.normal(0, 6 + 4 * k, (size, size))
    return np.clip(40 + bone + grain + 10 * yy, 0, 255).astype(np.uint8)
