"""DICOM headers that lie, on edited copies of pydicom's own test files: every failure is a quarantine
reason that names the failure, never the header value, and no pydicom warning or log line quotes it."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.tag import Tag

from trainables.data import manifest
from trainables.data.images import ImageReadError, describe_error, order_series, read_slice
from sweeps.datainfo import format_summary, inspect_cohort

PLANTED = "ZZPLANTED77"


def planted(src: str, out, keyword: str, value: str = PLANTED):
    """A copy of pydicom's test file ``src`` with ``keyword`` set to the raw text ``value`` (no validation)."""
    ds = pydicom.dcmread(get_testdata_file(src))
    tag = Tag(tag_for_keyword(keyword))
    raw = value.encode() + (b" " if len(value) % 2 else b"")
    ds._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)
    ds.save_as(out)
    return str(out)


def cut(src: str, out, drop: int = 2000):
    data = open(get_testdata_file(src), "rb").read()
    out.write_bytes(data[: len(data) - drop])
    return str(out)


@pytest.mark.parametrize("keyword", ["RescaleSlope", "RescaleIntercept"])
@pytest.mark.parametrize("src", ["CT_small.dcm", "MR_small_RLE.dcm"])
def test_a_non_numeric_rescale_is_a_reason_without_the_value(tmp_path, keyword, src, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    path = planted(src, tmp_path / "x.dcm", keyword)
    with pytest.raises(ImageReadError) as info:
        read_slice(path)
    assert keyword in info.value.reason and "not a number" in info.value.reason
    out = capfd.readouterr()
    for text in (str(info.value), out.out, out.err, caplog.text):
        assert PLANTED not in text


def test_a_non_numeric_instance_number_prints_nothing(tmp_path, capfd, caplog, recwarn):
    caplog.set_level(logging.DEBUG)
    a = planted("CT_small.dcm", tmp_path / "a.dcm", "InstanceNumber")
    b = shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "b.dcm")
    order_series([a, str(b)])
    assert read_slice(a).shape == (128, 128)
    out = capfd.readouterr()
    assert PLANTED not in out.out + out.err + caplog.text
    assert not any(PLANTED in str(w.message) for w in recwarn)


def test_reasons_tell_the_four_failures_apart(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    text = tmp_path / "text.dcm"
    text.write_bytes(b"just some text, no DICOM here\n" * 40)
    nopix = shutil.copy(get_testdata_file("rtplan.dcm"), tmp_path / "plan.dcm")
    reasons = {}
    for name, path in {"empty": empty, "not dicom": text, "no pixels": nopix,
                       "trunc j2k": cut("MR_small_jp2klossless.dcm", tmp_path / "j2k.dcm"),
                       "trunc rle": cut("MR_small_RLE.dcm", tmp_path / "rle.dcm")}.items():
        with pytest.raises(ImageReadError) as info:
            read_slice(str(path))
        reasons[name] = info.value.reason
    assert "empty file" in reasons["empty"]
    assert "not a DICOM file" in reasons["not dicom"]
    assert "without pixel data" in reasons["no pixels"]
    assert "truncated" in reasons["trunc j2k"] and "truncated" in reasons["trunc rle"]
    assert len({reasons["empty"], reasons["not dicom"], reasons["no pixels"], reasons["trunc j2k"]}) == 4


def test_the_decoders_cause_is_kept_and_values_still_redacted():
    exc = RuntimeError("Unable to decode as exceptions were raised by all available plugins:\n"
                       "  pillow: Pillow does not support 'JPEG Extended' for samples with 12-bit precision\n"
                       f"  gdcm: bad value '{PLANTED}'")
    text = describe_error(exc)
    assert "Pillow does not support 'JPEG Extended' for samples with 12-bit precision" in text
    assert PLANTED not in text


def test_a_scout_among_the_slices_is_warned_about(tmp_path, caplog):
    files = []
    for k in range(3):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.ImagePositionPatient = [0, 0, float(k)]
        if k == 1:  # a lateral localizer
            ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.save_as(tmp_path / f"s{k}.dcm")
        files.append(str(tmp_path / f"s{k}.dcm"))
    with caplog.at_level(logging.WARNING):
        order_series(files)
    assert "mixes 2 orientations" in caplog.text and "s1.dcm" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        order_series([files[0], files[2]])
    assert "orientations" not in caplog.text


def test_a_manifest_with_lying_headers_quarantines_them_and_the_value_is_nowhere(tmp_path, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    paths = [planted("CT_small.dcm", tmp_path / "slope.dcm", "RescaleSlope"),
             planted("CT_small.dcm", tmp_path / "icpt.dcm", "RescaleIntercept"),
             planted("CT_small.dcm", tmp_path / "inst.dcm", "InstanceNumber"),
             str(shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ok.dcm"))]
    pd.DataFrame({"sample_id": list("abcd"), "patient_id": list("abcd"), "y": [0, 1, 0, 1],
                  "image": [p.split("/")[-1] for p in paths]}).to_csv(tmp_path / "m.csv", index=False)
    cohort = manifest.load(tmp_path / "m.csv", targets={"y": None}, image_cols={"image": "ct"})
    reasons = {q["path"].split("/")[-1]: q["reason"] for q in cohort.quarantine}
    assert set(reasons) == {"slope.dcm", "icpt.dcm"}
    summary = format_summary(inspect_cohort(cohort, check_images=True))
    out = capfd.readouterr()
    for text in (summary, out.out, out.err, caplog.text, repr(cohort.quarantine), cohort.description):
        assert PLANTED not in text
    assert "RescaleSlope is not a number" in summary
    assert len(cohort.instances) == 2 and np.isfinite(read_slice(paths[2])).all()
