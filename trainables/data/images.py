"""Read one 2-D image slice from DICOM, common raster formats or ``.npy``; order DICOM series.

``read_slice`` returns pixels only, as a float32 ``(H, W)`` array:

- DICOM: decoded with pydicom (JPEG baseline/extended/lossless, JPEG-LS and JPEG 2000 through
  pylibjpeg, RLE natively), one frame of a multi-frame file, the modality LUT applied (Rescale
  Slope/Intercept, also from the functional groups of enhanced multi-frame files), MONOCHROME1
  inverted so that high means bright, colour (RGB, YBR, palette) to grey by ITU-R BT.601 luma, the
  weights Pillow uses, so a picture reads alike from DICOM and PNG. Pixel data shorter than the
  header promises (a truncated file) is an error, never a silently padded image.
- PNG/JPEG/BMP/TIFF through Pillow: 8-bit and colour images become 8-bit grey ('L'); 16-bit, 32-bit
  integer and float images keep their values.
- ``.npy``: a 2-D array, or a 3-D array indexed by frame on axis 0.

No VOI (display window) is applied by ``read_slice``: windowing is the ``window`` preprocessing step.
``read_slice_with_voi`` returns the slice together with its file's VOI transform (``Voi``: the VOI LUT
or Window Center/Width and function of that frame, numbers only) for that step.

``order_series`` sorts the files of one series by their position along the slice normal, falling back
to Instance Number and then to the natural order of file names.

Privacy: nothing here returns, logs or prints a header field beyond geometry, ordering and window
numbers. pydicom warnings (which can quote element values) are silenced while reading, and every
failure is raised as ``ImageReadError`` with a reason written here or taken from the decoder with
every quoted value redacted, so never a header value.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, pixel_array

__all__ = ["READER_VERSION", "ImageReadError", "Voi", "describe_error", "frame_count", "is_dicom", "log_mixed_orientation",
           "order_series", "quiet_pydicom", "read_header", "read_slice", "read_slice_with_voi", "window_from_header"]

log = logging.getLogger(__name__)

# Part of every image embedding cache key: bump it when read_slice returns different pixels for some
# file, so that embeddings of the old pixels are not reused. 2: colour to grey by BT.601 luma.
READER_VERSION = 2

_RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
# Pillow modes whose values are kept as they are instead of being squeezed to 8-bit grey.
_HIGH_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as Pillow's convert("L")
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


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
    return _read(path, frame, with_voi=False)[0]


def read_slice_with_voi(path: str, frame: int = 0) -> tuple[np.ndarray, Voi | None]:
    """``read_slice`` plus the VOI transform of that frame (None for non-DICOM files, colour images
    and DICOM files without a usable VOI LUT or window), from one read of the file."""
    return _read(path, frame, with_voi=True)


@dataclass(frozen=True, eq=False)
class Voi:
    """A DICOM VOI transform (PS3.3 C.11.2) reduced to numbers, mapping ``read_slice`` output to [0, 1].

    ``function`` is "LUT" (a VOI LUT: ``lut`` holds its entries scaled to [0, 1], ``first_mapped`` the
    input value of the first entry) or a window function, "LINEAR", "LINEAR_EXACT" or "SIGMOID", of
    ``center`` and ``width``. ``monochrome1``: the file is MONOCHROME1, whose window is defined on
    the stored values that ``read_slice`` inverted; ``apply`` undoes the inversion (it is its own
    inverse, ``max + min - x``), applies the window, and inverts the result so that bright stays bright.
    """

    function: str
    center: float = 0.0
    width: float = 1.0
    first_mapped: int = 0
    lut: np.ndarray | None = None
    monochrome1: bool = False

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The transform applied to a ``read_slice`` output: float32 in [0, 1]."""
        x = np.asarray(image, dtype=np.float64)
        if self.monochrome1:
            x = x.max() + x.min() - x
        c, w = self.center, self.width
        if self.function == "LUT":
            index = np.clip(np.rint(x) - self.first_mapped, 0, len(self.lut) - 1).astype(np.intp)
            y = self.lut[index]
        elif self.function == "LINEAR_EXACT":
            y = (x - c) / w + 0.5
        elif self.function == "SIGMOID":
            y = 1.0 / (1.0 + np.exp(np.clip(-4.0 * (x - c) / w, -60, 60)))
        else:  # LINEAR: C.11.2.1.2.1, a width of 1 is a threshold at center - 0.5
            y = (x - (c - 0.5)) / (w - 1) + 0.5 if w > 1 else (x > c - 0.5).astype(np.float64)
        y = np.clip(y, 0.0, 1.0)
        return (1.0 - y if self.monochrome1 else y).astype(np.float32)


def _read(path: str, frame: int, with_voi: bool) -> tuple[np.ndarray, Voi | None]:
    """Read and check one slice; the VOI transform too when ``with_voi``."""
    kind = _kind(path)
    voi = None
    if kind == "dicom":
        with quiet_pydicom():
            image, ds = _read_dicom(path, frame)
            voi = _voi(ds, frame) if with_voi else None
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
    return image, voi


def window_from_header(path: str) -> tuple[float, float] | None:
    """Return the DICOM (Window Center, Window Width), first value of each, or None.

    None for non-DICOM files and for DICOM files without a usable window. An unreadable DICOM header
    raises ``ImageReadError``.
    """
    if _kind(path) != "dicom":
        return None
    with quiet_pydicom():
        ds = _read_header(path)
        center = _first_number(ds.get("WindowCenter"))
        width = _first_number(ds.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    return center, width


def order_series(paths: list[str], headers=None, *, mixed: list | None = None) -> list[tuple[str, float]]:
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

    ``headers``: ``{path: fields}`` already read for every path (anything with ``.get(keyword)``, e.g.
    the numbers kept by :mod:`trainables.data.header_index`); the files are then taken as DICOM and
    not opened.

    ``mixed``: a list that receives the arguments of :func:`log_mixed_orientation` when the series
    mixes orientations (it is logged either way), for a caller that replays the warning later.
    """
    paths = [str(p) for p in paths]
    if not paths:
        return []
    other = [] if headers is not None else [p for p in paths if _kind(p) != "dicom"]
    if len(other) == len(paths):
        return _by_name(paths)
    if other:
        raise ImageReadError(other[0], "series mixes DICOM and non-DICOM files")

    with quiet_pydicom():  # element values are converted on access: a malformed one warns, quoting it
        headers = headers if headers is not None else {p: _read_header(p) for p in paths}
        instance = {p: _first_number(headers[p].get("InstanceNumber")) for p in paths}
        positions = {p: _vector(headers[p].get("ImagePositionPatient"), 3) for p in paths}
        normals = {p: _slice_normal(headers[p].get("ImageOrientationPatient")) for p in paths}
    normal = normals[min(paths, key=_natural_key)]
    warned = _warn_mixed_orientation(normals)
    if warned is not None and mixed is not None:
        mixed.append(warned)

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


def frame_count(path: str) -> int:
    """How many frames the image at ``path`` holds: DICOM Number of Frames (header only), the pages of a
    raster file, axis 0 of a 3-D ``.npy``; 1 otherwise. An unreadable file raises ``ImageReadError``."""
    kind = _kind(path)
    if kind == "dicom":
        with quiet_pydicom():
            n = _first_number(_read_header(path).get("NumberOfFrames"))
        return max(1, int(n)) if n is not None else 1
    if kind == "npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise ImageReadError(path, f"not a readable .npy file ({describe_error(exc)})") from None
        return int(arr.shape[0]) if arr.ndim == 3 else 1
    try:
        with Image.open(path) as img:
            return int(getattr(img, "n_frames", 1))
    except Exception as exc:
        raise ImageReadError(path, f"not a readable image ({describe_error(exc)})") from None


def _warn_mixed_orientation(normals: dict[str, np.ndarray | None]) -> tuple | None:
    """Log a warning when the slices of one series do not share one orientation (a scout or localizer
    among them): the count and the odd files' paths, never a header value. Returns what was logged
    (:func:`log_mixed_orientation`'s arguments), or None."""
    known = {p: n for p, n in normals.items() if n is not None}
    if len(known) < 2:
        return None
    groups: list[list[str]] = []  # files grouped by (nearly) parallel normals
    for p in sorted(known, key=_natural_key):
        for g in groups:
            if abs(float(np.dot(known[g[0]], known[p]))) > 0.99:
                g.append(p)
                break
        else:
            groups.append([p])
    if len(groups) > 1:
        groups.sort(key=len, reverse=True)
        odd = [p for g in groups[1:] for p in g]
        log_mixed_orientation(len(groups), len(odd), len(known), odd[0])
        return len(groups), len(odd), len(known), odd[0]
    return None


def log_mixed_orientation(n_orientations: int, n_odd: int, n_slices: int, example: str) -> None:
    """The warning for a series whose slices do not share one orientation: counts and one odd file's path."""
    log.warning("one series mixes %d orientations: %d of %d slices differ from the main one (a scout or "
                "localizer among the slices?), e.g. %s", n_orientations, n_odd, n_slices, example)


def is_dicom(path: str) -> bool:
    """Whether ``path`` is read as DICOM (a DICM preamble, or a suffix that is not .npy or a raster one);
    ``ImageReadError`` if it cannot be opened."""
    return _kind(path) == "dicom"


def read_header(path: str) -> Dataset:
    """The DICOM header of ``path`` up to its pixel data; ``ImageReadError`` if unreadable or truncated.
    For callers that keep numbers from it at once (the header index): never log or store it whole."""
    return _read_header(path)


def _kind(path: str) -> str:
    """Return 'dicom', 'npy' or 'raster' from the content (DICM preamble) or else the suffix."""
    try:
        with open(path, "rb") as f:
            preamble = f.read(132)
    except OSError as exc:
        raise ImageReadError(path, f"cannot open file ({exc.strerror or type(exc).__name__})")
    if not preamble:
        raise ImageReadError(path, "empty file (0 bytes)")
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
            raise ImageReadError(path, _why_no_pixels(path, ds))
    return ds


def _dcmread(path: str, source, stop_before_pixels: bool = False) -> Dataset:
    """``pydicom.dcmread(source)`` (``path`` or an open file of it) with warnings silenced and every
    failure turned into ``ImageReadError``."""
    try:
        with quiet_pydicom():
            return pydicom.dcmread(source, force=True, stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # pydicom raises many types for malformed input
        what = "not a readable DICOM file" if _has_preamble(path) else "not a DICOM file"
        raise ImageReadError(path, f"{what} ({describe_error(exc)})") from None


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings and its ``pydicom`` logger inside the block: both quote element values
    (``Invalid value for VR IS: '...'``), which may identify a person. Every header read goes through it."""
    logger = logging.getLogger("pydicom")
    drop = _DropAll()
    logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.removeFilter(drop)


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


_PIXEL_TAG_BYTES = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010) little / big endian
_IMAGE_KEYWORDS = ("SOPClassUID", "Rows", "Columns", "Modality", "StudyInstanceUID", "SeriesInstanceUID")


def _has_preamble(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _why_no_pixels(path: str, ds: Dataset) -> str:
    """Why a file read as DICOM has no pixel data: not DICOM at all, pixel data cut short (a truncated
    file: pydicom stops silently at an element that ends early), or a DICOM object without an image."""
    if not _has_preamble(path) and not any(k in ds for k in _IMAGE_KEYWORDS):
        return "not a DICOM file (no DICM preamble and no DICOM image elements)"
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        return f"cannot open file ({exc.strerror or type(exc).__name__})"
    if any(tag in raw for tag in _PIXEL_TAG_BYTES):
        return "truncated pixel data: the file ends before the pixel data element does"
    meta_len = getattr(getattr(ds, "file_meta", None), "FileMetaInformationGroupLength", None)
    if _has_preamble(path) and (meta_len is None or len(raw) < 132 + 12 + int(meta_len)):
        return "truncated: the file ends inside its header (file meta information cut short)"
    return "a DICOM file without pixel data (not an image object)"


def _read_dicom(path: str, frame: int) -> tuple[np.ndarray, Dataset]:
    """Decode one frame of a DICOM file: modality LUT, MONOCHROME1 inversion, colour to grey.
    Returns the pixels and the dataset (for ``_voi``)."""
    ds = _dcmread(path, path)
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise ImageReadError(path, _why_no_pixels(path, ds))
    _rescale_numbers(ds, path)  # a non-numeric slope or intercept: a reason, never the value
    fast = _uncompressed_mono(ds, path)
    if fast is not None:
        _check_frame(path, frame, 1)
        return fast, ds
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n_frames = int(ds.get("NumberOfFrames") or 1)
            _check_frame(path, frame, n_frames)
            arr = pixel_array(ds, index=frame if n_frames > 1 else None)
            photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
            if photometric == "PALETTE COLOR":
                arr = apply_color_lut(arr, ds)[..., :3] @ _LUMA
            elif arr.ndim == 3 and int(ds.get("SamplesPerPixel") or 1) > 1:
                arr = arr[..., :3] @ _LUMA  # pydicom gives RGB, YBR included
            else:
                arr = _rescale(arr, ds, frame, path)
    except ImageReadError:
        raise
    except Exception as exc:  # decoder, plugin and malformed-element errors alike
        raise ImageReadError(path, f"cannot decode pixel data ({describe_error(exc)})") from None
    arr = np.asarray(arr, dtype=np.float64)
    if photometric == "MONOCHROME1":
        arr = arr.max() + arr.min() - arr
    return arr, ds


def _voi(ds: Dataset, frame: int) -> Voi | None:
    """The VOI transform of frame ``frame``: the enhanced per-frame then shared functional groups'
    Frame VOI LUT, else the top-level VOI LUT Sequence, else Window Center/Width (first of several).
    None for colour images and when none is usable (no LUT entries, a width below the minimum, a
    malformed element): the window step then falls back to percentiles."""
    try:
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        if photometric not in ("MONOCHROME1", "MONOCHROME2") or int(ds.get("SamplesPerPixel") or 1) != 1:
            return None
        mono1 = photometric == "MONOCHROME1"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
                items = ds.get(groups) or []
                frame_voi = items[index].get("FrameVOILUTSequence") if index < len(items) else None
                voi = _window(frame_voi[0], mono1) if frame_voi else None
                if voi is not None:
                    return voi
            return _lut(ds, mono1) or _window(ds, mono1)
    except Exception:  # malformed VOI elements count as no VOI
        return None


def _window(item: Dataset, mono1: bool) -> Voi | None:
    """Window Center/Width and VOI LUT Function of ``item`` as a ``Voi``, or None if unusable."""
    center, width = _first_number(item.get("WindowCenter")), _first_number(item.get("WindowWidth"))
    function = str(item.get("VOILUTFunction") or "LINEAR").strip().upper()
    function = function if function in _VOI_FUNCTIONS else "LINEAR"
    if center is None or width is None or width < (1 if function == "LINEAR" else 1e-9):
        return None
    return Voi(function, center=center, width=width, monochrome1=mono1)


def _lut(ds: Dataset, mono1: bool) -> Voi | None:
    """The first VOI LUT of the top-level VOI LUT Sequence as a ``Voi``, or None if absent or flat.

    pydicom parses the LUT (US or OW data, either byte order) by mapping every input value it covers;
    the entries are then scaled to [0, 1] by their own range (some files declare more bits than
    their entries use)."""
    if not ds.get("VOILUTSequence"):
        return None
    n_entries, first, _ = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
    inputs = np.arange(first, first + (n_entries or 2**16))
    entries = np.asarray(apply_voi(inputs, ds), dtype=np.float64)
    lo, hi = entries.min(), entries.max()
    if entries.shape != inputs.shape or hi <= lo:
        return None
    return Voi("LUT", first_mapped=first, lut=(entries - lo) / (hi - lo), monochrome1=mono1)


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
            raise ImageReadError(path, f"truncated pixel data: {raw.size} values, expected {rows}x{cols}")
        arr = raw[: rows * cols].reshape(rows, cols).astype(np.float64)
    except ImageReadError:
        raise
    except Exception:  # odd headers: let the general path decide and report
        return None
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        slope, intercept = _rescale_numbers(ds, path)
        arr = arr * slope + intercept
    if photometric == "MONOCHROME1":
        arr = arr.max() + arr.min() - arr
    return arr


def _rescale_numbers(ds: Dataset, path: str, item: Dataset | None = None) -> tuple[float, float]:
    """(Rescale Slope, Rescale Intercept) of ``item`` (default ``ds``) as finite floats (1 and 0 when absent);
    a value that is not a finite number raises ``ImageReadError`` naming the element, never its value."""
    item = ds if item is None else item
    out = []
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        if keyword not in item:
            out.append(default)
            continue
        try:
            with quiet_pydicom():
                raw = item[keyword].value
            number = _first_number(raw) if raw not in (None, "") else default
        except Exception:  # a value pydicom cannot convert
            number = None
        if number is None:
            raise ImageReadError(path, f"{keyword} is not a number (header value withheld)")
        out.append(number)
    return out[0], out[1]


def _rescale(arr: np.ndarray, ds: Dataset, frame: int, path: str) -> np.ndarray:
    """Apply the modality LUT: top-level LUT or rescale, else the enhanced functional groups'."""
    if ds.get("ModalityLUTSequence") or "RescaleSlope" in ds:
        return apply_modality_lut(arr, ds)
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame),
                          ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups) or []
        transform = items[index].get("PixelValueTransformationSequence") if index < len(items) else None
        if transform:
            slope, intercept = _rescale_numbers(ds, path, transform[0])
            return arr.astype(np.float64) * slope + intercept
    return arr


def _read_npy(path: str, frame: int) -> np.ndarray:
    """Load a 2-D array, or frame ``frame`` of a 3-D array (frames on axis 0)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # truncated, corrupt or pickled content
        raise ImageReadError(path, f"not a readable .npy file ({describe_error(exc)})") from None
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
        raise ImageReadError(path, f"not a readable image ({describe_error(exc)})") from None


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
    (a1, a2, a3), (b1, b2, b3) = cosines[:3], cosines[3:]
    normal = np.array([a2 * b3 - a3 * b2, a3 * b1 - a1 * b3, a1 * b2 - a2 * b1])  # np.cross, without its overhead
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 1e-6 else None


def describe_error(exc: Exception) -> str:
    """One short line naming an exception: its type and the first line of its message, with every
    quoted value redacted (decoders quote the element values they choose; in a corrupt file those
    can be misread bytes of any element), element names excepted."""
    message = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {'; '.join(_redact(line) for line in message)}" if message else type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


# A quoted span (a bytes repr's b'' included) up to its closing quote, or to the end of the line when
# the quote is never closed (a value cut at a line break).
_QUOTED = re.compile(r"""(?<!\w)(b?)(['"])((?:\\.|.)*?)(\2(?!\w)|$)""")


def _redact(text: str) -> str:
    """``text`` with the content of each quoted span replaced by '…' unless it names a DICOM element or a
    transfer syntax ('JPEG Extended', as decoders name it)."""
    def sub(m: re.Match) -> str:
        prefix, quote, content, end = m.groups()
        return m.group(0) if end and content in _element_names() else f"{prefix}{quote}…{quote}"

    return _QUOTED.sub(sub, text)


@functools.cache
def _element_names() -> frozenset[str]:
    """Every DICOM element name and keyword pydicom knows ('Rows', 'Transfer Syntax UID', ...)."""
    from pydicom.datadict import DicomDictionary

    from pydicom.uid import UID_dictionary

    names = {name for entry in DicomDictionary.values() for name in (entry[2], entry[4]) if name}
    for entry in UID_dictionary.values():  # 'JPEG Extended (Process 2 & 4)' and its short forms
        names.add(entry[0])
        names.add(entry[0].split(" (")[0].split(":")[0].strip())
    return frozenset(names)
