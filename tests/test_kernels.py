"""The compiled kernels equal plain, literal loops of what they compute, bit for bit."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ul4m4 import _kernels
from ul4m4.blocks import PackedBlocks
from ul4m4.rowsums import RowOrderSums
from ul4m4.threads import INLINE_BYTES, map_modalities


def _variant_param(isa):
    usable = _kernels.is_built(isa) and _kernels.cpu_supports(isa)
    reason = f"the {isa} kernels are not built or this CPU does not run them"
    return pytest.param(isa, marks=pytest.mark.skipif(not usable, reason=reason))


#: Every build variant; those this machine cannot run are skipped (importing one
#: would stop the process with SIGILL).
EACH_VARIANT = pytest.mark.parametrize("isa", [_variant_param(v) for v in _kernels.VARIANTS])


def _variant(isa):
    return _kernels.load_variant(isa)


def test_the_kernels_are_the_compiled_extension_of_the_selected_variant():
    forced = os.environ.get(_kernels.ENV_VAR, "").strip().lower()
    assert _kernels.ISA == (forced if forced not in ("", "auto") else
                            _kernels.usable_variants()[0])
    compiled = _variant(_kernels.ISA)
    assert compiled.__file__.endswith((".so", ".pyd"))
    for name in ("add_rows", "add_squared_deviations", "partial_sq_dists_from_cross",
                 "nearest_from_cross", "candidate_minimum", "sq_to_assigned",
                 "bounded_argmin"):
        assert getattr(_kernels, name) is getattr(compiled, name)


# ------------------------------------------------------------------------ sums
@EACH_VARIANT
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 25), d=st.integers(1, 40), k=st.integers(1, 5),
    dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31),
    use_keep=st.booleans(),
)
def test_add_rows_equals_a_literal_loop(isa, n, d, k, dtype, seed, use_keep):
    kernels = _variant(isa)
    rng = np.random.default_rng(seed)
    block = (rng.standard_normal((n, d)) * 10.0 ** rng.integers(-4, 5, (n, 1))).astype(dtype)
    labels = rng.integers(0, k, n).astype(np.int64)
    keep = rng.random(n) < 0.6
    running = rng.standard_normal((k, d))
    expected = running.copy()
    for i in range(n):
        if keep[i] or not use_keep:
            for t in range(d):
                expected[labels[i], t] = expected[labels[i], t] + float(block[i, t])
    got = running.copy()
    kernels.add_rows(got, labels, block, keep.view(np.uint8) if use_keep else None)
    assert np.array_equal(got, expected)


@EACH_VARIANT
def test_add_rows_never_reads_skipped_rows(isa):
    kernels = _variant(isa)
    block = np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 4.0]])
    sums = np.zeros((1, 2))
    keep = np.array([1, 0, 1], dtype=np.uint8)
    kernels.add_rows(sums, np.zeros(3, dtype=np.int64), block, keep)
    assert sums.tolist() == [[4.0, 6.0]]


@EACH_VARIANT
def test_add_rows_rejects_bad_labels_and_shapes(isa):
    kernels = _variant(isa)
    sums = np.zeros((2, 3))
    block = np.ones((4, 3))
    with pytest.raises(IndexError, match="label 2 of row 1"):
        kernels.add_rows(sums, np.array([0, 2, 0, 0], dtype=np.int64), block)
    with pytest.raises(IndexError, match="label -1 of row 0"):
        kernels.add_rows(sums, np.array([-1, 0, 0, 0], dtype=np.int64), block)
    with pytest.raises(ValueError, match="same number of rows"):
        kernels.add_rows(sums, np.zeros(3, dtype=np.int64), block)
    with pytest.raises(ValueError, match="same number of rows"):
        kernels.add_rows(sums, np.zeros(4, dtype=np.int64), block, np.ones(2, dtype=np.uint8))
    with pytest.raises(ValueError, match="sums has 3 columns, block has 2"):
        kernels.add_rows(sums, np.zeros(4, dtype=np.int64), np.ones((4, 2)))


@EACH_VARIANT
@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 20), d=st.integers(1, 40), seed=st.integers(0, 2**31),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_add_squared_deviations_equals_numpy_in_row_order(isa, n, d, seed, dtype):
    kernels = _variant(isa)
    rng = np.random.default_rng(seed)
    block = (rng.standard_normal((n, d)) * 100).astype(dtype)
    center = rng.standard_normal(d)
    keep = rng.random(n) < 0.7
    expected = np.full(d, 0.5)
    for i in np.flatnonzero(keep):
        dev = block[i].astype(np.float64) - center
        dev *= dev
        expected = expected + dev
    got = np.full(d, 0.5)
    kernels.add_squared_deviations(got, block, center, keep.view(np.uint8))
    assert np.array_equal(got, expected)
    with pytest.raises(ValueError, match=f"must have {d} entries"):
        kernels.add_squared_deviations(np.zeros(d + 1), block, center)


# ------------------------------------------------------------------- distances
def _literal_from_cross(cross, row_norms, center_norms, row_has, center_has, inv_dims, rounding):
    n_mod, n, k = cross.shape
    sq, err = np.empty((n, k)), np.empty((n, k))
    for i in range(n):
        for j in range(k):
            num = bound = count = 0.0
            for m in range(n_mod):
                if row_has[i, m] and center_has[j, m]:
                    norm = row_norms[m, i] + center_norms[m, j]
                    value = max(float(cross[m, i, j]) * -2.0 + norm, 0.0)
                    num += value * inv_dims[m]
                    bound += norm * inv_dims[m]
                    count += 1.0
            if count:
                sq[i, j] = num * (1.0 / count)
                err[i, j] = bound * rounding * (1.0 / count)
            else:
                sq[i, j], err[i, j] = np.inf, 0.0
    return sq, err


def _stacked(cross, row_norms, row_has, rng):
    """The kernel's layout: each modality's observed rows stacked in a shuffled order.

    Returns ``(cross (R, k), norms (R,), at (B, M))`` holding the same products as
    ``cross`` (M, B, k), as packed blocks or zero-filled ones lay them out.
    """
    n_mod, n, k = cross.shape
    parts, norms = [], []
    at = np.full((n, n_mod), -1, dtype=np.int64)
    offset = 0
    for m in range(n_mod):
        rows = rng.permutation(np.flatnonzero(row_has[:, m]))
        at[rows, m] = offset + np.arange(rows.size)
        parts.append(cross[m, rows])
        norms.append(row_norms[m, rows])
        offset += rows.size
    return (np.ascontiguousarray(np.concatenate(parts).reshape(offset, k)),
            np.concatenate(norms), at)


@EACH_VARIANT
@settings(max_examples=40, deadline=None)
@given(n_mod=st.integers(1, 4), n=st.integers(1, 9), k=st.integers(1, 20),
       seed=st.integers(0, 2**31), dtype=st.sampled_from([np.float32, np.float64]),
       complete_centres=st.booleans())
def test_partial_sq_dists_from_cross_equals_the_literal_formula(isa, n_mod, n, k, seed, dtype,
                                                                 complete_centres):
    kernels = _variant(isa)
    rng = np.random.default_rng(seed)
    cross = rng.standard_normal((n_mod, n, k)).astype(dtype)
    row_norms = rng.random((n_mod, n)) * 3
    center_norms = rng.random((n_mod, k)) * 3
    row_has = (rng.random((n, n_mod)) < 0.6).astype(np.uint8)
    center_has = (rng.random((k, n_mod)) < (1.0 if complete_centres else 0.7)).astype(np.uint8)
    inv_dims = 1.0 / rng.integers(1, 800, n_mod).astype(np.float64)
    sq, err = np.empty((n, k)), np.empty((n, k))
    stacked, norms, at = _stacked(cross, row_norms, row_has, rng)
    kernels.partial_sq_dists_from_cross(stacked, norms, at, center_norms, center_has,
                                        inv_dims, 1e-5, sq, err)
    want_sq, want_err = _literal_from_cross(cross, row_norms, center_norms, row_has,
                                            center_has, inv_dims, 1e-5)
    assert np.array_equal(sq, want_sq)
    assert np.array_equal(err, want_err)


@EACH_VARIANT
@settings(max_examples=40, deadline=None)
@given(n_mod=st.integers(1, 4), n=st.integers(0, 9), k=st.integers(1, 12),
       seed=st.integers(0, 2**31), ties=st.booleans())
def test_nearest_from_cross_is_the_distances_then_the_bounded_argmin(isa, n_mod, n, k, seed,
                                                                     ties):
    kernels = _variant(isa)
    rng = np.random.default_rng(seed)
    cross = rng.standard_normal((n_mod, n, k))
    if ties:  # equal columns: exact ties, and rows sharing nothing with some centres
        cross = np.round(cross) / 2
        half = k // 2
        cross[:, :, k - half:] = cross[:, :, :half]
    row_norms = np.round(rng.random((n_mod, n)) * 6) / 2
    center_norms = np.round(rng.random((n_mod, k)) * 6) / 2
    row_has = (rng.random((n, n_mod)) < 0.6).astype(np.uint8)
    center_has = (rng.random((k, n_mod)) < 0.7).astype(np.uint8)
    inv_dims = 1.0 / rng.integers(1, 800, n_mod).astype(np.float64)
    stacked, norms, at = _stacked(cross, row_norms, row_has, rng)
    args = (stacked, norms, at, center_norms, center_has, inv_dims, 1e-5)
    sq, err = np.empty((n, k)), np.empty((n, k))
    kernels.partial_sq_dists_from_cross(*args, sq, err)
    want = [np.empty(n, np.int64), np.empty(n), np.empty(n, np.uint8)]
    kernels.bounded_argmin(sq, err, *want)
    got = [np.empty(n, np.int64), np.empty(n), np.empty(n, np.uint8)]
    kernels.nearest_from_cross(*args, *got)
    for a, b in zip(got, want, strict=True):
        assert _bits(a) == _bits(b)


@EACH_VARIANT
@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 7), k=st.integers(1, 40), seed=st.integers(0, 2**31),
       special=st.booleans())
def test_candidate_minimum_is_the_float32_tensor_minimum(isa, n, k, seed, special):
    kernels = _variant(isa)
    rng = np.random.default_rng(seed)
    p = (rng.random((n, k)) * 10.0 ** rng.integers(-3, 4, (n, k))).astype(np.float32)
    q_open = (rng.random((k, k)) * 5).astype(np.float32)
    inverse = (1.0 / rng.integers(1, 4, (k, k))).astype(np.float32)
    if special:  # pairs that share nothing, and a NaN
        q_open[rng.random((k, k)) < 0.3] = np.inf
        if n:
            p[rng.integers(n), rng.integers(k)] = np.nan
    want = (p[:, None, :] + q_open[None]) * inverse[None]
    want = want.min(axis=2).astype(np.float64)
    got = np.empty((n, k))
    kernels.candidate_minimum(p, np.ascontiguousarray(q_open.T), np.ascontiguousarray(inverse.T),
                              got)
    np.testing.assert_array_equal(got, want)


def _literal_sq_to_assigned(block, labels, centers):
    out = np.empty(block.shape[0])
    for i in range(block.shape[0]):
        lanes = [0.0] * 8
        for t in range(block.shape[1]):
            dev = float(block[i, t]) - float(centers[labels[i], t])
            lanes[t % 8] += dev * dev
        total = 0.0
        for lane in lanes:
            total += lane
        out[i] = total
    return out


@EACH_VARIANT
@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 9), d=st.integers(1, 40), k=st.integers(1, 5),
       seed=st.integers(0, 2**31), dtype=st.sampled_from([np.float32, np.float64]))
def test_sq_to_assigned_is_the_eight_lane_sum_in_order(isa, n, d, k, seed, dtype):
    kernels = _variant(isa)
    rng = np.random.default_rng(seed)
    block = (rng.standard_normal((n, d)) * 10.0 ** rng.integers(-3, 4, (n, 1))).astype(dtype)
    centers = rng.standard_normal((k, d)).astype(dtype)
    labels = rng.integers(0, k, n).astype(np.int64)
    out = np.empty(n)
    kernels.sq_to_assigned(block, labels, centers, out)
    assert out.tobytes() == _literal_sq_to_assigned(block, labels, centers).tobytes()
    if n:
        with pytest.raises(IndexError, match="outside"):
            kernels.sq_to_assigned(block, labels + k, centers, out)


@EACH_VARIANT
def test_partial_sq_dists_from_cross_rejects_mismatched_shapes(isa):
    kernels = _variant(isa)
    cross = np.zeros((6, 4))
    at = np.arange(6, dtype=np.int64).reshape(3, 2)
    args = [np.zeros(6), at, np.zeros((2, 4)), np.ones((4, 2), np.uint8), np.ones(2)]
    out = [np.empty((3, 4)), np.empty((3, 4))]
    kernels.partial_sq_dists_from_cross(cross, *args, 1.0, *out)
    with pytest.raises(ValueError, match="row_norms must be"):
        kernels.partial_sq_dists_from_cross(cross, np.zeros(5), *args[1:], 1.0, *out)
    with pytest.raises(ValueError, match="center_has must be"):
        kernels.partial_sq_dists_from_cross(cross, *args[:3], np.ones((4, 1), np.uint8),
                                            *args[4:], 1.0, *out)
    with pytest.raises(ValueError, match="sq and err must be"):
        kernels.partial_sq_dists_from_cross(cross, *args, 1.0, np.empty((3, 3)), out[1])
    with pytest.raises(IndexError, match=r"at\[2, 1\] = 6"):
        kernels.partial_sq_dists_from_cross(cross, args[0], at + 1, *args[2:], 1.0, *out)


# ------------------------------------------------------ variants on long rows
def _bits(array):
    """The bytes of ``array``: NaN payloads and signed zeros count."""
    return np.ascontiguousarray(array).tobytes()


def _awkward(rng, shape, dtype):
    """Values over many magnitudes, with subnormals, signed zeros, infinities and NaN."""
    values = rng.standard_normal(shape) * 10.0 ** rng.integers(-300, 300, shape)
    special = rng.random(shape)
    values[special < 0.02] = 5e-324
    values[(special >= 0.02) & (special < 0.04)] = -0.0
    values[(special >= 0.04) & (special < 0.05)] = np.inf
    values[(special >= 0.05) & (special < 0.06)] = np.nan
    with np.errstate(over="ignore"):
        return values.astype(dtype)


def _all_kernel_outputs(kernels, seed, d, k, dtype):
    rng = np.random.default_rng(seed)
    n, n_mod = 37, 3
    block = _awkward(rng, (n, d), dtype)
    labels = rng.integers(0, k, n).astype(np.int64)
    keep = (rng.random(n) < 0.7).astype(np.uint8)
    sums = _awkward(rng, (k, d), np.float64)
    kernels.add_rows(sums, labels, block, keep)
    dev = _awkward(rng, d, np.float64)
    with np.errstate(invalid="ignore"):
        kernels.add_squared_deviations(dev, block, np.abs(_awkward(rng, d, np.float64)))
    cross = _awkward(rng, (n_mod, n, k), dtype)
    norms = [np.abs(_awkward(rng, shape, np.float64)) for shape in ((n_mod, n), (n_mod, k))]
    center_has = (rng.random((k, n_mod)) < 0.8).astype(np.uint8)
    center_has[:, 0] = 1  # one complete modality: the loop without the per-centre test
    sq, err = np.empty((n, k)), np.empty((n, k))
    stacked, row_norms, at = _stacked(cross, norms[0],
                                      (rng.random((n, n_mod)) < 0.7).astype(np.uint8), rng)
    kernels.partial_sq_dists_from_cross(stacked, row_norms, at, norms[1], center_has,
                                        1.0 / np.array([7.0, 512.0, 768.0]), 1e-5, sq, err)
    out = [np.empty(n, np.int64), np.empty(n), np.empty(n, np.uint8)]
    kernels.bounded_argmin(sq, err, *out)
    return [sums, dev, sq, err, *out]


@EACH_VARIANT
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_variant_gives_the_baseline_bits_on_vector_wide_rows(isa, dtype):
    """Row and centre counts around every vector width, tails included, and odd values."""
    for seed, (d, k) in enumerate([(1, 1), (7, 3), (8, 8), (9, 16), (15, 17), (16, 31),
                                   (17, 33), (33, 64), (64, 65), (100, 130), (513, 7)]):
        want = _all_kernel_outputs(_variant("baseline"), seed, d, k, dtype)
        got = _all_kernel_outputs(_variant(isa), seed, d, k, dtype)
        for a, b in zip(got, want, strict=True):
            assert _bits(a) == _bits(b), (isa, d, k)


# --------------------------------------------------------- ordered accumulation
def _chunks(n, step):
    return [slice(s, min(s + step, n)) for s in range(0, n, step)]


def test_compute_and_add_on_threads_equals_adding_in_row_order():
    rng = np.random.default_rng(0)
    n, k, dims = 400, 6, [5, 3]
    blocks = [(rng.standard_normal((n, d)) * 10.0 ** rng.integers(-3, 4, (n, 1)))
              .astype(np.float32) for d in dims]
    mask = rng.random((n, 2)) < 0.7
    labels = rng.integers(0, k, n)
    sequential = RowOrderSums(k, dims)
    for rows in _chunks(n, 37):
        sequential.add(sequential.chunk_members(
            labels[rows], PackedBlocks.pack([b[rows] for b in blocks], mask[rows]), mask[rows]))

    threaded = RowOrderSums(k, dims)
    delays = rng.random(len(_chunks(n, 37))) * 0.01

    def work(index, rows):
        def compute():
            time.sleep(delays[index])  # later chunks often finish first
            part = PackedBlocks.of_full([b[rows] for b in blocks], mask[rows])
            return rows.start, threaded.chunk_members(labels[rows], part, mask[rows])

        return threaded.compute_and_add(rows, compute)

    with ThreadPoolExecutor(4) as pool:
        starts = list(pool.map(work, *zip(*enumerate(_chunks(n, 37)), strict=True)))
    assert starts == [rows.start for rows in _chunks(n, 37)]
    for got, want in zip(threaded.sums, sequential.sums, strict=True):
        assert np.array_equal(got, want)
    assert np.array_equal(threaded.counts, sequential.counts)


def test_compute_and_add_passes_the_turn_on_when_a_chunk_fails():
    acc = RowOrderSums(2, [1])
    block = np.ones((3, 1))

    def compute_fail():
        raise RuntimeError("chunk 0 failed")

    def compute_ok():
        mask = np.ones((3, 1), bool)
        return "ok", acc.chunk_members(np.zeros(3, np.int64),
                                       PackedBlocks.of_full([block], mask), mask)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(acc.compute_and_add, slice(0, 3), compute_fail)
        second = pool.submit(acc.compute_and_add, slice(3, 6), compute_ok)
        assert second.result(timeout=10) == "ok"  # no deadlock behind the failed chunk
        with pytest.raises(RuntimeError, match="chunk 0 failed"):
            first.result(timeout=10)
    assert acc.sums[0].tolist() == [[3.0], [0.0]]


def test_map_modalities_keeps_order_and_raises_the_first_error_in_order():
    arrays = [np.zeros((2, 1))] * 4

    def fn(m):
        time.sleep(0.01 * (3 - m))
        if m in (1, 2):
            raise ValueError(f"modality {m}")
        return m * 10

    assert map_modalities(lambda m: m * 10, arrays, 3) == [0, 10, 20, 30]
    assert map_modalities(lambda m: m * 10, arrays, 1) == [0, 10, 20, 30]
    with pytest.raises(ValueError, match="modality 1"):
        map_modalities(fn, arrays, 4)
    with pytest.raises(ValueError, match="modality 1"):
        map_modalities(fn, arrays, 1)


def test_map_modalities_reads_streamed_modalities_one_after_the_other(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 2), dtype=np.float32))
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    threads = set()

    def fn(m):
        threads.add(threading.get_ident())
        return m

    assert map_modalities(fn, [mapped, np.zeros((3, 2))], 2) == [0, 1]
    assert threads == {threading.get_ident()}
    threads.clear()
    large = np.zeros((INLINE_BYTES // 8 + 1, 1))  # past the inline threshold
    map_modalities(lambda m: (threads.add(threading.get_ident()), time.sleep(0.05)),
                   [large] * 2, 2)
    assert threading.get_ident() not in threads


def test_map_modalities_runs_small_data_on_the_calling_thread():
    threads = set()
    small = np.zeros((INLINE_BYTES // 16, 1))  # two of them: exactly the threshold
    assert map_modalities(lambda m: threads.add(threading.get_ident()) or m,
                          [small] * 2, 4) == [0, 1]
    assert threads == {threading.get_ident()}
