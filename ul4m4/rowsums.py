"""Threaded row-order sums: per-cluster float64 sums that do not depend on the chunking.

Each group's rows are added one after the other, in row order, onto the running
total (the compiled ``add_rows`` kernel, without the GIL), so statistics and
centres are the same bits whatever ``batch_size`` and the number of threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._kernels import add_rows
from .blocks import PackedBlocks
from .distance import assigned_sq_dists

__all__ = ["ChunkMembers", "RowOrderSums", "kernel_keep", "kernel_rows", "sequential_sums"]


def kernel_rows(block: np.ndarray) -> np.ndarray:
    """``block`` as a C-contiguous float32 or float64 array, as the kernels take it.

    Other dtypes are widened to float64, which every float16 and every integer of
    magnitude below 2**53 converts to exactly: the sums are those of the values.
    """
    block = np.asarray(block)
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float64)
    return np.ascontiguousarray(block)


def kernel_keep(rows: np.ndarray | None) -> np.ndarray | None:
    return None if rows is None else np.ascontiguousarray(rows, dtype=bool).view(np.uint8)



def sequential_sums(
    running: np.ndarray,
    labels: np.ndarray,
    block: np.ndarray,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """``running[j] + sum of block[i] over rows i with labels[i] == j``, in float64.

    Each group's rows are added one after the other, in row order, *onto the
    running total*: the result is the same whatever the chunking of the rows, so
    statistics and centres do not depend on ``batch_size``. ``rows`` (a boolean
    (B,) mask) keeps only those rows; the others, e.g. the NaN or zeros of a
    missing modality, are never read into a sum. ``running`` is not modified.

    Examples
    --------
    >>> import numpy as np
    >>> sequential_sums(np.zeros((2, 1)), np.array([0, 1, 0]), np.array([[1.0], [2.0], [3.0]]))
    array([[4.],
           [2.]])
    """
    sums = np.array(running, dtype=np.float64, order="C", copy=True)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    add_rows(sums, labels, kernel_rows(block), kernel_keep(rows))
    return sums


@dataclass
class ChunkMembers:
    """A chunk's rows as members of their clusters, per modality (labels, rows, counts),
    ready for :meth:`RowOrderSums.add` (``best`` is set by it)."""

    parts: list
    counts: np.ndarray
    blocks: PackedBlocks
    labels: np.ndarray
    best: np.ndarray | None = None


class RowOrderSums:
    """Per-cluster float64 member sums and counts of every modality, in row order.

    Chunks must be added in row order. Each cluster's sum is the running total
    plus its rows one after the other (:func:`sequential_sums`), so the result
    does not depend on the chunking. Rows where a modality is missing are left out
    of its sum. :meth:`chunk_members` (the counts and masks of a chunk) may run on any
    thread; :meth:`add` runs the compiled kernel without the GIL.
    :meth:`compute_and_add` lets the worker threads themselves add their chunks,
    each in its turn, while the chunk is still in cache.

    Parameters
    ----------
    k : int
        Number of clusters.
    dims : sequence of int
        Width of each modality.
    centers, center_mask : list of ndarray (k, d_m) and ndarray (k, M), optional
        The centres the rows were assigned to: :meth:`add` then also gives each
        row's squared distance to its centre (``ChunkMembers.best``).

    Examples
    --------
    >>> import numpy as np
    >>> acc = RowOrderSums(2, [3])
    >>> block = np.arange(12, dtype=np.float32).reshape(4, 3)
    >>> mask = np.ones((4, 1), dtype=bool)
    >>> members = acc.chunk_members(np.array([0, 1, 0, 1]), PackedBlocks.of_full([block], mask),
    ...                             mask)
    >>> acc.add(members)
    >>> acc.sums[0].tolist(), acc.counts[:, 0].tolist()
    ([[6.0, 8.0, 10.0], [12.0, 14.0, 16.0]], [2.0, 2.0])
    """

    def __init__(self, k: int, dims: Sequence[int], centers: Sequence[np.ndarray] | None = None,
                 center_mask: np.ndarray | None = None) -> None:
        self.k = int(k)
        self.sums = [np.zeros((self.k, int(d))) for d in dims]
        self.counts = np.zeros((self.k, len(dims)))
        self.centers = None if centers is None else list(centers)
        self.center_mask = center_mask
        self._turn = threading.Condition()
        self._next_row = 0

    def chunk_members(self, labels: np.ndarray, blocks: PackedBlocks, mask: np.ndarray
                      ) -> ChunkMembers:
        """Labels, rows and counts of one chunk for :meth:`add`, per modality."""
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        parts = []
        for m, value in enumerate(blocks.values):
            observed = mask[:, m]
            if not observed.any():
                parts.append(None)
                continue
            block = kernel_rows(value)
            if blocks.index[m] is not None:
                item = [np.ascontiguousarray(blocks.labels_of(m, labels)), block, None]
            else:
                item = [labels, block, None if observed.all() else kernel_keep(observed)]
            center = None if self.centers is None else self.centers[m]
            # The kernel reads rows and centres in one dtype; otherwise add()
            # computes these distances apart (assigned_sq_dists widens both).
            if center is not None and center.dtype == block.dtype:
                item += [np.ascontiguousarray(center), np.empty(block.shape[0])]
            else:
                item += [None, None]
            parts.append(item)
        counts = np.column_stack(
            [np.bincount(labels, weights=mask[:, m], minlength=self.k)
             for m in range(len(blocks.values))]
        )
        return ChunkMembers(parts, counts, blocks, labels)

    def best_of(self, members: ChunkMembers) -> np.ndarray | None:
        """The rows' squared distances to their centres, once added (None without centres)."""
        return members.best

    def add(self, members: ChunkMembers) -> None:
        """Add a chunk's members, the next one in row order, to the sums and counts.

        With centres, also sets ``members.best``: each row's squared distance to
        its centre (:func:`ul4m4.distance.assigned_sq_dists`), the squared
        differences taken while the rows are added.
        """
        for m, item in enumerate(members.parts):
            if item is not None:
                add_rows(self.sums[m], *item)
        self.counts += members.counts
        if self.centers is not None:
            terms = [None if item is None else item[4] for item in members.parts]
            members.best = assigned_sq_dists(members.blocks, members.labels, self.centers,
                                              self.center_mask, terms)

    def compute_and_add(self, rows: slice, compute: Callable[[], tuple[Any, Any]]) -> Any:
        """Run ``compute() -> (result, members)`` and add ``members`` in row order.

        Chunks are slices that tile ``[0, n)``; any thread may call this, and each
        waits, after its own computing, until every earlier chunk has been added.
        Callers must start chunks in row order (a FIFO thread pool does). A chunk
        whose ``compute`` fails still passes its turn on, so later chunks never
        wait for it forever; the failure propagates to the caller.
        """
        try:
            result, members = compute()
        except BaseException:
            self._add_in_turn(rows, None)
            raise
        self._add_in_turn(rows, members)
        return result

    def _add_in_turn(self, rows: slice, members) -> None:
        with self._turn:
            self._turn.wait_for(lambda: self._next_row == rows.start)
        # Only the thread whose turn it is gets here: the addition needs no lock.
        try:
            if members is not None:
                self.add(members)
        finally:
            with self._turn:
                self._next_row = rows.stop
                self._turn.notify_all()
