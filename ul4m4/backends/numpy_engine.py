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

from ..blocks import PackedBlocks
from ..centers import Centers
from ..distance import (
    assigned_sq_dists,
    packed_exact_checks,
    partial_nearest,
    partial_sq_dists,
)
from ..engine import ChunkedEngine
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

    def sq_dists(self, view: Standardized, rows, blocks, mask, native: Centers, rounding: float):
        row_norms = None if rows is None else view.row_norms(rows, blocks)
        return partial_sq_dists(blocks, native.blocks, native.mask, native.norms, rounding, row_norms)

    def nearest(self, view: Standardized | None, rows, blocks: PackedBlocks, mask: np.ndarray,
                native: Centers, centers: Centers, rounding: float):
        """Exact labels and squared distances of one chunk, without its (B, k) distances."""
        row_norms = None if rows is None else view.row_norms(rows, blocks)
        return partial_nearest(blocks, native.blocks, native.mask, native.norms, rounding,
                               *self.exact_checks(blocks, mask, centers), row_norms)

    def row_distances(self, blocks: PackedBlocks, labels: np.ndarray, centers: Centers,
                      best: np.ndarray) -> np.ndarray:
        """Float64 row by row (``assigned_sq_dists``): the inertia does not depend on the
        GEMM's shape, i.e. on the chunking (E-steps that update the centres get the
        same values from :class:`~ul4m4.rowsums.RowOrderSums`, while adding the rows)."""
        return assigned_sq_dists(blocks, labels, centers.blocks, centers.mask)

    def exact_checks(self, blocks: PackedBlocks, mask, centers: Centers):
        return packed_exact_checks(blocks, centers.blocks, centers.mask)

    def host_rows(self, blocks: PackedBlocks, rows: np.ndarray) -> list[np.ndarray]:
        return blocks.take(rows)

    def map_chunks(self, view: Standardized, fn: Callable):
        return view.map_chunks(fn)

    def member_sums(self, view: Standardized, centers: Centers) -> RowOrderSums:
        return RowOrderSums(centers.k, [b.shape[1] for b in centers.blocks], centers.blocks,
                            centers.mask)
