"""ul4m4.rowsums: row-order sums, the same bits as a literal row-after-row loop."""

from __future__ import annotations

import numpy as np
import pytest

from ul4m4.blocks import PackedBlocks
from ul4m4.rowsums import RowOrderSums, sequential_sums


def _literal_row_order_sums(k, labels, block):
    """running[j] = running[j] + row, row after row, in float64."""
    out = np.zeros((k, block.shape[1]))
    for i, j in enumerate(labels):
        out[j] = out[j] + block[i].astype(np.float64)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_row_order_sums_match_a_literal_loop_and_skip_missing_rows(seed):
    rng = np.random.default_rng(seed)
    k, dims = 5, [3, 17]
    acc = RowOrderSums(k, dims)
    all_labels, all_blocks, all_mask = [], [[] for _ in dims], []
    for n in (7, 1, 30):
        labels = rng.integers(0, k, n)
        mask = rng.random((n, 2)) < 0.6
        blocks = [np.where(mask[:, [m]], rng.standard_normal((n, d)) * 10.0 ** rng.integers(-3, 4),
                           0).astype(np.float32) for m, d in enumerate(dims)]
        acc.add(acc.chunk_members(labels, PackedBlocks.pack(blocks, mask), mask))
        all_labels.append(labels), all_mask.append(mask)
        for m in range(2):
            all_blocks[m].append(blocks[m])
    labels, mask = np.concatenate(all_labels), np.concatenate(all_mask)
    for m in range(2):
        block = np.concatenate(all_blocks[m])
        want = _literal_row_order_sums(k, labels[mask[:, m]], block[mask[:, m]])
        np.testing.assert_array_equal(acc.sums[m], want)
        np.testing.assert_array_equal(acc.counts[:, m], np.bincount(labels[mask[:, m]],
                                                                    minlength=k))


def test_row_order_sums_equal_sequential_sums_on_zero_rows():
    rng = np.random.default_rng(0)
    block = rng.standard_normal((40, 6)).astype(np.float32)
    mask = np.ones((40, 1), dtype=bool)
    mask[::3] = False
    block[~mask[:, 0]] = 0
    labels = rng.integers(0, 4, 40)
    acc = RowOrderSums(4, [6])
    acc.add(acc.chunk_members(labels, PackedBlocks.of_full([block], mask), mask))
    np.testing.assert_array_equal(acc.sums[0], sequential_sums(np.zeros((4, 6)), labels, block))
