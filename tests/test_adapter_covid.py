"""COVID chest X-ray adapter: one sample per image grouped by patient, leak terms scrubbed from the notes,
outcome and provenance columns flagged, missing and corrupt images handled."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

from tests.conftest import shared_data
from trainables.data import covid
from trainables.data.standins import covid as covid_standin
from trainables.data.cohort import CohortError
from trainables.data.images import read_slice

# An independent check of the scrubbing: any trace of these anywhere in a note is a leak.
LEAK = re.compile(r"covid|sars|corona|ncov|wuhan", re.IGNORECASE)


def _real_root():
    data = shared_data()
    root = data / "covid-cxr" if data else None
    if root is None or not (root / covid.METADATA).exists():
        pytest.skip("covid-cxr not present: set SWEEPS_SHARED_DATA")
    return root


@pytest.fixture(scope="module")
def real():
    return covid.load(_real_root())


@pytest.fixture(scope="module")
def standin_root(tmp_path_factory):
    return covid_standin.standin(tmp_path_factory.mktemp("covid") / "cxr", n_patients=20, seed=0)


@pytest.fixture
def root(standin_root, tmp_path):
    return shutil.copytree(standin_root, tmp_path / "cxr")


def test_real_subset_is_one_sample_per_image_grouped_by_patient(real):
    meta = pd.read_csv(_real_root() / covid.METADATA, dtype={"patientid": str})
    assert len(real.samples) == meta["filename"].nunique() == 162
    first = meta.drop_duplicates("filename").set_index("filename")["patientid"]
    pid = real.samples.set_index("sample_id")["patient_id"]
    # each image's patient is the patientid of its first listing, except the two ids that only re-list
    # images of another patient (339 and 340 repeat 285's and 287's files): those are merged
    assert (pid == first[pid.index]).all()
    assert set(meta["patientid"]) - set(pid) == {"339", "340"}
    assert pid.nunique() == meta["patientid"].nunique() - 2 == 85
    assert "339->285" in real.description and "340->287" in real.description


def test_real_covid_target_follows_the_finding(real):
    assert real.target().classes == ("other", "covid")
    assert real.samples["covid"].value_counts().to_dict() == {"covid": 87, "other": 75}


def test_real_notes_carry_no_leak_term_and_the_raw_notes_are_not_kept(real):
    notes = real.samples["clinical_notes"]
    assert not notes.map(LEAK.search).any()
    assert real.text == ["clinical_notes"]
    raw = pd.read_csv(_real_root() / covid.METADATA)["clinical_notes"].dropna()
    leaky_raw = set(raw[raw.str.contains(LEAK)])
    assert len(leaky_raw) > 10 and not leaky_raw & set(notes)
    assert not any(col for col in real.samples.columns if real.samples[col].astype(str).isin(leaky_raw).any())


def test_real_tabular_is_age_sex_view_and_outcomes_are_flagged(real):
    assert real.tabular == ["age", "sex", "view"]
    for col in ("survival", "went_icu", "intubated", "offset", "date", "location"):
        assert col in real.flagged and col not in real.tabular
    assert "post-hoc" in real.flagged["survival"] and "AUC" in real.flagged["date"]
    assert "Unnamed: 28" not in real.samples.columns


def test_real_images_are_all_instances_and_readable(real):
    inst = real.instances
    assert len(inst) == 162 and inst["sample_id"].is_unique and real.quarantine == []
    for path in inst["path"].sample(20, random_state=0):
        image = read_slice(path)
        assert image.ndim == 2 and image.size > 1000


def test_real_finding_target_scrubs_the_finding_words_too():
    c = covid.load(_real_root(), target="finding")
    assert "COVID-19, ARDS" in c.target().classes and c.target().kind == "multiclass"
    words = re.compile(r"\b(pneumocystis|legionella|klebsiella|streptococcus|ards)\b", re.IGNORECASE)
    assert not c.samples["clinical_notes"].map(words.search).any()


@pytest.mark.parametrize("note, clean", [
    ("RT-PCR positive for COVID-19.", "RT-PCR positive for."),
    ("Typical for COVID 19 (COVID19) pneumonia.", "Typical for pneumonia."),
    ("SARS-CoV2 RNA detected; sars cov 2 again", "RNA detected; again"),
    ("coronavirus disease-2019 confirmed", "confirmed"),
    ("contact with a COVID-positive co-worker", "contact with a -positive co-worker"),
    ("Returned from Wuhan; 2019-nCoV test", "Returned from; test"),
    ("moving towards ARDS", "moving towards ARDS"),  # whole words only; ARDS is not a covid term
])
def test_scrub_removes_whole_leak_terms_in_their_spellings(note, clean):
    assert covid.scrub(pd.Series([note]), covid.DEFAULT_LEAK_TERMS).iloc[0] == clean


def test_blank_note_becomes_empty_text():
    assert covid.scrub(pd.Series([np.nan, "  "]), covid.DEFAULT_LEAK_TERMS).tolist() == ["", ""]


def test_standin_merges_a_repeated_image_and_scrubs_notes(standin_root):
    c = covid.load(standin_root)
    raw = pd.read_csv(standin_root / covid.METADATA, dtype={"patientid": str})
    assert len(raw) == len(c.samples) + 1 and c.samples["sample_id"].is_unique
    assert "120->119" in c.description
    assert raw["clinical_notes"].str.contains(LEAK).any() and not c.samples["clinical_notes"].map(LEAK.search).any()
    assert set(c.samples["covid"]) == {"covid", "other"} and len(c.instances) == len(c.samples)


def test_repeated_image_with_different_findings_is_an_error(root):
    meta = pd.read_csv(root / covid.METADATA, dtype=str)
    meta.loc[len(meta) - 1, "finding"] = "Pneumonia"  # the repeated row now disagrees
    meta.to_csv(root / covid.METADATA, index=False)
    with pytest.raises(CohortError, match=rf"lines {len(meta)} and {len(meta) + 1} list the same image"):
        covid.load(root)


def test_missing_image_is_a_missing_instance_and_corrupt_one_is_quarantined(root):
    meta = pd.read_csv(root / covid.METADATA, dtype=str)
    gone, broken = meta["filename"].iloc[0], meta["filename"].iloc[1]
    (root / "images" / gone).unlink()
    (root / "images" / broken).write_bytes(b"garbage")
    c = covid.load(root)
    assert gone in set(c.samples["sample_id"]) and gone not in set(c.instances["sample_id"])
    assert "1 listed image file(s) missing" in c.description
    assert [q["path"].rsplit("/", 1)[1] for q in c.quarantine] == [broken]
    with pytest.raises(CohortError, match=rf"line 2: file not found: .*{re.escape(gone)}"):
        covid.load(root, strict=True)


def test_views_filter_and_unknown_view(standin_root):
    c = covid.load(standin_root, views=["PA", "AP"])
    assert set(c.samples["view"]) == {"PA", "AP"}
    with pytest.raises(CohortError, match=r"unknown view 'PAA' \(at views\)\. Did you mean 'PA'\? Valid view values: AP, AP Supine, L, PA"):
        covid.load(standin_root, views=["PAA"])


def test_allow_leaky_puts_an_outcome_back_into_tabular(standin_root):
    c = covid.load(standin_root, allow_leaky=["survival"])
    assert c.tabular == ["age", "sex", "view", "survival"] and "survival" in c.flagged
