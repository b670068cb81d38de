"""A model on new patients: `predict` on a cohort, and `serve` answering real HTTP uploads."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"encoder": "resnet18", "preprocessing": "grayscale_norm", "pca_dim": 16, "fusion": "concat",
          "pooling": {"attention": {"hidden_dim": 32}}, "tabular": True, "sampling": "class_weight", "head": "logreg"}


@pytest.fixture(scope="module")
def model_dir(sweeps_home, small_cohort, tmp_path_factory):
    """The quickstart smoke cohort's development part, one configuration fitted and saved (no Ray)."""
    from sweeps.heldout import encoder_info, split_test
    from sweeps.model import Model
    from sweeps.runner import prepare, smoke
    from sweeps.spec import load_space
    from trainables.trainable import trial_data

    spec = smoke(load_space("quickstart"))
    _, _, handle = prepare(spec, progress=False)
    dev, _ = split_test(spec, handle)
    data = trial_data(dev, "resnet18", "grayscale_norm")
    model = Model.fit(CONFIG, data, arm="attention", seed=0, encoder=encoder_info(spec, CONFIG),
                      extra={"adapter": "synthetic", "target": "severity", "run": "test-model"})
    return model.save(tmp_path_factory.mktemp("m") / "model")


@pytest.fixture(scope="module")
def new_cohort(sweeps_home):
    from trainables.data import synthetic

    return synthetic.generate(Path(sweeps_home) / "synth-seed7-n20", seed=7, n_patients=20)


def test_predict_gives_one_row_per_study_with_probabilities_summing_to_one(model_dir, new_cohort, tmp_path):
    from sweeps.cli import main

    out = tmp_path / "preds.csv"
    assert main(["predict", str(model_dir), "--data", str(new_cohort), "--out", str(out)]) == 0
    preds = pd.read_csv(out, dtype={"sample_id": str})
    labels = pd.read_csv(new_cohort / "labels.csv", dtype={"study_id": str})
    assert sorted(preds["sample_id"]) == sorted(labels["study_id"])  # one row per study
    p = preds[["p_none", "p_moderate", "p_severe"]].to_numpy()
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert (preds["predicted"] == np.array(["none", "moderate", "severe"])[p.argmax(1)]).all()
    series = pd.read_csv(new_cohort / "series.csv", dtype=str)
    for row in preds.itertuples():  # attention: one weight per slice of each present series, summing to 1
        att = json.loads(row.attention)
        assert set(att) == set(row.modalities.split(";"))
        for m, w in att.items():
            assert abs(sum(w) - 1) < 1e-3
        assert len(row.modalities.split(";")) == (series["study_id"] == row.sample_id).sum()


def test_predict_refuses_a_cohort_without_the_models_modality_or_column(model_dir, small_cohort):
    from sweeps.model import ModelError, load_model
    from sweeps.model import check_cohort

    model = load_model(model_dir)
    cohort = small_cohort
    no_bmi = type(cohort)(**{**cohort.__dict__, "samples": cohort.samples.drop(columns=["bmi"]),
                             "tabular": ["age", "sex"]})
    with pytest.raises(ModelError, match="bmi"):
        check_cohort(model, no_bmi)
    keep = cohort.instances["modality"] != "axial_t2"
    no_axial = type(cohort)(**{**cohort.__dict__, "instances": cohort.instances[keep],
                               "modalities": ["sagittal_t1", "sagittal_t2"]})
    with pytest.raises(ModelError, match="axial_t2"):
        check_cohort(model, no_axial)


def _study_files(root: Path, study: str) -> dict[str, list[Path]]:
    from trainables.data.synthetic import DESCRIPTIONS

    series = pd.read_csv(root / "series.csv", dtype=str)
    by_desc = {v: k for k, v in DESCRIPTIONS.items()}
    out = {}
    for r in series[series["study_id"] == study].itertuples():
        out[by_desc[r.series_description]] = sorted((root / "images" / study / r.series_id).glob("*.dcm"))
    return out


def _fields(root: Path, study: str) -> dict[str, str]:
    row = pd.read_csv(root / "labels.csv", dtype={"study_id": str}).set_index("study_id").loc[study]
    return {c: "" if pd.isna(row[c]) else str(row[c]) for c in ("age", "sex", "bmi")}


def test_predict_upload_answers_a_study_and_rejects_bad_uploads(model_dir, new_cohort):
    from sweeps.model import load_model
    from sweeps.serve import UploadError, predict_upload

    model = load_model(model_dir)
    study = pd.read_csv(new_cohort / "labels.csv", dtype={"study_id": str})["study_id"].iloc[0]
    files = {m: [(p.name, p.read_bytes()) for p in ps] for m, ps in _study_files(new_cohort, study).items()}
    out = predict_upload(model, files, _fields(new_cohort, study), explain=False)
    assert abs(sum(out["probabilities"].values()) - 1) < 1e-5
    for m, ws in out["attention"].items():
        assert len(ws) == len(files[m]) and abs(sum(w["weight"] for w in ws) - 1) < 1e-3
    # the same study through `predict` gives the same probabilities (slice order recovered from headers)
    from sweeps.model import load_cohort, predict_cohort

    table = predict_cohort(model, load_cohort(model, str(new_cohort))).set_index("sample_id")
    np.testing.assert_allclose([out["probabilities"][c] for c in model.class_names],
                               table.loc[study, [f"p_{c}" for c in model.class_names]].to_numpy(float), atol=1e-4)
    bad = dict(files)
    bad["sagittal_t2"] = files["sagittal_t2"][:-1] + [("broken.dcm", files["sagittal_t2"][-1][1][:300])]
    with pytest.raises(UploadError, match="broken.dcm") as e:
        predict_upload(model, bad, _fields(new_cohort, study))
    assert e.value.status == 422
    with pytest.raises(UploadError, match="'coronal'") as e:
        predict_upload(model, {**files, "coronal": files["sagittal_t2"]}, _fields(new_cohort, study))
    assert e.value.status == 400
    assert predict_upload(model, files, {**_fields(new_cohort, study), "height": "1"}, explain=False)["ignored_fields"] == ["height"]
    with pytest.raises(UploadError, match="missing field.*bmi") as e:
        predict_upload(model, files, {"age": "50", "sex": "F"})
    assert e.value.status == 422
    with pytest.raises(UploadError, match="not a number"):
        predict_upload(model, files, {**_fields(new_cohort, study), "age": "old"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_real_http_and_the_upload_page_renders(model_dir, new_cohort, tmp_path):
    import requests

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "sweeps", "serve", str(model_dir), "--port", str(port)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            try:
                if requests.get(url + "/health", timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.time() < deadline, "serve did not come up in 240 s"
            time.sleep(0.25)
        study = pd.read_csv(new_cohort / "labels.csv", dtype={"study_id": str})["study_id"].iloc[1]
        parts = [(m, (p.name, p.read_bytes(), "application/dicom")) for m, ps in _study_files(new_cohort, study).items()
                 for p in ps]
        r = requests.post(url + "/predict", files=parts, data=_fields(new_cohort, study), timeout=120)
        assert r.status_code == 200, r.text
        body = r.json()
        assert abs(sum(body["probabilities"].values()) - 1) < 1e-5 and body["explanation"]["summary"]
        assert set(body["attention"]) == {m for m, _ in parts}
        corrupt = parts[:-1] + [(parts[-1][0], ("corrupt.dcm", b"DICM" + os.urandom(500), "application/dicom"))]
        r = requests.post(url + "/predict", files=corrupt, data=_fields(new_cohort, study), timeout=120)
        assert 400 <= r.status_code < 500 and "corrupt.dcm" in r.json()["detail"]
        r = requests.post(url + "/predict", data={"age": "50"}, timeout=60)
        assert 400 <= r.status_code < 500
        assert requests.get(url + "/docs", timeout=30).status_code == 200
        page = requests.get(url + "/", timeout=30)
        assert page.status_code == 200 and 'type="file"' in page.text
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            pytest.skip("chromium is not installed (Debian: apt-get install -y chromium): upload page not screenshotted")
        shot = tmp_path / "upload_page.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                        "--window-size=1000,900", url + "/"], check=True, timeout=120, capture_output=True)
        from PIL import Image

        img = np.asarray(Image.open(shot).convert("L"))
        assert img.shape == (900, 1000) and img.std() > 5  # something was drawn, not a blank page
    finally:
        proc.send_signal(signal.SIGINT)  # the server shuts Serve and its Ray instance down itself
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its process group
        except ProcessLookupError:
            pass
        log.close()


def test_gradcam_follows_the_models_own_score_and_says_where_it_cannot(model_dir, new_cohort):
    from sweeps.explain import gradcam, gradcam_reason
    from sweeps.model import load_model
    from trainables.data.images import order_series, read_slice

    model = load_model(model_dir)
    study = pd.read_csv(new_cohort / "labels.csv", dtype={"study_id": str})["study_id"].iloc[0]
    paths = [p for p, _ in order_series([str(p) for p in _study_files(new_cohort, study)["sagittal_t2"]])]
    tab = pd.DataFrame([_fields(new_cohort, study)]).replace("", np.nan).astype({"age": float, "bmi": float})
    g = gradcam(model, "sagittal_t2", [read_slice(p) for p in paths], {}, tab)
    assert g["available"] and g["check"] < 1e-4  # the differentiable path reproduces the head's probabilities
    assert g["maps"].shape == (len(paths), 64, 64) and 0 <= g["maps"].min() and g["maps"].max() <= 1
    model.meta["head"] = "lightgbm"
    assert "not differentiable" in gradcam_reason(model)
    assert not gradcam(model, "sagittal_t2", [read_slice(paths[0])], {}, tab)["available"]


def test_lesion_truth_replays_the_generator(new_cohort):
    """The replayed lesion positions match the written files: same slice counts, and the lesion centre
    is brightest on a lesion slice."""
    from trainables.data.images import order_series, read_slice
    from trainables.data.synthetic import lesion_truth

    truth = lesion_truth(seed=7, n_patients=20)
    assert len(truth) == (pd.read_csv(new_cohort / "series.csv")["series_description"] == "Sagittal T2/STIR").sum()
    checked = 0
    for r in truth.itertuples():
        paths = [p for p, _ in order_series([str(p) for p in (new_cohort / "images" / r.study_id / r.series_id).glob("*.dcm")])]
        assert len(paths) == r.n_slices
        if r.width:
            centre = [read_slice(p)[int(round(r.cy)), int(round(r.cx))] for p in paths]
            assert r.first <= int(np.argmax(centre)) < r.first + r.width
            checked += 1
    assert checked >= 2


def test_a_separate_test_cohort_is_prepared_like_the_development_one(model_dir, new_cohort):
    from dataclasses import replace

    from sweeps.runner import prepare, smoke, test_part
    from sweeps.spec import SpecError, load_space

    spec = smoke(load_space("quickstart"))
    _, _, handle = prepare(replace(spec, test_fraction=0.0), progress=False)
    with pytest.raises(SpecError, match="not both"):
        test_part(spec, handle, str(new_cohort), progress=False)
    dev, test = test_part(replace(spec, test_fraction=0.0), handle, str(new_cohort), progress=False)
    assert dev is handle  # the whole development cohort goes to the trials
    assert len(test.y) == len(pd.read_csv(new_cohort / "labels.csv")) and test.class_names == handle.class_names
    assert set(test.entries.values()).isdisjoint(handle.entries.values())  # its own embeddings


def test_explanations_on_truth_use_the_runs_own_cohort_at_its_size(model_dir, sweeps_home, tmp_path, caplog):
    """A synthetic cohort of another size and transfer syntax (``--option size=96 --option compression=rle``):
    the held-out explanations load that cohort with all its options, so its embeddings are a cache hit
    (before, it was loaded as a default cohort and embedded again, and its lesion truth was a 64-px
    cohort's: other studies, other pixels)."""
    import logging
    from dataclasses import replace
    from types import SimpleNamespace

    from sweeps.explain import lesion_scores
    from sweeps.heldout import explain_on_truth
    from sweeps.model import load_cohort, load_model, predict_cohort
    from sweeps.runner import smoke
    from sweeps.spec import load_space
    from trainables.data import synthetic

    opts = {"seed": 7, "n_patients": 6, "size": 96, "compression": "rle"}
    root = synthetic.generate(tmp_path / "c96", **opts)
    model = load_model(model_dir)
    model.meta["chosen"] = True
    predict_cohort(model, load_cohort(model, str(root), "synthetic", opts))  # the run embedded its cohort
    truth = synthetic.lesion_truth(seed=7, n_patients=6, size=96)
    studies = set(truth.loc[truth["width"] > 0, "study_id"])
    spec = replace(smoke(load_space("quickstart")), cohort_options={**opts, "root": str(root)})
    with caplog.at_level(logging.INFO, logger="sweeps.embed"):
        res = explain_on_truth(spec, {"attention": model}, SimpleNamespace(sample_ids=sorted(studies)), tmp_path)
    assert "error" not in res["attention"], res
    assert res["attention"]["lesion_studies"] == len(studies) > 0 and res["attention"]["gradcam_studies"] > 0
    assert "embedding cache written" not in caplog.text and "embedding cache hit" in caplog.text
    with pytest.raises(ValueError, match="lesion truth is for 64x64 slices"):  # the pixels must be the truth's
        lesion_scores(model, root, 7, 6, compression="rle", only=studies)
