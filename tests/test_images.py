"""Tests for trainables.data.images: reading slices and ordering DICOM series."""

from __future__ import annotations

import logging
import os
import random
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, SecondaryCaptureImageStorage, generate_uid

from trainables.data.images import ImageReadError, order_series, read_slice, read_slice_with_voi, window_from_header

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SWEEPS_SHARED_DATA") or REPO.parent / "shared" / "data")
REAL_DICOM = SHARED / "dicom"
CR_ORIGINAL = REAL_DICOM / "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
CR_FAKE_MONO1 = REAL_DICOM / "Fake_MONOHR1.dcm"
MR_SERIES = REAL_DICOM / "mr-series-sag"
NIH_PNGS = [REAL_DICOM / "00000001_000.png", REAL_DICOM / "00027426_000.png"]

needs_real_data = pytest.mark.skipif(
    not REAL_DICOM.is_dir(),
    reason=f"shared real data not found at {REAL_DICOM} (set SWEEPS_SHARED_DATA to the data folder)",
)

PHI = {"PatientName": "Doe^Jane", "PatientID": "MRN123456", "PatientBirthDate": "19600101"}


def write_dicom(path: Path, pixels: np.ndarray, **attrs) -> Path:
    """Write a DICOM file of 16-bit MONOCHROME2 pixels (frames on axis 0 when 3-D) plus ``attrs``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def ramp(rows: int = 8, cols: int = 6) -> np.ndarray:
    """A small image with distinct values everywhere."""
    return np.arange(rows * cols, dtype=np.uint16).reshape(rows, cols) * 10


# --- read_slice on generated DICOMs ----------------------------------------------------------------


def test_plain_monochrome2_returns_stored_values_as_float32(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", ramp())
    image = read_slice(str(path))
    assert image.dtype == np.float32 and image.shape == (8, 6)
    np.testing.assert_array_equal(image, ramp())


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    pixels = np.array([[0, 100], [200, 300]])
    path = write_dicom(tmp_path / "ct.dcm", pixels, RescaleSlope=2, RescaleIntercept=-100)
    np.testing.assert_array_equal(read_slice(str(path)), [[-100, 100], [300, 500]])


def test_monochrome1_reads_like_its_monochrome2_twin(tmp_path):
    # The same picture stored both ways: MONOCHROME1 keeps bright anatomy as low values.
    picture = ramp()
    mono2 = write_dicom(tmp_path / "m2.dcm", picture)
    stored_inverted = picture.max() + picture.min() - picture
    mono1 = write_dicom(tmp_path / "m1.dcm", stored_inverted, PhotometricInterpretation="MONOCHROME1")
    from_mono1, from_mono2 = read_slice(str(mono1)), read_slice(str(mono2))
    np.testing.assert_array_equal(from_mono1, from_mono2)
    assert from_mono1[-1, -1] > from_mono1[0, 0]  # bright stays bright


def test_monochrome1_inversion_is_done_after_rescale(tmp_path):
    pixels = np.array([[0, 10], [20, 30]])
    path = write_dicom(tmp_path / "m1.dcm", pixels, PhotometricInterpretation="MONOCHROME1",
                       RescaleSlope=2, RescaleIntercept=-1000)
    rescaled = pixels * 2 - 1000  # [-1000 .. -940]
    np.testing.assert_array_equal(read_slice(str(path)), rescaled.max() + rescaled.min() - rescaled)


def test_multiframe_returns_the_requested_frame(tmp_path):
    frames = np.stack([ramp() + 1000 * k for k in range(3)])
    path = write_dicom(tmp_path / "multi.dcm", frames)
    for k in range(3):
        np.testing.assert_array_equal(read_slice(str(path), frame=k), frames[k])


def test_multiframe_out_of_range_frame_names_frame_and_count(tmp_path):
    path = write_dicom(tmp_path / "multi.dcm", np.stack([ramp()] * 3))
    with pytest.raises(ImageReadError, match=r"frame 3 .*3 frame"):
        read_slice(str(path), frame=3)
    with pytest.raises(ImageReadError, match="frame -1"):
        read_slice(str(path), frame=-1)


def test_single_frame_file_rejects_frame_other_than_zero(tmp_path):
    path = write_dicom(tmp_path / "one.dcm", ramp())
    with pytest.raises(ImageReadError, match=r"frame 1 .*1 frame"):
        read_slice(str(path), frame=1)


def test_enhanced_multiframe_uses_per_frame_rescale(tmp_path):
    def transform(slope, intercept):
        item = Dataset()
        item.RescaleSlope, item.RescaleIntercept, item.RescaleType = slope, intercept, "US"
        group = Dataset()
        group.PixelValueTransformationSequence = [item]
        return group

    frames = np.stack([ramp(), ramp()])
    path = write_dicom(tmp_path / "enhanced.dcm", frames,
                       PerFrameFunctionalGroupsSequence=[transform(1, 0), transform(3, -5)])
    np.testing.assert_array_equal(read_slice(str(path), frame=0), frames[0])
    np.testing.assert_array_equal(read_slice(str(path), frame=1), frames[1] * 3.0 - 5)


def write_rgb_dicom(path: Path, rgb: np.ndarray) -> Path:
    """Write an uncompressed 8-bit RGB DICOM of ``rgb`` (H, W, 3)."""
    write_dicom(path, ramp())
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.PhotometricInterpretation = "RGB"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = rgb.astype(np.uint8).tobytes()
    ds.save_as(path)
    return path


def test_rgb_dicom_becomes_bt601_luma_grey(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 30, 60, 90
    image = read_slice(str(write_rgb_dicom(tmp_path / "rgb.dcm", rgb)))
    assert image.shape == (4, 5)
    np.testing.assert_allclose(image, 0.299 * 30 + 0.587 * 60 + 0.114 * 90, rtol=1e-6)  # not the mean, 60


def test_colour_picture_reads_alike_from_dicom_and_png(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(16, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    from_dicom = read_slice(str(write_rgb_dicom(tmp_path / "c.dcm", rgb)))
    from_png = read_slice(str(tmp_path / "c.png"))
    assert np.abs(from_dicom - from_png).max() <= 0.5 + 1e-3  # Pillow rounds its luma to 8 bits


def test_window_from_header_returns_first_center_and_width(tmp_path):
    with_window = write_dicom(tmp_path / "w.dcm", ramp(), WindowCenter=[40, 400], WindowWidth=[400, 2000])
    without = write_dicom(tmp_path / "n.dcm", ramp())
    assert window_from_header(str(with_window)) == (40.0, 400.0)
    assert window_from_header(str(without)) is None
    # and reading never applies it: values are outside [center - width/2, center + width/2] untouched
    assert read_slice(str(with_window)).max() == ramp().max()


# --- read_slice failures ---------------------------------------------------------------------------


def test_truncated_dicom_raises_with_path(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", ramp(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        read_slice(str(path))
    assert str(path) in str(info.value) and info.value.path == str(path)


def test_missing_file_raises_image_read_error(tmp_path):
    path = tmp_path / "absent.dcm"
    with pytest.raises(ImageReadError, match="absent.dcm") as info:
        read_slice(str(path))
    assert info.value.path == str(path) and info.value.reason


def test_dicom_without_pixel_data_raises(tmp_path):
    path = write_dicom(tmp_path / "nopix.dcm", ramp())
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(ImageReadError, match="without pixel data"):
        read_slice(str(path))


def test_undecodable_transfer_syntax_raises_image_read_error(tmp_path):
    # JPEG-LS claimed but the bytes are not a JPEG-LS stream (and no JPEG-LS decoder may be installed).
    path = write_dicom(tmp_path / "jls.dcm", ramp())
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8 not a codestream \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path)
    with pytest.raises(ImageReadError, match="jls.dcm"):
        read_slice(str(path))


def test_garbage_with_unknown_suffix_raises_image_read_error(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(300))
    with pytest.raises(ImageReadError, match="blob.bin"):
        read_slice(str(path))


def test_corrupt_png_raises_image_read_error(tmp_path):
    path = tmp_path / "bad.png"
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ImageReadError, match="bad.png"):
        read_slice(str(path))


def test_npy_with_nan_raises(tmp_path):
    path = tmp_path / "nan.npy"
    np.save(path, np.array([[1.0, np.nan], [0.0, 2.0]]))
    with pytest.raises(ImageReadError, match="NaN"):
        read_slice(str(path))


def test_npy_of_wrong_rank_raises(tmp_path):
    path = tmp_path / "four.npy"
    np.save(path, np.zeros((2, 2, 3, 3)))
    with pytest.raises(ImageReadError, match="2-D"):
        read_slice(str(path))


# --- read_slice on other formats -------------------------------------------------------------------


def test_npy_2d_and_3d_frame(tmp_path):
    volume = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    np.save(tmp_path / "vol.npy", volume)
    np.save(tmp_path / "img.npy", volume[0])
    np.testing.assert_array_equal(read_slice(str(tmp_path / "vol.npy"), frame=1), volume[1])
    image = read_slice(str(tmp_path / "img.npy"))
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, volume[0])


def test_16bit_png_keeps_its_values(tmp_path):
    pixels = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(read_slice(str(tmp_path / "deep.png")), pixels)


def test_rgb_png_becomes_grey(tmp_path):
    rgb = np.full((3, 4, 3), 200, dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    image = read_slice(str(tmp_path / "rgb.png"))
    assert image.shape == (3, 4)
    np.testing.assert_allclose(image, 200, atol=1)


def test_dicom_content_is_detected_despite_a_raster_suffix(tmp_path):
    path = write_dicom(tmp_path / "misnamed.png", ramp())
    np.testing.assert_array_equal(read_slice(str(path)), ramp())


# --- privacy ---------------------------------------------------------------------------------------


def test_reader_never_exposes_identifying_header_fields(tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    series = [write_dicom(tmp_path / f"{k}.dcm", ramp(), InstanceNumber=k + 1, WindowCenter=10,
                          WindowWidth=20, **PHI) for k in range(2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_slice(str(series[0]))
        ordered = order_series([str(p) for p in series])
        window = window_from_header(str(series[0]))
    assert type(image) is np.ndarray and image.shape == (8, 6)
    assert all(isinstance(p, str) and isinstance(v, float) for p, v in ordered)
    assert window == (10.0, 20.0)
    captured = capsys.readouterr()
    emitted = captured.out + captured.err + caplog.text + " ".join(str(w.message) for w in caught)
    emitted += repr(image.tolist()) + repr(ordered)
    for value in PHI.values():
        for fragment in value.split("^"):
            assert fragment not in emitted


# --- order_series on generated DICOMs -------------------------------------------------------------


def _oblique_geometry():
    """Row/column cosines of an oblique plane and its normal cross(row, column)."""
    row = np.array([np.cos(0.4), np.sin(0.4), 0.0])
    col = np.array([-np.sin(0.4) * np.cos(0.7), np.cos(0.4) * np.cos(0.7), np.sin(0.7)])
    return row, col, np.cross(row, col)


def test_series_sorted_by_position_along_oblique_normal(tmp_path):
    row, col, normal = _oblique_geometry()
    origin = np.array([-120.0, 35.5, 80.0])
    spacing = 2.5
    paths = []
    for k in range(6):
        # Slide within the plane too, so that sorting by a single coordinate would be wrong.
        ipp = origin + k * spacing * normal + (5 - k) * 7.0 * row - k * 3.0 * col
        # Instance numbers run the other way round: only geometry gives the right order.
        paths.append(str(write_dicom(tmp_path / f"s{k}.dcm", ramp(), InstanceNumber=10 - k,
                                     ImagePositionPatient=[f"{v:.6f}" for v in ipp],
                                     ImageOrientationPatient=[f"{v:.8f}" for v in (*row, *col)])))
    shuffled = paths[:]
    random.Random(3).shuffle(shuffled)
    ordered = order_series(shuffled)
    assert [p for p, _ in ordered] == paths
    values = np.array([v for _, v in ordered])
    np.testing.assert_allclose(np.diff(values), spacing, atol=1e-4)
    np.testing.assert_allclose(values[0], origin @ normal, atol=1e-4)


def test_position_ties_are_broken_by_instance_number(tmp_path):
    geometry = {"ImagePositionPatient": [0, 0, 0], "ImageOrientationPatient": [1, 0, 0, 0, 1, 0]}
    a = str(write_dicom(tmp_path / "a.dcm", ramp(), InstanceNumber=2, **geometry))
    b = str(write_dicom(tmp_path / "b.dcm", ramp(), InstanceNumber=1, **geometry))
    assert [p for p, _ in order_series([a, b])] == [b, a]


def test_instance_number_fallback_when_positions_absent(tmp_path):
    numbers = {"x1.dcm": 3, "x2.dcm": 1, "x3.dcm": 2}
    paths = {name: str(write_dicom(tmp_path / name, ramp(), InstanceNumber=n)) for name, n in numbers.items()}
    # One file with geometry is not enough: the fallback needs it on every file.
    ds = pydicom.dcmread(paths["x1.dcm"])
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 99], [1, 0, 0, 0, 1, 0]
    ds.save_as(paths["x1.dcm"])
    ordered = order_series(list(paths.values()))
    assert ordered == [(paths["x2.dcm"], 1.0), (paths["x3.dcm"], 2.0), (paths["x1.dcm"], 3.0)]


def test_file_name_fallback_is_natural_order(tmp_path):
    paths = [str(write_dicom(tmp_path / f"img{k}.dcm", ramp())) for k in (10, 2, 1)]
    ordered = order_series(paths)
    assert [Path(p).name for p, _ in ordered] == ["img1.dcm", "img2.dcm", "img10.dcm"]
    assert [v for _, v in ordered] == [0.0, 1.0, 2.0]


def test_non_dicom_files_sort_by_natural_name(tmp_path):
    paths = []
    for k in (11, 3, 1):
        Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(tmp_path / f"slice_{k}.png")
        paths.append(str(tmp_path / f"slice_{k}.png"))
    assert order_series(paths) == [(paths[2], 0.0), (paths[1], 1.0), (paths[0], 2.0)]


def test_order_series_unreadable_header_raises(tmp_path):
    good = str(write_dicom(tmp_path / "good.dcm", ramp(), InstanceNumber=1))
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(Path(good).read_bytes()[:200])
    with pytest.raises(ImageReadError, match="bad.dcm"):
        order_series([good, str(bad)])
    with pytest.raises(ImageReadError, match="gone.dcm"):
        order_series([good, str(tmp_path / "gone.dcm")])


# --- real files ------------------------------------------------------------------------------------


@needs_real_data
def test_real_jpeg_baseline_cr_decodes_to_plausible_image():
    image = read_slice(str(CR_ORIGINAL))
    assert image.dtype == np.float32 and image.shape == (1024, 1024)
    assert 0 <= image.min() < 20 and 235 < image.max() <= 255  # 8-bit JPEG, full range used
    assert image.std() > 20  # a real radiograph, not a blank frame


@needs_real_data
def test_real_fake_monochrome1_is_read_as_the_inverted_original():
    # Fake_MONOHR1.dcm differs from the original by one header byte ("MONOCHROME2" -> "MONOCHROME1");
    # its pixel bytes are identical. So it is NOT a MONOCHROME1 re-encoding of the image (that would
    # store inverted pixels and read back like the original, r > 0.9): it is a file that declares
    # "low = bright" over pixels stored "high = bright". Honouring the header therefore yields the
    # exact negative of the original (r = -1), which is what a conforming viewer would also display.
    # The generated-twin test above covers the "stored inverted reads alike" case.
    raw_original = pydicom.dcmread(CR_ORIGINAL).pixel_array
    raw_fake = pydicom.dcmread(CR_FAKE_MONO1).pixel_array
    assert np.array_equal(raw_original, raw_fake)  # the premise: same stored pixels
    original, fake = read_slice(str(CR_ORIGINAL)), read_slice(str(CR_FAKE_MONO1))
    np.testing.assert_array_equal(fake, original.max() + original.min() - original)
    assert np.corrcoef(original.ravel(), fake.ravel())[0, 1] < -0.99


@needs_real_data
def test_real_mr_series_orders_along_its_geometry():
    # Sagittal series, orientation (0,1,0 / 0,0,-1): normal = cross(row, col) = (-1, 0, 0), so the
    # order value is -x = -SliceLocation, and ascending order runs against the Instance Numbers.
    paths = sorted(str(p) for p in MR_SERIES.glob("*.dcm"))
    assert len(paths) == 5
    shuffled = paths[:]
    random.Random(0).shuffle(shuffled)
    ordered = order_series(shuffled)
    values = np.array([v for _, v in ordered])
    assert np.all(np.diff(values) > 0)
    np.testing.assert_allclose(np.diff(values), 5.0, atol=1e-3)  # 5 mm slice spacing
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p, _ in ordered]
    np.testing.assert_allclose(values, [-float(h.SliceLocation) for h in headers], atol=1e-4)
    assert [int(h.InstanceNumber) for h in headers] == [5, 4, 3, 2, 1]
    assert order_series(paths) == ordered  # independent of input order
    assert all(read_slice(p).shape == (64, 42) for p, _ in ordered)


@needs_real_data
def test_real_mr_window_is_read_from_header():
    assert window_from_header(str(MR_SERIES / "1.dcm")) == (163.0, 412.0)


@needs_real_data
@pytest.mark.parametrize("path", NIH_PNGS, ids=lambda p: p.name)
def test_real_nih_pngs_read_as_2d_float32(path):
    image = read_slice(str(path))
    assert image.dtype == np.float32 and image.shape == (512, 512)
    assert image.max() > image.min()


def test_fast_path_matches_the_general_decoder_exactly(tmp_path):
    """The uncompressed fast path must give the same pixels as pydicom's pixel_array + modality LUT."""
    import pydicom
    from pydicom.pixels import apply_modality_lut
    from pydicom.pixels import pixel_array as pa

    from trainables.data import images
    from trainables.data import synthetic

    root = synthetic.generate(tmp_path / "syn", seed=1, n_patients=3)
    files = sorted((root / "images").rglob("*.dcm"))[:20]
    for f in files:
        ds = pydicom.dcmread(f)
        expected = apply_modality_lut(pa(ds), ds).astype(np.float64)
        fast = images._uncompressed_mono(ds, str(f))
        assert fast is not None, "synthetic files are uncompressed and take the fast path"
        assert np.array_equal(fast, expected)
        assert np.array_equal(images.read_slice(str(f)), expected.astype(np.float32))


# --- compressed, multi-frame and colour files from pydicom's own test data --------------------------


def pydicom_file(name: str) -> str:
    """A test file shipped inside the pydicom wheel (never downloaded); skip when absent."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not installed with pydicom")
    return path


@pytest.mark.parametrize("name", ["MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_lossless_encodings_decode_to_the_uncompressed_pixels(name):
    # The same MR slice stored as JPEG-LS lossless, JPEG 2000 lossless, RLE, big endian and implicit VR.
    reference = read_slice(pydicom_file("MR_small.dcm"))
    assert reference.shape == (64, 64) and reference.std() > 100
    np.testing.assert_array_equal(read_slice(pydicom_file(name)), reference)


def test_jpeg_lossless_colour_equals_its_rle_twin():
    jpeg_lossless = read_slice(pydicom_file("SC_rgb_jpeg_gdcm.dcm"))  # JPEG process 14, RGB
    rle = read_slice(pydicom_file("SC_rgb_rle.dcm"))
    assert jpeg_lossless.shape == (100, 100) and jpeg_lossless.max() > jpeg_lossless.min()
    np.testing.assert_array_equal(jpeg_lossless, rle)


@pytest.mark.parametrize("name, shape", [("JPEG2000.dcm", (1024, 256)), ("JPGExtended.dcm", (1024, 256)),
                                         ("693_J2KI.dcm", (512, 512))])
def test_lossy_jpeg_and_jpeg2000_decode_with_the_modality_lut(name, shape):
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(pydicom_file(name))
    image = read_slice(pydicom_file(name))
    assert image.shape == shape and image.std() > 1
    np.testing.assert_allclose(image, apply_modality_lut(ds.pixel_array, ds), rtol=1e-6)


def test_multiframe_files_give_each_frame():
    rtdose = pydicom_file("rtdose.dcm")  # 15 uncompressed frames
    stored = pydicom.dcmread(rtdose).pixel_array
    for k in (0, 7, 14):
        np.testing.assert_array_equal(read_slice(rtdose, k), stored[k])
    with pytest.raises(ImageReadError, match="frame 15 .*15 frame"):
        read_slice(rtdose, 15)
    # RLE, two colour frames: the second is the negative of the first
    first, second = (read_slice(pydicom_file("SC_rgb_rle_2frame.dcm"), k) for k in (0, 1))
    np.testing.assert_allclose(first + second, 255, atol=1e-3)
    # JPEG baseline, 30 YBR frames: pydicom converts to RGB, then luma
    frames = [read_slice(pydicom_file("examples_ybr_color.dcm"), k) for k in (0, 29)]
    assert all(f.shape == (240, 320) for f in frames) and not np.array_equal(*frames)


def test_palette_colour_becomes_grey():
    image = read_slice(pydicom_file("examples_palette.dcm"))
    assert image.ndim == 2 and image.max() > image.min()


def test_pydicom_truncated_mr_raises():
    with pytest.raises(ImageReadError, match="MR_truncated.dcm"):
        read_slice(pydicom_file("MR_truncated.dcm"))


# --- VOI: the file's own window, for the window preprocessing step --------------------------------


def _pydicom_windowed_to_unit(ds, pixels):
    """pydicom's apply_windowing output scaled from its (y_min, y_max) range to [0, 1]."""
    from pydicom.pixels import apply_windowing

    bits = int(ds.BitsStored)
    y_min, y_max = (0, 2**bits - 1) if ds.PixelRepresentation == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return (apply_windowing(pixels.astype(np.float64), ds) - y_min) / (y_max - y_min)


def test_voi_window_matches_pydicom_windowing_on_a_real_mr():
    path = pydicom_file("MR_small.dcm")
    image, voi = read_slice_with_voi(path)
    assert (voi.function, voi.center, voi.width) == ("LINEAR", 600.0, 1600.0)
    windowed = voi.apply(image)
    assert windowed.dtype == np.float32 and 0 <= windowed.min() and windowed.max() <= 1
    assert 0 < (windowed == 1).mean() < 0.5  # the window clips part of the image
    np.testing.assert_allclose(windowed, _pydicom_windowed_to_unit(pydicom.dcmread(path), image), atol=1e-6)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_voi_functions_match_pydicom(tmp_path, function):
    pixels = np.arange(0, 4000, 40, dtype=np.uint16).reshape(10, 10)
    path = write_dicom(tmp_path / "w.dcm", pixels, WindowCenter=1500, WindowWidth=800, VOILUTFunction=function)
    image, voi = read_slice_with_voi(str(path))
    assert voi.function == function
    np.testing.assert_allclose(voi.apply(image), _pydicom_windowed_to_unit(pydicom.dcmread(path), image), atol=1e-6)


@pytest.mark.parametrize("vr", ["US", "OW"])
def test_voi_lut_sequence_maps_through_the_lut_and_takes_precedence(tmp_path, vr):
    lut = (np.linspace(0, 1, 256) ** 2 * 4095).astype(np.uint16)  # a curved 12-bit LUT over inputs 100..355
    item = Dataset()
    item.LUTDescriptor = [256, 100, 12]
    item.add_new("LUTData", vr, lut.tolist() if vr == "US" else lut.astype("<u2").tobytes())
    pixels = np.array([[0, 100, 150], [200, 355, 1000]], dtype=np.uint16)
    path = write_dicom(tmp_path / "lut.dcm", pixels, VOILUTSequence=[item], WindowCenter=0, WindowWidth=10)
    image, voi = read_slice_with_voi(str(path))
    assert voi.function == "LUT"
    expected = lut[np.clip(pixels.astype(int) - 100, 0, 255)] / 4095
    np.testing.assert_allclose(voi.apply(image), expected, atol=1e-6)


def test_voi_of_monochrome1_keeps_bright_bright(tmp_path):
    # Same stored values and window; MONOCHROME1 displays low values bright, so its windowed image is
    # the complement of the MONOCHROME2 one.
    stored = ramp(8, 8) * 5
    window = {"WindowCenter": 1200, "WindowWidth": 1000}
    m2 = write_dicom(tmp_path / "m2.dcm", stored, **window)
    m1 = write_dicom(tmp_path / "m1.dcm", stored, PhotometricInterpretation="MONOCHROME1", **window)
    (img2, voi2), (img1, voi1) = read_slice_with_voi(str(m2)), read_slice_with_voi(str(m1))
    assert voi1.monochrome1 and not voi2.monochrome1
    np.testing.assert_allclose(voi1.apply(img1), 1 - voi2.apply(img2), atol=1e-6)


def test_enhanced_multiframe_voi_is_per_frame(tmp_path):
    def frame_voi(center, width):
        item = Dataset()
        item.WindowCenter, item.WindowWidth = center, width
        group = Dataset()
        group.FrameVOILUTSequence = [item]
        return group

    path = write_dicom(tmp_path / "enh.dcm", np.stack([ramp(), ramp()]),
                       PerFrameFunctionalGroupsSequence=[frame_voi(100, 50), frame_voi(300, 80)])
    assert (read_slice_with_voi(str(path), 0)[1].center, read_slice_with_voi(str(path), 1)[1].width) == (100, 80)


def test_no_voi_for_files_without_a_usable_window(tmp_path):
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "p.png")
    rgb = write_rgb_dicom(tmp_path / "rgb.dcm", np.zeros((4, 4, 3), dtype=np.uint8))
    plain = write_dicom(tmp_path / "plain.dcm", ramp())
    zero_width = write_dicom(tmp_path / "zero.dcm", ramp(), WindowCenter=10, WindowWidth=0)
    for path in (tmp_path / "p.png", rgb, plain, zero_width):
        image, voi = read_slice_with_voi(str(path))
        assert voi is None and image.ndim == 2


# --- privacy of failure reasons -------------------------------------------------------------------


def test_decoder_messages_quoting_a_value_are_redacted(tmp_path):
    # A corrupt header can put any bytes where the decoder looks; pydicom quotes what it found.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that this is no valid CS value, as intended
        path = write_dicom(tmp_path / "odd.dcm", ramp(), PhotometricInterpretation="QUIXOTE^DULCINEA", **PHI)
    with pytest.raises(ImageReadError) as info:
        read_slice(str(path))
    reason = info.value.reason
    assert "'Photometric Interpretation'" in reason  # element names are kept...
    assert "QUIXOTE" not in reason and "'…'" in reason  # ...the value is not
