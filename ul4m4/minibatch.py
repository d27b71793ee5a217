"""Mini-batch k-means (Sculley's) under the partial distance, the alternative to Lloyd.

Full Lloyd reads every sample once per iteration; on data much larger than memory
that is the whole cost of a fit. Mini-batch k-means (Sculley, 2010, "Web-scale
k-means clustering") instead updates the centres from small random batches:

1. draw ``batch_size`` row indices uniformly with replacement (through the
   caller's RandomState) and read those rows only;
2. assign each to its exact nearest centre under the partial distance;
3. move each centre toward its new members with a per-centre, per-modality
   learning rate ``1 / count``, where ``count`` is the number of batch members
   observing that modality the centre has absorbed so far. Applied to a whole
   batch at once this is ``c <- (count * c + sum of new members) / (count + added)``,
   so a centre is always the mean of every member (with repeats) it has seen,
   and a centre starts carrying a modality the first time a member that observes
   it joins (the seed itself counts 0, as in Sculley's algorithm and
   scikit-learn's ``MiniBatchKMeans``: the first members replace it).

Drivers assume validated inputs, like :mod:`ul4m4.cluster`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from .blocks import PackedBlocks
from .centers import Centers, center_shift
from .cluster import LloydResult, assign
from .distance import nearest_rows
from .engine import Engine, View, local_engine
from .rowsums import sequential_sums
from .view import gather_view

__all__ = ["DEFAULT_BATCH_SIZE", "MAX_NO_IMPROVEMENT", "minibatch_kmeans", "seeding_sample"]

logger = logging.getLogger("ul4m4")

#: Mini-batch size when the imputer's ``batch_size`` is None (scikit-learn's default).
DEFAULT_BATCH_SIZE = 1024
#: Stop after this many consecutive steps without a new lowest smoothed batch inertia.
MAX_NO_IMPROVEMENT = 10


@dataclass
class _Progress:
    """Smoothed batch inertia and the no-improvement counter of the stop rule."""

    alpha: float
    smoothed: float | None = None
    lowest: float = np.inf
    stale: int = 0

    def update(self, batch_mean: float) -> bool:
        """Fold in one batch's mean squared distance; True when the run should stop."""
        if self.smoothed is None:
            self.smoothed = batch_mean
        else:
            self.smoothed = (1.0 - self.alpha) * self.smoothed + self.alpha * batch_mean
        if self.smoothed < self.lowest:
            self.lowest, self.stale = self.smoothed, 0
            return False
        self.stale += 1
        return self.stale >= MAX_NO_IMPROVEMENT


def seeding_sample(view: View, size: int, rng: np.random.RandomState, engine: Engine):
    """An in-memory view of ``size`` distinct random rows of ``view``, for seeding.

    k-means++ needs a pass over its data per centre; on a random sample of a few
    batches (scikit-learn's ``init_size`` is 3 batches) seeding costs O(size * k)
    instead of k passes over all the data. The rows are gathered and z-scored
    once (O(size * d) memory), as a view of the :func:`~ul4m4.engine.local_engine`.
    """
    rows = np.sort(rng.choice(view.n_samples, size=size, replace=False))
    return gather_view(view, rows, engine, local_engine(engine))


def _apply_batch(
    estimates: list[np.ndarray],
    carried: np.ndarray,
    counts: np.ndarray,
    blocks: list[np.ndarray],
    mask: np.ndarray,
    labels: np.ndarray,
) -> None:
    """The per-centre ``1/count`` update of one batch, in place, in float64."""
    k = carried.shape[0]
    for m, block in enumerate(blocks):
        observed = mask[:, m]
        members = labels[observed]
        added = np.bincount(members, minlength=k).astype(np.float64)
        touched = added > 0
        if not touched.any():
            continue
        # Row-ordered float64 sums, so a batch gives the same centres however it is read.
        sums = sequential_sums(np.zeros((k, block.shape[1])), labels, block, rows=observed)
        total = counts[:, m] + added
        moved = (counts[touched, m, None] * estimates[m][touched] + sums[touched])
        estimates[m][touched] = moved / total[touched, None]
        counts[:, m] = total
        carried[touched, m] = True


def minibatch_kmeans(
    view: View,
    centers: Centers,
    engine: Engine,
    *,
    batch_size: int,
    max_iter: int,
    tol: float,
    rounding: float,
    rng: np.random.RandomState,
    progress=None,
) -> LloydResult:
    """Mini-batch k-means from ``centers``, then one full assignment pass.

    Parameters
    ----------
    view : engine view
        The training data.
    centers : Centers
        Initial centres (e.g. k-means++ on :func:`seeding_sample`).
    engine : Engine
        Reads the batches (``take``; they are assigned on the host) and makes the
        final assignment pass (see :mod:`ul4m4.engine`).
    batch_size : int
        Rows per mini-batch (clipped to n_samples).
    max_iter : int
        Budget in epochs: at most ``ceil(max_iter * n_samples / batch_size)`` steps.
    tol : float
        Absolute: with ``tol > 0``, also stop when one step moves the centres by
        a total squared z-space shift of at most ``tol`` (the estimator passes
        its relative ``tol`` scaled by :func:`~ul4m4.centers.shift_tolerance`,
        as scikit-learn's ``MiniBatchKMeans`` does).
    rounding : float
        The GEMM rounding factor (see :func:`ul4m4.distance.error_factor`).
    rng : RandomState
        Draws the batches.
    progress : callable, optional
        Called after every step as ``progress(step, n_steps, smoothed inertia,
        shift, elapsed_seconds)``.

    Returns
    -------
    LloydResult
        ``labels`` and ``inertia`` from a final exact assignment of every sample to
        the returned centres; ``n_iter`` is the number of mini-batch steps;
        ``converged`` says whether a stop rule fired before the step budget
        (``stopped_by`` says which: ``"no_improvement"`` or ``"tol"``);
        ``history`` holds, per step, the smoothed batch inertia scaled to
        n_samples (an estimate of the full inertia).

    Notes
    -----
    Stop rule (as in scikit-learn's ``MiniBatchKMeans``): the mean squared
    distance of each batch's samples to their centres is smoothed with an
    exponentially weighted average of weight ``alpha = min(1, 2 * batch_size /
    (n_samples + 1))``; the run stops when this average has not reached a new
    minimum for ``MAX_NO_IMPROVEMENT`` (10) consecutive steps, or by ``tol``,
    or when the step budget is spent (then ``converged`` is False).

    Examples
    --------
    >>> import numpy as np
    >>> from ul4m4.backends import NumpyEngine
    >>> from ul4m4.cluster import kmeans_plusplus
    >>> from ul4m4.validation import check_multimodal
    >>> from ul4m4.statistics import modality_statistics
    >>> rng = np.random.RandomState(0)
    >>> data = check_multimodal({"a": np.r_[rng.normal(0, 1, (200, 2)), rng.normal(9, 1, (200, 2))]})
    >>> means, scales = modality_statistics(data, 64)
    >>> engine = NumpyEngine()
    >>> view = engine.view(data, means, scales, np.dtype(np.float64), 64)
    >>> seeds, _ = kmeans_plusplus(view, 2, rng, 1e-12, engine)
    >>> result = minibatch_kmeans(view, seeds, engine, batch_size=32, max_iter=10, tol=0.0,
    ...                           rounding=1e-12, rng=rng)
    >>> sorted(np.bincount(result.labels).tolist())
    [200, 200]
    """
    n = view.n_samples
    batch = int(min(batch_size, n))
    n_steps = max(1, -(-int(max_iter) * n // batch))
    dtype = centers.blocks[0].dtype
    estimates = [b.astype(np.float64) for b in centers.blocks]
    carried = centers.mask.copy()
    counts = np.zeros(carried.shape)
    smoothing = _Progress(alpha=min(1.0, 2.0 * batch / (n + 1)))
    history: list[float] = []
    converged = False
    stopped_by = "max_iter"
    step = 0
    start = time.perf_counter()
    # One batch is one small GEMM per modality: a multi-threaded BLAS only adds
    # synchronisation at these shapes (as in the chunked passes of map_chunks).
    with threadpool_limits(limits=1, user_api="blas"):
        for step in range(1, n_steps + 1):
            rows = np.sort(rng.randint(n, size=batch))
            # The batch is gathered (any engine) and assigned here, on the host.
            blocks, mask = engine.take(view, rows)
            labels, best = nearest_rows(PackedBlocks.pack(blocks, mask), centers.blocks,
                                        centers.mask, centers.norms, rounding)
            reachable = np.isfinite(best)
            batch_mean = float(best[reachable].mean()) if reachable.any() else np.inf
            _apply_batch(estimates, carried, counts, blocks, mask, labels)
            updated = Centers([e.astype(dtype) for e in estimates], carried.copy())
            shift = center_shift(centers, updated)
            centers = updated
            stop = smoothing.update(batch_mean)
            history.append(float(smoothing.smoothed) * n)
            logger.debug("mini-batch step %d: smoothed inertia %.6g, shift %.3g", step,
                         history[-1], shift)
            if progress is not None:
                progress(step, n_steps, history[-1], shift, time.perf_counter() - start)
            if stop or (tol > 0 and shift <= tol):
                converged = True
                stopped_by = "no_improvement" if stop else "tol"
                break
    labels, best = assign(view, centers, rounding, engine)
    return LloydResult(centers, labels, float(best.sum()), step, converged, history,
                       stopped_by=stopped_by)
