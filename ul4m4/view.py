"""The standardised view: a validated data set z-scored chunk by chunk, cached when small.

:class:`Standardized` is the host implementation of the view protocols of
:mod:`ul4m4.engine` (:class:`~ul4m4.engine.View`, the fields the drivers read, and
:class:`~ul4m4.engine.HostView`, the rows the completion rules read): the
in-process engines read the data through it, its chunks come as
:class:`~ul4m4.blocks.PackedBlocks`, and its passes may run on a thread pool
(:meth:`Standardized.map_chunks`).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import ThreadpoolController

from ._utils.chunks import iter_row_chunks
from .blocks import PackedBlocks
from .distance import squared_norms
from .threads import fits_inline
from .validation import Multimodal

if TYPE_CHECKING:
    from .engine import Engine

__all__ = [
    "Standardized",
    "ViewFields",
    "gather_view",
    "standardize_packed",
    "standardize_rows",
]


@functools.lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    """One controller per process: finding the loaded BLAS libraries takes ms per pass."""
    return ThreadpoolController()



@dataclass
class ViewFields:
    """The fields of :class:`ul4m4.engine.View` that every view holds, whatever its engine.

    The host view (:class:`Standardized`) and the Dask view extend it with where
    their z-scored rows live.
    """

    data: Multimodal
    mean: Sequence[np.ndarray]
    scale: Sequence[np.ndarray]
    dtype: np.dtype
    chunk_rows: int
    n_threads: int = 1

    @property
    def n_samples(self) -> int:
        return self.data.n_samples

    @property
    def mask(self) -> np.ndarray:
        return self.data.mask


@dataclass
class Standardized(ViewFields):
    """A validated data set seen through fitted per-modality statistics, chunk by chunk.

    Chunks come as :class:`~ul4m4.blocks.PackedBlocks`: with ``packed`` (the
    default) each modality holds only the rows that observe it, otherwise
    zero-filled rows. With ``cache_bytes`` > 0, a data set whose z-scored copy
    takes at most that many bytes is standardised once, on the first full pass,
    and later passes (the k seeding passes, every Lloyd iteration) read the copy.
    Larger data are re-standardised chunk by chunk on every pass, so memory stays
    O(chunk). The values are the same either way. A cached data set also keeps
    the squared row norms of its chunks (:meth:`row_norms`).
    """

    cache_bytes: int = 0
    packed: bool = True
    _cache: list | None = field(default=None, init=False, repr=False)
    _norms: dict = field(default_factory=dict, init=False, repr=False)

    def cached(self) -> Standardized:
        """This view, with every chunk standardised now and kept (whatever ``cache_bytes``)."""
        if self._cache is None:
            self._cache = [self._chunk(rows)
                           for rows in iter_row_chunks(self.n_samples, self.chunk_rows)]
        return self

    def _chunk(self, rows: slice) -> tuple[slice, PackedBlocks, np.ndarray]:
        """The ``(rows, blocks, mask)`` entry of one chunk, standardised now."""
        blocks = self.packed_rows(rows)
        return rows, blocks, blocks.mask

    @property
    def cache_nbytes(self) -> int:
        """Bytes of the kept z-scored chunks (0 before they are made)."""
        return sum(blocks.nbytes for _, blocks, _ in self._cache or ())

    def _cacheable(self) -> bool:
        size = self.n_samples * sum(self.data.dims) * np.dtype(self.dtype).itemsize
        return size <= self.cache_bytes

    def rows(self, rows: slice | np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """z-scored zero-filled blocks and availability mask of the given rows."""
        return standardize_rows(self.data, rows, self.mean, self.scale, self.dtype)

    def packed_rows(self, rows: slice | np.ndarray) -> PackedBlocks:
        """z-scored rows in this view's layout (see ``packed``)."""
        return standardize_packed(self.data, rows, self.mean, self.scale, self.dtype,
                                  self.packed)

    def row_norms(self, rows: slice | np.ndarray, blocks: PackedBlocks) -> list[np.ndarray]:
        """Float64 squared norms of the rows of each ``blocks.values[m]`` (chunk ``rows``).

        For a cached data set they are computed once per chunk and kept (n floats
        per modality), as the z-scored rows themselves never change.
        """
        keep = isinstance(rows, slice) and self._cacheable()
        key = (rows.start, rows.stop) if keep else None
        norms = self._norms.get(key) if keep else None
        if norms is None:
            norms = squared_norms(blocks.values)
            if keep:
                self._norms[key] = norms
        return norms

    def chunks(self) -> Iterator[tuple[slice, PackedBlocks, np.ndarray]]:
        """Yield ``(rows, blocks, mask)`` over all rows in chunks of ``chunk_rows``."""
        if self._cache is not None:
            yield from self._cache
            return
        cache = [] if self._cacheable() else None
        for rows in iter_row_chunks(self.n_samples, self.chunk_rows):
            chunk = self._chunk(rows)
            if cache is not None:
                cache.append(chunk)
            yield chunk
        if cache is not None:
            self._cache = cache

    def map_chunks(self, fn: Callable[[slice, PackedBlocks, np.ndarray], Any]):
        """Yield ``(rows, fn(rows, blocks, mask))`` for every chunk, in row order.

        With ``n_threads > 1`` the chunks are standardised and processed on a
        thread pool (NumPy and BLAS release the GIL) with BLAS itself limited to
        one thread, as scikit-learn's k-means does: many single-threaded GEMMs on
        row chunks beat one multi-threaded GEMM per chunk at these shapes. At most
        ``n_threads + 1`` chunks are in flight, so memory stays O(chunk). Small
        passes (see :attr:`inline`) run on the calling thread instead. Results
        do not depend on the number of threads: chunks are independent and are
        returned in order.
        """

        cache = self._cache
        # A cacheable data set is standardised on this first pass, by the workers,
        # and the copy is kept once the pass completes.
        building = [] if cache is None and self._cacheable() else None

        def work(item):
            chunk = item if cache is not None else self._chunk(item)
            return chunk, fn(*chunk)

        chunks = cache if cache is not None else iter_row_chunks(self.n_samples, self.chunk_rows)
        for chunk, value in self._ordered(work, chunks):
            if building is not None:
                building.append(chunk)
            yield chunk[0], value
        if building is not None:
            self._cache = building

    @property
    def small(self) -> bool:
        """Whether a pass is too small to share out: one chunk, or at most
        :data:`~ul4m4.threads.INLINE_BYTES` of z-scored rows (a serving call of a few rows is both)."""
        if self.n_samples <= self.chunk_rows:
            return True
        row_bytes = sum(self.data.dims) * np.dtype(self.dtype).itemsize
        return fits_inline(self.n_samples * row_bytes)

    @property
    def inline(self) -> bool:
        """Whether passes run on the calling thread (one thread, or :attr:`small`), with
        BLAS's own thread setting left as it is."""
        return self.n_threads <= 1 or self.small

    def _ordered(self, work: Callable, chunks):
        """``work(chunk)`` for every chunk, in order, on the pool unless :attr:`inline`."""
        if self.inline:
            for item in chunks:
                yield work(item)
            return
        with _blas_controller().limit(limits=1, user_api="blas"), ThreadPoolExecutor(
            self.n_threads
        ) as pool:
            pending: deque = deque()
            for item in chunks:
                pending.append(pool.submit(work, item))
                if len(pending) > self.n_threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()



def standardize_rows(
    data: Multimodal,
    rows: slice | np.ndarray,
    mean: Sequence[np.ndarray],
    scale: Sequence[np.ndarray],
    dtype: np.dtype,
) -> tuple[list[np.ndarray], np.ndarray]:
    """z-score a block of rows of every modality; missing rows become zeros.

    Returns one ``(len(rows), d_m)`` array of ``dtype`` per modality and the
    matching ``(len(rows), n_modalities)`` availability mask. The zeros of missing
    rows keep GEMMs free of NaN; every kernel masks them out explicitly.
    """
    blocks = standardize_packed(data, rows, mean, scale, dtype, packed=False)
    return blocks.values, blocks.mask


def standardize_packed(
    data: Multimodal,
    rows: slice | np.ndarray,
    mean: Sequence[np.ndarray],
    scale: Sequence[np.ndarray],
    dtype: np.dtype,
    packed: bool = True,
) -> PackedBlocks:
    """z-score a block of rows; each modality keeps only its observed rows (``packed``).

    With ``packed=False`` every modality keeps every row, zeros where missing
    (the layout of :func:`standardize_rows`). The observed values are the same
    bits either way.
    """
    mask = data.mask[rows]
    values, index = [], []
    for m, array in enumerate(data.arrays):
        observed = mask[:, m]
        block = np.asarray(array[rows])
        if packed and not observed.all():
            index.append(np.flatnonzero(observed))
            values.append(_z_scored(block[index[-1]], mean[m], scale[m], dtype))
        else:
            index.append(None)
            values.append(_z_scored(block, mean[m], scale[m], dtype, missing=~observed))
    return PackedBlocks(values, index, mask)


def _z_scored(block: np.ndarray, mean: np.ndarray, scale: np.ndarray, dtype: np.dtype,
              missing: np.ndarray | None = None) -> np.ndarray:
    # Arithmetic in the working dtype, so the result is reproducible from the
    # fitted statistics alone: z = (fl(x) - fl(mu)) / fl(sigma).
    z = block.astype(dtype, copy=True)
    z -= mean.astype(dtype)
    z /= scale.astype(dtype)
    if missing is not None:
        z[missing] = 0
    return z


def gather_view(view: Any, rows: np.ndarray, engine: Engine, local: Engine) -> Any:
    """The z-scored ``rows`` of ``view`` (read by ``engine.take``) gathered into this
    process, as a view of ``local``, the engine of gathered rows
    (:func:`ul4m4.engine.local_engine`).

    Identity statistics (mean 0, scale 1) leave every value unchanged, so the
    gathered view holds exactly the values the engine computes for these rows.
    """
    blocks, mask = engine.take(view, rows)
    identity = [np.zeros(b.shape[1]) for b in blocks], [np.ones(b.shape[1]) for b in blocks]
    return local.view(Multimodal(list(view.data.names), blocks, mask), *identity, view.dtype,
                      view.chunk_rows, view.n_threads, cache_bytes=np.iinfo(np.int64).max)
