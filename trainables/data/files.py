"""Writing a dataset folder so that a half-written one is never seen."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import staging


@contextmanager
def atomic_dir(out: str | Path, complete: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``, renamed to ``out`` when the block ends without error
    and removed otherwise: a half-written folder is never seen at ``out``. ``out`` must not exist.

    ``complete(out)`` says whether a folder at ``out`` is a finished copy of the same content: when
    another process (a second sweep generating the same cohort) renamed its copy into place first,
    the loser keeps the winner's and drops its own instead of failing. The temporary folder is a
    ``trainables.staging`` folder, so one left by a kill is swept by a later run."""
    out = Path(out)
    if out.exists() and not (complete is not None and complete(out)):
        raise FileExistsError(f"{out} already exists; remove it or choose another folder")
    tmp = staging.make(out.parent, f".{out.name}.")
    try:
        yield tmp
        staging.release(tmp)
        try:
            os.rename(tmp, out)
        except OSError:  # "Directory not empty": someone else finished first
            if complete is None or not complete(out):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
