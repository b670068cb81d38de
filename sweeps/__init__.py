"""Sweep platform: cohort -> cached embeddings -> Ray Tune + Optuna trials -> markdown report."""

from .spec import SweepSpec

__all__ = ["SweepSpec"]
