"""The IU-Xray stand-in: a small dataset in the XML (OpenI) or CSV (Kaggle) layout that
:func:`trainables.data.iuxray.load` reads."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pandas as pd
from PIL import Image

from ..files import atomic_dir
from ..iuxray import METADATA, NAME, PROJECTIONS_CSV, REPORTS_CSV, SECTIONS, XML_ARCHIVE, XML_FOLDER

__all__ = ["NAME", "standin"]

_ABNORMAL_TAGS = ["Cardiomegaly/mild", "Opacity/lung/base/left", "Pulmonary Atelectasis/base/right",
                  "Calcified Granuloma/lung/upper lobe/right", "Pleural Effusion/right/small", "Thoracic Vertebrae/degenerative"]
_INDICATIONS = ["Chest pain.", "Cough and fever.", "Preoperative evaluation.", "Shortness of breath.", "", "Positive TB test."]
_NORMAL_FINDINGS = "The heart is normal in size. The lungs are clear. No pleural effusion or pneumothorax."
_VIEW_PATTERNS = [("frontal", "lateral"), ("frontal", "lateral"), ("frontal", "lateral"), ("frontal",),
                  ("lateral", "frontal"), ("frontal", "lateral", "lateral"), ()]


def standin(out, *, n: int = 20, seed: int = 0, layout: str = "xml") -> Path:
    """Write a small IU-Xray stand-in at ``out`` and return ``out``.

    ``layout="xml"``: ``NLMCXR_reports.tgz`` (reports in the real XML schema, ``ecgen-radiology/<n>.xml``),
    ``images/CXR<n>_IM-....png`` (32x32 grey PNG), and ``nlmcxr_dicom_metadata.csv.gz`` giving the view of
    about 70% of the images beside made-up patient names, ids and birth dates (so tests can prove none
    reaches the cohort). ``layout="csv"``: the Kaggle ``indiana_reports.csv``, ``indiana_projections.csv`` and
    ``images/images_normalized/<n>_IM-....dcm.png``. About 40% of reports are normal, one is 'No
    Indexing', the rest abnormal (with a brighter blob in their images); one report in seven has no
    image. Built in a temporary folder and renamed into place.
    """
    if layout not in ("xml", "csv"):
        raise ValueError(f"layout={layout!r}: valid layouts are 'xml' and 'csv'")
    with atomic_dir(out) as tmp:
        records = _standin_records(np.random.default_rng(seed), n)
        (_write_xml_layout if layout == "xml" else _write_csv_layout)(tmp, records, np.random.default_rng(seed + 1))
    return Path(out)


def _standin_records(rng: np.random.Generator, n: int) -> list[dict]:
    records = []
    no_indexing = int(rng.integers(1, n + 1))
    for i in range(1, n + 1):
        if i == no_indexing:
            kind, majors = "normal", ["No Indexing"]
        elif rng.random() < 0.4:
            kind, majors = "normal", ["normal"]
        else:
            kind = "abnormal"
            majors = list(rng.choice(_ABNORMAL_TAGS, size=int(rng.integers(1, 4)), replace=False))
        findings = _NORMAL_FINDINGS if kind == "normal" else " ".join(f"{m.split('/')[0]} is seen." for m in majors)
        views = _VIEW_PATTERNS[int(rng.integers(len(_VIEW_PATTERNS)))]
        records.append({
            "uid": str(i), "majors": majors, "abnormal": kind == "abnormal",
            "indication": str(rng.choice(_INDICATIONS)), "comparison": "None." if rng.random() < 0.5 else "",
            "findings": findings, "impression": "No acute disease." if kind == "normal" else "Abnormal chest.",
            "images": [(f"{i}_IM-{i:04d}-{1000 * (k + 1) + 1}", v) for k, v in enumerate(views)],
        })
    return records


def _standin_png(path: Path, rng: np.random.Generator, abnormal: bool) -> None:
    yy, xx = np.mgrid[0:32, 0:32]
    blob = ((yy - 14) ** 2 + (xx - 18) ** 2 < 25) * (90.0 if abnormal else 0.0)
    Image.fromarray(np.clip(rng.normal(90, 20, (32, 32)) + blob, 0, 255).astype(np.uint8)).save(path)


def _report_xml(r: dict) -> str:
    sections = "\n".join(
        f'            <AbstractText Label="{s.upper()}">{escape(r[s])}</AbstractText>' if r[s]
        else f'            <AbstractText Label="{s.upper()}"/>' for s in ("comparison", "indication", "findings", "impression"))
    majors = "\n".join(f"      <major>{escape(m)}</major>" for m in r["majors"])
    images = "\n".join(
        f"   <parentImage id={quoteattr('CXR' + key)}>\n      <figureId>F{k + 1}</figureId>\n"
        f"      <caption>Xray Chest PA and Lateral</caption>\n      <panel type=\"single\">\n"
        f"         <url>/hadoop/storage/radiology/extract/CXR{key}.jpg</url>\n      </panel>\n   </parentImage>"
        for k, (key, _) in enumerate(r["images"]))
    return f"""<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <meta type="rr"/>
   <uId id="CXR{r['uid']}"/>
   <pmcId id="{r['uid']}"/>
   <docSource>CXR</docSource>
   <IUXRId id="{r['uid']}"/>
   <publisher>Indiana University</publisher>
   <MedlineCitation Owner="Indiana University" Status="supplied by publisher">
      <Article PubModel="Electronic">
         <ArticleTitle>Indiana University Chest X-ray Collection</ArticleTitle>
         <Abstract>
{sections}
         </Abstract>
      </Article>
   </MedlineCitation>
   <MeSH>
{majors}
   </MeSH>
{images}
</eCitation>
"""


def _write_xml_layout(root: Path, records: list[dict], rng: np.random.Generator) -> None:
    (root / "images").mkdir()
    meta = []
    with tarfile.open(root / XML_ARCHIVE, "w:gz") as tf:
        for r in records:
            data = _report_xml(r).encode()
            info = tarfile.TarInfo(f"{XML_FOLDER}/{r['uid']}.xml")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
            for key, view in r["images"]:
                _standin_png(root / "images" / f"CXR{key}.png", rng, r["abnormal"])
                if rng.random() >= 0.7:
                    continue
                position = rng.choice(["PA", "AP"] if view == "frontal" else ["LL", "LATERAL"])
                meta.append({"imageid": f"CXR{key}", "Patient ID": f"MRN{rng.integers(10**6, 10**7)}",
                             "Patient's Name": f"Zbigniew^Achterberg{r['uid']}",
                             "Patient's Birth Date": f"19{rng.integers(30, 99)}0{rng.integers(1, 10)}1{rng.integers(0, 10)}",
                             "View Position": str(position)})
    with gzip.open(root / METADATA[0], "wt", newline="") as f:
        pd.DataFrame(meta, columns=["imageid", "Patient ID", "Patient's Name", "Patient's Birth Date",
                                    "View Position"]).to_csv(f, index=False)


def _write_csv_layout(root: Path, records: list[dict], rng: np.random.Generator) -> None:
    folder = root / "images" / "images_normalized"
    folder.mkdir(parents=True)
    reports, projections = [], []
    for r in records:
        reports.append({"uid": r["uid"], "MeSH": ";".join(r["majors"]),
                        "Problems": ";".join(dict.fromkeys(m.split("/")[0] for m in r["majors"])),
                        "image": "Xray Chest PA and Lateral", **{s: r[s] for s in SECTIONS}})
        for key, view in r["images"]:
            _standin_png(folder / f"{key}.dcm.png", rng, r["abnormal"])
            projections.append({"uid": r["uid"], "filename": f"{key}.dcm.png", "projection": view.capitalize()})
    pd.DataFrame(reports).to_csv(root / REPORTS_CSV, index=False)
    pd.DataFrame(projections, columns=["uid", "filename", "projection"]).to_csv(root / PROJECTIONS_CSV, index=False)
