"""Setting aside the image files an adapter cannot read: the one quarantine check every adapter uses.

A quarantined file is recorded as ``{"path": ..., "reason": ...}`` in ``cohort.quarantine`` and the cohort
goes on without it; with ``strict=True`` the adapter raises a :class:`CohortError` naming it instead. A reason
names the failure type only, never a header value.

Two depths of check, chosen by the adapter for its scale:

- :func:`probe_image` (cheap: a DICOM header followed by data, or Pillow's ``verify``), used through
  :func:`check_instances`, for tables of hundreds of thousands of images (CheXpert, IU-Xray);
- :func:`unreadable` (the first frame decoded in full by :func:`read_slice`, verdicts remembered per
  path/size/mtime), for small cohorts (manifest, knee, COVID);

and :func:`order_or_quarantine` for series ordered by their headers (RSNA).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .cohort import CohortError
from .images import ImageReadError, order_series, quiet_pydicom, read_slice

__all__ = ["INSTANCE_COLUMNS", "check_instances", "order_or_quarantine", "pixel_hash", "probe_image", "unreadable"]

log = logging.getLogger(__name__)

INSTANCE_COLUMNS = ["sample_id", "modality", "order", "path", "frame"]
_VERDICTS: dict[tuple[str, int, int], str | None] = {}  # (path, size, mtime_ns) -> reason or None
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> hash of the first frame's decoded pixels


def probe_image(path: str) -> str | None:
    """Why the image file at ``path`` cannot be opened, or None.

    A cheap check, so that a load over hundreds of thousands of images stays fast: DICOM files must
    have a readable header followed by more data (the pixels); raster files must open with Pillow and
    pass its ``verify`` (PNG chunk checksums included). A file damaged only inside its compressed
    pixels is caught later, by ``read_slice`` at embedding time. The reason names the failure type only,
    never a header value.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(132)
            if not head:
                return "empty file (0 bytes)"
            if head[128:132] == b"DICM" or Path(path).suffix.lower() in (".dcm", ".dicom"):
                import pydicom

                f.seek(0)
                with quiet_pydicom():
                    pydicom.dcmread(f, force=True, stop_before_pixels=True)
                return None if f.read(1) else "not a DICOM image: the file ends before any pixel data"
        with Image.open(path) as img:
            img.verify()
    except Exception as exc:  # pydicom and Pillow raise many types for damaged input
        return f"not a readable image ({type(exc).__name__})"
    return None


def check_instances(rows: pd.DataFrame, *, name: str, strict: bool = False) -> tuple[pd.DataFrame, list[dict], int]:
    """Keep the rows (``sample_id``, ``modality``, ``path``, in order) whose file is there and opens
    (:func:`probe_image`).

    Returns the instances table (``order`` counts within sample and modality, ``frame`` 0), the
    quarantine records and the number of absent files. Absent files are logged once, as a count;
    unreadable ones are quarantined, or raise ``CohortError`` with ``strict``.
    """
    there = rows["path"].map(os.path.isfile).astype(bool)
    n_missing = int((~there).sum())
    if n_missing:
        log.warning("%s: %d of %d image file(s) absent, counted as missing instances; e.g. %s",
                    name, n_missing, len(rows), rows["path"][~there].iloc[0])
    rows = rows[there]
    reasons = [probe_image(p) for p in rows["path"]]
    quarantine = [{"path": p, "reason": r} for p, r in zip(rows["path"], reasons) if r is not None]
    if quarantine and strict:
        raise CohortError(f"{quarantine[0]['path']}: {quarantine[0]['reason']}")
    if quarantine:
        log.warning("%s: %d unreadable image file(s) quarantined; e.g. %s: %s", name, len(quarantine),
                    quarantine[0]["path"], quarantine[0]["reason"])
    rows = rows[np.array([r is None for r in reasons], dtype=bool)].reset_index(drop=True)
    rows["order"] = rows.groupby(["sample_id", "modality"]).cumcount().astype(np.int64)
    rows["frame"] = np.int64(0)
    return rows[INSTANCE_COLUMNS], quarantine, n_missing


def unreadable(paths: Sequence[str]) -> dict[str, str]:
    """``{path: reason}`` for each file :func:`read_slice` cannot read (first frame decoded in full).

    Verdicts are remembered for the process, keyed by path, size and modification time, so loading a
    cohort again does not decode every image again; a file that changes is read afresh."""
    bad = {}
    for p in dict.fromkeys(paths):
        reason = _verdict(p)
        if reason is not None:
            bad[p] = reason
    return bad


def _verdict(path: str) -> str | None:
    """Why ``path`` cannot be read, or None; memoised in ``_VERDICTS``."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot open file ({exc.strerror or type(exc).__name__})"
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _VERDICTS:
        try:
            _HASHES[key] = _hash(read_slice(path, 0))
            _VERDICTS[key] = None
        except ImageReadError as exc:
            _VERDICTS[key] = exc.reason
    return _VERDICTS[key]


def pixel_hash(path: str) -> str | None:
    """A hash of the decoded pixels (first frame, as :func:`read_slice` returns them, with their shape) of
    the image at ``path``, or None if it cannot be read: two files holding the same picture (a copy, or
    the same pixels in another container) hash alike. Remembered like the verdicts of :func:`unreadable`."""
    if _verdict(path) is not None:
        return None
    st = os.stat(path)
    return _HASHES.get((path, st.st_size, st.st_mtime_ns))


def _hash(pixels: np.ndarray) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(repr(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels, dtype=np.float32).tobytes())
    return h.hexdigest()


def order_or_quarantine(files: list[str], quarantine: list[dict], strict: bool, index=None) -> list[tuple[str, float]]:
    """``order_series(files)``, setting aside in ``quarantine`` each file whose header it cannot read (one
    at a time: the error names the file) until the rest orders; ``strict`` raises on the first instead.
    ``index``: a :class:`~trainables.data.header_index.HeaderIndex` holding the files' headers (read once)."""
    remaining = list(files)
    while remaining:
        try:
            return index.order(remaining) if index is not None else order_series(remaining)
        except ImageReadError as exc:
            if strict or exc.path not in remaining:
                raise CohortError(f"{exc.path}: unreadable image file ({exc.reason}); strict=True stops here, "
                                  f"strict=False would quarantine it") from None
            quarantine.append({"path": exc.path, "reason": exc.reason})
            remaining.remove(exc.path)
    return []
