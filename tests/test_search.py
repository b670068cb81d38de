"""sweeps/search.py: the same proposals at any concurrency and finish order, no configuration run
twice, exhaustive search of a covered finite space, the study in the run's journal, and a restore
that never re-proposes or reruns a finished configuration.

Most tests drive ``SweepSearcher`` the way Tune does (suggest / on_trial_complete, finishing trials in
a random order) without Ray; one runs two real sweeps at concurrency 1 and 2."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from ray import tune
from ray.tune.search import Searcher

from sweeps import search
from sweeps.search import SweepSearcher, config_key, plan, read_records, space_size

QUICK = {  # quickstart's space (128 configurations)
    "encoder": "resnet18", "preprocessing": "grayscale_norm", "pca_dim": tune.choice([16, 32]),
    "pooling": {"attention": {"hidden_dim": tune.choice([32, 64])}}, "fusion": "concat",
    "tabular": tune.choice([False, True]), "sampling": tune.choice(["none", "class_weight", "smote", "random_under"]),
    "head": tune.choice(["logreg", "svc", "lightgbm", "mlp"]),
}
SMALL = {"head": tune.choice(["logreg", "svc"]), "sampling": tune.choice(["none", "smote"]), "pca_dim": 16,
         "tabular": tune.choice([False, True])}  # 8 configurations
HEADS = {"logreg": 0.5, "svc": 0.6, "lightgbm": 0.7, "mlp": 0.55}


def objective(c: dict) -> float:
    """A deterministic stand-in for a trial: its value depends on the configuration only."""
    v = HEADS[c["head"]] + 0.01 * c["pca_dim"] / 16 + (0.05 if c["tabular"] else 0.0)
    v += {"none": 0, "class_weight": 0.02, "smote": 0.01, "random_under": -0.02}[c["sampling"]]
    return v + 0.001 * c.get("pooling", {}).get("attention", {}).get("hidden_dim", 0) / 32


def make(run_dir, space=QUICK, n=16, start=True, **kw) -> SweepSearcher:
    s = SweepSearcher(space, metric="f1_macro", mode="max", seed=0, run_dir=run_dir, study_name="study", num_samples=n,
                      **kw)
    if start:
        s.start()
    return s


def drive(s: SweepSearcher, conc: int, order_seed: int, prefix: str = "t", folds: int = 0,
          stop: set[str] = frozenset()) -> list[tuple[str, dict]]:
    """Run ``s`` to the end like Tune: up to ``conc`` trials at once, a random one finishes next.
    ``folds``: each trial first reports ``folds - 1`` intermediate results (a misleading running value,
    10 + fold) as a frozen trial does; a trial whose config key is in ``stop`` ends on its first one
    (a scheduler stopped it: Tune completes it with that last result)."""
    rng, running, issued, k, finished = random.Random(order_seed), {}, [], 0, False
    while True:
        while len(running) < conc and not finished:
            tid, k = f"{prefix}{k}", k + 1
            c = s.suggest(tid)
            if c == Searcher.FINISHED:
                finished = True
            elif c is not None:
                running[tid] = c
                issued.append((tid, c))
                continue
            break
        if not running:
            return issued
        tid = rng.choice(sorted(running))
        c = running.pop(tid)
        for f in range(1, folds):
            partial = {"f1_macro": 10.0 + f, "folds_done": f, "n_folds": folds}
            if config_key(c) in stop:  # Tune passes the result a scheduler stops on to on_trial_complete only
                s.on_trial_complete(tid, {**partial, "done": True})
                break
            s.on_trial_result(tid, partial)
        else:
            s.on_trial_complete(tid, {"f1_macro": objective(c), **({"folds_done": folds, "n_folds": folds} if folds else {})})


def slots(run_dir) -> list[str]:
    return [x["key"] for x in json.loads((run_dir / "search.json").read_text())["slots"]]


def test_same_proposals_at_any_concurrency_and_finish_order(tmp_path):
    runs = {}
    for conc, order in [(1, 0), (2, 1), (2, 2), (8, 3)]:
        d = tmp_path / f"c{conc}-{order}"
        d.mkdir()
        issued = drive(make(d), conc, order)
        runs[(conc, order)] = slots(d)
        assert [config_key(c) for _, c in issued] == runs[(conc, order)]  # trial i got proposal i
    first = runs[(1, 0)]
    assert len(first) == 16 and len(set(first)) == 16
    for k, v in runs.items():
        assert v == first, f"concurrency/order {k} proposed other configurations"


def _study(run_dir):
    import optuna

    return optuna.load_study(study_name="study", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run_dir / "optuna.journal"))))


def test_intermediate_results_reach_the_study_as_progress_and_never_as_answers(tmp_path):
    """Per-fold results (running values far above any final one) go to the Optuna trial as
    intermediate values; the proposals and the told values are those of a run without them."""
    import optuna

    (tmp_path / "plain").mkdir(), (tmp_path / "folds").mkdir()
    drive(make(tmp_path / "plain"), 2, 1)
    drive(make(tmp_path / "folds"), 2, 1, folds=5)
    assert slots(tmp_path / "plain") == slots(tmp_path / "folds")
    plain, folds = _study(tmp_path / "plain"), _study(tmp_path / "folds")
    assert [t.value for t in plain.trials] == [t.value for t in folds.trials]
    assert all(t.state == optuna.trial.TrialState.COMPLETE and t.value < 10 for t in folds.trials)
    state = json.loads((tmp_path / "folds" / "search.json").read_text())
    for x in state["slots"]:  # every evaluated configuration's trial shows its progress, steps 1..4
        assert folds.trials[x["optuna_trial"]].intermediate_values == {f: 10.0 + f for f in range(1, 5)}
    assert not any(plain.trials[x["optuna_trial"]].intermediate_values for x in state["slots"])


def test_a_trial_stopped_early_is_pruned_not_answered(tmp_path):
    """A trial a scheduler stopped completes with an intermediate result: its slot is 'stopped' and
    its Optuna trial PRUNED (its partial value is no answer of that configuration), and a restore
    reading the trial's files agrees."""
    import optuna

    probe = tmp_path / "probe"
    probe.mkdir()
    first = drive(make(probe, SMALL, n=8), 1, 0)
    victim = config_key(first[2][1])
    run = tmp_path / "run"
    run.mkdir()
    drive(make(run, SMALL, n=8), 1, 0, folds=3, stop={victim})
    state = json.loads((run / "search.json").read_text())
    (slot,) = [x for x in state["slots"] if x["key"] == victim]
    assert slot["state"] == ["stopped"] and slot["values"] == [None] and slot["told"]
    study = _study(run)
    t = study.trials[slot["optuna_trial"]]
    assert t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values == {1: 11.0}
    assert study.best_value < 10, "a pruned trial (Optuna keeps its last intermediate value) is never the best"
    others = [x for x in state["slots"] if x["key"] != victim]
    assert len(others) == 7 and all(x["state"] == ["done"] for x in others)
    # a restore finds the stopped trial from result.json (last row: an intermediate marked done)
    d = tmp_path / "trial_x"
    d.mkdir()
    (d / "result.json").write_text(json.dumps({"f1_macro": 0.9, "folds_done": 1, "n_folds": 3}) + "\n" +
                                   json.dumps({"f1_macro": 0.4, "folds_done": 2, "n_folds": 3, "done": True}) + "\n")
    assert search._trial_outcome(d, "f1_macro") == ("stopped", None)
    (d / "result.json").write_text(json.dumps({"f1_macro": 0.4, "folds_done": 3, "n_folds": 3, "done": True}) + "\n")
    assert search._trial_outcome(d, "f1_macro") == ("done", 0.4)


def test_a_repeated_proposal_is_answered_not_run(tmp_path):
    drive(make(tmp_path), 2, 0)
    state = json.loads((tmp_path / "search.json").read_text())
    repeats = [p for p in state["proposals"] if p["repeat_of"] is not None]
    assert state["repeats_answered"] == len(repeats) > 0  # TPE does repeat itself on this space
    assert len(state["slots"]) == 16 and len({s["key"] for s in state["slots"]}) == 16
    assert state["constant_liar"] is True and state["sampler"] == "tpe"
    # the journal holds every proposal, the repeats told the value of the slot they repeat
    import optuna

    study = optuna.load_study(study_name="study", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))))
    trials = {t.number: t for t in study.trials}
    assert len(trials) == len(state["proposals"])
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials.values())
    for p in repeats:
        assert trials[p["optuna_trial"]].value == trials[state["slots"][p["repeat_of"]]["optuna_trial"]].value


def test_finite_space_is_searched_exhaustively_once_each(tmp_path):
    assert space_size(SMALL) == 8 and space_size(QUICK) == 128
    assert space_size({"lr": tune.loguniform(1e-4, 1e-2), "head": tune.choice(["a", "b"])}) is None
    p = plan(SMALL, 12)
    assert p["sampler"] == "exhaustive" and p["trials"] == 8 and "running 8" in p["note"]
    issued = drive(make(tmp_path, SMALL, n=12), 3, 0)
    keys = [config_key(c) for _, c in issued]
    assert len(keys) == 8 and len(set(keys)) == 8
    state = json.loads((tmp_path / "search.json").read_text())
    assert state["sampler"] == "exhaustive" and "exactly once" in state["note"] and state["repeats_answered"] == 0


def test_repeats_give_each_configuration_n_seeds(tmp_path):
    issued = drive(make(tmp_path, SMALL, n=6, repeats=2), 2, 0)
    assert len(issued) == 6
    by_key: dict[str, list[int]] = {}
    for _, c in issued:
        by_key.setdefault(config_key(c), []).append(c["__trial_index__"])
    assert len(by_key) == 3 and all(sorted(v) == [0, 1] for v in by_key.values())


def _record(run_dir, tid: str, config: dict) -> None:
    ck = run_dir / f"trial_{tid}" / "checkpoint_000000"
    ck.mkdir(parents=True)
    (ck / "config.json").write_text(json.dumps(config, sort_keys=True))
    (ck / "metrics.json").write_text(json.dumps({"f1_macro": objective(config)}))
    np.savez(ck / "oof.npz", mean=np.zeros((2, 2), np.float32))


def test_restore_never_reruns_or_reproposes_a_finished_configuration(tmp_path):
    s = make(tmp_path, n=8)
    c = {t: s.suggest(t) for t in ("a", "b")}
    s.save_to_dir(str(tmp_path))  # Tune's last snapshot knows trials a and b
    c.update({t: s.suggest(t) for t in ("c", "d")})
    for t in ("a", "c"):
        _record(tmp_path, t, c[t])
    s.on_trial_complete("a", {"f1_macro": objective(c["a"])})
    # c finished after the snapshot and the searcher never heard of it; d (lost) started, no record
    (tmp_path / "trial_d").mkdir()
    assert set(read_records(tmp_path)) == {"a", "c"}
    orphan = s._open().ask(s._dists).number  # asked just before the kill, never handed out

    r = make(tmp_path, n=8, start=False)  # what Tuner.restore unpickles: a searcher as built before fit
    r.restore_from_dir(str(tmp_path))
    resume = json.loads((tmp_path / "search.json").read_text())["resumes"][-1]
    assert resume["lost_finished"] == ["c"] and resume["requeued_slots"] == [3]
    assert (tmp_path / "superseded" / "trial_d").exists() and not (tmp_path / "trial_d").exists()
    import optuna

    assert r._open().trials[orphan].state == optuna.trial.TrialState.FAIL
    # Tune reruns b (it knew it as unfinished); the searcher hands out d's configuration again, then new ones
    issued = drive(r, 2, 0, prefix="n")
    assert config_key(issued[0][1]) == config_key(c["d"])
    r.on_trial_complete("b", {"f1_macro": objective(c["b"])})
    keys = [config_key(x) for x in (c["a"], c["b"], c["c"])] + [config_key(x) for _, x in issued]
    assert len(keys) == 8 and len(set(keys)) == 8  # the requested count, every configuration once
    state = json.loads((tmp_path / "search.json").read_text())
    assert all(x["told"] for x in state["slots"]) and len(state["slots"]) == 8


@pytest.mark.usefixtures("ray_session")
def test_sweeps_at_concurrency_1_and_2_propose_the_same_and_store_the_study(sweeps_home, monkeypatch):
    """Two real smoke sweeps; 2 random start-up proposals so that the last ones come from TPE."""
    import optuna

    from sweeps.runner import run, runs_root

    monkeypatch.setattr(search, "N_STARTUP_TRIALS", 2)
    for conc in (1, 2):
        run("quickstart", num_samples=6, concurrency=conc, name=f"conc{conc}", progress=False, smoke_test=True,
            write_report=False, test_fraction=0.0)  # no held-out refit: this test is about the proposals
    a, b = (runs_root() / "conc1"), (runs_root() / "conc2")
    assert slots(a) == slots(b) and len(set(slots(a))) == 6
    for d in (a, b):
        study = optuna.load_study(study_name=d.name, storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(d / "optuna.journal"))))
        assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) >= 6
        assert len(read_records(d)) == 6


def test_a_grid_space_keeps_tunes_grid_and_a_mixed_one_is_refused():
    from sweeps.search import uses_grid
    from sweeps.spec import SpecError

    assert uses_grid({"max_slices": tune.grid_search([4, 1]), "encoder": "resnet18"})
    assert not uses_grid(QUICK)
    with pytest.raises(SpecError, match="grid_search cannot also have search domains"):
        uses_grid({"max_slices": tune.grid_search([4, 1]), "head": tune.choice(["a", "b"])})


@pytest.mark.usefixtures("ray_session")
def test_a_covered_finite_space_runs_each_configuration_once(sweeps_home, tmp_path):
    """4 trials asked of a 2-configuration space: 2 trials, one per configuration, said in search.json."""
    from sweeps.runner import run, runs_root

    space = tmp_path / "tiny.py"
    space.write_text("from ray import tune\nfrom sweeps.spec import SweepSpec\n"
                     "SPEC = SweepSpec(name='tiny', num_samples=4, compare={'pooling': ['mean', 'max']},\n"
                     "    space={'encoder': 'resnet18', 'pca_dim': 8, 'head': tune.choice(['logreg', 'lightgbm'])})\n")
    run(str(space), num_samples=4, concurrency=2, name="tiny-exhaustive", progress=False, smoke_test=True,
        write_report=False)
    d = runs_root() / "tiny-exhaustive"
    keys = [config_key(r["config"]) for r in read_records(d).values()]
    assert len(keys) == 2 and len(set(keys)) == 2
    state = json.loads((d / "search.json").read_text())
    assert state["sampler"] == "exhaustive" and "running 2" in state["note"]
