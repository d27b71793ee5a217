"""A deliberately literal, per-sample implementation of the greedy completion (SPEC §2).

It is the yardstick the vectorised engine is timed against, so it follows the
definition step by step and pays for every (candidate, centre) pair separately,
like the public reference scripts do. Nothing here is meant to be fast.
"""

from __future__ import annotations

import numpy as np

__all__ = ["literal_complete", "partial_distance", "zscore_centres"]

#: Source codes, as returned by ``UL4M4Imputer.transform(..., return_sources=True)``.
OBSERVED = -1
FROM_MEAN = -2


def partial_distance(a: list[np.ndarray | None], b: list[np.ndarray | None]) -> float:
    """``sqrt(mean over shared modalities of ||a^m - b^m||^2 / d_m)``; +inf if none is shared."""
    total = 0.0
    shared = 0
    for u, v in zip(a, b, strict=True):
        if u is None or v is None:
            continue
        diff = u - v
        total += float(diff @ diff) / diff.size
        shared += 1
    if shared == 0:
        return float("inf")
    return float(np.sqrt(total / shared))


def zscore_centres(imputer) -> list[list[np.ndarray | None]]:
    """The fitted centres in z-space, one list of per-modality vectors (None = absent) per centre.

    Only public attributes are used, so the yardstick does not share code with the engine.
    """
    names = imputer.modalities_
    k = imputer.center_modalities_.shape[0]
    centres = []
    for j in range(k):
        vectors: list[np.ndarray | None] = []
        for m, name in enumerate(names):
            if imputer.center_modalities_[j, m]:
                raw = imputer.cluster_centers_[name][j].astype(np.float64)
                vectors.append((raw - imputer.mean_[name]) / imputer.scale_[name])
            else:
                vectors.append(None)
        centres.append(vectors)
    return centres


def zscore_sample(imputer, rows: dict[str, np.ndarray], i: int) -> list[np.ndarray | None]:
    """Sample ``i`` of ``rows`` in z-space; None where the modality is missing (an all-NaN row)."""
    vectors: list[np.ndarray | None] = []
    for name in imputer.modalities_:
        x = np.asarray(rows[name][i], dtype=np.float64)
        if np.isnan(x).all():
            vectors.append(None)
        else:
            vectors.append((x - imputer.mean_[name]) / imputer.scale_[name])
    return vectors


def literal_complete(
    sample: list[np.ndarray | None], centres: list[list[np.ndarray | None]]
) -> list[int]:
    """Which centre fills each modality of one sample, by the greedy search of SPEC §2.

    For every centre f the candidate is the sample with ``c_f^m`` filled in for each
    missing m that f has. The (candidate f, centre j) pair of smallest partial
    distance is taken (ties: lowest f, then lowest j), candidate f is removed and
    the still-missing modalities it carries are copied from centre f. Returns one
    code per modality: -1 observed, -2 training mean (no centre has it), else f.
    """
    n_mod = len(sample)
    missing = {m for m in range(n_mod) if sample[m] is None}
    sources = [OBSERVED if sample[m] is not None else FROM_MEAN for m in range(n_mod)]
    if not missing:
        return sources
    k = len(centres)
    candidates = []
    for f in range(k):
        candidate = list(sample)
        for m in missing:
            if centres[f][m] is not None:
                candidate[m] = centres[f][m]
        candidates.append(candidate)
    # Candidates never change during the search, so every pair is paid for once,
    # one (f, j) at a time.
    dist = np.empty((k, k))
    for f in range(k):
        for j in range(k):
            dist[f, j] = partial_distance(candidates[f], centres[j])
    remaining = list(range(k))
    while missing and remaining:
        best_f, best_d = remaining[0], float("inf")
        for f in remaining:
            row_min = float("inf")
            for j in range(k):
                if dist[f, j] < row_min:
                    row_min = dist[f, j]
            if row_min < best_d:
                best_f, best_d = f, row_min
        remaining.remove(best_f)
        for m in sorted(missing):
            if centres[best_f][m] is not None:
                sources[m] = best_f
                missing.discard(m)
    return sources
