"""Adapter for IU-Xray (Indiana University chest X-rays, OpenI): radiology reports with frontal and
lateral images, labelled normal/abnormal from their MeSH tags.

Two layouts (``layout="auto"`` picks the one found, the XML one when both are there):

- **XML** (the original release): ``NLMCXR_reports.tgz`` (read in place, never extracted), or a folder of
  the ``ecgen-radiology/<n>.xml`` files. Each report gives its number (``<IUXRId id>``), the sections
  (``<AbstractText Label="INDICATION">``...), its MeSH ``<major>`` tags and its images
  (``<parentImage id="CXR1_1_IM-0001-3001">``). Images are ``<images_dir>/<id>.png`` (the NLMCXR_png
  naming, with the ``CXR`` prefix), or the same without the prefix, or ``<id without CXR>.dcm.png``
  (the Kaggle naming).
- **CSV** (the common Kaggle copy): ``indiana_reports.csv`` (uid, MeSH, Problems, image, indication,
  comparison, findings, impression) and ``indiana_projections.csv`` (uid, filename, projection in
  Frontal/Lateral), images ``<images_dir>/<filename>``.

``images_dir`` defaults to ``images/`` (XML: also ``NLMCXR_png/``; CSV: ``images/images_normalized/``
first) beside the reports. When there is no such folder the cohort is text only (no modalities).

Samples: one per report, ``sample_id`` = the report number (uid). IU-Xray has one report per patient
and no patient key, so ``patient_id = sample_id``.

Target ``label`` in ``("normal", "abnormal")``, masked: a report whose MeSH major tags (CSV: the
``MeSH`` column split on ``;``, else ``Problems``) are exactly ``normal`` is normal; one tagged only
``No Indexing`` (not indexed) or with no tag is unlabelled (NaN); every other report is abnormal. A
'No Indexing' report was never tagged, and the ones read look normal: calling them abnormal would
mislabel them. On the real reports: 1,391 normal, 2,469 abnormal, 95 unlabelled (all 'No Indexing') of 3,955.

Text: each section (``SECTIONS``) is its own samples column, ``""`` when the report leaves it empty
(a text encoder takes strings; "" reads as "section absent", where NaN would need a special case in
every text model). ``cohort.text`` lists only ``sections`` (default: indication only). The MeSH tags are
derived from the findings and impression, so selecting either puts a reason in ``cohort.flagged``.

Modalities ``frontal`` and ``lateral``, one instance per image. The view of an image comes from
``indiana_projections.csv`` when present, else from ``nlmcxr_dicom_metadata.csv(.gz)`` beside the
reports (its ``View Position``: PA/AP frontal; LL, LATERAL, RL, LARGE LATERAL lateral; only the
``imageid`` and ``View Position`` columns are ever read: the file also holds patient ids, names and
dates), else from the order in the report: the first image listed is frontal, the others lateral. On
the real data the metadata has a view for 4,881 of the 7,470 images; on the 768 two-image reports where
it names one frontal and one lateral image, the order rule agrees with it on 691 (90%). The metadata is
not reliable either: on 1,219 two-image reports it calls both images frontal (PA or AP; the DICOM tag
was apparently not updated for the lateral shot), so prefer ``indiana_projections.csv`` when you have it.

An image file that is not there is a missing instance, counted and logged once; one Pillow cannot open
is quarantined (``strict=True`` raises).
"""

from __future__ import annotations

import logging
import os
import tarfile
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..lookup import check as check_name
from .adapter import Param, need_root, resolve_options
from .cohort import Cohort, CohortError, Target
from .quarantine import check_instances

__all__ = ["NAME", "OPTIONS", "SECTIONS", "CLASSES", "XML_ARCHIVE", "XML_FOLDER", "REPORTS_CSV",
           "PROJECTIONS_CSV", "METADATA", "load"]

log = logging.getLogger(__name__)

SECTIONS = ("indication", "comparison", "findings", "impression")
CLASSES = ("normal", "abnormal")
LEAKS = ("the MeSH tags that define the normal/abnormal label are derived from the findings and impression "
         "text: a model reading this section reads the answer")
_LEAKING = ("findings", "impression")
_VIEW_OF_POSITION = {"PA": "frontal", "AP": "frontal", "LL": "lateral", "LATERAL": "lateral", "RL": "lateral",
                     "LARGE LATERAL": "lateral"}
XML_ARCHIVE, XML_FOLDER = "NLMCXR_reports.tgz", "ecgen-radiology"
REPORTS_CSV, PROJECTIONS_CSV = "indiana_reports.csv", "indiana_projections.csv"
METADATA = ("nlmcxr_dicom_metadata.csv.gz", "nlmcxr_dicom_metadata.csv")


NAME = "iu_xray"
OPTIONS = {
    "layout": Param(str, "auto", choices=("auto", "xml", "csv"),
                    doc=f"xml: {XML_ARCHIVE} or {XML_FOLDER}/; csv: {REPORTS_CSV} (auto: the one found, xml first)"),
    "sections": Param((list, tuple, str), ("indication",),
                      doc=f"the report sections the cohort's text holds, of {', '.join(SECTIONS)} (findings and "
                          f"impression leak the label)"),
    "images_dir": Param((str, os.PathLike), None, nullable=True,
                        doc="the PNG folder (default images/ or NLMCXR_png/ beside the reports; none: text only)"),
}


def load(root: str | Path | None = None, *, strict: bool = False, **options) -> Cohort:
    """Load IU-Xray from ``root`` (the folder, the ``.tgz`` or ``indiana_reports.csv``) as a cohort."""
    o = resolve_options(NAME, OPTIONS, options)
    layout, images_dir = o["layout"], o["images_dir"]
    root = need_root(NAME, root, f"the folder holding {XML_ARCHIVE} or {REPORTS_CSV}")
    sections = _check_sections(o["sections"])
    layout, source = _detect(root, layout)
    base = source.parent if source.is_file() else root
    view_sources: dict[str, int] = {}
    if layout == "xml":
        reports, images = _read_xml(source)
        folder = _image_folder(base, images_dir, ("images", "NLMCXR_png"))
        if folder is not None:
            images["modality"], view_sources = _xml_views(images, base)
            images["path"] = _xml_paths(images["image_id"], folder)
    else:
        reports = _read_reports_csv(source)
        images = _read_projections(base / PROJECTIONS_CSV, reports)
        folder = _image_folder(base, images_dir, ("images/images_normalized", "images"))
        if folder is not None:
            images["path"] = str(folder.resolve()) + "/" + images["filename"]

    name = f"iu_xray {source.name}"
    if folder is None:
        log.info("%s: no images folder (images_dir not given, none beside the reports): text-only cohort", name)
        rows = pd.DataFrame(columns=["sample_id", "modality", "path"])
    else:
        rows = images.sort_values(["sample_id", "modality", "position"])[["sample_id", "modality", "path"]]
    instances, quarantine, n_missing = check_instances(rows, name=name, strict=strict)

    counts = reports["label"].value_counts()
    description = (f"IU-Xray {layout} layout ({source.name}): {len(reports)} reports, one per patient: "
                   f"normal {counts.get('normal', 0)}, abnormal {counts.get('abnormal', 0)}, unlabelled "
                   f"{int(reports['label'].isna().sum())} ('No Indexing' or no MeSH tag); ")
    if folder is None:
        description += "no images folder (text only)"
    else:
        description += f"{len(instances)} images ({n_missing} absent, {len(quarantine)} quarantined)"
        if view_sources:
            description += f"; views of the {len(images)} listed images: " + ", ".join(
                f"{v} from {k}" for k, v in view_sources.items() if v)
    return Cohort(name=NAME, samples=reports, instances=instances,
                  targets=[Target("label", "binary", CLASSES, masked=True)],
                  modalities=["frontal", "lateral"] if folder is not None else [], text=list(sections),
                  description=description, quarantine=quarantine,
                  flagged={s: LEAKS for s in sections if s in _LEAKING})


# -- layout -------------------------------------------------------------------------------------
def _check_sections(sections) -> tuple[str, ...]:
    sections = (sections,) if isinstance(sections, str) else tuple(sections)
    for s in sections:
        check_name("section", s, SECTIONS, "sections", error=CohortError)
    return tuple(dict.fromkeys(sections))


def _detect(root: Path, layout: str) -> tuple[str, Path]:
    """(layout, source): the tgz / XML folder for ``xml``, the reports CSV for ``csv``."""
    if not root.exists():
        raise CohortError(f"{root}: not found (expected {XML_ARCHIVE}, a folder of report XML files or {REPORTS_CSV})")
    if root.is_file():
        found = {"csv" if root.suffix.lower() == ".csv" else "xml": root}
    else:
        xml = next((p for p in (root / XML_ARCHIVE, root / XML_FOLDER) if p.exists()), None)
        if xml is None and next(root.glob("*.xml"), None) is not None:
            xml = root
        found = {k: v for k, v in (("xml", xml), ("csv", root / REPORTS_CSV)) if v is not None and v.exists()}
    pick = "xml" if layout == "auto" and "xml" in found else ("csv" if layout == "auto" else layout)
    if pick not in found:
        want = {"xml": f"{XML_ARCHIVE}, {XML_FOLDER}/ or *.xml", "csv": REPORTS_CSV}
        wanted = want[pick] if layout != "auto" else f"{want['xml']} or {want['csv']}"
        raise CohortError(f"{root}: no IU-Xray reports found for layout {layout!r} (expected {wanted})")
    return pick, found[pick]


def _image_folder(base: Path, images_dir, defaults: tuple[str, ...]) -> Path | None:
    if images_dir is not None:
        folder = Path(images_dir)
        if not folder.is_dir():
            raise CohortError(f"{folder}: images folder not found (images_dir)")
        return folder
    return next((base / d for d in defaults if (base / d).is_dir()), None)


def _label(tags: list[str]) -> str | float:
    """normal: the only tag is 'normal'; NaN: no tag or only 'No Indexing'; abnormal otherwise."""
    tags = {t.strip().lower() for t in tags if t and t.strip()}
    if not tags or tags == {"no indexing"}:
        return np.nan
    return "normal" if tags == {"normal"} else "abnormal"


def _bare(ids: pd.Series) -> pd.Series:
    """The image key shared by every naming: no ``CXR`` prefix, no ``.png``/``.dcm`` suffix."""
    return ids.str.replace(r"^CXR", "", regex=True).str.replace(r"(\.dcm)?(\.png)?$", "", regex=True)


# -- XML layout ---------------------------------------------------------------------------------
def _documents(source: Path) -> Iterator[tuple[str, bytes]]:
    """(where, bytes) of each report XML, from the tgz (in memory) or the folder."""
    if source.is_dir():
        for f in sorted(source.glob("*.xml")):
            yield str(f), f.read_bytes()
        return
    try:
        with tarfile.open(source, "r:*") as tf:
            for m in tf:
                if m.isfile() and m.name.endswith(".xml"):
                    yield f"{source} member {m.name}", tf.extractfile(m).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise CohortError(f"{source}: not a readable tar archive of report XML files ({type(exc).__name__})") from None


def _read_xml(source: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reports table and the images table (sample_id, image_id, position) of the XML layout."""
    reports, images, where_of = [], [], {}
    for where, data in _documents(source):
        try:
            doc = ET.fromstring(data)
        except ET.ParseError as exc:
            raise CohortError(f"{where}: not well-formed XML ({exc})") from None
        node = doc.find("IUXRId")
        rid = (node.get("id") or "").strip() if node is not None else ""
        if not rid:
            raise CohortError(f"{where}: no <IUXRId id=...> (the report number)")
        if rid in where_of:
            raise CohortError(f"{where}: report number {rid} already given by {where_of[rid]}")
        where_of[rid] = where
        text = {(a.get("Label") or "").strip().lower(): "".join(a.itertext()).strip() for a in doc.iter("AbstractText")}
        mesh = doc.find("MeSH")
        tags = [e.text or "" for e in mesh.iter("major")] if mesh is not None else []
        reports.append({"sample_id": rid, "patient_id": rid, "label": _label(tags),
                        **{s: text.get(s, "") for s in SECTIONS}})
        for k, img in enumerate(doc.iter("parentImage")):
            image_id = (img.get("id") or "").strip()
            if not image_id:
                raise CohortError(f"{where}: <parentImage> number {k + 1} has no id")
            images.append((rid, image_id, k))
    if not reports:
        raise CohortError(f"{source}: no report XML files in it")
    frame = pd.DataFrame(reports)
    frame = frame.iloc[np.lexsort((frame["sample_id"], pd.to_numeric(frame["sample_id"], errors="coerce")))]
    return frame.reset_index(drop=True), pd.DataFrame(images, columns=["sample_id", "image_id", "position"])


def _xml_views(images: pd.DataFrame, base: Path) -> tuple[pd.Series, dict[str, int]]:
    """frontal/lateral per image: projections CSV, else DICOM metadata, else report order."""
    key = _bare(images["image_id"])
    view = pd.Series(np.nan, index=images.index, dtype=object)
    sources = {}
    if (base / PROJECTIONS_CSV).is_file():
        proj = _projections_table(base / PROJECTIONS_CSV)
        view = key.map(dict(zip(_bare(proj["filename"]), proj["modality"])))
        sources[PROJECTIONS_CSV] = int(view.notna().sum())
    meta = next((base / m for m in METADATA if (base / m).is_file()), None)
    if meta is not None:
        before = int(view.notna().sum())
        view = view.fillna(key.map(_metadata_views(meta)))
        sources[meta.name] = int(view.notna().sum()) - before
    before = int(view.notna().sum())
    view = view.fillna(pd.Series(np.where(images["position"] == 0, "frontal", "lateral"), index=images.index))
    sources["report order (first listed frontal)"] = int(view.notna().sum()) - before
    return view, sources


def _metadata_views(meta: Path) -> dict[str, str]:
    """{image key: view} from the DICOM metadata CSV; only its imageid and View Position are read."""
    try:
        m = pd.read_csv(meta, usecols=["imageid", "View Position"], dtype=str)
    except ValueError as exc:  # pandas names the absent usecols
        raise CohortError(f"{meta}: needs the columns 'imageid' and 'View Position' ({exc})") from None
    except (OSError, EOFError, zlib.error, pd.errors.ParserError) as exc:
        raise CohortError(f"{meta}: not a readable CSV ({type(exc).__name__})") from None
    view = m["View Position"].str.strip().str.upper().map(_VIEW_OF_POSITION)
    known = view.notna() & m["imageid"].notna()
    return dict(zip(_bare(m.loc[known, "imageid"]), view[known]))


def _xml_paths(image_ids: pd.Series, folder: Path) -> pd.Series:
    """The file of each image id in ``folder``: ``<id>.png``, else ``<bare>.png``, else ``<bare>.dcm.png``;
    ``<id>.png`` (absent, so a missing instance) when none is there."""
    names = set(os.listdir(folder))
    bare = _bare(image_ids)
    options = [image_ids + ".png", bare + ".png", bare + ".dcm.png"]
    chosen = np.select([o.isin(names) for o in options], options, options[0])
    return str(folder.resolve()) + "/" + pd.Series(chosen, index=image_ids.index)


# -- CSV layout ---------------------------------------------------------------------------------
def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CohortError(f"{path}: not a readable CSV ({type(exc).__name__})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise CohortError(f"{path}: column(s) {missing} missing; columns: {list(df.columns)}")
    df.index = df.index + 2  # the spreadsheet row: the header is row 1
    return df


def _read_reports_csv(path: Path) -> pd.DataFrame:
    df = _read_csv(path, ("uid", *SECTIONS))
    tags_col = next((c for c in ("MeSH", "Problems") if c in df.columns), None)
    if tags_col is None:
        raise CohortError(f"{path}: neither a 'MeSH' nor a 'Problems' column: the label comes from them")
    uid = df["uid"].str.strip()
    if (uid == "").any():
        raise CohortError(f"{path}: row {uid.index[uid == ''][0]}, column 'uid': blank")
    dup = uid.duplicated(keep=False)
    if dup.any():
        raise CohortError(f"{path}: rows {list(uid.index[dup][:5])}, column 'uid': {uid[dup].iloc[0]!r} repeated")
    out = pd.DataFrame({"sample_id": uid, "patient_id": uid, "label": df[tags_col].str.split(";").map(_label)})
    for s in SECTIONS:
        out[s] = df[s].str.strip()
    return out.reset_index(drop=True)


def _projections_table(path: Path) -> pd.DataFrame:
    df = _read_csv(path, ("uid", "filename", "projection"))
    proj = df["projection"].str.strip().str.lower()
    bad = ~proj.isin(["frontal", "lateral"])
    if bad.any():
        row = proj.index[bad][0]
        raise CohortError(f"{path}: row {row}, column 'projection': {df.at[row, 'projection']!r} is not Frontal or Lateral")
    return pd.DataFrame({"sample_id": df["uid"].str.strip(), "filename": df["filename"].str.strip(), "modality": proj})


def _read_projections(path: Path, reports: pd.DataFrame) -> pd.DataFrame:
    """The images table of the CSV layout (sample_id, filename, modality, position); empty without the CSV."""
    if not path.is_file():
        log.info("%s not found: no images", path)
        return pd.DataFrame(columns=["sample_id", "filename", "modality", "position"])
    images = _projections_table(path)
    unknown = ~images["sample_id"].isin(reports["sample_id"])
    if unknown.any():
        row = images.index[unknown][0]
        raise CohortError(f"{path}: row {row}, column 'uid': {images.at[row, 'sample_id']!r} is not in {REPORTS_CSV}")
    images["position"] = images.groupby("sample_id").cumcount()
    return images.reset_index(drop=True)
