"""Writing a dataset folder so that a half-written one is never seen."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``, renamed to ``out`` when the block ends without error
    and removed otherwise: a half-written folder is never seen at ``out``. ``out`` must not exist."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; remove it or choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
