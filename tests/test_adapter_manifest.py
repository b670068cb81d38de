"""The generic manifest adapter: CSV/parquet rows -> a validated cohort; every problem reported at once."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from trainables.data.cohort import CohortError
from trainables.data.files import atomic_dir
from trainables.data.manifest import MAX_PROBLEMS, load, load_config


def _png(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def _dicom_slice(path, z, instance):
    """A 4x4 MR slice at height ``z`` (axial: the normal is +z); pixel value = instance number."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.InstanceNumber = "MR", instance
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    ds.PixelData = np.full((4, 4), instance, np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def _good(tmp_path):
    """Three samples of two patients: one PNG, two ';'-separated PNGs, a DICOM folder whose file names
    run against the slice positions, a blank image cell; a masked second target."""
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b1.png")
    _png(tmp_path / "img" / "b2.png")
    series = tmp_path / "img" / "series_c"
    series.mkdir()
    for name, z in (("s1.dcm", 30.0), ("s2.dcm", 10.0), ("s3.dcm", 20.0)):
        _dicom_slice(series / name, z, instance=int(z))
    rows = [
        {"sample_id": "A", "patient_id": "P1", "grade": "low", "extra": "", "age": 50, "sex": "F",
         "report": "fine", "xray": "img/a.png", "mri": ""},
        {"sample_id": "B", "patient_id": "P1", "grade": "high", "extra": "yes", "age": np.nan, "sex": "M",
         "report": np.nan, "xray": "img/b1.png; img/b2.png", "mri": ""},
        {"sample_id": "C", "patient_id": "P2", "grade": "low", "extra": "no", "age": 61, "sex": "unknown",
         "report": "x", "xray": "", "mri": "img/series_c"},
    ]
    return pd.DataFrame(rows)


KW = dict(targets={"grade": ["low", "high"], "extra": None}, image_cols={"xray": "xray", "mri": "mri"},
          tabular=["age", "sex"], text=["report"], masked_targets=["extra"])


def test_good_manifest_loads_with_images_targets_tabular_and_text(tmp_path):
    _good(tmp_path).to_csv(tmp_path / "m.csv", index=False)
    c = load(tmp_path / "m.csv", **KW)
    assert c.name == "m" and list(c.samples["sample_id"]) == ["A", "B", "C"]
    assert c.target("grade").classes == ("low", "high") and c.target("grade").kind == "binary"
    assert c.target("extra").masked and c.target("extra").classes == ("no", "yes")
    assert list(c.labels("extra")) == [-1, 1, 0]
    assert c.modalities == ["xray", "mri"] and c.tabular == ["age", "sex"] and c.text == ["report"]
    assert c.samples["report"].tolist() == ["fine", "", "x"]
    b = c.instances[c.instances["sample_id"] == "B"].sort_values("order")
    assert [p.rsplit("/", 1)[1] for p in b["path"]] == ["b1.png", "b2.png"]
    assert c.instances[c.instances["sample_id"] == "C"]["modality"].unique().tolist() == ["mri"]
    assert c.instances["path"].map(lambda p: p.startswith(str(tmp_path))).all()


def test_folder_of_dicom_slices_is_ordered_by_position_not_file_name(tmp_path):
    _good(tmp_path).to_csv(tmp_path / "m.csv", index=False)
    c = load(tmp_path / "m.csv", **KW)
    mri = c.instances[c.instances["modality"] == "mri"].sort_values("order")
    assert [p.rsplit("/", 1)[1] for p in mri["path"]] == ["s2.dcm", "s3.dcm", "s1.dcm"]  # z = 10, 20, 30
    assert mri["order"].tolist() == [0, 1, 2]


def test_parquet_manifest_loads_like_csv(tmp_path):
    df = _good(tmp_path)
    df.to_csv(tmp_path / "m.csv", index=False)
    df.to_parquet(tmp_path / "m.parquet", index=False)
    a, b = load(tmp_path / "m.csv", **KW), load(tmp_path / "m.parquet", **KW)
    pd.testing.assert_frame_equal(a.instances, b.instances)
    keys = ["sample_id", "patient_id", "grade", "extra"]
    assert a.samples[keys].equals(b.samples[keys])


def test_integer_labels_in_parquet_with_blanks_match_their_classes(tmp_path):
    df = pd.DataFrame({"sample_id": ["a", "b", "c"], "patient_id": ["1", "2", "3"], "y": [0, 1, None]})
    df.to_parquet(tmp_path / "m.parquet")  # y becomes float with NaN: 0.0, 1.0
    c = load(tmp_path / "m.parquet", targets={"y": [0, 1]}, masked_targets=["y"])
    assert list(c.labels("y")) == [0, 1, -1]


def test_three_problems_are_reported_together_with_their_lines_and_columns(tmp_path):
    df = _good(tmp_path)
    df.loc[2, "sample_id"] = "A"  # duplicate of line 2 on line 4
    df.loc[1, "grade"] = "hihg"  # unknown label, line 3
    df = df.rename(columns={"age": "agee"})  # missing column
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(CohortError) as err:
        load(tmp_path / "bad.csv", **KW)
    msg = str(err.value)
    assert "3 problem(s)" in msg
    assert "column 'age' not found. Did you mean 'agee'?" in msg
    assert "sample_id 'A' appears on line 2 and line 4" in msg
    assert "line 3, column 'grade': unknown label 'hihg'. Did you mean 'high'? Valid label values: high, low" in msg


def test_blank_label_is_a_problem_unless_the_target_is_masked(tmp_path):
    df = _good(tmp_path)
    df.loc[0, "grade"] = np.nan
    df.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(CohortError, match=r"line 2, column 'grade': no label"):
        load(tmp_path / "m.csv", **KW)
    c = load(tmp_path / "m.csv", **{**KW, "masked_targets": ["extra", "grade"]})
    assert c.labels("grade")[0] == -1


def test_problem_list_is_capped_with_a_count_of_the_rest(tmp_path):
    n = MAX_PROBLEMS + 30
    pd.DataFrame({"sample_id": range(n), "patient_id": range(n), "y": ["bad"] * n}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(CohortError) as err:
        load(tmp_path / "m.csv", targets={"y": ["a", "b"]})
    msg = str(err.value)
    assert f"{n} problem(s)" in msg and "... and 30 more" in msg
    assert len(re.findall(r"unknown label", msg)) == MAX_PROBLEMS


def test_missing_image_is_a_missing_instance_unless_strict(tmp_path):
    df = _good(tmp_path)
    df.loc[0, "xray"] = "img/gone.png"
    df.to_csv(tmp_path / "m.csv", index=False)
    c = load(tmp_path / "m.csv", **KW)
    assert "A" not in set(c.instances["sample_id"]) and "1 image path(s) missing" in c.description
    with pytest.raises(CohortError, match=r"line 2, column 'xray': file not found: 'img/gone.png'"):
        load(tmp_path / "m.csv", **KW, strict=True)


def test_unreadable_image_is_quarantined_unless_strict(tmp_path):
    df = _good(tmp_path)
    (tmp_path / "img" / "b2.png").write_bytes(b"\x89PNG not really")
    df.to_csv(tmp_path / "m.csv", index=False)
    c = load(tmp_path / "m.csv", **KW)
    assert [q["path"].rsplit("/", 1)[1] for q in c.quarantine] == ["b2.png"]
    assert c.instances["path"].str.endswith("b2.png").sum() == 0
    assert c.instances["path"].str.endswith("b1.png").sum() == 1
    with pytest.raises(CohortError, match=r"line 3, column 'xray': unreadable image .*b2.png"):
        load(tmp_path / "m.csv", **KW, strict=True)


def test_paths_resolve_against_root_when_given(tmp_path):
    df = _good(tmp_path)
    (tmp_path / "sub").mkdir()
    df.to_csv(tmp_path / "sub" / "m.csv", index=False)
    with pytest.raises(CohortError, match="file not found"):
        load(tmp_path / "sub" / "m.csv", **KW, strict=True)
    assert len(load(tmp_path / "sub" / "m.csv", **KW, image_root=tmp_path).instances) == 6


def test_load_config_takes_a_plain_dict_and_rejects_unknown_keys(tmp_path):
    _good(tmp_path).to_csv(tmp_path / "m.csv", index=False)
    c = load_config({"path": str(tmp_path / "m.csv"), **KW, "name": "mine"})
    assert c.name == "mine" and len(c.samples) == 3
    with pytest.raises(CohortError, match=r"unknown manifest config key 'tabluar'\. Did you mean 'tabular'\?"):
        load_config({"path": str(tmp_path / "m.csv"), "targets": {"grade": None}, "tabluar": ["age"]})


def test_atomic_dir_leaves_nothing_behind_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "whole.txt").write_text("x")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (tmp_path / "out" / "whole.txt").exists()
