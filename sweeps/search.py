"""The searcher: which configurations a sweep evaluates, in which order, reproducibly and once each.

``SweepSearcher`` is a Ray Tune ``Searcher`` around an Optuna study stored on disk. It replaces Tune's
``OptunaSearch`` (+ ``Repeater``) because those make the sweep depend on timing and repeat work:

**Deterministic at any concurrency.** Proposal ``i`` (a *slot*) is asked only when the study holds
exactly the results of slots ``0 .. i - window`` (told in slot order) and nothing more; slots asked
but not told are RUNNING trials (TPE's constant liar treats them as bad values). So what the sampler
sees at each ask is a function of the seed and the earlier slots' results, not of which trial
finished first, and trial ``i`` always gets proposal ``i``. ``window`` (the space's
``proposal_window``, default 4) is fixed by the space, never by ``--concurrency``: were it the
concurrency, a run at 1 and one at 2 would differ. It is a sliding window rather than a batch
barrier: slot ``i`` may start as soon as slot ``i - window`` has finished, so at most ``window``
slots are in flight (more concurrency than that waits) and a worker idles only while the oldest
in-flight slot is still running. The first ``n_startup_trials`` (8) proposals of TPE are random and
do not read results: they are asked without waiting. ``benchmarks/bench_search.py`` measures the
wall-time cost against free-running OptunaSearch.

**No repeated work.** A proposal whose configuration (JSON of the resolved config, sorted keys,
numpy scalars as Python values, ``__trial_index__`` aside) equals an earlier slot's is not run: the
earlier slot's value is told to the study for it (at once when that slot is told, else together
with it), and it is listed in ``search.json`` as a repeat; the sampler is asked again. After
``MAX_REASKS`` repeats in a row a configuration not yet evaluated is drawn from the space with a
seeded generator and enqueued in the study. TPE runs with ``constant_liar=True``. A finite space
(every domain a ``tune.choice``) whose size ``num_samples / repeats`` reaches is searched
exhaustively (Optuna's BruteForceSampler, seeded): every configuration once, and no more proposals
than the space has. ``repeats=N`` (a space setting) gives each slot N trials with
``__trial_index__`` 0..N-1 (their seed offset); the slot's value is their mean.

**Progress and early stopping.** A trial's intermediate results (per fold, or per epoch when
fine-tuning: ``trainables.progress.is_intermediate``) never count as its answer: they reach the
Optuna trial of its slot as ``trial.report(value, step)`` (first repeat only), so optuna-dashboard
shows trials moving; the sampler does not read them while the trial runs (TPE's constant liar
treats every RUNNING trial alike), so proposals stay a function of the slot order. A trial whose
last result is an intermediate (a scheduler stopped it: ``--early-stop``, or ASHA when fine-tuning)
leaves its slot ``stopped``: told to the study as PRUNED (with its intermediate values), never as a
final value of that configuration, and a repeat proposal of it is answered PRUNED too.

**On disk.** ``<run>/optuna.journal`` (Optuna JournalStorage, file backend) holds the study named
after the run, for optuna-dashboard; ``<run>/search.json`` (atomic writes) the slots and proposals
(schema in ``SweepSearcher._state``).

**Crash safety.** Tune snapshots its experiment state every few seconds; a kill loses the trials it
created after its last snapshot, and trials that finished after it look unfinished. On restore the
searcher is rebuilt from ``search.json``, the trials' own records (``read_records``), the study
journal and the list of trial ids Tune's snapshot knew (written by ``save_to_dir`` into the same
snapshot). A slot with a finished record is done and never proposed or run again; a slot Tune lost
and that had not finished is handed out again (its stale trial folder moved to ``superseded/``);
trials Tune restored as unfinished complete from their record without recomputing (the trainable's
own check). New proposals after a resume come from a sampler seeded from (seed, slots so far): the
run stays distinct and complete, but is not guaranteed to propose what an uninterrupted run would.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

log = logging.getLogger("sweeps")

SEARCH_FILE = "search.json"
JOURNAL_FILE = "optuna.journal"
SNAPSHOT_FILE = "search-snapshot.json"  # written into Tune's experiment snapshot by save_to_dir
SUPERSEDED = "superseded"  # stale folders of lost unfinished trials go here (the report reads trial_* only)
TRIAL_INDEX = "__trial_index__"
DEFAULT_WINDOW = 4
N_STARTUP_TRIALS = 8
MAX_REASKS = 50
ENUMERATE_LIMIT = 100_000  # a finite space this small is enumerated to find an unseen configuration


# -- configurations -------------------------------------------------------------------------------
def _plain(v: Any) -> Any:
    """JSON-ready: numpy scalars as Python values, tuples as lists."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and callable(v.item) and type(v).__module__ == "numpy":
        return v.item()
    return v


def config_key(config: dict) -> str:
    """A configuration's identity: its JSON with sorted keys, ``__trial_index__`` (the repeat) aside."""
    return json.dumps(_plain({k: v for k, v in config.items() if k != TRIAL_INDEX}), sort_keys=True, default=str)


def _domains(space: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a/b": Domain}`` of every search domain in a nested space."""
    from ray.tune.search.sample import Domain

    if isinstance(space, dict):
        out = {}
        for k, v in space.items():
            out.update(_domains(v, f"{prefix}{k}/"))
        return out
    return {prefix[:-1]: space} if isinstance(space, Domain) else {}


def _resolve(space: Any, params: dict[str, Any], prefix: str = "") -> Any:
    """The space with every domain replaced by its value in ``params`` (flat ``a/b`` keys)."""
    from ray.tune.search.sample import Domain

    if isinstance(space, dict):
        return {k: _resolve(v, params, f"{prefix}{k}/") for k, v in space.items()}
    if isinstance(space, Domain):
        return _plain(params[prefix[:-1]])
    return copy.deepcopy(space)


def uses_grid(space: Any) -> bool:
    """Whether a space has a ``tune.grid_search``: a full factorial, which Tune's own grid runs (every
    combination, in a fixed order, none repeated) instead of this searcher. A grid mixed with search
    domains is refused (Tune would sample those unseeded)."""
    def has(v):
        return isinstance(v, dict) and ("grid_search" in v or any(has(x) for x in v.values()))

    if not has(space):
        return False
    if _domains(space):
        from .spec import SpecError

        raise SpecError(f"a space with tune.grid_search cannot also have search domains ({', '.join(_domains(space))}): "
                        "make them grids too, or use tune.choice throughout (a covered finite space is searched exhaustively)")
    return True


def space_size(space: dict) -> int | None:
    """How many configurations a space has: the product of its choices' sizes, None if a domain is
    not a ``tune.choice`` (continuous or integer ranges: infinite for our purpose)."""
    from ray.tune.search.sample import Categorical

    n = 1
    for d in _domains(space).values():
        if not isinstance(d, Categorical):
            return None
        n *= len(d.categories)
    return n


def plan(space: dict, num_samples: int, repeats: int = 1) -> dict:
    """What a sweep will run: ``{"sampler", "proposals", "trials", "space_size", "note"}``.

    ``proposals`` = distinct configurations = ``num_samples // repeats``, capped at the size of a
    finite space; ``trials`` = proposals x repeats. Exhaustive when a finite space is covered."""
    size = space_size(space)
    wanted = max(1, num_samples // max(1, repeats))
    note = ""
    if size is not None and wanted >= size:
        sampler = "exhaustive"
        note = f"the space has {size} configuration(s): every one is evaluated exactly once (exhaustive sampler)"
        if wanted > size:
            note += f"; {num_samples} trials requested, running {size * repeats}"
        wanted = size
    else:
        sampler = "tpe"
    return {"sampler": sampler, "proposals": wanted, "trials": wanted * repeats, "space_size": size, "note": note}


# -- what a run folder already holds ---------------------------------------------------------------
def read_records(run_dir: Path) -> dict[str, dict]:
    """``{trial_id: {"config", "metrics"}}`` of every trial folder in ``run_dir`` whose record is
    complete (``trainables.record.latest_record``: its newest checkpoint with every file whole). The
    one place the searcher reads trial records; the format is trainables/record.py's."""
    from trainables.record import latest_record

    out = {}
    for d in sorted(Path(run_dir).glob("trial_*")):
        rec = latest_record(d)
        if rec is not None:
            out[d.name.split("_", 1)[1]] = {"config": rec.config, "metrics": rec.metrics}
    return out


def _trial_outcome(trial_dir: Path, metric: str) -> tuple[str | None, float | None]:
    """``(state, value)`` from Tune's files for a trial without a record: ``"failed"`` (error.txt),
    ``"stopped"`` (the last row of result.json is an intermediate result marked ``done``: stopped
    early by a scheduler), ``"done"`` (a final result marked ``done``) or None (not ended)."""
    from trainables.progress import is_intermediate

    if (trial_dir / "error.txt").exists():
        return "failed", None
    try:
        lines = [ln for ln in (trial_dir / "result.json").read_text().splitlines() if ln.strip()]
        last = json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return None, None
    if last.get("done"):
        if is_intermediate(last):
            return "stopped", None
        v = _value(last, metric)
        return ("done" if v is not None else "failed"), v
    return None, None


def _value(result: dict | None, metric: str) -> float | None:
    v = (result or {}).get(metric)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _atomic_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the searcher ----------------------------------------------------------------------------------
class _Exhaustive:
    """Factory for a BruteForceSampler that does not call ``study.stop()`` when the space is done
    (that only works inside ``study.optimize``; with ask/tell it raises). We never ask past the size."""

    @staticmethod
    def make(seed: int):
        import warnings

        import optuna

        class ExhaustiveSampler(optuna.samplers.BruteForceSampler):
            def after_trial(self, study, trial, state, values):  # noqa: D401 - no study.stop()
                return None

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return ExhaustiveSampler(seed=seed)


class SweepSearcher(Searcher):
    """See the module docstring. ``suggest`` returns a full resolved config (constants included, plus
    ``__trial_index__`` when ``repeats > 1``), None while waiting for the window, and FINISHED once
    every planned slot has been handed out."""

    def __init__(self, space: dict, *, metric: str, mode: str, seed: int, run_dir: str | Path, study_name: str,
                 num_samples: int, repeats: int = 1, window: int = DEFAULT_WINDOW,
                 n_startup_trials: int = N_STARTUP_TRIALS):
        super().__init__(metric=metric, mode=mode)
        if window < 1:
            raise ValueError(f"proposal window must be >= 1, got {window}")
        self._space = space
        self._seed = int(seed)
        self._run_dir = str(run_dir)
        self._study_name = study_name
        self._repeats = max(1, int(repeats))
        self._window = int(window)
        self._n_startup = int(n_startup_trials)
        self._plan = plan(space, num_samples, self._repeats)
        self._num_samples = int(num_samples)
        self._dists = None
        self._study = None
        self._slots: list[dict] = []  # see _state
        self._proposals: list[dict] = []
        self._queue: list[tuple[int, int]] = []  # (slot, trial index) to hand to Tune next
        self._trial_slot: dict[str, tuple[int, int]] = {}
        self._by_key: dict[str, int] = {}
        self._shadows: dict[int, list[int]] = {}  # slot -> optuna numbers of its pending repeats
        self._told = 0  # slots 0.._told-1 are told
        self._resumes: list[dict] = []
        self._asked: dict[int, Any] = {}  # optuna number -> the optuna.trial.Trial ask() gave (intermediate reports)

    # -- pickling (Tuner pickles the searcher; the study is reopened from its journal) --------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_study"] = None
        state["_asked"] = {}  # live handles on the study; a restored searcher reports no intermediates of old trials
        return state

    def __setstate__(self, state):
        state.setdefault("_asked", {})  # a searcher pickled before intermediates existed
        self.__dict__.update(state)

    @property
    def exhaustive(self) -> bool:
        return self._plan["sampler"] == "exhaustive"

    @property
    def total_trials(self) -> int:
        return self._plan["trials"]

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        # the space is ours; Tune's param_space (if any) is the same space or empty
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    # -- the study --------------------------------------------------------------------------------
    def _sampler(self, seed: int):
        import optuna

        if self.exhaustive:
            return _Exhaustive.make(seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self._n_startup, constant_liar=True)

    def _open(self, seed: int | None = None):
        if self._study is not None:
            return self._study
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._dists = OptunaSearch.convert_search_space(copy.deepcopy(self._space)) if _domains(self._space) else {}
        storage = JournalStorage(JournalFileBackend(str(Path(self._run_dir) / JOURNAL_FILE)))
        self._study = optuna.create_study(
            study_name=self._study_name, storage=storage, load_if_exists=True,
            sampler=self._sampler(self._seed if seed is None else seed),
            direction="maximize" if self._mode == "max" else "minimize")
        return self._study

    # -- Tune's side ------------------------------------------------------------------------------
    def suggest(self, trial_id: str):
        study = self._open()
        if not self._queue:
            if len(self._slots) >= self._plan["proposals"]:
                return Searcher.FINISHED
            i = len(self._slots)
            if not self._tell_for_ask(i):
                return None  # waiting for slot i - window; Tune asks again
            self._ask_slot(study)
        slot, idx = self._queue.pop(0)
        s = self._slots[slot]
        s["trials"][idx] = trial_id
        s["state"][idx] = "running"
        self._trial_slot[trial_id] = (slot, idx)
        self._save()
        config = copy.deepcopy(s["config"])
        if self._repeats > 1:
            config[TRIAL_INDEX] = idx
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """An intermediate result goes to the slot's Optuna trial as ``report(value, step)`` (the first
        repeat's only; a final result is left to ``on_trial_complete``). Never an answer."""
        from trainables.progress import progress_step

        step = progress_step(result)
        where = self._trial_slot.get(trial_id)
        if step is None or where is None or where[1] != 0:
            return
        s = self._slots[where[0]]
        trial, v = self._asked.get(s["optuna_trial"]), _value(result, self._metric)
        if trial is None or v is None or s["told"]:
            return
        try:
            trial.report(v, step)
        except (RuntimeError, ValueError) as exc:  # finished meanwhile (a resume), or a step it refuses: progress only
            log.debug("search: intermediate value of trial %s not stored: %s", trial_id, exc)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """The final result is the slot's answer; a last result that is an intermediate (a scheduler
        stopped the trial) leaves the slot ``stopped`` (told PRUNED), an error ``failed``."""
        from trainables.progress import is_intermediate

        where = self._trial_slot.get(trial_id)
        if where is None:
            return
        slot, idx = where
        s = self._slots[slot]
        if s["told"]:
            return
        stopped = not error and is_intermediate(result)
        if stopped:  # Tune does not pass the result a scheduler stopped on to on_trial_result: its last progress
            self.on_trial_result(trial_id, result)
        s["values"][idx] = None if error or stopped else _value(result, self._metric)
        s["state"][idx] = "failed" if error else "stopped" if stopped else "done"
        self._open()
        if len(self._slots) >= self._plan["proposals"]:  # nothing left to ask: tell as results come
            self._tell_upto(len(self._slots))
        self._save()

    # -- asking and telling -----------------------------------------------------------------------
    def _tell_for_ask(self, i: int) -> bool:
        """Bring the study to the state slot ``i`` is asked in; False if a needed result is missing."""
        if self.exhaustive or i < self._n_startup:
            return True  # proposals read no results: BruteForce reads which params exist, TPE startup is random
        need = i - self._window + 1
        self._tell_upto(need)
        return self._told >= need

    def _slot_done(self, s: dict) -> bool:
        return all(st in ("done", "failed", "stopped") for st in s["state"])

    def _slot_value(self, s: dict) -> float | str | None:
        """The mean of the slot's final values; ``"pruned"`` when a repeat was stopped early (a partial
        answer is no answer); None when none finished."""
        if "stopped" in s["state"]:
            return "pruned"
        vals = [v for v in s["values"] if v is not None]
        return sum(vals) / len(vals) if vals else None

    def _tell_upto(self, n: int) -> None:
        """Tell slots ``_told .. n-1`` in order, stopping at the first one not finished."""
        study = self._study
        while self._told < min(n, len(self._slots)) and self._slot_done(self._slots[self._told]):
            s = self._slots[self._told]
            v = self._slot_value(s)
            for number in [s["optuna_trial"], *self._shadows.pop(self._told, [])]:
                self._tell(study, number, v)
            s["told"] = True
            self._told += 1

    def _tell(self, study, number: int, value: float | str | None) -> None:
        import optuna

        self._asked.pop(number, None)
        try:
            if value == "pruned":
                study.tell(number, state=optuna.trial.TrialState.PRUNED)
            elif value is None:
                study.tell(number, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(number, value)
        except RuntimeError as exc:  # already finished (a resume re-telling): keep going
            if "finished" not in str(exc).lower():
                raise

    def _ask_slot(self, study) -> None:
        """Ask until a configuration not yet evaluated comes; repeats are answered from their slot."""
        i = len(self._slots)
        for attempt in range(MAX_REASKS + 1):
            source = "sampler"
            if attempt == MAX_REASKS:
                params = self._unseen(i)
                study.enqueue_trial(params, skip_if_exists=False)
                source = "fallback"
            t = study.ask(self._dists)
            self._asked[t.number] = t
            config = _resolve(self._space, t.params)
            key = config_key(config)
            j = self._by_key.get(key)
            if j is None:
                self._slots.append({"slot": i, "config": config, "key": key, "optuna_trial": t.number,
                                    "trials": [None] * self._repeats, "state": ["queued"] * self._repeats,
                                    "values": [None] * self._repeats, "told": False})
                self._by_key[key] = i
                self._proposals.append({"optuna_trial": t.number, "slot": i, "repeat_of": None, "source": source})
                self._queue.extend((i, r) for r in range(self._repeats))
                return
            self._proposals.append({"optuna_trial": t.number, "slot": None, "repeat_of": j, "source": source})
            if self._slots[j]["told"]:
                self._tell(study, t.number, self._slot_value(self._slots[j]))
            else:  # told together with slot j, so the study's state stays a function of the slot order
                self._shadows.setdefault(j, []).append(t.number)
        raise RuntimeError("the searcher found no configuration left to evaluate")  # plan() makes this unreachable

    def _unseen(self, i: int) -> dict:
        """Flat params of a configuration not yet evaluated, drawn with a generator seeded by (seed, slot)."""
        from ray.tune.search.sample import Categorical

        doms = _domains(self._space)
        rng = random.Random(self._seed * 1_000_003 + i)
        size = space_size(self._space)
        if size is not None and size <= ENUMERATE_LIMIT:
            import itertools

            names = list(doms)
            combos = [dict(zip(names, c)) for c in itertools.product(*(doms[n].categories for n in names))]
            rng.shuffle(combos)
            for p in combos:
                if config_key(_resolve(self._space, p)) not in self._by_key:
                    return p
        else:
            import numpy as np

            state = np.random.RandomState(rng.randrange(2**31))
            for _ in range(10_000):
                p = {n: (d.categories[state.randint(len(d.categories))] if isinstance(d, Categorical)
                         else d.sample(random_state=state)) for n, d in doms.items()}
                p = _plain(p)
                if config_key(_resolve(self._space, p)) not in self._by_key:
                    return p
        raise RuntimeError("the searcher found no configuration left to evaluate")

    # -- search.json ------------------------------------------------------------------------------
    def _state(self) -> dict:
        """search.json: ``{"version": 1, "study": {"name", "journal"}, "sampler": "tpe"|"exhaustive",
        "note", "seed", "window", "n_startup_trials", "constant_liar", "space_size" (None: infinite),
        "num_samples", "repeats", "proposals_planned", "trials_planned",
        "slots": [{"slot", "config", "key", "optuna_trial", "trials": [trial id per repeat],
                   "state": ["queued"|"running"|"done"|"failed"|"stopped" per repeat], "values", "told"}],
        "proposals": [{"optuna_trial", "slot" (new slot) | None, "repeat_of" (slot) | None,
                       "source": "sampler"|"fallback"}] in ask order,
        "repeats_answered": proposals that repeated an earlier slot, "resumes": [...]}``"""
        return {
            "version": 1, "study": {"name": self._study_name, "journal": JOURNAL_FILE},
            "sampler": self._plan["sampler"], "note": self._plan["note"], "seed": self._seed, "window": self._window,
            "n_startup_trials": self._n_startup, "constant_liar": not self.exhaustive,
            "space_size": self._plan["space_size"], "num_samples": self._num_samples, "repeats": self._repeats,
            "proposals_planned": self._plan["proposals"], "trials_planned": self._plan["trials"],
            "slots": self._slots, "proposals": self._proposals,
            "repeats_answered": sum(p["repeat_of"] is not None for p in self._proposals),
            "shadows": {str(k): v for k, v in self._shadows.items()}, "resumes": self._resumes,
        }

    def _save(self) -> None:
        _atomic_json(Path(self._run_dir) / SEARCH_FILE, self._state())

    def start(self) -> None:
        """A new run: open the study, write search.json, say what will run."""
        self._open()
        self._save()
        if self._plan["note"]:
            log.info("search: %s", self._plan["note"])
        log.info("search: %s sampler (seed %d), %d configurations x %d repeat(s), proposal window %d; study %r in %s",
                 "exhaustive" if self.exhaustive else "TPE constant-liar", self._seed, self._plan["proposals"],
                 self._repeats, self._window, self._study_name, Path(self._run_dir) / JOURNAL_FILE)

    # -- Tune's snapshot and restore --------------------------------------------------------------
    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Tune's snapshot: which trial ids Tune knows at this moment (the rest is in search.json)."""
        ids = [t for s in self._slots for t in s["trials"] if t is not None]
        _atomic_json(Path(checkpoint_dir) / SNAPSHOT_FILE, {"trials": ids, "at": time.time()})
        self._save()

    def has_checkpoint(self, dirpath: str) -> bool:
        return (Path(dirpath) / SNAPSHOT_FILE).exists()

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """Rebuild from search.json + the trials' records + the journal; see the module docstring."""
        run_dir = Path(self._run_dir)
        staged = Path(checkpoint_dir) / SEARCH_FILE
        if staged.exists() and staged.resolve() != (run_dir / SEARCH_FILE).resolve():
            # Tune's restore copies the run folder's *.json into its staging folder and later syncs that
            # folder back: a stale copy there would overwrite the live search.json
            staged.unlink()
        snap_file = Path(checkpoint_dir) / SNAPSHOT_FILE
        known = set(json.loads(snap_file.read_text())["trials"]) if snap_file.exists() else set()
        state = json.loads((run_dir / SEARCH_FILE).read_text())
        self._slots, self._proposals = state["slots"], state["proposals"]
        self._shadows = {int(k): v for k, v in state.get("shadows", {}).items()}
        self._resumes = state.get("resumes", [])
        self._by_key = {s["key"]: s["slot"] for s in self._slots}
        self._trial_slot = {t: (s["slot"], r) for s in self._slots for r, t in enumerate(s["trials"]) if t}
        self._told = sum(1 for s in self._slots if s["told"])
        records = read_records(run_dir)
        requeued, from_records, lost_done = [], [], []
        self._queue = []
        for s in self._slots:
            for r, tid in enumerate(s["trials"]):
                if s["state"][r] in ("done", "failed", "stopped"):
                    continue
                rec = records.get(tid) if tid else None
                if rec is not None and config_key(rec["config"]) == s["key"]:
                    s["values"][r], s["state"][r] = _value(rec["metrics"], self._metric), "done"
                    from_records.append(tid)
                    if tid not in known:
                        lost_done.append(tid)
                    continue
                ended, v = _trial_outcome(run_dir / f"trial_{tid}", self._metric) if tid else (None, None)
                if ended:
                    s["values"][r], s["state"][r] = v, ended
                    continue
                if tid is None or tid not in known:  # Tune never heard of it (or lost it): hand it out again
                    if tid:
                        self._trial_slot.pop(tid, None)
                        stale = run_dir / f"trial_{tid}"
                        if stale.exists():
                            (run_dir / SUPERSEDED).mkdir(exist_ok=True)
                            os.replace(stale, run_dir / SUPERSEDED / stale.name)
                    s["trials"][r], s["state"][r] = None, "queued"
                    self._queue.append((s["slot"], r))
                    requeued.append(s["slot"])
        # the sampler's random state is not on disk: seed it from (seed, slots so far), reproducible from here
        self._study = None
        study = self._open(seed=self._seed + 7919 * len(self._slots))
        import optuna

        asked = {p["optuna_trial"] for p in self._proposals}
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.number not in asked:  # asked just before the kill, never handed out: not a pending proposal
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if len(self._slots) >= self._plan["proposals"]:
            self._tell_upto(len(self._slots))
        self._resumes.append({"at": time.strftime("%Y-%m-%d %H:%M:%S"), "slots": len(self._slots),
                              "finished_from_records": from_records, "lost_finished": lost_done,
                              "requeued_slots": sorted(set(requeued))})
        self._save()
        log.info("search: resumed %s: %d of %d configurations proposed, %d trials finished from their records "
                 "(%d that Tune's snapshot had lost), %d handed out again", self._study_name, len(self._slots),
                 self._plan["proposals"], len(from_records), len(lost_done), len(requeued))


def build(spec, run_dir: Path, num_samples: int) -> SweepSearcher:
    """The searcher of a sweep: its space, metric, seed, repeats and proposal window from the spec;
    the study named after the run folder, stored in its ``optuna.journal``."""
    return SweepSearcher(spec.space, metric=spec.metric, mode=spec.mode, seed=spec.seed, run_dir=run_dir,
                         study_name=Path(run_dir).name, num_samples=num_samples, repeats=spec.repeats,
                         window=getattr(spec, "proposal_window", DEFAULT_WINDOW), n_startup_trials=N_STARTUP_TRIALS)
