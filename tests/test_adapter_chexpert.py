"""CheXpert / MIMIC-CXR style adapter: the labeler's golden reports under each uncertainty policy, the
JPEG and DICOM stand-ins, MIMIC-style ids, and errors that name the row and column."""

from __future__ import annotations

import logging
import os
import re

import numpy as np
import pandas as pd
import pydicom
import pytest

from tests.conftest import shared_data
from trainables.data import chexpert
from trainables.data.standins import chexpert as chexpert_standin
from trainables.data.cohort import MASKED, CohortError


def _reports_csv():
    data = shared_data()
    if data is None or not (data / "chexpert-labeler" / "labeled_reports.csv").exists():
        pytest.skip("chexpert-labeler/labeled_reports.csv not present: set SWEEPS_SHARED_DATA")
    return data / "chexpert-labeler" / "labeled_reports.csv"


def _expected(raw: pd.DataFrame, uncertainty: str, blank: str) -> pd.DataFrame:
    """The policy applied cell by cell, written independently of the adapter (None = masked)."""
    minus = {"ignore": None, "ones": "1", "zeros": "0"}[uncertainty]
    empty = {"ignore": None, "zeros": "0"}[blank]
    return raw.apply(lambda col: [empty if pd.isna(v) else ("1" if v == 1 else "0" if v == 0 else minus) for v in col])


def _as_lists(df: pd.DataFrame) -> dict:
    return {c: [None if pd.isna(v) else v for v in df[c]] for c in df.columns}


# -- the labeler's golden reports ---------------------------------------------------------------
@pytest.mark.parametrize("uncertainty", ["ignore", "ones", "zeros"])
@pytest.mark.parametrize("blank", ["ignore", "zeros"])
def test_golden_reports_load_text_only_with_labels_per_policy(uncertainty, blank):
    path = _reports_csv()
    c = chexpert.load(path, uncertainty=uncertainty, blank=blank)
    raw = pd.read_csv(path)
    assert len(c.samples) == len(raw) == 4
    assert c.modalities == [] and len(c.instances) == 0 and c.tabular == []
    assert c.text == ["report"] and "labeler" in c.flagged["report"]
    assert c.samples["report"].tolist() == raw["Reports"].tolist()
    assert (c.samples["patient_id"] == c.samples["sample_id"]).all() and c.samples["sample_id"].is_unique
    got = c.samples[list(chexpert.PATHOLOGIES.values())]
    want = _expected(raw[list(chexpert.PATHOLOGIES)], uncertainty, blank)
    assert _as_lists(got) == _as_lists(want.set_axis(list(chexpert.PATHOLOGIES.values()), axis=1))
    assert [t.name for t in c.targets] == list(chexpert.PATHOLOGIES.values())
    assert all(t.kind == "binary" and t.classes == ("0", "1") and t.masked for t in c.targets)
    c.fingerprint()  # a text-only cohort (no modalities, no instances) is a valid cohort


def test_each_uncertainty_policy_maps_the_uncertain_consolidation_cell():
    path = _reports_csv()
    raw = pd.read_csv(path)
    assert raw.loc[2, "Consolidation"] == -1.0  # "may reflect atelectasis or consolidation"
    cells = {p: chexpert.load(path, uncertainty=p).samples.loc[2, "consolidation"] for p in ("ignore", "ones", "zeros")}
    assert pd.isna(cells["ignore"]) and cells["ones"] == "1" and cells["zeros"] == "0"
    ignore = chexpert.load(path, uncertainty="ignore")
    assert ignore.labels("consolidation")[2] == MASKED
    assert len(ignore.labelled("atelectasis").samples) == 1  # row 2 (-1) and blanks are masked, row 1 (1) kept


def test_the_policies_differ_exactly_on_the_uncertain_cells():
    path = _reports_csv()
    raw = pd.read_csv(path)[list(chexpert.PATHOLOGIES)].to_numpy()
    cols = list(chexpert.PATHOLOGIES.values())
    ones = chexpert.load(path, uncertainty="ones").samples[cols].to_numpy()
    zeros = chexpert.load(path, uncertainty="zeros").samples[cols].to_numpy()
    differ = ~((ones == zeros) | (pd.isna(ones) & pd.isna(zeros)))
    assert (differ == (raw == -1)).all() and differ.sum() == 2
    with pytest.raises(CohortError, match=r"chexpert\.uncertainty='maybe' \(at .*\): allowed ignore, ones, zeros"):
        chexpert.load(path, uncertainty="maybe")
    with pytest.raises(CohortError, match=r"chexpert\.blank='ones' \(at .*\): allowed ignore, zeros"):
        chexpert.load(path, blank="ones")


# -- stand-ins ----------------------------------------------------------------------------------
@pytest.mark.parametrize("image_format", ["jpg", "dcm"])
def test_standin_loads_with_right_samples_patients_and_modalities(tmp_path, image_format):
    root = chexpert_standin.standin(tmp_path / "cx", n_patients=15, seed=0, image_format=image_format)
    c = chexpert.load(root / "train.csv")
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    parts = table["Path"].str.split("/")
    assert c.samples["patient_id"].nunique() == 15
    assert set(c.samples["sample_id"]) == set(parts.str[1] + "/" + parts.str[2])
    assert len(c.instances) == len(table) and c.quarantine == []
    view = dict(zip(str(root.resolve()) + "/" + table["Path"], table["Frontal/Lateral"].str.lower()))
    assert dict(zip(c.instances["path"], c.instances["modality"])) == view
    assert c.modalities == ["frontal", "lateral"] and set(c.instances["modality"]) == {"frontal", "lateral"}
    assert c.instances["path"].map(lambda p: p.endswith(f".{image_format}")).all()
    assert c.tabular == ["sex", "age", "ap_pa"] and c.text == [] and c.flagged == {}
    frontal_pa = table[table["Frontal/Lateral"] == "Frontal"].groupby(parts.str[1] + "/" + parts.str[2])["AP/PA"].first()
    assert c.samples.set_index("sample_id")["ap_pa"].to_dict() == frontal_pa.to_dict()
    # labels of the study's rows, under U-Ones
    ones = chexpert.load(root, uncertainty="ones")
    first = table[~(parts.str[1] + "/" + parts.str[2]).duplicated()]
    cardio = ["1" if v in ("1.0", "-1.0") else "0" if v == "0.0" else None for v in first["Cardiomegaly"]]
    assert [None if pd.isna(v) else v for v in ones.samples["cardiomegaly"]] == cardio


def test_dicom_header_identities_never_reach_the_cohort_or_its_log(tmp_path, caplog):
    root = chexpert_standin.standin(tmp_path / "cx", n_patients=6, seed=2, image_format="dcm")
    table = pd.read_csv(root / "train.csv", dtype=str)
    secrets = set()
    for rel in table["Path"]:
        ds = pydicom.dcmread(root / rel, stop_before_pixels=True)
        secrets |= {str(ds.PatientName), str(ds.PatientID), str(ds.PatientBirthDate)}
    assert len(secrets) >= 6 and all(secrets)
    (root / table["Path"][0]).write_bytes(b"garbage")  # a quarantined file's reason must not quote a header either
    (root / table["Path"][1]).unlink()
    with caplog.at_level(logging.DEBUG):
        c = chexpert.load(root)
    text = (c.samples.astype(str).to_csv() + c.instances.astype(str).to_csv() + c.description
            + str(c.quarantine) + caplog.text)
    leaked = [s for s in secrets if s in text]
    assert leaked == [] and len(c.quarantine) == 1


def test_missing_image_is_counted_and_corrupt_ones_are_quarantined(tmp_path, caplog):
    root = chexpert_standin.standin(tmp_path / "cx", n_patients=8, seed=1, image_format="jpg")
    full = chexpert.load(root)
    paths = full.instances["path"]
    os.remove(paths.iloc[0])
    with open(paths.iloc[1], "wb") as f:
        f.write(b"\xff\xd8 not really a jpeg")
    with caplog.at_level(logging.WARNING):
        c = chexpert.load(root)
    assert len(c.instances) == len(full.instances) - 2
    assert c.quarantine == [{"path": paths.iloc[1], "reason": c.quarantine[0]["reason"]}]
    assert "1 of" in caplog.text and "1 absent, 1 quarantined" in c.description
    with pytest.raises(CohortError, match=re.escape(paths.iloc[1])):
        chexpert.load(root, strict=True)


def test_truncated_dicom_is_quarantined(tmp_path):
    root = chexpert_standin.standin(tmp_path / "cx", n_patients=4, seed=0, image_format="dcm")
    path = chexpert.load(root).instances["path"].iloc[0]
    data = open(path, "rb").read()
    cut = data.index(b"\xe0\x7f\x10\x00")  # the Pixel Data tag: keep the header, drop the pixels
    with open(path, "wb") as f:
        f.write(data[:cut])
    c = chexpert.load(root)
    assert [q["path"] for q in c.quarantine] == [path] and "pixel data" in c.quarantine[0]["reason"]


def test_mimic_style_ids_and_view_position(tmp_path):
    root = chexpert_standin.standin(tmp_path / "cx", n_patients=5, seed=4)
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    parts = table["Path"].str.extract(r"patient(\d+)/study(\d+)/view(\d+)")
    table["subject_id"] = "1000" + parts[0]
    table["study_id"] = "5" + parts[0] + parts[1]
    table["dicom_id"] = "d" + parts[0] + parts[1] + parts[2]
    table["ViewPosition"] = np.where(table["Frontal/Lateral"] == "Frontal", table["AP/PA"], "LATERAL")
    mimic = table.drop(columns=["Frontal/Lateral", "AP/PA", "Sex", "Age"])
    mimic["Path"] = mimic["Path"].str.rsplit("/", n=1).str[0] + "/" + mimic["dicom_id"] + ".jpg"  # no view in the name
    for old, new in zip(table["Path"], mimic["Path"]):
        (root / old).rename(root / new)
    mimic.to_csv(root / "mimic.csv", index=False)
    c = chexpert.load(root / "mimic.csv")
    assert set(c.samples["patient_id"]) == set(table["subject_id"])
    assert set(c.samples["sample_id"]) == set(table["study_id"])
    truth = np.where(table["Frontal/Lateral"] == "Frontal", "frontal", "lateral")
    view = dict(zip(str(root.resolve()) + "/" + mimic["Path"], truth))
    assert dict(zip(c.instances["path"], c.instances["modality"])) == view
    assert c.tabular == ["ap_pa"] and set(c.samples["ap_pa"].dropna()) <= {"AP", "PA"}


def test_chexpert_paths_listed_from_the_folder_above_the_csv(tmp_path):
    root = chexpert_standin.standin(tmp_path / "CheXpert-v1.0-small", n_patients=3, seed=0)
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    table["Path"] = "CheXpert-v1.0-small/" + table["Path"]  # as in the real train.csv
    table.to_csv(root / "train.csv", index=False)
    c = chexpert.load(root / "train.csv")
    assert len(c.instances) == len(table) and c.instances["path"].map(lambda p: "/CheXpert-v1.0-small/train/" in p).all()


def test_view_from_the_file_name_when_the_view_column_is_blank(tmp_path):
    root = chexpert_standin.standin(tmp_path / "cx", n_patients=4, seed=0)
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    table["Frontal/Lateral"] = ""
    table.to_csv(root / "train.csv", index=False)
    c = chexpert.load(root)
    assert (c.instances["path"].str.extract(r"_(frontal|lateral)\.jpg$")[0] == c.instances["modality"]).all()
    assert len(c.instances) == len(table)


# -- bad input ----------------------------------------------------------------------------------
def test_a_bad_label_value_names_the_row_and_column(tmp_path):
    root = chexpert_standin.standin(tmp_path / "cx", n_patients=4, seed=0)
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    table.loc[3, "Pleural Effusion"] = "2"
    table.to_csv(root / "train.csv", index=False)
    with pytest.raises(CohortError, match=r"train\.csv: row 5, column 'Pleural Effusion': value '2'"):
        chexpert.load(root)


def test_rows_of_one_study_that_disagree_are_named(tmp_path):
    root = chexpert_standin.standin(tmp_path / "cx", n_patients=6, seed=0)
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    study = table["Path"].str.rsplit("/", n=1).str[0]
    shared = study[study.duplicated()].iloc[0]
    rows = table.index[study == shared]
    table.loc[rows[1], "Edema"] = "1.0" if table.loc[rows[0], "Edema"] != "1.0" else "0.0"
    table.to_csv(root / "train.csv", index=False)
    expected_rows = [int(r) + 2 for r in rows]
    with pytest.raises(CohortError, match=re.escape(f"rows {expected_rows}") + r".*disagree on column 'Edema'"):
        chexpert.load(root)


def test_other_bad_inputs_name_the_file_and_column(tmp_path):
    root = chexpert_standin.standin(tmp_path / "cx", n_patients=3, seed=0)
    table = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    table.drop(columns=["Fracture"]).to_csv(tmp_path / "no_fracture.csv", index=False)
    with pytest.raises(CohortError, match=r"no_fracture\.csv: pathology column\(s\) \['Fracture'\] missing"):
        chexpert.load(tmp_path / "no_fracture.csv")
    table.drop(columns=["Path"]).to_csv(tmp_path / "no_path.csv", index=False)
    with pytest.raises(CohortError, match=r"no_path\.csv: no image path column 'Path' and no report column"):
        chexpert.load(tmp_path / "no_path.csv")
    bad = table.copy()
    bad.loc[0, "Path"] = "view1_frontal.jpg"
    bad.to_csv(tmp_path / "flat.csv", index=False)
    with pytest.raises(CohortError, match=r"flat\.csv: row 2, column 'Path'.*<patient>/<study>/<image>"):
        chexpert.load(tmp_path / "flat.csv")
    bad = table.copy()
    bad.loc[1, "Frontal/Lateral"] = "Oblique"
    bad.to_csv(tmp_path / "view.csv", index=False)
    with pytest.raises(CohortError, match=r"view\.csv: row 3, column 'Frontal/Lateral': value 'Oblique'"):
        chexpert.load(tmp_path / "view.csv")
    with pytest.raises(CohortError, match=r"report column 'Impression' not found"):
        chexpert.load(root, report_col="Impression")
    with pytest.raises(CohortError, match=r"missing\.csv: file not found"):
        chexpert.load(tmp_path / "missing.csv")
