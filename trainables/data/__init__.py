"""Cohort adapters by name. Each returns a :class:`~trainables.data.cohort.Cohort`.

Every adapter is a module with the same surface (:mod:`trainables.data.adapter` states the contract):
``NAME``, ``OPTIONS`` (its options as :class:`~trainables.registry.Param` data) and
``load(root=None, *, strict=False, **options) -> Cohort``, where ``root`` is the dataset as distributed
(``--data`` on the command line). An adapter of a real dataset has a stand-in generator in
:mod:`trainables.data.standins` (same ``NAME``, ``standin(out, *, seed=0) -> Path``) writing a small
dataset in the same on-disk layout, used by tests and by ``--smoke``. ``COHORTS`` and ``STANDINS`` are
built from the modules listed below: adding an adapter is one module here (and its stand-in) plus one
entry in ``ADAPTERS`` (and ``STANDIN_MODULES``).
"""

from __future__ import annotations

from pathlib import Path

from ..paths import sweeps_home
from ..registry import Registry
from . import chexpert, covid, iuxray, knee, manifest, rsna, synthetic
from .cohort import Cohort, CohortError, Target
from .standins import chexpert as chexpert_standin
from .standins import covid as covid_standin
from .standins import iuxray as iuxray_standin
from .standins import knee as knee_standin
from .standins import rsna as rsna_standin

ADAPTERS = (synthetic, rsna, iuxray, chexpert, knee, covid, manifest)  # the registered cohort adapters, in listing order
STANDIN_MODULES = (rsna_standin, iuxray_standin, chexpert_standin, knee_standin, covid_standin)

COHORTS = Registry("cohort", {m.NAME: m.load for m in ADAPTERS})
COHORTS.params.update({m.NAME: dict(m.OPTIONS) for m in ADAPTERS})
STANDINS = Registry("cohort stand-in", {m.NAME: m.standin for m in STANDIN_MODULES})


def adapter(name: str):
    """The adapter module registered as ``name`` (an unknown name: the lookup message)."""
    COHORTS.check(name, "cohort")
    return next(m for m in ADAPTERS if m.NAME == name)


def standin_root(cohort: str) -> Path:
    """The generated stand-in of ``cohort``'s layout under SWEEPS_HOME (made on first use)."""
    STANDINS.check(cohort, "cohort")
    root = sweeps_home() / "data" / "standins" / cohort
    if not root.exists():
        try:
            STANDINS[cohort](root)
        except OSError:  # a concurrent sweep renamed its finished stand-in into place first: use theirs
            if not root.is_dir():
                raise
    return root


__all__ = ["ADAPTERS", "COHORTS", "STANDINS", "STANDIN_MODULES", "Cohort", "CohortError", "Target", "adapter",
           "standin_root"]
