"""IU-Xray adapter: the real reports (counts and labels checked by an independent regex count), the
DICOM-metadata views, and the XML and Kaggle-CSV stand-ins with missing and corrupt images."""

from __future__ import annotations

import gzip
import logging
import re
import shutil
import tarfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import shared_data
from trainables.data import iuxray
from trainables.data.standins import iuxray as iuxray_standin
from trainables.data.cohort import CohortError


def _real_root():
    data = shared_data()
    if data is None or not (data / "iu-xray" / "NLMCXR_reports.tgz").exists():
        pytest.skip("IU-Xray reports not present: set SWEEPS_SHARED_DATA")
    return data / "iu-xray"


@pytest.fixture(scope="module")
def real_cohort():
    return iuxray.load(_real_root())


def _regex_labels(tgz) -> dict[str, str | None]:
    """Report number -> label, from the raw XML text with regular expressions (no XML parser)."""
    out = {}
    with tarfile.open(tgz) as tf:
        for m in tf:
            if not m.isfile():
                continue
            text = tf.extractfile(m).read().decode("utf-8")
            rid = re.search(r'<IUXRId id="(\d+)"', text).group(1)
            majors = {t.strip().lower() for t in re.findall(r"<major>(.*?)</major>", text, flags=re.S)}
            out[rid] = None if majors in (set(), {"no indexing"}) else ("normal" if majors == {"normal"} else "abnormal")
    return out


def _labels(cohort) -> list[str | None]:
    return [None if pd.isna(v) else v for v in cohort.samples["label"]]


def _tables_text(cohort) -> str:
    return (cohort.samples.astype(str).to_csv() + cohort.instances.astype(str).to_csv() + cohort.description
            + str(cohort.quarantine))


# -- real data ----------------------------------------------------------------------------------
def test_real_reports_count_and_labels_agree_with_an_independent_regex_count(real_cohort):
    c = real_cohort
    expected = _regex_labels(_real_root() / "NLMCXR_reports.tgz")
    assert len(c.samples) == len(expected) == 3955
    got = dict(zip(c.samples["sample_id"], _labels(c)))
    assert got == expected
    counts = c.samples["label"].value_counts(dropna=False)
    assert counts["normal"] == 1391 and counts["abnormal"] == 2469 and c.samples["label"].isna().sum() == 95
    assert (c.samples["patient_id"] == c.samples["sample_id"]).all()
    assert c.targets[0].masked and (c.labels() == -1).sum() == 95
    # no images beside the reports: a text-only cohort
    assert c.modalities == [] and len(c.instances) == 0


def test_real_default_sections_exclude_findings_and_impression(real_cohort):
    c = real_cohort
    assert c.text == ["indication"] and c.flagged == {}
    assert set(iuxray.SECTIONS) <= set(c.samples.columns)
    sections = c.samples[list(iuxray.SECTIONS)]
    assert not sections.isna().to_numpy().any(), "empty sections are '' not NaN"
    assert (sections["comparison"] == "").sum() > 0 and (sections["findings"] != "").sum() > 3000


def test_real_selecting_findings_flags_it_and_unknown_section_lists_valid_names():
    c = iuxray.load(_real_root(), sections=("indication", "findings"))
    assert c.text == ["indication", "findings"]
    assert set(c.flagged) == {"findings"} and "MeSH" in c.flagged["findings"]
    with pytest.raises(CohortError, match=r"unknown section 'finding' \(at sections\)\. Did you mean 'findings'\? Valid section names: "
                                          r"comparison, findings, impression, indication"):
        iuxray.load(_real_root(), sections=("finding",))


def test_real_metadata_csv_gives_the_view_and_order_rule_fills_the_rest(tmp_path, caplog):
    root = _real_root()
    meta = pd.read_csv(root / "nlmcxr_dicom_metadata.csv.gz", usecols=["imageid", "View Position", "Patient's Birth Date"],
                       dtype=str)
    position = dict(zip(meta["imageid"], meta["View Position"]))
    # 1295: first image is LL (order rule alone would say frontal), second PA (order rule: lateral);
    # CXR1000_IM-0003-1001 has no metadata row: first in its report -> frontal by the order rule.
    assert position["CXR1295_IM-0194-2002"] == "LL" and position["CXR1295_IM-0194-3003"] == "PA"
    assert "CXR1000_IM-0003-1001" not in position
    images = tmp_path / "png"
    images.mkdir()
    for name in ("1295_IM-0194-2002.png", "CXR1295_IM-0194-3003.png", "CXR1000_IM-0003-1001.png"):  # both namings
        Image.fromarray(np.full((8, 8), 100, np.uint8)).save(images / name)
    with caplog.at_level(logging.WARNING, logger="trainables.data.quarantine"):
        c = iuxray.load(root, images_dir=images)
    got = {p.rsplit("/", 1)[1]: m for p, m in zip(c.instances["path"], c.instances["modality"])}
    assert got == {"1295_IM-0194-2002.png": "lateral", "CXR1295_IM-0194-3003.png": "frontal",
                   "CXR1000_IM-0003-1001.png": "frontal"}
    assert c.modalities == ["frontal", "lateral"]
    absent = [r for r in caplog.records if "absent" in r.getMessage()]
    assert len(absent) == 1 and "7467 of 7470" in absent[0].getMessage()
    birth = meta.loc[meta["imageid"] == "CXR1295_IM-0194-3003", "Patient's Birth Date"].iloc[0]
    assert birth not in _tables_text(c)


# -- stand-ins ----------------------------------------------------------------------------------
def _xml_truth(root) -> dict[str, str]:
    """image file name -> expected view: the stand-in's metadata where it has a row, else report order."""
    meta = pd.read_csv(root / "nlmcxr_dicom_metadata.csv.gz", dtype=str)
    view_of = {i: ("frontal" if v in ("PA", "AP") else "lateral") for i, v in zip(meta["imageid"], meta["View Position"])}
    out = {}
    with tarfile.open(root / "NLMCXR_reports.tgz") as tf:
        for m in tf:
            ids = re.findall(r'<parentImage id="([^"]+)"', tf.extractfile(m).read().decode())
            for k, i in enumerate(ids):
                out[f"{i}.png"] = view_of.get(i, "frontal" if k == 0 else "lateral")
    return out


def test_xml_standin_loads_with_views_from_metadata_then_order(tmp_path):
    root = iuxray_standin.standin(tmp_path / "iu", n=20, seed=0)
    c = iuxray.load(root)
    assert len(c.samples) == 20 and c.modalities == ["frontal", "lateral"]
    truth = _xml_truth(root)
    got = {p.rsplit("/", 1)[1]: m for p, m in zip(c.instances["path"], c.instances["modality"])}
    assert got == truth and len(got) == len(list((root / "images").iterdir()))
    assert set(c.instances["modality"]) == {"frontal", "lateral"}
    assert c.instances.groupby(["sample_id", "modality"])["order"].apply(lambda o: list(o) == list(range(len(o)))).all()
    assert "nlmcxr_dicom_metadata" in c.description and "report order" in c.description
    meta = pd.read_csv(root / "nlmcxr_dicom_metadata.csv.gz", dtype=str)
    text = _tables_text(c)
    for col in ("Patient ID", "Patient's Name", "Patient's Birth Date"):
        assert not any(v in text for v in meta[col]), f"metadata column {col!r} leaked into the cohort"


def test_xml_standin_as_a_folder_of_xml_and_bare_png_names_loads_the_same(tmp_path):
    root = iuxray_standin.standin(tmp_path / "iu", n=12, seed=1)
    ref = iuxray.load(root)
    with tarfile.open(root / "NLMCXR_reports.tgz") as tf:
        tf.extractall(tmp_path / "folder", filter="data")  # the stand-in's own archive, not the real data
    shutil.copy(root / "nlmcxr_dicom_metadata.csv.gz", tmp_path / "folder")
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in (root / "images").iterdir():
        shutil.copy(f, bare / f.name.removeprefix("CXR"))
    c = iuxray.load(tmp_path / "folder", images_dir=bare)
    pd.testing.assert_frame_equal(c.samples, ref.samples)
    assert list(c.instances["modality"]) == list(ref.instances["modality"])
    assert [p.rsplit("/", 1)[1] for p in c.instances["path"]] == [p.rsplit("/CXR", 1)[1] for p in ref.instances["path"]]


def test_csv_standin_takes_views_from_projections(tmp_path):
    root = iuxray_standin.standin(tmp_path / "kaggle", n=20, seed=0, layout="csv")
    c = iuxray.load(root, sections=("indication", "impression"))
    proj = pd.read_csv(root / "indiana_projections.csv", dtype=str)
    truth = dict(zip(proj["filename"], proj["projection"].str.lower()))
    got = dict(zip((p.rsplit("/", 1)[1] for p in c.instances["path"]), c.instances["modality"]))
    assert got == truth and len(c.samples) == 20
    reports = pd.read_csv(root / "indiana_reports.csv", dtype=str, keep_default_na=False)
    expected = [None if m == "No Indexing" else ("normal" if m == "normal" else "abnormal") for m in reports["MeSH"]]
    assert _labels(c) == expected and expected.count(None) == 1
    assert set(c.flagged) == {"impression"}
    # the XML stand-in with the same seed has the same reports and labels
    xml = iuxray.load(iuxray_standin.standin(tmp_path / "xml", n=20, seed=0))
    assert xml.samples["label"].equals(c.samples["label"])


def test_missing_png_is_a_missing_instance_not_an_error(tmp_path, caplog):
    root = iuxray_standin.standin(tmp_path / "iu", n=20, seed=0)
    full = iuxray.load(root)
    gone = full.instances["path"].iloc[3]
    (root / "images" / gone.rsplit("/", 1)[1]).unlink()
    with caplog.at_level(logging.WARNING):
        c = iuxray.load(root, strict=True)
    assert len(c.instances) == len(full.instances) - 1 and gone not in set(c.instances["path"])
    assert "1 of" in caplog.text and "1 absent" in c.description and c.quarantine == []


def test_corrupt_and_truncated_png_are_quarantined_and_strict_raises(tmp_path):
    root = iuxray_standin.standin(tmp_path / "iu", n=20, seed=0)
    paths = iuxray.load(root).instances["path"]
    bad, cut = paths.iloc[0], paths.iloc[5]
    with open(bad, "wb") as f:
        f.write(b"not a png at all")
    data = open(cut, "rb").read()
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 2])
    c = iuxray.load(root)
    assert {q["path"] for q in c.quarantine} == {bad, cut}
    assert all(q["reason"].startswith("not a readable image") for q in c.quarantine)
    assert not set(c.instances["path"]) & {bad, cut} and len(c.instances) == len(paths) - 2
    with pytest.raises(CohortError, match=re.escape(bad)):
        iuxray.load(root, strict=True)


def test_standin_is_deterministic_atomic_and_refuses_to_overwrite(tmp_path, monkeypatch):
    a = iuxray_standin.standin(tmp_path / "a", n=8, seed=3, layout="csv")
    b = iuxray_standin.standin(tmp_path / "b", n=8, seed=3, layout="csv")
    assert (a / "indiana_reports.csv").read_bytes() == (b / "indiana_reports.csv").read_bytes()
    with pytest.raises(FileExistsError):
        iuxray_standin.standin(a)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(iuxray_standin, "_standin_png", broken)
    with pytest.raises(RuntimeError):
        iuxray_standin.standin(tmp_path / "c", n=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"], "nothing half-written is left"


# -- bad input ----------------------------------------------------------------------------------
def test_bad_xml_errors_name_the_file_and_field(tmp_path):
    folder = tmp_path / "x" / "ecgen-radiology"
    folder.mkdir(parents=True)
    (folder / "7.xml").write_text("<eCitation><IUXRId id='7'/><MeSH><major>normal</major></eCitation>")
    with pytest.raises(CohortError, match=r"7\.xml: not well-formed XML"):
        iuxray.load(tmp_path / "x")
    (folder / "7.xml").write_text("<eCitation><MeSH><major>normal</major></MeSH></eCitation>")
    with pytest.raises(CohortError, match=r"7\.xml: no <IUXRId"):
        iuxray.load(tmp_path / "x")
    (tmp_path / "x" / "NLMCXR_reports.tgz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(CohortError, match=r"NLMCXR_reports\.tgz: not a readable tar archive"):
        iuxray.load(tmp_path / "x")
    with pytest.raises(CohortError, match=r"no IU-Xray reports found"):
        iuxray.load(tmp_path / "x", layout="csv")


def test_bad_csv_errors_name_the_file_row_and_column(tmp_path):
    root = iuxray_standin.standin(tmp_path / "k", n=6, seed=0, layout="csv")
    proj = pd.read_csv(root / "indiana_projections.csv", dtype=str)
    proj.loc[1, "projection"] = "Oblique"
    proj.to_csv(root / "indiana_projections.csv", index=False)
    with pytest.raises(CohortError, match=r"indiana_projections\.csv: row 3, column 'projection': 'Oblique'"):
        iuxray.load(root)
    proj.loc[1, "projection"] = "Lateral"
    proj.loc[2, "uid"] = "999"
    proj.to_csv(root / "indiana_projections.csv", index=False)
    with pytest.raises(CohortError, match=r"row 4, column 'uid': '999' is not in indiana_reports\.csv"):
        iuxray.load(root)
    reports = pd.read_csv(root / "indiana_reports.csv", dtype=str)
    reports.drop(columns="findings").to_csv(root / "indiana_reports.csv", index=False)
    with pytest.raises(CohortError, match=r"indiana_reports\.csv: column\(s\) \['findings'\] missing"):
        iuxray.load(root)
    with pytest.raises(CohortError, match=r"nowhere: images folder not found"):
        iuxray.load(iuxray_standin.standin(tmp_path / "x", n=3), images_dir=tmp_path / "nowhere")


def test_metadata_without_the_view_column_is_an_error_naming_it(tmp_path):
    root = iuxray_standin.standin(tmp_path / "iu", n=5, seed=0)
    with gzip.open(root / "nlmcxr_dicom_metadata.csv.gz", "wt") as f:
        f.write("imageid,Modality\nCXR1_IM-0001-1001,CR\n")
    with pytest.raises(CohortError, match=r"nlmcxr_dicom_metadata\.csv\.gz: needs the columns 'imageid' and 'View Position'"):
        iuxray.load(root)
