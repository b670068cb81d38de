"""One dict per component kind, and one builder that makes any component from a search-space value.

A search space names components by their registered name. A value is either the name itself
(``"attention"``) or a dict ``{"name": "attention", "attention": {"hidden_dim": 64}}`` whose
sub-dict keyed by the chosen name holds that component's keyword hyperparameters (so a space can
give every candidate its own parameters without nesting one ``tune.choice`` inside another).
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Mapping


class UnknownComponentError(KeyError):
    """An unknown component name; the message lists the valid names and a did-you-mean."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class Registry(dict):
    """A named table of component factories of one kind (pooling, head, ...)."""

    def __init__(self, kind: str, entries: Mapping[str, Callable[..., Any]] | None = None):
        super().__init__(entries or {})
        self.kind = kind

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = factory
            return factory

        return deco

    def check(self, name: str, where: str = "") -> str:
        if not isinstance(name, str) or name not in self:
            valid = sorted(self)
            close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            at = f" (at {where})" if where else ""
            raise UnknownComponentError(f"unknown {self.kind} {name!r}{at}.{hint} Valid {self.kind} names: {', '.join(valid)}")
        return name


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
