"""Out-of-core input and output: row readers for memory maps and array-likes, streamed writes.

The numeric code reads its input in row chunks (``array[rows]`` with a slice or a
sorted or unsorted index array). Plain in-memory ``ndarray`` inputs are used as
they are. Everything else is wrapped in a :class:`RowReader`:

* :class:`MemmapRows` for ``np.memmap`` inputs (``np.load(path, mmap_mode="r")``).
  Every read copies the rows out of the map and then tells the kernel to drop the
  pages it touched (``madvise(MADV_DONTNEED)``). Without this, every page of the
  file that a pass reads stays mapped into the process and counts towards its
  resident memory, so a fit over a 7 GB memory-mapped file would end with a
  resident size of 7 GB although it only needs one chunk at a time. The pages
  stay in the operating system's page cache, so the next pass reads them from
  memory, not from disk.
* :class:`SliceRows` for any other object with ``shape``, ``dtype`` and
  ``__getitem__(slice)`` (h5py datasets, zarr arrays, a custom class). Index-array
  reads are served by reading bounded contiguous spans, so the object only has to
  support slices.
* :class:`RowSubset`, a lazy selection of rows of another array (used to drop
  empty samples, and to process row blocks of a transform without copying them).

Streamed *output* (``transform(out_dir=...)``) is :func:`ul4m4.inference.transform_to_files`.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

from ._utils.chunks import iter_row_chunks

__all__ = [
    "MemmapRows",
    "RowReader",
    "RowSubset",
    "SliceRows",
    "as_row_source",
    "is_streamed",
    "subset_rows",
]

#: Bytes released beyond the rows just read, on each side (covers kernel fault-around).
_RELEASE_MARGIN = 256 * 2**10
#: Bytes of one contiguous span read to serve an index-array read of a slice-only source.
_SPAN_BYTES = 16 * 2**20
#: Rows skipped over (read and discarded) rather than starting a new span.
_MAX_GAP_ROWS = 16
#: Bytes per chunk when a reader is converted to one in-memory array.
_COPY_BYTES = 64 * 2**20


def _normalise_index(rows: Any, n_rows: int) -> np.ndarray:
    """An int64 array of non-negative row indices; booleans and negative indices resolved."""
    index = np.asarray(rows)
    if index.dtype == bool:
        if index.shape != (n_rows,):
            raise IndexError(f"boolean row index of shape {index.shape}, expected ({n_rows},)")
        return np.flatnonzero(index)
    if index.dtype.kind not in "iu":
        raise IndexError(f"rows must be a slice or an integer/boolean array, got {index.dtype}")
    index = index.astype(np.int64).ravel()
    index = np.where(index < 0, index + n_rows, index)
    if index.size and (index.min() < 0 or index.max() >= n_rows):
        raise IndexError(f"row index out of range for {n_rows} rows")
    return index


class RowReader:
    """Base class of the row sources: a 2-D, read-only, row-sliceable array-like.

    Subclasses implement :meth:`_read_slice` (a contiguous ``slice`` with step 1)
    and may override :meth:`_read_index`. ``reader[rows]`` returns a new
    in-memory ``ndarray`` of the source's dtype for a slice (any step) or an
    integer / boolean index array; ``np.asarray(reader)`` reads everything in
    bounded chunks.
    """

    shape: tuple[int, int]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, tuple):
            raise IndexError("a row reader takes one row index (a slice or an index array)")
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.shape[0])
            if step == 1:
                return self._read_slice(slice(start, max(start, stop)))
            rows = np.arange(start, stop, step)
        elif isinstance(rows, int | np.integer):
            return self[np.array([rows])][0]
        index = _normalise_index(rows, self.shape[0])
        if not index.size:
            return np.empty((0, self.shape[1]), dtype=self.dtype)
        return self._read_index(index)

    def _read_slice(self, rows: slice) -> np.ndarray:
        raise NotImplementedError

    def _read_index(self, index: np.ndarray) -> np.ndarray:
        """Read sorted unique rows in bounded contiguous spans, then reorder."""
        unique, inverse = np.unique(index, return_inverse=True)
        out = np.empty((unique.size, self.shape[1]), dtype=self.dtype)
        for first, last in _spans(unique, self._span_rows()):
            block = self._read_slice(slice(int(unique[first]), int(unique[last - 1]) + 1))
            out[first:last] = block[unique[first:last] - unique[first]]
        if unique.size == index.size and np.array_equal(unique, index):
            return out
        return out[inverse.ravel()]

    def _span_rows(self) -> int:
        row_bytes = max(1, self.shape[1] * np.dtype(self.dtype).itemsize)
        return max(1, _SPAN_BYTES // row_bytes)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a row reader cannot be viewed as an array without a copy")
        out = np.empty(self.shape, dtype=self.dtype if dtype is None else dtype)
        row_bytes = max(1, self.shape[1] * np.dtype(self.dtype).itemsize)
        for rows in iter_row_chunks(self.shape[0], max(1, _COPY_BYTES // row_bytes)):
            out[rows] = self._read_slice(rows)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype})"


def _spans(sorted_rows: np.ndarray, span_rows: int):
    """``(first, last)`` position ranges of ``sorted_rows`` to read as one slice each.

    A span ends where the next row is more than ``_MAX_GAP_ROWS`` rows further on,
    or where reading on would take more than ``span_rows`` rows.
    """
    breaks = np.flatnonzero(np.diff(sorted_rows) > _MAX_GAP_ROWS) + 1
    bounds = np.concatenate(([0], breaks, [sorted_rows.size]))
    for first, last in zip(bounds[:-1], bounds[1:], strict=True):
        while first < last:
            limit = sorted_rows[first] + span_rows
            stop = int(np.searchsorted(sorted_rows[first:last], limit, side="left")) + first
            yield int(first), int(max(stop, first + 1))
            first = max(stop, first + 1)


class SliceRows(RowReader):
    """Rows of any object with ``shape``, ``dtype`` and ``__getitem__(slice)``.

    Only contiguous slices are requested from the object; each result is
    converted with ``np.asarray`` and copied if it is a view of other memory.

    Examples
    --------
    >>> import numpy as np
    >>> class Rows:
    ...     def __init__(self, a): self.a, self.shape, self.dtype = a, a.shape, a.dtype
    ...     def __getitem__(self, s): return self.a[s]
    >>> reader = SliceRows(Rows(np.arange(12.0).reshape(6, 2)))
    >>> reader[np.array([4, 1])]
    array([[8., 9.],
           [2., 3.]])
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self.shape = (int(source.shape[0]), int(source.shape[1]))
        self.dtype = np.dtype(source.dtype)

    def _read_slice(self, rows: slice) -> np.ndarray:
        block = np.asarray(self.source[rows])
        if block.shape != (rows.stop - rows.start, self.shape[1]):
            raise ValueError(
                f"reading rows {rows.start}:{rows.stop} gave shape {block.shape}, expected "
                f"{(rows.stop - rows.start, self.shape[1])}"
            )
        # A view into the object's own memory is copied; a freshly read array is not.
        return block.astype(self.dtype, copy=block.base is not None or block.dtype != self.dtype)


class MemmapRows(RowReader):
    """Rows of an ``np.memmap``, copied out and their pages released after every read.

    Release uses ``madvise(MADV_DONTNEED)`` on the pages of the rows just read;
    it is skipped (reads still work, pages then accumulate as with a plain
    memory map) on platforms without it, for copy-on-write maps (``mode="c"``,
    whose private changes it would discard) and for views with negative strides.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(path, np.arange(6.0).reshape(3, 2))
    >>> reader = MemmapRows(np.load(path, mmap_mode="r"))
    >>> reader[1:3]
    array([[2., 3.],
           [4., 5.]])
    """

    def __init__(self, source: np.memmap) -> None:
        self.source = source
        self.shape = (int(source.shape[0]), int(source.shape[1]))
        self.dtype = np.dtype(source.dtype)
        self._map, self._map_address = _releasable_map(source)

    @property
    def releases_pages(self) -> bool:
        """Whether reads give their pages back (see the class docstring)."""
        return self._map is not None

    def _read_slice(self, rows: slice) -> np.ndarray:
        block = np.array(self.source[rows], copy=True)
        self._release(rows.start, rows.stop)
        return block

    def _read_index(self, index: np.ndarray) -> np.ndarray:
        # Fancy indexing touches only the pages of the requested rows.
        block = np.asarray(self.source[index])
        self._release(int(index.min()), int(index.max()) + 1)
        return block

    def _release(self, start: int, stop: int) -> None:
        if self._map is None or stop <= start:
            return
        strides = self.source.strides
        itemsize = self.source.itemsize
        first = self.source.ctypes.data + start * strides[0] - self._map_address
        last = (self.source.ctypes.data + (stop - 1) * strides[0]
                + (self.shape[1] - 1) * strides[1] + itemsize - self._map_address)
        # The kernel maps pages around each faulting one ("fault-around", 64 KiB by
        # default), including pages of rows read and released before; a margin on
        # both sides gives those back too. Rows another thread is copying at that
        # moment are simply faulted in again from the page cache.
        first = max(0, first - _RELEASE_MARGIN)
        begin = first - first % mmap.PAGESIZE
        end = min(last + _RELEASE_MARGIN, len(self._map))
        if end > begin:
            try:
                self._map.madvise(mmap.MADV_DONTNEED, begin, end - begin)
            except (OSError, ValueError):
                # A closed map or a refused advice only costs memory, never values.
                self._map = None


def _releasable_map(source: np.memmap) -> tuple[Any, int]:
    """The ``mmap`` object behind ``source`` and its address, or ``(None, 0)`` if unusable."""
    raw = getattr(source, "_mmap", None)
    if (
        not isinstance(raw, mmap.mmap)
        or not hasattr(mmap, "MADV_DONTNEED")
        or getattr(source, "mode", "r") == "c"
        or any(s <= 0 for s in source.strides)
        or source.size == 0
    ):
        return None, 0
    try:
        address = np.frombuffer(raw, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError, BufferError):
        return None, 0
    return raw, int(address)


class RowSubset(RowReader):
    """A lazy selection of rows of another array: ``subset[i]`` is ``source[rows[i]]``.

    Examples
    --------
    >>> import numpy as np
    >>> subset = RowSubset(np.arange(10.0).reshape(5, 2), np.array([0, 3, 4]))
    >>> subset[1:3]
    array([[6., 7.],
           [8., 9.]])
    """

    def __init__(self, source: Any, rows: slice | np.ndarray) -> None:
        n_source = int(source.shape[0])
        if isinstance(rows, slice):
            start, stop, step = rows.indices(n_source)
            rows = np.arange(start, stop, step)
        self.rows = _normalise_index(rows, n_source)
        self.source = source
        self.shape = (int(self.rows.size), int(source.shape[1]))
        self.dtype = np.dtype(source.dtype)
        contiguous = self.rows.size and np.all(np.diff(self.rows) == 1)
        self._offset = int(self.rows[0]) if contiguous else None

    def _read_slice(self, rows: slice) -> np.ndarray:
        if self._offset is not None:
            source_rows: slice | np.ndarray = slice(rows.start + self._offset,
                                                    rows.stop + self._offset)
        else:
            source_rows = self.rows[rows]
        return np.array(self.source[source_rows], dtype=self.dtype, copy=True)

    def _read_index(self, index: np.ndarray) -> np.ndarray:
        return np.array(self.source[self.rows[index]], dtype=self.dtype, copy=True)


def as_row_source(value: Any) -> Any:
    """The object the numeric code reads rows from: an ``ndarray`` itself, else a reader.

    In-memory arrays are returned unchanged (the fast path); ``np.memmap``
    inputs become :class:`MemmapRows`, readers stay as they are, and any other
    array-like becomes :class:`SliceRows`.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((3, 2))
    >>> as_row_source(a) is a
    True
    """
    if isinstance(value, RowReader):
        return value
    if isinstance(value, np.memmap):
        return MemmapRows(value)
    if isinstance(value, np.ndarray):
        return value
    return SliceRows(value)


def is_streamed(data: Any) -> bool:
    """Whether any modality is read through a :class:`RowReader` (not held in memory)."""
    return any(isinstance(a, RowReader) for a in data.arrays)


def subset_rows(array: Any, rows: np.ndarray) -> Any:
    """Rows ``rows`` of ``array``: copied for an in-memory array, lazy for a reader or dask."""
    if isinstance(array, RowReader):
        return RowSubset(array, rows)
    # An in-memory array is copied; a dask array gives a lazy selection.
    return array[rows]
