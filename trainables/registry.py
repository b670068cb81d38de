"""One dict per component kind, and one builder that makes any component from a search-space value.

A search space names components by their registered name. A value is either the name itself
(``"attention"``) or a dict ``{"name": "attention", "attention": {"hidden_dim": 64}}`` whose
sub-dict keyed by the chosen name holds that component's keyword hyperparameters (so a space can
give every candidate its own parameters without nesting one ``tune.choice`` inside another).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .lookup import UnknownNameError, closest, check as check_name


class UnknownComponentError(UnknownNameError):
    """An unknown component name; the message lists the valid names and a did-you-mean."""


class ParamValueError(ValueError):
    """A component parameter given a value it does not take; names the field, the value and what is allowed."""


REQUIRED = object()  # a Param default meaning "the space must give it"


@dataclass(frozen=True)
class Param:
    """One declared hyperparameter of a component: its type, allowed values or range, default, meaning.

    Validation as data (scikit-learn's ``_parameter_constraints`` is the model): the space check calls
    :meth:`check` on every constant value and every ``tune.choice`` category before anything slow
    starts, and ``python -m sweeps list`` prints :meth:`describe`.
    """

    type: type | tuple[type, ...]  # int, float, bool, str (an int is accepted where a float is declared)
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None  # allowed values (strings compared case-insensitively)
    low: float | None = None  # inclusive bounds for numbers
    high: float | None = None
    doc: str = ""
    nullable: bool = False  # None allowed
    open_low: bool = False  # low itself not allowed (lr > 0)
    open_high: bool = False  # high itself not allowed (a fraction < 1)

    def allowed(self) -> str:
        if self.choices is not None:
            text = ", ".join(str(c) for c in self.choices)
        else:
            names = [t.__name__ for t in (self.type if isinstance(self.type, tuple) else (self.type,))]
            text = "/".join(names)
            if self.low is not None or self.high is not None:
                lo = "-inf" if self.low is None else f"{self.low:g}"
                hi = "inf" if self.high is None else f"{self.high:g}"
                text += f" in {'(' if self.open_low else '['}{lo}, {hi}{')' if self.open_high else ']'}"
        return text + (" or None" if self.nullable else "")

    def describe(self, name: str) -> str:
        default = "required" if self.default is REQUIRED else repr(self.default)
        doc = f": {self.doc}" if self.doc else ""
        return f"{name}={self.allowed()} (default {default}){doc}"

    def check(self, value: Any, field: str, where: str = "") -> None:
        """Raise :class:`ParamValueError` naming the ``field`` (``fusion.missing``), the value, ``where``
        (``myspace.fusion``) and the allowed values."""
        if value is None and self.nullable:
            return
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        ok = isinstance(value, types)
        if float in types and isinstance(value, int):
            ok = True
        if bool not in types and isinstance(value, bool):
            ok = False  # True is an int to Python, not to a space
        if int in types and float not in types and isinstance(value, float) and value.is_integer():
            ok = True  # 64.0 from a sampler is 64
        if ok and self.choices is not None:
            norm = (lambda v: v.lower() if isinstance(v, str) else v)
            ok = norm(value) in {norm(c) for c in self.choices}
        if ok and isinstance(value, (int, float)) and not isinstance(value, bool):
            ok = self.in_range(value)
        if not ok:
            at = f" (at {where})" if where else ""
            close = closest(value, self.choices) if self.choices is not None and isinstance(value, str) else None
            hint = f". Did you mean {close!r}?" if close else ""
            raise ParamValueError(f"{field}={value!r}{at}: allowed {self.allowed()}{hint}")

    def in_range(self, value: float) -> bool:
        """Whether the number ``value`` lies within the declared bounds (NaN never does)."""
        if math.isnan(value):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            return False
        return True


class Registry(dict):
    """A named table of component factories of one kind (pooling, head, ...)."""

    def __init__(self, kind: str, entries: Mapping[str, Callable[..., Any]] | None = None):
        super().__init__(entries or {})
        self.kind = kind
        self.params: dict[str, dict[str, Param]] = {}  # name -> declared hyperparameters

    def register(self, name: str, params: Mapping[str, Param] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: add ``factory`` under ``name`` with its declared ``params`` (validation as data)."""

        def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = factory
            if params is not None:  # {} declares "takes no parameters"; None leaves it undeclared
                self.params[name] = dict(params)
            return factory

        return deco

    def check(self, name: str, where: str = "") -> str:
        if not isinstance(name, str):
            name = repr(name)  # unhashable values (a dict) cannot be names
        return check_name(self.kind, name, self, where, error=UnknownComponentError)

    def check_params(self, name: str, params: Mapping[str, Any], where: str = "", field: str | None = None) -> None:
        """Check parameter names and values of component ``name`` against its declaration.

        A value may be a constant, a ``tune.choice`` (every category is checked), a
        ``{"grid_search": [...]}`` (every entry) or a numeric Tune domain (``tune.uniform``,
        ``tune.loguniform``, ``tune.randint``: its bounds are checked against the declared range).
        Domains are recognised by their attributes (``categories``; ``lower``/``upper``), so this
        module does not import Ray. ``field`` prefixes the parameter in messages (default: the kind).
        A component registered without a declaration is not checked here (its constructor still is).
        """
        declared = self.params.get(name)
        if declared is None:
            return
        check_declared(f"{self.kind} {name!r} parameter", declared, params, where or self.kind, field or self.kind)


def check_declared(what: str, declared: Mapping[str, Param], params: Mapping[str, Any], where: str, prefix: str) -> None:
    """Names and values of ``params`` against ``declared`` (see :meth:`Registry.check_params`):
    an unknown name is ``unknown WHAT 'key' (at WHERE)``; a bad value ``PREFIX.key=value (at WHERE): allowed ...``."""
    for key, value in params.items():
        check_name(what, key, declared, where, error=ParamValueError)
        param = declared[key]
        for v in values_of(value):
            param.check(v, f"{prefix}.{key}", where)
        if hasattr(value, "lower") and hasattr(value, "upper") and not isinstance(value, str):
            _check_bounds(param, value, f"{prefix}.{key}", where)


def values_of(value: Any) -> list[Any]:
    """The constants a space value stands for: a choice's categories, a grid's entries, or itself;
    none for a numeric domain (whose bounds :func:`_check_bounds` checks)."""
    if hasattr(value, "categories"):
        return list(value.categories)
    if isinstance(value, Mapping) and "grid_search" in value:
        return list(value["grid_search"])
    if hasattr(value, "sample"):  # a numeric range (bounds checked apart) or sample_from (checked in the trial)
        return []
    return [value]


def _check_bounds(param: Param, domain: Any, field: str, where: str) -> None:
    """A numeric domain's draws must lie in the declared range: its lower bound, and its upper bound
    unless that is the declared (open) limit itself, which draws never reach."""
    kind = type(domain).__name__  # Float, Integer
    if kind == "Float" and param.type is int:
        raise ParamValueError(f"{field}: a float range for a whole-number parameter (at {where}); "
                              "use tune.randint or tune.qrandint")
    if param.choices is not None:
        raise ParamValueError(f"{field}: a numeric range (at {where}) for a parameter with choices "
                              f"{param.allowed()}; use tune.choice")
    lower, upper = domain.lower, domain.upper
    if kind == "Integer":
        upper = upper - 1  # tune.randint's upper bound is exclusive
    for bound, value in (("lower", lower), ("upper", upper)):
        if bound == "upper" and value == param.high:
            continue
        if not param.in_range(float(value)):
            at = f" (at {where})" if where else ""
            raise ParamValueError(f"{field}: {bound} bound {value!r} of the {kind} range{at}: allowed {param.allowed()}")


class ComponentArgumentError(TypeError):
    """A component built with an argument it does not take (or without one it needs); names both."""


def split_spec(value: Any, where: str = "") -> tuple[str, dict[str, Any]]:
    """``"attention"`` or ``{"name": "attention", "attention": {...}}`` -> (name, params)."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, Mapping) and "name" in value:
        name = value["name"]
        params = value.get(name, {}) if isinstance(name, str) else {}
        if not isinstance(params, Mapping):
            raise TypeError(f"parameters for {name!r} (at {where}) must be a dict, got {type(params).__name__}")
        return name, dict(params)
    raise TypeError(f"a component (at {where}) must be a name or a dict with a 'name' key, got {value!r}")


def build(table: Registry, value: Any, where: str = "", **fixed: Any) -> Any:
    """Make the component that ``value`` names from ``table``; ``fixed`` are arguments set by the caller."""
    name, params = split_spec(value, where)
    table.check(name, where or table.kind)
    try:
        return table[name](**params, **fixed)
    except TypeError as exc:
        raise ComponentArgumentError(f"{table.kind} {name!r} (at {where or table.kind}): {exc}") from None
