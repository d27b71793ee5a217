"""Tier 3: the engine protocol, the view the drivers read, and the row-chunk machinery.

The drivers of :mod:`ul4m4.cluster`, :mod:`ul4m4.minibatch`, :mod:`ul4m4.complete`
and :mod:`ul4m4.selection` hold every decision of the method (seeding draws,
convergence, reseeding, completion choices, exact rechecks). They reach the data
only through an *engine*, an object with the methods of :class:`Engine`: the
passes over all rows (the E-step with its member sums, distances to a seed,
reseeding candidates), gathering rows (``take``), maps over row blocks (``apply``
over the view, ``reduce_blocks`` over the raw data, which the input scan, the
statistics and the overflow check are written over) and the view constructor.
Reading the caller's input is not the engine's: the backend's registry line
names its reader (:attr:`ul4m4.parameters.Backend.reader`) and
:func:`ul4m4.backends.check_input` runs it, then the one NaN/inf scan over the
engine's ``reduce_blocks``.
NumPy (:class:`ul4m4.backends.NumpyEngine`), PyTorch (``backends/_torch.py``) and
Dask (``backends/dask/``) implement it; ``tests/_reference_engine.py`` is a plain
one written against the protocol alone.
Everything that runs on gathered rows (mini-batch steps, the completion rules,
model selection) is host code over a :class:`HostView`, the same on every engine.

Contract, common to every method
--------------------------------
* A *view* is what :meth:`Engine.view` returns: the validated data seen through
  fitted per-modality statistics, ``z = (fl(x) - fl(mu)) / fl(sigma)`` in the
  working dtype, with zeros on missing rows. The drivers pass it back to the
  engine and read only the fields of :class:`View`.
* Everything returned is on the host, as NumPy arrays, except the ``labels`` of
  :class:`EStep`, which may be a :class:`LabelsHandle` (:func:`host_labels`
  gives the array), and ``apply``'s result, which may be lazy (Dask).
* Labels are the exact argmin of the partial distance (ties to the lowest
  index): entries the GEMM rounding bound cannot separate are recomputed in
  float64 by :mod:`ul4m4.distance`. Member sums are float64, added in row order
  onto the running total, so they do not depend on how rows are chunked.
* Squared distances are those of :func:`ul4m4.distance.partial_sq_dists`;
  ``rounding`` is :func:`rounding_factor` of the engine and the data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .blocks import PackedBlocks
from .centers import Centers
from .distance import error_factor, exact_argmin, exact_partial_sq_dists, exact_sq_to_assigned
from .rowsums import RowOrderSums
from .validation import Multimodal, in_one_block
from .view import Standardized

__all__ = [
    "Candidates",
    "ChunkedEngine",
    "EStep",
    "Engine",
    "HostView",
    "LabelsHandle",
    "View",
    "host_labels",
    "local_engine",
    "rounding_factor",
]


@dataclass
class EStep:
    """The result of one pass of :meth:`Engine.e_step`.

    Attributes
    ----------
    labels : ndarray or LabelsHandle
        The (n,) int64 exact nearest-centre labels, or a handle to them where the
        engine keeps them (:func:`host_labels` gives the array).
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

    labels: np.ndarray | LabelsHandle
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


class View(Protocol):
    """What the drivers read of an engine's view (:meth:`Engine.view`); nothing else.

    The rows themselves stay where the engine keeps them (a worker, a device):
    the drivers read them only through :meth:`Engine.take`. The host view
    (:class:`ul4m4.view.Standardized`, and the torch view that extends it) and
    the Dask view (``ul4m4.backends.dask.DaskView``) implement it.

    Attributes
    ----------
    data : Multimodal
        The validated data set (names, dims, the caller's arrays, the mask).
    mean, scale : sequence of ndarray
        The per-modality float64 statistics the rows are z-scored with.
    dtype : numpy.dtype
        The working dtype of the z-scored rows.
    chunk_rows : int
        Rows per chunk of a pass (and per gathered block of the drivers).
    n_threads : int
        Worker threads of a pass in this process.
    n_samples : int
        Rows of the data set.
    mask : ndarray of shape (n_samples, n_modalities), bool
        The host availability mask.
    """

    data: Multimodal
    mean: Sequence[np.ndarray]
    scale: Sequence[np.ndarray]
    dtype: np.dtype
    chunk_rows: int
    n_threads: int

    @property
    def n_samples(self) -> int: ...

    @property
    def mask(self) -> np.ndarray: ...


class HostView(View, Protocol):
    """A :class:`View` whose rows are in this process: what the completion rules read.

    :meth:`Engine.apply` hands each row block over as one, and views of gathered
    rows (:func:`local_engine`) are ones, so completion and selection run on host
    blocks whatever the engine. :class:`ul4m4.view.Standardized` implements it.
    """

    def rows(self, rows: slice | np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """z-scored zero-filled host blocks and mask of the given rows."""

    def packed_rows(self, rows: slice | np.ndarray) -> PackedBlocks:
        """The same rows as :class:`~ul4m4.blocks.PackedBlocks` (observed rows only, or all)."""

    def map_chunks(self, fn: Callable[[slice, PackedBlocks, np.ndarray], Any]
                   ) -> Iterator[tuple[slice, Any]]:
        """``(rows, fn(rows, blocks, mask))`` for every chunk, in row order."""


class LabelsHandle(Protocol):
    """Labels an engine keeps where it computed them (e.g. on Dask workers)."""

    def fetch(self) -> np.ndarray:
        """The (n,) int64 labels, on the host."""


class Engine(Protocol):
    """What a compute backend supplies (see the module docstring for the contract).

    Besides these, an engine may name two optional attributes (see
    :func:`local_engine` and :func:`rounding_factor`).
    """

    #: Short name, e.g. ``"numpy"``.
    name: str

    def reduce_blocks(self, arrays: Sequence[Any], fn: Callable[..., Any],
                      combine: Callable[[Any, Any], Any], *aligned: np.ndarray,
                      n_threads: int = 1) -> Any:
        """Reduction over the raw data: ``fn(block_arrays, *aligned_rows, n_threads=...)``
        per row block of ``arrays``, the results combined by ``combine(left, right)``
        along the engine's tree of blocks.

        ``aligned`` are host arrays with one row per data row (the mask), cut to each
        block's rows. Data in this process are one block
        (:func:`ul4m4.validation.in_one_block`). The input scan, the statistics and
        the overflow check are written once over it
        (:func:`ul4m4.validation.check_multimodal`,
        :func:`ul4m4.statistics.modality_moments`,
        :func:`ul4m4.statistics.check_magnitudes`)."""

    def view(self, data: Multimodal, mean: Sequence[np.ndarray], scale: Sequence[np.ndarray],
             dtype: np.dtype, chunk_rows: int, n_threads: int = 1, cache_bytes: int = 0) -> View:
        """Standardise: the row-chunked z-scored view of ``data`` the other methods read."""

    def take(self, view: View, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Data access: z-scored host blocks and mask of the given (sorted) rows."""

    def apply(self, view: View, fn: Callable[[HostView, Engine], Any]) -> Any:
        """Map over row blocks: ``fn(block_view, block_engine)`` on the whole data, joined.

        ``block_view`` is a :class:`HostView`; the result may be lazy (Dask)."""

    def e_step(self, view: View, centers: Centers, rounding: float, *, update_centers: bool,
               previous: np.ndarray | LabelsHandle | None = None) -> EStep:
        """One pass: exact labels, inertia, and with ``update_centers`` the member sums."""

    def seed_distances(self, view: View, seed: Centers, rounding: float) -> np.ndarray:
        """Partial distances: (n,) squared distances to one centre, exactly 0 for its copies."""

    def farthest(self, view: View, centers: Centers, labels: np.ndarray | LabelsHandle,
                 n: int) -> Candidates:
        """Reduction: up to ``n`` rows per row block farthest from their own centres."""


def host_labels(labels: np.ndarray | LabelsHandle) -> np.ndarray:
    """The host array of ``EStep.labels`` (in-process engines return the array itself)."""
    return labels if isinstance(labels, np.ndarray) else labels.fetch()


def local_engine(engine: Engine) -> Engine:
    """The engine of rows gathered into this process (with :meth:`Engine.take`).

    An engine whose data live elsewhere names it as its ``local_engine``
    attribute (Dask: the NumPy engine); for the others it is the engine itself.
    Drivers make views of gathered rows with it (k-means++ samples, selection).
    """
    return getattr(engine, "local_engine", engine)


def rounding_factor(engine: Engine, dims: Sequence[int], dtype: np.dtype) -> float:
    """The relative rounding factor of ``engine``'s GEMM distances (the ``rounding`` of passes).

    :func:`ul4m4.distance.error_factor`, unless the engine's own
    ``rounding_factor(dims, dtype)`` widens it (torch under TF32).
    """
    own = getattr(engine, "rounding_factor", None)
    return error_factor(dims, dtype) if own is None else own(dims, dtype)


class ChunkedEngine:
    """The passes of :class:`Engine`, written once over per-chunk kernels.

    In-process engines subclass this and supply the kernels: the native form of
    centres, the GEMM distances of a chunk, the chunk map and the member sums.
    Every loop over chunks, every exact recheck and every reduction is here, so
    NumPy and torch share them.
    """

    name = "chunked"

    def apply(self, view: Any, fn: Callable[[Any, Any], Any]) -> Any:
        return fn(view, self)

    def reduce_blocks(self, arrays: Sequence[Any], fn: Callable[..., Any], combine: Callable,
                      *aligned: np.ndarray, n_threads: int = 1) -> Any:
        return in_one_block(arrays, fn, combine, *aligned, n_threads=n_threads)

    def take(self, view: Standardized, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        return view.rows(rows)

    # ------------------------------------------------------------ kernels
    def native_centers(self, centers: Centers, view: Any) -> Any:
        """Centres in the form :meth:`sq_dists` reads."""
        raise NotImplementedError

    def sq_dists(self, view: Any, rows: slice | None, blocks: Any, mask: np.ndarray,
                 native: Any, rounding: float) -> tuple[np.ndarray, np.ndarray]:
        """Host float64 (B, k) squared partial distances and their rounding bounds."""
        raise NotImplementedError

    def host_rows(self, blocks: Any, rows: np.ndarray) -> list[np.ndarray]:
        """Host copies of some rows of native blocks, for the float64 recheck."""
        raise NotImplementedError

    def map_chunks(self, view: Any, fn: Callable) -> Iterator[tuple[slice, Any]]:
        """``(rows, fn(rows, native_blocks, mask))`` for every chunk, in row order."""
        raise NotImplementedError

    def member_sums(self, view: Any, centers: Centers) -> RowOrderSums:
        """A row-order accumulator of member sums fed with native blocks.

        Its ``best_of(members)`` gives the rows' distances to their centres once a
        chunk is added, or None to keep :meth:`nearest`'s.
        """
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
                native: Any, centers: Centers, rounding: float) -> tuple[np.ndarray, np.ndarray]:
        """Exact labels and squared distances of one chunk."""
        sq, err = self.sq_dists(view, rows, blocks, mask, native, rounding)
        return exact_argmin(sq, err, *self.exact_checks(blocks, mask, centers))

    def e_step(self, view: Any, centers: Centers, rounding: float, *, update_centers: bool,
               previous: Any = None) -> EStep:
        labels = np.empty(view.n_samples, dtype=np.int64)
        best = np.empty(view.n_samples)
        native = self.native_centers(centers, view)
        sums = self.member_sums(view, centers) if update_centers else None

        def chunk(rows, blocks, mask):
            if sums is None:
                labels, best = self.nearest(view, rows, blocks, mask, native, centers, rounding)
                return labels, self.row_distances(blocks, labels, centers, best)

            def compute():
                found = self.nearest(view, rows, blocks, mask, native, centers, rounding)
                members = sums.chunk_members(found[0], blocks, mask)
                return (found, members), members

            # Each worker adds its own chunk, in row order, while the chunk is in cache.
            (labels, best), members = sums.compute_and_add(rows, compute)
            exact = sums.best_of(members)
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

    def seed_distances(self, view: Any, seed: Centers, rounding: float) -> np.ndarray:
        out = np.empty(view.n_samples)
        native = self.native_centers(seed, view)

        def to_seed(rows, blocks, mask):
            sq, err = self.sq_dists(view, rows, blocks, mask, native, rounding)
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
        labels = host_labels(labels)
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
