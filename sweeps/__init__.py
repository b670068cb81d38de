"""Sweep platform: cohort -> cached embeddings -> Ray Tune + Optuna trials -> markdown report."""

from .spec import SweepSpec

__all__ = ["SweepSpec", "load_model"]


def __getattr__(name: str):
    if name == "load_model":  # lazily: loading a model needs skops/safetensors, a sweep does not
        from .model import load_model

        return load_model
    raise AttributeError(f"module 'sweeps' has no attribute {name!r}")
