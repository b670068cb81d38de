import numpy as np
import pandas as pd
import pydicom
import pytest

from trainables.data import synthetic


def test_generation_is_deterministic(tmp_path):
    a = synthetic.generate(tmp_path / "a", seed=3, n_patients=6)
    b = synthetic.generate(tmp_path / "b", seed=3, n_patients=6)
    assert pd.read_csv(a / "labels.csv").equals(pd.read_csv(b / "labels.csv"))
    assert pd.read_csv(a / "series.csv").equals(pd.read_csv(b / "series.csv"))


def test_cohort_shape_imbalance_missing_series_and_ordering(small_cohort):
    c = small_cohort
    s, i = c.samples, c.instances
    assert set(c.modalities) == {"sagittal_t1", "sagittal_t2", "axial_t2"}
    per_series = i.groupby(["sample_id", "modality"]).size()
    assert per_series.min() >= 8 and per_series.max() <= 24
    assert (per_series.groupby("sample_id").size() < 3).any(), "some studies lack a series type"
    counts = s["severity"].value_counts()
    assert counts["none"] > counts.get("moderate", 0) > 0
    assert s["bmi"].isna().any()
    # slices are ordered by position, not by file name (file names are random)
    one = i[(i.sample_id == s.sample_id[0]) & (i.modality == "axial_t2")].sort_values("order")
    z = [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in one.path]
    assert z == sorted(z)
    assert [p.split("/")[-1] for p in one.path] != sorted(p.split("/")[-1] for p in one.path)


def test_headers_carry_identities_but_the_cohort_tables_do_not(small_cohort):
    c = small_cohort
    ds = pydicom.dcmread(c.instances.path[0], stop_before_pixels=True)
    name, pid = str(ds.PatientName), str(ds.PatientID)
    assert name and pid.startswith("MRN")
    tables = c.samples.astype(str).to_csv() + c.instances.drop(columns="path").astype(str).to_csv()
    assert name not in tables and pid not in tables and str(ds.PatientBirthDate) not in tables


def test_lesion_is_brighter_in_severe_studies(small_cohort):
    from trainables.data.images import read_slice

    c = small_cohort
    peak = {}
    for sev in ("none", "severe"):
        sids = c.samples.sample_id[c.samples.severity == sev][:4]
        rows = c.instances[c.instances.sample_id.isin(sids) & (c.instances.modality == "sagittal_t2")]
        peak[sev] = np.mean([max(read_slice(p).max() for p in g.path) for _, g in rows.groupby("sample_id")])
    assert peak["severe"] > peak["none"] * 1.2


@pytest.mark.parametrize("compression", ["rle", "jpeg2000"])
def test_compressed_cohort_decodes_to_the_uncompressed_pixels(tmp_path, compression):
    from trainables.data.images import read_slice
    from trainables.data.standins.dicom import COMPRESSIONS, check_compression

    if compression != "rle":  # RLE is pydicom's own; the others need an encoder plugin
        try:
            check_compression(compression)
        except ValueError as exc:
            pytest.skip(str(exc))
    plain = synthetic.generate(tmp_path / "plain", seed=4, n_patients=3, size=128)
    packed = synthetic.generate(tmp_path / compression, seed=4, n_patients=3, size=128, compression=compression)
    files = sorted(p.relative_to(plain) for p in plain.rglob("*.dcm"))
    assert files == sorted(p.relative_to(packed) for p in packed.rglob("*.dcm"))
    assert pd.read_csv(plain / "labels.csv").equals(pd.read_csv(packed / "labels.csv"))
    for f in files:
        ds = pydicom.dcmread(packed / f, stop_before_pixels=True)
        assert ds.file_meta.TransferSyntaxUID == COMPRESSIONS[compression] and (ds.Rows, ds.Columns) == (128, 128)
        assert np.array_equal(read_slice(str(packed / f)), read_slice(str(plain / f)))


def test_unknown_or_unavailable_compression_is_refused_before_writing(tmp_path):
    from trainables.data.standins.dicom import COMPRESSIONS, check_compression

    with pytest.raises(ValueError, match="valid: none, rle"):
        synthetic.generate(tmp_path / "x", n_patients=1, compression="lzw")
    with pytest.raises(ValueError, match="multiple of 8"):
        synthetic.generate(tmp_path / "y", n_patients=1, size=100)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    for name in COMPRESSIONS:  # each known one is either written or refused naming what it lacks
        try:
            check_compression(name)
        except ValueError as exc:
            assert "needs an encoder" in str(exc)
