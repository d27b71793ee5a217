"""A plain, literal, pair-by-pair implementation of the method, for comparison.

Everything is a Python loop over samples, centres and modalities, straight from
the definitions (squared partial distance, k-means++ with the same random draws,
Lloyd with the same empty-cluster rule, the greedy completion as a search over
(candidate, centre) pairs). Only the tests use it; it is deliberately slow.
"""

from __future__ import annotations

import numpy as np


def zscore(X: list[np.ndarray], mean: list[np.ndarray], scale: list[np.ndarray], dtype):
    """z = (x - mu) / sigma in the working dtype; a missing row stays NaN."""
    return [
        (x.astype(dtype) - mu.astype(dtype)) / s.astype(dtype)
        for x, mu, s in zip(X, mean, scale, strict=True)
    ]


def sq_dist(u: list, u_has: list[bool], v: list, v_has: list[bool]) -> float:
    """Squared partial distance between two partial points (lists of vectors)."""
    total = 0.0
    count = 0
    for m in range(len(u)):
        if u_has[m] and v_has[m]:
            a = np.asarray(u[m], dtype=np.float64)
            b = np.asarray(v[m], dtype=np.float64)
            total += np.sum((a - b) ** 2) / a.shape[0]
            count += 1
    return total / count if count else np.inf


def scale(Z, i, c, c_has) -> float:
    """Mean over shared modalities of (||z||^2 + ||c||^2) / d_m: the size of a distance."""
    total, count = 0.0, 0
    for m in range(len(Z)):
        if has(Z, i)[m] and c_has[m]:
            a = Z[m][i].astype(np.float64)
            b = np.asarray(c[m], dtype=np.float64)
            total += (np.sum(a * a) + np.sum(b * b)) / a.shape[0]
            count += 1
    return total / count if count else 0.0


def point(Z: list[np.ndarray], i: int) -> list[np.ndarray]:
    return [z[i] for z in Z]


def has(Z: list[np.ndarray], i: int) -> list[bool]:
    return [not np.isnan(z[i]).all() for z in Z]


def kmeans_plusplus(Z, k, rng):
    n = Z[0].shape[0]
    seeds = [int(rng.randint(n))]
    while len(seeds) < k:
        min_sq = np.array(
            [min(sq_dist(point(Z, i), has(Z, i), point(Z, s), has(Z, s)) for s in seeds)
             for i in range(n)]
        )
        unreachable = np.flatnonzero(np.isinf(min_sq))
        if unreachable.size:
            seeds.append(int(unreachable[rng.randint(unreachable.size)]))
            continue
        cumulative = np.cumsum(min_sq)
        if cumulative[-1] > 0:
            u = rng.random_sample() * cumulative[-1]
            seeds.append(int(min(np.searchsorted(cumulative, u, side="right"), n - 1)))
        else:
            remaining = np.setdiff1d(np.arange(n), seeds)
            seeds.append(int(remaining[rng.randint(remaining.size)]))
    return seeds


def nearest(Z, i, C, S):
    best, label = np.inf, 0
    for j in range(len(S)):
        d = sq_dist(point(Z, i), has(Z, i), C[j], S[j])
        if d < best:
            best, label = d, j
    return label, best


def lloyd(Z, C, S, max_iter, dtype, one_step=False):
    """Lloyd from centres C (list of lists of vectors) with modality sets S.

    Returns ``(labels, C, S, converged)``; without convergence, the labels of the
    last assignment and the centres they were assigned to.
    """
    n, M = Z[0].shape[0], len(Z)
    k = len(S)
    previous = None
    for iteration in range(max_iter):
        assigned = [nearest(Z, i, C, S) for i in range(n)]
        labels = np.array([a[0] for a in assigned])
        new_C, new_S = [], []
        for j in range(k):
            vectors, present = [], []
            for m in range(M):
                total, count = None, 0
                for i in range(n):
                    if labels[i] == j and has(Z, i)[m]:
                        value = Z[m][i].astype(np.float64)
                        total = value if total is None else total + value
                        count += 1
                if count:
                    vectors.append((total / count).astype(dtype))
                    present.append(True)
                else:
                    vectors.append(np.zeros(Z[m].shape[1], dtype=dtype))
                    present.append(False)
            new_C.append(vectors)
            new_S.append(present)
        if one_step:
            return labels, new_C, new_S, False
        unchanged = previous is not None and np.array_equal(labels, previous)
        # Empty clusters take the samples farthest from their own centres, among
        # those not within rounding noise of it.
        own = [sq_dist(point(Z, i), has(Z, i), C[labels[i]], S[labels[i]]) for i in range(n)]
        empty = [j for j in range(k) if not np.any(labels == j)]
        order = sorted(range(n), key=lambda i: (-own[i], i))
        noise = np.sqrt(np.finfo(dtype).eps)
        candidates = [i for i in order if own[i] > noise * scale(Z, i, C[labels[i]],
                                                                  S[labels[i]])]
        candidates = candidates[: len(empty)]
        for j, i in zip(empty, candidates, strict=False):
            new_C[j] = [Z[m][i].copy() for m in range(M)]
            new_S[j] = has(Z, i)
        if unchanged and not candidates:
            return labels, C, S, True
        if iteration == max_iter - 1:
            return labels, C, S, False
        previous = labels
        C, S = new_C, new_S


def greedy_complete(z: list, z_has: list[bool], C, S) -> dict[int, int]:
    """The greedy completion, literally: returns {missing modality: source centre}."""
    k, M = len(S), len(z)
    missing = {m for m in range(M) if not z_has[m]}
    candidates = {}
    for f in range(k):
        vectors = [z[m] if z_has[m] else (C[f][m] if S[f][m] else None) for m in range(M)]
        present = [z_has[m] or S[f][m] for m in range(M)]
        candidates[f] = (vectors, present)
    result = {}
    while missing and candidates:
        best = None
        for f in sorted(candidates):
            vectors, present = candidates[f]
            for j in range(k):
                d = sq_dist(vectors, present, C[j], S[j])
                if best is None or d < best[0]:
                    best = (d, f, j)
        f = best[1]
        for m in sorted(missing):
            if S[f][m]:
                result[m] = f
        missing -= set(result)
        del candidates[f]
    return result


def fitted_zscore(imp, X, dtype=np.float64):
    """``X`` z-scored with a fitted imputer's statistics, as ``zscore`` lists it."""
    names = imp.modalities_
    return zscore(
        [np.asarray(X[n]) for n in names],
        [imp.mean_[n] for n in names],
        [imp.scale_[n] for n in names],
        dtype,
    )


def fitted_centres(imp):
    """The first member's z-space centres ``C[j][m]`` and modality sets ``S[j][m]``."""
    centers = imp.model_.members[0].centers
    C = [[b[j] for b in centers.blocks] for j in range(centers.k)]
    S = [list(map(bool, row)) for row in centers.mask]
    return C, S
