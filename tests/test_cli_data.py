"""`data inspect` on the real datasets, and a multi-target sweep end to end on a generated stand-in."""

import json

import pytest

from sweeps.cli import main
from tests.conftest import shared_data


def _need(sub: str):
    root = shared_data()
    if root is None or not (root / sub).exists():
        pytest.skip(f"../shared/data/{sub} not present: set SWEEPS_SHARED_DATA")
    return root / sub


def test_inspect_names_the_leaky_columns_of_the_real_knee_sheet(capsys):
    assert main(["data", "inspect", "knee", "--data", str(_need("knee-osteoporosis")), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 240 and info["patients"] == 240
    assert info["targets"]["diagnosis"]["counts"] == {"normal": 37, "osteopenia": 154, "osteoporosis": 49}
    assert "t_score_value" in info["flagged"] and "t_score_value" not in info["tabular"]["columns"]


def test_inspect_real_rsna_labels_counts_masked_blanks(capsys):
    root = _need("rsna-lumbar/labels")
    assert main(["data", "inspect", "rsna_lumbar", "--data", str(root), "--option", "labels_only=true", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 1975 and len(info["targets"]) == 25
    assert sum(t["masked"] for t in info["targets"].values()) == 572


def test_inspect_a_space_name_uses_its_cohort_and_a_missing_root_is_a_clear_error(capsys):
    assert main(["data", "inspect", "knee_clinical"]) == 2  # a space name (not a cohort): its cohort, knee
    err = capsys.readouterr().err
    assert "cohort 'knee' needs its data" in err and "--data" in err


def test_real_covid_images_decode_and_patients_group(capsys):
    assert main(["data", "inspect", "covid_cxr", "--data", str(_need("covid-cxr")), "--json", "--check-images"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 162 and info["patients"] == 85 and info["quarantine"] == []


def test_a_bad_adapter_option_is_a_clear_error_naming_it(capsys, tmp_path):
    assert main(["data", "inspect", "knee", "--data", str(tmp_path), "--option", "uncertainty=ones"]) == 2
    err = capsys.readouterr().err
    assert "unknown knee option 'uncertainty' (at --option" in err and "Valid knee option names: allow_leaky" in err
    assert main(["data", "inspect", "knee", "--option", "uncertainty"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_data_synth_writes_a_compressed_cohort_at_the_asked_size(tmp_path, capsys):
    import pydicom

    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--patients", "1", "--size", "32", "--compression", "rle"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    ds = pydicom.dcmread(next(out.rglob("*.dcm")))
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless and ds.pixel_array.shape == (32, 32)
    assert main(["data", "synth", "--out", str(tmp_path / "bad"), "--patients", "1", "--size", "30"]) == 2
    assert "multiple of 8" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_inspect_takes_a_space_file_path_as_run_does(tmp_path, capsys, sweeps_home):
    space = tmp_path / "mine.py"
    space.write_text("from sweeps.spec import SweepSpec\n"
                     "SPEC = SweepSpec(name='mine', cohort='synthetic', cohort_options={'n_patients': 12},\n"
                     "                 space={'encoder': 'resnet18', 'pooling': 'mean', 'head': 'logreg'})\n")
    assert main(["data", "inspect", str(space), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["patients"] == 12


def test_smoke_on_a_manifest_space_without_data_says_to_give_data(tmp_path, capsys):
    space = tmp_path / "export.py"
    space.write_text("from sweeps.spec import SweepSpec\n"
                     "SPEC = SweepSpec(name='export', cohort='manifest', cohort_options={'targets': 'label'},\n"
                     "                 space={'tabular': True, 'head': 'logreg'})\n")
    assert main(["run", str(space), "--smoke"]) == 2
    err = capsys.readouterr().err
    assert "manifest" in err and "--data" in err and "stand-in" in err
