"""The knee osteoporosis stand-in: a clinical sheet with the real messy header and class folders of X-rays
that :func:`trainables.data.knee.load` reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_dir
from ..knee import CLASSES, NAME, REAL_HEADER

__all__ = ["NAME", "standin"]


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
        pd.DataFrame(rows, columns=REAL_HEADER).to_csv(tmp / "patient_details.csv", index=False)
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
