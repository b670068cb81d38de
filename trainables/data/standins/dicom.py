"""Writing the DICOM files of generated stand-ins and of the synthetic cohort: one writer for all of them.

Every file is uncompressed (Explicit VR Little Endian), one frame, monochrome, with made-up identity tags
given by the caller (so that tests can prove no name, id or birth date reaches a cohort, cache or log).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_dicom(path: Path, pixels: np.ndarray, *, sop_class: str, modality: str, identity: dict[str, str],
                bits_stored: int = 16, **tags: Any) -> None:
    """Write ``pixels`` (2-D ``uint16``, stored values) as a DICOM file at ``path``.

    ``sop_class``: the SOP class UID (e.g. ``pydicom.uid.MRImageStorage``); ``identity``: PatientName,
    PatientID, PatientBirthDate; ``tags``: any further attributes by keyword (set in the order given),
    e.g. ``ImagePositionPatient``, ``RescaleSlope``, ``ViewPosition``.
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
    ds.save_as(path, enforce_file_format=True)
