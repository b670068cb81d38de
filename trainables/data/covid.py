"""COVID chest X-ray adapter: ``metadata_subset.csv`` + ``images/`` (the ieee8023/covid-chestxray-dataset
layout, June 2020 state).

One sample per image file (``sample_id`` = the file name), ``patient_id`` = ``patientid``: a patient's
several images stay on one side of every split. One modality, ``xray``, one instance per sample.

Traps in the real table, and what is done about them:

- **The same image listed twice under two patient ids** (five rows of the subset repeat files of
  patients 285 and 287 under ids 339 and 340, same case URL). A file is one sample: repeated rows are
  dropped (the first is kept), and patient ids that share a file are merged into the id of the first
  listing, so one person never sits on both sides of a split. Repeated rows that disagree on the
  finding are an error naming both lines. The merge is stated in the cohort's description.
- **Leaky notes.** ``clinical_notes`` often names the answer ("RT-PCR positive for COVID-19",
  "SARS-CoV-2 RNA was detected", "travelling from Wuhan"). The cohort's text column ``clinical_notes``
  is the note with every leak term removed (case-insensitive, whole word or phrase, spaces and hyphens
  between a term's parts optional: "COVID-19", "covid 19", "COVID19", "SARS-CoV2" all match); the raw
  note is not kept. For ``target="finding"`` every finding word of 4+ letters ("pneumocystis",
  "legionella", "ards", "pneumonia", ...) is a leak term too. A blank note is "". Terms the notes carry
  that are *not* removed by default: "RT-PCR" (also used for influenza and pneumocystis tests) and
  the clinical course; a note can still hint at the answer.
- **Outcome and provenance columns.** Survival, intubation, ICU and oxygen columns describe the course
  of the illness after or around the image (post-hoc); ``offset`` is the image's timing in that course;
  ``date`` and ``location`` are the source publication's, and COVID-19 images all come from 2020; the lab
  and vital columns are recorded for under 10% of images. They stay in ``samples`` and go to
  ``cohort.flagged`` with their reason and their out-of-fold score alone (see
  :mod:`trainables.data.leakage`), out of ``tabular`` unless named in ``allow_leaky``.
- The trailing empty ``Unnamed: 28`` column (a trailing comma in the CSV) and the bookkeeping columns
  (``folder``, ``filename``, ``url``, ``doi``, ``license``, ``other_notes``: credits) are not features.

Targets: ``covid`` (binary: "other", "covid"; covid when a comma-separated part of ``finding`` is
"COVID-19": in the subset "COVID-19" (78 rows) and "COVID-19, ARDS" (9 rows)), or ``finding``
(multiclass over the finding values present, as written, e.g. "COVID-19, ARDS" is its own class).
Tabular: ``age``, ``sex``, ``view`` (the X-ray projection: PA, AP, AP Supine, L); the leakage guard runs
on them too. ``views`` keeps only the named projections.

A listed file that does not exist is a missing instance (counted in the description; ``strict``: an
error); a file that cannot be decoded goes to ``cohort.quarantine`` (``strict``: an error).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .cohort import Cohort, CohortError, Target
from .leakage import column_scores, scan
from .manifest import as_text, atomic_dir, did_you_mean, unreadable

__all__ = ["load", "standin", "scrub", "leak_pattern", "DEFAULT_LEAK_TERMS", "METADATA"]

METADATA = "metadata_subset.csv"
MODALITY = "xray"
TEXT = "clinical_notes"
TABULAR = ("age", "sex", "view")
DEFAULT_LEAK_TERMS = (
    "covid-19", "covid", "coronavirus disease 2019", "coronavirus", "sars-cov-2", "sars-cov", "2019-ncov",
    "ncov", "wuhan",
)
_POST_HOC = "course of the illness after or around the image (post-hoc outcome)"
EXCLUDED = {
    "offset": "days from symptom onset to the image: its timing in the course of the illness, recorded by the source",
    "survival": _POST_HOC, "intubated": _POST_HOC, "intubation_present": _POST_HOC, "went_icu": _POST_HOC,
    "in_icu": _POST_HOC, "needed_supplemental_O2": _POST_HOC, "extubated": _POST_HOC,
    "date": "the source publication's date (COVID-19 images all date from 2020): provenance, not patient",
    "location": "the source publication's place: provenance, not patient",
    **{c: "recorded for under 10% of images: its presence marks the source, not the patient"
       for c in ("temperature", "pO2_saturation", "leukocyte_count", "neutrophil_count", "lymphocyte_count")},
}
# the real table's columns, in order (the stand-in writes them all)
_COLUMNS = ["patientid", "offset", "sex", "age", "finding", "survival", "intubated", "intubation_present", "went_icu",
            "in_icu", "needed_supplemental_O2", "extubated", "temperature", "pO2_saturation", "leukocyte_count",
            "neutrophil_count", "lymphocyte_count", "view", "modality", "date", "location", "folder", "filename", "doi",
            "url", "license", "clinical_notes", "other_notes", "Unnamed: 28"]
REQUIRED = ("patientid", "finding", "filename", *TABULAR, TEXT)


def leak_pattern(terms: Sequence[str]) -> re.Pattern | None:
    """A case-insensitive whole-word regex for ``terms`` (longest first), spaces and hyphens between a
    term's parts optional; None for no terms."""
    parts = sorted({t.strip().lower() for t in terms if t.strip()}, key=len, reverse=True)
    if not parts:
        return None
    alts = [r"[\s\-]*".join(re.escape(tok) for tok in re.split(r"[\s\-]+", p)) for p in parts]
    return re.compile(r"(?<!\w)(?:" + "|".join(alts) + r")(?!\w)", re.IGNORECASE)


def scrub(notes: pd.Series, terms: Sequence[str]) -> pd.Series:
    """``notes`` with every term removed, emptied brackets dropped and spaces collapsed; NaN -> ""."""
    out = notes.astype(object).where(notes.notna(), "").map(str)
    pattern = leak_pattern(terms)
    if pattern is not None:
        out = out.str.replace(pattern, "", regex=True).str.replace(r"\(\s*\)", "", regex=True)
    return out.str.replace(r"\s+", " ", regex=True).str.replace(r"\s+([.,;:])", r"\1", regex=True).str.strip()


def load(root: str | Path, *, target: str = "covid", leak_terms: Sequence[str] = DEFAULT_LEAK_TERMS,
         views: Sequence[str] | None = None, allow_leaky: Sequence[str] = (), strict: bool = False,
         threshold: float = 0.95) -> Cohort:
    """The COVID chest X-ray cohort at ``root`` (``metadata_subset.csv`` and ``images/``).

    ``target``: "covid" (binary) or "finding" (multiclass). ``leak_terms``: removed from the notes.
    ``views``: keep only these projections (e.g. ["PA", "AP"]). ``allow_leaky``: flagged columns to keep
    in ``tabular``. ``threshold``: the leakage guard's threshold.
    """
    root = Path(root)
    meta = root / METADATA
    if target not in ("covid", "finding"):
        raise CohortError(f"covid_cxr: unknown target {target!r}{did_you_mean(target, ['covid', 'finding'])}; "
                          f"targets: covid, finding")
    if not meta.is_file():
        raise CohortError(f"covid_cxr: {meta}: file not found (expected {METADATA} and images/)")
    df = pd.read_csv(meta, dtype={"patientid": str, "filename": str, "finding": str})
    missing_cols = [c for c in REQUIRED if c not in df.columns]
    if missing_cols:
        c = missing_cols[0]
        raise CohortError(f"covid_cxr: {meta}: no column {c!r}{did_you_mean(c, list(df.columns))}")
    df.index = df.index + 2  # spreadsheet line numbers: the header is line 1
    for col in ("patientid", "filename", "finding", "view"):
        df[col] = as_text(df[col])
        blank = df.index[df[col].isna()]
        if col != "view" and len(blank):
            raise CohortError(f"covid_cxr: {meta}: line {blank[0]}: blank {col!r}")

    df, merged = _one_row_per_file(df, meta)
    if views is not None:
        present = sorted(df["view"].dropna().unique())
        unknown = [v for v in views if v not in present]
        if unknown:
            raise CohortError(f"covid_cxr: unknown view {unknown[0]!r}{did_you_mean(unknown[0], present)}; "
                              f"views present: {present}")
        df = df[df["view"].isin(views)]

    is_covid = df["finding"].map(lambda f: any(p.strip().upper() == "COVID-19" for p in f.split(",")))
    label = np.where(is_covid, "covid", "other") if target == "covid" else df["finding"].to_numpy()
    classes = ("other", "covid") if target == "covid" else tuple(sorted(df["finding"].unique()))
    terms = list(leak_terms)
    if target == "finding":
        terms += sorted({w for f in classes for w in re.split(r"[^\w]+", f.lower()) if len(w) >= 4})
    others = [c for c in EXCLUDED if c in df.columns]
    samples = pd.DataFrame({
        "sample_id": df["filename"].to_numpy(), "patient_id": df["patientid"].to_numpy(), target: label,
        **{c: df[c].to_numpy() for c in (*TABULAR, *others)}, TEXT: scrub(df[TEXT], terms).to_numpy(),
    })
    unknown = [c for c in allow_leaky if c not in (*TABULAR, *others)]
    if unknown:
        raise CohortError(f"covid_cxr: allow_leaky names unknown column {unknown[0]!r}"
                          f"{did_you_mean(unknown[0], [*TABULAR, *others])}; columns: {[*TABULAR, *others]}")

    y = np.searchsorted(np.array(classes), samples[target].to_numpy()) if target == "finding" else is_covid.to_numpy(int)
    groups = samples["patient_id"].to_numpy()
    flagged = scan(samples[list(TABULAR)], y, groups, threshold=threshold, target=target)
    scores = column_scores(samples[others], y, groups)
    for c in others:
        alone = f"; alone: AUC {scores[c][0]:.2f}, balanced accuracy {scores[c][1]:.2f} out-of-fold" if c in scores else ""
        flagged[c] = EXCLUDED[c] + alone
    tabular = [c for c in TABULAR if c not in flagged or c in allow_leaky] + [c for c in others if c in allow_leaky]

    folder = as_text(df["folder"]).fillna("images") if "folder" in df.columns else pd.Series("images", df.index)
    paths = [str((root / d / f).resolve()) for d, f in zip(folder, df["filename"])]
    exists = np.array([Path(p).is_file() for p in paths], dtype=bool)
    bad = unreadable([p for p, e in zip(paths, exists) if e])
    if strict and (not exists.all() or bad):
        problems = [f"line {i}: file not found: {p}" for i, p, e in zip(df.index, paths, exists) if not e]
        problems += [f"{p}: unreadable ({r})" for p, r in bad.items()]
        raise CohortError(f"covid_cxr: {meta}: " + "; ".join(problems[:20])
                          + (f"; ... and {len(problems) - 20} more" if len(problems) > 20 else ""))
    keep = exists & ~np.isin(paths, list(bad))
    instances = pd.DataFrame({"sample_id": samples["sample_id"][keep], "modality": MODALITY, "order": 0,
                              "path": np.array(paths)[keep], "frame": 0}).reset_index(drop=True)
    description = (f"COVID chest X-ray subset: {len(samples)} images of {samples['patient_id'].nunique()} patients, "
                   f"target {target!r}" + (f"; {(~exists).sum()} listed image file(s) missing" if not exists.all() else "")
                   + (f"; {merged}" if merged else ""))
    return Cohort(name=f"covid-cxr-{target}", samples=samples, instances=instances,
                  targets=[Target(target, "binary" if len(classes) == 2 else "multiclass", classes)],
                  modalities=[MODALITY], tabular=tabular, text=[TEXT], description=description,
                  quarantine=[{"path": p, "reason": r} for p, r in bad.items()], flagged=flagged)


def _one_row_per_file(df: pd.DataFrame, meta: Path) -> tuple[pd.DataFrame, str]:
    """Drop repeated rows of one image file, merging the patient ids that share a file into the id of
    its first listing (transitively). Returns the rows kept and a sentence saying what was merged."""
    first = df.groupby("filename", sort=False)
    for _, rows in first:
        if rows["finding"].nunique() > 1:
            a, b = rows.index[:2]
            raise CohortError(f"covid_cxr: {meta}: lines {a} and {b} list the same image "
                              f"{rows['filename'].iloc[0]!r} with different findings")
    alias: dict[str, str] = {}

    def find(pid: str) -> str:
        while alias.get(pid, pid) != pid:
            pid = alias[pid]
        return pid

    for _, ids in first["patientid"]:
        root_id = find(ids.iloc[0])
        for pid in ids.iloc[1:]:
            other = find(pid)
            if other != root_id:
                alias[other] = root_id
    kept = df[~df["filename"].duplicated()].copy()
    kept["patientid"] = kept["patientid"].map(find)
    if not alias:
        return kept, ""
    pairs = ", ".join(f"{k}->{find(k)}" for k in sorted(alias))
    return kept, (f"{len(df) - len(kept)} repeated row(s) of the same image dropped; patient ids that share an "
                  f"image merged ({pairs})")


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
        pd.DataFrame(rows).reindex(columns=_COLUMNS).to_csv(tmp / METADATA, index=False)
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
