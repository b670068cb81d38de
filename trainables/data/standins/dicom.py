"""Writing the DICOM files of generated stand-ins and of the synthetic cohort: one writer for all of them.

Every file is one frame, monochrome, with made-up identity tags given by the caller (so that tests can prove
no name, id or birth date reaches a cohort, cache or log); uncompressed (Explicit VR Little Endian) unless a
``compression`` is asked for: one of :data:`COMPRESSIONS`, the lossless transfer syntaxes PACS exports use
that pydicom can encode here (RLE natively; JPEG 2000 through pylibjpeg-openjpeg; JPEG-LS through pyjpegls).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

# compression name -> transfer syntax UID (lossless ones: the pixels read back exactly as written)
COMPRESSIONS = {
    "rle": "1.2.840.10008.1.2.5",  # RLE Lossless
    "jpeg2000": "1.2.840.10008.1.2.4.90",  # JPEG 2000 Image Compression (Lossless Only)
    "jpegls": "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless Image Compression
}


def check_compression(compression: str | None) -> str | None:
    """The transfer syntax UID of ``compression`` (None: uncompressed), or a ValueError naming the valid
    names and, for a known one, the missing encoder package; checked before anything is written."""
    if compression in (None, "", "none"):
        return None
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; valid: none, {', '.join(COMPRESSIONS)}")
    from pydicom.pixels import get_encoder

    encoder = get_encoder(COMPRESSIONS[compression])
    if not encoder.is_available:
        missing = "; ".join(encoder.missing_dependencies) or "an encoder plugin"
        raise ValueError(f"compression {compression!r} needs an encoder pydicom cannot find here ({missing})")
    return COMPRESSIONS[compression]


def write_dicom(path: Path, pixels: np.ndarray, *, sop_class: str, modality: str, identity: dict[str, str],
                bits_stored: int = 16, compression: str | None = None, **tags: Any) -> None:
    """Write ``pixels`` (2-D ``uint16``, stored values) as a DICOM file at ``path``.

    ``sop_class``: the SOP class UID (e.g. ``pydicom.uid.MRImageStorage``); ``identity``: PatientName,
    PatientID, PatientBirthDate; ``compression``: None (uncompressed) or a name in :data:`COMPRESSIONS`;
    ``tags``: any further attributes by keyword (set in the order given), e.g. ``ImagePositionPatient``,
    ``RescaleSlope``, ``ViewPosition``.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = identity["PatientName"]
    ds.PatientID = identity["PatientID"]
    ds.PatientBirthDate = identity["PatientBirthDate"]
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    syntax = check_compression(compression)
    if syntax is not None:
        openjpeg = logging.getLogger("openjpeg")  # logs a line per tile at INFO
        level, openjpeg.level = openjpeg.level, max(openjpeg.level, logging.WARNING)
        try:
            ds.compress(syntax)  # lossless: decodes to the same stored values
        finally:
            openjpeg.level = level
    ds.save_as(path, enforce_file_format=True)
