"""What every trial needs to find its data: the small, picklable handle the runner gives both
trainables (frozen :mod:`trainables.trainable` and fine-tuning :mod:`trainables.finetune`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class DataHandle:
    """Small and picklable: what every trial needs to find its data. No identifiers beyond the
    adapter's pseudonymous sample and patient keys."""

    sample_ids: list[str]
    y: np.ndarray
    groups: np.ndarray
    class_names: tuple[str, ...]
    modalities: list[str]
    tabular: pd.DataFrame | None
    entries: dict[str, str]  # "encoder|preprocessing" -> cache entry folder
    metric: str
    mode: str
    folds: int
    seed: int
    arms: dict[str, list[str]]
    run_dir: str = ""  # the Tune experiment folder (trial folders are trial_<id> inside it)
    texts: pd.DataFrame | None = None  # raw text columns, "" where empty
    Y: np.ndarray | None = None  # (n, T) class index per target, -1 masked: a multi-target sweep
    targets: list[tuple[str, tuple[str, ...]]] | None = None
    instances: pd.DataFrame | None = None  # finetune sweeps: image rows (sample_id, modality, order, path, frame)
    shared: dict[str, Any] | None = None  # "encoder|preprocessing" -> Ray ObjectRef of its bags (trainable.share_bags)
