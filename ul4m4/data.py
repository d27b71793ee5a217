"""Multimodal input: validation, availability masks and row-chunked standardisation.

A data set is a mapping ``{modality name: array (n_samples, d_m)}`` (or a list of
arrays, named ``"0"``, ``"1"``, ...). A row that is entirely NaN means that the
modality is missing for that sample. Arrays are never copied as a whole nor
modified: the numeric code reads them in row chunks, so memory-mapped arrays and
other row-sliceable array-likes work without loading them.

pandas DataFrames are read as their values (nullable ``Float64``/``Int64`` columns
as floats, ``pd.NA`` as NaN); the rows of several DataFrames are paired by
position, so their indexes must be equal. :class:`InputForm` gives results back
in the caller's form: under the caller's own keys, and as a DataFrame where a
DataFrame came in.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from threadpoolctl import ThreadpoolController

from ._kernels import add_rows
from ._utils.chunks import iter_row_chunks
from ._utils.text import format_rows
from .blocks import PackedBlocks
from .distance import assigned_sq_dists, squared_norms
from .stream import as_row_source, subset_rows

__all__ = [
    "INLINE_BYTES",
    "InputForm",
    "is_small_input",
    "kernel_keep",
    "kernel_rows",
    "Multimodal",
    "raise_bad_rows",
    "scan_block",
    "output_copy",
    "output_dtype",
    "reject_sparse",
    "without_empty_samples",
    "PreparedChunk",
    "RowOrderSums",
    "Standardized",
    "check_multimodal",
    "check_observed_twice",
    "check_2d",
    "feature_names",
    "warn_inexact_integers",
    "check_no_empty_samples",
    "iter_row_chunks",
    "map_modalities",
    "sequential_sums",
    "standardize_packed",
    "standardize_rows",
]

#: Rows examined at a time when scanning inputs for NaN / inf.
_SCAN_ROWS = 8192
#: Passes over at most this many bytes of data run inline on the calling thread,
#: whatever ``n_threads``: no thread pool and no BLAS thread limit (threadpoolctl
#: inspects every loaded library on each call). Starting a pool and limiting BLAS
#: costs about 0.2-0.5 ms, about what one thread takes to scan 4 MiB
#: (``benchmarks/bench_serving.py``: a 1-row greedy transform took 1.1-1.6 ms with
#: the pools against 0.4-0.5 ms inline). The results are the same either way.
INLINE_BYTES = 4 * 2**20


@dataclass
class Multimodal:
    """Validated view of a multimodal data set (no data copied).

    Attributes
    ----------
    names : list of str
        Modality names, in order.
    arrays : list of ndarray or RowReader
        One (n_samples, d_m) array per modality: the caller's in-memory arrays,
        or row readers (:mod:`ul4m4.stream`) over memory maps and other array-likes.
    mask : ndarray of shape (n_samples, n_modalities), dtype bool
        ``mask[i, m]`` is True when modality ``m`` is observed for sample ``i``.
    """

    names: list[str]
    arrays: list[Any]
    mask: np.ndarray
    dims: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.dims = [int(a.shape[1]) for a in self.arrays]

    @property
    def n_samples(self) -> int:
        return int(self.mask.shape[0])

    @property
    def n_modalities(self) -> int:
        return len(self.names)

    @property
    def nbytes(self) -> int:
        """Bytes of the in-memory arrays (a row reader counts as 0: it holds no rows)."""
        return int(sum(int(getattr(a, "nbytes", 0)) for a in self.arrays))


def is_small_input(X: Any) -> bool:
    """Whether ``X`` holds at most :data:`INLINE_BYTES` as float64 cells (a serving call).

    Read from the values' ``shape`` only; False where a value has none.
    """
    if isinstance(X, Mapping):
        values = list(X.values())
    elif isinstance(X, Sequence) and not isinstance(X, str | bytes):
        values = list(X)
    else:
        return False
    shapes = [getattr(value, "shape", None) for value in values]
    if not values or any(shape is None for shape in shapes):
        return False
    return sum(math.prod(shape) for shape in shapes) * 8 <= INLINE_BYTES


def _as_named_arrays(X: Any) -> tuple[list[str], list[Any]]:
    names, values = named_values(X)
    return names, [_as_2d_array(name, v) for name, v in zip(names, values, strict=True)]


def named_values(X: Any) -> tuple[list[str], list[Any]]:
    """Modality names and the caller's values of a mapping or list input (names as str).

    Rejects what no engine reading these values takes: torch tensors (the torch
    engine converts them before) and DataFrames whose indexes differ.
    """
    if isinstance(X, Mapping):
        names = [str(k) for k in X.keys()]
        if len(set(names)) != len(names):
            raise ValueError(f"modality names must be unique as strings, got {list(X.keys())!r}")
        values = list(X.values())
    elif isinstance(X, Sequence) and not isinstance(X, str | bytes):
        names = [str(i) for i in range(len(X))]
        values = list(X)
    else:
        raise TypeError(
            "X must be a mapping {modality name: array (n_samples, n_features)} or a list of "
            f"such arrays, got {type(X).__name__}"
        )
    if not values:
        raise ValueError("X has no modality")
    for name, value in zip(names, values, strict=True):
        if _is_tensor(value):
            # NumPy has no bfloat16: such a tensor converts through float32.
            convert = ".float().numpy()" if str(value.dtype) == "torch.bfloat16" else ".numpy()"
            raise TypeError(
                f"modality {name!r} is a torch.Tensor: pass backend='torch' to take tensors "
                "(results come back as tensors on their device), or convert it with "
                f"{convert} for this backend"
            )
    _check_frame_indexes(names, values, list(X.keys()) if isinstance(X, Mapping) else None)
    return names, values


@dataclass(frozen=True)
class InputForm:
    """The caller's form of an input, to give results back in it.

    Results are computed under the modality names (keys as ``str``);
    :meth:`wrap` puts the caller's own keys back (``{0: a}`` gives ``{0: ...}``)
    and turns the filled array of a modality given as a DataFrame into a
    DataFrame of the same type, index and columns.

    Attributes
    ----------
    keys : dict of str to object
        Name -> the caller's key (empty for a list input: results are keyed by
        the fitted names).
    frames : dict of str to (type, index, columns)
        The modalities given as DataFrames.
    """

    keys: dict[str, Any]
    frames: dict[str, tuple[type, Any, Any]]

    @classmethod
    def of(cls, X: Any) -> InputForm:
        if not isinstance(X, Mapping):
            return cls({}, {})
        return cls({str(k): k for k in X},
                   {str(k): (type(v), v.index, v.columns) for k, v in X.items() if _is_frame(v)})

    def order(self, fitted: Sequence[str]) -> list[str]:
        """Output names: those of the input mapping in its order, else the fitted ones."""
        return list(self.keys) if self.keys else list(fitted)

    def as_frames(self, names: Sequence[str], dims: Sequence[int], n_rows: int) -> InputForm:
        """This form with every modality returned as a pandas DataFrame.

        Modalities given as arrays get columns ``<name>_0``, ``<name>_1``, ... and
        the index of the DataFrames in the input (rows pair by position), else a
        RangeIndex. Needs pandas.
        """
        import pandas as pd  # optional dependency, needed only for DataFrame output

        index = next((index for _, index, _ in self.frames.values()), pd.RangeIndex(n_rows))
        frames = {name: (pd.DataFrame, index, list(feature_names(name, d)))
                  for name, d in zip(names, dims, strict=True)}
        return InputForm(self.keys, {**frames, **self.frames})

    def wrap(self, result: Any, frames: bool = True) -> Any:
        """``result`` (a dict by name, or a tuple of them: filled, sources, weights) under
        the caller's keys; with ``frames``, filled host arrays of DataFrames as DataFrames."""
        if isinstance(result, tuple):
            return (self.wrap(result[0], frames), *(self.wrap(r, False) for r in result[1:]))
        out = {}
        for name, value in result.items():
            if frames and name in self.frames and isinstance(value, np.ndarray):
                kind, index, columns = self.frames[name]
                value = kind(value, index=index, columns=columns, copy=False)
            out[self.keys.get(name, name)] = value
        return out


#: Integers of larger magnitude do not all convert to float64 exactly.
_EXACT_INT = 2**53


def warn_inexact_integers(name: str, values: Any, stacklevel: int = 2) -> None:
    """Warn when integer values of ``values`` (an array or a DataFrame) exceed 2**53.

    For data converted to float64 (nullable integer columns, which hold NA, and
    the 2-D array of :class:`~ul4m4.adapter.ModalityImputer`): such integers are
    rounded, so they do not come back exactly. The check is exact (integer
    arithmetic) and reads only integer columns.
    """
    if _is_frame(values):
        columns = [values.iloc[:, j] for j, d in enumerate(values.dtypes)
                   if getattr(d, "kind", "") in ("i", "u")]
        extremes = [int(v) for c in columns if c.notna().any() for v in (c.min(), c.max())]
    elif np.dtype(getattr(values, "dtype", np.float64)).kind in "iu" and np.size(values):
        extremes = [int(np.min(values)), int(np.max(values))]
    else:
        return
    largest = max((abs(v) for v in extremes), default=0)
    if largest > _EXACT_INT:
        warnings.warn(
            f"{name}: integer values up to {largest} in magnitude exceed 2**53 and are "
            "rounded by the conversion to float64, so they do not come back exactly; "
            "pass them as a plain integer array to a UL4M4Imputer (returned unchanged) "
            "or as float64 deliberately",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def feature_names(name: str, width: int) -> np.ndarray:
    """The output column names of an array modality: ``<name>_0``, ``<name>_1``, ..."""
    return np.asarray([f"{name}_{j}" for j in range(width)], dtype=object)


def _is_tensor(value: Any) -> bool:
    # Without importing torch: importing ul4m4 never imports it.
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def _is_frame(value: Any) -> bool:
    """A pandas DataFrame (duck-typed: pandas is an optional dependency)."""
    return all(hasattr(value, a) for a in ("to_numpy", "columns", "index", "dtypes"))


def _check_frame_indexes(names: Sequence[str], values: Sequence[Any],
                         keys: Sequence[Any] | None = None) -> None:
    """Raise when DataFrame modalities have different indexes (rows pair by position).

    The message shows the fix: reindex every DataFrame on the union of their
    indexes, so that no sample is dropped (``keys``: the caller's mapping keys,
    None for a list input).
    """
    frames = [(i, name, v) for i, (name, v) in enumerate(zip(names, values, strict=True))
              if _is_frame(v)]
    for _, name, frame in frames[1:]:
        _, first, reference = frames[0]
        if not frame.index.equals(reference.index):
            raise ValueError(
                f"modalities {first!r} and {name!r} are DataFrames with different indexes, "
                "but rows are paired by position; align them first on the union of their "
                "indexes (labels a DataFrame lacks become all-NaN rows, i.e. missing "
                f"modalities), e.g. {_union_hint([i for i, _, _ in frames], keys)}"
            )


def _union_hint(positions: Sequence[int], keys: Sequence[Any] | None) -> str:
    """Python code that reindexes the DataFrames of ``X`` on the union of their indexes."""
    def item(i: int) -> str:
        return f"X[{keys[i]!r}]" if keys is not None else f"X[{i}]"

    index = item(positions[0]) + ".index" + "".join(
        f".union({item(i)}.index)" for i in positions[1:])
    if keys is None:
        return f"index = {index}; X = [df.reindex(index) for df in X]"
    return f"index = {index}; X = {{m: df.reindex(index) for m, df in X.items()}}"


def _frame_values(name: str, frame: Any) -> np.ndarray:
    """A DataFrame's values; nullable numeric columns (``Float64``, ``Int64``, ...) as floats.

    ``pd.NA`` becomes NaN, so a row of NA is a missing modality. Float columns keep
    their width (``Float32`` columns alone give float32).
    """
    numeric = [d if isinstance(d, np.dtype) else getattr(d, "numpy_dtype", None)
               for d in frame.dtypes]
    if all(isinstance(d, np.dtype) for d in frame.dtypes) or not all(
            isinstance(d, np.dtype) and d.kind in "fiu" for d in numeric):
        return frame.to_numpy()
    target = np.result_type(*numeric)
    if target.kind != "f":
        target = np.dtype(np.float64)
        warn_inexact_integers(f"modality {name!r}", frame)
    return frame.to_numpy(dtype=target, na_value=np.nan)


def _as_2d_array(name: str, value: Any) -> Any:
    if _is_frame(value):
        value = _frame_values(name, value)
    elif not hasattr(value, "shape") or not hasattr(value, "dtype"):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"modality {name!r}: cannot be read as a numeric array ({exc})") from exc
    dtype = np.dtype(value.dtype)
    if dtype.kind not in "fiu":
        raise TypeError(
            f"modality {name!r}: expected a real numeric dtype (float or int), got {dtype}"
        )
    check_2d(name, value.shape)
    if value.shape[1] < 1:
        raise ValueError(f"modality {name!r}: has zero features")
    # Memory maps and other array-likes are read through a row reader, so that no
    # pass over them keeps more than a chunk of rows (or of mapped pages) resident.
    return as_row_source(value)


def check_2d(name: str, shape: Sequence[int]) -> None:
    """Raise unless ``shape`` is 2-D; a 1-D shape gets the reshape that fixes it."""
    if len(shape) == 2:
        return
    message = (f"modality {name!r}: expected a 2-D array (n_samples, n_features), got shape "
               f"{tuple(shape)}")
    if len(shape) == 1:
        message += ("; for a single sample pass x.reshape(1, -1), for a single feature "
                    "x.reshape(-1, 1)")
    raise ValueError(message)


def map_modalities(fn: Callable[[int], Any], arrays: Sequence[Any], n_threads: int = 1) -> list:
    """``[fn(0), ..., fn(len(arrays) - 1)]``, one modality per task on ``n_threads`` threads.

    Passes over the data that treat each modality on its own (scans, statistics)
    run side by side this way when every modality is held in memory: their kernels
    release the GIL. Streamed modalities (memory maps, row readers) are read one
    after the other, so a pass keeps one chunk in memory and reads the disk in
    order. Results come back in modality order, and so does the first error, as if
    the calls ran in turn. Data of at most :data:`INLINE_BYTES` are treated inline,
    on the calling thread.
    """
    in_memory = all(isinstance(a, np.ndarray) and not isinstance(a, np.memmap) for a in arrays)
    if (n_threads <= 1 or len(arrays) <= 1 or not in_memory
            or sum(a.nbytes for a in arrays) <= INLINE_BYTES):
        return [fn(m) for m in range(len(arrays))]
    with ThreadPoolExecutor(min(n_threads, len(arrays))) as pool:
        futures = [pool.submit(fn, m) for m in range(len(arrays))]
        return [future.result() for future in futures]


def scan_block(block: np.ndarray, partial: str = "raise"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The NaN/inf scan of one block of rows: observed rows, partly-NaN rows, rows with inf.

    A row with a finite sum holds no NaN and no inf: one pass settles most rows;
    only the others (missing, or overflowing sums) are looked at closely. Row
    indices are local to the block. With ``partial="missing"`` a row with any NaN
    counts as missing (its finite cells are ignored) and no row is reported as
    partly NaN; with ``"raise"`` only all-NaN rows are missing.
    """
    observed = np.ones(block.shape[0], dtype=bool)
    none = np.empty(0, dtype=np.int64)
    if np.dtype(block.dtype).kind in "iu":
        return observed, none, none
    with np.errstate(over="ignore", invalid="ignore"):
        unsettled = np.flatnonzero(~np.isfinite(block.sum(axis=1)))
    if not unsettled.size:
        return observed, none, none
    suspect = block[unsettled]
    nan = np.isnan(suspect)
    any_nan, all_nan = nan.any(axis=1), nan.all(axis=1)
    infinite = unsettled[np.isinf(suspect).any(axis=1)]
    if partial == "missing":
        observed[unsettled] = ~any_nan
        return observed, none, infinite
    observed[unsettled] = ~all_nan
    return observed, unsettled[any_nan & ~all_nan], infinite


def raise_bad_rows(name: str, partial: np.ndarray, infinite: np.ndarray) -> None:
    """Raise, naming the rows, for infinite values or partly-NaN rows of one modality."""
    if infinite.size:
        raise ValueError(
            f"modality {name!r}: rows {format_rows(infinite)} contain infinite values"
        )
    if partial.size:
        raise ValueError(
            f"modality {name!r}: rows {format_rows(partial)} have some but not all values "
            "NaN; a missing modality must be an entire row of NaN, and observed rows must be "
            "finite"
        )


def _scan_rows(name: str, array: Any, partial: str = "raise") -> np.ndarray:
    """Return the row-availability vector of one modality, rejecting inf (and, unless
    ``partial="missing"``, partly NaN) rows."""
    n = array.shape[0]
    observed = np.ones(n, dtype=bool)
    if np.dtype(array.dtype).kind in "iu":
        return observed
    partly_nan, infinite = [], []
    for rows in iter_row_chunks(n, _SCAN_ROWS):
        found, bad, inf = scan_block(np.asarray(array[rows]), partial)
        observed[rows] = found
        partly_nan.append(bad + rows.start)
        infinite.append(inf + rows.start)
    raise_bad_rows(name, np.concatenate(partly_nan), np.concatenate(infinite))
    return observed


def check_multimodal(
    X: Any,
    *,
    names: Sequence[str] | None = None,
    dims: Mapping[str, int] | None = None,
    require_observed: bool = True,
    n_threads: int = 1,
    partial: str = "raise",
) -> Multimodal:
    """Validate a multimodal data set and compute its availability mask.

    Parameters
    ----------
    X : mapping of str to array-like of shape (n_samples, d_m), or list of array-likes
        The data. NaN rows mark missing modalities.
    names : sequence of str, optional
        The modality names seen at fit time. When given, ``X`` must have exactly
        these modalities (a mapping may list them in any order: they are put back
        in this order).
    dims : mapping of str to int, optional
        The widths seen at fit time.
    require_observed : bool, default=True
        Raise when a sample has no observed modality.
    n_threads : int, default=1
        Modalities scanned side by side (:func:`map_modalities`).
    partial : {"raise", "missing"}, default="raise"
        A row with some but not all values NaN: raise, or count the modality
        missing in that row (see :func:`scan_block`).

    Returns
    -------
    Multimodal
        The validated view; ``arrays`` are the caller's arrays, not copies.
    """
    got_names, arrays = _as_named_arrays(X)
    if names is not None:
        got_names, arrays = match_names(got_names, arrays, list(names), isinstance(X, Mapping))
    check_shapes(got_names, arrays, dims)
    mask = np.column_stack(
        map_modalities(lambda m: _scan_rows(got_names[m], arrays[m], partial), arrays,
                       n_threads)
    )
    if require_observed:
        check_no_empty_samples(mask)
    return Multimodal(got_names, arrays, mask)


def check_no_empty_samples(mask: np.ndarray, hint: bool = True) -> None:
    """Raise, naming the rows, where a sample observes no modality.

    With ``hint`` the message points to the estimators' ``empty="mean"``.
    """
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(
            f"samples {format_rows(empty)} have no observed modality (every modality row "
            "is NaN)" + ("; pass empty='mean' to fill every modality of such a sample with "
                         "its training mean (fit then leaves it out)" if hint else "")
        )


def check_shapes(names: Sequence[str], arrays: Sequence[Any],
                 dims: Mapping[str, int] | None = None) -> None:
    """Raise unless the 2-D ``arrays`` share a nonzero row count (and have ``dims`` widths)."""
    n_rows = {name: int(a.shape[0]) for name, a in zip(names, arrays, strict=True)}
    if len(set(n_rows.values())) != 1:
        raise ValueError(f"modalities have different numbers of rows: {n_rows}")
    if next(iter(n_rows.values())) == 0:
        raise ValueError("X has zero rows (n_samples=0)")
    if dims is not None:
        for name, a in zip(names, arrays, strict=True):
            if a.shape[1] != dims[name]:
                raise ValueError(
                    f"modality {name!r}: expected {dims[name]} features, got {a.shape[1]}"
                )


def match_names(
    got: list[str], arrays: list[Any], expected: list[str], by_name: bool
) -> tuple[list[str], list[Any]]:
    if not by_name:
        if len(got) != len(expected):
            raise ValueError(
                f"X has {len(got)} modalities, expected {len(expected)} ({expected})"
            )
        return list(expected), arrays
    unknown = [g for g in got if g not in expected]
    missing = [e for e in expected if e not in got]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown modalities {unknown}")
        if missing:
            parts.append(f"missing modalities {missing}")
        raise ValueError(f"X does not match the fitted modalities {expected}: {'; '.join(parts)}")
    lookup = dict(zip(got, arrays, strict=True))
    return list(expected), [lookup[e] for e in expected]


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
class PreparedChunk:
    """A chunk's rows ready for :meth:`RowOrderSums.add` (``best`` is set by it)."""

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
    of its sum. :meth:`prepare` (the counts and masks of a chunk) may run on any
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
        row's squared distance to its centre (``PreparedChunk.best``).

    Examples
    --------
    >>> import numpy as np
    >>> acc = RowOrderSums(2, [3])
    >>> block = np.arange(12, dtype=np.float32).reshape(4, 3)
    >>> mask = np.ones((4, 1), dtype=bool)
    >>> acc.add(acc.prepare(np.array([0, 1, 0, 1]), PackedBlocks.of_full([block], mask), mask))
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

    def prepare(self, labels: np.ndarray, blocks: PackedBlocks, mask: np.ndarray) -> PreparedChunk:
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
        return PreparedChunk(parts, counts, blocks, labels)

    def best_of(self, prepared: PreparedChunk) -> np.ndarray | None:
        """The rows' squared distances to their centres, once added (None without centres)."""
        return prepared.best

    def add(self, prepared: PreparedChunk) -> None:
        """Add a prepared chunk, the next one in row order, to the sums and counts.

        With centres, also sets ``prepared.best``: each row's squared distance to
        its centre (:func:`ul4m4.distance.assigned_sq_dists`), the squared
        differences taken while the rows are added.
        """
        for m, item in enumerate(prepared.parts):
            if item is not None:
                add_rows(self.sums[m], *item)
        self.counts += prepared.counts
        if self.centers is not None:
            terms = [None if item is None else item[4] for item in prepared.parts]
            prepared.best = assigned_sq_dists(prepared.blocks, prepared.labels, self.centers,
                                              self.center_mask, terms)

    def compute_and_add(self, rows: slice, compute: Callable[[], tuple[Any, Any]]) -> Any:
        """Run ``compute() -> (result, prepared)`` and add ``prepared`` in row order.

        Chunks are slices that tile ``[0, n)``; any thread may call this, and each
        waits, after its own computing, until every earlier chunk has been added.
        Callers must start chunks in row order (a FIFO thread pool does). A chunk
        whose ``compute`` fails still passes its turn on, so later chunks never
        wait for it forever; the failure propagates to the caller.
        """
        try:
            result, prepared = compute()
        except BaseException:
            self._add_in_turn(rows, None)
            raise
        self._add_in_turn(rows, prepared)
        return result

    def _add_in_turn(self, rows: slice, prepared) -> None:
        with self._turn:
            self._turn.wait_for(lambda: self._next_row == rows.start)
        # Only the thread whose turn it is gets here: the addition needs no lock.
        try:
            if prepared is not None:
                self.add(prepared)
        finally:
            with self._turn:
                self._next_row = rows.stop
                self._turn.notify_all()


def check_observed_twice(data: Multimodal) -> None:
    """Raise unless every modality is observed in at least 2 samples (std needs 2)."""
    counts = data.mask.sum(axis=0)
    scarce = [f"{n!r} ({c})" for n, c in zip(data.names, counts, strict=True) if c < 2]
    if scarce:
        raise ValueError(
            "every modality must be observed in at least 2 training samples (its std is "
            f"undefined otherwise); observed counts: {', '.join(scarce)}"
        )


@functools.lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    """One controller per process: finding the loaded BLAS libraries takes ms per pass."""
    return ThreadpoolController()


@dataclass
class Standardized:
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

    data: Multimodal
    mean: Sequence[np.ndarray]
    scale: Sequence[np.ndarray]
    dtype: np.dtype
    chunk_rows: int
    n_threads: int = 1
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

    @property
    def n_samples(self) -> int:
        return self.data.n_samples

    @property
    def mask(self) -> np.ndarray:
        return self.data.mask

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
        :data:`INLINE_BYTES` of z-scored rows (a serving call of a few rows is both)."""
        if self.n_samples <= self.chunk_rows:
            return True
        row_bytes = sum(self.data.dims) * np.dtype(self.dtype).itemsize
        return self.n_samples * row_bytes <= INLINE_BYTES

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


def without_empty_samples(data: Multimodal) -> tuple[Multimodal, np.ndarray | None]:
    """Drop samples with no observed modality (allowed with ``empty="mean"``).

    They carry nothing to cluster or to estimate statistics from. Returns the
    reduced data and a boolean mask of the kept samples, or the data itself and
    None when no sample is empty. In-memory arrays are copied; streamed ones stay
    on disk behind a lazy row map.
    """
    kept = data.mask.any(axis=1)
    if kept.all():
        return data, None
    rows = np.flatnonzero(kept)
    arrays = [subset_rows(a, rows) for a in data.arrays]
    return Multimodal(list(data.names), arrays, data.mask[rows]), kept


def reject_sparse(X: Any) -> None:
    """Name the modality of a scipy.sparse input (its rows do not read as dense arrays)."""
    items = X.items() if isinstance(X, Mapping) else enumerate(X) if isinstance(X, list) else ()
    for name, value in items:
        if sparse.issparse(value):
            raise TypeError(
                f"modality {str(name)!r}: scipy.sparse input is not supported; pass a dense "
                "array (e.g. value.toarray())"
            )


def output_dtype(dtype: Any) -> np.dtype:
    """The dtype of a completed modality: the input's (floating or integer).

    An integer array holds no NaN, so its modality is observed in every row and
    comes back unchanged: keeping its dtype keeps every value exact (float64
    would round integers beyond 2**53).
    """
    dtype = np.dtype(dtype)
    return dtype if dtype.kind in "fiu" else np.dtype(np.float64)


def output_copy(array: Any) -> np.ndarray:
    """A copy of the caller's array in :func:`output_dtype`."""
    return np.array(array, dtype=output_dtype(array.dtype), copy=True)
