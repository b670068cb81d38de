"""sweeps.actors.keep_idle_actors: idle trial actors wait for the searcher instead of being stopped."""

import os
import time

import pytest
from ray.tune.search import Searcher

from sweeps.actors import BUFFER_ENV, _cache_class, buffered_results, keep_idle_actors, keeping_cache


def _base():
    module, base = _cache_class()
    assert module is not None, "this Ray's Tune actor cache changed shape: sweeps.actors does nothing on it"
    return base


def test_tunes_own_cache_keeps_one_idle_object_ours_keeps_n_while_nothing_is_expected():
    base = _base()
    theirs, ours = base(may_keep_one=True), keeping_cache(base, 2)(may_keep_one=True)
    for cache in (theirs, ours):
        assert cache.cache_object("cpu", "actor-a")
    assert not theirs.cache_object("cpu", "actor-b")  # Tune: the second idle actor is stopped
    assert ours.cache_object("cpu", "actor-b")
    assert not ours.cache_object("cpu", "actor-c")  # never more than n
    assert list(ours.flush_cached_objects()) == [] and ours.num_cached_objects == 2
    # a trial staged for other resources: Tune's own rule decides (the idle actors' resources may be needed)
    ours.increase_max("gpu")
    assert sorted(ours.flush_cached_objects()) == ["actor-a", "actor-b"]
    ours.decrease_max("gpu")
    assert ours.cache_object("cpu", "actor-d") and ours.cache_object("cpu", "actor-e")
    assert sorted(ours.flush_cached_objects(force_all=True)) == ["actor-d", "actor-e"]  # the end of the search


def test_the_patch_lasts_only_inside_the_block():
    from ray.tune.execution import tune_controller

    before = tune_controller._ObjectCache
    with keep_idle_actors(2):
        assert tune_controller._ObjectCache is not before and issubclass(tune_controller._ObjectCache, before)
    assert tune_controller._ObjectCache is before
    with keep_idle_actors(1):  # one is what Tune keeps already
        assert tune_controller._ObjectCache is before


def _trial(config):
    """Trial 1 (short) leaves a mark; trial 0 (long) ends a moment after it, so both workers are idle
    while the searcher waits for trial 0."""
    from pathlib import Path

    from ray import tune

    folder = Path(config["dir"])

    def wait_for(name):
        deadline = time.time() + 120
        while not (folder / name).exists() and time.time() < deadline:
            time.sleep(0.05)

    (folder / f"started-{config['k']}").touch()
    if config["k"] == 0:  # ends a moment after trial 1 (running beside it, on the other actor)
        wait_for("short-done")
        time.sleep(1.0)
    elif config["k"] == 1:
        wait_for("started-0")
        (folder / "short-done").touch()
    tune.report({"v": float(config["k"]), "pid": os.getpid()})


class Waiting(Searcher):
    """Like the proposal window: no proposal for trial 2 until trial 0 has finished."""

    def __init__(self, folder):
        super().__init__(metric="v", mode="max")
        self.folder, self.given, self.done, self.k_of = str(folder), 0, set(), {}

    def suggest(self, trial_id):
        if self.given >= 4:
            return Searcher.FINISHED
        if self.given >= 2 and 0 not in self.done:
            return None
        self.k_of[trial_id], self.given = self.given, self.given + 1
        return {"k": self.k_of[trial_id], "dir": self.folder}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.done.add(self.k_of[trial_id])


def _folds(config):
    from ray import tune

    for fold in range(1, 5):  # four quick "folds", then the final result: well inside the buffer's 2 s
        tune.report({"folds_done": fold, "n_folds": 5})
    tune.report({"folds_done": 5, "n_folds": 5})


@pytest.mark.parametrize("buffered", [False, True], ids=["tune alone", "buffered"])
def test_buffered_results_reach_the_driver_in_batches_and_none_is_lost(ray_session, tmp_path, buffered):
    """Every per-fold result still reaches the driver's callbacks, in order; with buffering several
    arrive in one step of Tune's loop (one remote call: the trial did not wait for the driver between
    them); without it each is a step of its own (the trial waited on a round trip per result)."""
    import sys

    import ray.cloudpickle
    from ray import tune
    from ray.tune import Callback

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    seen = []

    class Steps(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen.append((iteration, result["folds_done"]))

    tuner = tune.Tuner(tune.with_resources(_folds, {"cpu": 1}), tune_config=tune.TuneConfig(num_samples=1),
                       run_config=tune.RunConfig(name=f"buffered-{buffered}", storage_path=str(tmp_path), verbose=0,
                                                 callbacks=[Steps()]))
    with buffered_results(buffered):
        grid = tuner.fit()
    assert not grid.errors and [f for _, f in seen] == [1, 2, 3, 4, 5], seen
    steps = len({i for i, _ in seen})
    assert (steps < 5) if buffered else (steps == 5), seen
    assert not any(k in os.environ for k in BUFFER_ENV), "the switches last only inside the block"


def test_buffering_stays_off_with_a_scheduler_and_leaves_a_users_setting(monkeypatch):
    with buffered_results(False):
        assert not any(k in os.environ for k in BUFFER_ENV)
    monkeypatch.setenv("TUNE_RESULT_BUFFER_LENGTH", "3")
    with buffered_results(True):
        assert os.environ["TUNE_RESULT_BUFFER_LENGTH"] == "3" and "TUNE_RESULT_BUFFER_MIN_TIME_S" not in os.environ
    assert os.environ["TUNE_RESULT_BUFFER_LENGTH"] == "3"


@pytest.mark.parametrize("keep", [False, True], ids=["tune alone", "kept"])
def test_a_real_tune_run_with_a_waiting_searcher_starts_no_new_actor_when_kept(ray_session, tmp_path, keep):
    import sys

    import ray.cloudpickle
    from ray import tune

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import a test module

    tuner = tune.Tuner(tune.with_resources(_trial, {"cpu": 1}),
                       tune_config=tune.TuneConfig(search_alg=Waiting(tmp_path), num_samples=4, max_concurrent_trials=2,
                                                   reuse_actors=True),
                       run_config=tune.RunConfig(name=f"keep-{keep}", storage_path=str(tmp_path), verbose=0))
    with keep_idle_actors(2 if keep else 0):
        grid = tuner.fit()
    assert len(grid) == 4 and not grid.errors
    pid = {r.config["k"]: r.metrics["pid"] for r in grid}
    after_wait = {pid[2], pid[3]}
    if keep:  # the actor of the long trial waited, idle, and ran a trial after the wait
        assert pid[0] in after_wait and len(set(pid.values())) == 2, pid
    else:  # Tune stopped it during the wait (it keeps one idle actor: the short trial's)
        assert pid[0] not in after_wait, pid


def test_preload_only_when_every_started_worker_will_run_trials(monkeypatch):
    from sweeps import runner

    monkeypatch.setattr(runner, "local_cpus", lambda: 8)
    assert runner.preload_trial_code(1, None) and runner.preload_trial_code(1, 8) and runner.preload_trial_code(0.5, 16)
    assert not runner.preload_trial_code(1, 2)  # 6 of Ray's 8 workers would hold the trial code for nothing
    assert not runner.preload_trial_code(4, None)


PRELOAD_PROBE = """
import os, sys, tempfile, time
from ray import tune
from sweeps.actors import plain_trial_actors
from sweeps.runner import local_worker_env, start_ray

start_ray(None, "127.0.0.1", 2, preload=True)  # with 1 CPU, Tune's own start-up may take the one started worker
time.sleep(8)  # the worker Ray started imports the trial code meanwhile (the driver loads embeddings then)


def born() -> float:  # this process's start time (Linux: /proc)
    ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
    btime = int(next(ln for ln in open("/proc/stat") if ln.startswith("btime")).split()[1])
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def probe(config):
    warm = "trainables.trainable" in sys.modules  # before this trial imported anything
    from trainables.threads import limit_threads, pool_sizes

    before = pool_sizes()  # loaded as the worker started, before Ray set OMP_NUM_THREADS for this trial
    limit_threads()  # what sweep_trial does first
    tune.report({"warm": warm, "born": born(), "wide": max(v for k, v in before.items() if k != "torch"),
                 "narrowed": max(pool_sizes().values()), "omp": os.environ.get("OMP_NUM_THREADS")})


t0 = time.time()
with plain_trial_actors(local_worker_env()):
    grid = tune.Tuner(tune.with_resources(probe, {"cpu": 1}), tune_config=tune.TuneConfig(num_samples=1),
                      run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(), verbose=0)).fit()
m = grid[0].metrics
print("PROBE", m["warm"], m["born"] < t0 - 4, flush=True)  # born as Ray started (8 s before), not for this trial
print("POOLS", m["omp"], m["wide"], m["narrowed"], flush=True)
"""


def test_a_trial_actor_runs_in_a_worker_ray_started_before_the_sweep_with_the_trial_code_imported_and_narrows_its_pools():
    """Tune gives every trial actor a runtime environment, and Ray a new worker to any actor with one:
    without ``plain_trial_actors`` the probe runs in a worker born just before it (checked by hand: the
    probe prints ``PROBE True False``), not in the one Ray started with the job."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_preload_python_modules", None)
    out = subprocess.run([sys.executable, "-c", PRELOAD_PROBE], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("PROBE")]
    assert lines == ["PROBE True True"], out.stdout[-2000:] + out.stderr[-2000:]
    assert "RAY_preload_python_modules" not in os.environ
    # such a worker loaded BLAS and OpenMP before Ray told it its CPUs (OMP_NUM_THREADS=1): their pools
    # have a thread per core until limit_threads (trainables.threads) narrows them
    (pools,) = [ln.split()[1:] for ln in out.stdout.splitlines() if ln.startswith("POOLS")]
    omp, wide, narrowed = pools[0], int(pools[1]), int(pools[2])
    assert omp == "1" and narrowed == 1, pools
    if (os.cpu_count() or 1) > 1:
        assert wide > 1, f"premise of trainables.threads: a pool wider than the trial's 1 CPU, got {pools}"


RESERVED_PROBE = """
import os, time
import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from sweeps.runner import SOFT_LIMIT_ENV, start_ray

start_ray(None, "127.0.0.1", 2, preload=True)
assert SOFT_LIMIT_ENV not in os.environ, "set only while Ray starts"
time.sleep(8)  # the two workers Ray started import the trial code, then wait idle (the driver prepares)
t0 = time.time()
groups = [placement_group([{"CPU": 1}]) for _ in range(2)]  # what Tune does first for two trials
ray.get([g.ready() for g in groups])
time.sleep(1.5)  # Tune's own moment between reserving and creating the actor, made longer than a tick


class Trial:
    def born(self) -> float:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        btime = int(next(ln for ln in open("/proc/stat") if ln.startswith("btime")).split()[1])
        return btime + ticks / os.sysconf("SC_CLK_TCK")


actors = [ray.remote(Trial).options(num_cpus=1, scheduling_strategy=PlacementGroupSchedulingStrategy(g)).remote()
          for g in groups]
print("STARTED", sum(b < t0 - 4 for b in ray.get([a.born.remote() for a in actors])), flush=True)
"""


def test_the_started_workers_survive_while_the_trials_cpus_are_reserved():
    """With Ray's default idle-worker limit, the raylet kills idle workers once placement groups
    reserve every CPU: the actors created in them then get new processes (``STARTED 0`` before the
    fix, in each of 4 runs). ``start_ray`` with the trial code preloaded keeps one idle worker per CPU."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "RAY_AUTH_MODE": "disabled"}
    for k in ("RAY_preload_python_modules", "RAY_num_workers_soft_limit"):
        env.pop(k, None)
    out = subprocess.run([sys.executable, "-c", RESERVED_PROBE], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [ln for ln in out.stdout.splitlines() if ln.startswith("STARTED")] == ["STARTED 2"], \
        out.stdout[-2000:] + out.stderr[-2000:]
