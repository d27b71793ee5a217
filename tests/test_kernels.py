"""The compiled kernels equal plain, literal loops of what they compute, bit for bit."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ul4m4._kernels import (
    add_rows,
    add_squared_deviations,
    bounded_argmin,
    partial_sq_dists_from_cross,
)

from ul4m4 import _kernels
from ul4m4.data import RowOrderSums, map_modalities
from ul4m4.distance import pairwise_exact_sq


def test_the_kernels_are_the_compiled_extension():
    assert _kernels.__file__.endswith((".so", ".pyd"))


# ------------------------------------------------------------------------ sums
@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 25), d=st.integers(1, 9), k=st.integers(1, 5),
    dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31),
    use_keep=st.booleans(),
)
def test_add_rows_equals_a_literal_loop(n, d, k, dtype, seed, use_keep):
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
    add_rows(got, labels, block, keep.view(np.uint8) if use_keep else None)
    assert np.array_equal(got, expected)


def test_add_rows_never_reads_skipped_rows():
    block = np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 4.0]])
    sums = np.zeros((1, 2))
    add_rows(sums, np.zeros(3, dtype=np.int64), block, np.array([1, 0, 1], dtype=np.uint8))
    assert sums.tolist() == [[4.0, 6.0]]


def test_add_rows_rejects_bad_labels_and_shapes():
    sums = np.zeros((2, 3))
    block = np.ones((4, 3))
    with pytest.raises(IndexError, match="label 2 of row 1"):
        add_rows(sums, np.array([0, 2, 0, 0], dtype=np.int64), block)
    with pytest.raises(IndexError, match="label -1 of row 0"):
        add_rows(sums, np.array([-1, 0, 0, 0], dtype=np.int64), block)
    with pytest.raises(ValueError, match="same number of rows"):
        add_rows(sums, np.zeros(3, dtype=np.int64), block)
    with pytest.raises(ValueError, match="same number of rows"):
        add_rows(sums, np.zeros(4, dtype=np.int64), block, np.ones(2, dtype=np.uint8))
    with pytest.raises(ValueError, match="sums has 3 columns, block has 2"):
        add_rows(sums, np.zeros(4, dtype=np.int64), np.ones((4, 2)))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 20), d=st.integers(1, 7), seed=st.integers(0, 2**31),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_add_squared_deviations_equals_numpy_in_row_order(n, d, seed, dtype):
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
    add_squared_deviations(got, block, center, keep.view(np.uint8))
    assert np.array_equal(got, expected)
    with pytest.raises(ValueError, match=f"must have {d} entries"):
        add_squared_deviations(np.zeros(d + 1), block, center)


# ------------------------------------------------------------------- distances
def _literal_from_cross(cross, row_norms, center_norms, row_has, center_has, inv_dims, gamma):
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
                err[i, j] = bound * gamma * (1.0 / count)
            else:
                sq[i, j], err[i, j] = np.inf, 0.0
    return sq, err


@settings(max_examples=40, deadline=None)
@given(n_mod=st.integers(1, 4), n=st.integers(1, 9), k=st.integers(1, 6),
       seed=st.integers(0, 2**31), dtype=st.sampled_from([np.float32, np.float64]),
       complete_centres=st.booleans())
def test_partial_sq_dists_from_cross_equals_the_literal_formula(n_mod, n, k, seed, dtype,
                                                                 complete_centres):
    rng = np.random.default_rng(seed)
    cross = rng.standard_normal((n_mod, n, k)).astype(dtype)
    row_norms = rng.random((n_mod, n)) * 3
    center_norms = rng.random((n_mod, k)) * 3
    row_has = (rng.random((n, n_mod)) < 0.6).astype(np.uint8)
    center_has = (rng.random((k, n_mod)) < (1.0 if complete_centres else 0.7)).astype(np.uint8)
    inv_dims = 1.0 / rng.integers(1, 800, n_mod).astype(np.float64)
    sq, err = np.empty((n, k)), np.empty((n, k))
    partial_sq_dists_from_cross(cross, row_norms, center_norms, row_has, center_has,
                                inv_dims, 1e-5, sq, err)
    want_sq, want_err = _literal_from_cross(cross, row_norms, center_norms, row_has,
                                            center_has, inv_dims, 1e-5)
    assert np.array_equal(sq, want_sq)
    assert np.array_equal(err, want_err)


def test_partial_sq_dists_from_cross_rejects_mismatched_shapes():
    cross = np.zeros((2, 3, 4))
    args = [np.zeros((2, 3)), np.zeros((2, 4)), np.ones((3, 2), np.uint8),
            np.ones((4, 2), np.uint8), np.ones(2)]
    out = [np.empty((3, 4)), np.empty((3, 4))]
    partial_sq_dists_from_cross(cross, *args, 1.0, *out)
    with pytest.raises(ValueError, match="row_norms must be"):
        partial_sq_dists_from_cross(cross, np.zeros((2, 2)), *args[1:], 1.0, *out)
    with pytest.raises(ValueError, match="row_has must be"):
        partial_sq_dists_from_cross(cross, *args[:2], np.ones((3, 1), np.uint8), *args[3:],
                                    1.0, *out)
    with pytest.raises(ValueError, match="sq and err must be"):
        partial_sq_dists_from_cross(cross, *args, 1.0, np.empty((3, 3)), out[1])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), k=st.integers(1, 6), seed=st.integers(0, 2**31),
       ties=st.booleans())
def test_bounded_argmin_equals_numpy_argmin_and_the_contender_rule(n, k, seed, ties):
    rng = np.random.default_rng(seed)
    # Small integers make exact ties and contenders frequent.
    sq = rng.integers(0, 4, (n, k)).astype(np.float64) if ties else rng.random((n, k))
    sq[rng.random((n, k)) < 0.2] = np.inf
    err = np.where(np.isfinite(sq), rng.random((n, k)) * 0.3, 0.0)
    labels, best = np.empty(n, np.int64), np.empty(n)
    flags = np.empty(n, np.uint8)
    bounded_argmin(sq, err, labels, best, flags)
    want = np.argmin(sq, axis=1)
    rows = np.arange(n)
    assert np.array_equal(labels, want)
    assert np.array_equal(best, sq[rows, want])
    upper = sq[rows, want] + err[rows, want]
    contenders = np.count_nonzero(sq - err <= upper[:, None], axis=1)
    assert np.array_equal(flags.astype(bool), (contenders > 1) & np.isfinite(sq[rows, want]))


def test_bounded_argmin_rejects_mismatched_outputs():
    sq = np.zeros((3, 2))
    with pytest.raises(ValueError, match="same shape"):
        bounded_argmin(sq, np.zeros((3, 3)), np.empty(3, np.int64), np.empty(3),
                       np.empty(3, np.uint8))
    with pytest.raises(ValueError, match="one entry per row"):
        bounded_argmin(sq, sq, np.empty(2, np.int64), np.empty(3), np.empty(3, np.uint8))


@pytest.mark.parametrize(("k", "d"), [(1, 3), (7, 5), (64, 40), (130, 9)])
def test_pairwise_exact_sq_of_a_set_with_itself_is_the_per_pair_sum(k, d):
    a = np.random.default_rng(k).standard_normal((k, d))
    literal = np.array([[np.sum((a[i] - a[j]) ** 2) / d for j in range(k)] for i in range(k)])
    assert np.array_equal(pairwise_exact_sq(a), literal)
    assert np.array_equal(pairwise_exact_sq(a, a), literal)
    assert np.all(np.diag(pairwise_exact_sq(a)) == 0)


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
        sequential.add(sequential.prepare(labels[rows], [b[rows] for b in blocks], mask[rows]))

    threaded = RowOrderSums(k, dims)
    delays = rng.random(len(_chunks(n, 37))) * 0.01

    def work(index, rows):
        def compute():
            time.sleep(delays[index])  # later chunks often finish first
            part = [b[rows] for b in blocks]
            return rows.start, threaded.prepare(labels[rows], part, mask[rows])

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
        return "ok", acc.prepare(np.zeros(3, np.int64), [block], np.ones((3, 1), bool))

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
    map_modalities(lambda m: (threads.add(threading.get_ident()), time.sleep(0.05)),
                   [np.zeros((3, 2))] * 2, 2)
    assert threading.get_ident() not in threads
