"""One trial record: what a trial writes, how it is read back, and how a finished one is recognised.

Every trial (frozen :func:`trainables.trainable.sweep_trial` and fine-tuning
:func:`trainables.finetune.finetune_trial`) reports its result with a Tune checkpoint folder
holding three files:

- ``config.json``: the trial's configuration (sorted keys; non-JSON values as ``str``);
- ``metrics.json``: the flat metrics it reported (:func:`trainables.pipeline.flatten`): the
  objective's (best arm's) metrics at the top level, ``best_arm``, and per arm
  ``arm/<arm>/<metric>`` (:func:`arm_key`; ``<metric>`` may itself hold ``/``, e.g.
  ``missing/<modality>/<fraction>/<metric>``);
- ``oof.npz``: float arrays, out of fold, one row per sample in the sweep's sample order:
  ``<arm>`` (n, C) class probabilities; with several targets ``<arm>__t__<target>`` (n, C_t), NaN
  rows where the target is masked (:func:`target_key`); ``attn__<arm>__<modality>`` (n, S) attention
  over the modality's instances, NaN on padding (:func:`attention_key`).

Each file is written to a temporary name in the folder and renamed into place, ``metrics.json``
last, so a reader never sees a half-written file. A record is complete when all three files read
back (a kill while Tune copies the checkpoint can leave one missing or cut short): :func:`read_record`
returns None otherwise. On resume, :func:`find_completed` finds the record a previous attempt of the
same trial left, so the trial reports it again instead of recomputing it.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

CONFIG = "config.json"
METRICS = "metrics.json"
ARRAYS = "oof.npz"
FILES = (ARRAYS, CONFIG, METRICS)  # the order they are written in: metrics.json last
ARM_PREFIX = "arm/"
TARGET_SEP = "__t__"
ATTENTION_PREFIX = "attn__"
COMPUTE_KEY = "compute_s"  # Tune result key (not in the record): wall seconds the trial spent inside evaluate
REPORT_KEY = "report_s"  # Tune result key (not in the record): wall seconds its per-fold reports waited on Tune
_UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def arm_key(arm: str, metric: str) -> str:
    """``arm/<arm>/<metric>``: an arm's metric in ``metrics.json``."""
    return f"{ARM_PREFIX}{arm}/{metric}"


def target_key(arm: str, target: str) -> str:
    """``<arm>__t__<target>``: an arm's out-of-fold probabilities for one target in ``oof.npz``."""
    return f"{arm}{TARGET_SEP}{target}"


def attention_key(arm: str, modality: str) -> str:
    """``attn__<arm>__<modality>``: an arm's out-of-fold attention over a modality's instances in ``oof.npz``."""
    return f"{ATTENTION_PREFIX}{arm}__{modality}"


def config_json(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as ``config.json`` holds it (and as a resumed trial compares it)."""
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def result_arrays(results: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """``oof.npz``'s arrays from per-arm results as :func:`trainables.pipeline.evaluate` returns them
    (``proba``: (n, C), or {target: (n, C_t)} with several targets; optional ``attention``:
    {modality: (n, S)}), probabilities as float32."""
    arrays: dict[str, np.ndarray] = {}
    for arm, r in results.items():
        if isinstance(r["proba"], Mapping):
            arrays.update({target_key(arm, t): np.asarray(p).astype(np.float32) for t, p in r["proba"].items()})
        else:
            arrays[arm] = np.asarray(r["proba"]).astype(np.float32)
    for arm, r in results.items():
        arrays.update({attention_key(arm, m): w for m, w in r.get("attention", {}).items()})
    return arrays


def _write_atomically(path: Path, write) -> None:
    """``write(file)`` to a temporary file beside ``path``, then rename it to ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(directory: str | Path, config: Mapping[str, Any], metrics: Mapping[str, Any],
                 arrays: Mapping[str, np.ndarray]) -> Path:
    """Write a trial record into ``directory`` (created if needed; returned): ``oof.npz`` from
    ``arrays`` (keys from :func:`result_arrays` or the ``*_key`` functions), ``config.json``, then
    ``metrics.json`` (the flat metrics), each atomically."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _write_atomically(d / ARRAYS, lambda f: np.savez_compressed(f, **arrays))
    _write_atomically(d / CONFIG, lambda f: f.write(json.dumps(config, sort_keys=True, default=str).encode()))
    _write_atomically(d / METRICS, lambda f: f.write(json.dumps(dict(metrics), sort_keys=True).encode()))
    return d


@dataclass
class TrialRecord:
    """One trial's record, decoded.

    - ``config``: the trial's configuration; ``metrics``: the flat metrics as reported;
    - ``arms``: {arm: {metric: value}} from ``arm/<arm>/<metric>``, arms sorted;
    - ``oof``: {arm: (n, C) float32} for the arms with one target (absent with several targets);
    - ``attention``: {arm: {modality: (n, S)}}; ``per_target``: {arm: {target: (n, C_t)}} (names sorted);
    - ``arrays``: every array of ``oof.npz`` by its key; ``path``: the checkpoint folder.
    """

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)
    oof: dict[str, np.ndarray] = field(default_factory=dict)
    attention: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    per_target: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def decode(cls, path: Path, config: dict[str, Any], metrics: dict[str, Any],
               arrays: dict[str, np.ndarray]) -> "TrialRecord":
        """Split the flat ``metrics`` and the ``arrays`` by arm with the key scheme above."""
        names = sorted({k.split("/")[1] for k in metrics if k.startswith(ARM_PREFIX)})
        arms = {a: {k.split("/", 2)[2]: v for k, v in metrics.items() if k.startswith(f"{ARM_PREFIX}{a}/")} for a in names}
        keys = sorted(arrays)
        return cls(
            path=path, config=config, metrics=metrics, arms=arms,
            oof={a: arrays[a] for a in names if a in arrays},
            attention={a: {k.split("__", 2)[2]: arrays[k] for k in keys if k.startswith(attention_key(a, ""))} for a in names},
            per_target={a: {k.split(TARGET_SEP, 1)[1]: arrays[k] for k in keys if k.startswith(target_key(a, ""))}
                        for a in names},
            arrays=arrays,
        )


def read_record(checkpoint_dir: str | Path) -> TrialRecord | None:
    """The record in ``checkpoint_dir``, or None when a file is missing, cut short or not a record."""
    d = Path(checkpoint_dir)
    try:
        config = json.loads((d / CONFIG).read_text())
        metrics = json.loads((d / METRICS).read_text())
        with np.load(d / ARRAYS, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except _UNREADABLE:
        return None
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        return None
    return TrialRecord.decode(d, config, metrics, arrays)


def checkpoints(trial_dir: str | Path) -> list[Path]:
    """A trial folder's checkpoint folders, newest first."""
    return sorted((p for p in Path(trial_dir).glob("checkpoint_*") if p.is_dir()), reverse=True)


def latest_record(trial_dir: str | Path) -> TrialRecord | None:
    """The newest complete record in a trial folder (``trial_<id>``), or None."""
    for ck in checkpoints(trial_dir):
        record = read_record(ck)
        if record is not None:
            return record
    return None


def find_completed(config: Mapping[str, Any], run_dir: str | Path, trial_id: str | None = None) -> TrialRecord | None:
    """The record a previous attempt of this very trial saved, if it finished before a crash.

    Tune snapshots its experiment state every few seconds; a trial that finished after the last
    snapshot is restored as unfinished. Its folder (``run_dir/trial_<trial_id>``; the id defaults
    to the running Tune trial's) still holds the completed record, so the trial reports it again
    instead of recomputing it. Only a complete record of the same ``config`` counts."""
    if not run_dir:
        return None
    if trial_id is None:
        from ray import tune

        trial_id = tune.get_context().get_trial_id()
    want = config_json(config)
    for ck in checkpoints(Path(run_dir) / f"trial_{trial_id}"):
        record = read_record(ck)
        if record is not None and record.config == want:
            return record
    return None


def report_record(config: Mapping[str, Any], metrics: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                  extra: Mapping[str, Any] | None = None) -> None:
    """Report ``metrics`` to Tune with the trial's record as the checkpoint (the report reads the
    record, not Tune's optional loggers). ``extra`` (``folds_done``/``n_folds`` of
    :mod:`trainables.progress`, ``{COMPUTE_KEY: seconds}``) joins Tune's result beside the metrics,
    not the record: timings differ from run to run, the record's metrics do not."""
    from ray import tune

    with tempfile.TemporaryDirectory() as d:
        write_record(d, config, metrics, arrays)
        tune.report({**metrics, **(extra or {})}, checkpoint=tune.Checkpoint.from_directory(d))
