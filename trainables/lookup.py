"""One way to say "unknown X, did you mean Y": every such message in the project comes from here.

Message shape (one, everywhere)::

    unknown pooling 'atention' (at myspace.pooling). Did you mean 'attention'? Valid pooling names: attention, max, mean

A leaf module: it imports nothing from the project, so any module may use it.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

CUTOFF = 0.6  # difflib ratio under which no suggestion is made (one cutoff for every lookup)


class UnknownNameError(KeyError):
    """A name that is not among the valid ones; the message lists them and suggests the closest."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


def closest(name: Any, valid: Iterable[Any]) -> str | None:
    """The valid name most like ``name`` (case-insensitive), or None when none is close enough."""
    options = [str(v) for v in valid]
    lowered = {o.lower(): o for o in options}
    hit = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=CUTOFF)
    return lowered[hit[0]] if hit else None


def unknown(kind: str, name: Any, valid: Iterable[Any], where: str = "", *, noun: str = "names") -> str:
    """The message for an unknown ``kind`` called ``name``; ``where`` names the field (``space.key``)."""
    options = sorted({str(v) for v in valid})
    close = closest(name, options)
    at = f" (at {where})" if where else ""
    hint = f" Did you mean {close!r}?" if close else ""
    listing = ", ".join(options) if options else "(none)"
    return f"unknown {kind} {name!r}{at}.{hint} Valid {kind} {noun}: {listing}"


def check(kind: str, name: Any, valid: Iterable[Any], where: str = "", *, error: type[Exception] = UnknownNameError,
          noun: str = "names") -> Any:
    """Return ``name`` if it is in ``valid``; else raise ``error`` with the one message shape."""
    valid = list(valid)
    if any(name == v and type(name) is type(v) for v in valid):
        return name
    raise error(unknown(kind, name, valid, where, noun=noun))
