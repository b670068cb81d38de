"""Unreadable images are detected by the reader and quarantined while embedding, never crash a run
(unless strict), never leave half an entry, and never let an identifying header value out."""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from tests.test_images import pydicom_file, ramp, write_dicom
from trainables import embed
from trainables.data.cohort import Cohort, CohortError, Target
from trainables.data.images import ImageReadError, read_slice
from trainables.pipeline import build_bags

ENCODER, SIZE = "resnet18", 32  # small input: a CPU forward pass in milliseconds
PHI = {"PatientName": "Quixote^Dulcinea", "PatientID": "MRN8837261", "PatientBirthDate": "19410723",
       "OtherPatientIDs": "OPID5541902", "AccessionNumber": "ACC77120934"}
PHI_FRAGMENTS = [f for v in PHI.values() for f in v.split("^")]


def cohort_of(files: dict[str, list]) -> Cohort:
    """A one-modality cohort: sample id -> its slice files in order."""
    samples = pd.DataFrame({"sample_id": list(files), "patient_id": [f"p{k}" for k in range(len(files))],
                            "label": ["no", "yes"] * (len(files) // 2) + ["no"] * (len(files) % 2)})
    instances = pd.DataFrame([{"sample_id": sid, "modality": "mr", "order": float(k), "path": str(p), "frame": 0}
                              for sid, paths in files.items() for k, p in enumerate(paths)])
    return Cohort("tiny", samples, instances, [Target("label", "binary", ("no", "yes"))], ["mr"])


def truncated(path, keep_fraction: float):
    """Cut ``path`` inside its pixel data: keep that fraction of the pixel bytes."""
    data = path.read_bytes()
    start = data.find(pydicom.dcmread(path).PixelData)
    path.write_bytes(data[: start + int((len(data) - start) * keep_fraction)])
    return path


# --- what the reader rejects -----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["generated", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
                                    "MR_small_RLE.dcm"])
def test_truncated_dicom_raises_wherever_it_is_cut(tmp_path, source):
    original = tmp_path / "src.dcm"
    if source == "generated":
        write_dicom(original, ramp(48, 40))
    else:
        shutil.copy(pydicom_file(source), original)
    data = original.read_bytes()
    pixel_start = data.find(pydicom.dcmread(original).PixelData)
    pixel_end = pixel_start + len(pydicom.dcmread(original).PixelData)
    cuts = [1, 100, pixel_start - 4, pixel_start, pixel_start + 2, (pixel_start + pixel_end) // 2, pixel_end - 3]
    for cut in cuts:
        path = tmp_path / f"cut_{cut}.dcm"
        path.write_bytes(data[:cut])
        with pytest.raises(ImageReadError) as info:
            read_slice(str(path))
        assert info.value.path == str(path) and info.value.reason


@pytest.mark.parametrize("make", ["random_dcm", "empty_dcm", "empty_png", "truncated_jpg", "garbage_jpg", "text_png"])
def test_corrupt_files_raise_image_read_error(tmp_path, make):
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, size=(64, 64), dtype=np.uint8))
    if make == "random_dcm":
        path = tmp_path / "x.dcm"
        path.write_bytes(os.urandom(4096))
    elif make == "empty_dcm":
        path = tmp_path / "x.dcm"
        path.write_bytes(b"")
    elif make == "empty_png":
        path = tmp_path / "x.png"
        path.write_bytes(b"")
    elif make in ("truncated_jpg", "garbage_jpg"):
        path = tmp_path / "x.jpg"
        picture.save(path, quality=90)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if make == "truncated_jpg" else data[:20] + os.urandom(len(data) - 20))
    else:
        path = tmp_path / "x.png"
        path.write_text("not an image at all")
    with pytest.raises(ImageReadError) as info:
        read_slice(str(path))
    assert info.value.path == str(path) and str(path) in str(info.value)


# --- quarantine while embedding --------------------------------------------------------------------


@pytest.fixture
def damaged(tmp_path):
    """Three samples; the second has a truncated DICOM slice, the third a 0-byte PNG slice."""
    good = [write_dicom(tmp_path / f"g{k}.dcm", ramp(24, 24) * (k + 1)) for k in range(3)]
    cut = truncated(write_dicom(tmp_path / "cut.dcm", ramp(24, 24)), 0.5)
    Image.fromarray(np.arange(24 * 24, dtype=np.uint8).reshape(24, 24)).save(tmp_path / "ok.png")
    (tmp_path / "empty.png").write_bytes(b"")
    cohort = cohort_of({"s1": good[:2], "s2": [good[2], cut], "s3": [tmp_path / "ok.png", tmp_path / "empty.png"]})
    return cohort, [str(cut), str(tmp_path / "empty.png")]


def test_unreadable_slices_are_quarantined_and_the_run_goes_on(damaged, tmp_path, caplog):
    cohort, bad = damaged
    root = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="sweeps.embed"):
        entry = embed.embed_cohort(cohort, ENCODER, input_size=SIZE, cache_root=root, progress=False)

    good_rows = cohort.instances[~cohort.instances["path"].isin(bad)]
    assert entry.embeddings.shape == (4, 512)
    pd.testing.assert_frame_equal(entry.index, good_rows[["sample_id", "modality", "order"]].reset_index(drop=True))
    expected = [{"path": p, "frame": 0, "reason": pytest.raises(ImageReadError, read_slice, p).value.reason} for p in bad]
    assert entry.quarantine == expected
    assert json.loads((entry.path / "quarantine.json").read_text()) == expected
    assert entry.meta["quarantined"] == 2 and entry.meta["n"] == 4
    assert f"2 files quarantined (see {entry.path / 'quarantine.json'})" in caplog.text

    # the key is the cohort's, whatever was quarantined
    assert entry.key == embed.cache_key(cohort.fingerprint(), ENCODER, "grayscale_norm", None, SIZE)
    # the good rows carry the embeddings they would have had without the damaged files
    alone = embed.run_encoder(good_rows, ENCODER, "grayscale_norm", input_size=SIZE, progress=False)
    np.testing.assert_allclose(np.asarray(entry.embeddings), alone, atol=1e-4)
    # downstream, the damaged samples simply have one slice fewer
    bags = build_bags(np.asarray(entry.embeddings), entry.index, ["s1", "s2", "s3"], ["mr"])
    assert bags["mr"][1].sum(axis=1).tolist() == [2, 1, 1]


def test_a_cache_hit_reports_the_quarantine_again_and_strict_refuses_it(damaged, tmp_path, caplog, monkeypatch):
    cohort, bad = damaged
    root = tmp_path / "cache"
    first = embed.embed_cohort(cohort, ENCODER, input_size=SIZE, cache_root=root, progress=False)
    monkeypatch.setattr(embed, "run_encoder", lambda *a, **k: pytest.fail("the encoder ran on a cache hit"))
    with caplog.at_level(logging.INFO, logger="sweeps.embed"):
        again = embed.embed_cohort(cohort, ENCODER, input_size=SIZE, cache_root=root, progress=False)
    assert again.key == first.key and again.quarantine == first.quarantine
    assert "reused" in caplog.text and "2 files quarantined" in caplog.text
    with pytest.raises(ImageReadError) as info:
        embed.embed_cohort(cohort, ENCODER, input_size=SIZE, cache_root=root, progress=False, strict=True)
    assert info.value.path == bad[0]


def test_strict_raises_naming_the_file_and_writes_nothing(damaged, tmp_path):
    cohort, bad = damaged
    root = tmp_path / "cache"
    with pytest.raises(ImageReadError) as info:
        embed.embed_cohort(cohort, ENCODER, input_size=SIZE, cache_root=root, progress=False, strict=True)
    assert info.value.path == bad[0] and bad[0] in str(info.value)
    assert not root.exists() or not any(root.iterdir())


def test_a_cohort_with_no_readable_slice_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    cohort = cohort_of({"s1": [tmp_path / "a.png"], "s2": [tmp_path / "b.png"]})
    with pytest.raises(CohortError, match=r"none of its 2 slices.*a\.png"):
        embed.embed_cohort(cohort, ENCODER, input_size=SIZE, cache_root=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


# --- privacy ---------------------------------------------------------------------------------------


def test_no_identifying_header_value_reaches_the_cache_logs_or_quarantine(tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    files = {sid: [write_dicom(tmp_path / f"{sid}_{k}.dcm", ramp(24, 24) + 100 * k, WindowCenter=300, WindowWidth=400,
                               InstanceNumber=k + 1, **PHI) for k in range(2)] for sid in ("s1", "s2")}
    files["s2"].append(truncated(write_dicom(tmp_path / "s2_cut.dcm", ramp(24, 24), **PHI), 0.4))
    for path in (p for paths in files.values() for p in paths):  # the premise: the values are in the files
        assert PHI["PatientID"].encode() in path.read_bytes()
    cohort = cohort_of(files)
    root = tmp_path / "cache"
    entry = embed.embed_cohort(cohort, ENCODER, "window+clahe", input_size=SIZE, cache_root=root, progress=False)
    with pytest.raises(ImageReadError) as strict_error:
        embed.embed_cohort(cohort, ENCODER, "crop", input_size=SIZE, cache_root=root, progress=False, strict=True)

    assert len(entry.quarantine) == 1 and entry.embeddings.shape[0] == 4
    written = b"".join(f.read_bytes() for f in root.rglob("*") if f.is_file())
    assert {f.name for f in entry.path.iterdir()} >= {"embeddings.npy", "index.csv", "meta.json", "quarantine.json"}
    captured = capsys.readouterr()
    emitted = caplog.text + captured.out + captured.err + json.dumps(entry.quarantine) + str(strict_error.value)
    emitted += json.dumps(entry.meta) + entry.index.to_csv()
    for fragment in PHI_FRAGMENTS:
        assert fragment.encode() not in written, fragment
        assert fragment not in emitted, fragment
