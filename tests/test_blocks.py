"""PackedBlocks: the packed and zero-filled layouts of a chunk, and passes over each."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ul4m4.backends import NumpyEngine
from ul4m4.blocks import PackedBlocks
from ul4m4.centers import Centers
from ul4m4.distance import error_factor, exact_partial_sq_dists
from ul4m4.validation import Multimodal
from ul4m4.view import Standardized


def _chunk(rng, n, dims, p=0.6):
    mask = rng.random((n, len(dims))) < p
    blocks = [np.where(mask[:, [m]], rng.standard_normal((n, d)), 0.0).astype(np.float32)
              for m, d in enumerate(dims)]
    return blocks, mask


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 12), dims=st.lists(st.integers(1, 5), min_size=1, max_size=4),
       p=st.sampled_from([0.0, 0.5, 1.0]), seed=st.integers(0, 2**31))
def test_packed_layout_holds_the_observed_rows_of_the_zero_filled_one(n, dims, p, seed):
    rng = np.random.default_rng(seed)
    blocks, mask = _chunk(rng, n, dims, p)
    packed = PackedBlocks.pack(blocks, mask)
    stacked = np.concatenate([v.astype(np.float64).reshape(-1, v.shape[1]).sum(axis=1)
                              for v in packed.values]) if n else np.zeros(0)
    for m, block in enumerate(blocks):
        observed = np.flatnonzero(mask[:, m])
        np.testing.assert_array_equal(packed.values[m], block[observed])
        if packed.index[m] is not None:
            np.testing.assert_array_equal(packed.index[m], observed)
        np.testing.assert_array_equal(packed.labels_of(m, np.arange(n)), observed
                                      if packed.index[m] is not None else np.arange(n))
        # ``at`` finds (row, modality) in the stacked values; -1 where unobserved.
        rows_sum = block.astype(np.float64).sum(axis=1)
        at = packed.at[:, m]
        assert (at[~mask[:, m]] == -1).all()
        np.testing.assert_array_equal(stacked[at[mask[:, m]]], rows_sum[mask[:, m]])
    for got, want in zip(packed.full(), blocks, strict=True):
        np.testing.assert_array_equal(got, want)
    positions = rng.integers(0, max(n, 1), 5) if n else np.zeros(0, dtype=np.int64)
    for got, want in zip(packed.take(positions), blocks, strict=True):
        np.testing.assert_array_equal(got, want[positions])


def test_of_full_wraps_the_blocks_without_copying():
    rng = np.random.default_rng(0)
    blocks, mask = _chunk(rng, 9, [3, 4])
    wrapped = PackedBlocks.of_full(blocks, mask)
    assert all(a is b for a, b in zip(wrapped.full(), blocks, strict=True))
    at = wrapped.at
    assert (at[~mask] == -1).all()
    offsets = np.array([0, 9])
    rows, mods = np.nonzero(mask)
    np.testing.assert_array_equal(at[rows, mods], offsets[mods] + rows)


@pytest.mark.parametrize("chunk_rows", [7, 64])
def test_packed_and_zero_filled_views_give_the_same_e_step(chunk_rows):
    rng = np.random.default_rng(3)
    dims, n, k = [6, 3, 9], 200, 5
    mask = rng.random((n, 3)) < 0.5
    mask[~mask.any(axis=1), 0] = True
    arrays = [np.where(mask[:, [m]], rng.standard_normal((n, d)) * 3 + 1, np.nan)
              .astype(np.float32) for m, d in enumerate(dims)]
    data = Multimodal(["a", "b", "c"], arrays, mask)
    stats = [np.full(d, 1.0) for d in dims], [np.full(d, 3.0) for d in dims]
    rows = rng.choice(n, k, replace=False)
    engine = NumpyEngine()
    views = [Standardized(data, *stats, np.dtype(np.float32), chunk_rows, 2, 1 << 30, packed)
             for packed in (True, False)]
    seeds = Centers(*views[1].rows(np.sort(rows)))
    rounding = error_factor(dims, np.dtype(np.float32))
    steps = [engine.e_step(v, seeds, rounding, update_centers=True) for v in views]
    np.testing.assert_array_equal(steps[0].labels, steps[1].labels)
    for a, b in zip(steps[0].sums, steps[1].sums, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(steps[0].counts, steps[1].counts)
    # The labels are the exact nearest centres.
    z, z_mask = views[1].rows(slice(None))
    exact = exact_partial_sq_dists(z, z_mask, seeds.blocks, seeds.mask)
    np.testing.assert_array_equal(steps[0].labels, np.argmin(exact, axis=1))
    # Row reads are the same in both layouts.
    for a, b in zip(views[0].packed_rows(rows).full(), views[1].rows(rows)[0], strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_fitted_views_chunks_hold_only_the_observed_rows():
    rng = np.random.default_rng(5)
    dims, n = [4, 6], 300
    mask = rng.random((n, 2)) < 0.5
    mask[~mask.any(axis=1), 1] = True
    arrays = [np.where(mask[:, [m]], rng.standard_normal((n, d)), np.nan).astype(np.float32)
              for m, d in enumerate(dims)]
    view = NumpyEngine().view(Multimodal(["a", "b"], arrays, mask),
                              [np.zeros(d) for d in dims], [np.ones(d) for d in dims],
                              np.dtype(np.float32), 64, 2, 1 << 30)
    seen = 0
    for rows, blocks, chunk_mask in view.chunks():
        for m, value in enumerate(blocks.values):
            assert value.shape == (chunk_mask[:, m].sum(), dims[m])
            np.testing.assert_array_equal(value, arrays[m][rows][chunk_mask[:, m]])
        seen += chunk_mask.shape[0]
    assert seen == n
