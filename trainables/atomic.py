"""Writing so that nothing half-written is ever seen: every atomic write in the project comes from here.

A file or folder is written under a temporary name beside its destination (same file system) and
renamed into place when complete; a failure removes the temporary and leaves the destination as it
was. A leaf module: it imports nothing from the project.

- :func:`atomic_dir`: a whole folder (a cache entry, a generated dataset).
- :func:`write_text` / :func:`write_bytes`: one file, replacing an older one in one step.
- :func:`staged_files`: several files written into a staging folder, then moved into an existing
  folder one by one, a named file last (a report: ``report.md`` appears only with its plots there).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync_tree(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


@contextmanager
def atomic_dir(out: str | Path, *, if_exists: str = "error", prefix: str | None = None,
               fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``, renamed to ``out`` when the block ends without error
    and removed otherwise: a half-written folder is never seen at ``out``.

    ``if_exists``: ``"error"`` (``out`` must not exist: FileExistsError, before the block runs) or
    ``"keep"`` (a writer racing us got there first: theirs is kept and ours discarded). ``prefix``
    names the temporary (default ``.NAME.``; a caller that sweeps stale temporaries picks its own).
    ``fsync``: flush every file to disk before the rename.
    """
    if if_exists not in ("error", "keep"):
        raise ValueError(f"if_exists must be 'error' or 'keep', got {if_exists!r}")
    out = Path(out)
    if out.exists() and if_exists == "error":
        raise FileExistsError(f"{out} already exists; remove it or choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix or f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if fsync:
            _fsync_tree(tmp)
        try:
            os.rename(tmp, out)
        except OSError:
            if if_exists != "keep" or not out.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # the entry appeared meanwhile: theirs is as good
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file beside it, then replace ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """:func:`write_bytes` of ``text`` as UTF-8."""
    return write_bytes(path, text.encode("utf-8"))


@contextmanager
def staged_files(out_dir: str | Path, *, last: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a staging folder inside ``out_dir``; when the block ends without error every file
    written there replaces its namesake in ``out_dir`` (the names in ``last`` after the others). The
    staging folder is removed either way, so a failed write leaves ``out_dir`` as it was."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        yield staging
        for f in sorted(staging.iterdir(), key=lambda p: (p.name in last, last.index(p.name) if p.name in last else 0)):
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
