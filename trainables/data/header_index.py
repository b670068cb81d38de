"""A cohort's DICOM header index: the numbers slice ordering needs, read once and reused.

Loading a series cohort orders every series by its headers (:func:`~trainables.data.images.order_series`).
Reading 150k headers takes minutes, so :func:`scan` reads them once, in parallel (a process pool when
many files are new and the caller is single-threaded, threads otherwise), and keeps what ordering uses in an index file under
``sweeps_home()/index/``, one per cohort folder. A later load reads the index and re-reads only the
files that are new or changed: an entry is reused while the file's path, size, modification time
(ns) and inode are what they were.

Each series' order is kept as well (:meth:`HeaderIndex.order`), keyed by a digest of its files' paths
and stamps (size, modification time, inode) and of the ordering code (``images.py``'s source): a load
that finds every file of a series unchanged takes the stored order (and replays its mixed-orientation
warning) instead of sorting again; a changed, added or removed file, or changed ordering code, gives
another digest, so that series is ordered afresh from its (re-read) headers. Adapters call
:meth:`HeaderIndex.flush` after ordering so that new orders are written.

What an entry holds, numbers only (privacy: no identifying header value, no UID, no raw header text
ever enters the index): whether the file is DICOM, the first Instance Number, Image Position
(Patient) (3 values) and Image Orientation (Patient) (6 values), each a finite float or null, or for a
file whose header cannot be read the reason :class:`~trainables.data.images.ImageReadError` gave (a
reason written by the reader, with every quoted value redacted). Paths are stored relative to the
cohort folder. A series' stored order holds numbers only too: the files' ranks in sorted path order,
their order values (slice positions along the normal, Instance Numbers or ranks) and, for a series
mixing orientations, the warning's counts and the rank of the file it names.

The index file is JSON, replaced atomically (:mod:`trainables.atomic`): a reader never sees a
half-written one, and two loads racing each other each leave a complete index. An unreadable or
outdated index file is ignored (the headers are read again); an index that cannot be written is a
warning, not an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from ..atomic import write_text
from ..paths import sweeps_home
from . import images
from .images import ImageReadError, is_dicom, log_mixed_orientation, order_series, read_header

__all__ = ["FORMAT", "HeaderIndex", "index_path", "scan"]

log = logging.getLogger(__name__)

FORMAT = 1  # bump when an entry's meaning changes: older index files are then ignored
PROCESS_MIN = 2000  # new files from which the first read uses a process pool rather than threads
_CHUNK = 256  # files per task in the pool


def index_path(root: str | Path) -> Path:
    """The index file of the cohort folder ``root``: ``sweeps_home()/index/headers-<digest>.json``."""
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:20]
    return sweeps_home() / "index" / f"headers-{digest}.json"


def scan(root: str | Path, paths: Sequence[str], *, workers: int | None = None) -> HeaderIndex:
    """The header index of the cohort folder ``root`` with an entry for every file of ``paths``.

    Entries stored earlier are reused when their file is unchanged; the other files' headers are read
    (``workers`` at a time: default the usable CPUs, at most 8) and the index file is rewritten.
    ``HeaderIndex.n_read`` says how many headers were read. A file that cannot be stat'ed gets no
    entry (ordering a series holding it falls back to reading, which reports it).
    """
    index = HeaderIndex(root)
    index.update(paths, workers=workers)
    return index


class HeaderIndex:
    """The stored entries of one cohort folder; see the module docstring."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.path = index_path(self.root)
        self.n_read = 0
        self._series: dict[str, list] = {}  # series digest -> [ranks, values, warning or None] (order)
        self._entries: dict[str, list] = self._load()  # relative path -> [size, mtime_ns, ino, fields]
        self._fresh: dict[str, dict | str | None] = {}  # path as given -> fields / reason / None (not DICOM)
        self._stamps: dict[str, tuple] = {}  # path as given -> (size, mtime_ns, ino) of its fresh entry
        self._used: set[str] = set()  # series digests ordered or reused by this load
        self._unsaved = False  # orders made since the index file was written

    # -- reading and writing the index file -------------------------------------------------------
    def _load(self) -> dict[str, list]:
        try:
            stored = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("header index %s unreadable (%s): headers are read again", self.path, type(exc).__name__)
            return {}
        if not isinstance(stored, dict) or stored.get("format") != FORMAT or not isinstance(stored.get("files"), dict):
            return {}
        if isinstance(stored.get("series"), dict):  # absent in index files written before orders were kept
            self._series = stored["series"]
        return stored["files"]

    def _save(self, prune: bool = False) -> None:
        """Write the index file; ``prune`` drops the stored orders this load did not use once they
        outnumber the used ones (a cohort whose files keep changing does not grow it without bound)."""
        if prune and len(self._series) > 2 * len(self._used):
            self._series = {k: v for k, v in self._series.items() if k in self._used}
        text = json.dumps({"format": FORMAT, "files": self._entries, "series": self._series}, separators=(",", ":"))
        try:
            write_text(self.path, text)
            self._unsaved = False
        except OSError as exc:
            log.warning("header index %s not written (%s): the next load reads the headers again", self.path,
                        exc.strerror or type(exc).__name__)

    def flush(self) -> None:
        """Write the orders made by :meth:`order` since the index file was last written (if any)."""
        if self._unsaved:
            self._save(prune=True)

    def _key(self, path: str) -> str:
        prefix = str(self.root) + os.sep
        if os.sep == "/" and path.startswith(prefix) and "/." not in path and "//" not in path and not path.endswith("/"):
            return path[len(prefix):]  # already absolute and normal (abspath would return it as it is)
        absolute = os.path.abspath(path)
        return absolute[len(prefix):] if absolute.startswith(prefix) else absolute

    # -- scanning ------------------------------------------------------------------------------------
    def update(self, paths: Sequence[str], *, workers: int | None = None) -> int:
        """Make every file of ``paths`` fresh in the index (reading the new and changed ones); returns the
        number of headers read."""
        todo: list[tuple[str, str, list]] = []
        for p in dict.fromkeys(str(p) for p in paths):
            try:
                st = os.stat(p)
            except OSError:
                self._fresh.pop(p, None)
                continue
            stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
            key = self._key(p)
            stored = self._entries.get(key)
            if stored is not None and stored[:3] == stamp:
                self._fresh[p] = _unpack(stored[3])
                self._stamps[p] = tuple(stamp)
            else:
                todo.append((p, key, stamp))
        if not todo:
            return 0
        entries = _read_all([p for p, _, _ in todo], workers)
        for (p, key, stamp), packed in zip(todo, entries):
            self._entries[key] = [*stamp, packed]
            self._fresh[p] = _unpack(packed)
            self._stamps[p] = tuple(stamp)
        self.n_read += len(todo)
        self._save()
        return len(todo)

    # -- using it ------------------------------------------------------------------------------------
    def order(self, paths: Sequence[str]) -> list[tuple[str, float]]:
        """:func:`~trainables.data.images.order_series` of ``paths`` from the indexed headers; the same
        result and the same ``ImageReadError`` (the first unreadable file of ``paths``) as reading them.
        Paths not in the index, and series that are not all DICOM, are handed to ``order_series``.
        A series whose files are all unchanged since an earlier load takes the order stored then."""
        paths = [str(p) for p in paths]
        fresh = self._fresh
        if not paths or any(p not in fresh for p in paths):
            return order_series(paths)
        fields = [fresh[p] for p in paths]
        if None in fields:  # non-DICOM files: ordered by name, or a mixed series error
            return order_series(paths)
        for p, f in zip(paths, fields):
            if isinstance(f, str):
                raise ImageReadError(p, f)
        ranked = sorted(paths)  # the order's files, as ranks in this list
        if len(set(ranked)) < len(ranked):  # a path given twice: nothing to store it under
            return order_series(paths, headers=dict(zip(paths, fields)))
        digest = self._series_digest(ranked)
        stored = self._series.get(digest)
        if _well_formed(stored, len(ranked)):
            ranks, values, warned = stored
            self._used.add(digest)
            if warned is not None:
                log_mixed_orientation(*warned[:3], ranked[warned[3]])
            return [(ranked[r], float(v)) for r, v in zip(ranks, values)]
        mixed: list = []
        ordered = order_series(paths, headers=dict(zip(paths, fields)), mixed=mixed)
        rank = {p: r for r, p in enumerate(ranked)}
        warned = [*mixed[0][:3], rank[mixed[0][3]]] if mixed else None
        self._series[digest] = [[rank[p] for p, _ in ordered], [v for _, v in ordered], warned]
        self._used.add(digest)
        self._unsaved = True
        return ordered

    def _series_digest(self, ranked: list[str]) -> str:
        """What a series' stored order depends on: its files (paths as given, size, mtime, inode) and
        the ordering code."""
        h = hashlib.blake2b(_ordering_code(), digest_size=16)
        for p in ranked:
            h.update(f"{p}\0{self._stamps[p]}\0".encode())
        return h.hexdigest()


def _well_formed(stored, n: int) -> bool:
    """Whether ``stored`` is a usable order of ``n`` files (an index file edited by hand is not trusted)."""
    if not (isinstance(stored, list) and len(stored) == 3):
        return False
    ranks, values, warned = stored
    return (isinstance(ranks, list) and isinstance(values, list) and len(ranks) == len(values) == n
            and sorted(ranks) == list(range(n)) and all(isinstance(v, (int, float)) for v in values)
            and (warned is None or (isinstance(warned, list) and len(warned) == 4
                                    and all(isinstance(w, int) for w in warned) and 0 <= warned[3] < n)))


_CODE: list[bytes] = []


def _ordering_code() -> bytes:
    """A digest of ``images.py``, where ``order_series`` lives: stored orders are not reused across a
    change to how series are ordered."""
    if not _CODE:
        try:
            code = Path(images.__file__).read_bytes()
        except (OSError, TypeError):  # no source file (a frozen install): the module's compiled functions
            code = b"".join(f.__code__.co_code for f in vars(images).values() if hasattr(f, "__code__"))
        _CODE.append(hashlib.blake2b(code, digest_size=16).digest())
    return _CODE[0]


# -- reading headers (run in pool workers: module-level functions) ------------------------------------
def _read_all(paths: list[str], workers: int | None) -> list:
    """The packed entries of ``paths``, in order, read in parallel."""
    workers = workers or min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    if workers <= 1 or len(chunks) == 1:
        return [e for chunk in chunks for e in _read_chunk(chunk)]
    if len(paths) >= PROCESS_MIN and sys.platform.startswith("linux") and threading.active_count() == 1:
        import multiprocessing
        from concurrent.futures.process import BrokenProcessPool

        # fork, only from a single-threaded process (a forked copy of held locks could deadlock);
        # spawn is avoided since it re-runs the caller's script in each worker
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                return [e for part in pool.map(_read_chunk, chunks) for e in part]
        except (BrokenProcessPool, OSError) as exc:  # no processes to be had here: threads
            log.warning("header scan: process pool unavailable (%s); reading with threads", type(exc).__name__)
    with ThreadPoolExecutor(workers) as pool:  # overlaps file I/O (network file systems); parsing holds the GIL
        return [e for part in pool.map(_read_chunk, chunks) for e in part]


def _read_chunk(paths: list[str]) -> list:
    return [_read_entry(p) for p in paths]


def _read_entry(path: str):
    """One file's packed entry: None (not DICOM), a reason string (unreadable header) or
    ``[instance, position, orientation]`` as finite floats or None."""
    try:
        if not is_dicom(path):
            return None
        ds = read_header(path)
    except ImageReadError as exc:
        return exc.reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        instance = _numbers(ds, "InstanceNumber", None)
        position = _numbers(ds, "ImagePositionPatient", 3)
        orientation = _numbers(ds, "ImageOrientationPatient", 6)
    return [instance, position, orientation]


def _numbers(ds, keyword: str, length: int | None):
    """The element ``keyword`` as finite floats: the first value when ``length`` is None, else exactly
    ``length`` values; None when absent, malformed or of another length (never the raw text)."""
    try:
        value = ds.get(keyword)
        if value is None:
            return None
        values = list(value) if not isinstance(value, (str, bytes)) and hasattr(value, "__len__") else [value]
        if length is None:  # the first value only, as ordering reads it
            values = values[:1]
        numbers = [float(v) for v in values]
    except Exception:  # malformed elements (pydicom raises several types) count as absent
        return None
    if not all(math.isfinite(v) for v in numbers):
        return None
    if length is None:
        return numbers[0] if numbers else None
    return numbers if len(numbers) == length else None


def _unpack(packed):
    """A stored entry as ``order_series`` header fields (a dict), a reason string, or None."""
    if packed is None or isinstance(packed, str):
        return packed
    instance, position, orientation = packed
    return {"InstanceNumber": instance, "ImagePositionPatient": position, "ImageOrientationPatient": orientation}
