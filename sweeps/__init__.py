"""Sweep platform: cohort -> cached embeddings -> Ray Tune + Optuna trials -> markdown report.

``SweepSpec`` is imported on first use (``from sweeps import SweepSpec``), not with the package: the spec
module pulls in Ray Tune and every component registry, which ``python -m sweeps --help`` does not need.
"""

from __future__ import annotations

__all__ = ["SweepSpec", "load_model"]


def __getattr__(name: str):
    if name == "SweepSpec":
        from .spec import SweepSpec

        return SweepSpec
    if name == "load_model":  # lazily: loading a model needs skops/safetensors, a sweep does not
        from .model import load_model

        return load_model
    raise AttributeError(f"module 'sweeps' has no attribute {name!r}")
