"""Stage 2: greedy completion of missing modalities from the training centres.

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
``cM`` depend only on the pattern: one (B, k, k) tensor per row chunk, no
per-sample loop.

When every centre has every modality and no two centres coincide on a modality,
``r`` is minimised exactly by the nearest centre on the observed modalities, so
every missing modality comes from the sample's nearest centre (one GEMM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cluster import Centers
from .data import Standardized
from .distance import (
    exact_argmin,
    exact_partial_sq_dists,
    modality_sq_dists,
    pairwise_exact_sq,
    partial_sq_dists,
)

__all__ = ["CompletionPlan", "complete_sources", "soft_complete", "FROM_MEAN", "OBSERVED"]

#: Source code of an observed entry.
OBSERVED = -1
#: Source code of an entry filled with the training mean (no centre has it, or
#: the sample has no observed modality and the imputer allows that).
FROM_MEAN = -2

#: Squared z-space distances closer than this to the smallest one count as tied
#: with it in the soft weights (z-space has unit variance per dimension).
_SOFT_TIE = 1e-12
#: Relative rounding bound of the float32 candidate tensor (p, q, sum, product).
_F32_REL = 8 * float(np.finfo(np.float32).eps)
#: Elements of the (B, k, k) candidate tensor allowed at once.
_PAIR_BLOCK_ELEMENTS = 1 << 22


@dataclass
class CompletionPlan:
    """Centre-only terms of the completion, computed once per fitted model."""

    centers: Centers
    exact_blocks: list[np.ndarray]  # the centres in float64, for exact rechecks
    center_sq: list[np.ndarray]  # per modality, (k, k) exact ||c_f - c_j||^2 / d_m
    all_complete: bool

    @classmethod
    def from_centers(cls, centers: Centers) -> CompletionPlan:
        exact_blocks = [b.astype(np.float64) for b in centers.blocks]
        # Exact, so a centre is at distance exactly 0 from itself.
        center_sq = [pairwise_exact_sq(b) for b in exact_blocks]
        return cls(
            centers,
            exact_blocks,
            center_sq,
            bool(centers.mask.all()) and _clearly_distinct(exact_blocks, center_sq),
        )


def _clearly_distinct(blocks: list[np.ndarray], center_sq: list[np.ndarray]) -> bool:
    """True when no two centres coincide on any modality, beyond rounding.

    The nearest-centre shortcut relies on ``Q[f, j] > 0`` for ``f != j``; a
    difference so small that adding it to a distance of order 1 (z-space) or to
    the centres' own norms rounds it away would make the shortcut disagree with
    the pairwise search, so such centres take the general path.
    """
    off_diagonal = ~np.eye(blocks[0].shape[0], dtype=bool)
    margin = np.sqrt(np.finfo(np.float64).eps)
    for block, cc in zip(blocks, center_sq, strict=True):
        norms = np.einsum("ij,ij->i", block, block) / block.shape[1]
        size = np.maximum(1.0, norms[:, None] + norms[None, :])
        if not np.all(cc[off_diagonal] > margin * size[off_diagonal]):
            return False
    return True


def complete_sources(
    view: Standardized, plan: CompletionPlan, gamma: float, *, force_general: bool = False
) -> np.ndarray:
    """Which centre fills each missing entry (the greedy completion).

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
        sources[rows] = _complete_pattern(view, plan, pattern, rows, gamma, force_general)
    return sources


def soft_complete(
    view: Standardized,
    plan: CompletionPlan,
    values: list[np.ndarray],
    temperature: list[float | None],
    out: list[np.ndarray | None],
    gamma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft completion: each missing entry is a softmax-weighted mean of centres.

    For sample i and missing modality m, with ``s_j = d(i, c_j)^2`` the squared
    partial distance on the observed modalities, centres j that carry m and share
    an observed modality with i get weights
    ``softmax_j(-(s_j - min s) / (T_m * median s))`` (min and median over those
    centres), and the entry becomes ``sum_j w_j values[m][j]``. Where no centre
    carrying m shares an observed modality with i, the entry falls back to the
    greedy completion's centre.

    Only modalities with ``out[m]`` not None are completed; their missing rows
    of ``out[m]`` are overwritten. ``values[m]`` is (k, d_m) float64 (zeros where
    a centre lacks m): raw centres give raw output, z-space centres z output.

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
    for rows, blocks, mask in view.chunks():
        sq, err = partial_sq_dists(
            blocks, mask, centers.blocks, centers.mask, centers.norms, gamma
        )
        soft_fill_chunk(rows, sq, err, mask, centers.mask, values, temperature, out, top,
                        weight, fallback)
    if fallback.any():
        fill_stuck_greedily(complete_sources(view, plan, gamma), fallback, values, out, top,
                            weight)
    return top, weight


def soft_fill_chunk(rows: slice, sq, err, mask, carries, values, temperature, out, top, weight,
                    fallback) -> None:
    """Soft-fill one row chunk's missing blocks from its (B, k) partial distances.

    Rows with no eligible centre are only marked in ``fallback`` (see
    :func:`fill_stuck_greedily`). Shared by every engine, which differ only in how
    they compute ``sq`` and ``err``.
    """
    for m in range(mask.shape[1]):
        if out[m] is None:
            continue
        missing = np.flatnonzero(~mask[:, m])
        if not missing.size:
            continue
        w, stuck = _soft_weights(sq[missing], err[missing], carries[:, m], temperature[m])
        global_rows = np.arange(rows.start, rows.stop)[missing]
        live = ~stuck
        out[m][global_rows[live]] = (w[live] @ values[m]).astype(out[m].dtype)
        top[global_rows[live], m] = np.argmax(w[live], axis=1)
        weight[global_rows[live], m] = np.max(w[live], axis=1)
        fallback[global_rows[stuck], m] = True


def fill_stuck_greedily(sources: np.ndarray, fallback: np.ndarray, values, out, top,
                        weight) -> None:
    """Fill the ``fallback`` entries from their greedy ``sources`` (weight 1)."""
    stuck_rows, stuck_mods = np.nonzero(fallback)
    src = sources[stuck_rows, stuck_mods]
    top[stuck_rows, stuck_mods] = src
    weight[stuck_rows, stuck_mods] = 1.0
    for m in np.unique(stuck_mods):
        # Negative codes (the training mean) are filled by the caller.
        pick = (stuck_mods == m) & (src >= 0)
        out[m][stuck_rows[pick]] = values[m][src[pick]].astype(out[m].dtype)


def _soft_weights(sq: np.ndarray, err: np.ndarray, carries: np.ndarray, temperature: float):
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
    median = np.nanmedian(np.where(eligible | stuck[:, None], scores, np.nan), axis=1)
    median = np.where(stuck, 1.0, median)
    scale = temperature * np.maximum(median, np.finfo(np.float64).tiny)
    with np.errstate(over="ignore", invalid="ignore"):
        # A tiny scale (median 0) sends every non-tied centre to -inf: weight 0.
        logits = np.where(eligible, -(scores - lowest[:, None]) / scale[:, None], -np.inf)
    logits[stuck] = 0.0
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    return w, stuck


def _complete_pattern(view, plan, pattern, rows, gamma, force_general) -> np.ndarray:
    centers = plan.centers
    out = np.full((rows.size, pattern.size), OBSERVED, dtype=np.int64)
    missing = np.flatnonzero(~pattern)
    if not pattern.any():
        out[:, missing] = FROM_MEAN
        return out
    if plan.all_complete and not force_general:
        step = view.chunk_rows
        chunker = _nearest_centre_sources
    else:
        step = max(1, min(view.chunk_rows, _PAIR_BLOCK_ELEMENTS // max(1, centers.k**2)))
        chunker = _greedy_sources
    terms = _PatternTerms.build(plan, pattern)
    for start in range(0, rows.size, step):
        blocks, mask = view.rows(rows[start : start + step])
        out[start : start + step, missing] = chunker(blocks, mask, centers, terms, gamma)
    return out


def _nearest_centre_sources(blocks, mask, centers: Centers, terms, gamma) -> np.ndarray:
    sq, err = partial_sq_dists(blocks, mask, centers.blocks, centers.mask, centers.norms, gamma)

    def exact(r: np.ndarray) -> np.ndarray:
        return exact_partial_sq_dists([b[r] for b in blocks], mask[r], centers.blocks, centers.mask)

    labels, _ = exact_argmin(sq, err, exact)
    return np.repeat(labels[:, None], terms.missing.size, axis=1)


@dataclass
class _PatternTerms:
    """Pattern-only pieces of d(candidate_f, c_j)^2 = (P[i,j] + Q[f,j]) / (cO[j] + cM[f,j])."""

    plan: CompletionPlan
    pattern: np.ndarray
    missing: np.ndarray
    q: np.ndarray  # (k, k)
    count: np.ndarray  # (k, k) = cO[None, :] + cM
    eligible: np.ndarray  # (n_missing, k): centre f has missing modality m

    @classmethod
    def build(cls, plan: CompletionPlan, pattern: np.ndarray) -> _PatternTerms:
        has = plan.centers.mask.astype(np.float64)
        k = has.shape[0]
        q = np.zeros((k, k))
        count = np.zeros((k, k))
        for m in range(pattern.size):
            if pattern[m]:
                count += has[:, m][None, :]
            else:
                both = np.outer(has[:, m], has[:, m])
                q += both * plan.center_sq[m]
                count += both
        missing = np.flatnonzero(~pattern)
        eligible = plan.centers.mask[:, missing].T
        return cls(plan, pattern, missing, q, count, eligible)

    def __post_init__(self) -> None:
        shared = self.count > 0
        with np.errstate(divide="ignore"):
            self.inverse = np.where(shared, 1.0 / self.count, 1.0).astype(np.float32)
        self.q_open = np.where(shared, self.q, np.inf).astype(np.float32)
        self.exact_self = ~self.plan.centers.mask[:, self.pattern].any(axis=1)

    def candidate_scores(self, p: np.ndarray, p_err: np.ndarray):
        """r[i, f] = min_j d(candidate_f, c_j)^2 from the observed-part numerator p (B, k).

        Also returns a bound on each score's rounding error. Every pair's error is
        at most ``p_err[i, j] / count[f, j] <= max_j p_err[i, j]`` (only pairs that
        share an observed modality carry error, and their count is >= 1). A
        centre f sharing no observed modality has the exact self pair
        ``d(candidate_f, c_f) = 0``; when its score is 0 it is exactly 0 (no pair
        is negative), so its bound is 0 and exact ties among such candidates need
        no recheck.
        """
        # The (B, k, k) tensor is formed in float32 to halve its memory traffic; its
        # three roundings (q, the sum, the product) add at most 4 u_32 relative
        # error, which the bound includes.
        buffer = np.empty((p.shape[0], *self.q.shape), dtype=np.float32)
        # Pairs that share nothing get q = inf and a factor 1, hence +inf.
        np.add(p.astype(np.float32)[:, None, :], self.q_open[None, :, :], out=buffer)
        np.multiply(buffer, self.inverse[None, :, :], out=buffer)
        scores = buffer.min(axis=2).astype(np.float64)
        slack = p_err.max(axis=1)[:, None] + _F32_REL * scores
        slack[(scores == 0) & self.exact_self[None, :]] = 0.0
        return scores, slack

    def exact_candidate_scores(self, blocks: list[np.ndarray]) -> np.ndarray:
        """The same scores with every term exact and modalities summed in order."""
        has = self.plan.centers.mask
        n_rows, k = blocks[0].shape[0], has.shape[0]
        num = np.zeros((n_rows, k, k))
        for m in range(self.pattern.size):
            if self.pattern[m]:
                observed = pairwise_exact_sq(blocks[m], self.plan.exact_blocks[m])
                num += np.where(has[:, m][None, :], observed, 0.0)[:, None, :]
            else:
                both = np.outer(has[:, m], has[:, m])
                num += np.where(both, self.plan.center_sq[m], 0.0)[None, :, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            pairs = np.where(self.count[None] > 0, num / self.count[None], np.inf)
        return pairs.min(axis=2)


def _greedy_sources(blocks, mask, centers: Centers, terms: _PatternTerms, gamma) -> np.ndarray:
    has = centers.mask
    n_rows, k = mask.shape[0], centers.k
    p = np.zeros((n_rows, k))
    bound = np.zeros((n_rows, k))
    for m in np.flatnonzero(terms.pattern):
        sq, norms = modality_sq_dists(blocks[m], centers.blocks[m], centers.norms[m])
        p += np.where(has[:, m][None, :], sq, 0.0)
        bound += np.where(has[:, m][None, :], norms, 0.0)
    scores, slack = terms.candidate_scores(p, gamma * bound)
    chosen, ambiguous = _choose(scores, terms.eligible, slack)
    if ambiguous.size:
        exact_blocks = [b[ambiguous].astype(np.float64) for b in blocks]
        exact_scores = terms.exact_candidate_scores(exact_blocks)
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
