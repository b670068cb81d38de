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

from ..lookup import unknown as unknown_name
from .adapter import Param, as_text, hint, need_root, resolve_options
from .cohort import Cohort, CohortError, Target
from .quarantine import unreadable

__all__ = ["NAME", "OPTIONS", "load", "scrub", "leak_pattern", "DEFAULT_LEAK_TERMS", "METADATA", "COLUMNS"]

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
COLUMNS = ["patientid", "offset", "sex", "age", "finding", "survival", "intubated", "intubation_present", "went_icu",
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


NAME = "covid_cxr"
OPTIONS = {
    "target": Param(str, "covid", choices=("covid", "finding"),
                    doc="covid: COVID-19 or other (binary); finding: the finding values present (multiclass)"),
    "leak_terms": Param((list, tuple), DEFAULT_LEAK_TERMS, doc="terms removed from the clinical notes"),
    "views": Param((list, tuple), None, nullable=True, doc="keep only these projections, e.g. [\"PA\", \"AP\"]"),
    "allow_leaky": Param((list, tuple), (), doc="flagged columns to keep in tabular anyway"),
    "threshold": Param(float, 0.95, low=0.5, high=1.0, doc="the leakage guard's AUC / balanced-accuracy threshold"),
}


def load(root: str | Path | None = None, *, strict: bool = False, **options) -> Cohort:
    """The COVID chest X-ray cohort at ``root`` (``metadata_subset.csv`` and ``images/``).

    ``options`` (``OPTIONS``): ``target``: "covid" (binary) or "finding" (multiclass). ``leak_terms``: removed
    from the notes. ``views``: keep only these projections (e.g. ["PA", "AP"]). ``allow_leaky``: flagged
    columns to keep in ``tabular``. ``threshold``: the leakage guard's threshold.
    """
    from .leakage import column_scores, scan  # scikit-learn, imported when a cohort is loaded

    o = resolve_options(NAME, OPTIONS, options)
    target, leak_terms, views, allow_leaky, threshold = (o[k] for k in OPTIONS)
    root = need_root(NAME, root, f"the folder holding {METADATA} and images/")
    meta = root / METADATA
    if not meta.is_file():
        raise CohortError(f"covid_cxr: {meta}: file not found (expected {METADATA} and images/)")
    df = pd.read_csv(meta, dtype={"patientid": str, "filename": str, "finding": str})
    missing_cols = [c for c in REQUIRED if c not in df.columns]
    if missing_cols:
        c = missing_cols[0]
        raise CohortError(f"covid_cxr: {meta}: no column {c!r}{hint(c, df.columns)}")
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
            raise CohortError("covid_cxr: " + unknown_name("view", unknown[0], present, "views", noun="values"))
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
        raise CohortError("covid_cxr: " + unknown_name("column", unknown[0], [*TABULAR, *others], "allow_leaky"))

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
