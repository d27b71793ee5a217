"""Validation of a multimodal data set: the one NaN/inf scan, shapes and names.

A row that is entirely NaN means that the modality is missing for that sample;
:func:`check_multimodal` reads the input with a backend's reader (the host one,
:func:`read_arrays`, over :mod:`ul4m4.inputs`), scans it over the engine's row
blocks and gives the :class:`Multimodal` view with its availability mask (no data
copied).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._utils.chunks import iter_row_chunks
from ._utils.text import format_rows
from .inputs import as_named_arrays
from .stream import subset_rows
from .threads import map_modalities

__all__ = [
    "Multimodal",
    "check_multimodal",
    "check_no_empty_samples",
    "check_observed_twice",
    "check_shapes",
    "in_one_block",
    "join_scans",
    "match_names",
    "raise_bad_rows",
    "read_arrays",
    "scan_block",
    "scan_rows",
    "validate",
    "without_empty_samples",
]

#: Rows examined at a time when scanning inputs for NaN / inf.
_SCAN_ROWS = 8192


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


def _scan_modality(array: Any, partial: str = "raise"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`scan_block` of one modality's rows, read ``_SCAN_ROWS`` at a time."""
    n = array.shape[0]
    observed = np.ones(n, dtype=bool)
    none = np.empty(0, dtype=np.int64)
    if np.dtype(array.dtype).kind in "iu":
        return observed, none, none
    partly_nan, infinite = [none], [none]
    for rows in iter_row_chunks(n, _SCAN_ROWS):
        found, bad, inf = scan_block(np.asarray(array[rows]), partial)
        observed[rows] = found
        partly_nan.append(bad + rows.start)
        infinite.append(inf + rows.start)
    return observed, np.concatenate(partly_nan), np.concatenate(infinite)


def scan_rows(arrays: Sequence[Any], *, partial: str = "raise", n_threads: int = 1
              ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """The NaN/inf scan of a block of rows of every modality: the (B, M) availability
    mask, and per modality the partly-NaN rows and the rows with inf (block-local).

    Data in this process are scanned as one block (modalities side by side on
    ``n_threads``); Dask scans each of its row blocks (see :func:`validate`).
    """
    found = map_modalities(lambda m: _scan_modality(arrays[m], partial), arrays, n_threads)
    return (np.column_stack([f[0] for f in found]), [f[1] for f in found],
            [f[2] for f in found])


def join_scans(left: tuple, right: tuple) -> tuple:
    """The :func:`scan_rows` of two consecutive row blocks, as one (rows renumbered)."""
    offset = left[0].shape[0]
    return (np.concatenate([left[0], right[0]]),
            [np.concatenate([a, b + offset]) for a, b in zip(left[1], right[1], strict=True)],
            [np.concatenate([a, b + offset]) for a, b in zip(left[2], right[2], strict=True)])


def in_one_block(arrays: Sequence[Any], fn: Callable[..., Any], combine: Callable,
                 *aligned: np.ndarray, n_threads: int = 1) -> Any:
    """:meth:`ul4m4.engine.Engine.reduce_blocks` of data held in this process: one block.

    ``fn`` reads the whole arrays (in chunks of its own); ``combine`` is not needed.
    """
    return fn(list(arrays), *aligned, n_threads=n_threads)


def validate(names: Sequence[str], arrays: Sequence[Any], *, require_observed: bool = True,
             n_threads: int = 1, partial: str = "raise",
             reduce_blocks: Callable[..., Any] = in_one_block) -> Multimodal:
    """The one NaN/inf scan of named 2-D arrays of equal row counts: the validated data.

    The scan (:func:`scan_rows`) runs per row block of the engine's
    ``reduce_blocks`` (one block for data in this process) and the blocks' results
    are joined (:func:`join_scans`); infinite and partly NaN rows are then reported
    by modality (:func:`raise_bad_rows`), and with ``require_observed`` samples that
    observe nothing (:func:`check_no_empty_samples`).
    """
    mask, partly_nan, infinite = reduce_blocks(
        arrays, functools.partial(scan_rows, partial=partial), join_scans, n_threads=n_threads)
    for m, name in enumerate(names):
        raise_bad_rows(name, partly_nan[m], infinite[m])
    if require_observed:
        check_no_empty_samples(mask)
    return Multimodal(list(names), list(arrays), mask)


def read_arrays(X: Any, *, names: Sequence[str] | None = None,
                dims: Mapping[str, int] | None = None) -> tuple[list[str], list[Any]]:
    """The host reading of a multimodal input: its names and 2-D arrays, values unread.

    The reader of every backend that reads the input as given (see
    :attr:`ul4m4.parameters.Backend.reader`): the values as arrays
    (:func:`~ul4m4.inputs.as_named_arrays`), matched to the fit-time ``names``
    and checked against ``dims`` (see :func:`check_multimodal`).
    """
    got_names, arrays = as_named_arrays(X)
    if names is not None:
        got_names, arrays = match_names(got_names, arrays, list(names), isinstance(X, Mapping))
    check_shapes(got_names, arrays, dims)
    return got_names, arrays


def check_multimodal(
    X: Any,
    *,
    names: Sequence[str] | None = None,
    dims: Mapping[str, int] | None = None,
    require_observed: bool = True,
    n_threads: int = 1,
    partial: str = "raise",
    read: Callable[..., tuple[list[str], list[Any]]] = read_arrays,
    reduce_blocks: Callable[..., Any] = in_one_block,
) -> Multimodal:
    """Validate a multimodal data set and compute its availability mask.

    Every backend's input goes through here: its reader reads the names and
    arrays, and the one NaN/inf scan (:func:`validate`) runs over its engine's
    ``reduce_blocks`` (:func:`ul4m4.backends.check_input` picks both).

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
    read : callable, default=read_arrays
        ``read(X, names=names, dims=dims)`` -> ``(names, arrays)``: the backend's
        reading of the input (:attr:`ul4m4.parameters.Backend.reader`; Dask:
        row-chunked dask arrays). The host reading by default.
    reduce_blocks : callable, default=in_one_block
        The engine's :meth:`~ul4m4.engine.Engine.reduce_blocks` the scan runs over
        (data in this process: one block).

    Returns
    -------
    Multimodal
        The validated view; ``arrays`` are the arrays ``read`` gave (the caller's
        own arrays on the host, not copies).
    """
    got_names, arrays = read(X, names=names, dims=dims)
    return validate(got_names, arrays, require_observed=require_observed, n_threads=n_threads,
                    partial=partial, reduce_blocks=reduce_blocks)


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



def check_observed_twice(data: Multimodal) -> None:
    """Raise unless every modality is observed in at least 2 samples (std needs 2)."""
    counts = data.mask.sum(axis=0)
    scarce = [f"{n!r} ({c})" for n, c in zip(data.names, counts, strict=True) if c < 2]
    if scarce:
        raise ValueError(
            "every modality must be observed in at least 2 training samples (its std is "
            f"undefined otherwise); observed counts: {', '.join(scarce)}"
        )



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
