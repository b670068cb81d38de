"""The adapter contract, and the small pieces every cohort adapter shares (a leaf: no adapter imports it back).

A cohort adapter is a module of ``trainables.data`` with this surface (the contract test,
``tests/test_adapters_contract.py``, runs over every registered one)::

    NAME: str                                              # the cohort's registered name ("rsna_lumbar")
    OPTIONS: dict[str, Param]                              # the options load takes: type, allowed values, default, meaning
    def load(root=None, *, strict=False, **options) -> Cohort

``root`` is the dataset as distributed (a folder or a file: ``--data`` on the command line); ``strict=True``
raises on an unreadable file instead of setting it aside in ``cohort.quarantine``; ``options`` are checked
against ``OPTIONS`` by :func:`resolve_options` (an unknown name or a bad value is a :class:`CohortOptionError`
in the one message shape of :mod:`trainables.lookup`) before anything is read. A real dataset's adapter has a
stand-in generator in ``trainables.data.standins.<module>`` (same ``NAME``, ``standin(out, *, seed=0) -> Path``)
that writes a small dataset in the same on-disk layout, so that ``load(standin(tmp))`` is a valid cohort.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..lookup import check as check_name, closest
from ..registry import REQUIRED, Param, ParamValueError
from .cohort import CohortError

WHERE = "--option / cohort_options"  # where adapter options come from (the CLI's --option, a space's cohort_options)

__all__ = ["CohortOptionError", "Param", "WHERE", "as_text", "hint", "need_root", "resolve_options"]


class CohortOptionError(CohortError):
    """An adapter option the adapter does not take, or a value it does not allow."""


def resolve_options(name: str, declared: Mapping[str, Param], options: Mapping[str, Any],
                    where: str = WHERE) -> dict[str, Any]:
    """Every declared option's value: ``options`` checked against ``declared``, defaults filled in.

    An unknown name: ``unknown rsna_lumbar option 'uncertanty' (at ...). Did you mean ...? Valid ...``;
    a bad value: ``chexpert.uncertainty='maybe' (at ...): allowed ignore, ones, zeros``; a required option
    not given: named. A string value with declared choices comes back spelled as declared.
    """
    for key, value in options.items():
        check_name(f"{name} option", key, declared, where, error=CohortOptionError)
        try:
            declared[key].check(value, f"{name}.{key}", where)
        except ParamValueError as exc:
            raise CohortOptionError(str(exc)) from None
    out = {}
    for key, param in declared.items():
        if key not in options:
            if param.default is REQUIRED:
                raise CohortOptionError(f"{name} option {key!r} (at {where}) is required: {param.describe(key)}")
            out[key] = param.default
            continue
        value = options[key]
        if isinstance(value, str) and param.choices is not None:
            value = next(c for c in param.choices if isinstance(c, str) and c.lower() == value.lower())
        out[key] = value
    return out


def hint(word: Any, valid) -> str:
    """``". Did you mean 'x'?"`` (the hint of :mod:`trainables.lookup`'s message) for the closest of ``valid``,
    or ""; for messages about a name that is missing rather than unknown (a column the file lacks)."""
    close = closest(word, valid)
    return f". Did you mean {close!r}?" if close else ""


def need_root(name: str, root: Any, what: str) -> Path:
    """``root`` as a Path that exists, or a CohortError saying how to give it (``what``: what it should hold)."""
    if root is None or root == "":
        raise CohortError(f"cohort {name!r} needs its data: pass --data PATH ({what}), "
                          f"or --smoke to run on a generated stand-in")
    path = Path(root)
    if not path.exists():
        raise CohortError(f"cohort {name!r}: {path}: file not found ({what})")
    return path


def as_text(values: pd.Series) -> pd.Series:
    """Keys, labels and paths as stripped strings, blanks (NaN or "") as NaN; whole floats such as 1.0 (an
    integer column with blanks) written as integers."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna().apply(float.is_integer).all()
        values = values.astype("Int64") if whole else values
    out = values.astype(object).where(values.notna()).map(lambda v: str(v).strip(), na_action="ignore")
    return out.where(out != "").astype(object)
