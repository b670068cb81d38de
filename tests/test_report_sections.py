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
