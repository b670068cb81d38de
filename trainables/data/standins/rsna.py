"""The RSNA 2024 lumbar spine stand-in: a small dataset in the Kaggle layout that :func:`trainables.data.rsna.load` reads."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_dir
from ..rsna import CLASSES, LABELS_CSV, MODALITY_OF, NAME, SERIES_CSV, TARGET_NAMES, read_labels, read_series
from .dicom import write_dicom

__all__ = ["NAME", "standin"]

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
    from pydicom.uid import MRImageStorage, generate_uid

    n = int(rng.integers(5, 10))
    names = [f"{v}.dcm" for v in _unique_ids(rng, n, 10**6, 10**7)]
    sagittal = desc.startswith("Sagittal")
    # sagittal: slices step along -x, normal row x column = (-1, 0, 0); axial: along +z, normal (0, 0, 1)
    iop = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0] if sagittal else [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    series_uid = generate_uid()
    pattern = (np.add.outer(np.arange(size), np.arange(size)) % 7).astype(np.uint16)
    for k in rng.permutation(n):
        pos = [-4.0 * k, -60.0, 40.0] if sagittal else [-60.0, -60.0, 4.0 * k]
        write_dicom(folder / names[k], (1000 + 100 * int(k) + pattern).astype(np.uint16), sop_class=MRImageStorage,
                    modality="MR", identity=identity, StudyInstanceUID=f"1.2.826.0.1.3680043.8.498.{study}",
                    SeriesInstanceUID=series_uid, SeriesDescription=desc, InstanceNumber=int(k + 1),
                    ImagePositionPatient=[float(v) for v in pos], ImageOrientationPatient=iop,
                    PixelSpacing=[1.0, 1.0], SliceThickness=4.0)
    return names
