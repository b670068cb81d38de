"""The header index (trainables.data.header_index): a second load of an unchanged cohort reads no header,
a changed file is read again, the order is what reading gives, and nothing identifying is stored."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pydicom
import pytest

from trainables.data import header_index, synthetic
from trainables.data.images import ImageReadError, order_series

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("hi") / "cohort", seed=11, n_patients=3)


@pytest.fixture()
def reads(monkeypatch):
    """Count the headers read through the index (the reader it calls, patched)."""
    calls = []
    real = header_index.read_header

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(header_index, "read_header", counting)
    return calls


def _load(root):
    return synthetic.load(root, n_patients=3, seed=11)


def _series_files(root):
    return [sorted(str(p) for p in d.iterdir()) for d in sorted((root / "images").glob("*/*"))]


def test_second_load_reads_no_header_and_orders_alike(home, cohort_dir, reads):
    first = _load(cohort_dir)
    n_files = sum(len(f) for f in _series_files(cohort_dir))
    assert len(reads) == n_files == len(first.instances)
    reads.clear()
    second = _load(cohort_dir)
    assert reads == []
    assert second.instances.equals(first.instances)
    # the index gives the order reading the headers gives
    for files in _series_files(cohort_dir):
        expected = order_series(files)
        got = first.instances[first.instances.path.isin(files)].sort_values("order").path.tolist()
        assert got == [p for p, _ in expected]


def test_a_touched_or_rewritten_file_is_read_again(home, tmp_path, cohort_dir, reads):
    root = shutil.copytree(cohort_dir, tmp_path / "copy")
    before = _load(root).instances
    reads.clear()
    files = _series_files(root)[0]
    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _load(root)
    assert reads == [files[0]]
    # move the first slice of a series to the far end: the stale position must not be used
    ordered = before[before.path.isin(files)].sort_values("order").path.tolist()
    ds = pydicom.dcmread(ordered[0])
    last = pydicom.dcmread(ordered[-1])
    ds.ImagePositionPatient = [2 * float(w) - float(v) for v, w in  # the first reflected beyond the last
                               zip(ds.ImagePositionPatient, last.ImagePositionPatient)]
    ds.save_as(ordered[0])
    reads.clear()
    after = _load(root).instances
    assert reads == [ordered[0]]
    now = after[after.path.isin(files)].sort_values("order").path.tolist()
    assert now == [p for p, _ in order_series(files)] and now[-1] == ordered[0]


def test_the_index_holds_no_identifying_value(home, cohort_dir):
    _load(cohort_dir)
    index_files = list((home / "index").glob("*"))
    assert index_files
    text = "".join(f.read_text() for f in index_files)
    secrets = set()
    for folder in (cohort_dir / "images").glob("*/*"):
        for f in folder.iterdir():
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            secrets |= {str(ds.PatientName), str(ds.PatientID), str(ds.PatientBirthDate), ds.StudyInstanceUID,
                        ds.SeriesInstanceUID, ds.SOPInstanceUID, *str(ds.PatientName).split("^")}
    found = sorted(s for s in secrets if s and s in text)
    assert not found, f"identifying header values in the index: {found}"
    assert "MRN" not in text


def test_unreadable_header_reason_is_kept_and_raised_like_reading(home, tmp_path, cohort_dir, reads):
    root = shutil.copytree(cohort_dir, tmp_path / "bad")
    files = _series_files(root)[1]
    data = open(files[2], "rb").read()
    open(files[2], "wb").write(data[:200])  # truncated inside the header
    with pytest.raises(ImageReadError) as direct:
        order_series(files)
    for expected_reads in (len(files), 0):
        reads.clear()
        index = header_index.scan(root / "images", files)
        assert len(reads) == expected_reads and index.n_read == expected_reads
        with pytest.raises(ImageReadError) as via_index:
            index.order(files)
        assert (via_index.value.path, via_index.value.reason) == (direct.value.path, direct.value.reason)


def test_damaged_index_file_is_ignored(home, cohort_dir, reads):
    files = _series_files(cohort_dir)[0]
    header_index.scan(cohort_dir / "images", files)
    header_index.index_path(cohort_dir / "images").write_text('{"format": 1, "files": ')
    reads.clear()
    index = header_index.scan(cohort_dir / "images", files)
    assert len(reads) == len(files)
    assert index.order(files) == order_series(files)


def test_process_pool_reads_the_same_entries(home, cohort_dir):
    """In a fresh single-threaded process (as a CLI run is; the test process may hold Ray's threads),
    many new files are read by a process pool, with the same result as reading them one by one."""
    code = textwrap.dedent(f"""
        import concurrent.futures, sys
        from trainables.data import header_index
        from trainables.data.images import order_series
        used = []
        class Counting(concurrent.futures.ProcessPoolExecutor):
            def __init__(self, *a, **k):
                used.append(1)
                super().__init__(*a, **k)
        header_index.ProcessPoolExecutor = Counting
        header_index.PROCESS_MIN, header_index._CHUNK = 1, 40
        series = {_series_files(cohort_dir)!r}
        pooled = header_index.HeaderIndex({str(cohort_dir / "images")!r})
        assert pooled.update([f for fs in series for f in fs], workers=2) == sum(map(len, series))
        assert used, "no process pool"
        assert all(pooled.order(fs) == order_series(fs) for fs in series)
        print("OK")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stderr[-3000:]


def test_rsna_second_load_reads_no_header_and_quarantines_alike(home, tmp_path, reads):
    from trainables.data import rsna
    from trainables.data.standins import rsna as rsna_standin

    root = rsna_standin.standin(tmp_path / "kaggle", n_studies=4)
    bad = sorted((root / "train_images").rglob("*.dcm"))[0]
    bad.write_bytes(bad.read_bytes()[:300])  # cut inside the header
    first = rsna.load(root)
    assert reads and [q["path"] for q in first.quarantine] == [str(bad)]
    reads.clear()
    second = rsna.load(root)
    assert reads == []
    assert second.instances.equals(first.instances) and second.quarantine == first.quarantine


@pytest.fixture()
def orders(monkeypatch):
    """Count the series the index orders by sorting (``order_series``, patched where it calls it)."""
    calls = []
    real = header_index.order_series

    def counting(paths, *a, **k):
        calls.append(sorted(paths))
        return real(paths, *a, **k)

    monkeypatch.setattr(header_index, "order_series", counting)
    return calls


def test_an_unchanged_series_takes_its_stored_order_a_changed_one_is_ordered_again(home, tmp_path, cohort_dir, reads,
                                                                                      orders, monkeypatch):
    root = shutil.copytree(cohort_dir, tmp_path / "orders")
    series = _series_files(root)
    first = _load(root)
    assert len(orders) == len(series)
    orders.clear()
    reads.clear()
    second = _load(root)
    assert orders == [] and reads == [] and second.instances.equals(first.instances)
    # a changed file (its stamp) orders its own series again, from its re-read header; the others are reused
    files = series[0]
    ordered = first.instances[first.instances.path.isin(files)].sort_values("order").path.tolist()
    ds, last = pydicom.dcmread(ordered[0]), pydicom.dcmread(ordered[-1])
    ds.ImagePositionPatient = [2 * float(w) - float(v) for v, w in zip(ds.ImagePositionPatient, last.ImagePositionPatient)]
    ds.save_as(ordered[0])
    reads.clear()
    orders.clear()
    third = _load(root).instances
    assert reads == [ordered[0]] and orders == [sorted(files)]
    now = third[third.path.isin(files)].sort_values("order").path.tolist()
    assert now == [p for p, _ in order_series(files)] and now[-1] == ordered[0]
    # a file added to a series (same stamps for the others) is a new series: ordered afresh
    extra = Path(files[0]).with_name("extra.dcm")
    shutil.copy(ordered[1], extra)
    orders.clear()
    _load(root)
    assert orders == [sorted([*files, str(extra)])]
    # changed ordering code: no stored order is reused
    orders.clear()
    monkeypatch.setattr(header_index, "_ordering_code", lambda: b"another order_series")
    _load(root)
    assert len(orders) == len(series)


def test_a_stored_order_replays_the_mixed_orientation_warning(home, tmp_path, cohort_dir, orders, caplog):
    root = shutil.copytree(cohort_dir, tmp_path / "mixed")
    files = _series_files(root)[0]
    ds = pydicom.dcmread(files[-1])
    row, col = [float(v) for v in ds.ImageOrientationPatient[:3]], [float(v) for v in ds.ImageOrientationPatient[3:]]
    normal = [row[1] * col[2] - row[2] * col[1], row[2] * col[0] - row[0] * col[2], row[0] * col[1] - row[1] * col[0]]
    ds.ImageOrientationPatient = [*row, *normal]  # a localizer at right angles to the series
    ds.save_as(files[-1])
    logs = []
    for _ in range(2):
        caplog.clear()
        with caplog.at_level("WARNING", logger="trainables.data.images"):
            _load(root)
        logs.append([r.getMessage() for r in caplog.records if "orientations" in r.getMessage()])
    assert len(orders) == len(_series_files(root))  # the second load ordered nothing
    assert len(logs[0]) == 1 and logs[1] == logs[0] and files[-1] in logs[0][0]
