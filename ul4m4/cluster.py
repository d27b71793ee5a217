"""k-means under the partial-modality distance: seeding and Lloyd iterations.

Drivers here assume validated inputs: a view of the training data made by
``engine`` (see :mod:`ul4m4.engine`), a RandomState, and resolved parameters.
They hold every decision of the method; the engine only computes. Centres may
be partial: a centre carries a modality iff at least one of its members has it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .centers import Centers, center_shift
from .engine import Candidates, Engine, View, host_labels, local_engine

__all__ = [
    "LloydResult",
    "assign",
    "kmeans_plusplus",
    "lloyd",
    "random_init",
    "seed_rows",
    "seed_sample_size",
    "state_key",
]

logger = logging.getLogger("ul4m4")

#: Bytes (as float64) of the sample k-means++ seeds on when the data live outside this
#: process (see :func:`seed_sample_size`).
SEED_SAMPLE_BYTES = 256 * 2**20
#: That sample holds at least this many rows per centre.
SEED_ROWS_PER_CLUSTER = 64


def seed_rows(view: View, rows: np.ndarray, engine: Engine) -> Centers:
    """Centres that are copies of the given training rows, with their modality sets."""
    blocks, mask = engine.take(view, rows)
    return Centers(blocks, mask.copy())


def random_init(view: View, k: int, rng: np.random.RandomState, engine: Engine) -> Centers:
    """k distinct training samples drawn uniformly without replacement."""
    return seed_rows(view, np.sort(rng.choice(view.n_samples, size=k, replace=False)), engine)


def seed_sample_size(view: View, k: int, engine: Engine) -> int | None:
    """How many rows k-means++ seeds ``k`` centres on, gathered; None to seed on ``view``.

    Data in this process are seeded on in place. Data that live elsewhere (an
    engine with its own :func:`~ul4m4.engine.local_engine`, e.g. Dask) are seeded
    on a uniform sample gathered into this process: k passes over a sample
    instead of k passes over the cluster. The sample holds at least
    :data:`SEED_ROWS_PER_CLUSTER` rows per centre, or :data:`SEED_SAMPLE_BYTES`
    of float64 rows when that is more (all rows when they fit: the seeds are
    then those of the in-process engines).
    """
    if local_engine(engine) is engine:
        return None
    width = sum(len(m) for m in view.mean)
    return max(SEED_ROWS_PER_CLUSTER * k, SEED_SAMPLE_BYTES // (8 * width), k)


def kmeans_plusplus(
    view, k: int, rng: np.random.RandomState, rounding: float, engine: Engine, progress=None
) -> tuple[Centers, np.ndarray]:
    """k-means++ seeding under the partial distance.

    The first seed is uniform. Each next seed is drawn with probability
    proportional to the squared partial distance to the nearest chosen seed; a
    sample sharing no modality with any chosen seed is infinitely far, so one of
    those is drawn uniformly first. When every sample coincides with a seed, the
    next seed is drawn uniformly among the samples not yet chosen.

    Parameters
    ----------
    view : engine view
        The training data.
    k : int
        Number of seeds.
    rng : RandomState
        Draws the seeds.
    rounding : float
        The GEMM rounding factor of the engine (:func:`ul4m4.engine.rounding_factor`).
    engine : Engine
        Computes the distances to each new seed.
    progress : callable, optional
        Called after every seed as ``progress(n_seeds, k, elapsed_seconds)``: each
        seed costs a pass over the data.

    Returns
    -------
    centers : Centers
        Copies of the seed samples, with their modality sets.
    indices : ndarray of shape (k,)
        The chosen sample indices.
    """
    n = view.n_samples
    seeds = [int(rng.randint(n))]
    min_sq = np.full(n, np.inf)
    start = time.perf_counter()
    for _ in range(1, k):
        seed = seed_rows(view, np.array(seeds[-1:]), engine)
        np.minimum(min_sq, engine.seed_distances(view, seed, rounding), out=min_sq)
        seeds.append(_draw_next_seed(min_sq, seeds, rng))
        if progress is not None:
            progress(len(seeds), k, time.perf_counter() - start)
    indices = np.asarray(seeds, dtype=np.int64)
    return seed_rows(view, indices, engine), indices


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


def assign(view: View, centers: Centers, rounding: float, engine: Engine
           ) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest-centre labels (ties to the lowest index) and their squared distances."""
    step = engine.e_step(view, centers, rounding, update_centers=False)
    return host_labels(step.labels), step.best


@dataclass
class LloydResult:
    """One k-means run: final centres, labels, inertia and how the run ended.

    ``stopped_by`` is ``"fixed_point"``, ``"tol"``, ``"max_iter"``, ``"cycle"``
    (the iterations returned to an earlier state and would repeat it forever;
    ``cycle_period`` is then the number of iterations of the cycle),
    ``"one_step"`` or, for mini-batch runs, ``"no_improvement"``.
    """

    centers: Centers
    labels: np.ndarray
    inertia: float
    n_iter: int
    converged: bool
    history: list[float] = field(default_factory=list)
    n_dead: int = 0
    stopped_by: str = "max_iter"
    cycle_period: int = 0


def reseed_empty(view: View, old: Centers, new: Centers, step, engine: Engine) -> tuple[int, int]:
    """Move the samples farthest from their centres into the empty clusters of ``new``.

    Distances are exact (to the centres ``old`` the labels were assigned to), so
    the choice of sample does not depend on GEMM rounding; ties go to the lowest
    sample index. A sample within rounding noise of its centre is never used.
    The engine proposes the farthest rows of each row block; the global choice
    is made here. Returns ``(n_reseeded, n_dead)``: a cluster stays empty (a
    centre with no modality, never nearest to anything) only when every sample
    sits on its centre, i.e. the data have fewer distinct points than k.
    """
    empty = np.flatnonzero(step.members == 0)
    if not empty.size:
        return 0, 0
    found: Candidates = engine.farthest(view, old, step.labels, int(empty.size))
    chosen = np.argsort(-found.distances, kind="stable")[: empty.size]
    if chosen.size:
        targets = empty[: chosen.size]
        for m, block in enumerate(found.blocks):
            new.blocks[m][targets] = block[chosen]
        new.mask[targets] = found.mask[chosen]
        new.refresh()
    return int(chosen.size), int(empty.size - chosen.size)


def _without_dead(centers: Centers, step) -> Centers:
    """``centers`` with every memberless cluster emptied (no modality: never nearest).

    A cluster left without members that no sample could be moved into (every
    sample sits on its centre) is dead; keeping its old vector would leave a
    centre that is not its members' mean.
    """
    dead = step.members == 0
    if not dead.any():
        return centers
    mask = centers.mask.copy()
    mask[dead] = False
    return Centers([b.copy() for b in centers.blocks], mask)


def state_key(centers: Centers) -> bytes:
    """A digest of the exact bits of ``centers`` (blocks and mask): the state of Lloyd.

    Each Lloyd iteration is a deterministic function of the centres it starts
    from (exact argmin labels, row-order sums, deterministic reseeding), so two
    iterations starting from centres with the same digest run identically.
    """
    digest = hashlib.blake2b(digest_size=20)
    digest.update(np.ascontiguousarray(centers.mask).tobytes())
    for block in centers.blocks:
        digest.update(str(block.dtype).encode())
        digest.update(np.ascontiguousarray(block).tobytes())
    return digest.digest()


def lloyd(
    view: View,
    centers: Centers,
    engine: Engine,
    *,
    max_iter: int,
    tol: float,
    rounding: float,
    one_step: bool = False,
    progress=None,
) -> LloydResult:
    """Lloyd iterations from ``centers`` to a fixed point, a cycle, ``max_iter`` or ``tol``.

    Each pass over the data (:meth:`Engine.e_step`) assigns every sample to its
    exact nearest centre and accumulates the new member sums, so one pass is one
    iteration. On convergence (no label changes, no reseedable empty cluster)
    the returned centres are their members' means and every label is the exact
    argmin to them. Otherwise the returned labels are the exact argmin to the
    returned centres (the last E-step), which are then not their members' means.

    ``tol`` is absolute: the run stops when the total squared z-space centre
    shift of one iteration (:func:`~ul4m4.centers.center_shift`) is at most
    ``tol`` (the estimator scales its relative ``tol`` by the data's variance,
    see :func:`~ul4m4.centers.shift_tolerance`); ``tol=0`` stops only at a
    fixed point.

    Cycles. The partial distance is not a metric (two samples sharing no
    modality are at distance 0 from a centre carrying only the other's), so the
    inertia need not decrease and Lloyd's iterations can cycle between label
    assignments. Every iteration is a deterministic function of the centres it
    starts from, so when an iteration that did not stop starts from the exact
    centres (bit for bit, compared by :func:`state_key`) of an earlier
    iteration ``j``, iterations ``j, j+1, ...`` repeat forever: the run stops
    there with ``stopped_by="cycle"``, ``converged=False`` and ``cycle_period``
    the number of iterations of the cycle, and returns its last iterate (the
    labels and inertia of that iteration and the centres they were assigned
    to). Increasing ``max_iter`` would not change this result; only another
    seeding can. Runs that do not cycle are unaffected.

    ``one_step=True`` reproduces the reference scripts: one assignment to the
    seeds and one mean update; labels stay those of the assignment to the seeds.

    ``progress``, if given, is called after every iteration that does not stop at a
    fixed point as ``progress(iteration, max_iter, inertia, shift, elapsed_seconds,
    changed=labels_changed)`` (``changed`` is None where unknown: the first
    iteration, or a backend that cannot count them).
    """
    history: list[float] = []
    seen: dict[bytes, int] = {}
    previous = None
    dead = 0
    start = time.perf_counter()
    for iteration in range(1, max_iter + 1):
        step = engine.e_step(view, centers, rounding, update_centers=True, previous=previous)
        history.append(step.inertia)
        logger.debug("iteration %d: inertia %.6g", iteration, step.inertia)
        updated = Centers.from_sums(step.sums, step.counts, centers.dtype)
        if one_step:
            return LloydResult(updated, host_labels(step.labels), step.inertia, 1, False,
                               history, stopped_by="one_step")
        reseeded, dead = reseed_empty(view, centers, updated, step, engine)
        unchanged = step.changed == 0
        if unchanged and not reseeded:
            return LloydResult(_without_dead(centers, step), host_labels(step.labels),
                               step.inertia, iteration, True, history, dead, "fixed_point")
        shift = center_shift(centers, updated)
        if progress is not None:
            progress(iteration, max_iter, step.inertia, shift, time.perf_counter() - start,
                     changed=step.changed)
        if tol > 0 and not reseeded and shift <= tol:
            return LloydResult(_without_dead(centers, step), host_labels(step.labels),
                               step.inertia, iteration, True, history, dead, "tol")
        key = state_key(centers)
        if key in seen:
            period = iteration - seen[key]
            logger.debug("iteration %d starts from the centres of iteration %d: a cycle of "
                         "period %d", iteration, seen[key], period)
            return LloydResult(centers, host_labels(step.labels), step.inertia, iteration,
                               False, history, dead, "cycle", period)
        seen[key] = iteration
        previous = step.labels
        if iteration < max_iter:
            centers = updated
    return LloydResult(centers, host_labels(step.labels), step.inertia, max_iter, False,
                       history, dead)
