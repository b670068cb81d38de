"""Progress inside a trial: the intermediate results a trial reports to Tune before its final one,
how every consumer of Tune's results tells them apart, and the opt-in scheduler that acts on them.

A frozen trial (:func:`trainables.trainable.sweep_trial`) reports after each fold but the last
(:func:`fold_result`): the running out-of-fold metrics over the folds done so far, flattened as the
final result is (:func:`trainables.pipeline.flatten`: the sweep's metric at the top level, the best
arm so far, ``arm/<arm>/<metric>``), plus ``folds_done`` (1 .. n_folds - 1) and ``n_folds``. No
checkpoint goes with them. The final report is the trial's record (:func:`trainables.record.report_record`)
with ``folds_done == n_folds``; a record reported again (a resumed or repeated trial) carries the
same pair. A fine-tuning trial's per-epoch reports (``epochs_done``, :mod:`trainables.finetune`)
are intermediate too; its final report has no ``epochs_done``.

:func:`is_intermediate` is the one test every consumer uses: the searcher (which tells Optuna the
final value only, and the intermediates as ``trial.report(value, step)``), the report (a trial
whose last result is an intermediate marked ``done`` was stopped early by the scheduler) and the
tracking callbacks (every result is a step; MLflow and TensorBoard show one point per fold).

:func:`fold_scheduler` is ``--early-stop`` for frozen trials: Tune's ASHA on ``folds_done``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FOLDS_ATTR = "folds_done"  # the per-fold reports' time axis (ASHA's time_attr with --early-stop)
N_FOLDS = "n_folds"
EPOCH_ATTR = "epochs_done"  # trainables.finetune's per-epoch reports (kept equal to finetune.EPOCH_ATTR)


def fold_result(flat: Mapping[str, Any], folds_done: int, n_folds: int) -> dict[str, Any]:
    """A Tune result: ``flat`` (``flatten`` of the results so far, or of the whole trial) with the
    progress pair. ``folds_done == n_folds`` marks the final result."""
    return {**flat, FOLDS_ATTR: int(folds_done), N_FOLDS: int(n_folds)}


def is_intermediate(result: Mapping[str, Any] | None) -> bool:
    """Whether a Tune result is a report from inside a trial (a fold or an epoch), not its final
    result: it carries ``epochs_done``, or ``folds_done`` below ``n_folds``. A result without the
    keys (a record reported before intermediates existed, an error) counts as final."""
    if not result:
        return False
    if result.get(EPOCH_ATTR) is not None:
        return True
    done, n = result.get(FOLDS_ATTR), result.get(N_FOLDS)
    return done is not None and n is not None and int(done) < int(n)


def progress_step(result: Mapping[str, Any]) -> int | None:
    """The step of an intermediate result (folds or epochs done), None for a final one."""
    if not is_intermediate(result):
        return None
    return int(result[EPOCH_ATTR] if result.get(EPOCH_ATTR) is not None else result[FOLDS_ATTR])


def fold_scheduler(metric: str, mode: str, n_folds: int, grace_period: int = 1):
    """``--early-stop`` for frozen trials: asynchronous successive halving (Tune's ASHAScheduler) on
    the per-fold reports, rungs at ``grace_period``, 2 x that, ... folds (``reduction_factor=2``: at
    a rung, a trial below the median of the trials that reached it before stops). The final report
    reaches the last rung only (``max_t = n_folds``), and a trial that passes the rungs runs to its
    end (``stop_last_trials=False``), so its record always lands. Which trials stop depends on the
    order trials reach a rung: at a concurrency above 1 a run with early stopping is not reproducible
    trial for trial."""
    from ray.tune.schedulers import ASHAScheduler

    if n_folds < 2:
        raise ValueError(f"early stopping needs at least 2 folds (a rung before the end), got {n_folds}")
    grace = max(1, min(int(grace_period), n_folds - 1))
    return ASHAScheduler(time_attr=FOLDS_ATTR, metric=metric, mode=mode, grace_period=grace, reduction_factor=2,
                         max_t=n_folds, stop_last_trials=False)
