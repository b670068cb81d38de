"""Housekeeping of issue 9: one atomic-write helper, SWEEPS_HOME in one place, the RSNA score as a
registered objective (the pipeline names no adapter)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from trainables import atomic
from trainables.metrics import EXTRA_OBJECTIVES, OBJECTIVES, objective_metrics
from trainables.paths import sweeps_home

REPO = Path(__file__).resolve().parents[1]


def test_atomic_dir_publishes_only_a_complete_folder(tmp_path):
    out = tmp_path / "entry"
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash midway")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic.atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("whole")
    assert (out / "a.txt").read_text() == "whole"
    with pytest.raises(FileExistsError):
        with atomic.atomic_dir(out):
            pass
    with atomic.atomic_dir(out, if_exists="keep") as tmp:  # a racing writer got there first: theirs stays
        (tmp / "a.txt").write_text("ours")
    assert (out / "a.txt").read_text() == "whole" and sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


def test_write_text_replaces_in_one_step_and_leaves_no_temporary(tmp_path):
    f = tmp_path / "sweep.json"
    atomic.write_text(f, "old")
    atomic.write_text(f, "new")
    assert f.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["sweep.json"]


def test_staged_files_move_in_with_the_named_file_last(tmp_path):
    (tmp_path / "report.md").write_text("previous")
    with pytest.raises(ValueError):
        with atomic.staged_files(tmp_path, last=("report.md",)) as st:
            (st / "report.md").write_text("broken")
            raise ValueError
    assert (tmp_path / "report.md").read_text() == "previous"
    with atomic.staged_files(tmp_path, last=("report.md",)) as st:
        (st / "plot.png").write_bytes(b"png")
        (st / "report.md").write_text("new")
    assert (tmp_path / "report.md").read_text() == "new" and (tmp_path / "plot.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "report.md"]


def test_sweeps_home_is_resolved_in_one_place(monkeypatch, tmp_path):
    monkeypatch.setenv("SWEEPS_HOME", str(tmp_path / "h"))
    from sweeps.runner import home
    from trainables.cache import default_root

    assert sweeps_home() == (tmp_path / "h").resolve() == home()
    assert default_root() == sweeps_home() / "cache"
    readers = [p.relative_to(REPO).as_posix() for p in [*REPO.glob("sweeps/**/*.py"), *REPO.glob("trainables/**/*.py")]
               if "SWEEPS_HOME\"" in p.read_text() and p.name != "paths.py"]
    assert readers == [], f"SWEEPS_HOME read outside trainables/paths.py: {readers}"


def test_the_pipeline_imports_no_adapter():
    tree = ast.parse((REPO / "trainables/pipeline.py").read_text())
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m == "data" or m.startswith("data.") for m in imported), imported


def test_the_rsna_objective_gives_the_competition_score_unchanged():
    from trainables.data.rsna import CLASSES, TARGET_NAMES, competition_score

    assert EXTRA_OBJECTIVES == {"rsna_score": "min"} and OBJECTIVES["rsna_score"].mode == "min"
    rng = np.random.default_rng(0)
    names = [*TARGET_NAMES[:6], "other"]
    classes = {t: CLASSES for t in TARGET_NAMES} | {"other": ("a", "b", "c")}
    Y = rng.integers(-1, 3, size=(50, len(names)))
    proba = {t: rng.dirichlet(np.ones(3), size=50) for t in names}
    got = objective_metrics(names, classes, Y, proba)
    want = competition_score({t: Y[:, k] for k, t in enumerate(names[:6])}, {t: proba[t] for t in names[:6]})
    assert got["rsna_score"] == want["score"]
    parts = {f"rsna/{k}": v for k, v in want.items() if k != "score"}
    assert sorted(got) == sorted([*parts, "rsna_score"])
    np.testing.assert_array_equal([got[k] for k in parts], list(parts.values()))  # NaN parts compare equal
    assert objective_metrics(["other"], {"other": ("a", "b", "c")}, Y[:, -1:], proba) == {}
