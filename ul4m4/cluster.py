"""Stage 1: k-means under the partial-modality distance (seeding and Lloyd iterations).

Drivers here assume validated inputs: a :class:`~ul4m4.data.Standardized` view of
the training data, a RandomState, and resolved parameters. Centres may be partial:
a centre carries a modality iff at least one of its members has it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .data import RowOrderSums, Standardized
from .distance import (
    exact_argmin,
    exact_partial_sq_dists,
    exact_partial_sq_pairs,
    partial_sq_dists,
    squared_norms,
)

__all__ = ["Centers", "LloydResult", "assign", "kmeans_plusplus", "lloyd", "random_init"]

logger = logging.getLogger("ul4m4")


@dataclass
class Centers:
    """k centres in z-space: one (k, d_m) block per modality and a (k, M) mask.

    Blocks hold zeros where a centre lacks a modality, so GEMMs need no NaN
    handling; ``mask`` says which entries are real.
    """

    blocks: list[np.ndarray]
    mask: np.ndarray
    norms: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Re-zero absent entries and recompute the squared norms after an edit."""
        for m, block in enumerate(self.blocks):
            block[~self.mask[:, m]] = 0
        self.norms = squared_norms(self.blocks)

    @property
    def k(self) -> int:
        return int(self.mask.shape[0])

    @classmethod
    def from_sums(cls, sums: list[np.ndarray], counts: np.ndarray, dtype: np.dtype) -> Centers:
        """Member means from float64 sums and per-modality member counts."""
        mask = counts > 0
        blocks = []
        for m, s in enumerate(sums):
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = s / counts[:, m][:, None]
            blocks.append(np.where(mask[:, m][:, None], mean, 0.0).astype(dtype))
        return cls(blocks, mask)


def _sq_dists_to(view: Standardized, blocks, mask, centers: Centers, gamma: float, rows=None):
    """``(sq, err, exact_rows, exact_pairs)``: the arguments of :func:`exact_argmin`."""
    row_norms = None if rows is None else view.row_norms(rows, blocks)
    sq, err = partial_sq_dists(
        blocks, mask, centers.blocks, centers.mask, centers.norms, gamma, row_norms
    )

    def exact(rows: np.ndarray) -> np.ndarray:
        return exact_partial_sq_dists(
            [b[rows] for b in blocks], mask[rows], centers.blocks, centers.mask
        )

    def exact_pairs(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return exact_partial_sq_pairs(blocks, mask, centers.blocks, centers.mask, rows, cols)

    return sq, err, exact, exact_pairs


def assign(view: Standardized, centers: Centers, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest-centre labels (ties to the lowest index) and their squared distances."""
    labels = np.empty(view.n_samples, dtype=np.int64)
    best = np.empty(view.n_samples)

    def nearest(rows, blocks, mask):
        return exact_argmin(*_sq_dists_to(view, blocks, mask, centers, gamma, rows))

    for rows, (chunk_labels, chunk_best) in view.map_chunks(nearest):
        labels[rows], best[rows] = chunk_labels, chunk_best
    return labels, best


def _assign_and_accumulate(view: Standardized, centers: Centers, gamma: float):
    """One E-step, plus the float64 per-modality sums and counts of the new clusters."""
    labels = np.empty(view.n_samples, dtype=np.int64)
    best = np.empty(view.n_samples)
    accumulator = RowOrderSums(centers.k, [b.shape[1] for b in centers.blocks])

    def nearest(rows, blocks, mask):
        def chunk():
            found = exact_argmin(*_sq_dists_to(view, blocks, mask, centers, gamma, rows))
            return found, accumulator.prepare(found[0], blocks, mask)

        # Each worker adds its own chunk, in row order, while the chunk is in cache.
        return accumulator.compute_and_add(rows, chunk)

    for rows, (chunk_labels, chunk_best) in view.map_chunks(nearest):
        labels[rows], best[rows] = chunk_labels, chunk_best
    return labels, best, accumulator.sums, accumulator.counts


def _seed_from_rows(view: Standardized, rows: np.ndarray) -> Centers:
    blocks, mask = view.rows(rows)
    return Centers(blocks, mask.copy())


def random_init(view: Standardized, k: int, rng: np.random.RandomState) -> Centers:
    """k distinct training samples drawn uniformly without replacement."""
    return _seed_from_rows(view, np.sort(rng.choice(view.n_samples, size=k, replace=False)))


def _min_sq_update(view: Standardized, seed: Centers, min_sq: np.ndarray, gamma: float) -> None:
    def to_seed(rows, blocks, mask):
        sq, err, exact, _ = _sq_dists_to(view, blocks, mask, seed, gamma, rows)
        sq = sq[:, 0]
        # A copy of the seed must be at distance exactly 0 so it is never drawn
        # again; entries the error bound cannot tell from 0 are computed exactly.
        near_zero = np.flatnonzero(np.isfinite(sq) & (sq - err[:, 0] <= 0))
        if near_zero.size:
            sq[near_zero] = exact(near_zero)[:, 0]
        return sq

    for rows, sq in view.map_chunks(to_seed):
        np.minimum(min_sq[rows], sq, out=min_sq[rows])


def kmeans_plusplus(
    view: Standardized,
    k: int,
    rng: np.random.RandomState,
    gamma: float,
    *,
    min_sq_update: Callable[..., None] | None = None,
) -> tuple[Centers, np.ndarray]:
    """k-means++ seeding under the partial distance.

    The first seed is uniform. Each next seed is drawn with probability
    proportional to the squared partial distance to the nearest chosen seed; a
    sample sharing no modality with any chosen seed is infinitely far, so one of
    those is drawn uniformly first. When every sample coincides with a seed, the
    next seed is drawn uniformly among the samples not yet chosen.

    Returns the seed centres (copies of the samples, with their modality sets)
    and the chosen sample indices. ``min_sq_update`` replaces the distance pass
    (another engine's kernel); the draws stay these.
    """
    update = _min_sq_update if min_sq_update is None else min_sq_update
    n = view.n_samples
    seeds = [int(rng.randint(n))]
    min_sq = np.full(n, np.inf)
    for _ in range(1, k):
        update(view, _seed_from_rows(view, np.array(seeds[-1:])), min_sq, gamma)
        seeds.append(_draw_next_seed(min_sq, seeds, rng))
    indices = np.asarray(seeds, dtype=np.int64)
    return _seed_from_rows(view, indices), indices


def _draw_next_seed(min_sq: np.ndarray, seeds: list[int], rng: np.random.RandomState) -> int:
    unreachable = np.flatnonzero(np.isinf(min_sq))
    if unreachable.size:
        return int(unreachable[rng.randint(unreachable.size)])
    cumulative = np.cumsum(min_sq)
    total = cumulative[-1]
    if total > 0:
        u = rng.random_sample() * total
        return int(min(np.searchsorted(cumulative, u, side="right"), min_sq.size - 1))
    remaining = np.setdiff1d(np.arange(min_sq.size), seeds)
    return int(remaining[rng.randint(remaining.size)])


@dataclass
class LloydResult:
    centers: Centers
    sums: list[np.ndarray]
    counts: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int
    converged: bool
    history: list[float]
    n_dead: int = 0

    def warn(self, max_iter: int, stacklevel: int) -> None:
        """ConvergenceWarnings for a run that hit ``max_iter`` or left dead centres."""
        if not self.converged:
            warnings.warn(
                f"k-means did not converge in max_iter={max_iter} iterations; labels are the "
                "exact nearest centres, but the centres are not yet their members' means. "
                "Increase max_iter.",
                ConvergenceWarning,
                stacklevel=stacklevel + 1,
            )
        if self.n_dead:
            k = self.centers.k
            warnings.warn(
                f"only {k - self.n_dead} distinct clusters found for n_clusters={k}: the data "
                f"have fewer distinct points than clusters; {self.n_dead} centres are left "
                "empty (no modality) and are never used",
                ConvergenceWarning,
                stacklevel=stacklevel + 1,
            )


def _exact_sq_to_assigned(view: Standardized, centers: Centers, labels: np.ndarray):
    """Exact squared partial distance of every sample to its own centre (float64).

    Also returns the scale of each distance, ``(||z||^2 + ||c||^2) / d_m``
    averaged over the shared modalities, to tell rounding noise from distance.
    """
    sq = np.empty(view.n_samples)
    scale = np.empty(view.n_samples)
    for rows, blocks, mask in view.chunks():
        own = labels[rows]
        num = np.zeros(own.size)
        size = np.zeros(own.size)
        count = np.zeros(own.size)
        for m, block in enumerate(blocks):
            shared = mask[:, m] & centers.mask[own, m]
            z = block.astype(np.float64)
            c = centers.blocks[m][own].astype(np.float64)
            d_m = block.shape[1]
            num += np.where(shared, np.sum((z - c) ** 2, axis=1) / d_m, 0.0)
            size += np.where(shared, (np.sum(z * z, axis=1) + np.sum(c * c, axis=1)) / d_m, 0.0)
            count += shared
        with np.errstate(divide="ignore", invalid="ignore"):
            sq[rows] = np.where(count > 0, num / count, np.inf)
            scale[rows] = np.where(count > 0, size / count, 0.0)
    return sq, scale


def _reseed_empty(view: Standardized, old: Centers, new: Centers, labels) -> tuple[int, int]:
    """Move the samples farthest from their centres into the empty clusters of ``new``.

    Distances are exact (to the centres ``old`` the labels were assigned to), so
    the choice of sample does not depend on GEMM rounding; ties go to the lowest
    sample index. A sample within rounding noise of its centre (squared distance
    at most sqrt(eps) times its scale: a mean of identical points need not be
    bit-identical to them) is never used. Returns ``(n_reseeded, n_dead)``: a
    cluster stays empty (a centre with no modality, never nearest to anything)
    only when every sample sits on its centre, i.e. the data have fewer distinct
    points than k.
    """
    members = np.bincount(labels, minlength=new.k)
    empty = np.flatnonzero(members == 0)
    if not empty.size:
        return 0, 0
    best, scale = _exact_sq_to_assigned(view, old, labels)
    noise = np.sqrt(np.finfo(view.dtype).eps) * scale
    order = np.argsort(-best, kind="stable")
    candidates = order[best[order] > noise[order]][: empty.size]
    if candidates.size:
        blocks, mask = view.rows(candidates)
        targets = empty[: candidates.size]
        for m, block in enumerate(blocks):
            new.blocks[m][targets] = block
        new.mask[targets] = mask
        new.refresh()
    return int(candidates.size), int(empty.size - candidates.size)


def _center_shift(old: Centers, new: Centers) -> float:
    shift = 0.0
    for m, (a, b) in enumerate(zip(old.blocks, new.blocks, strict=True)):
        both = old.mask[:, m] & new.mask[:, m]
        diff = a[both].astype(np.float64) - b[both]
        shift += float(np.sum(diff * diff))
    return shift


def lloyd(
    view: Standardized,
    centers: Centers,
    *,
    max_iter: int,
    tol: float,
    gamma: float,
    one_step: bool = False,
    assign_and_accumulate: Callable[..., tuple] | None = None,
) -> LloydResult:
    """Lloyd iterations from ``centers`` to a fixed point, ``max_iter`` or ``tol``.

    Each pass over the data assigns every sample to its exact nearest centre and
    accumulates the new member sums, so one pass is one iteration. On
    convergence (no label changes, no reseedable empty cluster) the returned
    centres are their members' means and every label is the exact argmin to them.
    Otherwise the returned labels are the exact argmin to the returned centres
    (the last E-step), which are then not their members' means.

    ``one_step=True`` reproduces the reference scripts: one assignment to the
    seeds and one mean update; labels stay those of the assignment to the seeds.
    ``assign_and_accumulate`` replaces the E-step and sums (another engine's
    kernel); every decision stays this driver's.
    """
    e_step = _assign_and_accumulate if assign_and_accumulate is None else assign_and_accumulate
    history: list[float] = []
    previous = None
    for iteration in range(1, max_iter + 1):
        labels, best, sums, counts = e_step(view, centers, gamma)
        inertia = float(best.sum())
        history.append(inertia)
        logger.info("iteration %d: inertia %.6g", iteration, inertia)
        updated = Centers.from_sums(sums, counts, centers.blocks[0].dtype)
        if one_step:
            return LloydResult(updated, sums, counts, labels, inertia, 1, False, history)
        unchanged = previous is not None and np.array_equal(labels, previous)
        reseeded, dead = _reseed_empty(view, centers, updated, labels)
        if unchanged and not reseeded:
            return LloydResult(
                centers, sums, counts, labels, inertia, iteration, True, history, dead
            )
        if tol > 0 and not reseeded and _center_shift(centers, updated) <= tol:
            return LloydResult(
                centers, sums, counts, labels, inertia, iteration, True, history, dead
            )
        previous = labels
        if iteration < max_iter:
            centers = updated
    return LloydResult(centers, sums, counts, labels, inertia, max_iter, False, history)
