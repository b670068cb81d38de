"""Tests for the named preprocessing steps (trainables.encoders) a search space sweeps over."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from tests.test_images import ramp, write_dicom
from trainables import embed
from trainables.encoders import (SLICE_STEPS, Preprocessor, center_crop, clahe, crop, grayscale_norm, hist_eq,
                                 parse_preprocessing, window)
from trainables.registry import UnknownComponentError

NEW_STEPS = ("window", "clahe", "crop", "center_crop")


# --- the registry and the spec string --------------------------------------------------------------


def test_new_steps_are_registered_with_docstrings():
    for name in (*NEW_STEPS, "grayscale_norm", "hist_eq"):
        assert name in SLICE_STEPS and len(SLICE_STEPS[name].__doc__.strip()) > 40


def test_a_misspelt_step_gets_a_did_you_mean():
    with pytest.raises(UnknownComponentError, match=r"'clahee'.*at space\.preprocessing.*Did you mean 'clahe'"):
        parse_preprocessing("crop+clahee", "space.preprocessing")
    with pytest.raises(UnknownComponentError, match="Did you mean 'center_crop'"):
        parse_preprocessing("centre_crop")


def test_window_must_come_before_other_intensity_steps():
    with pytest.raises(ValueError, match="'window' must come before 'grayscale_norm'"):
        parse_preprocessing("grayscale_norm+window")
    with pytest.raises(ValueError, match="'window' must come before 'window'"):
        parse_preprocessing("window+window")
    assert parse_preprocessing("crop+window+clahe+imagenet_norm") == (["crop", "window", "clahe"], True)


def test_geometry_only_pipelines_still_get_a_bounded_range():
    assert parse_preprocessing("crop")[0] == ["crop", "grayscale_norm"]
    assert parse_preprocessing("center_crop+imagenet_norm") == (["center_crop", "grayscale_norm"], True)
    assert parse_preprocessing("resize+imagenet_norm") == (["grayscale_norm"], True)  # as before


def test_cache_key_changes_with_the_step_list_and_its_order():
    keys = {spec: embed.cache_key("f" * 32, "resnet18", spec, input_size=32)
            for spec in ("grayscale_norm", "window", "crop+window", "window+crop", "crop+window+clahe", "center_crop")}
    assert len(set(keys.values())) == len(keys)


# --- existing steps are unchanged ------------------------------------------------------------------


@pytest.mark.parametrize("spec, same_size, mixed_size", [
    ("grayscale_norm", "582e28e2ff5ebc96", "5d9447f489048f16"),
    ("hist_eq", "9f59ab3e0dc69cbf", "3e4eccbedf75a9b1"),
    ("grayscale_norm+hist_eq", "c94c6154d256c79b", "eec27fbd368a2628"),
])
def test_existing_steps_give_the_same_bytes_as_before(spec, same_size, mixed_size):
    # Digests of the outputs of the Preprocessor before the new steps were added (batched same-size path
    # and per-slice mixed-size path); a change here silently changes every cached embedding's meaning.
    rng = np.random.default_rng(42)
    same = [(rng.normal(size=(24, 20)) * 300 + 100).astype(np.float32) for _ in range(3)]
    mixed = same[:2] + [(rng.normal(size=(18, 30)) * 50).astype(np.float32)]
    for imgs, expected in ((same, same_size), (mixed, mixed_size)):
        out = Preprocessor(spec, 32).slices(imgs)
        digest = hashlib.blake2b(b"".join(np.ascontiguousarray(x).tobytes() for x in out), digest_size=8).hexdigest()
        assert digest == expected


# --- window ----------------------------------------------------------------------------------------


def test_window_uses_the_header_window_when_there_is_one(tmp_path):
    from trainables.data.images import read_slice_with_voi

    hu = np.array([[-1000, 0, 40], [90, 240, 3000]])  # CT values after rescale
    path = write_dicom(tmp_path / "ct.dcm", hu + 1024, RescaleSlope=1, RescaleIntercept=-1024,
                       WindowCenter=40, WindowWidth=400)
    image, voi = read_slice_with_voi(str(path))
    out = window(image, voi)
    # a soft-tissue window: -160 HU and below black, 240 HU and above white, the centre mid-grey
    np.testing.assert_allclose(out, [[0, (0 - 39.5) / 399 + 0.5, (40 - 39.5) / 399 + 0.5],
                                     [(90 - 39.5) / 399 + 0.5, 1, 1]], atol=1e-6)
    assert not np.allclose(out, grayscale_norm(image))


def test_window_without_header_is_the_1_to_99_percentile_window():
    img = np.random.default_rng(1).normal(size=(50, 50)).astype(np.float32)
    img[0, :5] = 1e4  # outliers do not set the range
    lo, hi = np.percentile(img, [1, 99])
    out = window(img)
    np.testing.assert_allclose(out, np.clip((img - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert out.dtype == np.float32 and (out == 1).mean() < 0.02


def test_window_reaches_the_encoder_from_the_file(tmp_path):
    # Two files with the same pixels and different header windows: only "window" tells them apart.
    pixels = (ramp(32, 32) * 3).astype(np.uint16)
    paths = [str(write_dicom(tmp_path / f"{k}.dcm", pixels, WindowCenter=c, WindowWidth=300))
             for k, c in enumerate((400, 2400))]
    instances = pd.DataFrame({"path": paths, "frame": [0, 0]})
    by_window = embed.run_encoder(instances, "resnet18", "window", input_size=32, progress=False)
    by_norm = embed.run_encoder(instances, "resnet18", "grayscale_norm", input_size=32, progress=False)
    np.testing.assert_allclose(by_norm[0], by_norm[1], atol=1e-5)
    assert np.abs(by_window[0] - by_window[1]).max() > 1e-3


# --- clahe -----------------------------------------------------------------------------------------


def _local_contrast(img: np.ndarray) -> float:
    """Std of the image after removing each 8x8 patch's mean."""
    h, w = img.shape
    patches = img.reshape(h // 8, 8, w // 8, 8)
    return float((patches - patches.mean(axis=(1, 3), keepdims=True)).std())


def test_clahe_raises_local_contrast_within_its_clip_limit():
    rng = np.random.default_rng(0)
    img = (np.linspace(0, 1, 128)[None, :] + 0.01 * rng.normal(size=(128, 128))).astype(np.float32)
    out = clahe(img)
    assert out.dtype == np.float32 and out.shape == img.shape and 0 <= out.min() and out.max() <= 1
    # a smooth ramp is already equalised globally: hist_eq leaves the fine texture as it is, CLAHE lifts it
    assert _local_contrast(out) > 1.4 * _local_contrast(hist_eq(img))
    # and the clip limit is what bounds the lift
    assert _local_contrast(clahe(img, clip_limit=40)) > 2 * _local_contrast(out)


def test_clahe_scales_raw_values_first():
    img = np.random.default_rng(2).normal(size=(40, 40)).astype(np.float32) * 500 + 300  # raw MR-like values
    np.testing.assert_array_equal(clahe(img), clahe(grayscale_norm(img)))


# --- crop and center_crop --------------------------------------------------------------------------


@pytest.mark.parametrize("frame_value", [0.0, 255.0])
def test_crop_trims_a_black_or_white_frame_to_the_image(frame_value):
    rng = np.random.default_rng(3)
    inner = rng.uniform(20, 230, size=(40, 30)).astype(np.float32)
    framed = np.full((60, 44), frame_value, dtype=np.float32)
    framed[12:52, 7:37] = inner
    framed[:12] += rng.uniform(-2, 2, size=(12, 44))  # JPEG-like ripple in the frame is still "constant"
    np.testing.assert_array_equal(crop(framed)[:, :], framed[12:52, 7:37])
    assert crop(framed).shape == inner.shape


def test_crop_keeps_noise_and_constant_images():
    noise = np.random.default_rng(4).normal(size=(30, 30)).astype(np.float32)  # an MR background is not a frame
    assert crop(noise).shape == (30, 30)
    constant = np.full((10, 12), 7.0, dtype=np.float32)
    assert crop(constant) is constant


def test_center_crop_keeps_the_central_seven_eighths():
    img = np.arange(64 * 48, dtype=np.float32).reshape(64, 48)
    np.testing.assert_array_equal(center_crop(img), img[4:60, 3:45])  # 56 x 42
    assert center_crop(np.zeros((100, 80))).shape == (88, 70)


def test_batched_slices_equal_per_slice_for_every_new_pipeline(tmp_path):
    from trainables.data.images import read_slice_with_voi

    rng = np.random.default_rng(5)
    framed = np.zeros((40, 40), dtype=np.uint16)
    framed[5:35, 8:32] = rng.integers(100, 3000, size=(30, 24))
    paths = [write_dicom(tmp_path / "a.dcm", framed, WindowCenter=1500, WindowWidth=1000),
             write_dicom(tmp_path / "b.dcm", framed[::-1] // 2)]
    read = [read_slice_with_voi(str(p)) for p in paths]
    imgs, vois = [r[0] for r in read], [r[1] for r in read]
    for spec in ("crop+window", "center_crop+clahe", "crop+grayscale_norm+hist_eq", "window+clahe+center_crop",
                 "crop+imagenet_norm"):
        pre = Preprocessor(spec, 32)
        batched = pre.slices(imgs, vois)
        for got, img, voi in zip(batched, imgs, vois):
            np.testing.assert_array_equal(got, pre.slice(img, voi))
            assert 0 <= got.min() and got.max() <= 1
        assert pre.batch(batched).shape == (2, 3, 32, 32)
    assert Preprocessor("crop", 32).slices(imgs)[0].shape == (30, 24)


# --- real files ------------------------------------------------------------------------------------


def _shared(relative: str):
    from tests.conftest import shared_data

    root = shared_data()
    if root is None or not (root / relative).exists():
        pytest.skip(f"{relative} not present: set SWEEPS_SHARED_DATA")
    return root / relative


def test_real_mr_window_step_uses_its_header_window():
    from trainables.data.images import read_slice_with_voi, window_from_header

    path = str(_shared("dicom/mr-series-sag/1.dcm"))
    image, voi = read_slice_with_voi(path)
    assert (voi.center, voi.width) == window_from_header(path) == (163.0, 412.0)
    out = window(image, voi)
    np.testing.assert_allclose(out, np.clip((image - 162.5) / 411 + 0.5, 0, 1), atol=1e-6)  # DICOM LINEAR
    assert 0.005 < (out == 1).mean() < 0.5  # the window clips the brightest tissue (max 4095 here)


def test_real_xray_black_band_is_cropped():
    from trainables.data.images import read_slice

    image = read_slice(str(_shared("covid-cxr/images/16708_5_1.jpg")))  # a chest X-ray with black bands
    out = crop(image)
    assert 0.5 < out.size / image.size < 0.9
    assert np.ptp(out[0]) > 0.05 * np.ptp(image) and np.ptp(out[-1]) > 0.05 * np.ptp(image)
