"""Report sections for several targets per trial and for simulated missing modalities, on
hand-built run folders (what the runner and trials write)."""

import json

import numpy as np

from sweeps.report import build_report
from tests.test_report import config, make_run, noisy_proba, section_text


def _binary(y, signal, seed):
    return noisy_proba(y, signal, seed, k=2)


def test_per_target_table_scores_each_target_on_its_labelled_samples(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    groups = np.array([f"p{i // 2:03d}" for i in range(n)])
    Y = rng.integers(0, 2, (n, 2))
    Y[:40, 1] = -1  # the second target is labelled for 80 samples only
    good, noise = _binary(np.maximum(Y[:, 0], 0), 3.0, 1), _binary(np.maximum(Y[:, 1], 0), 0.0, 2)
    run = make_run(tmp_path, Y[:, 0], groups, [{"id": "t1", "config": config(), "proba": {"mean": good}}],
                   compare=None, metric="auc_macro")
    meta = json.loads((run / "sweep.json").read_text())
    meta["cohort"]["predicted_targets"] = {"effusion": {}, "edema": {}}
    (run / "sweep.json").write_text(json.dumps(meta))
    np.savez(run / "targets.npz", y=Y[:, 0], groups=groups, classes=np.array(["0", "1"]), Y=Y,
             target_names=np.array(["effusion", "edema"]), classes__effusion=np.array(["0", "1"]),
             classes__edema=np.array(["0", "1"]))
    ck = run / "trial_t1" / "checkpoint_000000"
    np.savez_compressed(ck / "oof.npz", mean=good.astype(np.float32), **{"mean__t__effusion": good, "mean__t__edema": noise})
    text = build_report(run)
    sec = section_text(text, "Per target")
    rows = {ln.split("|")[1].strip(): ln for ln in sec.splitlines() if ln.startswith("| `")}
    assert set(rows) == {"`effusion`", "`edema`"}
    assert "| 80 |" in rows["`edema`"] and "| 120 |" in rows["`effusion`"]
    auc_edema = float(rows["`edema`"].split("|")[4].split("[")[0])
    auc_eff = float(rows["`effusion`"].split("|")[4].split("[")[0])
    assert auc_eff > 0.9 and abs(auc_edema - 0.5) < 0.15
    assert "one head per target" in text


def test_missingness_table_lists_each_fusion_strategy_by_fraction(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 90)
    groups = np.array([f"p{i}" for i in range(90)])
    trials = []
    for i, (fusion, drop) in enumerate([("concat", 0.0), ({"name": "cnn", "cnn": {"missing": "neutral"}}, 0.3)]):
        metrics = {f"missing/sagittal_t2/{fr:g}/f1_macro": 0.7 - fr * (0.5 - drop) for fr in (0.0, 0.5, 1.0)}
        trials.append({"id": f"t{i}", "config": config(fusion=fusion), "proba": {"mean": noisy_proba(y, 2.0, i)},
                       "metrics": {"mean": metrics}})
    text = build_report(make_run(tmp_path, y, groups, trials, compare=None))
    sec = section_text(text, "Simulated missing modalities")
    assert "| 0% removed | 50% removed | 100% removed |" in sec
    assert "cnn (missing=neutral)" in sec and "concat / mean" in sec
    cnn_row = next(ln for ln in sec.splitlines() if ln.startswith("| cnn"))
    assert cnn_row.rstrip(" |").endswith("0.500")  # 0.7 - 1.0 * 0.2


def test_no_missingness_no_section(tmp_path):
    y = np.random.default_rng(2).integers(0, 3, 60)
    groups = np.array([f"p{i}" for i in range(60)])
    text = build_report(make_run(tmp_path, y, groups, [{"id": "a", "config": config(), "proba": {"mean": noisy_proba(y, 1, 0)}}],
                                 compare=None))
    assert "## Simulated missing modalities" not in text and "## Per target" not in text


# -- the package's shape: every section module is listed once, with the one signature ---------------
def test_every_section_module_is_in_the_ordered_list_with_the_one_signature():
    import ast
    import importlib
    import inspect
    import pkgutil

    from sweeps import report
    from sweeps.report import sections

    names = sorted(m.name for m in pkgutil.iter_modules(sections.__path__))
    listed = [f.__module__.rsplit(".", 1)[1] for f in report.SECTIONS]
    assert sorted(listed) == names, "a section module missing from SECTIONS, or listed twice"
    for name in names:
        mod = importlib.import_module(f"sweeps.report.sections.{name}")
        assert list(inspect.signature(mod.section).parameters) == ["view", "options"], name
        for node in ast.walk(ast.parse(inspect.getsource(mod))):  # imports flow down: leaves only
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 2 and node.module in ("fmt", "plots", "reference", "run", "stats"), \
                    f"sections/{name}.py imports {'.' * node.level}{node.module or ''}: only the report's leaves"


# -- which choices mattered: fANOVA over the finished trials, parallel coordinates ---------------------
def _importance_run(tmp_path, n: int, space_repr: dict | None, name="imp"):
    """``n`` trials: the head decides the score (svc strong, logreg weak), pca_dim and the nested
    hidden_dim are noise."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    groups = np.array([f"p{i}" for i in range(90)])
    trials = []
    for i in range(n):
        head = ("svc", "logreg")[i % 2]
        cfg = config(head, pca_dim=int(rng.choice([16, 32])), pooling={"attention": {"hidden_dim": int(rng.choice([32, 64]))}})
        signal = 3.0 if head == "svc" else 0.3
        trials.append({"id": f"t{i:02d}", "config": cfg, "proba": {"mean": noisy_proba(y, signal, i)}})
    extra = {"space_repr": space_repr} if space_repr is not None else {}
    return make_run(tmp_path, y, groups, trials, compare=None, name=name, **extra)


SPACE = {"encoder": "resnet18", "head": {"choice": ["logreg", "svc"]}, "pca_dim": {"choice": [16, 32]},
         "pooling": {"attention": {"hidden_dim": {"choice": [32, 64]}}}}


def test_importance_ranks_the_dimension_that_decides_the_score_first_and_plots_every_trial(tmp_path):
    from sweeps.report.sections import importance

    run = _importance_run(tmp_path, 10, SPACE)
    text = build_report(run, plot_dir=tmp_path)
    body = section_text(text, "Which choices mattered")
    rows = [ln for ln in body.splitlines() if ln.startswith("| `")]
    assert rows[0].startswith("| `head` |"), body  # ranked: the dimension that decides the score first
    shares = {r.split("|")[1].strip(): float(r.split("|")[2]) for r in rows}
    assert shares["`head`"] > 0.6 and abs(sum(shares.values()) - 1) < 0.01
    assert "`pooling.attention.hidden_dim`" in shares  # nested dimensions by their dotted path
    assert "`svc` (5), `logreg` (5)" in body or "`logreg` (5), `svc` (5)" in body
    assert "(importance.png)" in body and (tmp_path / "importance.png").stat().st_size > 1000
    assert "importance.png" not in build_report(run, plot_dir=None)
    # the same run, the same figures and the same plot bytes
    again = tmp_path / "again"
    again.mkdir()
    build_report(run, plot_dir=again)
    assert (again / "importance.png").read_bytes() == (tmp_path / "importance.png").read_bytes()
    assert importance.MIN_TRIALS == 4


def test_importance_is_skipped_with_a_reason_for_few_trials_or_nothing_searched(tmp_path):
    few = section_text(build_report(_importance_run(tmp_path, 3, SPACE, "few")), "Which choices mattered")
    assert "Skipped: 3 finished trial(s); importance needs at least 4." in few
    fixed = section_text(build_report(_importance_run(tmp_path, 6, {"head": "svc"}, "fixed")), "Which choices mattered")
    assert "Skipped: the run searched no dimension" in fixed
    unrecorded = section_text(build_report(_importance_run(tmp_path, 6, None, "old")), "Which choices mattered")
    assert "Skipped: the run searched no dimension" in unrecorded


def test_numbers_get_their_recorded_bounds_and_scale(tmp_path):
    from sweeps.report.run import load
    from sweeps.report.sections.importance import points, searched

    run = _importance_run(tmp_path, 6, {"head": {"choice": ["logreg", "svc"]},
                                        "pca_dim": {"domain": "Integer", "type": "int", "low": 8, "high": 64, "log": True}})
    view = load(run)
    params, dists, values = points(view, searched(view.meta["space_repr"]), view.rows)
    assert (dists["pca_dim"].low, dists["pca_dim"].high, dists["pca_dim"].log) == (8, 64, True)
    assert len(params) == len(values) == 6 and set(dists) == {"head", "pca_dim"}
