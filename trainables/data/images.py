"""Read one 2-D image slice from DICOM, common raster formats or ``.npy``; order DICOM series.

``read_slice`` returns pixels only, as a float32 ``(H, W)`` array:

- DICOM: decoded with pydicom (JPEG baseline/lossless/2000 through pylibjpeg when installed), one
  frame of a multi-frame file, the modality LUT applied (Rescale Slope/Intercept, also from the
  functional groups of enhanced multi-frame files), MONOCHROME1 inverted so that high means bright,
  colour averaged to grey. No VOI/window is applied: windowing is a separate preprocessing step,
  and ``window_from_header`` exposes the stored window for it.
- PNG/JPEG/BMP/TIFF through Pillow: 8-bit and colour images become 8-bit grey ('L'); 16-bit, 32-bit
  integer and float images keep their values.
- ``.npy``: a 2-D array, or a 3-D array indexed by frame on axis 0.

``order_series`` sorts the files of one series by their position along the slice normal, falling back
to Instance Number and then to the natural order of file names.

Privacy: nothing here returns, logs or prints a header field beyond geometry, ordering and window
numbers. pydicom warnings (which can quote element values) are silenced while reading, and every
failure is raised as ``ImageReadError`` with a reason written here or taken from the decoder, never
from a header value.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array

__all__ = ["ImageReadError", "read_slice", "order_series", "window_from_header"]

_RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
# Pillow modes whose values are kept as they are instead of being squeezed to 8-bit grey.
_HIGH_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class ImageReadError(ValueError):
    """An image could not be read; the message is ``f"{path}: {reason}"``."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def read_slice(path: str, frame: int = 0) -> np.ndarray:
    """Return frame ``frame`` of the image at ``path`` as a 2-D float32 array ``(H, W)``.

    Raises ``ImageReadError`` for any failure: missing, truncated or corrupt file, no pixel data,
    unsupported compression, an out-of-range frame, a result that is not 2-D or not finite.
    """
    kind = _kind(path)
    if kind == "dicom":
        image = _read_dicom(path, frame)
    elif kind == "npy":
        image = _read_npy(path, frame)
    else:
        image = _read_raster(path, frame)
    if image.ndim != 2:
        raise ImageReadError(path, f"expected a 2-D image, got shape {image.shape}")
    if image.size == 0:
        raise ImageReadError(path, "image is empty")
    image = np.ascontiguousarray(image, dtype=np.float32)
    if not np.isfinite(image).all():
        raise ImageReadError(path, "image contains NaN or infinite values")
    return image


def window_from_header(path: str) -> tuple[float, float] | None:
    """Return the DICOM (Window Center, Window Width), first value of each, or None.

    None for non-DICOM files and for DICOM files without a usable window. An unreadable DICOM header
    raises ``ImageReadError``.
    """
    if _kind(path) != "dicom":
        return None
    ds = _read_header(path)
    center = _first_number(ds.get("WindowCenter"))
    width = _first_number(ds.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    return center, width


def order_series(paths: list[str]) -> list[tuple[str, float]]:
    """Sort the files of one series into slice order; return ``(path, order_value)`` ascending.

    DICOM files (headers only are read):

    - when every file has Image Position and Image Orientation (Patient), the order value is the
      position projected on the slice normal ``cross(row_cosines, column_cosines)``; the normal is
      taken from the file that comes first in natural path order, so the result does not depend on
      the order of ``paths``;
    - otherwise, when every file has an Instance Number, the order value is that number;
    - otherwise the files are in natural file-name order and the order value is the index.

    Ties are broken by Instance Number, then path. Non-DICOM files (PNG, ``.npy``, ...) are in
    natural file-name order with the index as order value. A series mixing DICOM and non-DICOM files,
    or a DICOM file whose header cannot be read, raises ``ImageReadError``.
    """
    paths = [str(p) for p in paths]
    if not paths:
        return []
    other = [p for p in paths if _kind(p) != "dicom"]
    if len(other) == len(paths):
        return _by_name(paths)
    if other:
        raise ImageReadError(other[0], "series mixes DICOM and non-DICOM files")

    headers = {p: _read_header(p) for p in paths}
    instance = {p: _first_number(headers[p].get("InstanceNumber")) for p in paths}
    positions = {p: _vector(headers[p].get("ImagePositionPatient"), 3) for p in paths}
    normals = {p: _slice_normal(headers[p].get("ImageOrientationPatient")) for p in paths}
    normal = normals[min(paths, key=_natural_key)]

    if all(v is not None for v in (*positions.values(), *normals.values())):
        values = {p: float(np.dot(positions[p], normal)) for p in paths}
    elif all(v is not None for v in instance.values()):
        values = dict(instance)
    else:
        return _by_name(paths)

    def key(p: str) -> tuple[float, float, str]:
        tie = instance[p] if instance[p] is not None else float("inf")
        return values[p], tie, p

    return [(p, values[p]) for p in sorted(paths, key=key)]


def _kind(path: str) -> str:
    """Return 'dicom', 'npy' or 'raster' from the content (DICM preamble) or else the suffix."""
    try:
        with open(path, "rb") as f:
            preamble = f.read(132)
    except OSError as exc:
        raise ImageReadError(path, f"cannot open file ({exc.strerror or type(exc).__name__})")
    if preamble[128:132] == b"DICM":
        return "dicom"
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        return "npy"
    if suffix in _RASTER_SUFFIXES:
        return "raster"
    return "dicom"


def _read_header(path: str) -> Dataset:
    """Read a DICOM header up to the pixel data, or raise ``ImageReadError``.

    pydicom stops silently at the end of a truncated file, so the header is only accepted when the
    file goes on after it (pydicom leaves the stream at the pixel data element).
    """
    with open(path, "rb") as f:
        ds = _dcmread(path, f, stop_before_pixels=True)
        if not f.read(1):
            raise ImageReadError(path, "file ends before any pixel data (truncated or not an image)")
    return ds


def _dcmread(path: str, source, stop_before_pixels: bool = False) -> Dataset:
    """``pydicom.dcmread(source)`` (``path`` or an open file of it) with warnings silenced and every
    failure turned into ``ImageReadError``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(source, force=True, stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # pydicom raises many types for malformed input
        raise ImageReadError(path, f"not a readable DICOM file ({_describe(exc)})") from None


def _read_dicom(path: str, frame: int) -> np.ndarray:
    """Decode one frame of a DICOM file: modality LUT, MONOCHROME1 inversion, colour to grey."""
    ds = _dcmread(path, path)
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise ImageReadError(path, "no pixel data")
    fast = _uncompressed_mono(ds, path)
    if fast is not None:
        _check_frame(path, frame, 1)
        return fast
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n_frames = int(ds.get("NumberOfFrames") or 1)
            _check_frame(path, frame, n_frames)
            arr = pixel_array(ds, index=frame if n_frames > 1 else None)
            photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
            if photometric == "PALETTE COLOR":
                arr = apply_color_lut(arr, ds).mean(axis=-1)
            elif arr.ndim == 3 and int(ds.get("SamplesPerPixel") or 1) > 1:
                arr = arr.mean(axis=-1)
            else:
                arr = _rescale(arr, ds, frame)
    except ImageReadError:
        raise
    except Exception as exc:  # decoder, plugin and malformed-element errors alike
        raise ImageReadError(path, f"cannot decode pixel data ({_describe(exc)})") from None
    arr = np.asarray(arr, dtype=np.float64)
    if photometric == "MONOCHROME1":
        arr = arr.max() + arr.min() - arr
    return arr


_NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # implicit / explicit VR little endian


def _uncompressed_mono(ds: Dataset, path: str) -> np.ndarray | None:
    """Fast path for the common case (uncompressed, single-frame, monochrome, 8/16-bit, plain
    rescale): the pixel bytes viewed with numpy, then the same arithmetic as the modality LUT.
    Anything else returns None and takes the general path."""
    try:
        if (str(ds.file_meta.get("TransferSyntaxUID", "")) not in _NATIVE_LE or "PixelData" not in ds
                or int(ds.get("SamplesPerPixel") or 1) != 1 or int(ds.get("NumberOfFrames") or 1) != 1
                or ds.get("ModalityLUTSequence") or "PerFrameFunctionalGroupsSequence" in ds
                or "SharedFunctionalGroupsSequence" in ds):
            return None
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        bits, stored = int(ds.BitsAllocated), int(ds.get("BitsStored") or ds.BitsAllocated)
        if photometric not in ("MONOCHROME1", "MONOCHROME2") or bits not in (8, 16) or stored != bits:
            return None
        dtype = {(8, 0): np.uint8, (8, 1): np.int8, (16, 0): "<u2", (16, 1): "<i2"}[(bits, int(ds.PixelRepresentation))]
        rows, cols = int(ds.Rows), int(ds.Columns)
        raw = np.frombuffer(ds.PixelData, dtype=dtype)
        if raw.size < rows * cols:
            raise ImageReadError(path, f"pixel data holds {raw.size} values, expected {rows}x{cols}")
        arr = raw[: rows * cols].reshape(rows, cols).astype(np.float64)
    except ImageReadError:
        raise
    except Exception:  # odd headers: let the general path decide and report
        return None
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        arr = arr * float(ds.get("RescaleSlope", 1.0)) + float(ds.get("RescaleIntercept", 0.0))
    if photometric == "MONOCHROME1":
        arr = arr.max() + arr.min() - arr
    return arr


def _rescale(arr: np.ndarray, ds: Dataset, frame: int) -> np.ndarray:
    """Apply the modality LUT: top-level LUT or rescale, else the enhanced functional groups'."""
    if ds.get("ModalityLUTSequence") or "RescaleSlope" in ds:
        return apply_modality_lut(arr, ds)
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame),
                          ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups) or []
        transform = items[index].get("PixelValueTransformationSequence") if index < len(items) else None
        if transform:
            slope = float(transform[0].get("RescaleSlope", 1.0))
            intercept = float(transform[0].get("RescaleIntercept", 0.0))
            return arr.astype(np.float64) * slope + intercept
    return arr


def _read_npy(path: str, frame: int) -> np.ndarray:
    """Load a 2-D array, or frame ``frame`` of a 3-D array (frames on axis 0)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # truncated, corrupt or pickled content
        raise ImageReadError(path, f"not a readable .npy file ({_describe(exc)})") from None
    if not isinstance(arr, np.ndarray):
        raise ImageReadError(path, "not a single array (an .npz archive?)")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype == bool):
        raise ImageReadError(path, f"unsupported array dtype {arr.dtype}")
    if arr.ndim == 3:
        _check_frame(path, frame, arr.shape[0])
        return arr[frame]
    if arr.ndim == 2:
        _check_frame(path, frame, 1)
    return arr


def _read_raster(path: str, frame: int) -> np.ndarray:
    """Read a PNG/JPEG/BMP/TIFF page with Pillow as grey, keeping high-depth values."""
    try:
        with Image.open(path) as img:
            _check_frame(path, frame, getattr(img, "n_frames", 1))
            img.seek(frame)
            img.load()
            if img.mode not in _HIGH_DEPTH_MODES:
                img = img.convert("L")
            return np.asarray(img)
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, DecompressionBombError, ...
        raise ImageReadError(path, f"not a readable image ({_describe(exc)})") from None


def _check_frame(path: str, frame: int, n_frames: int) -> None:
    """Raise ``ImageReadError`` unless ``0 <= frame < n_frames``."""
    if not 0 <= frame < n_frames:
        raise ImageReadError(path, f"frame {frame} out of range: the file has {n_frames} frame(s)")


def _by_name(paths: list[str]) -> list[tuple[str, float]]:
    """Order by natural file-name order, the index as order value."""
    return [(p, float(i)) for i, p in enumerate(sorted(paths, key=_natural_key))]


def _natural_key(path: str) -> tuple:
    """Sort key putting 'img2' before 'img10': file name first, then the full path."""
    def split(text: str) -> list:
        return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower())
                for t in re.split(r"(\d+)", text) if t]

    return split(Path(path).name), split(path)


def _first_number(value) -> float | None:
    """First value of a (possibly multi-valued) numeric element as a finite float, or None."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        value = value[0] if len(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _vector(value, length: int) -> np.ndarray | None:
    """A finite float vector of ``length`` values from a multi-valued element, or None."""
    try:
        vec = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return vec if vec.shape == (length,) and np.isfinite(vec).all() else None


def _slice_normal(orientation) -> np.ndarray | None:
    """Unit normal ``cross(row, column)`` from Image Orientation (Patient), or None if unusable."""
    cosines = _vector(orientation, 6)
    if cosines is None:
        return None
    normal = np.cross(cosines[:3], cosines[3:])
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 1e-6 else None


def _describe(exc: Exception) -> str:
    """One short line naming an exception: its type and the first line of its message."""
    message = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
