"""Post-hoc ensembles of a finished sweep's trials are nested: members are chosen and the
meta-learner fitted without the samples being scored."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from sweeps.report import build_report
from sweeps.report.sections.posthoc import nested_ensembles, rank
from sweeps.report.stats import paired_bootstrap, patient_bootstrap, score
from test_report import cohort, config, make_run, noisy_proba, section_text
from trainables.splits import grouped_folds


def _auc_ci(y, p, groups):
    return patient_bootstrap(y, p, groups, metrics=("auc_macro",))["auc_macro"]


def test_stacking_on_label_shuffled_predictions_scores_at_chance_where_a_leaky_one_does_not():
    y, groups = cohort(200, 1)
    lows, points = [], []
    for seed in range(4):
        noise = {f"t{i:02d}": noisy_proba(y, 0.0, 100 * seed + i) for i in range(20)}  # carry no label information
        res = nested_ensembles(y, groups, noise, "auc_macro", "max", k=5)
        lo, hi = _auc_ci(y, res.proba["stacking"], groups)
        lows.append(lo)
        points.append(score("auc_macro", y, res.proba["stacking"]))
        # the same ensemble built the leaky way: members and meta-learner chosen on every sample, scored on them
        top = rank(y, noise, np.arange(len(y)), "auc_macro", "max")[:5]
        X = np.hstack([noise[n] for n in top])
        leaky = LogisticRegression(max_iter=2000).fit(X, y).predict_proba(X)
        assert _auc_ci(y, leaky, groups)[0] > 0.55, "the leaky control must look better than chance, or this test has no power"
    assert all(lo < 0.5 for lo in lows), f"nested stacking on noise scored above chance: CI lower bounds {lows}"
    assert abs(np.mean(points) - 0.5) < 0.05, f"nested stacking on noise: AUCs {points}"


def test_stacking_and_voting_learn_from_informative_trials():
    y, groups = cohort(200, 1)
    views = {f"t{i:02d}": noisy_proba(y, 1.0, i) for i in range(8)}  # independent noisy views of the truth
    res = nested_ensembles(y, groups, views, "f1_macro", "max", k=5)
    for kind in ("stacking", "soft_voting"):
        assert _auc_ci(y, res.proba[kind], groups)[0] > 0.8, kind
    d, lo, hi = paired_bootstrap(y, res.proba["soft_voting"], res.proba["best_member"], groups, "auc_macro")
    assert lo > 0 and lo <= d <= hi, "averaging independent views beats the best single one, by a paired CI"


def test_a_trial_perfect_on_one_outer_fold_is_never_chosen_when_that_fold_is_scored():
    y, groups = cohort(200, 2)
    folds = grouped_folds(y, groups, 5, 0)  # the outer split nested_ensembles uses (folds=5, seed=0)
    scored = 2
    cands = {f"t{i:02d}": noisy_proba(y, 0.3, i) for i in range(10)}
    cheat = noisy_proba(y, 0.0, 99)
    te = folds[scored][1]
    cheat[te] = np.eye(3)[y[te]] * 0.98 + 0.01  # perfect on exactly one outer fold, random elsewhere
    cands["cheater"] = cheat
    res = nested_ensembles(y, groups, cands, "f1_macro", "max", k=3, n_folds=5, seed=0)
    assert all(np.array_equal(a, b[1]) for a, b in zip(res.folds, folds))
    assert "cheater" not in res.selected[scored], "chosen with the very fold it is scored on"
    others = [s for f, s in enumerate(res.selected) if f != scored]
    assert all(s[0] == "cheater" for s in others), "seen in training, its perfect fold makes it the top pick"
    assert score("f1_macro", y[te], res.proba["best_member"][te]) < 0.8, "the scored fold is not predicted perfectly"


def test_paired_bootstrap_of_identical_predictions_is_exactly_zero():
    y, groups = cohort()
    p = noisy_proba(y, 1.0, 0)
    assert paired_bootstrap(y, p, p.copy(), groups, "f1_macro") == (0.0, 0.0, 0.0)


def test_the_report_section_uses_k_and_states_the_remaining_caveat(tmp_path):
    y, groups = cohort()
    trials = [{"id": f"t{i}", "config": config(pca_dim=i), "proba": {"mean": noisy_proba(y, 1.0, i)}} for i in range(4)]
    run = make_run(tmp_path, y, groups, trials, compare=None)
    sec = section_text(build_report(run, k=3), "Post-hoc ensembles")
    assert "top k = 3" in sec and "(k asked" not in sec
    assert "hyperparameters were themselves chosen by a search" in sec
    assert "| stacking (logistic-regression meta-learner) | 3 |" in sec
    assert "− best single trial | " in sec
    assert "(k asked: 5)" in section_text(build_report(run, k=5), "Post-hoc ensembles"), "only 4 candidates"


def test_a_configuration_proposed_twice_is_one_candidate(tmp_path):
    from sweeps.report import build_report
    from tests.test_report import cohort, config, make_run, noisy_proba

    y, groups = cohort()
    same = noisy_proba(y, 2.0, 7)
    trials = [{"id": "a", "config": config("logreg"), "proba": {"mean": same}},
              {"id": "b", "config": config("logreg"), "proba": {"mean": same}},  # the searcher's repeat
              {"id": "c", "config": config("svc"), "proba": {"mean": noisy_proba(y, 1.0, 8)}}]
    text = build_report(make_run(tmp_path, y, groups, trials, compare=None))
    assert "out-of-fold probabilities of the 2 distinct" in text
