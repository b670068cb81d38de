"""RSNA 2024 lumbar spine adapter: real label CSVs, a generated DICOM tree with the real ids, the two
real PNG series, the competition metric, and bad input."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from tests.conftest import shared_data
from trainables.data import rsna
from trainables.data.standins import rsna as rsna_standin
from trainables.data.cohort import MASKED, CohortError
from trainables.data.images import read_slice


def _labels_dir() -> Path:
    root = shared_data()
    if root is None or not (root / "rsna-lumbar" / "labels" / "train.csv").exists():
        pytest.skip("rsna-lumbar labels not present: set SWEEPS_SHARED_DATA")
    return root / "rsna-lumbar" / "labels"


@pytest.fixture(scope="module")
def real_standin(tmp_path_factory) -> Path:
    """12 studies with the real study and series ids, written once for the module."""
    labels = _labels_dir()
    return rsna_standin.standin(tmp_path_factory.mktemp("rsna") / "kaggle", n_studies=12, labels_csv=labels / "train.csv")


def _copy(tree: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tree, tmp_path / "copy", symlinks=True))


def _truth(root: Path) -> dict:
    return json.loads((root / "truth.json").read_text())


# -- real label CSVs ----------------------------------------------------------------------------
def test_real_labels_only_keeps_every_study_with_blanks_masked():
    labels = _labels_dir()
    cohort = rsna.load(labels, labels_only=True)
    raw = pd.read_csv(labels / "train.csv")
    n_blank = int(raw.drop(columns="study_id").isna().sum().sum())
    assert n_blank == 572
    assert len(cohort.samples) == 1975 and cohort.samples["sample_id"].is_unique
    assert (cohort.samples["sample_id"] == cohort.samples["patient_id"]).all()
    assert [t.name for t in cohort.targets] == list(raw.columns[1:]) and len(cohort.targets) == 25
    assert all(t.masked and t.classes == ("Normal/Mild", "Moderate", "Severe") for t in cohort.targets)
    assert int(cohort.samples[list(rsna.TARGET_NAMES)].isna().sum().sum()) == n_blank
    assert sum(int((cohort.labels(t.name) == MASKED).sum()) for t in cohort.targets) == n_blank
    assert cohort.instances.empty and cohort.modalities == ["sagittal_t1", "sagittal_t2_stir", "axial_t2"]


def test_real_series_descriptions_map_to_the_three_modalities():
    labels = _labels_dir()
    series = rsna.read_series(labels / "train_series_descriptions.csv")
    raw = pd.read_csv(labels / "train_series_descriptions.csv")
    assert len(series) == 6294 and series["modality"].notna().all()
    assert series["modality"].value_counts().to_dict() == {
        rsna.MODALITY_OF[d]: n for d, n in raw["series_description"].value_counts().items()}
    assert set(series["modality"]) == set(rsna.MODALITIES)


def test_absent_images_folder_is_an_error_unless_labels_only():
    with pytest.raises(CohortError, match=r"train_images: folder not found.*labels_only=True"):
        rsna.load(_labels_dir())


# -- generated tree with the real ids -----------------------------------------------------------
def test_standin_uses_the_real_study_and_series_ids(real_standin):
    labels = _labels_dir()
    real = pd.read_csv(labels / "train.csv", dtype=str).head(12)
    real_series = pd.read_csv(labels / "train_series_descriptions.csv", dtype=str)
    written = pd.read_csv(real_standin / "train.csv", dtype=str)
    assert written["study_id"].tolist() == real["study_id"].tolist()
    pd.testing.assert_frame_equal(written, real)
    series = pd.read_csv(real_standin / "train_series_descriptions.csv", dtype=str)
    made_up = set(series["series_id"]) - set(real_series["series_id"])
    assert len(made_up) == 1  # the second Sagittal T2/STIR series
    assert set(real_series.loc[real_series["study_id"].isin(real["study_id"]), "series_id"]) <= set(series["series_id"])


def test_load_counts_slices_and_missing_series(real_standin, caplog):
    truth = _truth(real_standin)
    with caplog.at_level(logging.INFO, logger="sweeps.data.rsna"):
        cohort = rsna.load(real_standin)
    assert len(cohort.samples) == 12 and not cohort.quarantine
    per_series = cohort.instances.groupby("series_id").size().to_dict()
    expected = {sid: len(r["files_in_order"]) for sid, r in truth["series"].items() if r["files_in_order"]}
    assert per_series == expected
    missing = [sid for sid, r in truth["series"].items() if r["missing"]]
    assert {r["missing"] for r in truth["series"].values()} >= {"absent", "empty", "no_study_folder"}
    assert not set(missing) & set(cohort.instances["series_id"])
    # the study without any image folder is still a sample, with every modality missing
    lost = [r["study_id"] for r in truth["series"].values() if r["missing"] == "no_study_folder"][0]
    assert lost in set(cohort.samples["sample_id"]) and lost not in set(cohort.instances["sample_id"])
    lines = [r.getMessage() for r in caplog.records if "listed series have no slices" in r.getMessage()]
    assert len(lines) == 1 and f"{len(missing)} of {len(truth['series'])} listed series" in lines[0]


def test_slice_order_is_recovered_from_positions_despite_shuffled_names(real_standin):
    truth = _truth(real_standin)
    cohort = rsna.load(real_standin)
    for series_id, rows in cohort.instances.groupby("series_id", sort=False):
        names = [Path(p).name for p in rows.sort_values("order")["path"]]
        assert names == truth["series"][series_id]["files_in_order"]
        assert names != sorted(names, key=lambda n: int(n.split(".")[0])) or len(names) < 2
    # and the pixels agree: each slice's values encode its true position
    some = cohort.instances[cohort.instances["series_id"] == cohort.instances["series_id"].iloc[0]]
    means = [read_slice(p).mean() for p in some.sort_values("order")["path"]]
    assert np.all(np.diff(means) > 50)


def test_two_series_of_one_type_are_kept_with_order_running_on(real_standin):
    truth = _truth(real_standin)
    study = truth["two_stir_study"]
    listed = pd.read_csv(real_standin / "train_series_descriptions.csv", dtype=str)
    stir_ids = listed.loc[(listed["study_id"] == study) & (listed["series_description"] == "Sagittal T2/STIR"),
                          "series_id"].tolist()
    assert len(stir_ids) == 2
    cohort = rsna.load(real_standin)
    rows = cohort.instances[(cohort.instances["sample_id"] == study)
                            & (cohort.instances["modality"] == "sagittal_t2_stir")].sort_values("order")
    n1, n2 = (len(truth["series"][s]["files_in_order"]) for s in stir_ids)
    assert rows["order"].tolist() == list(range(n1 + n2))
    assert rows["series_id"].tolist() == [stir_ids[0]] * n1 + [stir_ids[1]] * n2


def test_restricting_modalities_targets_and_studies(real_standin):
    cohort = rsna.load(real_standin, modalities=["axial_t2"], targets=["spinal_canal_stenosis_l4_l5"],
                       max_studies=3)
    assert len(cohort.samples) == 3 and set(cohort.instances["modality"]) == {"axial_t2"}
    assert [t.name for t in cohort.targets] == ["spinal_canal_stenosis_l4_l5"]
    assert list(cohort.samples.columns) == ["sample_id", "patient_id", "spinal_canal_stenosis_l4_l5"]


def _dicom_identities(root: Path) -> set[str]:
    values = set()
    for path in (root / "train_images").rglob("*.dcm"):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        values |= {str(ds.PatientName), str(ds.PatientID), str(ds.PatientBirthDate)}
    return values


def test_corrupt_dicom_is_quarantined_and_nothing_identifying_leaks(real_standin, tmp_path, caplog):
    root = _copy(real_standin, tmp_path)
    identities = _dicom_identities(root)
    assert len(identities) >= 3 * 10  # 11 studies with images, three made-up values each
    truth = _truth(root)
    series_id, record = next((s, r) for s, r in truth["series"].items() if r["files_in_order"])
    bad = root / "train_images" / record["study_id"] / series_id / record["files_in_order"][2]
    bad.write_bytes(bad.read_bytes()[:150])  # cut inside the header

    with caplog.at_level(logging.DEBUG):
        cohort = rsna.load(root)
    assert cohort.quarantine == [{"path": str(bad), "reason": cohort.quarantine[0]["reason"]}]
    assert "truncated" in cohort.quarantine[0]["reason"]
    kept = cohort.instances[cohort.instances["series_id"] == series_id]
    assert str(bad) not in set(cohort.instances["path"])
    assert [Path(p).name for p in kept.sort_values("order")["path"]] == [
        n for n in record["files_in_order"] if n != bad.name]
    assert any("quarantined" in r.getMessage() for r in caplog.records)

    with pytest.raises(CohortError) as err:
        rsna.load(root, strict=True)
    assert str(bad) in str(err.value)

    texts = [str(v) for table in (cohort.samples, cohort.instances) for v in table.to_numpy().ravel()]
    texts += [r.getMessage() for r in caplog.records] + [cohort.description, str(err.value)]
    texts += [str(q) for q in cohort.quarantine]
    leaked = {v for v in identities for t in texts if v in t}
    assert not leaked


def test_standin_with_made_up_ids_loads_and_is_written_atomically(tmp_path, monkeypatch):
    root = rsna_standin.standin(tmp_path / "a", n_studies=4, seed=3)
    cohort = rsna.load(root)
    assert len(cohort.samples) == 4 and len(cohort.instances) > 0
    assert cohort.samples[list(rsna.TARGET_NAMES)].isin(rsna.CLASSES).to_numpy().mean() > 0.8
    with pytest.raises(FileExistsError):
        rsna_standin.standin(root)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(rsna_standin, "_write_series", boom)
    with pytest.raises(RuntimeError):
        rsna_standin.standin(tmp_path / "b", n_studies=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


# -- the two real PNG series --------------------------------------------------------------------
def test_real_png_series_load_in_natural_file_order(tmp_path, caplog):
    labels = _labels_dir()
    slices = labels.parent / "slices"
    if not slices.is_dir():
        pytest.skip("rsna-lumbar slices not present: set SWEEPS_SHARED_DATA")
    studies = sorted(p.name for p in slices.iterdir())
    train = pd.read_csv(labels / "train.csv", dtype=str, keep_default_na=False)
    series = pd.read_csv(labels / "train_series_descriptions.csv", dtype=str)
    train[train["study_id"].isin(studies)].to_csv(tmp_path / "train.csv", index=False)
    series[series["study_id"].isin(studies)].to_csv(tmp_path / "train_series_descriptions.csv", index=False)
    (tmp_path / "train_images").symlink_to(slices, target_is_directory=True)

    with caplog.at_level(logging.INFO, logger="sweeps.data.rsna"):
        cohort = rsna.load(tmp_path)
    assert set(cohort.instances["modality"]) == {"sagittal_t1"} and not cohort.quarantine
    by_study = {s: rows.sort_values("order") for s, rows in cohort.instances.groupby("sample_id")}
    assert {s: len(r) for s, r in by_study.items()} == {"4003253": 15, "4646740": 11}
    for study, rows in by_study.items():
        names = [Path(p).name for p in rows["path"]]
        assert names == sorted(names, key=lambda n: int(n.split(".")[0]))
        assert all(Path(p).is_absolute() and Path(p).exists() for p in rows["path"])
        assert rows["order"].tolist() == list(range(len(rows)))
    assert any("4 of 6 listed series" in r.getMessage() for r in caplog.records)
    assert read_slice(by_study["4003253"]["path"].iloc[0]).shape[0] > 32


# -- the competition metric ---------------------------------------------------------------------
def test_weighted_log_loss_hand_computed_and_masked_rows_ignored():
    y = np.array([0, 1, 2, MASKED])
    proba = np.array([[0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8], [0.0, 0.0, 1.0]])
    expected = -(1 * math.log(0.5) + 2 * math.log(0.6) + 4 * math.log(0.8)) / 7
    assert rsna.weighted_log_loss(y, proba) == pytest.approx(expected, rel=1e-12)
    proba[3] = [1.0, 0.0, 0.0]  # a masked row's prediction does not count
    assert rsna.weighted_log_loss(y, proba) == pytest.approx(expected, rel=1e-12)
    # unnormalised rows are renormalised, zeros clipped (finite loss)
    assert rsna.weighted_log_loss(y[:3], 0.5 * proba[:3]) == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(rsna.weighted_log_loss(np.array([2]), np.array([[1.0, 0.0, 0.0]])))
    assert math.isnan(rsna.weighted_log_loss(np.array([MASKED, MASKED]), np.full((2, 3), 1 / 3)))


def _random_case(rng, n=40, mask=0.1):
    labels = {name: rng.choice(3, n, p=[0.6, 0.25, 0.15]) for name in rsna.TARGET_NAMES}
    for y in labels.values():
        y[rng.random(n) < mask] = MASKED
    proba = {name: rng.dirichlet([1, 1, 1], n) for name in rsna.TARGET_NAMES}
    return labels, proba


def test_perfect_predictions_score_zero_and_uniform_ones_log3():
    labels, _ = _random_case(np.random.default_rng(0))
    perfect = {n: np.eye(3)[np.where(y == MASKED, 0, y)] for n, y in labels.items()}
    assert all(v < 1e-9 for v in rsna.competition_score(labels, perfect).values())

    uniform = {n: np.full((len(y), 3), 1 / 3) for n, y in labels.items()}
    out = rsna.competition_score(labels, uniform)
    for group in rsna.GROUPS:
        assert out[group] == pytest.approx(math.log(3), rel=1e-9)
    y = np.stack([labels[f"spinal_canal_stenosis_{lv}"] for lv in rsna.LEVELS], axis=1)
    scored = y != MASKED
    severe = ((y == 2) & scored).any(axis=1)[scored.any(axis=1)]
    w = np.where(scored, np.array([1, 2, 4])[np.maximum(y, 0)], 0).max(axis=1)[scored.any(axis=1)]
    any_loss = (w * np.where(severe, math.log(3), math.log(1.5))).sum() / w.sum()
    assert out["any_severe_spinal"] == pytest.approx(any_loss, rel=1e-9)
    assert out["score"] == pytest.approx((3 * math.log(3) + any_loss) / 4, rel=1e-9)


def test_any_severe_spinal_hand_computed():
    names = [f"spinal_canal_stenosis_{lv}" for lv in rsna.LEVELS]
    # study 0: a Severe level -> label 1, weight 4; study 1: worst Moderate -> label 0, weight 2;
    # study 2: all Normal/Mild but one level masked -> label 0, weight 1; study 3: all masked -> not scored
    y = np.array([[0, 0, 2, 1, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, MASKED], [MASKED] * 5])
    p_severe = np.array([[0.1, 0.2, 0.7, 0.3, 0.1], [0.05, 0.4, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.1, 0.9],
                         [0.9] * 5])
    labels = {n: y[:, k] for k, n in enumerate(names)}
    proba = {n: np.stack([(1 - p_severe[:, k]) / 2, (1 - p_severe[:, k]) / 2, p_severe[:, k]], axis=1)
             for k, n in enumerate(names)}
    out = rsna.competition_score(labels, proba)
    # max P(Severe) over the labelled levels: 0.7, 0.4, 0.2 (0.9 sits on the masked level)
    expected = -(4 * math.log(0.7) + 2 * math.log(1 - 0.4) + 1 * math.log(1 - 0.2)) / 7
    assert out["any_severe_spinal"] == pytest.approx(expected, rel=1e-12)
    assert math.isnan(out["neural_foraminal_narrowing"]) and math.isnan(out["subarticular_stenosis"])
    assert out["score"] == pytest.approx((out["spinal_canal_stenosis"] + expected) / 2)


def test_competition_score_matches_the_official_recipe_with_sklearn():
    from sklearn.metrics import log_loss

    labels, proba = _random_case(np.random.default_rng(1))
    out = rsna.competition_score(labels, proba)
    weights = np.array([1.0, 2.0, 4.0])
    for group, conditions in rsna.GROUPS.items():
        names = [f"{c}_{lv}" for c in conditions for lv in rsna.LEVELS]
        y = np.concatenate([labels[n] for n in names])
        p = np.concatenate([proba[n] for n in names])
        keep = y != MASKED
        ref = log_loss(y[keep], p[keep], sample_weight=weights[y[keep]], labels=[0, 1, 2])
        assert out[group] == pytest.approx(ref, rel=1e-9)
    spinal = [f"spinal_canal_stenosis_{lv}" for lv in rsna.LEVELS]
    rows = pd.DataFrame([(s, labels[n][s], proba[n][s, 2]) for n in spinal for s in range(40)
                         if labels[n][s] != MASKED], columns=["study", "y", "severe"])
    rows["w"] = weights[rows["y"]]
    g = rows.groupby("study")
    ref_any = log_loss((g["y"].max() == 2).to_numpy(), g["severe"].max().to_numpy(),
                       sample_weight=g["w"].max().to_numpy(), labels=[False, True])
    assert out["any_severe_spinal"] == pytest.approx(ref_any, rel=1e-9)


def test_a_target_with_only_masked_rows_is_left_out():
    labels, proba = _random_case(np.random.default_rng(2))
    before = rsna.competition_score(labels, proba)
    labels["left_subarticular_stenosis_l1_l2"] = np.full(40, MASKED)
    proba["left_subarticular_stenosis_l1_l2"] = np.full((40, 3), 1 / 3)
    after = rsna.competition_score(labels, proba)
    assert np.isfinite(after["subarticular_stenosis"]) and after["subarticular_stenosis"] != before["subarticular_stenosis"]
    only = {"left_subarticular_stenosis_l1_l2": labels["left_subarticular_stenosis_l1_l2"]}
    assert math.isnan(rsna.competition_score(only, proba)["score"])
    with pytest.raises(ValueError, match="Did you mean 'spinal_canal_stenosis_l1_l2'"):
        rsna.competition_score({"spinal_canal_stenosis_l1l2": np.zeros(3)}, proba)


# -- bad input ----------------------------------------------------------------------------------
def _tiny(root: Path, *, label="Moderate", description="Axial T2") -> Path:
    """Two studies in the Kaggle CSV layout, no images."""
    root.mkdir(exist_ok=True)
    header = ["study_id", *rsna.TARGET_NAMES]
    rows = [["101", *["Normal/Mild"] * 25], ["202", label, *[""] * 24]]
    pd.DataFrame(rows, columns=header).to_csv(root / "train.csv", index=False)
    pd.DataFrame([["101", "9001", "Sagittal T1"], ["202", "9002", description]],
                 columns=["study_id", "series_id", "series_description"]).to_csv(
        root / "train_series_descriptions.csv", index=False)
    return root


def test_tiny_csvs_load_with_blanks_masked(tmp_path):
    cohort = rsna.load(_tiny(tmp_path), labels_only=True)
    assert cohort.labels("spinal_canal_stenosis_l1_l2").tolist() == [0, 1]
    assert cohort.labels("spinal_canal_stenosis_l2_l3").tolist() == [0, MASKED]


@pytest.mark.parametrize("value", ["Mild", "NA", "moderate", " Severe"])
def test_unknown_label_value_names_file_line_and_column(tmp_path, value):
    root = _tiny(tmp_path, label=value)
    with pytest.raises(CohortError) as err:
        rsna.load(root, labels_only=True)
    msg = str(err.value)
    assert "train.csv" in msg and "line 3" in msg and "'spinal_canal_stenosis_l1_l2'" in msg and repr(value) in msg


def test_unknown_series_description_names_file_line_and_value(tmp_path):
    root = _tiny(tmp_path, description="Coronal STIR")
    with pytest.raises(CohortError, match=r"train_series_descriptions\.csv: line 3, column 'series_description'.*"
                                          r"'Coronal STIR'"):
        rsna.load(root, labels_only=True)


@pytest.mark.parametrize("name", ["train.csv", "train_series_descriptions.csv"])
def test_missing_csv_names_the_file(tmp_path, name):
    root = _tiny(tmp_path)
    (root / name).unlink()
    with pytest.raises(CohortError, match=rf"{name}: file not found"):
        rsna.load(root, labels_only=True)


def test_malformed_tables_name_the_line_or_column(tmp_path):
    root = _tiny(tmp_path)
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    train.loc[1, "study_id"] = "101"
    train.to_csv(root / "train.csv", index=False)
    with pytest.raises(CohortError, match=r"train\.csv: lines 2 and 3: study_id 101 appears twice"):
        rsna.load(root, labels_only=True)
    train.loc[1, "study_id"] = "202"
    train.rename(columns={"right_subarticular_stenosis_l5_s1": "right_subarticular_stenosis_l5s1"}).to_csv(
        root / "train.csv", index=False)
    with pytest.raises(CohortError, match=r"line 1 \(header\): no column\(s\) \['right_subarticular_stenosis_l5_s1'\]"
                                          r".*Did you mean 'right_subarticular_stenosis_l5s1'"):
        rsna.load(root, labels_only=True)


def test_unknown_target_or_modality_lists_the_valid_ones(tmp_path):
    root = _tiny(tmp_path)
    with pytest.raises(CohortError, match=r"unknown target 'spinal_canal_stenosis_l4l5' \(at targets\)\. "
                                          r"Did you mean 'spinal_canal_stenosis_l4_l5'\? Valid target names: .*"):
        rsna.load(root, labels_only=True, targets=["spinal_canal_stenosis_l4l5"])
    with pytest.raises(CohortError, match=r"unknown modality 'sagittal_t2'.*Did you mean 'sagittal_t1'|"
                                          r"unknown modality 'sagittal_t2'.*Did you mean 'sagittal_t2_stir'"):
        rsna.load(root, labels_only=True, modalities=["sagittal_t2"])
