"""Fine-tuning trainable: the encoder is trained end to end and learns a planted signal; the trial saves
the frozen trainable's record and the report builds from it; per-epoch reports reach Tune and ASHA acts
on them; the spec refuses what a fine-tuning sweep cannot run."""

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from sweeps import runner
from sweeps.spec import SpecError, SweepSpec
from trainables.finetune import (EPOCH_ATTR, TRAIN_DEFAULTS, build_net, load_slices, run_finetune, select_slices,
                                 train_fold)
from trainables.handle import DataHandle
from trainables.training import options_from

SLICES, SIZE, SQUARE_AT = 4, 16, 0  # the bright square sits in the first slice of a positive series


@pytest.fixture(autouse=True)
def one_thread():
    """Small models on a shared 2-core machine: one thread avoids oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cohort(root: Path, n: int = 16, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """n one-series samples of SLICES noise PNGs; label 1 (every other sample) has a bright square in one slice."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows, y = [], np.arange(n) % 2
    for i in range(n):
        for k in range(SLICES):
            img = rng.integers(0, 120, (SIZE, SIZE)).astype(np.uint8)
            if y[i] and k == SQUARE_AT:
                img[4:11, 5:12] = 255
            path = root / f"s{i:02d}_{k}.png"
            cv2.imwrite(str(path), img)
            rows.append({"sample_id": f"s{i:02d}", "modality": "ct", "order": float(k), "path": str(path), "frame": 0})
    return pd.DataFrame(rows), y


def _handle(inst: pd.DataFrame, y: np.ndarray, folds: int = 2) -> DataHandle:
    ids = sorted(inst["sample_id"].unique())
    return DataHandle(sample_ids=ids, y=y, groups=np.array([f"p{s}" for s in ids]), class_names=("neg", "pos"),
                      modalities=["ct"], tabular=None, entries={}, metric="auc_macro", mode="max", folds=folds, seed=0,
                      arms={}, instances=inst)


CONFIG = {"encoder": "resnet18", "input_size": SIZE, "max_slices": SLICES, "pooling": "mean",
          "train": {"epochs": 3, "lr": 1e-3, "batch_size": 4}}


def test_series_longer_than_max_slices_keep_evenly_spaced_slices_in_order():
    inst = pd.DataFrame({"sample_id": ["a"] * 10 + ["b"] * 3, "modality": "ct",
                         "order": [*np.arange(10)[::-1], 0, 1, 2], "path": [f"p{k}" for k in range(13)], "frame": 0})
    sel = select_slices(inst, 4)
    a, b = sel[sel.sample_id == "a"], sel[sel.sample_id == "b"]
    assert a["order"].tolist() == [1, 3, 6, 8] and a["slot"].tolist() == [0, 1, 2, 3]  # centres of 4 equal stretches
    assert b["order"].tolist() == [0, 1, 2], "a series shorter than the cap keeps every slice"
    assert len(select_slices(inst, 0)) == 13, "max_slices=0 keeps every slice"


def test_an_unreadable_slice_is_left_out_of_its_bag(tmp_path):
    inst, _ = _cohort(tmp_path, n=2)
    bad = inst["path"].iloc[1]
    Path(bad).write_bytes(b"not a png")
    s = load_slices(inst, ["s00", "s01"], ["ct"], "grayscale_norm", SIZE, SLICES)
    assert s.masks["ct"].tolist() == [[True, False, True, True], [True] * 4]
    assert s.images["ct"].dtype == torch.uint8 and int(s.images["ct"][0, 0].max()) == 255


def test_fine_tuning_trains_the_encoder_weights(tmp_path):
    inst, y = _cohort(tmp_path)
    h = _handle(inst, y)
    slices = load_slices(inst, h.sample_ids, ["ct"], "grayscale_norm", SIZE, SLICES)
    net = build_net("resnet18", None, SIZE, "mean", {}, ["ct"], 2, slices.imagenet, seed=0)
    before = {k: v.clone() for k, v in net.encoder.named_parameters()}
    train_fold(net, slices, np.arange(8), y, 2, options_from({**TRAIN_DEFAULTS, "epochs": 1, "batch_size": 4}), seed=0)
    changed = [k for k, v in net.encoder.named_parameters() if not torch.equal(v, before[k])]
    assert len(changed) == len(before), f"frozen encoder tensors: {sorted(set(before) - set(changed))[:5]}"


def test_a_planted_bright_square_is_learned_out_of_fold_with_one_report_per_epoch(tmp_path):
    inst, y = _cohort(tmp_path)
    reports = []
    results = run_finetune(CONFIG, _handle(inst, y), report=reports.append)
    r = results["mean"]
    assert r["proba"].shape == (16, 2) and np.allclose(r["proba"].sum(1), 1)
    assert r["metrics"]["auc_macro"] >= 0.9 and r["metrics"]["accuracy"] >= 0.8, r["metrics"]  # chance: 0.5
    assert [x[EPOCH_ATTR] for x in reports] == list(range(1, 2 * 3 + 1)), "2 folds x 3 epochs"
    assert [(x["fold"], x["epoch"]) for x in reports] == [(f, e) for f in (0, 1) for e in (1, 2, 3)]
    assert all(0 <= x["auc_macro"] <= 1 for x in reports)
    last = reports[-1]  # fold 0's final held-out score and fold 1's at its last epoch
    assert last["auc_macro"] == pytest.approx(np.mean([r["fold_metrics"][0]["auc_macro"], last["fold_auc_macro"]]))


def _manifest(root: Path) -> Path:
    inst, y = _cohort(root / "img")
    series = inst.groupby("sample_id")["path"].agg(";".join)
    df = pd.DataFrame({"sample_id": series.index, "patient_id": [f"p{s}" for s in series.index],
                       "label": np.where(y, "pos", "neg"), "slices": series.to_numpy()})
    df.to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def asha_run(ray_session, sweeps_home, tmp_path_factory):
    """Two grid trials one after the other under ASHA: the first sees the square (4 slices), the second
    sees one slice without it, so at ASHA's first rung its signal is below the first trial's."""
    root = tmp_path_factory.mktemp("ft")
    space = root / "ft_space.py"
    space.write_text(
        "from ray import tune\nfrom sweeps.spec import SweepSpec\n"
        f"SPEC = SweepSpec(name='ft', cohort='manifest', cohort_options={{'root': {str(_manifest(root))!r}, "
        "'targets': {'label': ['neg', 'pos']}, 'image_cols': {'slices': 'ct'}}, metric='auc_macro', num_samples=1,\n"
        "    folds=2, trainable='finetune', scheduler='asha', compare={'pooling': ['mean', 'attention']},\n"
        f"    space={{'encoder': 'resnet18', 'input_size': {SIZE}, 'max_slices': tune.grid_search([{SLICES}, 1]),\n"
        "           'pooling': {'attention': {'hidden_dim': 8}}, 'train': {'epochs': 2, 'lr': 1e-3, 'batch_size': 4}})\n")
    report = runner.run(str(space), name="ft-asha", concurrency=1, progress=False)
    return report, runner.runs_root() / "ft-asha"


def _history(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]


def _trials(run_dir: Path) -> dict[int, Path]:
    """max_slices -> trial folder."""
    return {json.loads((t / "params.json").read_text())["max_slices"]: t for t in run_dir.glob("trial_*")}


def test_a_finished_trial_saves_the_frozen_trainables_record_and_the_report_builds(asha_run):
    report, run_dir = asha_run
    trial = _trials(run_dir)[SLICES]
    ck = sorted(trial.glob("checkpoint_*"))
    assert len(ck) == 1, "one checkpoint: the final report's"
    oof = np.load(ck[0] / "oof.npz")
    assert {"mean", "attention", "attn__attention__ct"} <= set(oof.files)
    for arm in ("mean", "attention"):
        assert oof[arm].shape == (16, 2) and np.allclose(oof[arm].sum(1), 1, atol=1e-5), "every sample out of fold"
    assert oof["attn__attention__ct"].shape == (16, SLICES)
    metrics = json.loads((ck[0] / "metrics.json").read_text())
    assert metrics["best_arm"] in ("mean", "attention") and "arm/attention/auc_macro" in metrics
    assert metrics["auc_macro"] >= 0.9, "the square is learned in the sweep too"
    assert json.loads((ck[0] / "config.json").read_text())["max_slices"] == SLICES
    text = report.read_text()
    assert report.name == "report.md" and trial.name.split("_", 1)[1] in text
    assert "| **attention** |" in text and "| **mean** |" in text


def test_per_epoch_reports_reach_tune_and_asha_stops_the_blind_trial(asha_run):
    _, run_dir = asha_run
    trials = _trials(run_dir)
    full, blind = _history(trials[SLICES]), _history(trials[1])
    per_epoch = [r for r in full if EPOCH_ATTR in r]
    assert [r[EPOCH_ATTR] for r in per_epoch] == list(range(1, 2 * 2 * 2 + 1)), "2 folds x 2 arms x 2 epochs"
    assert EPOCH_ATTR not in full[-1] and "best_arm" in full[-1], "the final report is the out-of-fold one"
    assert len(blind) == 1 and blind[0][EPOCH_ATTR] == 1 and blind[0]["done"], "stopped at ASHA's first rung"
    assert blind[0]["auc_macro"] < per_epoch[0]["auc_macro"]
    assert not list(trials[1].glob("checkpoint_*")), "a stopped trial saves no out-of-fold record"
    from sweeps.report import build_report

    text = build_report(run_dir)
    blind_id = trials[1].name.split("_", 1)[1]
    assert "Stopped early by the ASHA scheduler (1" in text and blind_id in text.split("Stopped early")[1]
    assert "Unfinished trials" not in text, "a trial ASHA stopped is not an interrupted one"


@pytest.mark.parametrize("kwargs, message", [
    ({"space": {"pooling": "mean", "train": {"epochs": 2}}}, "field 'encoder' is required"),
    ({"space": {"encoder": "resnet18", "pooling": "mean", "train": {"lrr": 1e-3}}}, "Did you mean 'lr'"),
    ({"space": {"encoder": "resnet18", "pooling": "mean", "train": {"optimizer": "adamm"}}}, "optimizer='adamm'"),
    ({"space": {"encoder": "resnet18", "pooling": "mean", "head": "logreg"}}, "'head' does not apply"),
    ({"space": {"encoder": "resnet18", "pooling": "mean", "max_slices": -1}}, "max_slices"),
])
def test_spec_refuses_what_a_finetune_sweep_cannot_run(kwargs, message):
    with pytest.raises(SpecError, match=message):
        SweepSpec(name="ft", trainable="finetune", **kwargs).validate()


def test_spec_refuses_finetune_settings_and_asha_on_a_frozen_sweep():
    frozen = {"encoder": "resnet18", "pooling": "mean", "head": "logreg"}
    with pytest.raises(SpecError, match="applies to trainable='finetune' only"):
        SweepSpec(name="fr", space={**frozen, "train": {"epochs": 2}}).validate()
    with pytest.raises(SpecError, match="per-epoch reports"):
        SweepSpec(name="fr", space=frozen, scheduler="asha").validate()


def test_smoke_trains_a_fine_tuning_space_one_epoch_per_fold_on_at_most_4_slices():
    from ray import tune
    from ray.tune.search.sample import Domain

    from sweeps.spec import load_space

    spec = runner.smoke(load_space("finetune_quickstart"))
    assert spec.trainable == "finetune" and spec.scheduler is None and spec.num_samples == 2
    assert spec.space["train"]["epochs"] == 1 and spec.space["max_slices"] == 4
    assert isinstance(spec.space["train"]["lr"], Domain) and spec.space["input_size"] == 32  # the rest as written
    spec.validate()
    grid = {"encoder": "resnet18", "pooling": "mean", "max_slices": tune.grid_search([4, 1]),
            "train": {"epochs": tune.grid_search([1, 2])}}
    assert runner.smoke_finetune_space(grid) == grid, "a grid sets the trial count: kept"
    assert runner.smoke_finetune_space({"encoder": "resnet18", "max_slices": 2})["max_slices"] == 2
    assert runner.smoke_finetune_space({"encoder": "resnet18", "max_slices": 0})["max_slices"] == 4  # 0: every slice
    assert runner.smoke_finetune_space({"encoder": "resnet18"}) == {"encoder": "resnet18", "max_slices": 4,
                                                                      "train": {"epochs": 1}}
    frozen = load_space("quickstart")
    assert runner.smoke(frozen).space is frozen.space, "a frozen space is run as written"
