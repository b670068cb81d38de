"""The COVID chest X-ray stand-in: ``metadata_subset.csv`` with the real columns and ``images/`` that
:func:`trainables.data.covid.load` reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..covid import COLUMNS, METADATA, NAME
from ..files import atomic_dir

__all__ = ["NAME", "standin"]


def standin(out: str | Path, *, n_patients: int = 20, seed: int = 0) -> Path:
    """Write a small stand-in at ``out`` (which must not exist) in the real layout: ``metadata_subset.csv``
    (the real columns, the trailing empty ``Unnamed: 28`` included) and ``images/`` (48x48 grey PNG and
    JPEG, hazier for COVID-19). One to three images per patient; notes name the finding in about half of
    the COVID-19 rows; the last image is listed again under a new patient id, as in the
    real subset. Built in a temporary folder and renamed into place."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    findings = ["COVID-19", "COVID-19", "COVID-19, ARDS", "Pneumonia", "Legionella", "No Finding"]
    leaky = ["RT-PCR positive for COVID-19.", "SARS-CoV-2 RNA was detected.", "Returned from Wuhan; coronavirus test positive.",
             "Typical for COVID 19 (COVID19) pneumonia."]
    plain = ["Bilateral patchy opacities.", "Fever and cough for 5 days.", "No pleural effusion.",
             "Right lower lobe consolidation."]
    yes_no = [None, "Y", "N"]
    rows, pictures = [], []
    for p in range(n_patients):
        finding = findings[p % len(findings)]
        covid = finding.startswith("COVID")
        sex, age = ("M", "F")[rng.integers(2)], float(rng.integers(25, 85))
        for k in range(int(rng.integers(1, 4))):
            name = f"p{p:03d}-{k}.{'png' if k % 2 == 0 else 'jpg'}"
            note = " ".join(rng.choice(plain, 2, replace=False))
            if covid and rng.random() < 0.5:
                note += " " + leaky[rng.integers(len(leaky))]
            rows.append({
                "patientid": str(100 + p), "offset": float(k * 3) if covid else np.nan, "sex": sex, "age": age,
                "finding": finding, **{c: yes_no[rng.integers(3)] for c in ("survival", "intubated", "went_icu")},
                "view": ("PA", "AP", "AP Supine", "L")[rng.integers(4)], "modality": "X-ray",
                "date": "2020" if covid else "2017", "location": "Somewhere", "folder": "images", "filename": name,
                "url": f"https://example.org/case/{p}", "license": "CC BY",
                "clinical_notes": note if rng.random() > 0.1 else np.nan,
            })
            pictures.append((name, _cxr_image(rng, covid)))
    rows.append({**rows[-1], "patientid": str(100 + n_patients)})  # the same file under a second patient id
    with atomic_dir(out) as tmp:
        pd.DataFrame(rows).reindex(columns=COLUMNS).to_csv(tmp / METADATA, index=False)
        (tmp / "images").mkdir()
        for name, pixels in pictures:
            Image.fromarray(pixels).save(tmp / "images" / name)
    return Path(out)


def _cxr_image(rng: np.random.Generator, covid: bool, size: int = 48) -> np.ndarray:
    """A grey 8-bit 'chest': two dark lung fields, hazier (brighter, smoother) for COVID-19."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    lungs = np.exp(-(((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.03)) + np.exp(-(((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.03))
    haze = 35.0 if covid else 0.0
    image = 170 - (110 - haze) * lungs + rng.normal(0, 8, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8)
