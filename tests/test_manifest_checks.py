"""What the manifest finds in a new dataset before any sweep: a leaking text column, identical images
under two patients, multi-label targets, multi-frame files, samples with no readable image, numeric columns
with a stray string. Small stand-ins built in tmp; the real COVID subset walked through as a manifest when
the shared data is there."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from sweeps.datainfo import format_summary, inspect_cohort
from trainables.data.manifest import load

RNG = np.random.default_rng(0)


def _png(path: Path, seed: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (16, 16), dtype=np.uint8)).save(path)
    return path.name


def _notes_table(tmp_path, n_patients=60, leak=True):
    """Two studies per patient; the note says 'covid' on most positive rows when ``leak``."""
    rows = []
    for p in range(n_patients):
        y = "pos" if p % 2 else "neg"
        for k in range(2):
            filler = " ".join(RNG.choice(["cough", "fever", "opacity", "patient", "chest", "film", "seen"], 5))
            note = (f"{filler} covid suspected" if (y == "pos" and RNG.random() < 0.8) else filler) if leak else filler
            rows.append({"sample_id": f"s{p}_{k}", "patient_id": f"P{p}", "label": y, "note": note,
                         "age": float(RNG.integers(20, 90)), "image": _png(tmp_path / f"i{p}_{k}.png", 1000 * p + k)})
    return pd.DataFrame(rows)


def test_a_leaking_text_column_is_flagged_with_its_terms_and_left_out(tmp_path, caplog):
    _notes_table(tmp_path).to_csv(tmp_path / "m.csv", index=False)
    with caplog.at_level(logging.WARNING):
        cohort = load(tmp_path / "m.csv", targets={"label": None}, text=["note"], tabular=["age"],
                      image_cols={"image": "xray"})
    assert "note" in cohort.flagged and "'covid' (-> pos)" in cohort.flagged["note"]
    assert cohort.text == [] and cohort.tabular == ["age"]
    assert "note" in format_summary(inspect_cohort(cohort))
    kept = load(tmp_path / "m.csv", targets={"label": None}, text=["note"], allow_leaky=["note"])
    assert kept.text == ["note"] and "note" in kept.flagged


def test_notes_without_the_label_are_not_flagged(tmp_path):
    _notes_table(tmp_path, leak=False).to_csv(tmp_path / "m.csv", index=False)
    cohort = load(tmp_path / "m.csv", targets={"label": None}, text=["note"])
    assert cohort.flagged == {} and cohort.text == ["note"]


def test_identical_images_under_two_patients_end_up_in_one_group(tmp_path):
    _png(tmp_path / "a.png", 1)
    _png(tmp_path / "b.png", 2)
    _png(tmp_path / "c.png", 3)
    Image.open(tmp_path / "a.png").save(tmp_path / "a_copy.bmp")  # the same pixels in another file and format
    df = pd.DataFrame({"sample_id": ["s1", "s2", "s3", "s4"], "patient_id": ["P1", "P2", "P3", "P3"],
                       "y": ["0", "1", "0", "1"], "img": ["a.png", "a_copy.bmp", "b.png", "c.png"]})
    df.to_csv(tmp_path / "m.csv", index=False)
    cohort = load(tmp_path / "m.csv", targets={"y": None}, image_cols={"img": "x"})
    assert [d["patients"] for d in cohort.duplicates] == [["P1", "P2"]]
    pid = dict(zip(cohort.samples["sample_id"], cohort.samples["patient_id"]))
    assert pid["s1"] == pid["s2"] == "P1+P2" and pid["s3"] == "P3"
    assert "identical image" in cohort.description
    text = format_summary(inspect_cohort(cohort))
    assert "identical image" in text and "P1" in text
    apart = load(tmp_path / "m.csv", targets={"y": None}, image_cols={"img": "x"}, merge_duplicates=False)
    assert len(apart.duplicates) == 1 and apart.samples["patient_id"].tolist() == ["P1", "P2", "P3", "P3"]


def test_multilabel_column_becomes_one_binary_target_per_label_with_pandas_counts(tmp_path, caplog):
    labels = ["Effusion|Atelectasis", "No Finding", "Atelectasis|Effusion", "Mass", "No Finding", "Effusion",
              "Atelectasis|Mass|Effusion", "Hernia"]
    df = pd.DataFrame({"sample_id": [f"s{i}" for i in range(len(labels))], "patient_id": [f"P{i}" for i in range(len(labels))],
                       "Finding Labels": labels})
    df.to_csv(tmp_path / "m.csv", index=False)
    cohort = load(tmp_path / "m.csv", multilabel={"Finding Labels": {"sep": "|", "none": "No Finding"}})
    expected = df["Finding Labels"].str.split("|").explode().value_counts().drop("No Finding")
    assert sorted(t.name for t in cohort.targets) == sorted(expected.index)
    for t in cohort.targets:
        assert t.kind == "binary" and t.classes == ("0", "1")
        assert int((cohort.samples[t.name] == "1").sum()) == expected[t.name]
    # "Effusion|Atelectasis" and "Atelectasis|Effusion" are the same labels
    assert cohort.samples.loc[0, ["Effusion", "Atelectasis"]].tolist() == cohort.samples.loc[2, ["Effusion", "Atelectasis"]].tolist()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load(tmp_path / "m.csv", targets={"Finding Labels": None})
    assert "looks multi-label" in caplog.text and "multilabel=" in caplog.text


def test_a_plain_multiclass_target_gets_no_multilabel_warning(tmp_path, caplog):
    df = pd.DataFrame({"sample_id": list("abcdef"), "patient_id": list("abcdef"), "y": ["x", "y", "z", "x", "y", "z"]})
    df.to_csv(tmp_path / "m.csv", index=False)
    with caplog.at_level(logging.WARNING):
        load(tmp_path / "m.csv", targets={"y": None})
    assert "multi-label" not in caplog.text


def test_each_frame_of_a_multiframe_dicom_is_an_instance(tmp_path):
    src = get_testdata_file("rtdose.dcm")  # 15 frames
    import pydicom

    n = int(pydicom.dcmread(src, stop_before_pixels=True).NumberOfFrames)
    assert n > 1
    pd.DataFrame({"sample_id": ["a"], "patient_id": ["P"], "y": ["0"], "img": [src]}).to_csv(tmp_path / "m.csv", index=False)
    cohort = load(tmp_path / "m.csv", targets={"y": None}, image_cols={"img": "dose"})
    assert cohort.instances["frame"].tolist() == list(range(n))
    assert cohort.instances["order"].tolist() == list(range(n))
    assert "multi-frame" in cohort.description
    from trainables.data.images import read_slice

    frames = [read_slice(src, f) for f in (0, n - 1)]
    assert frames[0].shape == frames[1].shape and not np.array_equal(frames[0], frames[1])
    first = load(tmp_path / "m.csv", targets={"y": None}, image_cols={"img": "dose"}, frames="first")
    assert first.instances["frame"].tolist() == [0] and f"{n - 1} frame(s) left out" in first.description


def test_samples_with_no_readable_image_are_counted_as_missing_the_modality(tmp_path):
    _png(tmp_path / "ok.png", 1)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    (tmp_path / "empty.png").write_bytes(b"")
    df = pd.DataFrame({"sample_id": ["a", "b", "c", "d"], "patient_id": ["P1", "P2", "P3", "P4"], "y": ["0", "1", "0", "1"],
                       "img": ["ok.png", "bad.png", "empty.png; bad.png", ""]})
    df.to_csv(tmp_path / "m.csv", index=False)
    cohort = load(tmp_path / "m.csv", targets={"y": None}, image_cols={"img": "x"})
    assert cohort.instances["sample_id"].tolist() == ["a"]
    assert "2 sample(s) with no readable x image" in cohort.description
    info = inspect_cohort(cohort)
    assert info["modalities"]["x"]["unreadable"] == 2 and info["modalities"]["x"]["missing"] == 3
    assert "no readable image" in format_summary(info)


def test_a_numeric_column_with_a_stray_string_is_reported_and_read_as_numbers(tmp_path, caplog):
    df = pd.DataFrame({"sample_id": list("abcdef"), "patient_id": list("abcdef"), "y": list("010101"),
                       "age": ["45", "60", "45 y", "71", "", "38"], "site": ["north", "south", "north", "east", "south", "1"]})
    df.to_csv(tmp_path / "m.csv", index=False)
    with caplog.at_level(logging.WARNING):
        cohort = load(tmp_path / "m.csv", targets={"y": None}, tabular=["age", "site"])
    assert pd.api.types.is_float_dtype(cohort.samples["age"])
    assert np.isnan(cohort.samples["age"][2]) and cohort.samples["age"][3] == 71
    assert "'age'" in caplog.text and "line 4 ('45 y')" in caplog.text and "line 4" in cohort.description
    assert cohort.samples["site"].tolist()[:2] == ["north", "south"]  # mostly words: categorical, no warning
    assert "'site'" not in caplog.text
    kept = load(tmp_path / "m.csv", targets={"y": None}, tabular=["age"], categorical=["age"])
    assert kept.samples["age"][2] == "45 y"


def test_the_covid_subset_as_a_manifest_flags_the_notes_and_the_duplicates(tmp_path):
    from tests.conftest import shared_data

    base = shared_data()
    root = base / "covid-cxr" if base else None
    if root is None or not (root / "metadata_subset.csv").exists():
        pytest.skip("shared real data not found (set SWEEPS_SHARED_DATA to the data folder)")
    d = pd.read_csv(root / "metadata_subset.csv", dtype={"patientid": str})
    m = pd.DataFrame({"sample_id": [f"r{i:03d}" for i in range(len(d))], "patient_id": d["patientid"],
                      "covid": np.where(d["finding"].str.contains("COVID"), "covid", "other"),
                      "notes": d["clinical_notes"], "image": [str(root / "images" / f) for f in d["filename"]]})
    m.to_csv(tmp_path / "m.csv", index=False)
    cohort = load(tmp_path / "m.csv", targets={"covid": None}, text=["notes"], image_cols={"image": "xray"})
    assert "notes" in cohort.flagged
    assert len(cohort.duplicates) == 5 and cohort.samples["patient_id"].nunique() < d["patientid"].nunique()


def test_targets_may_be_one_column_name_or_a_list(tmp_path):
    pd.DataFrame({"sample_id": list("abcd"), "patient_id": list("abcd"), "y": list("0101"), "z": list("xyxy")}) \
        .to_csv(tmp_path / "m.csv", index=False)
    assert [t.name for t in load(tmp_path / "m.csv", targets="y").targets] == ["y"]
    assert [t.name for t in load(tmp_path / "m.csv", targets=["y", "z"]).targets] == ["y", "z"]
    from trainables.data.cohort import CohortError

    with pytest.raises(CohortError, match="'targets'.*required"):
        load(tmp_path / "m.csv")
