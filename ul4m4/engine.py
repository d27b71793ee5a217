"""Tier 3: the engine protocol, and the row-chunk machinery of in-process engines.

The drivers of :mod:`ul4m4.cluster`, :mod:`ul4m4.minibatch`, :mod:`ul4m4.complete`
and :mod:`ul4m4.selection` hold every decision of the method (seeding draws,
convergence, reseeding, completion choices, exact rechecks). They reach the data
only through an *engine*, an object with the methods of :class:`Engine`. NumPy
(:class:`ul4m4.backends.NumpyEngine`), PyTorch (``backends/_torch.py``) and Dask
(``backends/dask.py``) implement it; a new backend implements it and nothing else.

Contract, common to every method
--------------------------------
* A *view* is what :meth:`Engine.view` returns: the validated data seen through
  fitted per-modality statistics, ``z = (fl(x) - fl(mu)) / fl(sigma)`` in the
  working dtype, with zeros on missing rows. The drivers only pass it back to
  the engine and read ``view.n_samples``, ``view.mask`` (the (n, M) host
  availability mask), ``view.dtype`` and ``view.chunk_rows``.
* Everything returned is on the host, as NumPy arrays, except the ``labels``
  handle of :class:`EStep`, which :meth:`Engine.fetch` turns into one.
* Labels are the exact argmin of the partial distance (ties to the lowest
  index): entries the GEMM rounding bound cannot separate are recomputed in
  float64 by :mod:`ul4m4.distance`. Member sums are float64, added in row order
  onto the running total, so they do not depend on how rows are chunked.
* Squared distances are those of :func:`ul4m4.distance.partial_sq_dists`;
  ``gamma`` is :meth:`Engine.error_factor` of the data. Those of the soft
  completion (:meth:`Engine.soft_distances`) are the fixed-order float64 ones of
  :func:`ul4m4.distance.fixed_order_partial_sq_dists`, so that a row's soft fill
  does not depend on the other rows of its batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .centers import Centers
from .distance import (
    error_factor,
    exact_argmin,
    exact_partial_sq_dists,
    exact_sq_to_assigned,
    fixed_order_partial_sq_dists,
)
from .rowsums import RowOrderSums
from .statistics import check_magnitudes, modality_moments
from .validation import Multimodal, check_multimodal
from .view import Standardized

__all__ = ["Candidates", "ChunkedEngine", "EStep", "Engine"]


@dataclass
class EStep:
    """The result of one pass of :meth:`Engine.e_step`.

    Attributes
    ----------
    labels : engine handle
        The (n,) int64 exact nearest-centre labels; :meth:`Engine.fetch` gives
        the array (in-process engines return the array itself).
    inertia : float
        Sum of the squared distances of the rows to their centres.
    changed : int or None
        Labels that differ from the ``previous`` labels passed in (None without).
    best : ndarray of shape (n,) or None
        Squared distance of each row to its centre (None where the engine keeps
        per-row values remote). The NumPy engine (and so Dask) computes it per
        row in float64 (:func:`ul4m4.distance.assigned_sq_dists`), so it does not
        depend on the chunking; torch gives its GEMM's value.
    sums : list of ndarray (k, d_m) or None
        Float64 member sums per modality (only with ``update_centers=True``).
    counts : ndarray of shape (k, M) or None
        Members observing each modality.
    members : ndarray of shape (k,) or None
        Members of each centre.
    """

    labels: Any
    inertia: float
    changed: int | None
    best: np.ndarray | None = None
    sums: list[np.ndarray] | None = None
    counts: np.ndarray | None = None
    members: np.ndarray | None = None


@dataclass
class Candidates:
    """Rows to reseed empty clusters from: farthest from their centres first.

    ``distances`` are exact float64 squared distances; rows of equal distance
    come in increasing row order, so a stable sort by ``-distances`` ranks them
    as one pass over all rows would.
    """

    distances: np.ndarray
    blocks: list[np.ndarray]
    mask: np.ndarray

    @classmethod
    def concatenate(cls, parts: Sequence[Candidates]) -> Candidates:
        blocks = [np.concatenate([p.blocks[m] for p in parts]) for m in range(len(parts[0].blocks))]
        return cls(np.concatenate([p.distances for p in parts]), blocks,
                   np.concatenate([p.mask for p in parts]))


class Engine(Protocol):
    """What a compute backend implements (see the module docstring for the contract)."""

    #: Short name, e.g. ``"numpy"``.
    name: str

    @property
    def host(self) -> Engine:
        """The engine for data gathered into this process (itself for in-process engines)."""

    def error_factor(self, dims: Sequence[int], dtype: np.dtype) -> float:
        """Relative rounding factor of this engine's GEMM distances (see :mod:`ul4m4.distance`)."""

    def check_input(self, X: Any, *, names: Sequence[str] | None = None, dims: Any = None,
                    require_observed: bool = True, n_threads: int = 1,
                    partial: str = "raise") -> Multimodal:
        """Data access and the NaN/inf scan: the validated data set, with its (n, M) mask.

        ``partial`` is the estimator's option for partly NaN rows (see
        :func:`ul4m4.validation.scan_block`)."""

    def apply(self, view: Any, fn: Callable[[Any, Any], Any]) -> Any:
        """Map over row blocks: ``fn(block_view, block_engine)`` on the whole data, joined."""

    def statistics(self, data: Multimodal, chunk_rows: int, n_threads: int
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Reduction: per-modality float64 mean and unbiased std over observed rows.

        The raw std: the estimator turns it into scales by the one rule of
        :func:`ul4m4.statistics.unit_scales`, whatever the engine."""

    def check_magnitudes(self, data: Multimodal, means: Sequence[np.ndarray],
                         scales: Sequence[np.ndarray], dtype: np.dtype, chunk_rows: int,
                         n_threads: int) -> None:
        """Raise where z-scoring ``data`` in ``dtype`` would overflow."""

    def view(self, data: Multimodal, mean: Sequence[np.ndarray], scale: Sequence[np.ndarray],
             dtype: np.dtype, chunk_rows: int, n_threads: int = 1, cache_bytes: int = 0) -> Any:
        """Standardise: the row-chunked z-scored view of ``data`` the other methods read."""

    def take(self, view: Any, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Data access: z-scored host blocks and mask of the given (sorted) rows."""

    def fetch(self, labels: Any) -> np.ndarray:
        """The host array behind a labels handle of :class:`EStep`."""

    def seed_sample_rows(self, view: Any, k: int) -> int | None:
        """Rows k-means++ should be seeded on (gathered), or None to seed on ``view`` itself."""

    def e_step(self, view: Any, centers: Centers, gamma: float, *, update_centers: bool,
               previous: Any = None) -> EStep:
        """One pass: exact labels, inertia, and with ``update_centers`` the member sums."""

    def seed_distances(self, view: Any, seed: Centers, gamma: float) -> np.ndarray:
        """Partial distances: (n,) squared distances to one centre, exactly 0 for its copies."""

    def farthest(self, view: Any, centers: Centers, labels: Any, n: int) -> Candidates:
        """Reduction: up to ``n`` rows per row block farthest from their own centres."""

    def assign_rows(self, view: Any, rows: np.ndarray, centers: Centers, gamma: float
                    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
        """Labels and squared distances of some rows, with their z-scored host blocks and mask."""

    def candidate_scores(self, view: Any, rows: np.ndarray, terms: Any, gamma: float
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Candidate scores of the greedy completion for rows of one pattern, and their bounds."""

    def soft_distances(self, view: Any, centers: Centers, gamma: float
                       ) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray]]:
        """``(rows, sq, err, mask)`` per chunk in row order, for the soft weights."""


class ChunkedEngine:
    """The passes of :class:`Engine`, written once over per-chunk kernels.

    In-process engines subclass this and supply the kernels: the native form of
    centres and row blocks, the GEMM distances of a chunk, the member sums and
    the candidate-score tensor. Every loop over chunks, every exact recheck and
    every reduction is here, so NumPy and torch share them.
    """

    name = "chunked"

    @property
    def host(self) -> ChunkedEngine:
        return self

    def error_factor(self, dims: Sequence[int], dtype: np.dtype) -> float:
        return error_factor(dims, dtype)

    def check_input(self, X: Any, *, names: Sequence[str] | None = None,
                    dims: Any = None, require_observed: bool = True,
                    n_threads: int = 1, partial: str = "raise") -> Multimodal:
        return check_multimodal(X, names=names, dims=dims, require_observed=require_observed,
                                n_threads=n_threads, partial=partial)

    def apply(self, view: Any, fn: Callable[[Any, Any], Any]) -> Any:
        return fn(view, self)

    def statistics(self, data: Multimodal, chunk_rows: int, n_threads: int):
        return modality_moments(data, chunk_rows, n_threads)

    def check_magnitudes(self, data: Multimodal, means, scales, dtype: np.dtype,
                         chunk_rows: int, n_threads: int) -> None:
        check_magnitudes(data, means, scales, dtype, chunk_rows, n_threads)

    def fetch(self, labels: Any) -> np.ndarray:
        return np.asarray(labels)

    def seed_sample_rows(self, view: Any, k: int) -> int | None:
        return None

    def take(self, view: Standardized, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        return view.rows(rows)

    # ------------------------------------------------------------ kernels
    def native_centers(self, centers: Centers, view: Any) -> Any:
        """Centres in the form :meth:`sq_dists` reads."""
        raise NotImplementedError

    def sq_dists(self, view: Any, rows: slice | None, blocks: Any, mask: np.ndarray,
                 native: Any, gamma: float) -> tuple[np.ndarray, np.ndarray]:
        """Host float64 (B, k) squared partial distances and their rounding bounds."""
        raise NotImplementedError

    def host_rows(self, blocks: Any, rows: np.ndarray) -> list[np.ndarray]:
        """Host copies of some rows of native blocks, for the float64 recheck."""
        raise NotImplementedError

    def host_blocks(self, blocks: Any) -> list[np.ndarray]:
        """Host arrays of whole native blocks."""
        raise NotImplementedError

    def native_rows(self, view: Any, rows: np.ndarray) -> Any:
        """Native z-scored blocks of some rows."""
        raise NotImplementedError

    def map_chunks(self, view: Any, fn: Callable) -> Iterator[tuple[slice, Any]]:
        """``(rows, fn(rows, native_blocks, mask))`` for every chunk, in row order."""
        raise NotImplementedError

    def member_sums(self, view: Any, centers: Centers) -> RowOrderSums:
        """A row-order accumulator of member sums fed with native blocks.

        Its ``best_of(prepared)`` gives the rows' distances to their centres once a
        chunk is added, or None to keep :meth:`nearest`'s.
        """
        raise NotImplementedError

    def observed_terms(self, blocks: Any, native: Any, pattern: np.ndarray) -> tuple[Any, Any]:
        """The observed-part numerator P (B, k) of the greedy scores and its bound base."""
        raise NotImplementedError

    def scores_from_terms(self, p: Any, p_err: Any, terms: Any, view: Any
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Host candidate scores and bounds from P (see :class:`ul4m4.complete.PatternTerms`)."""
        raise NotImplementedError

    def row_distances(self, blocks: Any, labels: np.ndarray, centers: Centers,
                      best: np.ndarray) -> np.ndarray:
        """Each row's squared distance to its centre, as ``EStep.best`` reports it.

        ``best`` is :meth:`nearest`'s value; an engine may recompute it in a way
        that does not depend on the chunking (the NumPy engine does).
        """
        return best

    def kernel_threads(self, view: Any) -> contextlib.AbstractContextManager:
        """Context of a pass (e.g. one intra-op thread per chunk worker)."""
        return contextlib.nullcontext()

    def exact_checks(self, blocks: Any, mask: np.ndarray, centers: Centers):
        """``(exact_rows, exact_pairs)`` for :func:`ul4m4.distance.exact_argmin`."""

        def exact_rows(rows: np.ndarray) -> np.ndarray:
            return exact_partial_sq_dists(self.host_rows(blocks, rows), mask[rows],
                                          centers.blocks, centers.mask)

        return exact_rows, None

    # ------------------------------------------------------------- passes
    def nearest(self, view: Any, rows: slice | None, blocks: Any, mask: np.ndarray,
                native: Any, centers: Centers, gamma: float) -> tuple[np.ndarray, np.ndarray]:
        """Exact labels and squared distances of one chunk."""
        sq, err = self.sq_dists(view, rows, blocks, mask, native, gamma)
        return exact_argmin(sq, err, *self.exact_checks(blocks, mask, centers))

    def e_step(self, view: Any, centers: Centers, gamma: float, *, update_centers: bool,
               previous: Any = None) -> EStep:
        labels = np.empty(view.n_samples, dtype=np.int64)
        best = np.empty(view.n_samples)
        native = self.native_centers(centers, view)
        sums = self.member_sums(view, centers) if update_centers else None

        def chunk(rows, blocks, mask):
            if sums is None:
                labels, best = self.nearest(view, rows, blocks, mask, native, centers, gamma)
                return labels, self.row_distances(blocks, labels, centers, best)

            def compute():
                found = self.nearest(view, rows, blocks, mask, native, centers, gamma)
                prepared = sums.prepare(found[0], blocks, mask)
                return (found, prepared), prepared

            # Each worker adds its own chunk, in row order, while the chunk is in cache.
            (labels, best), prepared = sums.compute_and_add(rows, compute)
            exact = sums.best_of(prepared)
            return labels, best if exact is None else exact

        with self.kernel_threads(view):
            for rows, (chunk_labels, chunk_best) in self.map_chunks(view, chunk):
                labels[rows], best[rows] = chunk_labels, chunk_best
        changed = None if previous is None else int(np.count_nonzero(labels != previous))
        step = EStep(labels, float(best.sum()), changed, best)
        if sums is not None:
            step.sums, step.counts = sums.sums, sums.counts
            step.members = np.bincount(labels, minlength=centers.k)
        return step

    def seed_distances(self, view: Any, seed: Centers, gamma: float) -> np.ndarray:
        out = np.empty(view.n_samples)
        native = self.native_centers(seed, view)

        def to_seed(rows, blocks, mask):
            sq, err = self.sq_dists(view, rows, blocks, mask, native, gamma)
            sq = sq[:, 0]
            # A copy of the seed must be at distance exactly 0 so it is never drawn
            # again; entries the error bound cannot tell from 0 are computed exactly.
            near_zero = np.flatnonzero(np.isfinite(sq) & (sq - err[:, 0] <= 0))
            if near_zero.size:
                sq[near_zero] = self.exact_checks(blocks, mask, seed)[0](near_zero)[:, 0]
            return sq

        with self.kernel_threads(view):
            for rows, sq in self.map_chunks(view, to_seed):
                out[rows] = sq
        return out

    def farthest(self, view: Standardized, centers: Centers, labels: Any, n: int) -> Candidates:
        labels = self.fetch(labels)
        best = np.empty(view.n_samples)
        scale = np.empty(view.n_samples)
        for rows, blocks, mask in view.chunks():
            best[rows], scale[rows] = exact_sq_to_assigned(
                blocks.full(), mask, centers.blocks, centers.mask, labels[rows]
            )
        # A sample within rounding noise of its centre (a mean of identical points
        # need not be bit-identical to them) is never a candidate.
        noise = np.sqrt(np.finfo(view.dtype).eps) * scale
        order = np.argsort(-best, kind="stable")
        chosen = np.sort(order[best[order] > noise[order]][:n])
        blocks, mask = view.rows(chosen)
        return Candidates(best[chosen], blocks, mask)

    def assign_rows(self, view: Any, rows: np.ndarray, centers: Centers, gamma: float):
        blocks = self.native_rows(view, rows)
        mask = view.mask[rows]
        labels, best = self.nearest(view, None, blocks, mask,
                                    self.native_centers(centers, view), centers, gamma)
        return (labels, self.row_distances(blocks, labels, centers, best),
                self.host_blocks(blocks), mask)

    def candidate_scores(self, view: Any, rows: np.ndarray, terms: Any, gamma: float):
        blocks = self.native_rows(view, rows)
        p, bound = self.observed_terms(blocks, self.native_centers(terms.plan.centers, view),
                                       terms.pattern)
        return self.scores_from_terms(p, gamma * bound, terms, view)

    def soft_distances(self, view: Any, centers: Centers, gamma: float):
        """Fixed-order float64 distances (:func:`ul4m4.distance.fixed_order_partial_sq_dists`)
        on the host, not the GEMM's: a row's soft fill then never depends on the rows
        beside it, i.e. on the batch it came in, nor on the engine."""

        def distances(rows, blocks, mask):
            host = self.host_blocks(blocks)
            return (*fixed_order_partial_sq_dists(host, mask, centers.blocks, centers.mask),
                    mask)

        with self.kernel_threads(view):
            for rows, (sq, err, mask) in self.map_chunks(view, distances):
                yield rows, sq, err, mask
