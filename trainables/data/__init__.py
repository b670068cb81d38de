"""Cohort adapters by name. Each returns a :class:`~trainables.data.cohort.Cohort`."""

from __future__ import annotations

from ..registry import Registry
from .cohort import Cohort, CohortError, Target


def _synthetic(seed: int = 0, n_patients: int = 300, root: str | None = None) -> Cohort:
    """The built-in synthetic MRI cohort (generated on first use)."""
    from . import synthetic

    return synthetic.load(root, seed=seed, n_patients=n_patients)


COHORTS = Registry("cohort", {"synthetic": _synthetic})

__all__ = ["COHORTS", "Cohort", "CohortError", "Target"]
