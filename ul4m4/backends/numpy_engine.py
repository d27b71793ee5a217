"""The NumPy engine: the kernels of :class:`~ul4m4.engine.ChunkedEngine` on host arrays.

Chunks are standardised and processed on ``n_threads`` worker threads
(:meth:`ul4m4.view.Standardized.map_chunks`), each running single-threaded BLAS;
the partial distances come from one GEMM per modality, over the rows that observe
it (:class:`~ul4m4.blocks.PackedBlocks`), combined by the compiled kernels of
:mod:`ul4m4._kernels`, which take each row's nearest centre without writing its
distances out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._kernels import candidate_minimum
from ..blocks import PackedBlocks
from ..centers import Centers
from ..distance import (
    assigned_sq_dists,
    exact_partial_sq_dists,
    exact_partial_sq_pairs,
    modality_sq_dists,
    partial_nearest,
    partial_sq_dists,
)
from ..engine import ChunkedEngine
from ..plan import PatternTerms
from ..rowsums import RowOrderSums
from ..validation import Multimodal
from ..view import Standardized

__all__ = ["NumpyEngine"]


class NumpyEngine(ChunkedEngine):
    """The in-process NumPy engine (``backend="numpy"``).

    Examples
    --------
    >>> NumpyEngine().name
    'numpy'
    """

    name = "numpy"

    def __init__(self, device: Any = None) -> None:
        # None or "cpu": the estimator's parameter check (backends.check_device) refuses
        # any other device for this backend.
        self.device = device

    def view(self, data: Multimodal, mean: Sequence[np.ndarray], scale: Sequence[np.ndarray],
             dtype: np.dtype, chunk_rows: int, n_threads: int = 1,
             cache_bytes: int = 0) -> Standardized:
        """The row-chunked z-scored view the drivers read."""
        return Standardized(data, mean, scale, dtype, chunk_rows, n_threads, cache_bytes)

    def native_centers(self, centers: Centers, view: Any) -> Centers:
        return centers

    def sq_dists(self, view: Standardized, rows, blocks, mask, native: Centers, gamma: float):
        row_norms = None if rows is None else view.row_norms(rows, blocks)
        return partial_sq_dists(blocks, native.blocks, native.mask, native.norms, gamma, row_norms)

    def nearest(self, view: Standardized | None, rows, blocks: PackedBlocks, mask: np.ndarray,
                native: Centers, centers: Centers, gamma: float):
        """Exact labels and squared distances of one chunk, without its (B, k) distances."""
        row_norms = None if rows is None else view.row_norms(rows, blocks)
        return partial_nearest(blocks, native.blocks, native.mask, native.norms, gamma,
                               *self.exact_checks(blocks, mask, centers), row_norms)

    def row_distances(self, blocks: PackedBlocks, labels: np.ndarray, centers: Centers,
                      best: np.ndarray) -> np.ndarray:
        """Float64 row by row (``assigned_sq_dists``): the inertia does not depend on the
        GEMM's shape, i.e. on the chunking (E-steps that update the centres get the
        same values from :class:`~ul4m4.rowsums.RowOrderSums`, while adding the rows)."""
        return assigned_sq_dists(blocks, labels, centers.blocks, centers.mask)

    def exact_checks(self, blocks: PackedBlocks, mask, centers: Centers):
        def exact_rows(rows: np.ndarray) -> np.ndarray:
            return exact_partial_sq_dists(blocks.take(rows), mask[rows], centers.blocks,
                                          centers.mask)

        def exact_pairs(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            unique, slot = np.unique(rows, return_inverse=True)
            return exact_partial_sq_pairs(blocks.take(unique), mask[unique], centers.blocks,
                                          centers.mask, slot, cols)

        return exact_rows, exact_pairs

    def host_rows(self, blocks: PackedBlocks, rows: np.ndarray) -> list[np.ndarray]:
        return blocks.take(rows)

    def host_blocks(self, blocks: PackedBlocks) -> list[np.ndarray]:
        return blocks.full()

    def native_rows(self, view: Standardized, rows: np.ndarray) -> PackedBlocks:
        return view.packed_rows(rows)

    def map_chunks(self, view: Standardized, fn: Callable):
        return view.map_chunks(fn)

    def member_sums(self, view: Standardized, centers: Centers) -> RowOrderSums:
        return RowOrderSums(centers.k, [b.shape[1] for b in centers.blocks], centers.blocks,
                            centers.mask)

    def observed_terms(self, blocks: PackedBlocks, native: Centers, pattern: np.ndarray):
        # Every row observes the modalities of ``pattern``: their values hold every row.
        has = native.mask
        n_rows, k = blocks.n_rows, native.k
        p = np.zeros((n_rows, k))
        bound = np.zeros((n_rows, k))
        for m in np.flatnonzero(pattern):
            sq, norms = modality_sq_dists(blocks.values[m], native.blocks[m], native.norms[m])
            p += np.where(has[:, m][None, :], sq, 0.0)
            bound += np.where(has[:, m][None, :], norms, 0.0)
        return p, bound

    def scores_from_terms(self, p: np.ndarray, p_err: np.ndarray, terms: PatternTerms,
                          view: Any):
        """r[i, f] = min_j d(candidate_f, c_j)^2 in float32, without the (B, k, k) tensor."""
        # Float32 as torch's tensor; PatternTerms.slack covers its rounding.
        scores = np.empty(p.shape)
        # Pairs that share nothing get q = inf and a factor 1, hence +inf.
        candidate_minimum(np.ascontiguousarray(p, dtype=np.float32),
                          np.ascontiguousarray(terms.q_open.T),
                          np.ascontiguousarray(terms.inverse.T), scores)
        return scores, terms.slack(scores, p_err.max(axis=1))
