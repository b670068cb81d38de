"""``--track``: Ray Tune's logger callbacks writing to the real local stores (MLflow's file store,
tensorboardX event files), read back with the tools' own readers; and the clear errors before
anything slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweeps import cli, runner
from sweeps.track import TrackError, check, mlflow_uri, parse


def test_values_are_parsed_and_bad_ones_named():
    assert parse("mlflow") == ("mlflow", None)
    assert parse("mlflow=sqlite:///x.db") == ("mlflow", "sqlite:///x.db")
    assert parse("tensorboard") == ("tensorboard", None)
    with pytest.raises(TrackError, match="unknown tracker 'neptune'; choose from mlflow, tensorboard, wandb"):
        parse("neptune")
    with pytest.raises(TrackError, match="tensorboard takes no value"):
        parse("tensorboard=/tmp/x")
    with pytest.raises(TrackError, match="each tracker once"):
        check(["tensorboard", "tensorboard"])
    a = cli.parser().parse_args(["run", "quickstart", "--track", "mlflow", "--track", "tensorboard"])
    assert a.track == ["mlflow", "tensorboard"]


def test_a_tracker_whose_package_is_missing_is_refused_with_the_install_command():
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here: nothing missing to report")
    with pytest.raises(TrackError, match=r"--track wandb needs the wandb package, which is not installed: pip install wandb"):
        check(["wandb"])


def test_mlflow_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert mlflow_uri(None) == (tmp_path / "mlruns").as_uri()  # ./mlruns by default
    assert mlflow_uri("store") == (tmp_path / "store").as_uri()
    assert mlflow_uri(f"file:{tmp_path}/x") == (tmp_path / "x").as_uri()
    assert mlflow_uri("sqlite:///db.sqlite") == "sqlite:///db.sqlite"
    assert mlflow_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_a_resumed_run_keeps_its_trackers(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPS_RUNS", str(tmp_path))
    run = tmp_path / "r"
    run.mkdir()
    (run / "sweep.json").write_text(json.dumps({"space": "quickstart", "options": {
        "space_arg": "quickstart", "smoke": True, "data": None, "cohort_options": {}, "gpus_per_trial": 0,
        "address": None, "track": ["mlflow"]}}))
    with pytest.raises(TrackError, match=r"run 'r' tracks with \['mlflow'\] \(set when it started\)"):
        runner.resume("r", track=["tensorboard"], progress=False)


def test_smoke_sweep_leaves_one_mlflow_run_per_trial_with_its_metrics_and_the_report(ray_session, sweeps_home, tmp_path):
    pytest.importorskip("mlflow", reason="mlflow not installed (pip install -e '.[mlflow]')")
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    report = runner.run("quickstart", name="tracked", smoke_test=True, progress=False,
                        track=[f"mlflow=file:{store}", "tensorboard"],
                        test_fraction=0.0)  # no held-out refit: this test is about the trackers
    run_dir = runner.runs_root() / "tracked"
    client = MlflowClient(tracking_uri=store.as_uri())
    exp = client.get_experiment_by_name("tracked")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    sweep = [r for r in runs if r.data.tags.get("sweeps.role") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("sweeps.role") == "trial"]
    assert len(sweep) == 1 and len(runs) == 1 + len(trials)
    trial_dirs = sorted(d for d in run_dir.iterdir() if d.name.startswith("trial_"))
    assert len(trials) == len(trial_dirs) == 2  # one MLflow run per Tune trial
    from sweeps.report import load

    rows = load(run_dir).rows  # what the trials recorded, as the report reads it
    for r in trials:
        assert r.data.tags["mlflow.parentRunId"] == sweep[0].info.run_id and r.info.status == "FINISHED"
        mine = [row for row in rows if r.data.tags["trial_name"].endswith(row.trial)]  # Tune's name ends with the id
        assert {row.arm for row in mine} == {"mean", "attention"}
        for row in mine:
            for m in ("f1_macro", "auc_macro", "accuracy"):  # the trial's final metrics, per pooling arm
                assert r.data.metrics[f"arm/{row.arm}/{m}"] == pytest.approx(row.metrics[m]), (row.arm, m)
        assert r.data.params["head"] == mine[0].config["head"] and r.data.params["sampling"] == mine[0].config["sampling"]
        # per-fold progress: one point per fold (step = Tune's training_iteration), the last the final result
        folds = sorted(client.get_metric_history(r.info.run_id, "folds_done"), key=lambda m: m.step)
        assert [m.value for m in folds] == [1, 2, 3, 4, 5] and [m.step for m in folds] == [1, 2, 3, 4, 5]
        f1 = sorted(client.get_metric_history(r.info.run_id, "f1_macro"), key=lambda m: m.step)
        assert len(f1) == 5 and f1[-1].value == pytest.approx(max(row.metrics["f1_macro"] for row in mine))
    assert sweep[0].info.status == "FINISHED"
    arts = {a.path for a in client.list_artifacts(sweep[0].info.run_id, "report")}
    assert "report/report.md" in arts and {f"report/{p.name}" for p in report.parent.glob("*.png")} <= arts
    # tensorboard: Tune's event files per trial, one folds_done point per fold; the report as a text summary
    assert all(list(d.glob("events.out.tfevents*")) for d in trial_dirs)
    for d in trial_dirs:
        assert sorted(_scalars(d, "ray/tune/folds_done")) == [1, 2, 3, 4, 5]
    assert list((run_dir / "report_tb").glob("events.out.tfevents*"))
    assert json.loads((run_dir / "sweep.json").read_text())["options"]["track"] == [f"mlflow=file:{store}", "tensorboard"]
    assert json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"] == sweep[0].info.run_id
    # resume (nothing left to run): Tune restores the callbacks, the same sweep run gets the report again
    runner.resume("tracked", progress=False)
    runs = client.search_runs([exp.experiment_id])
    assert sum(r.data.tags.get("sweeps.role") == "sweep" for r in runs) == 1 and len(runs) == 3
    assert "- Resumed: yes, 1 time(s)" in report.read_text()


def _scalars(trial_dir: Path, tag: str) -> list[float]:
    """The values of one scalar tag in a trial's TensorBoard event files (TFRecord framing: length u64,
    its CRC u32, the Event proto, its CRC u32), read with tensorboardX's own protos."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    out = []
    for f in trial_dir.glob("events.out.tfevents*"):
        data, i = f.read_bytes(), 0
        while i + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            out += [v.simple_value for v in event.summary.value if v.tag == tag]
    return out
