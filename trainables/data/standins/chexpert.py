"""The CheXpert stand-in: a small ``train.csv`` and image tree that :func:`trainables.data.chexpert.load` reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..chexpert import NAME, PATHOLOGIES
from ..files import atomic_dir
from .dicom import write_dicom

__all__ = ["NAME", "standin"]

_FIRST = ["Ingrid", "Tomasz", "Aiko", "Rafael", "Nkechi", "Lars", "Mireille", "Dmitri"]
_LAST = ["Halvorsen", "Quintanilla", "Wojciechowski", "Nakagawa", "Abernathy", "Okonkwo", "Lindqvist", "Vasquez"]
_REPORTS = ["Heart size normal and lungs are clear.", "Mild cardiomegaly.", "Small left pleural effusion.",
            "Patchy opacity at the right base, may reflect atelectasis.", "Support device in place."]


def standin(out, *, n_patients: int = 15, seed: int = 0, image_format: str = "jpg") -> Path:
    """Write a small CheXpert-layout stand-in at ``out`` and return ``out``.

    ``out/train.csv`` (Path, Sex, Age, Frontal/Lateral, AP/PA, the 14 pathologies with 1/0/-1/blank)
    with paths ``train/patient00001/study1/view1_frontal.jpg`` relative to ``out``; 1 or 2 studies per
    patient, 1 to 3 views per study (always a frontal), 32x32 grey images. ``image_format="dcm"`` writes
    DICOM files whose headers carry made-up PatientName/PatientID/PatientBirthDate, so that tests can
    prove none reaches the cohort. Built in a temporary folder and renamed into place.
    """
    if image_format not in ("jpg", "dcm"):
        raise ValueError(f"image_format={image_format!r}: valid formats are 'jpg' and 'dcm'")
    with atomic_dir(out) as tmp:
        _write_standin(tmp, np.random.default_rng(seed), n_patients, image_format)
    return Path(out)


def _write_standin(root: Path, rng: np.random.Generator, n_patients: int, image_format: str) -> None:
    rows = []
    for p in range(1, n_patients + 1):
        identity = {"PatientName": f"{_LAST[rng.integers(len(_LAST))]}^{_FIRST[rng.integers(len(_FIRST))]}",
                    "PatientID": f"MRN{rng.integers(10**6, 10**7)}",
                    "PatientBirthDate": f"{rng.integers(1935, 2000)}{rng.integers(1, 13):02d}{rng.integers(1, 28):02d}"}
        sex, age = str(rng.choice(["Male", "Female"])), int(rng.integers(20, 90))
        for s in range(1, int(rng.integers(1, 3)) + 1):
            labels = {c: rng.choice(["1.0", "0.0", "-1.0", ""], p=[0.25, 0.25, 0.15, 0.35]) for c in PATHOLOGIES}
            ap_pa = str(rng.choice(["AP", "PA"]))
            views = ["frontal"] + list(rng.choice(["lateral", "frontal"], size=int(rng.integers(0, 3)), p=[0.8, 0.2]))
            for v, view in enumerate(views, start=1):
                rel = f"train/patient{p:05d}/study{s}/view{v}_{view}.{image_format}"
                pixels = _standin_image(rng, labels["Cardiomegaly"] == "1.0")
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                if image_format == "dcm":
                    _write_dicom(root / rel, pixels, identity, view, ap_pa)
                else:
                    Image.fromarray(pixels).save(root / rel, quality=95)
                rows.append({"Path": rel, "Sex": sex, "Age": age + s - 1, "Frontal/Lateral": view.capitalize(),
                             "AP/PA": ap_pa if view == "frontal" else "", **labels})
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)


def _standin_image(rng: np.random.Generator, positive: bool) -> np.ndarray:
    """32x32 8-bit grey: noise around a bright 'heart' disc, larger when the finding is positive."""
    yy, xx = np.mgrid[0:32, 0:32]
    radius = 9 if positive else 6
    disc = ((yy - 18) ** 2 + (xx - 16) ** 2 < radius**2) * 90.0
    return np.clip(rng.normal(80, 20, (32, 32)) + disc, 0, 255).astype(np.uint8)


def _write_dicom(path: Path, pixels: np.ndarray, identity: dict, view: str, ap_pa: str) -> None:
    from pydicom.uid import ComputedRadiographyImageStorage

    write_dicom(path, pixels.astype(np.uint16) * 16, sop_class=ComputedRadiographyImageStorage, modality="CR",
                identity=identity, bits_stored=12, ViewPosition=ap_pa if view == "frontal" else "LL")
