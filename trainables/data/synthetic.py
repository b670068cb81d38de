"""The built-in synthetic cohort: MRI-like DICOM series with a planted lesion, written to disk.

What it is (deterministic from ``seed``):

- ``n_patients`` patients (default 300); about 15% have a second study. Each study has up to three
  series types, ``sagittal_t1``, ``sagittal_t2`` and ``axial_t2``, of 8 to 24 slices each, 64x64
  (``size``: any multiple of 8; the lesion's radius scales with it), 16-bit, uncompressed (``compression``:
  a lossless transfer syntax real PACS exports use, ``rle``, ``jpeg2000`` or ``jpegls`` where an encoder is
  installed, so that decoding costs here what it costs on real data), with rescale slope/intercept, ImagePositionPatient/ImageOrientationPatient and
  InstanceNumber set, written under random file names in shuffled order. About 15% of studies lack
  one series type.
- A 3-class ``severity`` label (``none``, ``moderate``, ``severe``), about 70/20/10.
- A planted lesion: a small bright blob in 1 to 3 adjacent slices of the ``sagittal_t2`` series,
  brighter and larger with severity (absent for ``none``). It is the only strong image signal, and
  it sits in a few slices of many, which is what a learned attention pooling can pick out and an
  average dilutes. Nothing in the platform assumes this; the quickstart report measures it.
- A weakly informative tabular part (``age``, ``sex``, ``bmi`` with ~10% missing) and a short
  ``report`` text, weakly informative, where a few words leak the label ("severe", "marked").
- DICOM headers carry made-up patient names, ids and birth dates, so that tests can prove none of
  them reaches a manifest, cache, log or report. ``labels.csv`` carries only a pseudonymous
  ``patient_key`` (P0001...), the grouping key for splits.

Layout (RSNA-like): ``labels.csv`` (study_id, patient_key, severity, age, sex, bmi, report),
``series.csv`` (study_id, series_id, series_description), ``images/<study_id>/<series_id>/*.dcm``.
The tree is built in a temporary folder and renamed into place, so a half-written cohort is never
seen; ``COMPLETE`` marks a finished one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..paths import sweeps_home
from .adapter import Param, resolve_options
from .standins.dicom import write_dicom

SERIES_TYPES = ("sagittal_t1", "sagittal_t2", "axial_t2")
DESCRIPTIONS = {"sagittal_t1": "Sagittal T1", "sagittal_t2": "Sagittal T2/STIR", "axial_t2": "Axial T2"}
CLASSES = ("none", "moderate", "severe")
LESION_SERIES = "sagittal_t2"
VERSION = 1

_FIRST = ["Ingrid", "Tomasz", "Aiko", "Rafael", "Nkechi", "Lars", "Mireille", "Dmitri", "Ximena", "Oluwaseun",
          "Brigitta", "Kenji", "Fatoumata", "Henrik", "Anouk", "Zbigniew"]
_LAST = ["Halvorsen", "Quintanilla", "Wojciechowski", "Nakagawa", "Abernathy", "Okonkwo", "Lindqvist", "Vasquez",
         "Petrosyan", "Delacroix", "Fairweather", "Brannigan", "Szabo", "Achterberg", "Montenegro", "Kowalczyk"]

_REPORT_BITS = [
    "Lumbar spine MRI.", "Vertebral body heights are maintained.", "Mild facet arthropathy.",
    "Disc desiccation at L4-L5.", "No fracture.", "Conus terminates normally.", "Small annular fissure.",
    "Alignment is preserved.", "Paraspinal muscles unremarkable.",
]


def default_dir() -> Path:
    return sweeps_home() / "data" / f"synthetic-v{VERSION}"


def _variant(size: int, compression: str | None) -> str:
    """The suffix naming a non-default size or compression ("" for the default 64 px, uncompressed)."""
    return (f"-s{size}" if size != 64 else "") + (f"-{compression}" if compression not in (None, "", "none") else "")


def ensure(out: Path | None = None, seed: int = 0, n_patients: int = 300, size: int = 64,
           compression: str | None = None) -> Path:
    """Generate the cohort at ``out`` unless a complete one with these settings is already there."""
    out = Path(out) if out else default_dir() / f"seed{seed}-n{n_patients}{_variant(size, compression)}"
    if (out / "COMPLETE").exists():
        return out
    return generate(out, seed=seed, n_patients=n_patients, size=size, compression=compression)


def generate(out: Path, seed: int = 0, n_patients: int = 300, size: int = 64, compression: str | None = None) -> Path:
    """Write the cohort to the new folder ``out`` (atomically); see the module docstring. ``size`` (a
    multiple of 8, at least 16) and ``compression`` (None or ``none``, ``rle``, ``jpeg2000``, ``jpegls``)
    are checked before anything is written; the defaults give today's cohort byte for byte."""
    import pydicom  # noqa: F401  (fail early with ImportError if missing)

    from .files import atomic_dir
    from .standins.dicom import check_compression

    if not isinstance(size, int) or size < 16 or size % 8:
        raise ValueError(f"size must be a multiple of 8 of at least 16, got {size!r}")
    check_compression(compression)
    compression = None if compression in (None, "", "none") else compression
    with atomic_dir(out, complete=lambda p: (p / "COMPLETE").exists()) as tmp:  # a concurrent sweep's copy is as good
        _write(tmp, seed, n_patients, size, compression)
        extra = f" size={size} compression={compression}" if _variant(size, compression) else ""
        (tmp / "COMPLETE").write_text(f"synthetic v{VERSION} seed={seed} n_patients={n_patients}{extra}\n")
    return Path(out)


def _severity(rng: np.random.Generator) -> int:
    return int(rng.choice(3, p=[0.7, 0.2, 0.1]))


def lesion_truth(seed: int = 0, n_patients: int = 300, size: int = 64) -> pd.DataFrame:
    """Where the lesion was planted, replayed from the seed without writing anything: one row per
    ``sagittal_t2`` series: ``study_id``, ``series_id``, ``n_slices``, ``first``/``width`` (the lesion
    slices are positions first .. first+width-1 in slice order, 0-based; width 0: no lesion), ``cy``,
    ``cx`` (pixel row/column of its centre) and ``radius`` (the blob's sigma in pixels). Keys and
    geometry only: nothing identifying."""
    rows: list[dict] = []
    _write(None, seed, n_patients, size, truth=rows)
    return pd.DataFrame(rows, columns=["study_id", "series_id", "n_slices", "first", "width", "cy", "cx", "radius"])


def _write(root: Path | None, seed: int, n_patients: int, size: int, compression: str | None = None,
           truth: list | None = None) -> None:
    """Generate the cohort under ``root``; ``root=None`` writes nothing and only fills ``truth``
    (the generator draws the same numbers either way)."""
    rng = np.random.default_rng(seed)
    label_rows, series_rows = [], []
    study_counter = 1000
    series_counter = 50000
    for p in range(n_patients):
        patient_key = f"P{p + 1:04d}"
        identity = {
            "PatientName": f"{_LAST[rng.integers(len(_LAST))]}^{_FIRST[rng.integers(len(_FIRST))]}",
            "PatientID": f"MRN{rng.integers(10**6, 10**7)}",
            "PatientBirthDate": f"{rng.integers(1935, 2000)}{rng.integers(1, 13):02d}{rng.integers(1, 28):02d}",
        }
        base_sev = _severity(rng)
        age = float(np.clip(rng.normal(52 + 4 * base_sev, 13), 18, 95))
        sex = str(rng.choice(["F", "M"]))
        n_studies = 2 if rng.random() < 0.15 else 1
        for s in range(n_studies):
            study_counter += int(rng.integers(1, 50))
            study_id = str(study_counter)
            sev = base_sev if s == 0 else int(min(2, base_sev + (rng.random() < 0.3)))
            bmi = float(rng.normal(26.5 + 0.9 * sev, 4.0))
            label_rows.append({
                "study_id": study_id, "patient_key": patient_key, "severity": CLASSES[sev],
                "age": round(age + 2 * s, 1), "sex": sex, "bmi": round(bmi, 1) if rng.random() > 0.1 else np.nan,
                "report": _report(rng, sev),
            })
            missing = SERIES_TYPES[rng.integers(3)] if rng.random() < 0.15 else None
            for stype in SERIES_TYPES:
                if stype == missing:
                    continue
                series_counter += int(rng.integers(1, 500))
                series_id = str(series_counter)
                series_rows.append({"study_id": study_id, "series_id": series_id,
                                    "series_description": DESCRIPTIONS[stype]})
                _write_series(None if root is None else root / "images" / study_id / series_id, rng, stype, sev, size,
                              identity, study_id, series_id, compression, truth)
    if root is None:
        return
    pd.DataFrame(label_rows).to_csv(root / "labels.csv", index=False)
    pd.DataFrame(series_rows).to_csv(root / "series.csv", index=False)


def _report(rng: np.random.Generator, sev: int) -> str:
    bits = list(rng.choice(_REPORT_BITS, size=3, replace=False))
    if sev == 2 and rng.random() < 0.35:
        bits.append("Severe signal abnormality.")
    elif sev == 1 and rng.random() < 0.25:
        bits.append("Marked focal signal change.")
    elif rng.random() < 0.1:  # the leaking words also appear, rarely, by chance
        bits.append("Marked focal signal change.")
    rng.shuffle(bits)
    return " ".join(bits)


def _slice_image(rng: np.random.Generator, size: int, k: int, n: int, stype: str) -> np.ndarray:
    """Anatomy-like background: a body ellipse whose width follows the slice position, a spine band,
    smooth texture and noise. Values roughly in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    t = (k + 0.5) / n - 0.5  # slice position in [-0.5, 0.5]
    width = 0.42 - 0.35 * t * t + rng.normal(0, 0.015)
    body = ((xx / width) ** 2 + (yy / 0.45) ** 2 < 1).astype(np.float32) * 0.45
    if stype.startswith("sagittal"):
        band = np.exp(-((xx - 0.08 * np.sin(6 * yy)) ** 2) / 0.004) * (0.25 if stype == "sagittal_t1" else 0.35)
    else:
        band = np.exp(-((xx) ** 2 + (yy - 0.15) ** 2) / 0.006) * 0.3
    coarse = rng.normal(0, 1, (8, 8)).astype(np.float32)
    texture = np.kron(coarse, np.ones((size // 8, size // 8), np.float32)) * 0.05
    return body + band + texture * body + rng.normal(0, 0.03, (size, size)).astype(np.float32)


def _write_series(folder: Path | None, rng, stype: str, sev: int, size: int, identity: dict, study_id: str,
                  series_id: str, compression: str | None = None, truth: list | None = None) -> None:
    from pydicom.uid import MRImageStorage, generate_uid

    if folder is not None:
        folder.mkdir(parents=True)
    n = int(rng.integers(8, 25))
    start = width = 0
    cy = cx = radius = float("nan")
    imgs = [_slice_image(rng, size, k, n, stype) for k in range(n)]
    if stype == LESION_SERIES and sev > 0:
        width = int(rng.integers(1, 4))  # lesion spans 1 to 3 adjacent slices
        start = int(rng.integers(0, n - width + 1))
        amp = (0.5, 0.9)[sev - 1] * rng.uniform(0.8, 1.2)
        radius = (3.0, 4.5)[sev - 1] * size / 64
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        yy, xx = np.mgrid[0:size, 0:size]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)).astype(np.float32)
        for j in range(width):
            imgs[start + j] = imgs[start + j] + amp * (1.0 if j == width // 2 else 0.6) * blob
    if truth is not None and stype == LESION_SERIES:
        truth.append({"study_id": study_id, "series_id": series_id, "n_slices": n, "first": start, "width": width,
                      "cy": float(cy), "cx": float(cx), "radius": float(radius)})
    slope = float(rng.choice([1.0, 0.5, 2.0]))
    intercept = float(rng.choice([0.0, -1024.0, 100.0]))
    if folder is None:  # a replay: draw what the file loop draws, write nothing
        for _ in rng.permutation(n):
            rng.integers(10**8, 10**9)
        return
    series_uid = generate_uid()
    study_uid = f"1.2.826.0.1.3680043.8.498.{study_id}"
    sagittal = stype.startswith("sagittal")
    iop = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0] if sagittal else [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    spacing = 4.0
    for k in rng.permutation(n):
        phys = np.clip(imgs[k], 0, None) * 2000.0  # physical values
        stored = np.round((phys - intercept) / slope)
        stored = np.clip(stored, 0, 65535).astype(np.uint16)
        # sagittal: slices step along -x (normal = row x col = (-1, 0, 0)); axial: along +z
        pos = [-spacing * k, -100.0, 50.0] if sagittal else [-100.0, -100.0, spacing * k]
        name = f"{rng.integers(10**8, 10**9)}.dcm"
        write_dicom(folder / name, stored, sop_class=MRImageStorage, modality="MR", identity=identity,
                    compression=compression,
                    StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid, SeriesDescription=DESCRIPTIONS[stype],
                    InstanceNumber=int(k + 1), ImagePositionPatient=[float(v) for v in pos],
                    ImageOrientationPatient=iop, PixelSpacing=[1.0, 1.0], SliceThickness=spacing,
                    RescaleSlope=slope, RescaleIntercept=intercept)


NAME = "synthetic"
OPTIONS = {
    "seed": Param(int, 0, low=0, doc="the generator's seed (the cohort is deterministic from it)"),
    "n_patients": Param(int, 300, low=1, doc="patients to generate (about 15% get a second study)"),
    "size": Param(int, 64, low=16, doc="slice width and height in pixels (a multiple of 8)"),
    "compression": Param(str, "none", choices=("none", "rle", "jpeg2000", "jpegls"),
                         doc="transfer syntax of the slices: uncompressed or a lossless one PACS exports use"),
}


def load(root: str | Path | None = None, *, strict: bool = False, **options):
    """The synthetic cohort in canonical form, generated at ``root`` (default under SWEEPS_HOME) on first use.

    ``options`` (``OPTIONS``): ``seed``, ``n_patients``, ``size``, ``compression``. ``strict`` is accepted for the contract; a generated
    cohort has no unreadable file to set aside.
    """
    o = resolve_options(NAME, OPTIONS, options)
    seed, n_patients, size, compression = o["seed"], o["n_patients"], o["size"], o["compression"]
    from .layouts import load_series_layout

    root = ensure(root, seed=seed, n_patients=n_patients, size=size, compression=compression)
    return load_series_layout(
        root, name=f"synthetic-s{seed}-n{n_patients}{_variant(size, compression)}",
        modality_of={v: k for k, v in DESCRIPTIONS.items()}, target="severity", classes=CLASSES,
        tabular=["age", "sex", "bmi"], text=["report"],
        description=f"built-in synthetic MRI cohort v{VERSION} (seed {seed}, {n_patients} patients), "
                    f"lesion planted in {LESION_SERIES}",
    )
