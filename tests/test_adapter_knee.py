"""Knee osteoporosis adapter: messy sheet -> clean columns, the T/Z-scores flagged as leaky, images joined
to patients by id (file name or images.csv), class folders checked against the sheet."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from tests.conftest import shared_data
from trainables.data import knee
from trainables.data.standins import knee as knee_standin
from trainables.data.cohort import CohortError
from trainables.data.images import read_slice


@pytest.fixture(scope="module")
def standin_root(tmp_path_factory):
    return knee_standin.standin(tmp_path_factory.mktemp("knee") / "knee", n_patients=30, seed=0)


@pytest.fixture
def root(standin_root, tmp_path):
    """A private copy to break."""
    return shutil.copytree(standin_root, tmp_path / "knee")


def _real_sheet():
    data = shared_data()
    sheet = data / "knee-osteoporosis" / "patient_details.csv" if data else None
    if sheet is None or not sheet.exists():
        pytest.skip("knee-osteoporosis sheet not present: set SWEEPS_SHARED_DATA")
    return sheet


def test_real_sheet_loads_as_a_tabular_cohort_with_the_scores_flagged():
    c = knee.load(sheet=_real_sheet())
    assert len(c.samples) == 240 and c.samples["patient_id"].is_unique
    assert c.samples["diagnosis"].value_counts().to_dict() == {"osteopenia": 154, "osteoporosis": 49, "normal": 37}
    assert c.modalities == [] and c.instances.empty
    for col in ("joint_pain", "height_m", "weight_kg", "bmi", "maximum_walking_distance_km", "occupation"):
        assert col in c.tabular
    assert "s_no" not in c.samples.columns
    assert set(c.flagged) == {"t_score_value", "z_score_value"}
    assert not set(c.flagged) & set(c.tabular)
    assert "alone predicts 'diagnosis' with AUC 0.99" in c.flagged["t_score_value"]
    assert "Z-score" in c.flagged["z_score_value"] and "AUC 0." in c.flagged["z_score_value"]
    assert set(c.samples["obesity"].dropna()) <= {"normal weight", "over weight", "overweight", "obesity", "under weight"}


def test_allow_leaky_keeps_a_flagged_column_but_still_reports_it():
    c = knee.load(sheet=_real_sheet(), allow_leaky=["t_score_value"])
    assert "t_score_value" in c.tabular and "t_score_value" in c.flagged
    assert "z_score_value" not in c.tabular
    with pytest.raises(CohortError, match=r"unknown column 't_score' \(at allow_leaky\)\. Did you mean 't_score_value'\?"):
        knee.load(sheet=_real_sheet(), allow_leaky=["t_score"])


@pytest.mark.parametrize("header, clean", [
    ("height  (meter)", "height_m"), ("Weight (KG) ", "weight_kg"), ("BMI: ", "bmi"), ("Joint Pain:", "joint_pain"),
    ("Maximum Walking distance (km)", "maximum_walking_distance_km"), ("T-score Value", "t_score_value"),
    ("S.No", "s_no"), ("Patient Id", "patient_id"), ("Occupation ", "occupation"),
])
def test_headers_are_cleaned_to_snake_case_with_units_kept(header, clean):
    assert knee.clean_header(header) == clean


def test_standin_loads_with_images_joined_by_the_leading_id_token(standin_root):
    c = knee.load(standin_root)
    assert c.modalities == ["xray"] and len(c.samples) == 30 and c.quarantine == []
    assert set(c.flagged) == {"t_score_value", "z_score_value"}
    joined = c.instances.merge(c.samples[["sample_id", "diagnosis"]], on="sample_id")
    # the class folder of every image is its patient's diagnosis, and its name starts with the patient id
    assert (joined["path"].str.split("/").str[-2].str.lower() == joined["diagnosis"]).all()
    assert all(p.rsplit("/", 1)[1].startswith(s + "_") for s, p in zip(joined["sample_id"], joined["path"]))
    assert 0 < c.instances["sample_id"].nunique() < 30  # some patients have no image: a missing modality
    assert read_slice(c.instances["path"].iloc[0]).shape == (32, 32)


def test_standin_is_written_atomically(tmp_path, monkeypatch):
    from PIL import Image

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", fail)
    with pytest.raises(OSError):
        knee_standin.standin(tmp_path / "k")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    knee_standin.standin(tmp_path / "k")
    with pytest.raises(FileExistsError):
        knee_standin.standin(tmp_path / "k")


def _edit_sheet(root, edit):
    sheet = root / "patient_details.csv"
    df = pd.read_csv(sheet, dtype=str)
    edit(df)
    df.to_csv(sheet, index=False)


def test_duplicate_patient_id_names_both_lines(root):
    _edit_sheet(root, lambda df: df.__setitem__("Patient Id", df["Patient Id"].where(df.index != 4, df["Patient Id"][1])))
    with pytest.raises(CohortError, match=r"patient id '\w+' appears on line 3 and line 6"):
        knee.load(root)


def test_unknown_diagnosis_names_line_and_value(root):
    _edit_sheet(root, lambda df: df.__setitem__("Diagnosis", df["Diagnosis"].where(df.index != 6, "Osteopenai ")))
    with pytest.raises(CohortError, match=r"line 8, column 'Diagnosis': unknown diagnosis 'osteopenai'\. "
                                          r"Did you mean 'osteopenia'\?"):
        knee.load(root)


def test_upper_case_and_padded_diagnosis_is_accepted(root):
    _edit_sheet(root, lambda df: df.__setitem__("Diagnosis", " " + df["Diagnosis"].str.upper() + " "))
    assert set(knee.load(root).samples["diagnosis"]) == set(knee.CLASSES)


def test_image_in_the_wrong_class_folder_names_the_file(root):
    src = next((root / "images" / "Normal").iterdir())
    shutil.move(src, root / "images" / "Osteoporosis" / src.name)
    with pytest.raises(CohortError, match=rf"{src.name}: image in class folder 'osteoporosis' but patient "
                                          rf"'\w+' has diagnosis 'normal'"):
        knee.load(root)


def test_images_csv_joins_files_named_without_patient_ids(root):
    """The Mendeley layout: files named per class ('Normal/1.png'); images.csv maps them to patients."""
    before = knee.load(root).instances
    rows = []
    for folder in (root / "images").iterdir():
        for k, f in enumerate(sorted(folder.iterdir())):
            new = folder / f"{k + 1}.png"
            f.rename(new)
            rows.append({"file": f"{folder.name}/{new.name}", "patient_id": f.name.split("_")[0]})
    with pytest.raises(CohortError, match="images.csv"):  # no id in any name, and no mapping yet
        knee.load(root)
    pd.DataFrame(rows).to_csv(root / "images" / "images.csv", index=False)
    after = knee.load(root).instances
    assert sorted(after["sample_id"]) == sorted(before["sample_id"])
    assert len(after) == len(before)


def test_mapping_to_an_unknown_patient_names_the_line(root):
    pd.DataFrame({"file": ["Normal/N1_1.png", "Normal/N2_1.png"], "patient_id": ["N1", "X99"]}).to_csv(
        root / "images" / "images.csv", index=False)
    with pytest.raises(CohortError, match=r"images.csv: line 3: patient id 'X99' is not in the sheet"):
        knee.load(root)


def test_unjoined_and_unreadable_images_are_quarantined_or_fatal_when_strict(root):
    (root / "images" / "Normal" / "stray.png").write_bytes((root / "images" / "Normal" / "N1_1.png").read_bytes())
    victim = next((root / "images" / "Osteopenia").iterdir())
    victim.write_bytes(b"not a png")
    c = knee.load(root)
    reasons = {q["path"].rsplit("/", 1)[1]: q["reason"] for q in c.quarantine}
    assert set(reasons) == {"stray.png", victim.name}
    assert "no patient id" in reasons["stray.png"] and "not a readable image" in reasons[victim.name]
    assert not c.instances["path"].str.endswith(victim.name).any()
    with pytest.raises(CohortError, match="stray.png: no patient id"):
        knee.load(root, strict=True)


def test_unknown_class_folder_is_an_error(root):
    (root / "images" / "Normal").rename(root / "images" / "Normall")
    with pytest.raises(CohortError, match=r"unknown class folder 'Normall'\. Did you mean 'normal'\?"):
        knee.load(root)


def test_xlsx_sheet_loads_like_csv(standin_root, tmp_path):
    pytest.importorskip("openpyxl")
    sheet = tmp_path / "patient_details.xlsx"
    pd.read_csv(standin_root / "patient_details.csv").to_excel(sheet, index=False)
    a, b = knee.load(sheet=standin_root / "patient_details.csv"), knee.load(sheet=sheet)
    pd.testing.assert_frame_equal(a.samples, b.samples)  # floats within round-off of the xlsx writer
    assert a.tabular == b.tabular
