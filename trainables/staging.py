"""Hidden staging folders (written first, renamed into place) and the debris a kill leaves of them.

Every staging folder holds an ``.owner`` file naming the host and process that made it. A later run
removes a staging folder whose owner is gone (same host, no such process) at once, and one without an
owner file, or made on another host (a shared file system), once it is older than a grace period;
a folder whose owner still runs (a concurrent sweep's) is left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

OWNER = ".owner"
GRACE_S = 3600.0  # a folder with no owner we can check is debris once this old
log = logging.getLogger("sweeps.staging")


def make(parent: str | Path, prefix: str) -> Path:
    """A new hidden staging folder ``parent/<prefix>XXXXXXXX`` owned by this process."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    (tmp / OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    return tmp


def release(tmp: str | Path) -> None:
    """Remove the owner file before the folder's content is renamed into place."""
    Path(tmp, OWNER).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def is_debris(folder: Path, grace_s: float = GRACE_S) -> bool:
    """Whether a staging folder was left by a process that no longer runs (see the module docstring)."""
    try:
        host, pid = (folder / OWNER).read_text().split()
        if host == socket.gethostname():
            return not _alive(int(pid))
    except (OSError, ValueError):  # no owner file (an older writer, or one mid-rename) or unreadable
        pass
    try:
        return time.time() - folder.stat().st_mtime > grace_s
    except OSError:
        return False


def sweep(parent: str | Path, pattern: str, grace_s: float = GRACE_S) -> list[Path]:
    """Remove the staging folders matching ``pattern`` under ``parent`` that are debris; returns them."""
    gone = []
    for p in sorted(Path(parent).glob(pattern)) if Path(parent).is_dir() else []:
        if p.is_dir() and not p.is_symlink() and is_debris(p, grace_s):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    if gone:
        log.info("removed %d staging folder(s) left by an interrupted run under %s", len(gone), parent)
    return gone
