"""The centre rules of completion: greedy (the method's) and soft, from the training centres.

For sample i with observed set O and missing set Mis, candidate f is sample i
with ``c_f^m`` filled in for every ``m in Mis`` that centre f has. The greedy
search of the method repeatedly takes the (candidate, centre) pair at the
smallest partial distance, removes that candidate and copies the modalities it
still carries. Candidates never change, so this has a closed form: rank the
candidates by ``r(f) = min_j d(candidate_f, c_j)`` (stable, ties to the lowest f)
and fill each missing m from the first ranked f that has m, which is
``argmin_{f : m in S_f} r(f)``.

With ``P[i, j] = sum_{m in O, S_j} ||z_i^m - c_j^m||^2 / d_m`` (a sample-centre
GEMM) and the exact centre-centre terms ``CC_m[f, j]``, every pair of a pattern
group costs ``(P[i, j] + Q[f, j]) / (cO[j] + cM[f, j])`` where ``Q``, ``cO`` and
``cM`` depend only on the pattern (:class:`~ul4m4.plan.PatternTerms`): the scores
of a row chunk are one GEMM and a compiled float32 minimum over the (k, k) pairs
(:meth:`~ul4m4.plan.PatternTerms.candidate_scores`), no per-sample loop; rows
whose choice rounding could change are scored again exactly.

When every centre has every modality and no two centres coincide on a modality,
``r`` is minimised exactly by the nearest centre on the observed modalities, so
every missing modality comes from the sample's nearest centre (one GEMM).

Every rule here runs on host blocks (a :class:`~ul4m4.engine.HostView`), the same
code on every engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .distance import fixed_order_partial_sq_dists, nearest_rows
from .engine import HostView
from .plan import CANDIDATE_TRIPLES_PER_STEP, CompletionPlan, PatternTerms

__all__ = [
    "FROM_MEAN",
    "FROM_MODEL",
    "OBSERVED",
    "VarianceTargets",
    "complete_sources",
    "fill_stuck_greedily",
    "row_dots",
    "row_weighted_sums",
    "soft_complete",
    "soft_fill_chunk",
    "soft_variance",
    "soft_weights",
]

#: Source code of an observed entry.
OBSERVED = -1
#: Source code of an entry filled with the training mean (no centre has it, or
#: the sample has no observed modality and the imputer allows that).
FROM_MEAN = -2
#: Source code of an entry filled by a model with no single source centre (the
#: conditional mixture's blend of every cluster).
FROM_MODEL = -3

#: Squared z-space distances closer than this to the smallest one count as tied
#: with it in the soft weights (z-space has unit variance per dimension).
_SOFT_TIE = 1e-12


def complete_sources(
    view: HostView, plan: CompletionPlan, rounding: float, *, force_general: bool = False
) -> np.ndarray:
    """Which centre fills each missing entry (the greedy completion).

    ``view`` holds its rows in this process (:class:`~ul4m4.engine.HostView`):
    completion runs on host blocks whatever the engine (``Engine.apply`` hands
    each row block over as one).

    Returns
    -------
    sources : ndarray of shape (n_samples, n_modalities), int64
        ``OBSERVED`` (-1) where observed, ``FROM_MEAN`` (-2) where no centre has
        the modality or the sample has no observed modality, else the index of
        the centre whose vector fills the entry.
    """
    mask = view.mask
    sources = np.full(mask.shape, OBSERVED, dtype=np.int64)
    missing_rows = np.flatnonzero(~mask.all(axis=1))
    if not missing_rows.size:
        return sources
    patterns, inverse = np.unique(mask[missing_rows], axis=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        rows = missing_rows[inverse.ravel() == p]
        sources[rows] = _complete_pattern(view, plan, pattern, rows, rounding, force_general)
    return sources


def soft_complete(
    view: HostView,
    plan: CompletionPlan,
    values: list[np.ndarray],
    temperature: list[float | None],
    out: list[np.ndarray | None],
    rounding: float,
    *,
    variance: list[np.ndarray | None] | None = None,
    spread: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft completion: each missing entry is a softmax-weighted mean of centres.

    For sample i and missing modality m, with ``s_j = d(i, c_j)^2`` the squared
    partial distance on the observed modalities, centres j that carry m and share
    an observed modality with i get weights
    ``softmax_j(-(s_j - min s) / (T_m * median s))`` (min and median over those
    centres), and the entry becomes ``sum_j w_j values[m][j]``. Where no centre
    carrying m shares an observed modality with i, the entry falls back to the
    greedy completion's centre.

    A row's fill depends on that row alone, bit for bit, not on the other rows
    of ``view``: the distances are fixed-order float64 sums on the host
    (:func:`ul4m4.distance.fixed_order_partial_sq_dists`, not the GEMM's) and the
    weighted means are taken row by row (:func:`row_weighted_sums`). So one row
    completed alone equals the same row completed in a batch, on every engine. The
    price is speed on large batches: the float64 sums cost about three times the
    working-dtype GEMM (4,096 rows of 1,792 dims, k = 64: 80-100 ms against 35
    ms on one core, ``benchmarks/bench_serving.py``).

    Only modalities with ``out[m]`` not None are completed; their missing rows
    of ``out[m]`` are overwritten. ``values[m]`` is (k, d_m) float64 (zeros where
    a centre lacks m): raw centres give raw output, z-space centres z output.

    With ``variance`` (per modality an (n,) float64 array, or None), each
    completed entry's predicted per-coordinate z-space variance is written there
    too: :func:`soft_variance` of the same weights over the z-space centres
    ``plan.exact_blocks`` and the centre ``spread`` ((k, M); None counts as 1);
    an entry that falls back to a greedy centre gets that centre's spread, one
    filled from the training mean 1. Like the fill, a row's value depends on
    that row alone.

    Returns
    -------
    top : ndarray of shape (n_samples, n_modalities), int64
        The centre with the largest weight (or the greedy centre on fallback);
        ``OBSERVED`` where observed or not completed here.
    weight : ndarray of shape (n_samples, n_modalities), float64
        That centre's weight (1 on fallback); NaN where ``top`` is ``OBSERVED``.
    """
    centers = plan.centers
    n, n_mod = view.mask.shape
    top = np.full((n, n_mod), OBSERVED, dtype=np.int64)
    weight = np.full((n, n_mod), np.nan)
    fallback = np.zeros((n, n_mod), dtype=bool)
    targets = None
    if variance is not None:
        spread = np.ones((centers.k, n_mod)) if spread is None else spread
        targets = VarianceTargets(plan.exact_blocks, spread, variance)

    def distances(rows, blocks, mask):
        return fixed_order_partial_sq_dists(blocks.full(), mask, centers.blocks, centers.mask)

    for rows, (sq, err) in view.map_chunks(distances):
        soft_fill_chunk(rows, sq, err, view.mask[rows], centers.mask, values, temperature, out,
                        top, weight, fallback, variance=targets)
    if fallback.any():
        fill_stuck_greedily(complete_sources(view, plan, rounding), fallback, values, out,
                            top, weight, variance=targets)
    return top, weight


@dataclass
class VarianceTargets:
    """What the soft fill needs to write the predicted variance, and where it goes."""

    z_centers: list[np.ndarray]  # per modality (k, d_m) float64 z-space centres
    spread: np.ndarray  # (k, M) float64 centre spread
    out: list[np.ndarray | None]  # per modality (n,) float64, written where filled


def soft_fill_chunk(rows: slice, sq, err, mask, carries, values, temperature, out, top, weight,
                    fallback, *, variance: VarianceTargets | None = None) -> None:
    """Soft-fill one row chunk's missing blocks from its (B, k) partial distances.

    Rows with no eligible centre are only marked in ``fallback`` (see
    :func:`fill_stuck_greedily`). With ``variance``, the filled entries'
    predicted variances (:func:`soft_variance`) are written to ``variance.out``.
    """
    for m in range(mask.shape[1]):
        if out[m] is None:
            continue
        missing = np.flatnonzero(~mask[:, m])
        if not missing.size:
            continue
        w, stuck = soft_weights(sq[missing], err[missing], carries[:, m], temperature[m])
        global_rows = np.arange(rows.start, rows.stop)[missing]
        live = ~stuck
        out[m][global_rows[live]] = row_weighted_sums(w[live], values[m]).astype(out[m].dtype)
        top[global_rows[live], m] = np.argmax(w[live], axis=1)
        weight[global_rows[live], m] = np.max(w[live], axis=1)
        fallback[global_rows[stuck], m] = True
        if variance is not None and variance.out[m] is not None:
            variance.out[m][global_rows[live]] = soft_variance(
                w[live], variance.z_centers[m], variance.spread[:, m])


def row_weighted_sums(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``w @ values`` for (B, k) weights, with each row's value independent of B.

    A stacked matmul makes one (1, k) @ (k, d) product per row, the same call for
    every row whatever the batch, whereas one (B, k) @ (k, d) GEMM may sum a row
    in an order that depends on B (BLAS picks its kernels by shape).
    """
    return np.matmul(w[:, None, :], values)[:, 0]


def row_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of (B, d) arrays, one stacked product per row (each row's
    value independent of B, as in :func:`row_weighted_sums`)."""
    return np.matmul(a[:, None, :], b[:, :, None])[:, 0, 0]


def soft_variance(w: np.ndarray, centers: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Predicted per-coordinate variance of soft fills: the variance of their mixture.

    For (B, k) weights ``w``, (k, d) z-space ``centers`` and (k,) ``spread``,
    row i gets ``sum_j w_ij (spread_j + ||c_j - f_i||^2 / d)`` with
    ``f_i = sum_j w_ij c_j`` (the mixture's within- plus between-centre
    variance), in float64. Each row's value is computed by calls that do not
    depend on B (see :func:`row_weighted_sums`), so it is the same bits alone
    or in a batch. ``||c_j - f_i||^2`` is expanded as
    ``||c_j||^2 - 2 c_j.f_i + ||f_i||^2`` (no (B, k, d) tensor) and clipped at 0.
    """
    d = max(1, centers.shape[1])
    fill = row_weighted_sums(w, centers)
    cross = row_weighted_sums(fill, centers.T)
    fill_sq = row_dots(fill, fill)
    centre_sq = (centers * centers).sum(axis=1)
    between = np.maximum(centre_sq[None, :] - 2.0 * cross + fill_sq[:, None], 0.0) / d
    return row_dots(w, spread[None, :] + between)


def fill_stuck_greedily(sources: np.ndarray, fallback: np.ndarray, values, out, top,
                        weight, *, variance: VarianceTargets | None = None) -> None:
    """Fill the ``fallback`` entries from their greedy ``sources`` (weight 1).

    With ``variance``, an entry gets its source centre's spread (1 for the
    training mean).
    """
    stuck_rows, stuck_mods = np.nonzero(fallback)
    src = sources[stuck_rows, stuck_mods]
    top[stuck_rows, stuck_mods] = src
    weight[stuck_rows, stuck_mods] = 1.0
    for m in np.unique(stuck_mods):
        # Negative codes (the training mean) are filled by the caller.
        pick = (stuck_mods == m) & (src >= 0)
        out[m][stuck_rows[pick]] = values[m][src[pick]].astype(out[m].dtype)
        if variance is not None and variance.out[m] is not None:
            mine = stuck_mods == m
            variance.out[m][stuck_rows[mine]] = np.where(
                src[mine] >= 0, variance.spread[np.maximum(src[mine], 0), m], 1.0)


def soft_weights(sq: np.ndarray, err: np.ndarray, carries: np.ndarray, temperature: float):
    """Row-wise softmax weights over eligible centres; rows with none are ``stuck``.

    Distances within their rounding bound (plus ``_SOFT_TIE``) of the row's
    smallest one are set to it, so centres tied in exact arithmetic get exactly
    equal weights even when the median distance is 0 (then only those tied
    centres get weight): the softmax is scale-free, so without this, rounding
    noise far below any meaningful z-space distance would decide the weights.
    """
    eligible = carries[None, :] & np.isfinite(sq)
    stuck = ~eligible.any(axis=1)
    scores = np.where(eligible, sq, np.inf)
    best = np.argmin(scores, axis=1)
    rows = np.arange(sq.shape[0])
    lowest = np.where(stuck, 0.0, scores[rows, best])
    reach = lowest + np.where(stuck, 0.0, err[rows, best]) + _SOFT_TIE
    scores = np.where(eligible & (scores - err <= reach[:, None]), lowest[:, None], scores)
    # Stuck rows get a dummy value so that no row is all-NaN.
    median = _row_nanmedian(np.where(eligible | stuck[:, None], scores, np.nan))
    median = np.where(stuck, 1.0, median)
    scale = temperature * np.maximum(median, np.finfo(np.float64).tiny)
    with np.errstate(over="ignore", invalid="ignore"):
        # A tiny scale (median 0) sends every non-tied centre to -inf: weight 0.
        logits = np.where(eligible, -(scores - lowest[:, None]) / scale[:, None], -np.inf)
    logits[stuck] = 0.0
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    return w, stuck


def _row_nanmedian(a: np.ndarray) -> np.ndarray:
    """``np.nanmedian(a, axis=1)`` for rows with at least one non-NaN entry, same bits.

    NumPy's takes a masked-array path for small arrays that cost about 0.2 ms per
    call, a fifth of a 1-row soft ``transform``; the median of an even count is
    the mean of its middle pair, ``(low + high) / 2``, as NumPy's.
    """
    ordered = np.sort(a, axis=1)  # NaN last
    count = np.count_nonzero(~np.isnan(a), axis=1)
    rows = np.arange(a.shape[0])
    low = ordered[rows, (count - 1) // 2]
    high = ordered[rows, count // 2]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(count % 2 == 1, low, (low + high) / 2)


def _complete_pattern(view: HostView, plan, pattern, rows, rounding, force_general) -> np.ndarray:
    centers = plan.centers
    out = np.full((rows.size, pattern.size), OBSERVED, dtype=np.int64)
    missing = np.flatnonzero(~pattern)
    if not pattern.any():
        out[:, missing] = FROM_MEAN
        return out
    if plan.all_complete and not force_general:
        for start in range(0, rows.size, view.chunk_rows):
            blocks = view.packed_rows(rows[start : start + view.chunk_rows])
            labels, _ = nearest_rows(blocks, centers.blocks, centers.mask, centers.norms, rounding,
                                     distances=False)
            out[start : start + view.chunk_rows, missing] = labels[:, None]
        return out
    step = max(1, min(view.chunk_rows, CANDIDATE_TRIPLES_PER_STEP // max(1, centers.k**2)))
    terms = PatternTerms.build(plan, pattern)
    for start in range(0, rows.size, step):
        out[start : start + step, missing] = _greedy_sources(
            view, rows[start : start + step], terms, rounding
        )
    return out


def _greedy_sources(view: HostView, rows: np.ndarray, terms: PatternTerms,
                    rounding: float) -> np.ndarray:
    scores, slack = terms.candidate_scores(view.packed_rows(rows), rounding)
    chosen, ambiguous = _choose(scores, terms.eligible, slack)
    if ambiguous.size:
        blocks, _ = view.rows(rows[ambiguous])
        exact_scores = terms.exact_candidate_scores([b.astype(np.float64) for b in blocks])
        chosen[ambiguous], _ = _choose(exact_scores, terms.eligible, np.zeros_like(exact_scores))
    return chosen


def _choose(scores: np.ndarray, eligible: np.ndarray, slack: np.ndarray):
    """Per missing modality, the lowest-scored eligible candidate (ties to the lowest f).

    ``slack[i, f]`` bounds the rounding error of ``scores[i, f]``. Also returns the
    rows where another eligible candidate's error interval overlaps the best
    one's, i.e. where rounding could change the choice (exact ties between
    exactly computed scores are already resolved by the lowest index).
    """
    n_rows = scores.shape[0]
    rows = np.arange(n_rows)
    chosen = np.full((n_rows, eligible.shape[0]), FROM_MEAN, dtype=np.int64)
    ambiguous = np.zeros(n_rows, dtype=bool)
    for t, allowed in enumerate(eligible):
        if not allowed.any():
            continue
        masked = np.where(allowed[None, :], scores, np.inf)
        best = np.argmin(masked, axis=1)
        chosen[:, t] = best
        top_slack = slack[rows, best]
        overlap = masked - slack <= (masked[rows, best] + top_slack)[:, None]
        uncertain = (slack + top_slack[:, None]) > 0
        overlap &= uncertain & allowed[None, :]
        overlap[rows, best] = False
        ambiguous |= overlap.any(axis=1)
    return chosen, np.flatnonzero(ambiguous)
