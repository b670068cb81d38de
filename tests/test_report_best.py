"""Every swept value, nested or not, in the report's configuration tables; the top configurations
written beside the report as best_config.json and a ready-to-run best_space.py."""

from __future__ import annotations

import json

import numpy as np

from sweeps.report import build_report, write_report_files
from sweeps.report.run import config_str, swept_paths
from sweeps.spec import load_space
from tests.test_report import cohort, make_run, noisy_proba, section_text

TEXT_SPACE = {"tabular": "simple", "text": {"name": {"choice": ["tfidf", "none"]}, "tfidf": {"max_features": 500}},
              "head": {"name": "logreg", "logreg": {"C": {"domain": "LogUniform(0.01, 10)"}}}, "sampling": "none"}


def _text_run(tmp_path, y, groups):
    trials = [{"id": f"t{i}", "config": {"tabular": "simple", "sampling": "none",
                                         "text": {"name": name, "tfidf": {"max_features": 500}},
                                         "head": {"name": "logreg", "logreg": {"C": c}}},
               "proba": {"mean": noisy_proba(y, s, i)}}
              for i, (name, c, s) in enumerate([("tfidf", 0.5, 3.0), ("none", 2.0, 0.5), ("tfidf", 1.25, 1.0)])]
    spec = {"cohort": "synthetic", "cohort_options": {"n_patients": 40}, "target": None, "weights": {},
            "trainable": "frozen", "reference": None}
    return make_run(tmp_path, y, groups, trials, compare=None, space_repr=TEXT_SPACE, spec=spec)


def test_swept_paths_are_found_at_any_depth():
    assert swept_paths(TEXT_SPACE) == (("text", "name"), ("head", "logreg", "C"))
    config = {"head": {"name": "svc", "svc": {"C": 1.0}}, "text": {"name": "tfidf"}}
    assert config_str(config, (("text", "name"), ("head", "logreg", "C"))) == "head=svc, text=tfidf"


def test_a_nested_swept_value_is_in_every_configuration_table(tmp_path):
    y, groups = cohort()
    run = _text_run(tmp_path, y, groups)
    text = build_report(run)
    top = section_text(text, "Top configurations")
    assert "text=tfidf" in top and "text=none" in top
    assert "head.logreg.C=0.5" in top and "head.logreg.C=2" in top
    by_text = section_text(text, "By text")
    assert "`tfidf`" in by_text and "`none`" in by_text
    assert "By head.logreg.C" not in text  # a continuous range: one value per trial, no table
    assert "pooling does not apply" in section_text(text, "Attention vs average pooling")  # no encoder was swept


def test_fine_tuning_rows_differ_by_their_learning_rate(tmp_path):
    y, groups = cohort()
    space = {"encoder": "resnet18", "pooling": "mean", "train": {"lr": {"domain": "LogUniform(0.0003, 0.003)"},
                                                                 "epochs": 2}}
    trials = [{"id": f"t{i}", "config": {"encoder": "resnet18", "pooling": "mean", "train": {"lr": lr, "epochs": 2}},
               "proba": {"mean": noisy_proba(y, 1.0 + i, i)}} for i, lr in enumerate([0.0004, 0.002])]
    text = build_report(make_run(tmp_path, y, groups, trials, compare=None, space_repr=space))
    top = section_text(text, "Top configurations")
    assert "train.lr=0.002" in top and "train.lr=0.0004" in top


def test_best_config_and_best_space_are_written_and_the_space_loads(tmp_path):
    y, groups = cohort()
    run = _text_run(tmp_path, y, groups)
    files = write_report_files(run, tmp_path / "out", html=True)
    assert set(files) == {"markdown", "html", "best_config", "best_space"}
    assert all(p.exists() for p in files.values())
    best = json.loads(files["best_config"].read_text())
    assert best["best"]["trial"] == "t0" and best["best"]["config"]["text"]["name"] == "tfidf"
    assert [t["rank"] for t in best["top"]] == [1, 2, 3]
    spec = load_space(str(files["best_space"]))  # validates
    assert spec.space == best["best"]["config"]
    assert spec.cohort == "synthetic" and spec.cohort_options == {"n_patients": 40} and spec.num_samples == 1
    assert not any(isinstance(v, dict) and ({"choice", "domain"} & set(v)) for v in spec.space.values())


def test_a_paired_pooling_run_names_the_arm_in_the_best_space(tmp_path):
    y, groups = cohort()
    trials = [{"id": "t0", "config": {"encoder": "resnet18", "preprocessing": "grayscale_norm", "pca_dim": 16,
                                      "fusion": "concat", "tabular": False, "sampling": "none", "head": "logreg",
                                      "pooling": {"attention": {"hidden_dim": 32}}, "__trial_index__": 0},
               "proba": {"mean": noisy_proba(y, 0.5, 1), "attention": noisy_proba(y, 3.0, 2)}}]
    spec = {"cohort": "synthetic", "cohort_options": {}, "target": None, "weights": {}, "trainable": "frozen"}
    run = make_run(tmp_path, y, groups, trials, spec=spec,
                   space_repr={"pooling": {"attention": {"hidden_dim": {"choice": [32, 64]}}}, "head": "logreg"})
    files = write_report_files(run, tmp_path / "out")
    s = load_space(str(files["best_space"]))
    assert s.space["pooling"] == {"name": "attention", "attention": {"hidden_dim": 32}}
    assert "__trial_index__" not in s.space and not s.compare
    top = section_text(build_report(run), "Top configurations")
    assert top.count("pooling.attention.hidden_dim=32") == 1  # on the attention row only


def test_attention_plots_name_samples_by_their_sample_id(tmp_path, monkeypatch):
    from sweeps.report import plots, write_report
    from tests.test_report import _attention, paired_trials

    y, groups = cohort()
    trials = paired_trials(y, 2)
    trials[1]["attn"] = {"attention": {"sagittal_t2": _attention(len(y), 12, 0)}}
    run = make_run(tmp_path, y, groups, trials)
    with np.load(run / "targets.npz") as t:
        arrays = dict(t)
    ids = np.array([f"study-{i:03d}" for i in range(len(y))])
    np.savez(run / "targets.npz", **arrays, sample_ids=ids)
    seen = {}
    real = plots.attention

    def spy(panels, title, out, **kw):
        seen["panels"] = panels
        return real(panels, title, out, **kw)

    monkeypatch.setattr(plots, "attention", spy)
    text = write_report(run, tmp_path / "out").read_text()
    assert all(title.split()[1].startswith("study-") for title, _ in seen["panels"])
    assert "named by their sample_id" in text


def test_a_moot_pooling_comparison_is_explained_not_tabulated(tmp_path):
    y, groups = cohort()
    trials = [{"id": "t0", "config": {"encoder": "resnet18", "head": "logreg", "pca_dim": 16},
               "proba": {"mean": noisy_proba(y, 1.0, 0)}}]
    run = make_run(tmp_path, y, groups, trials, compare=None,
                   compare_skipped={"pooling": ["mean", "attention"], "ran": "mean", "why": "one instance"})
    text = build_report(run)
    pooling = section_text(text, "Attention vs average pooling")
    assert "Not compared" in pooling and "`mean`" in pooling and "|" not in pooling


def test_the_data_section_says_what_a_sample_is_and_what_was_set_aside(tmp_path):
    y, groups = cohort()
    trials = [{"id": "t0", "config": {"encoder": "resnet18", "head": "logreg"}, "proba": {"mean": noisy_proba(y, 1.0, 0)}}]
    run = make_run(tmp_path, y, groups, trials, compare=None)
    meta = json.loads((run / "sweep.json").read_text())
    meta["cohort"].update(max_instances=1, no_readable_image={"sagittal_t2": 4},
                          duplicates={"groups": 5, "samples": 10, "merged": True})
    (run / "sweep.json").write_text(json.dumps(meta))
    data = section_text(build_report(run), "Data and method")
    assert "samples (one image each per modality)" in data and "(studies)" not in data
    assert "4 sample(s) have no readable sagittal_t2 image" in data
    assert "Identical images under different patients: 5 (10 samples)" in data and "grouped together" in data


def test_report_html_prints_every_file_it_wrote(tmp_path, capsys, monkeypatch):
    from sweeps.cli import main

    y, groups = cohort()
    _text_run(tmp_path / "runs", y, groups)
    monkeypatch.setenv("SWEEPS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("SWEEPS_REPORTS", str(tmp_path / "reports"))
    assert main(["report", "run", "--html"]) == 0
    printed = capsys.readouterr().out.split()
    for name in ("report.md", "report.html", "best_config.json", "best_space.py"):
        assert str(tmp_path / "reports" / "run" / name) in printed
