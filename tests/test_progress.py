"""Progress inside a trial (trainables/progress.py): a frozen trial reports its running out-of-fold
metric after each fold, the final result is still the record, every consumer tells them apart, and
``--early-stop`` stops a hopeless trial after its first fold and the report lists it apart.

Two real sweeps (shared Ray session; the second, without --early-stop, checks that per-fold results
are batched and none lost): a 40-patient synthetic cohort, 3 folds, two configurations
searched exhaustively at concurrency 1: logistic regression at C = 1 (learns), then at C = 1e-6
(the weights vanish, every sample gets the majority class: hopeless on f1_macro). ASHA's first
rung (1 fold) compares the second with the first and stops it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweeps import runner
from trainables.progress import FOLDS_ATTR, N_FOLDS, fold_result, is_intermediate, progress_step
from trainables.record import COMPUTE_KEY, REPORT_KEY

GOOD, HOPELESS = 1.0, 1e-6


def _history(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]


def _trials(run_dir: Path) -> dict[float, Path]:
    """head C -> trial folder."""
    return {json.loads((t / "params.json").read_text())["head"]["logreg"]["C"]: t for t in run_dir.glob("trial_*")}


def _space(root: Path) -> Path:
    space = root / "es_space.py"
    space.write_text(
        "from ray import tune\nfrom sweeps.spec import SweepSpec\n"
        "SPEC = SweepSpec(name='es', cohort='synthetic', cohort_options={'n_patients': 40}, metric='f1_macro',\n"
        "    num_samples=2, folds=3, seed=1,  # seed 1: the exhaustive sampler proposes C = 1 first\n"
        "    space={'encoder': 'resnet18', 'preprocessing': 'grayscale_norm', 'pca_dim': 8, 'pooling': 'mean',\n"
        f"           'head': {{'name': 'logreg', 'logreg': {{'C': tune.choice([{GOOD}, {HOPELESS}])}}}}}})\n")
    return space


class _Recorder:
    """Wraps ``sweeps.actors.buffered_results``: records whether the runner asked for batching."""

    def __init__(self, seen: list):
        from sweeps import actors

        self.seen, self.real = seen, actors.buffered_results

    def __call__(self, enabled, *a, **kw):
        self.seen.append(bool(enabled))
        return self.real(enabled, *a, **kw)


def _run(root: Path, name: str, early_stop: bool) -> tuple[Path, Path, list[bool]]:
    """(report, run folder, what the runner asked buffered_results for)."""
    from sweeps import actors

    seen: list[bool] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(actors, "buffered_results", _Recorder(seen))
        report = runner.run(str(_space(root)), name=name, concurrency=1, progress=False, early_stop=early_stop)
    return report, runner.runs_root() / name, seen


@pytest.fixture(scope="module")
def early_run(ray_session, sweeps_home, tmp_path_factory):
    return _run(tmp_path_factory.mktemp("es"), "early", early_stop=True)


def test_per_fold_results_are_batched_without_a_scheduler_and_none_is_lost(early_run, tmp_path_factory):
    """sweeps.actors.buffered_results: off under --early-stop (ASHA decides on each fold as it comes),
    on otherwise, and through the runner every trial still logs each fold's result, in order."""
    assert early_run[2] == [False]
    _, run_dir, seen = _run(tmp_path_factory.mktemp("plain"), "plain", early_stop=False)
    assert seen == [True]
    for trial in _trials(run_dir).values():
        assert [r[FOLDS_ATTR] for r in _history(trial)] == [1, 2, 3]


def test_the_progress_protocol():
    final = fold_result({"f1_macro": 0.7}, 3, 3)
    assert not is_intermediate(final) and progress_step(final) is None
    assert is_intermediate(fold_result({"f1_macro": 0.7}, 1, 3)) and progress_step(fold_result({}, 2, 3)) == 2
    assert is_intermediate({"epochs_done": 4, "auc_macro": 0.5}) and progress_step({"epochs_done": 4}) == 4
    assert not is_intermediate({"f1_macro": 0.7}) and not is_intermediate(None)  # a record reported before progress


def _handle():
    import numpy as np

    from tests_helpers import make_bags
    from trainables.handle import DataHandle
    from trainables.pipeline import TrialData

    X, m, y, _ = make_bags(48, 3)
    handle = DataHandle(sample_ids=[str(i) for i in range(48)], y=y, groups=np.arange(48), class_names=("a", "b"),
                        modalities=["s"], tabular=None, entries={}, metric="f1_macro", mode="max", folds=3, seed=0,
                        arms={"pooling": ["mean", "max"]})
    return handle, TrialData(y, np.arange(48), ("a", "b"), ["s"], {"s": (X, m)})


def test_sweep_trial_reports_each_fold_but_the_last_then_the_record_once(monkeypatch):
    """Without Ray: tune.report and report_record captured. n_folds - 1 intermediates, then the record,
    reported with folds_done == n_folds and the same metrics as evaluate's; a record found on disk (the
    repeat path) is reported once, as a final result."""
    import ray.tune

    from trainables import trainable
    from trainables.pipeline import evaluate, flatten

    handle, data = _handle()
    reports, records = [], []
    monkeypatch.setattr(ray.tune, "report", lambda metrics, **kw: reports.append((metrics, kw)))
    monkeypatch.setattr(trainable, "trial_data", lambda *a: data)
    monkeypatch.setattr(trainable, "report_record", lambda c, metrics, arrays, extra=None: records.append((metrics, extra)))
    config = {"head": "logreg", "pooling": "mean"}
    trainable.sweep_trial(config, handle)
    assert [r[FOLDS_ATTR] for r, _ in reports] == [1, 2] and all(is_intermediate(r) and not kw for r, kw in reports)
    ((metrics, extra),) = records
    final = {**metrics, **extra}
    timing = {COMPUTE_KEY, REPORT_KEY}
    assert not is_intermediate(final) and {k: v for k, v in extra.items() if k not in timing} == {FOLDS_ATTR: 3, N_FOLDS: 3}
    assert extra[COMPUTE_KEY] > 0 and extra[REPORT_KEY] >= 0  # inside evaluate, and handing its folds to Tune: to Tune only
    assert metrics == flatten(evaluate(config, data, arms=handle.arms, n_folds=3), "f1_macro")
    assert set(reports[0][0]) == set(final) - timing, "an intermediate has the final result's keys"

    class Done:
        metrics = {"f1_macro": 0.7, "best_arm": "mean"}

    reports.clear()
    monkeypatch.setattr(trainable, "find_completed", lambda c, d: Done())
    trainable.sweep_trial(config, handle)
    assert reports == [({"f1_macro": 0.7, "best_arm": "mean", FOLDS_ATTR: 3, N_FOLDS: 3}, {})]


def test_each_fold_reports_its_running_metric_and_the_last_result_is_the_record(early_run):
    _, run_dir, _ = early_run
    trial = _trials(run_dir)[GOOD]
    rows = _history(trial)
    assert [r[FOLDS_ATTR] for r in rows] == [1, 2, 3] and {r[N_FOLDS] for r in rows} == {3}
    assert [is_intermediate(r) for r in rows] == [True, True, False]
    (ck,) = trial.glob("checkpoint_*")  # one checkpoint: the final report's; intermediates carry none
    record = json.loads((ck / "metrics.json").read_text())
    assert FOLDS_ATTR not in record, "the record holds the metrics only"
    for k, v in record.items():
        assert rows[-1][k] == (pytest.approx(v) if isinstance(v, float) else v), k
    assert all("best_arm" in r and "f1_macro" in r for r in rows), "an intermediate is flattened as the final is"


def test_early_stop_stops_the_hopeless_trial_after_its_first_fold(early_run):
    _, run_dir, _ = early_run
    trials = _trials(run_dir)
    rows = _history(trials[HOPELESS])
    assert len(rows) == 1 and rows[0][FOLDS_ATTR] == 1 and rows[0]["done"], "stopped at ASHA's first rung"
    assert rows[0]["f1_macro"] < _history(trials[GOOD])[0]["f1_macro"]
    assert not list(trials[HOPELESS].glob("checkpoint_*")), "a stopped trial saves no record"
    state = json.loads((run_dir / "search.json").read_text())
    states = {json.loads(json.dumps(s["config"]))["head"]["logreg"]["C"]: s["state"] for s in state["slots"]}
    assert states == {GOOD: ["done"], HOPELESS: ["stopped"]}
    import optuna

    study = optuna.load_study(study_name="early", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / "optuna.journal"))))
    by_c = {t.params["head/logreg/C"]: t for t in study.trials}
    assert by_c[HOPELESS].state == optuna.trial.TrialState.PRUNED and by_c[HOPELESS].intermediate_values == {1: rows[0]["f1_macro"]}
    assert by_c[GOOD].state == optuna.trial.TrialState.COMPLETE and set(by_c[GOOD].intermediate_values) == {1, 2}


def test_the_report_lists_the_stopped_trial_apart(early_run):
    report, run_dir, _ = early_run
    text = report.read_text()
    stopped_id = _trials(run_dir)[HOPELESS].name.split("_", 1)[1]
    assert "Stopped early by the ASHA scheduler (1" in text and f"{stopped_id} after 1 of 3 folds" in text
    assert text.count(stopped_id) == 1, "in no table: only in the stopped-early list"
    assert "- Early stopping (--early-stop)" in text and "1 finished, 0 failed, 1 stopped early, 0 unfinished" in text
    from sweeps.report import load

    view = load(run_dir)
    assert {r.trial for r in view.rows} == {_trials(run_dir)[GOOD].name.split("_", 1)[1]}
    assert view.trials_ended == 2 and not view.interrupted
    assert json.loads((run_dir / "sweep.json").read_text())["options"]["early_stop"] is True


def test_early_stop_is_opt_in_and_schedules_on_folds():
    from ray.tune.schedulers import ASHAScheduler

    from sweeps import cli
    from sweeps.spec import load_space

    assert cli.parser().parse_args(["run", "quickstart", "--early-stop"]).early_stop
    assert not cli.parser().parse_args(["run", "quickstart"]).early_stop
    spec = load_space("quickstart")
    assert runner.scheduler(spec, {}) is None and runner.scheduler(spec, {"early_stop": False}) is None
    asha = runner.scheduler(spec, {"early_stop": True})
    assert isinstance(asha, ASHAScheduler) and asha._time_attr == FOLDS_ATTR and asha._max_t == spec.folds
