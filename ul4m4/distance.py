"""Partial-modality distance: GEMM kernels, an exact float64 kernel, and exact argmins.

For sample i and centre j with modalities shared by both ``M_ij``::

    d(i, j)^2 = (1 / |M_ij|) * sum_{m in M_ij} ||z_i^m - c_j^m||^2 / d_m

and ``d = +inf`` when nothing is shared. Everything here works on squared
distances: ``sqrt`` is monotone, so argmins and orderings are the same.

Two kernels compute it:

* :func:`partial_sq_dists` expands ``||x||^2 + ||c||^2 - 2 x.c`` with one GEMM per
  modality, combined with the shared-modality counts in one compiled pass per
  modality (:mod:`ul4m4._kernels`). It also returns a rigorous bound on its own
  rounding error per entry.
* :func:`exact_partial_sq_dists` computes the definition literally in float64
  (direct differences, modalities accumulated in order). This is the reference
  value: wherever the GEMM bound cannot separate the smallest entry from another,
  the rows are recomputed with it (:func:`exact_argmin`), so labels always equal
  the exact argmin with ties to the lowest index.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from ._kernels import (
    bounded_argmin,
    nearest_from_cross,
    partial_sq_dists_from_cross,
    sq_to_assigned,
)
from .blocks import PackedBlocks

__all__ = [
    "assigned_sq_dists",
    "error_factor",
    "exact_argmin",
    "exact_sq_to_assigned",
    "exact_partial_sq_dists",
    "exact_partial_sq_pairs",
    "fixed_order_partial_sq_dists",
    "modality_sq_dists",
    "nearest_donors",
    "nearest_rows",
    "packed_exact_checks",
    "pairwise_exact_sq",
    "partial_nearest",
    "partial_sq_dists",
    "squared_norms",
]

#: Elements of a direct-difference temporary (r x k x d) allowed at once.
_EXACT_BLOCK_ELEMENTS = 1 << 22
#: Elements of the (pairs, d) difference buffer of the pairwise rechecks (2 MiB in float64).
_RECHECK_PAIR_ELEMENTS = 1 << 18
#: Per thread, the buffer the GEMM products of a chunk are written to (see _scratch).
_WORKSPACE = threading.local()


def error_factor(dims: Sequence[int], dtype: np.dtype) -> float:
    """The GEMM rounding factor: relative error factor of the expanded squared distance.

    The ``rounding`` argument of the distance kernels and engine passes: the bound
    on an entry's rounding error is ``rounding`` times its norms (in ``dtype``).

    With unit roundoff u, a length-d dot product errs by at most d*u*sum|x||c|
    <= d*u*(||x||^2 + ||c||^2)/2 (any summation order), each squared norm by
    d*u*||.||^2, and the three-term sum by a few more u. So
    ``|fl(sq) - sq| <= (2d + 3) u (||x||^2 + ||c||^2)``; a factor 2 covers the
    first-order terms dropped in that bound, and ``M + 5`` more u the float64
    post-processing (scaling by 1/d_m, the sum over M modalities, the mean).
    """
    u = np.finfo(dtype).eps / 2
    return float(2 * (2 * max(dims) + 8 + len(dims)) * u)


def squared_norms(blocks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Row-wise squared norms of each block, returned in float64."""
    return [np.einsum("ij,ij->i", b, b).astype(np.float64) for b in blocks]


def modality_sq_dists(
    block: np.ndarray,
    center: np.ndarray,
    center_norms: np.ndarray,
    row_norms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``||z_i - c_j||^2 / d_m`` for one modality by GEMM, and its error-bound base.

    Returns ``(sq, norms)``, both (B, k) float64: ``sq`` clipped at 0, and
    ``norms = (||z_i||^2 + ||c_j||^2) / d_m``, which the error factor of
    :func:`error_factor` scales into a bound on ``|sq - exact|``. ``row_norms``
    may pass ``squared_norms([block])[0]`` computed beforehand (e.g. once per fit).
    """
    d_m = block.shape[1]
    if row_norms is None:
        row_norms = squared_norms([block])[0]
    norms = np.add.outer(row_norms, center_norms)
    # In place, and the same values as ``norms - 2.0 * cross``: scaling by -2 is
    # exact and IEEE addition is commutative.
    sq = (block @ center.T).astype(np.float64)
    sq *= -2.0
    sq += norms
    np.maximum(sq, 0.0, out=sq)
    sq /= d_m
    norms /= d_m
    return sq, norms


def partial_sq_dists(
    blocks: PackedBlocks,
    centers: Sequence[np.ndarray],
    center_mask: np.ndarray,
    center_norms: Sequence[np.ndarray],
    rounding: float,
    row_norms: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Squared partial distances from rows to centres via GEMM, with an error bound.

    Prior validation is assumed: ``blocks`` holds the z-scored rows (packed or
    zero-filled), ``centers[m]`` is (k, d_m) with zeros where the centre lacks
    ``m``. One GEMM per modality covers the rows of ``blocks.values[m]`` only.
    ``row_norms``, when given, is ``squared_norms(blocks.values)``.

    Returns
    -------
    sq : ndarray of shape (B, k), float64
        Squared partial distances; +inf where a row and a centre share nothing.
    err : ndarray of shape (B, k), float64
        Bound on ``|sq - exact|``; 0 where ``sq`` is +inf.
    """
    cross, norms = _cross_products(blocks, centers, center_mask, row_norms)
    shape = (blocks.n_rows, center_mask.shape[0])
    sq, err = np.empty(shape), np.empty(shape)
    partial_sq_dists_from_cross(cross, norms, blocks.at,
                                *_kernel_centers(blocks, center_mask, center_norms),
                                float(rounding), sq, err)
    return sq, err


def partial_nearest(
    blocks: PackedBlocks,
    centers: Sequence[np.ndarray],
    center_mask: np.ndarray,
    center_norms: Sequence[np.ndarray],
    rounding: float,
    exact_rows: Callable[[np.ndarray], np.ndarray],
    exact_pairs: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    row_norms: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``exact_argmin(*partial_sq_dists(...), exact_rows, exact_pairs)``, the same results.

    The distances of a row go from the GEMM products straight to its bounded
    argmin (:func:`ul4m4._kernels.nearest_from_cross`), so the (B, k) matrices are
    never written; only the rows the bounds leave in doubt get theirs, for the
    exact recheck.
    """
    cross, norms = _cross_products(blocks, centers, center_mask, row_norms)
    kernel_centers = _kernel_centers(blocks, center_mask, center_norms)
    n_rows = blocks.n_rows
    labels, best = np.empty(n_rows, dtype=np.int64), np.empty(n_rows)
    flags = np.empty(n_rows, dtype=np.uint8)
    nearest_from_cross(cross, norms, blocks.at, *kernel_centers, float(rounding), labels, best,
                       flags)
    ambiguous = np.flatnonzero(flags)
    if ambiguous.size:
        k = center_mask.shape[0]
        sq, err = np.empty((ambiguous.size, k)), np.empty((ambiguous.size, k))
        partial_sq_dists_from_cross(cross, norms, np.ascontiguousarray(blocks.at[ambiguous]),
                                    *kernel_centers, float(rounding), sq, err)
        _recheck(labels, best, ambiguous, sq, err, exact_rows, exact_pairs)
    return labels, best


def packed_exact_checks(blocks: PackedBlocks, center_blocks: Sequence[np.ndarray],
                        center_mask: np.ndarray):
    """``(exact_rows, exact_pairs)`` of :func:`exact_argmin` for host rows in ``blocks``.

    The float64 rechecks of :func:`exact_partial_sq_dists` (whole rows) and
    :func:`exact_partial_sq_pairs` (the pairs the bounds leave in doubt).
    """
    mask = blocks.mask

    def exact_rows(rows: np.ndarray) -> np.ndarray:
        return exact_partial_sq_dists(blocks.take(rows), mask[rows], center_blocks, center_mask)

    def exact_pairs(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        unique, slot = np.unique(rows, return_inverse=True)
        return exact_partial_sq_pairs(blocks.take(unique), mask[unique], center_blocks,
                                      center_mask, slot, cols)

    return exact_rows, exact_pairs


def nearest_rows(
    blocks: PackedBlocks,
    center_blocks: Sequence[np.ndarray],
    center_mask: np.ndarray,
    center_norms: Sequence[np.ndarray],
    rounding: float,
    *,
    distances: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Exact nearest-centre labels of host rows, and their float64 squared distances.

    The labels of :func:`partial_nearest` (rechecked in float64 where the bound
    leaves them in doubt); the distances (None without ``distances``) are
    :func:`assigned_sq_dists`, row by row, so they do not depend on which rows
    come together. Drivers that work on gathered rows (mini-batch steps, the
    completion's nearest-centre shortcut) call this, whatever the engine.
    """
    labels, _ = partial_nearest(blocks, center_blocks, center_mask, center_norms, rounding,
                                *packed_exact_checks(blocks, center_blocks, center_mask))
    if not distances:
        return labels, None
    return labels, assigned_sq_dists(blocks, labels, center_blocks, center_mask)


def assigned_sq_dists(
    blocks: PackedBlocks,
    labels: np.ndarray,
    centers: Sequence[np.ndarray],
    center_mask: np.ndarray,
    terms: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """Squared partial distance of every row to its own centre ``labels[i]``, in float64.

    Each shared modality's squared difference is summed by
    :func:`ul4m4._kernels.sq_to_assigned` in a fixed order, divided by ``d_m``,
    and the modalities are averaged in order; +inf where nothing is shared. The
    value of a row depends on the row and its centre only, not on the chunk or
    the GEMM, so sums of these distances (the inertia) do not depend on the
    chunking or the number of threads. ``terms[m]``, when given, holds those
    squared differences already (as :func:`ul4m4._kernels.add_rows` computes
    them: one per row of ``blocks.values[m]``).
    """
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    num = np.zeros(blocks.n_rows)
    count = np.zeros(blocks.n_rows)
    for m, (value, index) in enumerate(zip(blocks.values, blocks.index, strict=True)):
        rows = np.flatnonzero(blocks.mask[:, m]) if index is None else index
        if not rows.size:
            continue
        own = labels[rows]
        known = None if terms is None else terms[m]
        if known is not None:
            sq = known if index is not None else known[rows]
        else:
            part = value if index is not None else value[rows]
            dtype = np.result_type(part, centers[m])  # both widen exactly
            sq = np.empty(rows.size)
            sq_to_assigned(np.ascontiguousarray(part, dtype=dtype), own,
                           np.ascontiguousarray(centers[m], dtype=dtype), sq)
        shared = center_mask[own, m]
        num[rows] += np.where(shared, sq / value.shape[1], 0.0)
        count[rows] += shared
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, num / count, np.inf)


def _cross_products(blocks: PackedBlocks, centers: Sequence[np.ndarray],
                    center_mask: np.ndarray, row_norms: Sequence[np.ndarray] | None):
    """The per-modality GEMMs stacked as the kernels read them: (R, k) and the (R,) norms."""
    k = center_mask.shape[0]
    dtype = np.result_type(*blocks.values, *centers)
    sizes = np.cumsum([0] + [v.shape[0] for v in blocks.values])
    cross = _scratch((sizes[-1], k), dtype)
    norms = np.zeros(sizes[-1])
    for m, (value, center) in enumerate(zip(blocks.values, centers, strict=True)):
        if not (blocks.mask[:, m].any() and center_mask[:, m].any()):
            continue  # nothing shared: the kernel never reads these
        part = slice(sizes[m], sizes[m + 1])
        np.matmul(value, center.T, out=cross[part])
        norms[part] = squared_norms([value])[0] if row_norms is None else row_norms[m]
    return cross, norms


def _scratch(shape: tuple[int, int], dtype: np.dtype, use: str = "cross") -> np.ndarray:
    """An uninitialised array in this thread's workspace for ``use``, valid until its next call.

    The GEMM products of a chunk are a few MB: allocating them afresh for every
    chunk of every pass costs page faults (and a system call per chunk where the
    allocator returns large blocks to the system at once, as Dask workers have it).
    """
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if not hasattr(_WORKSPACE, "buffers"):
        _WORKSPACE.buffers = {}
    buffers = _WORKSPACE.buffers
    buffer = buffers.get(use)
    if buffer is None or buffer.size < size:
        buffer = buffers[use] = np.empty(size, dtype=np.uint8)
    return buffer[:size].view(dtype).reshape(shape)


def _kernel_centers(blocks: PackedBlocks, center_mask: np.ndarray,
                    center_norms: Sequence[np.ndarray]):
    return (np.ascontiguousarray(np.vstack(center_norms), dtype=np.float64),
            np.ascontiguousarray(center_mask, dtype=bool).view(np.uint8),
            1.0 / np.array(blocks.dims, dtype=np.float64))


def pairwise_exact_sq(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``sum((a_i - b_j)^2) / d`` for every pair, by direct differences in float64.

    Blocked so the (r, k, d) temporary stays small. The per-pair value is the
    same as ``np.sum((a[i] - b[j]) ** 2) / d`` on float64 vectors. Without ``b``,
    the distances of ``a`` to itself: ``(x - y)^2`` and ``(y - x)^2`` are the same
    bits, so only the upper triangle is computed and mirrored.
    """
    a = np.asarray(a, dtype=np.float64)
    symmetric = b is None
    b = a if symmetric else np.asarray(b, dtype=np.float64)
    d = a.shape[1]
    out = np.empty((a.shape[0], b.shape[0]))
    step = max(1, _EXACT_BLOCK_ELEMENTS // max(1, b.shape[0] * d))
    if symmetric:
        step = min(step, max(8, a.shape[0] // 8))  # blocks thin enough to skip the lower half
    for start in range(0, a.shape[0], step):
        stop = min(start + step, a.shape[0])
        first = start if symmetric else 0
        diff = a[start:stop, None, :] - b[None, first:, :]
        np.multiply(diff, diff, out=diff)
        out[start:stop, first:] = np.sum(diff, axis=-1) / d
        if symmetric:
            out[stop:, start:stop] = out[start:stop, stop:].T
    return out


def exact_partial_sq_dists(
    blocks: Sequence[np.ndarray],
    mask: np.ndarray,
    centers: Sequence[np.ndarray],
    center_mask: np.ndarray,
) -> np.ndarray:
    """The definition of the squared partial distance, literally, in float64.

    Shared modalities are accumulated in modality order, so the value is the one a
    plain loop ``total += sum((z - c)**2) / d_m`` followed by ``total / count``
    produces.
    """
    return _mean_over_shared(blocks, mask, centers, center_mask, pairwise_exact_sq)[0]


def fixed_order_partial_sq_dists(
    blocks: Sequence[np.ndarray],
    mask: np.ndarray,
    centers: Sequence[np.ndarray],
    center_mask: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Squared partial distances whose value for a row depends on that row alone.

    The GEMM of :func:`partial_sq_dists` may sum a row's products in another order
    in another batch (BLAS picks its kernels by shape), which the soft completion,
    a smooth function of every distance, would pass on to its output. Here each
    (row, centre) term is the compiled fixed-order float64 sum of squared
    differences (:func:`ul4m4._kernels.sq_to_assigned`), divided by ``d_m``, and
    the modalities are averaged in order, as in :func:`exact_partial_sq_dists`.
    ``blocks`` are zero-filled (B, d_m) host arrays.

    Returns
    -------
    sq : ndarray of shape (B, k), float64
        +inf where a row and a centre share nothing.
    err : ndarray of shape (B, k), float64
        Bound on ``|sq - exact|`` (the float64 :func:`error_factor` times ``sq``:
        every term is a non-negative sum of squares); 0 where ``sq`` is +inf.
    """
    sq, shared = _mean_over_shared(blocks, mask, centers, center_mask, _fixed_order_terms)
    factor = error_factor([b.shape[1] for b in blocks], np.dtype(np.float64))
    return sq, np.where(shared, factor * sq, 0.0)


def _mean_over_shared(blocks, mask, centers, center_mask, terms_of
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per (row, centre), the mean over shared modalities of ``terms_of(rows, centres)``
    (a (r, c) array of per-dimension mean squares), added in modality order, +inf where
    nothing is shared; and where something is. Each term is computed on the rows and centres that carry the
    modality only, and a pair's term depends on that pair alone."""
    n_rows, k = mask.shape[0], center_mask.shape[0]
    num = np.zeros((n_rows, k))
    count = np.zeros((n_rows, k))
    for m, (block, center) in enumerate(zip(blocks, centers, strict=True)):
        rows, cols = np.flatnonzero(mask[:, m]), np.flatnonzero(center_mask[:, m])
        if not (rows.size and cols.size):
            continue
        terms = np.zeros((n_rows, k))
        terms[np.ix_(rows, cols)] = terms_of(block[rows], center[cols])
        shared = np.outer(mask[:, m], center_mask[:, m])
        num += np.where(shared, terms, 0.0)
        count += shared
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, num / count, np.inf), count > 0


def _fixed_order_terms(block: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Mean squares by the compiled fixed-order kernel (:func:`_fixed_order_sq`)."""
    dtype = np.result_type(block, center)  # both widen exactly
    return _fixed_order_sq(np.ascontiguousarray(block, dtype=dtype),
                           np.ascontiguousarray(center, dtype=dtype)) / block.shape[1]


def _fixed_order_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(r, c) sums ``sum_t (a_i - b_j)^2`` by the fixed-order kernel, one call per row of
    the shorter side (``(x - y)^2`` and ``(y - x)^2`` are the same bits)."""
    out = np.empty((a.shape[0], b.shape[0]))
    if a.shape[0] <= b.shape[0]:
        first = np.zeros(b.shape[0], dtype=np.int64)
        for i in range(a.shape[0]):
            sq_to_assigned(b, first, a[i : i + 1], out[i])
    else:
        column = np.empty(a.shape[0])
        for j in range(b.shape[0]):
            sq_to_assigned(a, np.full(a.shape[0], j, dtype=np.int64), b, column)
            out[:, j] = column
    return out


def exact_partial_sq_pairs(
    blocks: Sequence[np.ndarray],
    mask: np.ndarray,
    centers: Sequence[np.ndarray],
    center_mask: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
) -> np.ndarray:
    """``exact_partial_sq_dists(blocks, mask, centers, center_mask)[rows, cols]``, pair by pair.

    The same values, computed for the listed (row, centre) pairs only: each pair's
    per-modality term is the same float64 difference and length-``d_m`` sum.
    """
    num = np.zeros(rows.size)
    count = np.zeros(rows.size)
    for m, (block, center) in enumerate(zip(blocks, centers, strict=True)):
        shared = mask[rows, m] & center_mask[cols, m]
        if not shared.any():
            continue
        num += np.where(shared, _paired_exact_sq(block, center, rows, cols), 0.0)
        count += shared
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, num / count, np.inf)


def _paired_exact_sq(block: np.ndarray, center: np.ndarray, rows, cols) -> np.ndarray:
    d = block.shape[1]
    out = np.empty(rows.size)
    step = max(1, min(rows.size, _RECHECK_PAIR_ELEMENTS // max(1, d)))
    # The same float64 differences and row sums as ``(b - c).astype(...)`` temporaries
    # would give, in reused buffers: rechecks run on every pass.
    rows_of, centres_of = (_scratch((step, d), a.dtype, use) for a, use in
                           ((block, "pair rows"), (center, "pair centres")))
    diff = _scratch((step, d), np.float64, "pair differences")
    for start in range(0, rows.size, step):
        n = min(step, rows.size - start)
        part = slice(start, start + n)
        # "clip" (the indices are valid): "raise" would buffer the output again.
        np.take(block, rows[part], axis=0, out=rows_of[:n], mode="clip")
        np.take(center, cols[part], axis=0, out=centres_of[:n], mode="clip")
        np.subtract(rows_of[:n], centres_of[:n], out=diff[:n], dtype=np.float64)
        np.multiply(diff[:n], diff[:n], out=diff[:n])
        np.sum(diff[:n], axis=-1, out=out[part])
        out[part] /= d
    return out


def exact_argmin(
    sq: np.ndarray,
    err: np.ndarray,
    exact_rows: Callable[[np.ndarray], np.ndarray],
    exact_pairs: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise argmin (ties to the lowest index) that equals the exact argmin.

    A row whose smallest entry cannot be separated from another one by the error
    bounds is recomputed exactly by ``exact_rows(row_indices)``, or, when
    ``exact_pairs(row_indices, centre_indices)`` is given, only for the centres
    that the bounds leave in contention: every other centre is provably farther
    than the row's best, so the argmin and its value are the same.

    Returns
    -------
    labels : ndarray of shape (B,), int64
    best : ndarray of shape (B,), float64
        The smallest squared distance of each row (exact on rechecked rows).
    """
    n_rows = sq.shape[0]
    labels = np.empty(n_rows, dtype=np.int64)
    best = np.empty(n_rows)
    flags = np.empty(n_rows, dtype=np.uint8)
    bounded_argmin(np.ascontiguousarray(sq, dtype=np.float64),
                   np.ascontiguousarray(err, dtype=np.float64), labels, best, flags)
    ambiguous = np.flatnonzero(flags)
    if ambiguous.size:
        _recheck(labels, best, ambiguous, sq[ambiguous], err[ambiguous], exact_rows,
                 exact_pairs)
    return labels, best


def _recheck(labels: np.ndarray, best: np.ndarray, ambiguous: np.ndarray, sq: np.ndarray,
             err: np.ndarray, exact_rows: Callable, exact_pairs: Callable | None) -> None:
    """Set the labels and best values of the ``ambiguous`` rows (``sq``, ``err``: theirs) exactly."""
    if exact_pairs is None:
        exact = exact_rows(ambiguous)
    else:
        upper = best[ambiguous] + err[np.arange(ambiguous.size), labels[ambiguous]]
        candidates = sq - err <= upper[:, None]
        pair_rows, pair_cols = np.nonzero(candidates)
        exact = np.full((ambiguous.size, sq.shape[1]), np.inf)
        exact[pair_rows, pair_cols] = exact_pairs(ambiguous[pair_rows], pair_cols)
    labels[ambiguous] = np.argmin(exact, axis=1)
    best[ambiguous] = exact[np.arange(ambiguous.size), labels[ambiguous]]


def exact_sq_to_assigned(
    blocks: Sequence[np.ndarray],
    mask: np.ndarray,
    centers: Sequence[np.ndarray],
    center_mask: np.ndarray,
    own: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact squared partial distance of every row to its own centre ``own[i]`` (float64).

    Also returns the scale of each distance, ``(||z||^2 + ||c||^2) / d_m``
    averaged over the shared modalities, to tell rounding noise from distance.
    Rows sharing nothing with their centre get ``inf`` and scale 0.
    """
    num = np.zeros(own.size)
    size = np.zeros(own.size)
    count = np.zeros(own.size)
    for m, block in enumerate(blocks):
        shared = mask[:, m] & center_mask[own, m]
        z = block.astype(np.float64)
        c = centers[m][own].astype(np.float64)
        d_m = block.shape[1]
        num += np.where(shared, np.sum((z - c) ** 2, axis=1) / d_m, 0.0)
        size += np.where(shared, (np.sum(z * z, axis=1) + np.sum(c * c, axis=1)) / d_m, 0.0)
        count += shared
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.where(count > 0, num / count, np.inf),
                np.where(count > 0, size / count, 0.0))


def nearest_donors(
    blocks: Sequence[np.ndarray],
    mask: np.ndarray,
    ref_blocks: Sequence[np.ndarray],
    ref_mask: np.ndarray,
    chunk_rows: int,
) -> np.ndarray:
    """For each row and each modality it lacks, the nearest reference row that observes it.

    The distance is the partial-modality distance over the modalities both rows
    observe. Each chunk of ``chunk_rows`` rows costs one GEMM per modality against all
    references (:func:`partial_sq_dists`); near-ties that float64 rounding could swap
    are recomputed exactly (:func:`exact_argmin`), so a donor is the exact argmin, ties
    to the lowest reference index.

    Parameters
    ----------
    blocks : sequence of ndarray of shape (n, d_m), float64
        z-scored rows, zeros where a row lacks the modality.
    mask : ndarray of bool, shape (n, M)
    ref_blocks : sequence of ndarray of shape (n_ref, d_m), float64
        z-scored reference rows, zeros where a reference lacks the modality.
    ref_mask : ndarray of bool, shape (n_ref, M)
    chunk_rows : int
        Rows compared with all references at once (three (rows, n_ref) float64
        matrices live at a time).

    Returns
    -------
    donors : ndarray of int64, shape (n, M)
        Reference index per row and lacking modality; -1 where the row observes the
        modality or where no reference observing it shares a modality with the row.
    """
    rounding = error_factor([b.shape[1] for b in blocks], np.dtype(np.float64))
    ref_norms = squared_norms(ref_blocks)
    n = mask.shape[0]
    donors = np.full(mask.shape, -1, dtype=np.int64)
    for start in range(0, n, max(1, int(chunk_rows))):
        rows = slice(start, min(start + max(1, int(chunk_rows)), n))
        sub_mask = mask[rows]
        if sub_mask.all():
            continue
        sub_blocks = [b[rows] for b in blocks]
        sq, err = partial_sq_dists(
            PackedBlocks.of_full(sub_blocks, sub_mask), ref_blocks, ref_mask, ref_norms, rounding
        )
        for m in range(mask.shape[1]):
            need = np.flatnonzero(~sub_mask[:, m])
            if need.size:
                donors[start + need, m] = _donors_of(
                    [b[need] for b in sub_blocks], sub_mask[need], sq[need], err[need],
                    ref_blocks, ref_mask, m,
                )
    return donors


def _donors_of(blocks: list[np.ndarray], mask: np.ndarray, sq: np.ndarray, err: np.ndarray,
               ref_blocks: Sequence[np.ndarray], ref_mask: np.ndarray, m: int) -> np.ndarray:
    """Nearest reference having modality ``m`` for each row; -1 where none shares any."""
    lacks = ~ref_mask[:, m]
    sq[:, lacks] = np.inf
    err[:, lacks] = 0.0

    def exact(rows: np.ndarray) -> np.ndarray:
        out = exact_partial_sq_dists([b[rows] for b in blocks], mask[rows], ref_blocks, ref_mask)
        out[:, lacks] = np.inf
        return out

    labels, best = exact_argmin(sq, err, exact)
    labels[~np.isfinite(best)] = -1
    return labels
