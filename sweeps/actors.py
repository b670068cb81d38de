"""Keep a sweep's idle trial actors while its searcher waits, instead of stopping and restarting them.

With ``reuse_actors=True`` Ray Tune (2.x, ``TuneController``) caches the actor of a finished trial for
the next trial, but only as many actors as there are trials already staged, plus ONE when none is
staged. The searcher (``sweeps.search.SweepSearcher``) sometimes has no proposal for a moment: it
waits for the oldest result of its proposal window. At that moment both workers of a 2-worker sweep
may be idle, nothing is staged, and Tune stops the second actor; a few seconds later the window opens,
two trials are staged, and a new actor starts: a new worker process importing torch, scikit-learn and
the trial code again (seconds of CPU, while the other worker's trial competes for it). The quickstart
lost about one worker start per run this way (``benchmarks/bench_search.py``'s compute share).

:class:`keep_idle_actors` makes Tune keep up to ``n`` idle actors (the sweep's concurrency) while no
trial of any other resource shape is staged; whatever Tune expects otherwise (a staged trial asking
for other resources, the end of the search) it decides as before. It never holds more actors than the
sweep runs at once, so it holds no resources a running sweep would not. It changes the behaviour of
Tune's actor cache (a private class) while ``tuner.fit()`` runs, and only when that class has the
shape it was written against: on another Ray version it does nothing and says so in the debug log.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _cache_class():
    """(Tune's controller module, the actor cache class it builds from), or (None, None) when this
    Ray's Tune has another shape. The class is read from the module it is patched in (it is Tune's
    private ``_ObjectCache``: there is no public way to change how many idle actors Tune keeps)."""
    try:
        from ray.tune.execution import tune_controller
    except ImportError:
        return None, None
    base = getattr(tune_controller, "_ObjectCache", None)
    needed = ("cache_object", "flush_cached_objects", "_cached_objects", "_max_num_objects", "_num_cached_objects")
    if not isinstance(base, type) or not all(hasattr(base(), a) for a in needed):
        return None, None
    return tune_controller, base


def keeping_cache(base, keep: int):
    """A subclass of Tune's ``_ObjectCache`` (``base``) that keeps up to ``keep`` idle objects (actors)
    when no object is expected (no trial staged); as ``base`` otherwise."""

    class KeepIdle(base):
        def __init__(self, may_keep_one: bool = True):
            super().__init__(may_keep_one=may_keep_one)
            self.keep = int(keep)

        def _nothing_expected(self) -> bool:
            return not any(v for v in self._max_num_objects.values())

        def cache_object(self, key, obj) -> bool:
            if super().cache_object(key, obj):
                return True
            if self._nothing_expected() and self._num_cached_objects < self.keep:
                self._cached_objects[key].append(obj)
                self._num_cached_objects += 1
                return True
            return False

        def flush_cached_objects(self, force_all: bool = False):
            if force_all or not self._nothing_expected():
                yield from super().flush_cached_objects(force_all=force_all)
                return
            for objs in self._cached_objects.values():  # the oldest first, beyond `keep` in all
                while objs and self._num_cached_objects > self.keep:
                    self._num_cached_objects -= 1
                    yield objs.pop(0)

    return KeepIdle


class keep_idle_actors:
    """While ``tuner.fit()`` runs in this block: Tune keeps up to ``n`` idle trial actors for the trials
    to come (see the module's docstring). ``n <= 1`` changes nothing (Tune keeps one already)."""

    def __init__(self, n: int):
        self.n = int(n)
        self.module = None

    def __enter__(self):
        if self.n <= 1:
            return self
        module, base = _cache_class()
        if module is None:
            log.debug("keep_idle_actors: this Ray's Tune has another actor cache; left as it is")
            return self
        self.module, self.base = module, base
        module._ObjectCache = keeping_cache(base, self.n)  # TuneController builds its cache from this name
        return self

    def __exit__(self, *exc):
        if self.module is not None:
            self.module._ObjectCache = self.base
            self.module = None


class plain_trial_actors:
    """While ``tuner.fit()`` runs in this block: trial actors take the worker processes Ray started with
    the job (warm: they imported the trial code as they started, ``sweeps.runner.preload_trial_code``)
    instead of new ones.

    Tune registers every trainable with ``runtime_env={"env_vars": {...}}`` (``PL_DISABLE_FORK=1`` and a
    few variables it copies from the driver). Ray gives an actor with any runtime environment of its
    own a new worker process, never one it started with the job: such an actor was ready after 7.3 s
    against 1.5 s in a started, preloaded worker (``benchmarks/bench_workers.py``; a placement group,
    as Tune uses, changes nothing). When every one of those variables already has that value in ``worker_env`` (the
    environment a local Ray was started with, which its workers inherit), the class is registered
    without a runtime environment: the same environment, a warm worker. Otherwise (a cluster joined by
    address: ``worker_env`` None) Tune does as it does. Only on the Tune shape it was written for."""

    def __init__(self, worker_env: dict | None):
        self.worker_env = worker_env
        self.cls = None

    def __enter__(self):
        if not self.worker_env:
            return self
        try:
            from ray.tune.execution import class_cache
        except ImportError:
            return self
        cls = getattr(class_cache, "_ActorClassCache", None)
        if cls is None or not hasattr(class_cache, "DEFAULT_ENV_VARS") or not hasattr(class_cache, "ENV_VARS_TO_PROPAGATE"):
            log.debug("plain_trial_actors: this Ray's Tune registers trainables another way; left as it is")
            return self
        import os

        import ray

        original, worker_env = cls.get, self.worker_env

        def get(cache, trainable_cls):
            env_vars = dict(class_cache.DEFAULT_ENV_VARS)
            env_vars.update({k: os.environ[k] for k in class_cache.ENV_VARS_TO_PROPAGATE if k in os.environ})
            if any(worker_env.get(k) != v for k, v in env_vars.items()) or not hasattr(cache, "_cache"):
                return original(cache, trainable_cls)
            if trainable_cls not in cache._cache:
                cache._cache[trainable_cls] = ray.remote(trainable_cls)
            return cache._cache[trainable_cls]

        self.cls, self.original = cls, original
        cls.get = get
        return self

    def __exit__(self, *exc):
        if self.cls is not None:
            self.cls.get = self.original
            self.cls = None


BUFFER_ENV = ("TUNE_RESULT_BUFFER_LENGTH", "TUNE_RESULT_BUFFER_MIN_TIME_S")  # Tune's switches, read as fit() starts
BUFFER_SECONDS = 2.0  # how long a trial's intermediate results may wait in its actor before they reach the driver


class buffered_results:
    """While ``tuner.fit()`` runs in this block: a trial's intermediate results (one per fold) travel to
    the driver in batches, and the trial does not wait for the driver between them.

    A Tune function trainable stops at every ``tune.report`` until the driver has taken the result
    and asked for the next one (``synchronous_result_reporting``: a scheduler may stop the trial
    there). With one report per fold, a trial of the quickstart (5 folds, about 3 s) waited four
    round trips, 0.1-0.2 s in all, on a driver busy with the other trials' results. Tune's own
    result buffering (``TUNE_RESULT_BUFFER_LENGTH``, ``TUNE_RESULT_BUFFER_MIN_TIME_S``) runs the
    actor's ``train()`` repeatedly inside one remote call (``Trainable.train_buffered``) for up to
    ``seconds``, then hands the driver every result at once: no result is dropped or merged (each
    one still reaches the searcher, the trackers and Tune's logs), a fold longer than ``seconds``
    is handed over as it ends, and a trial's final result ends the batch.

    Only without a scheduler (``enabled``): a scheduler decides on each result as it comes (ASHA's
    rungs), and a buffered trial would go on computing folds it may be told to skip. A variable the
    user set is left as it is."""

    def __init__(self, enabled: bool, seconds: float = BUFFER_SECONDS):
        self.enabled, self.seconds = bool(enabled), float(seconds)
        self.active = False  # whether this block set the variables (and so removes them)

    def __enter__(self):
        import os

        self.active = self.enabled and not any(k in os.environ for k in BUFFER_ENV)
        if self.active:
            os.environ["TUNE_RESULT_BUFFER_LENGTH"] = "1000"  # Trainable.train_buffered's own default bound
            os.environ["TUNE_RESULT_BUFFER_MIN_TIME_S"] = repr(self.seconds)
        return self

    def __exit__(self, *exc):
        import os

        if self.active:
            for k in BUFFER_ENV:
                os.environ.pop(k, None)
            self.active = False
