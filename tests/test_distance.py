"""ul4m4.distance: exact kernels, pairwise rechecks and the exact argmin against the definition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ul4m4.blocks import PackedBlocks
from ul4m4.distance import (
    assigned_sq_dists,
    error_factor,
    exact_argmin,
    exact_partial_sq_dists,
    exact_partial_sq_pairs,
    exact_sq_to_assigned,
    nearest_donors,
    partial_nearest,
    partial_sq_dists,
    squared_norms,
)


@pytest.mark.parametrize("seed", range(6))
def test_exact_pairs_equal_the_full_exact_matrix(seed):
    rng = np.random.default_rng(seed)
    dims = [1, 9, 130]
    n, k = 25, 7
    mask = rng.random((n, 3)) < 0.7
    cmask = rng.random((k, 3)) < 0.7
    blocks = [np.where(mask[:, [m]], rng.standard_normal((n, d)), 0).astype(np.float32)
              for m, d in enumerate(dims)]
    centres = [np.where(cmask[:, [m]], rng.standard_normal((k, d)), 0).astype(np.float32)
               for m, d in enumerate(dims)]
    full = exact_partial_sq_dists(blocks, mask, centres, cmask)
    rows, cols = np.nonzero(np.ones((n, k), dtype=bool))
    np.testing.assert_array_equal(
        exact_partial_sq_pairs(blocks, mask, centres, cmask, rows, cols), full[rows, cols])


def test_exact_argmin_with_pairs_equals_full_recheck_on_ties():
    rng = np.random.default_rng(3)
    dims = [4, 6]
    # Quarter-integer data and centres copied from rows: many exact ties.
    blocks = [np.round(rng.standard_normal((60, d)) * 2) / 4 for d in dims]
    blocks = [b.astype(np.float32) for b in blocks]
    mask = np.ones((60, 2), dtype=bool)
    idx = rng.integers(0, 60, 8)
    centres = [b[idx].copy() for b in blocks]
    cmask = np.ones((8, 2), dtype=bool)
    rounding = error_factor(dims, np.dtype(np.float32))
    sq, err = partial_sq_dists(PackedBlocks.of_full(blocks, mask), centres, cmask,
                               squared_norms(centres), rounding)
    full = exact_partial_sq_dists(blocks, mask, centres, cmask)

    def rows_fn(r):
        return full[r]

    def pairs_fn(r, c):
        return exact_partial_sq_pairs(blocks, mask, centres, cmask, r, c)

    a = exact_argmin(sq.copy(), err.copy(), rows_fn)
    b = exact_argmin(sq.copy(), err.copy(), rows_fn, pairs_fn)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], np.argmin(full, axis=1))


def test_distance_to_the_assigned_centre_is_the_definition():
    """exact_sq_to_assigned[i] equals the float64 definition to centre own[i], and its
    scale is the mean over shared modalities of (||z||^2 + ||c||^2) / d_m."""
    rng = np.random.default_rng(5)
    dims, n, k = [3, 5], 30, 4
    mask = rng.random((n, 2)) < 0.7
    cmask = rng.random((k, 2)) < 0.7
    blocks = [np.where(mask[:, [m]], rng.standard_normal((n, d)), 0) for m, d in enumerate(dims)]
    centres = [np.where(cmask[:, [m]], rng.standard_normal((k, d)), 0)
               for m, d in enumerate(dims)]
    own = rng.integers(0, k, n)
    sq, scale = exact_sq_to_assigned(blocks, mask, centres, cmask, own)
    full = exact_partial_sq_dists(blocks, mask, centres, cmask)
    np.testing.assert_array_equal(sq, full[np.arange(n), own])
    for i in range(n):
        shared = [m for m in range(2) if mask[i, m] and cmask[own[i], m]]
        want = np.mean([(blocks[m][i] @ blocks[m][i] + centres[m][own[i]] @ centres[m][own[i]])
                        / dims[m] for m in shared]) if shared else 0.0
        assert scale[i] == pytest.approx(want, rel=1e-12)


def test_squared_norms_are_float64_row_norms():
    block = np.arange(12, dtype=np.float32).reshape(3, 4)
    (norms,) = squared_norms([block])
    assert norms.dtype == np.float64
    np.testing.assert_array_equal(norms, [14.0, 126.0, 366.0])


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 9), seed=st.integers(0, 2**31),
       packed=st.booleans(), coarse=st.booleans())
def test_partial_nearest_equals_exact_argmin_of_the_distances(n, k, seed, packed, coarse):
    rng = np.random.default_rng(seed)
    dims = [3, 5, 2]
    mask = rng.random((n, 3)) < 0.6
    values = [rng.standard_normal((n, d)) for d in dims]
    if coarse:  # quarter-integers and centres copied from rows: exact ties
        values = [np.round(v * 2) / 4 for v in values]
    blocks = [np.where(mask[:, [m]], v, 0).astype(np.float32) for m, v in enumerate(values)]
    rows = rng.integers(0, n, k)
    centres = [b[rows].copy() for b in blocks]
    cmask = mask[rows].copy()
    rounding = error_factor(dims, np.dtype(np.float32))
    layout = PackedBlocks.pack(blocks, mask) if packed else PackedBlocks.of_full(blocks, mask)
    exact = exact_partial_sq_dists(blocks, mask, centres, cmask)

    def rows_fn(r):
        return exact[r]

    def pairs_fn(r, c):
        return exact[r, c]

    for pairs in (None, pairs_fn):
        want = exact_argmin(*partial_sq_dists(layout, centres, cmask, squared_norms(centres),
                                              rounding), rows_fn, pairs)
        got = partial_nearest(layout, centres, cmask, squared_norms(centres), rounding, rows_fn,
                              pairs)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    finite = np.isfinite(exact.min(axis=1))
    np.testing.assert_array_equal(got[0][finite], np.argmin(exact, axis=1)[finite])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), k=st.integers(1, 6), seed=st.integers(0, 2**31),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_assigned_sq_dists_is_the_definition_in_any_layout(n, k, seed, dtype):
    rng = np.random.default_rng(seed)
    dims = [3, 17, 9]
    mask = rng.random((n, 3)) < 0.6
    blocks = [np.where(mask[:, [m]], rng.standard_normal((n, d)) * 10.0 ** rng.integers(-3, 3),
                       0).astype(dtype) for m, d in enumerate(dims)]
    centres = [rng.standard_normal((k, d)).astype(dtype) for d in dims]
    cmask = rng.random((k, 3)) < 0.7
    labels = rng.integers(0, k, n)
    packed = assigned_sq_dists(PackedBlocks.pack(blocks, mask), labels, centres, cmask)
    full = assigned_sq_dists(PackedBlocks.of_full(blocks, mask), labels, centres, cmask)
    assert packed.tobytes() == full.tobytes()
    # Row by row, a row's value does not depend on the other rows of its chunk.
    alone = np.concatenate([assigned_sq_dists(PackedBlocks.pack([b[i:i + 1] for b in blocks],
                                                                mask[i:i + 1]),
                                              labels[i:i + 1], centres, cmask)
                            for i in range(n)])
    assert alone.tobytes() == packed.tobytes()
    want, _ = exact_sq_to_assigned(blocks, mask, centres, cmask, labels)
    np.testing.assert_array_equal(np.isinf(packed), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(packed[finite], want[finite], rtol=1e-13, atol=0)


def test_nearest_donors_is_the_exact_nearest_reference_observing_each_lacking_modality():
    rng = np.random.default_rng(3)
    dims = (3, 4)
    ref_mask = np.array([[True, True], [True, False], [False, True], [True, True]])
    ref = [rng.normal(size=(4, d)).round(1) * ref_mask[:, [m]] for m, d in enumerate(dims)]
    mask = np.array([[True, False], [False, True], [True, True], [True, False], [False, True]])
    rows = [rng.normal(size=(5, d)).round(1) * mask[:, [m]] for m, d in enumerate(dims)]
    # Row 3 lacks modality 1 and equals references 0 and 3 on modality 0: a tie at distance
    # 0, which goes to the lowest index.
    ref[0][3] = ref[0][0]
    rows[0][3] = ref[0][0]
    donors = nearest_donors(rows, mask, ref, ref_mask, chunk_rows=2)
    exact = exact_partial_sq_dists(rows, mask, ref, ref_mask)
    expected = np.full(mask.shape, -1)
    for i in range(5):
        for m in range(2):
            if not mask[i, m]:
                d = np.where(ref_mask[:, m], exact[i], np.inf)
                expected[i, m] = int(np.argmin(d)) if np.isfinite(d.min()) else -1
    assert donors.tolist() == expected.tolist()
    assert donors[3, 1] == 0
    assert donors[2].tolist() == [-1, -1]  # a complete row needs no donor
    # a row sharing no modality with any reference that has the lacking one: no donor
    lone = nearest_donors([np.zeros((1, 3)), np.ones((1, 4))], np.array([[False, True]]),
                          [ref[0], np.zeros((4, 4))], np.array([[True, False]] * 4), chunk_rows=8)
    assert lone.tolist() == [[-1, -1]]
