"""SweepSpec: what a search space file declares, and the checks run on it before anything starts.

A search space is a Python file that defines ``SPEC = SweepSpec(...)``, found by name on the space
search path (:func:`space_path`: the ``SWEEPS_SPACES`` folders, then the repository's
``search_spaces/``) or given by its path; either way it is loaded as a file, never imported as a
package. The
space is a nested dict of plain values and Ray Tune domains (``tune.choice``, ``tune.loguniform``,
...). Never nest a ``tune.choice`` inside another (OptunaSearch cannot express it): give each
component's parameters in a sub-dict keyed by the component name instead.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune.search.sample import Categorical, Domain

from trainables.encoders import ENCODERS, WeightsError, check_encoder, parse_encoder, parse_preprocessing, resolve_weights
from trainables.finetune import SETTINGS as FINETUNE_SETTINGS
from trainables.finetune import check_space as check_finetune_space
from trainables.fusion import FUSIONS
from trainables.heads import HEADS
from trainables.metrics import EXTRA_OBJECTIVES, METRICS
from trainables.pooling import POOLINGS
from trainables.lookup import unknown
from trainables.registry import Param, ParamValueError, Registry, UnknownComponentError, check_declared
from trainables.sampling import SAMPLINGS
from trainables.tabular import TABULAR
from trainables.tabular import normalise as tabular_spec
from trainables.training import TRAIN_PARAMS


class SpecError(ValueError):
    """A search space that cannot run; the message names the field."""


COMPONENTS: dict[str, Registry] = {"pooling": POOLINGS, "fusion": FUSIONS, "sampling": SAMPLINGS, "head": HEADS}
# keys a trial config may hold, besides the components
SETTINGS = {"encoder", "preprocessing", "pca_dim", "tabular", "text", "missing_eval"}
TRAINABLES = ("frozen", "finetune")
# declared settings of a space (besides the components, which their registries declare)
SETTING_PARAMS = {"pca_dim": Param(int, 0, low=0, doc="whitened PCA projection of each modality's instances (0 = off)")}
# the repository's own spaces; SWEEPS_SPACES (os.pathsep-separated folders) is searched first
REPO_SPACES = Path(__file__).resolve().parent.parent / "search_spaces"


@dataclass
class SweepSpec:
    name: str
    space: dict[str, Any]
    cohort: str = "synthetic"
    cohort_options: dict[str, Any] = field(default_factory=dict)
    metric: str = "f1_macro"
    mode: str = "max"
    num_samples: int = 16
    compare: dict[str, list[str]] = field(default_factory=dict)  # {"pooling": ["mean", "attention"]}
    folds: int = 5
    seed: int = 0
    description: str = ""
    target: str | list[str] | None = None  # the cohort's target(s) to predict: a name, a list, "all" (default: its first)
    repeats: int = 1  # run every configuration with this many seeds (folds and inits vary); report mean and SD
    reference: str | None = None  # a CSV of published results to set beside ours in the report
    weights: dict[str, str] = field(default_factory=dict)  # encoder -> "random" | "pretrained" | "packaged" | a file
    trainable: str = "frozen"  # "frozen": heads on cached embeddings; "finetune": the encoder trained in each trial
    scheduler: str | None = None  # "asha": stop poor trials early on their per-epoch reports (finetune only)
    test_fraction: float = 0.0  # patients set aside as a held-out test part, scored once after the sweep (sweeps.heldout)
    proposal_window: int = 4  # proposal i waits for trials 0..i-window (sweeps/search.py): fixed, so any concurrency proposes the same

    def validate(self) -> None:
        if self.metric not in METRICS and self.metric not in EXTRA_OBJECTIVES:
            raise SpecError(unknown("metric", self.metric, [*METRICS, *EXTRA_OBJECTIVES], f"{self.name}.metric"))
        if self.metric in EXTRA_OBJECTIVES and self.mode != EXTRA_OBJECTIVES[self.metric]:
            raise SpecError(f"space {self.name!r}: metric {self.metric!r} needs mode {EXTRA_OBJECTIVES[self.metric]!r}")
        if self.mode not in ("max", "min"):
            raise SpecError(f"space {self.name!r}: mode must be 'max' or 'min', got {self.mode!r}")
        if self.trainable not in TRAINABLES:
            raise SpecError(f"space {self.name!r}: trainable must be one of {', '.join(TRAINABLES)}, got {self.trainable!r}")
        if self.scheduler not in (None, "asha"):
            raise SpecError(f"space {self.name!r}: scheduler must be None or 'asha', got {self.scheduler!r}")
        if self.scheduler and self.trainable != "finetune":
            raise SpecError(f"space {self.name!r}: scheduler {self.scheduler!r} acts on per-epoch reports, which only "
                            "trainable='finetune' makes")
        if not (isinstance(self.test_fraction, (int, float)) and 0 <= self.test_fraction < 1):
            raise SpecError(f"space {self.name!r}: test_fraction must be in [0, 1), got {self.test_fraction!r}")
        finetune = self.trainable == "finetune"
        allowed = SETTINGS | set(COMPONENTS) | (FINETUNE_SETTINGS if finetune else set())
        for key in self.space:
            if key not in allowed:
                hint = " It applies to trainable='finetune' only." if key in FINETUNE_SETTINGS else ""
                raise SpecError(unknown("field", key, allowed, self.name) + hint)
        try:
            check_declared("setting", SETTING_PARAMS, {k: v for k, v in self.space.items() if k in SETTING_PARAMS},
                           self.name, "space")
            if finetune and isinstance(self.space.get("train"), dict):  # values and range bounds, as for components
                check_declared("training option", TRAIN_PARAMS, self.space["train"], f"{self.name}.train", "train")
        except ParamValueError as exc:
            raise SpecError(str(exc)) from None
        if finetune:
            try:
                check_finetune_space(self.space, self.name)
            except ValueError as exc:
                raise SpecError(str(exc)) from None
        elif "head" not in self.space:
            raise SpecError(f"space {self.name!r}: field 'head' is required")
        if not any(k in self.space for k in ("encoder", "tabular", "text")):
            raise SpecError(f"space {self.name!r}: nothing to learn from: give an 'encoder' (images), 'tabular' or 'text'")
        if "encoder" in self.space and "pooling" not in self.space and not self.compare.get("pooling"):
            raise SpecError(f"space {self.name!r}: field 'pooling' is required with an encoder")
        if self.reference:
            from .report.reference import ReferenceError, load

            try:
                load(Path(self.reference))
            except (ReferenceError, OSError) as exc:
                raise SpecError(f"space {self.name!r}: reference: {exc}") from None
        fr = self.space.get("missing_eval", [])
        if not isinstance(fr, (list, tuple)) or not all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in fr):
            raise SpecError(f"space {self.name!r}: missing_eval must be a list of fractions in [0, 1], got {fr!r}")
        if not isinstance(self.proposal_window, int) or self.proposal_window < 1:
            raise SpecError(f"space {self.name!r}: proposal_window must be a whole number >= 1, got {self.proposal_window!r}")
        if self.repeats < 1 or (self.repeats > 1 and self.num_samples % self.repeats):
            raise SpecError(f"space {self.name!r}: repeats={self.repeats} must be >= 1 and divide num_samples={self.num_samples}")
        try:
            for enc in values_of(self.space.get("encoder")) if "encoder" in self.space else []:
                check_encoder(enc, f"{self.name}.encoder")
                if finetune and not parse_encoder(enc).preset:
                    raise SpecError(f"space {self.name!r}: trainable='finetune' trains one of the preset encoders "
                                    f"({', '.join(ENCODERS)}), not {enc!r}; frozen embeddings take any encoder")
            for enc, w in self.weights.items():  # weights are checked here, before the cohort loads: fails fast
                check_encoder(enc, f"{self.name}.weights")
                resolve_weights(enc, w, fetch=False)
            if "tabular" in self.space:
                _check_component(self.name, "tabular", TABULAR, _tabular_names(self.space["tabular"]))
            if "text" in self.space:
                from trainables.text_features import check_text_spec

                check_text_spec(self.space["text"], f"{self.name}.text")
            for pre in values_of(self.space.get("preprocessing", "grayscale_norm")):
                parse_preprocessing(pre, f"{self.name}.preprocessing")
            for kind, table in COMPONENTS.items():
                if kind in self.space:
                    _check_component(self.name, kind, table, self.space[kind])
            for dim, arms in self.compare.items():
                if dim != "pooling":
                    raise SpecError(f"space {self.name!r}: compare supports 'pooling' only, got {dim!r}")
                if len(arms) < 2:
                    raise SpecError(f"space {self.name!r}: compare.pooling needs at least two poolings")
                for a in arms:
                    POOLINGS.check(a, f"{self.name}.compare.pooling")
        except (UnknownComponentError, WeightsError, ParamValueError) as exc:
            raise SpecError(str(exc)) from None

    def target_names(self, cohort) -> list[str]:
        """The targets this sweep predicts, checked against the cohort's (several: one head per target)."""
        known = [t.name for t in cohort.targets]
        if self.target is None:
            return known[:1]
        wanted = known if self.target == "all" else [self.target] if isinstance(self.target, str) else list(self.target)
        for t in wanted:
            if t not in known:
                raise SpecError(unknown(f"target of cohort {cohort.name!r}", t, known, f"{self.name}.target"))
        return wanted

    def embeddings(self) -> list[tuple[str, str]]:
        """Every (encoder, preprocessing) pair the space can ask for: what the embed stage computes."""
        if "encoder" not in self.space:
            return []
        return [(e, p) for e in values_of(self.space["encoder"])
                for p in values_of(self.space.get("preprocessing", "grayscale_norm"))]


def _tabular_names(v: Any) -> Any:
    """``True``/``False`` (also inside a tune.choice) are shorthands for ``simple``/``none``."""
    if isinstance(v, Categorical):
        return Categorical([tabular_spec(x) for x in v.categories])
    if isinstance(v, dict):
        return {k: (_tabular_names(x) if k == "name" else x) for k, x in v.items()}
    return tabular_spec(v)


def values_of(v: Any) -> list[Any]:
    """The values a space entry can take: a constant, or a categorical's categories."""
    if isinstance(v, Categorical):
        return list(v.categories)
    if isinstance(v, Domain):
        raise SpecError(f"a component name must be a constant or tune.choice, got {type(v).__name__}")
    if isinstance(v, dict) and "grid_search" in v:
        return list(v["grid_search"])
    return [v]


def _check_component(space: str, kind: str, table: Registry, value: Any) -> None:
    """Names, parameter names and parameter values (constants, every ``tune.choice`` category, the
    bounds of numeric ranges) of one component entry, against the registry's declarations."""
    where = f"{space}.{kind}"
    if isinstance(value, dict):
        if "name" not in value and kind != "pooling":
            raise SpecError(f"{where}: a component dict needs a 'name' key")
        names = values_of(value["name"]) if "name" in value else []
        for n in names:
            table.check(n, f"{where}.name")
        for sub, params in value.items():
            if sub == "name":
                continue
            table.check(sub, f"{where}.{sub}")
            if not isinstance(params, dict):
                raise SpecError(f"{where}.{sub}: parameters must be a dict")
            check_params(table, sub, params, f"{where}.{sub}", kind)
            for key in ("members", "base") if kind == "head" else ():  # ensembles name other heads
                for v in values_of(params[key]) if key in params else []:
                    for member in str(v).split("+"):
                        table.check(member, f"{where}.{sub}.{key}")
            if kind == "fusion" and "head" in params:  # per_modality_ensemble names a head
                for v in values_of(params["head"]):
                    HEADS.check(v, f"{where}.{sub}.head")
    else:
        for n in values_of(value):
            table.check(n, where)


# constructor arguments the platform sets itself: never a space's to give
FIXED_ARGS = frozenset({"self", "in_dim", "seed", "cache_root", "key_extra"})


def check_params(table: Registry, name: str, params: dict, where: str, field: str) -> None:
    """``params`` of component ``name`` against its declaration (:class:`trainables.registry.Param`):
    every name, constant value and choice category; a component without a declaration has its names
    checked against its constructor's keywords. Raises SpecError naming the field, value and allowed."""
    try:
        if name in table.params:
            table.check_params(name, params, where, field=field)
            return
        valid = {p for p in inspect.signature(table[name]).parameters if p not in FIXED_ARGS}
        for p in params:
            if p not in valid:
                raise SpecError(unknown(f"{table.kind} {name!r} parameter", p, valid, where))
    except ParamValueError as exc:
        raise SpecError(str(exc)) from None


def space_path() -> list[Path]:
    """The folders searched for a space by name, first match wins: each ``SWEEPS_SPACES`` entry
    (``os.pathsep``-separated), then the repository's ``search_spaces/``."""
    extra = [Path(p).expanduser() for p in os.environ.get("SWEEPS_SPACES", "").split(os.pathsep) if p]
    return [*extra, REPO_SPACES]


def find_spaces() -> dict[str, Path]:
    """Every space on the search path: name -> file (names starting with ``_`` are not spaces)."""
    found: dict[str, Path] = {}
    for folder in space_path():
        for f in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            if not f.stem.startswith("_"):
                found.setdefault(f.stem, f)
    return found


def available_spaces() -> list[str]:
    return sorted(find_spaces())


def load_space(name: str) -> SweepSpec:
    """A space by name (``NAME.py`` on :func:`space_path`) or by the path of a ``.py`` file defining SPEC."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.exists():
            raise SpecError(f"{path}: search space file not found")
        return _load_file(path)
    spaces = find_spaces()
    if name not in spaces:
        raise SpecError(unknown("search space", name, spaces))
    return _load_file(spaces[name])


def _load_file(path: Path) -> SweepSpec:
    """Execute a space file as a module of its own (its SPEC is validated)."""
    mod_name = f"_sweeps_space_{path.stem}"
    loader = importlib.util.spec_from_file_location(mod_name, path)
    mod = importlib.util.module_from_spec(loader)
    sys.modules[mod_name] = mod
    loader.loader.exec_module(mod)
    return _spec_of(mod, str(path))


def _spec_of(mod, where: str) -> SweepSpec:
    spec = getattr(mod, "SPEC", None)
    if not isinstance(spec, SweepSpec):
        raise SpecError(f"{where} defines no SPEC = SweepSpec(...)")
    spec.validate()
    return spec
