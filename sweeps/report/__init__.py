"""The markdown report of a run, from Tune's trial folders and the out-of-fold predictions each
trial saved. It reads files only (no Ray session), so it works on finished and interrupted runs
alike, and the same run always gives the same report apart from its timestamp (the bootstrap is
seeded). Every figure carries n and a 95% confidence interval: a percentile bootstrap that resamples
patients (all of a patient's studies together) from the out-of-fold predictions.

Layout (imports flow downward only; a leaf imports nothing from sections or from this file):

- leaves: ``stats.py`` (bootstraps, paired tests), ``fmt.py`` (numbers, CIs, tables, labels, HTML),
  ``run.py`` (RunView: the typed view of a run's trial records, the only code that reads the run's
  files; ReportOptions), ``reference.py`` (reference CSV layouts and ``load``), ``plots.py`` (PNGs);
- ``sections/``: one module per report section, each with one function
  ``section(view: RunView, options: ReportOptions) -> list[str]`` (markdown lines, empty when the
  run has nothing for it);
- this file: SECTIONS, their order, and ``build_report`` / ``write_report`` / ``to_html``.

To add a section: write ``sections/<name>.py`` with its ``section(view, options)`` (it may import
the leaves, never this file or another section), and add ``<name>.section`` to SECTIONS below, where
it should appear in the report. A new option goes into ReportOptions (``run.py``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .best import best_config, best_space_source, dumps as dump_best
from .fmt import to_html
from .reference import ReferenceError
from .run import ReportOptions, Row, RunView, load
from .sections import (
    attention,
    by_dimension,
    data,
    encoders,
    ensemble_heads,
    failed,
    importance,
    held_out,
    missing,
    per_target,
    pooling,
    posthoc,
    recipe,
    reference_comparison,
    top,
)
from .stats import paired_bootstrap, patient_bootstrap

Section = Callable[[RunView, ReportOptions], list[str]]

SECTIONS: tuple[Section, ...] = (
    data.section,            # title, data and method
    encoders.section,        # architecture, weights, input configuration, licence
    held_out.section,        # the chosen model on the held-out test part (scored once)
    pooling.section,         # attention vs average pooling (paired)
    by_dimension.section,    # by head / sampling / PCA / tabular / fusion / text / encoder / preprocessing
    per_target.section,      # several targets: each on its labelled samples
    missing.section,         # simulated missing modalities
    ensemble_heads.section,  # ensemble heads vs their best member
    top.section,             # top configurations (mean ± SD over repeated seeds)
    importance.section,      # which choices mattered: fANOVA importance, parallel coordinates
    posthoc.section,         # post-hoc ensembles, nested
    attention.section,       # attention weights over slices (with plots)
    reference_comparison.section,  # published numbers beside ours
    failed.section,          # failed, stopped early, unfinished trials
    recipe.section,          # reproduce this run: command, space hash, fingerprint, seed, versions, resumes, rerun verdict
)

__all__ = ["SECTIONS", "ReferenceError", "ReportOptions", "Row", "RunView", "build_report", "load", "paired_bootstrap",
           "patient_bootstrap", "to_html", "write_report", "write_report_files"]


def build_report(run_dir: Path, plot_dir: Path | None = None, *, k: int = 5, reference: str | Path | None = None) -> str:
    """The report's markdown; with ``plot_dir``, PNG plots are written there and linked. ``k``: the
    number of members of the post-hoc ensembles. ``reference``: a CSV of published numbers to set
    beside ours (default: the ``reference`` named in the run's sweep.json, if any)."""
    return _render(load(run_dir), ReportOptions(k=k, reference=reference, plot_dir=plot_dir))


def _render(view: RunView, options: ReportOptions) -> str:
    lines: list[str] = []
    for section in SECTIONS:
        lines += section(view, options)
    return "\n".join(lines)


def write_report(run_dir: Path, out_dir: Path, *, html: bool = False, k: int = 5,
                 reference: str | Path | None = None) -> Path:
    """:func:`write_report_files`, returning the path of ``report.md``."""
    return write_report_files(run_dir, out_dir, html=html, k=k, reference=reference)["markdown"]


def write_report_files(run_dir: Path, out_dir: Path, *, html: bool = False, k: int = 5,
                       reference: str | Path | None = None) -> dict[str, Path]:
    """Write ``out_dir/report.md`` atomically (temp folder, then rename), with its PNG plots beside it,
    ``best_config.json`` and ``best_space.py`` (:mod:`.best`: the top configurations, and a space that
    reruns the best one) and, with ``html``, ``report.html`` too. ``k`` and ``reference``: as in
    ``build_report``. Returns the written files by kind: ``markdown``, ``html``, ``best_config``,
    ``best_space`` (the ones written)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from trainables import staging as staging_dirs

    staging = staging_dirs.make(out_dir, ".report-")  # plots and text written here first (swept if killed)
    names = {"markdown": "report.md"}
    try:
        view = load(Path(run_dir))
        text = _render(view, ReportOptions(k=k, reference=reference, plot_dir=staging))
        if html:
            (staging / "report.html").write_text(to_html(text, f"Sweep report: {Path(run_dir).name}"))
            names["html"] = "report.html"
        best = best_config(view)
        (staging / "best_config.json").write_text(dump_best(best))
        names["best_config"] = "best_config.json"
        source = best_space_source(view, best)
        if source is not None:
            (staging / "best_space.py").write_text(source)
            names["best_space"] = "best_space.py"
        (staging / "report.md").write_text(text)
        staging_dirs.release(staging)
        for f in sorted(staging.iterdir(), key=lambda p: p.name == "report.md"):  # report.md last
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {kind: out_dir / name for kind, name in names.items()}
