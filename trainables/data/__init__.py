"""Cohort adapters by name. Each returns a :class:`~trainables.data.cohort.Cohort`.

Every adapter of a real dataset takes ``root`` (the folder, or file, as the dataset is distributed;
``--data`` on the command line) and has a generator of a small stand-in in the same on-disk layout
(``STANDINS``), used by tests and by ``--smoke``.
"""

from __future__ import annotations

from pathlib import Path

from ..paths import sweeps_home
from ..registry import Registry
from .cohort import Cohort, CohortError, Target


def _need_root(name: str, root, what: str) -> Path:
    if not root:
        raise CohortError(f"cohort {name!r} needs its data: pass --data PATH ({what}), "
                          f"or --smoke to run on a generated stand-in")
    path = Path(root)
    if not path.exists():
        raise CohortError(f"cohort {name!r}: {path} not found ({what})")
    return path


def _synthetic(seed: int = 0, n_patients: int = 300, root: str | None = None) -> Cohort:
    """The built-in synthetic MRI cohort (generated on first use)."""
    from . import synthetic

    return synthetic.load(root, seed=seed, n_patients=n_patients)


def _rsna_lumbar(root=None, **options) -> Cohort:
    """RSNA 2024 lumbar spine (Kaggle layout: train.csv, train_series_descriptions.csv, train_images/)."""
    from . import rsna

    return rsna.load(_need_root("rsna_lumbar", root, "the folder holding train.csv and train_images/"), **options)


def _iu_xray(root=None, **options) -> Cohort:
    """IU-Xray / OpenI reports (NLMCXR_reports.tgz or indiana_reports.csv) with frontal/lateral PNGs."""
    from . import iuxray

    return iuxray.load(_need_root("iu_xray", root, "the folder holding NLMCXR_reports.tgz or indiana_reports.csv"), **options)


def _chexpert(root=None, csv: str | None = None, **options) -> Cohort:
    """CheXpert / MIMIC-CXR style CSV (path column, 14 pathologies in 1/0/-1/blank)."""
    from . import chexpert

    path = _need_root("chexpert", csv or root, "the labels CSV, or the folder holding train.csv")
    if path.is_dir():
        path = path / "train.csv"
    options.setdefault("image_root", str(path.parent))
    return chexpert.load(path, **options)


def _knee(root=None, **options) -> Cohort:
    """Knee osteoporosis: clinical sheet (csv/xlsx) + class folders of knee X-rays."""
    from . import knee

    return knee.load(_need_root("knee", root, "the folder holding the clinical sheet and image folders"), **options)


def _covid_cxr(root=None, **options) -> Cohort:
    """COVID chest X-ray subset: metadata CSV + images/, several images per patient."""
    from . import covid

    return covid.load(_need_root("covid_cxr", root, "the folder holding metadata_subset.csv and images/"), **options)


def _manifest(root=None, **options) -> Cohort:
    """Any dataset described by a CSV or parquet manifest (no code needed)."""
    from . import manifest

    return manifest.load(_need_root("manifest", root, "the manifest .csv or .parquet file"), **options)


COHORTS = Registry("cohort", {"synthetic": _synthetic, "rsna_lumbar": _rsna_lumbar, "iu_xray": _iu_xray,
                              "chexpert": _chexpert, "knee": _knee, "covid_cxr": _covid_cxr, "manifest": _manifest})


def _standin(module: str):
    def make(out, **kw):
        import importlib

        return importlib.import_module(f"{__name__}.{module}").standin(Path(out), **kw)

    return make


STANDINS = Registry("cohort stand-in", {"rsna_lumbar": _standin("rsna"), "iu_xray": _standin("iuxray"),
                                        "chexpert": _standin("chexpert"), "knee": _standin("knee"),
                                        "covid_cxr": _standin("covid")})


def standin_root(cohort: str) -> Path:
    """The generated stand-in of ``cohort``'s layout under SWEEPS_HOME (made on first use)."""
    STANDINS.check(cohort, "cohort")
    root = sweeps_home() / "data" / "standins" / cohort
    if not root.exists():
        STANDINS[cohort](root)
    return root


__all__ = ["COHORTS", "STANDINS", "Cohort", "CohortError", "Target", "standin_root"]
