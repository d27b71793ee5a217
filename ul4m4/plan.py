"""Centre-only terms of the greedy completion, computed once per fitted model.

For sample i with observed set O and candidate f (sample i completed from
centre f), ``d(candidate_f, c_j)^2 = (P[i, j] + Q[f, j]) / (cO[j] + cM[f, j])``
where ``P`` is the observed-part numerator (a sample-centre GEMM) and ``Q``,
``cO`` and ``cM`` depend only on the sample's pattern. :class:`CompletionPlan`
holds the per-model pieces, :class:`PatternTerms` the per-pattern ones and the
candidate scores of host rows (:meth:`PatternTerms.candidate_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._kernels import candidate_minimum
from .blocks import PackedBlocks
from .centers import Centers
from .distance import modality_sq_dists, pairwise_exact_sq, squared_norms

__all__ = ["CANDIDATE_TRIPLES_PER_STEP", "F32_REL", "CompletionPlan", "PatternTerms"]

#: Relative rounding bound of the float32 candidate tensor (p, q, sum, product).
F32_REL = 8 * float(np.finfo(np.float32).eps)
#: Largest observed-part numerator the float32 candidate kernel ranks: its sums with the
#: centre-only terms stay finite. Rows beyond it (a float64 model, rows far out) are
#: left to the exact float64 recheck.
F32_SAFE = float(np.finfo(np.float32).max) / 4
#: (row, candidate, centre) triples the greedy completion scores per step: a step has at
#: most this over k**2 rows. The float32 minimum never forms the (B, k, k) tensor, but the
#: exact rescoring of a step's ambiguous rows does (exact_candidate_scores, float64).
CANDIDATE_TRIPLES_PER_STEP = 1 << 22


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
        norms = squared_norms([block])[0] / block.shape[1]
        size = np.maximum(1.0, norms[:, None] + norms[None, :])
        if not np.all(cc[off_diagonal] > margin * size[off_diagonal]):
            return False
    return True


@dataclass
class PatternTerms:
    """Pattern-only pieces of d(candidate_f, c_j)^2 = (P[i,j] + Q[f,j]) / (cO[j] + cM[f,j])."""

    plan: CompletionPlan
    pattern: np.ndarray
    missing: np.ndarray
    q: np.ndarray  # (k, k)
    count: np.ndarray  # (k, k) = cO[None, :] + cM
    eligible: np.ndarray  # (n_missing, k): centre f has missing modality m
    inverse: np.ndarray = field(init=False)  # (k, k) float32 1 / count (1 where 0)
    q_open: np.ndarray = field(init=False)  # (k, k) float32 q, +inf where nothing is shared
    exact_self: np.ndarray = field(init=False)  # (k,) centre shares no observed modality

    @classmethod
    def build(cls, plan: CompletionPlan, pattern: np.ndarray) -> PatternTerms:
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

    def slack(self, scores: np.ndarray, p_err_max: np.ndarray) -> np.ndarray:
        """Rounding bound of the candidate scores of the float32 tensor.

        Every pair's error is at most ``p_err[i, j] / count[f, j] <= max_j
        p_err[i, j]`` (only pairs that share an observed modality carry error,
        and their count is >= 1), plus the tensor's three float32 roundings (q,
        the sum, the product: at most 4 u_32 relative). A centre f sharing no
        observed modality has the exact self pair ``d(candidate_f, c_f) = 0``;
        when its score is 0 it is exactly 0 (no pair is negative), so its bound
        is 0 and exact ties among such candidates need no recheck.
        """
        slack = p_err_max[:, None] + F32_REL * scores
        slack[(scores == 0) & self.exact_self[None, :]] = 0.0
        return slack

    def candidate_scores(self, blocks: PackedBlocks, rounding: float
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Candidate scores ``r[i, f] = min_j d(candidate_f, c_j)^2`` of host rows, and bounds.

        ``blocks`` are rows of this pattern. The observed-part numerator ``P`` (B, k)
        comes from one GEMM per observed modality in float64 (with its rounding
        bound, ``rounding`` times the norms); the minimum over ``j`` is taken in
        float32 by the compiled kernel, without the (B, k, k) tensor.
        """
        centers = self.plan.centers
        has = centers.mask
        p = np.zeros((blocks.n_rows, centers.k))
        bound = np.zeros((blocks.n_rows, centers.k))
        # Every row observes the modalities of ``pattern``: their values hold every row.
        for m in np.flatnonzero(self.pattern):
            sq, norms = modality_sq_dists(blocks.values[m], centers.blocks[m], centers.norms[m])
            p += np.where(has[:, m][None, :], sq, 0.0)
            bound += np.where(has[:, m][None, :], norms, 0.0)
        # Float32; slack() covers its rounding. Pairs that share nothing get q = inf
        # and a factor 1, hence +inf.
        beyond = ~(p.max(axis=1, initial=0.0) < F32_SAFE)
        p[beyond] = 0.0
        scores = np.empty(p.shape)
        candidate_minimum(np.ascontiguousarray(p, dtype=np.float32),
                          np.ascontiguousarray(self.q_open.T),
                          np.ascontiguousarray(self.inverse.T), scores)
        slack = self.slack(scores, (rounding * bound).max(axis=1))
        # Every candidate of such a row is in doubt, so the row is ranked exactly.
        scores[beyond], slack[beyond] = 0.0, np.inf
        return scores, slack

    def exact_candidate_scores(self, blocks: list[np.ndarray]) -> np.ndarray:
        """The scores with every term exact and modalities summed in order (float64 blocks)."""
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
