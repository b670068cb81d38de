"""Trial actors that say which trial they run, in Ray's dashboard and state API.

Tune wraps a function trainable into a class named ``ImplicitFunc`` whose ``repr`` is the
function's name, so every trial actor of a sweep looks the same. :func:`named_trainable` makes that
class under the name ``SweepTrial`` (Ray shows it as the actor's ``class_name``) with a ``repr``
that names the trial and its configuration, e.g. ``SweepTrial(9c1f2_00003: head=lightgbm
sampling=smote pca_dim=16 ...)``: Ray records an actor's ``repr`` once, after it is created, as its
``repr_name`` (the dashboard's actor list and ``/api/v0/actors``). With ``reuse_actors=True`` an
actor runs several trials in turn: its ``repr_name`` stays the first trial's, and the actor prints
one line per trial it starts (``SweepTrial(...) starts``) to its own log, which the dashboard's
actor page shows. Tune's trainable name stays the function's (``sweep_trial``), so trial names,
ids and folders are those of the plain function trainable.
"""

from __future__ import annotations

from typing import Callable

CLASS_NAME = "SweepTrial"
SUMMARY_CHARS = 160


def _args(d: dict) -> str:
    return ",".join(f"{k}({_args(v)})" if isinstance(v, dict) else f"{k}={_short(v)}" for k, v in d.items())


def _short(value) -> str:
    """A configuration value in few characters: a nested choice as ``name(param=value,...)``."""
    if isinstance(value, dict):
        name = value.get("name")
        if isinstance(name, str):  # {"name": "mlp", "hidden": 64} -> mlp(hidden=64)
            rest = {k: v for k, v in value.items() if k != "name"}
            return name + (f"({_args(rest)})" if rest else "")
        return _args(value)  # {"attention": {"hidden_dim": 32}} -> attention(hidden_dim=32)
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


def config_summary(config: dict, limit: int = SUMMARY_CHARS) -> str:
    """``key=value`` pairs of a trial's configuration (Tune's own ``__`` keys left out), cut at
    ``limit`` characters with an ellipsis."""
    text = " ".join(f"{k}={_short(v)}" for k, v in config.items() if not str(k).startswith("__"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def trial_label(trial_id: str | None, config: dict) -> str:
    """``SweepTrial(<trial id>: <configuration summary>)``."""
    return f"{CLASS_NAME}({trial_id or '?'}: {config_summary(config)})"


def named_trainable(fn: Callable, resources: dict, **params):
    """``fn`` (a function trainable taking ``config`` and ``params``) as a Tune Trainable class named
    ``SweepTrial``: ``tune.with_parameters`` (``params`` through Ray's object store) and
    ``tune.with_resources`` (``resources``: ``{"cpu": ..., "gpu": ...}`` per trial) as before, wrapped
    by Tune's own ``wrap_function``; only the class name, ``repr`` and a log line per trial are added."""
    from ray import tune
    from ray.tune.trainable.function_trainable import wrap_function

    base = wrap_function(tune.with_resources(tune.with_parameters(fn, **params), resources))

    def __repr__(self):
        return trial_label(self.trial_id, self.config)

    def setup(self, config):
        base.setup(self, config)
        print(f"{self!r} starts", flush=True)  # the actor's log: one line per trial it runs

    def reset_config(self, new_config):
        ok = base.reset_config(self, new_config)
        if ok:
            print(f"{self!r} starts", flush=True)
        return ok

    return type(CLASS_NAME, (base,), {"__repr__": __repr__, "setup": setup, "reset_config": reset_config,
                                      "__qualname__": CLASS_NAME, "__module__": __name__,
                                      "__doc__": f"Tune's function trainable for {getattr(fn, '__name__', fn)!r}, "
                                                 "named after the trial it runs."})
