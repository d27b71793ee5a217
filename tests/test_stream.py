"""Out-of-core input and output: row readers, page release, streamed fit and transform."""

from __future__ import annotations

import json
import mmap
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import ul4m4.inference
from ul4m4 import UL4M4Imputer, stream
from ul4m4._utils.files import MANIFEST
from ul4m4.stream import MemmapRows, RowSubset, SliceRows, as_row_source


def _incomplete(n=120, seed=0, rate=0.4, dims=(5, 3, 4), empty=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    X = {}
    for m, d in enumerate(dims):
        X[f"m{m}"] = (latent @ rng.normal(size=(2, d)) + 0.1 * rng.normal(size=(n, d))
                      ).astype(np.float32)
    mask = rng.random((n, len(dims))) > rate
    mask[np.arange(n), rng.integers(0, len(dims), n)] = True
    mask[:empty] = False
    for m, name in enumerate(X):
        X[name][~mask[:, m]] = np.nan
    return X


def _save_maps(X, directory: Path):
    maps = {}
    for name, a in X.items():
        np.save(directory / f"{name}.npy", a)
        maps[name] = np.load(directory / f"{name}.npy", mmap_mode="r")
    return maps


class SliceOnly:
    """The smallest array-like the imputer must accept: shape, dtype, slice reads only."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.reads = 0

    def __getitem__(self, rows):
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError(f"only contiguous slices, got {rows!r}")
        self.reads += 1
        return self.array[rows]


def _fit(X, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return UL4M4Imputer(**params).fit(X)


def _assert_same_fit(a: UL4M4Imputer, b: UL4M4Imputer) -> None:
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.history_ == b.history_ and a.inertia_ == b.inertia_ and a.n_iter_ == b.n_iter_
    for name in a.modalities_:
        np.testing.assert_array_equal(a.cluster_centers_[name], b.cluster_centers_[name])
        np.testing.assert_array_equal(a.mean_[name], b.mean_[name])
        np.testing.assert_array_equal(a.scale_[name], b.scale_[name])


# ------------------------------------------------------------------------- readers
INDEXES = [
    slice(None), slice(3, 17), slice(40, 2), slice(1, 50, 7), slice(None, None, -3),
    np.array([5, 1, 1, 49, 0, 30, 31, 32]), np.array([-1, -50]), np.arange(50) % 3 == 0,
    np.array([], dtype=np.int64), 7,
]


@pytest.mark.parametrize("index", INDEXES, ids=lambda i: repr(i)[:30])
@pytest.mark.parametrize("kind", ["memmap", "slice_only", "subset", "subset_of_memmap"])
def test_readers_match_numpy_indexing(tmp_path, monkeypatch, kind, index):
    # Tiny spans and gaps force index reads through many separate slice reads.
    monkeypatch.setattr(stream, "_SPAN_BYTES", 3 * 4 * 4)
    monkeypatch.setattr(stream, "_MAX_GAP_ROWS", 1)
    base = np.arange(60 * 4, dtype=np.float32).reshape(60, 4)
    np.save(tmp_path / "a.npy", base)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    keep = np.r_[0:20, 25:55]  # 50 rows
    if kind == "memmap":
        reader, expected = MemmapRows(mm[:50]), base[:50]
    elif kind == "slice_only":
        reader, expected = SliceRows(SliceOnly(base[:50])), base[:50]
    elif kind == "subset":
        reader, expected = RowSubset(base, keep), base[keep]
    else:
        reader, expected = RowSubset(MemmapRows(mm), keep), base[keep]
    got = reader[index]
    np.testing.assert_array_equal(got, expected[index])
    assert got.dtype == expected.dtype
    if isinstance(got, np.ndarray) and got.ndim == 2:
        assert not np.shares_memory(got, base) and not np.shares_memory(got, mm)
    np.testing.assert_array_equal(np.asarray(reader), expected)


def test_reader_rejects_bad_indexes():
    reader = SliceRows(SliceOnly(np.zeros((5, 2))))
    with pytest.raises(IndexError, match="out of range"):
        reader[np.array([5])]
    with pytest.raises(IndexError, match="boolean"):
        reader[np.ones(4, dtype=bool)]
    with pytest.raises(IndexError, match="one row index"):
        reader[0, 1]


def test_as_row_source_keeps_in_memory_arrays(tmp_path):
    a = np.zeros((4, 2))
    assert as_row_source(a) is a
    np.save(tmp_path / "a.npy", a)
    assert isinstance(as_row_source(np.load(tmp_path / "a.npy", mmap_mode="r")), MemmapRows)
    assert isinstance(as_row_source(SliceOnly(a)), SliceRows)


def _rss_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile")


@pytest.mark.skipif(not hasattr(mmap, "MADV_DONTNEED") or not Path("/proc/self/status").exists(),
                    reason="needs Linux madvise and /proc")
def test_memmap_reads_release_their_pages(tmp_path):
    n, d = 16384, 256  # 16 MiB of float32
    np.save(tmp_path / "big.npy", np.ones((n, d), dtype=np.float32))
    size_kib = n * d * 4 // 1024

    def read_all(source):
        before = _rss_file_kib()
        total = 0.0
        for start in range(0, n, 512):
            total += float(np.array(source[start:start + 512], copy=True).sum())
        assert total == n * d
        return _rss_file_kib() - before

    # The measurement itself: a plain memory map keeps every page read resident...
    plain = read_all(np.load(tmp_path / "big.npy", mmap_mode="r"))
    assert plain > 0.8 * size_kib
    # ...the reader gives them back after each chunk.
    reader = MemmapRows(np.load(tmp_path / "big.npy", mmap_mode="r"))
    assert reader.releases_pages
    assert read_all(reader) < 0.1 * size_kib
    before = _rss_file_kib()
    reader[np.arange(0, n, 3)]
    assert _rss_file_kib() - before < 0.1 * size_kib


def test_copy_on_write_maps_are_never_released(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((10, 3)))
    cow = np.load(tmp_path / "a.npy", mmap_mode="c")
    cow[2] = 7.0  # private change, which MADV_DONTNEED would discard
    reader = MemmapRows(cow)
    assert not reader.releases_pages
    np.testing.assert_array_equal(reader[0:5][2], 7.0)
    np.testing.assert_array_equal(reader[0:5][2], 7.0)


# ------------------------------------------------------------------------------ fit
@pytest.mark.parametrize("batch_size", [16, None])
def test_streamed_fit_is_bit_identical_to_in_memory(tmp_path, batch_size):
    X = _incomplete(n=150, seed=1)
    maps = _save_maps(X, tmp_path)
    slice_only = {n: SliceOnly(a) for n, a in X.items()}
    params = dict(n_clusters=4, random_state=0, batch_size=batch_size, n_jobs=2)
    reference = _fit(X, **params)
    _assert_same_fit(_fit(maps, **params), reference)
    _assert_same_fit(_fit(slice_only, **params), reference)
    # Across batch sizes too (the in-memory guarantee carries over).
    _assert_same_fit(_fit(maps, **{**params, "batch_size": 5}), reference)


def test_streamed_fit_with_empty_samples_does_not_copy_the_data(tmp_path, monkeypatch):
    X = _incomplete(n=90, seed=2, empty=6)
    maps = _save_maps(X, tmp_path)
    reference = _fit(X, n_clusters=3, random_state=0, empty="mean", batch_size=16)
    subsets = []
    original = stream.subset_rows

    def spy(array, rows):
        out = original(array, rows)
        subsets.append(out)
        return out

    monkeypatch.setattr("ul4m4.validation.subset_rows", spy)
    got = _fit(maps, n_clusters=3, random_state=0, empty="mean", batch_size=16)
    _assert_same_fit(got, reference)
    assert (got.labels_[:6] == -1).all()
    assert subsets and all(isinstance(s, RowSubset) for s in subsets)


def test_streamed_validation_names_global_rows(tmp_path):
    X = _incomplete(n=100, seed=3)
    X["m1"][77, 0] = np.nan
    X["m1"][77, 1:] = 1.0
    maps = _save_maps(X, tmp_path)
    with pytest.raises(ValueError, match=r"modality 'm1': rows \[77\] have some but not all"):
        UL4M4Imputer(3).fit(maps)
    with pytest.raises(ValueError, match=r"modality 'm1': rows \[77\]"):
        UL4M4Imputer(3).fit({n: SliceOnly(a) for n, a in X.items()})


_RSS_CHILD = textwrap.dedent("""
    import json, sys, warnings
    from pathlib import Path
    import numpy as np
    from ul4m4 import UL4M4Imputer

    def status():
        out = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssFile"):
                out[key] = int(value.split()[0])
        return out

    directory = Path(sys.argv[1])
    X = {n: np.load(directory / f"{n}.npy", mmap_mode="r") for n in ("a", "b")}
    UL4M4Imputer(2, max_iter=1, random_state=0, batch_size=512).fit(
        {n: a[:2000] for n, a in X.items()})  # warm up imports and code paths
    before = status()
    Path("/proc/self/clear_refs").write_text("5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        UL4M4Imputer(2, max_iter=1, random_state=0, batch_size=512).fit(X)
    after = status()
    print(json.dumps({"before": before, "after": after}))
""")


@pytest.mark.skipif(not hasattr(mmap, "MADV_DONTNEED") or not Path("/proc/self/status").exists(),
                    reason="needs Linux madvise and /proc")
def test_streamed_fit_peak_memory_is_far_below_the_data(tmp_path):
    n, d = 50_000, 256
    rng = np.random.default_rng(0)
    draw = rng.random(n)
    for name, missing in (("a", draw < 0.3), ("b", draw > 0.7)):
        a = np.lib.format.open_memmap(tmp_path / f"{name}.npy", mode="w+", dtype=np.float32,
                                      shape=(n, d))
        for start in range(0, n, 10_000):
            a[start:start + 10_000] = rng.standard_normal((10_000, d), dtype=np.float32)
        a[missing] = np.nan
        a.flush()
        del a
    data_kib = 2 * n * d * 4 // 1024  # 100 MiB
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    extra = result["after"]["VmHWM"] - result["before"]["VmRSS"]
    # O(n) labels and distances plus chunks and thread arenas; never the data (100 MiB).
    assert extra < 0.5 * data_kib, result
    assert result["after"]["RssFile"] - result["before"]["RssFile"] < 0.1 * data_kib, result


# ------------------------------------------------------------------------ transform
@pytest.mark.parametrize("completion", ["greedy", "soft"])
def test_transform_to_files_matches_in_memory(tmp_path, monkeypatch, completion):
    X = _incomplete(n=130, seed=4)
    X["m2"] = X["m2"].astype(np.float64)
    imp = _fit(X, n_clusters=4, random_state=0, completion=completion, batch_size=8)
    filled, sources, weights = imp.transform(X, return_sources=True, return_weights=True)
    # Several blocks of several chunks each.
    monkeypatch.setattr(ul4m4.inference, "TRANSFORM_BLOCK_BYTES", 8 * 12 * 4 * 3)
    maps = _save_maps(X, tmp_path)
    out = tmp_path / "out"
    ordered = {"m2": maps["m2"], "m0": maps["m0"], "m1": maps["m1"]}
    got, got_sources, got_weights = imp.transform(
        ordered, out_dir=out, return_sources=True, return_weights=True
    )
    assert list(got) == ["m2", "m0", "m1"]
    for name in X:
        assert isinstance(got[name], np.memmap) and got[name].dtype == X[name].dtype
        np.testing.assert_array_equal(got[name], filled[name])
        np.testing.assert_array_equal(np.load(out / f"{name}.npy"), filled[name])
        np.testing.assert_array_equal(got_sources[name], sources[name])
        np.testing.assert_array_equal(got_weights[name], weights[name])
    assert sorted(p.name for p in out.iterdir()) == ["m0.npy", "m1.npy", "m2.npy", MANIFEST]


def test_transform_to_files_leaves_old_files_on_error(tmp_path):
    X = _incomplete(n=60, seed=5)
    imp = _fit(X, n_clusters=3, random_state=0)
    out = tmp_path / "out"
    first = imp.transform(X, out_dir=out)
    before = {n: np.array(a) for n, a in first.items()}
    del first
    bad = {n: a.copy() for n, a in X.items()}
    bad["m0"][:] = np.nan
    bad["m1"][:] = np.nan
    bad["m2"][:] = np.nan
    with pytest.raises(ValueError, match="no observed modality"):
        imp.transform(bad, out_dir=out)
    imp_mean = _fit(X, n_clusters=3, random_state=0, empty="mean")

    def failing(*args, **kwargs):
        raise RuntimeError("disk full")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ul4m4.inference, "complete", failing)
        with pytest.raises(RuntimeError, match="disk full"):
            imp_mean.transform(bad, out_dir=out)
    for name, values in before.items():
        np.testing.assert_array_equal(np.load(out / f"{name}.npy"), values)
    assert sorted(p.name for p in out.iterdir()) == ["m0.npy", "m1.npy", "m2.npy", MANIFEST]


def test_integer_input_to_files_comes_back_unchanged(tmp_path):
    rng = np.random.default_rng(6)
    X = {"a": rng.integers(0, 9, size=(40, 3)), "b": rng.normal(size=(40, 2))}
    X["b"][::4] = np.nan
    imp = _fit(X, n_clusters=3, random_state=0)
    got = imp.transform(X, out_dir=tmp_path)
    assert got["a"].dtype == X["a"].dtype  # as in memory: an integer modality is all observed
    np.testing.assert_array_equal(got["a"], X["a"])
    np.testing.assert_array_equal(got["b"], imp.transform(X)["b"])
