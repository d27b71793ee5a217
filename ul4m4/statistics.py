"""Per-modality statistics of training data: moments, the constant-dimension rule, range checks.

The mean and the unbiased standard deviation of each modality are taken over the
rows that observe it, in two chunked float64 passes whose sums run in row order
(:func:`modality_moments`). A dimension whose spread is at the level of rounding
next to its modality's values is constant and gets scale 1
(:func:`constant_dimensions`, :func:`unit_scales`); every engine goes through
this one rule. :func:`check_magnitudes` refuses data whose z-scores would
overflow the working dtype.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from ._kernels import add_rows, add_squared_deviations
from ._utils.chunks import iter_row_chunks
from .rowsums import kernel_keep, kernel_rows
from .threads import map_modalities
from .validation import Multimodal, in_one_block

__all__ = [
    "CONSTANT_STD_RATIO",
    "MIN_STD",
    "Reduce",
    "add_partials",
    "deviation_sums",
    "modality_extremes",
    "observed_sums",
    "widest_extremes",
    "check_finite_statistics",
    "check_float32_range",
    "check_magnitudes",
    "column_extremes",
    "constant_dimensions",
    "largest_centred",
    "modality_moments",
    "modality_statistics",
    "unit_scales",
    "warn_constant_dimensions",
]

#: A dimension is constant, and gets scale 1, when its training standard deviation is at
#: most this fraction of its modality's magnitude (see :func:`constant_dimensions`).
CONSTANT_STD_RATIO = 1e-8

#: Below this a standard deviation is constant whatever the magnitude: float32's smallest
#: normal number, so that every scale stays a normal number in either working dtype.
MIN_STD = float(np.finfo(np.float32).tiny)

#: An engine's ``reduce_blocks(arrays, fn, combine, *aligned, n_threads=...)``: ``fn``
#: per row block of the raw arrays (with those rows of each ``aligned`` array), the
#: results combined along the engine's tree of blocks (see :func:`in_one_block`).
Reduce = Callable[..., Any]


def modality_statistics(
    data: Multimodal, chunk_rows: int, n_threads: int = 1
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-modality mean and scale over the rows that observe the modality.

    The scale is the unbiased std (:func:`modality_moments`), or 1 for a
    constant dimension (:func:`unit_scales`), so constant features stay finite
    after z-scoring.
    """
    means, stds = modality_moments(data, chunk_rows, n_threads)
    return means, unit_scales(means, stds)


def add_partials(left: Any, right: Any) -> Any:
    """``left + right`` for equally nested lists/tuples of arrays (the sums' ``combine``)."""
    if isinstance(left, tuple | list):
        return type(left)(add_partials(a, b) for a, b in zip(left, right, strict=True))
    return left + right


def modality_moments(
    data: Multimodal, chunk_rows: int, n_threads: int = 1, reduce_blocks: Reduce = in_one_block
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-modality float64 mean and unbiased std over the rows that observe the modality.

    Two chunked passes in float64 (mean, then squared deviations) keep memory at
    one chunk and avoid the cancellation of the one-pass formula; sums run in row
    order whatever the chunking. Modalities are independent: with
    ``n_threads > 1`` they are treated side by side, with the same results.

    ``reduce_blocks`` is the engine's (:meth:`ul4m4.engine.Engine.reduce_blocks`):
    each pass sums per row block (:func:`observed_sums`, :func:`deviation_sums`)
    and adds the blocks' sums along its tree. Data in this process are one block,
    so their sums run in row order over all rows.
    """
    sums, counts = reduce_blocks(data.arrays, partial(observed_sums, chunk_rows=chunk_rows),
                                 add_partials, data.mask, n_threads=n_threads)
    # Overflowing means give non-finite scales, which check_magnitudes reports.
    means = [s / c for s, c in zip(sums, counts, strict=True)]
    squares = reduce_blocks(data.arrays, partial(deviation_sums, means=means,
                                                 chunk_rows=chunk_rows),
                            add_partials, data.mask, n_threads=n_threads)
    with np.errstate(divide="ignore", invalid="ignore"):
        stds = [np.sqrt(sq / (c - 1)) for sq, c in zip(squares, counts, strict=True)]
    return means, stds


def observed_sums(arrays: Sequence[Any], mask: np.ndarray, *, chunk_rows: int,
                  n_threads: int = 1) -> tuple[list[np.ndarray], np.ndarray]:
    """Per modality the float64 column sums of the observed rows, in row order, and the
    (M,) float64 counts of those rows: one row block's part of :func:`modality_moments`."""

    def one(m: int) -> np.ndarray:
        sums = np.zeros((1, arrays[m].shape[1]))
        # Rows where the modality is missing are skipped by the kernels, so the NaN
        # there are never read.
        for rows in iter_row_chunks(mask.shape[0], chunk_rows):
            block = kernel_rows(arrays[m][rows])
            add_rows(sums, np.zeros(block.shape[0], dtype=np.int64), block,
                     kernel_keep(mask[rows, m]))
        return sums[0]

    return map_modalities(one, arrays, n_threads), mask.sum(axis=0).astype(np.float64)


def deviation_sums(arrays: Sequence[Any], mask: np.ndarray, *, means: Sequence[np.ndarray],
                   chunk_rows: int, n_threads: int = 1) -> list[np.ndarray]:
    """Per modality the float64 sums of the squared deviations from ``means`` of the
    observed rows, in row order: one row block's part of :func:`modality_moments`."""

    def one(m: int) -> np.ndarray:
        squares = np.zeros(arrays[m].shape[1])
        for rows in iter_row_chunks(mask.shape[0], chunk_rows):
            add_squared_deviations(squares, kernel_rows(arrays[m][rows]), means[m],
                                   kernel_keep(mask[rows, m]))
        return squares

    return map_modalities(one, arrays, n_threads)


def constant_dimensions(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Which dimensions of one modality are constant (a boolean (d,) mask).

    A dimension is constant when its std is at most ``CONSTANT_STD_RATIO`` (1e-8)
    times the modality's magnitude, the largest ``sqrt(mean_j**2 + std_j**2)``
    (root mean square of a dimension's values) over its dimensions, or at most
    float32's smallest normal number (about 1.2e-38). The rule is relative, so
    scaling a modality by any factor (data x 1e-9) scales every dimension by its
    own spread as before; only spreads at the level of rounding next to the
    modality's values (a constant column's mean computed in float64 leaves
    deviations of about 1e-16 of its value) count as none. A non-finite std is
    never constant, so overflow is still reported.

    Examples
    --------
    >>> import numpy as np
    >>> constant_dimensions(np.array([5.0, 0.0, 0.0]), np.array([0.0, 2.0, 1e-9]))
    array([ True, False,  True])
    >>> constant_dimensions(np.array([5e-9, 0.0, 0.0]), np.array([0.0, 2e-9, 1e-18]))
    array([ True, False,  True])
    """
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        # hypot: no overflow for magnitudes beyond 1e154; fmax skips NaN.
        magnitude = np.fmax.reduce(np.hypot(mean, std), initial=0.0)
        limit = max(CONSTANT_STD_RATIO * float(magnitude), MIN_STD)
        return np.isfinite(std) & (std <= limit)


def unit_scales(means: Sequence[np.ndarray], stds: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per-modality scales: the std, or 1 for a constant dimension (:func:`constant_dimensions`).

    Every engine's statistics go through this one rule, so they give the same model.
    """
    return [np.where(constant_dimensions(mean, std), 1.0, std)
            for mean, std in zip(means, stds, strict=True)]


def warn_constant_dimensions(names: Sequence[str], means: Sequence[np.ndarray],
                             stds: Sequence[np.ndarray], stacklevel: int = 2) -> None:
    """Warn, per modality, when some of its dimensions are constant and left unscaled."""
    for name, mean, std in zip(names, means, stds, strict=True):
        constant = constant_dimensions(mean, std)
        if constant.any():
            warnings.warn(
                f"modality {name!r}: {int(constant.sum())} of {constant.size} dimensions are "
                f"constant over the training rows that observe it (std at most "
                f"{CONSTANT_STD_RATIO:g} of the modality's magnitude, or below {MIN_STD:.2g}) "
                "and are left unscaled (scale 1): "
                "they add no distance between training samples. Rescale the modality if "
                "their variation is meaningful.",
                UserWarning,
                stacklevel=stacklevel + 1,
            )


def check_magnitudes(data: Multimodal, means, scales, dtype: np.dtype, chunk_rows: int,
                     n_threads: int = 1, reduce_blocks: Reduce = in_one_block) -> None:
    """Raise where z-scoring in ``dtype`` would overflow, instead of yielding NaN centres.

    The statistics are float64: a spread beyond ~1e154 overflows the squared deviations.
    A float32 working dtype cannot hold a centred value beyond ~3.4e38, and squared
    distances overflow once a sample lies ~1e19 standard deviations from the training
    mean (new data far outside the training range). The column extremes are taken
    per row block (:func:`modality_extremes`) by the engine's ``reduce_blocks``.
    """
    check_finite_statistics(data.names, means, scales)
    if np.dtype(dtype) != np.float32:
        return
    extremes = reduce_blocks(data.arrays, partial(modality_extremes, chunk_rows=chunk_rows),
                             widest_extremes, n_threads=n_threads)
    found = [None if e is None else largest_centred(a, data.mask[:, m], means[m], scales[m],
                                                    chunk_rows, extremes=e)
             for m, (a, e) in enumerate(zip(data.arrays, extremes, strict=True))]
    check_float32_range(data.names, found, sum(data.dims))


def modality_extremes(arrays: Sequence[Any], *, chunk_rows: int, n_threads: int = 1
                      ) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per modality its :func:`column_extremes`, or None where it cannot overflow float32
    (integers, and floats narrower than float32): one row block's part of
    :func:`check_magnitudes`."""

    def one(m: int) -> tuple[np.ndarray, np.ndarray] | None:
        dtype = np.dtype(arrays[m].dtype)
        if dtype.kind != "f" or dtype.itemsize < 4:
            return None
        return column_extremes(arrays[m], chunk_rows)

    return map_modalities(one, arrays, n_threads)


def widest_extremes(left: list, right: list) -> list:
    """Two row blocks' :func:`modality_extremes` combined: the larger maxima, smaller minima."""
    return [None if a is None else (np.fmax(a[0], b[0]), np.fmin(a[1], b[1]))
            for a, b in zip(left, right, strict=True)]


def check_finite_statistics(names: Sequence[str], means, scales) -> None:
    """Raise for a modality whose float64 mean or standard deviation overflowed."""
    for name, mean, scale in zip(names, means, scales, strict=True):
        if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
            raise ValueError(
                f"modality {name!r}: values are too large (their mean or standard deviation "
                "overflows float64, which happens beyond about 1e154); rescale the data"
            )


def check_float32_range(names: Sequence[str], found: Sequence[tuple[float, float] | None],
                        width: int) -> None:
    """Raise where the largest centred values (see :func:`largest_centred`) overflow float32."""
    limit = float(np.finfo(np.float32).max)
    for name, extreme in zip(names, found, strict=True):
        if extreme is None:
            continue
        largest, largest_z = extreme
        if largest > limit:
            raise ValueError(
                f"modality {name!r}: values up to {largest:.3g} away from the mean do not fit "
                f"the working dtype float32 (max {limit:.3g}); use dtype=numpy.float64 or "
                "rescale the data"
            )
        if largest_z * largest_z * width > limit:
            raise ValueError(
                f"modality {name!r}: values up to {largest_z:.3g} standard deviations from the "
                "training mean overflow squared distances in the working dtype float32; use "
                "dtype=numpy.float64 or check the data"
            )


def column_extremes(array: Any, chunk_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 column maxima and minima of the non-NaN values (``fmax``/``fmin`` skip NaN).

    The chunks are reduced in their own dtype without a copy (the extrema are exact
    in any dtype) and only the (d,) results go to float64.
    """
    d = array.shape[1]
    high = np.full(d, -np.inf)
    low = np.full(d, np.inf)
    for rows in iter_row_chunks(array.shape[0], chunk_rows):
        block = np.asarray(array[rows])
        if block.size:
            high = np.fmax(high, np.fmax.reduce(block, axis=0).astype(np.float64))
            low = np.fmin(low, np.fmin.reduce(block, axis=0).astype(np.float64))
    return high, low


def largest_centred(
    array: Any, observed: np.ndarray, mean: np.ndarray, scale: np.ndarray, chunk_rows: int,
    extremes: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[float, float]:
    """Largest max(|x|, |x - mean|) and largest |x - mean| / scale over observed rows.

    ``extremes`` may pass :func:`column_extremes` computed elsewhere (e.g. per row block).
    """
    high, low = column_extremes(array, chunk_rows) if extremes is None else extremes
    if not observed.any():
        return 0.0, 0.0
    centred = np.maximum(high - mean, mean - low)
    spread = np.maximum(np.maximum(np.abs(high), np.abs(low)), centred)
    return float(spread.max()), float((centred / scale).max())
