import numpy as np
import pandas as pd
import pydicom

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
