"""Conditional low-rank mixture: the model of the "mixture" completion rule.

In the z-space of a fitted imputer, ``z | c ~ N(mu_c, W W^T + Psi)`` with
``c ~ pi``: K cluster means, one (D, r) loading matrix ``W`` shared by the
clusters (split per modality into ``W_m``) and a diagonal noise ``Psi``
(``psi_m`` per coordinate). k = 1 is probabilistic PCA (factor analysis); r = 0
a mixture of diagonal Gaussians whose conditional mean is a soft blend of the
centres. A missing block is filled with its conditional mean given the row's
observed blocks.

For a row observing the modalities O, Woodbury keeps every inverse r x r::

    A_O = sum_{m in O} W_m^T Psi_m^-1 W_m,   S_O = (I + A_O)^-1
    u_i = sum_{m in O} W_m^T Psi_m^-1 z_i^m, v_c = sum_{m in O} W_m^T Psi_m^-1 mu_c^m
    Delta_ic = ||z_i - mu_c||^2_{Psi_O} - (u_i - v_c)^T S_O (u_i - v_c)

``Delta_ic`` is the Mahalanobis distance under ``C_O = W_O W_O^T + Psi_O``. The
fill of a missing block m is ``sum_c g_ic (mu_c^m + W_m S_O (u_i - v_c))
= g_i Q_m + u_i S_O W_m^T`` with ``Q_m = mu^m - V S_O W_m^T``, a function of the
parameters and the pattern alone.

The fit is EM with a fixed number of iterations, on float64 sufficient statistics
of host row chunks (GEMMs per pattern group). The fill is per row: each product
of a row's data with the parameters is its own stacked ``np.matmul`` (as
:func:`ul4m4.complete.row_weighted_sums`), so a row's fill does not depend, bit
for bit, on the other rows of its batch.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.linalg

from ._utils.validation import Interval, Options, check_params
from .centers import Centers
from .complete import row_dots, row_weighted_sums, soft_weights
from .engine import Engine, View

__all__ = ["Mixture", "conditional_fill", "fit_mixture", "fit_mixtures", "log_likelihood"]

#: Floor of a noise variance, relative to its coordinate's z-space variance...
NOISE_FLOOR = 1e-3
#: Rows the EM fits on at most (a seeded sample beyond): a mixture of K clusters and
#: rank r has (K + r) parameters per dimension, far fewer than this many rows.
MAX_ROWS = 32_768
#: Fit rows (every j-th) that the starting loadings and noise are estimated on.
INIT_ROWS = 8192
#: Bytes of float64 fit rows the EM keeps in memory across its iterations.
GROUP_CACHE_BYTES = 256 * 2**20
#: ...and absolute (a constant coordinate must not give a zero variance).
MIN_NOISE = 1e-6

_LOG_2PI = float(np.log(2 * np.pi))


@dataclass
class Mixture:
    """Parameters of the conditional low-rank mixture, in z-space, float64.

    Attributes
    ----------
    log_weights : ndarray of shape (K,)
        log pi (may be -inf for a cluster of zero weight).
    means : list of ndarray (K, d_m)
        Cluster means per modality.
    loadings : list of ndarray (d_m, r)
        Shared loadings per modality (r may be 0).
    noise : list of ndarray (d_m,)
        Noise variances per coordinate, > 0.

    Examples
    --------
    >>> import numpy as np
    >>> mix = Mixture(np.log([0.5, 0.5]), [np.zeros((2, 3))], [np.ones((3, 1))], [np.ones(3)])
    >>> mix.k, mix.rank
    (2, 1)
    """

    log_weights: np.ndarray
    means: list[np.ndarray]
    loadings: list[np.ndarray]
    noise: list[np.ndarray]

    @property
    def k(self) -> int:
        return int(self.log_weights.shape[0])

    @property
    def rank(self) -> int:
        return int(self.loadings[0].shape[1])


@dataclass
class _Pattern:
    """What rows of one observed set O need of the parameters (computed from them alone)."""

    observed: np.ndarray  # indices of the modalities in O
    project: list[np.ndarray]  # per m in O, (d_m, K + r): [mu_m^T | W_m] / psi_m
    inv_noise: list[np.ndarray]  # per m in O, 1 / psi_m
    cov: np.ndarray  # S_O (r, r)
    v: np.ndarray  # V (K, r)
    solve: np.ndarray  # (r, r + K): [S_O | S_O V^T]
    const: np.ndarray  # (K,): ||mu_c||^2_Psi - v_c^T S_O v_c
    log_det: float  # log det C_O
    dim: int  # sum of d_m over O


@dataclass
class _ModalityTerms:
    """Per modality, the parameters' terms every pattern sums (computed once per use)."""

    inv: list[np.ndarray]  # 1 / psi_m
    project: list[np.ndarray]  # (d_m, K + r): [mu_m^T | W_m] / psi_m
    a: np.ndarray  # (M, r, r): W_m^T Psi_m^-1 W_m
    v: np.ndarray  # (M, K, r): mu_m Psi_m^-1 W_m
    mm: np.ndarray  # (M, K): ||mu_c^m||^2_Psi
    log_det: np.ndarray  # (M,): log det Psi_m
    dims: np.ndarray  # (M,)

    @classmethod
    def of(cls, mix: Mixture) -> _ModalityTerms:
        inv = [1.0 / psi for psi in mix.noise]
        return cls(
            inv,
            [np.hstack([mu.T, w]) * i[:, None]
             for mu, w, i in zip(mix.means, mix.loadings, inv, strict=True)],
            np.stack([w.T @ (w * i[:, None]) for w, i in zip(mix.loadings, inv, strict=True)]),
            np.stack([(mu * i) @ w for mu, w, i in zip(mix.means, mix.loadings, inv,
                                                       strict=True)]),
            np.stack([np.sum(mu * mu * i, axis=1) for mu, i in zip(mix.means, inv,
                                                                   strict=True)]),
            np.array([float(np.sum(np.log(psi))) for psi in mix.noise]),
            np.array([mu.shape[1] for mu in mix.means]))


def _patterns(terms: _ModalityTerms, patterns: np.ndarray) -> list[_Pattern]:
    """The Woodbury terms of each missing pattern (rows of ``patterns``), from the
    per-modality terms: one stacked inverse and determinant for all of them.

    The sums over a pattern's modalities are reductions along the modality axis, so
    a pattern's terms do not depend on the other patterns asked with it.
    """
    on = patterns.astype(np.float64)
    r = terms.a.shape[1]
    # einsum's own loops (not BLAS): each sum runs over the modalities in order.
    inner = np.eye(r) + np.einsum("pm,mrs->prs", on, terms.a)
    cov = np.linalg.inv(inner)
    cov = (cov + np.swapaxes(cov, 1, 2)) / 2  # exactly symmetric: S_O W^T and W S_O agree
    v = np.einsum("pm,mkr->pkr", on, terms.v)
    const = np.einsum("pm,mk->pk", on, terms.mm) - np.sum(np.matmul(v, cov) * v, axis=2)
    log_det = np.sum(on * terms.log_det, axis=1) + np.linalg.slogdet(inner)[1]
    dims = patterns.astype(np.int64) @ terms.dims
    out = []
    for p, pattern in enumerate(patterns):
        observed = np.flatnonzero(pattern)
        out.append(_Pattern(observed, [terms.project[m] for m in observed],
                            [terms.inv[m] for m in observed], cov[p], v[p],
                            np.hstack([cov[p], cov[p] @ v[p].T]), const[p], float(log_det[p]),
                            int(dims[p])))
    return out


def _e_step(mix: Mixture, terms: _Pattern, blocks: Sequence[np.ndarray | None], n: int,
            temperature: float | None, want_loglik: bool = True
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Responsibilities, ``u`` and log-likelihoods of n rows of one pattern, each row's
    products taken alone (its values independent of the batch)."""
    k, r = mix.k, mix.rank
    y, zz = np.zeros((n, k + r)), np.zeros(n)
    for j, m in enumerate(terms.observed):
        y = y + row_weighted_sums(blocks[m], terms.project[j])
        zz = zz + row_dots(blocks[m] * terms.inv_noise[j], blocks[m])
    return _posterior(mix, terms, y, zz, temperature, per_row=True, want_loglik=want_loglik)


def _posterior(mix: Mixture, terms: _Pattern, y: np.ndarray, zz: np.ndarray,
               temperature: float | None, per_row: bool, want_loglik: bool = True
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Responsibilities (n, K), ``u`` (n, r) and log-likelihoods (n,; None unless
    ``want_loglik``) of rows of one pattern, from their products
    ``y = z [mu^T | W] / psi`` and ``zz = ||z||^2_Psi``."""
    k, r = mix.k, mix.rank
    u = y[:, k:]
    us = row_weighted_sums(u, terms.solve) if per_row else u @ terms.solve
    delta = (zz - row_dots(us[:, :r], u))[:, None] - 2 * (y[:, :k] - us[:, r:]) + terms.const
    delta = np.maximum(delta, 0.0)  # rounding of the expansion
    with np.errstate(invalid="ignore"):
        logits = mix.log_weights - delta / 2
    top = np.max(logits, axis=1, keepdims=True)
    p = np.exp(logits - top)
    total = np.sum(p, axis=1, keepdims=True)
    loglik = None
    if want_loglik:
        loglik = (top + np.log(total))[:, 0] - (terms.log_det + terms.dim * _LOG_2PI) / 2
    if temperature is not None:
        w, _ = soft_weights(delta, np.zeros_like(delta), np.ones(k, dtype=bool), temperature)
        p = w * np.exp(mix.log_weights - np.max(mix.log_weights))
        total = np.sum(p, axis=1, keepdims=True)
    return p / total, u, loglik


def _fill(mix: Mixture, terms: _Pattern, m: int, g: np.ndarray, u: np.ndarray,
          with_variance: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Conditional mean (n, d_m) and, ``with_variance``, the mean predicted variance
    (n,) of missing block m."""
    w, psi = mix.loadings[m], mix.noise[m]
    b = terms.cov @ w.T  # S_O W_m^T (r, d_m)
    q = mix.means[m] - terms.v @ b  # a_ic - f_i = q_c - g_i q
    fill = row_weighted_sums(np.hstack([g, u]), np.vstack([q, b]))
    if not with_variance:
        return fill, None
    gram = q @ q.T
    spread = row_weighted_sums(g, np.diag(gram)[:, None])[:, 0] - row_dots(
        row_weighted_sums(g, gram), g)
    base = float(np.sum(w * b.T)) + float(np.sum(psi))  # tr(W S W^T) + tr(Psi)
    return fill, (np.maximum(spread, 0.0) + base) / psi.size


def _groups(mask: np.ndarray):
    """``(pattern, rows)`` per distinct row pattern of ``mask`` (rows ascending).

    Patterns are compared as integer codes (one bit per modality), far faster
    than ``np.unique(mask, axis=0)``, which sorts the rows as records.
    """
    n_mod = mask.shape[1]
    if n_mod > 62:
        patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
    else:
        codes = mask.astype(np.int64) @ (np.int64(1) << np.arange(n_mod, dtype=np.int64))
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        patterns = mask[first]
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(patterns) + 1))
    for p, pattern in enumerate(patterns):
        yield pattern, order[bounds[p]:bounds[p + 1]]


def conditional_fill(mixture: Mixture, blocks: Sequence[np.ndarray], mask: np.ndarray,
                     temperature: float | None = None, modalities: Sequence[int] | None = None,
                     with_variance: bool = True) -> tuple[list[np.ndarray | None], np.ndarray]:
    """Fill missing blocks with their conditional mean given the observed ones.

    Parameters
    ----------
    mixture : Mixture
    blocks : list of ndarray (n, d_m)
        z-space blocks (what :meth:`ul4m4.engine.Engine.take` returns); the
        rows of unobserved modalities are ignored.
    mask : ndarray of shape (n, M), bool
        Which modalities each row observes.
    temperature : float or None
        None: cluster weights are the posterior ``pi_c exp(-Delta_ic / 2)``.
        A float T: the soft rule's weights over ``Delta``
        (:func:`ul4m4.complete.soft_weights`) times ``pi_c``, renormalised.
    modalities : sequence of int or None
        The modalities to fill (default all).
    with_variance : bool
        Compute the predicted variances (False leaves ``variance`` all NaN).

    Returns
    -------
    fills : list of ndarray (n, d_m) float64 or None
        Per asked modality the completed block: observed rows as given, missing
        rows filled; None for modalities not asked. A row with nothing observed
        gets the prior mean ``sum_c pi_c mu_c^m``.
    variance : ndarray of shape (n, M), float64
        Predicted variance per coordinate of each filled block (mean over its
        coordinates): the conditional covariance's plus the spread of the
        cluster fills. NaN where observed or not asked.

    Each row's values depend on that row alone, bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> mix = Mixture(np.zeros(1), [np.zeros((1, 1)), np.zeros((1, 1))],
    ...               [np.ones((1, 1)), np.ones((1, 1))], [np.ones(1), np.ones(1)])
    >>> fills, var = conditional_fill(mix, [np.array([[2.0]]), np.zeros((1, 1))],
    ...                               np.array([[True, False]]))
    >>> fills[1].tolist(), var.tolist()  # cov 1 / var 2: half of z, 2 - 1/2
    ([[1.0]], [[nan, 1.5]])
    """
    check_params({"temperature": temperature},
                 {"temperature": [Options((None,)), Interval(numbers.Real, 0, closed="neither")]})
    mask = np.asarray(mask, dtype=bool)
    n, n_mod = mask.shape
    wanted = range(n_mod) if modalities is None else [int(m) for m in modalities]
    fills: list[np.ndarray | None] = [None] * n_mod
    variance = np.full((n, n_mod), np.nan)
    for m in wanted:
        fills[m] = np.where(mask[:, m][:, None], np.asarray(blocks[m], dtype=np.float64), 0.0)
    groups = [(pattern, rows) for pattern, rows in _groups(mask)
              if any(not pattern[m] for m in wanted)]
    patterns = (_patterns(_ModalityTerms.of(mixture), np.array([p for p, _ in groups]))
                if groups else [])
    for (pattern, rows), terms in zip(groups, patterns, strict=True):
        sub = [np.asarray(b[rows], dtype=np.float64) if pattern[m] else None
               for m, b in enumerate(blocks)]
        g, u, _ = _e_step(mixture, terms, sub, rows.size, temperature, want_loglik=False)
        for m in (m for m in wanted if not pattern[m]):
            fills[m][rows], var = _fill(mixture, terms, m, g, u, with_variance)
            if var is not None:
                variance[rows, m] = var
    return fills, variance


def log_likelihood(mixture: Mixture, blocks: Sequence[np.ndarray], mask: np.ndarray
                   ) -> np.ndarray:
    """Observed-data log density of each row (0 for a row with nothing observed).

    Examples
    --------
    >>> import numpy as np
    >>> mix = Mixture(np.zeros(1), [np.zeros((1, 1))], [np.zeros((1, 0))], [np.ones(1)])
    >>> round(float(log_likelihood(mix, [np.zeros((1, 1))], np.ones((1, 1), bool))[0]), 6)
    -0.918939
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape[0])
    groups = [(pattern, rows) for pattern, rows in _groups(mask) if pattern.any()]
    if not groups:
        return out
    patterns = _patterns(_ModalityTerms.of(mixture), np.array([p for p, _ in groups]))
    for (pattern, rows), terms in zip(groups, patterns, strict=True):
        sub = [np.asarray(b[rows], dtype=np.float64) if pattern[m] else None
               for m, b in enumerate(blocks)]
        out[rows] = _e_step(mixture, terms, sub, rows.size, None)[2]
    return out


# ----------------------------------------------------------------------- fit
def fit_mixture(view: View, engine: Engine, centers: Centers, labels: np.ndarray, *, rank: int,
                ridge: float = 1.0, prior_count: float = 1.0, n_iter: int = 15,
                max_rows: int = MAX_ROWS, rng: np.random.RandomState) -> Mixture:
    """Fit the conditional low-rank mixture by EM, starting from k-means.

    Parameters
    ----------
    view, engine
        The training data's z-space view and its engine (rows are read with
        :meth:`ul4m4.engine.Engine.take`, ``view.chunk_rows`` at a time).
    centers : Centers
        z-space k-means centres: the initial means (0 where a centre lacks a
        modality); K = ``centers.k``.
    labels : ndarray of shape (n_samples,)
        k-means labels of the view's rows: the initial one-hot responsibilities.
    rank : int
        r >= 0, the number of shared loadings.
    ridge : float
        Added to the loadings' normal equations (shrinks W toward 0).
    prior_count : float
        Pseudo-rows per cluster: shrinks the means toward the z-space mean 0 and
        the weights toward uniform, ``pi_c = (N_c + prior_count) / (n + K prior_count)``.
    n_iter : int
        EM iterations (fixed, no convergence test: few iterations regularise).
    max_rows : int
        Rows fitted on; beyond, a seeded sample of rows (sorted).
    rng : numpy.random.RandomState
        Draws that sample.

    Returns
    -------
    Mixture
        W starts from the top-r eigenvectors of the residual covariance (rows
        minus their centre, pairwise over observed modalities), Psi from the
        residual variance left; the noise is floored at ``NOISE_FLOOR`` times
        its coordinate's variance (and ``MIN_NOISE``). Deterministic.

    Examples
    --------
    >>> import numpy as np
    >>> from ul4m4 import UL4M4Imputer
    >>> from ul4m4.backends import NumpyEngine
    >>> from ul4m4.inference import transform_view
    >>> from ul4m4.settings import resolve_settings
    >>> rng = np.random.RandomState(0)
    >>> t = rng.normal(size=(200, 1))
    >>> X = {"a": t + 0.1 * rng.normal(size=(200, 2)), "b": -t + 0.1 * rng.normal(size=(200, 3))}
    >>> imp = UL4M4Imputer(2, random_state=0, dtype=np.float64).fit(X)
    >>> engine = NumpyEngine()
    >>> view = transform_view(X, imp.model_, resolve_settings(imp.get_params()), engine)
    >>> mix = fit_mixture(view, engine, imp.model_.members[0].centers, imp.model_.labels,
    ...                   rank=1, rng=np.random.RandomState(0))
    >>> mix.k, mix.rank, [w.shape for w in mix.loadings]
    (2, 1, [(2, 1), (3, 1)])
    """
    return fit_mixtures(view, engine, centers, labels, ranks=[rank], ridge=ridge,
                        prior_count=prior_count, n_iter=n_iter, max_rows=max_rows, rng=rng)[0]


def fit_mixtures(view: View, engine: Engine, centers: Centers, labels: np.ndarray, *,
                 ranks: Sequence[int], ridge: float = 1.0, prior_count: float = 1.0,
                 n_iter: int = 15, max_rows: int = MAX_ROWS,
                 rng: np.random.RandomState) -> list[Mixture]:
    """One mixture per rank of ``ranks`` from the same k-means start (see
    :func:`fit_mixture`): the fit rows are read, and the start covariance estimated,
    once for all of them."""
    for rank in ranks:
        check_params(
            {"rank": rank, "ridge": ridge, "prior_count": prior_count, "n_iter": n_iter,
             "max_rows": max_rows},
            {"rank": [Interval(numbers.Integral, 0)], "ridge": [Interval(numbers.Real, 0)],
             "prior_count": [Interval(numbers.Real, 0)],
             "n_iter": [Interval(numbers.Integral, 0)],
             "max_rows": [Interval(numbers.Integral, 1)]})
    labels = np.asarray(labels)
    if labels.shape != (view.n_samples,):
        raise ValueError(f"labels must have shape ({view.n_samples},) (one per row of the "
                         f"view), got {labels.shape}")
    total_dim = sum(b.shape[1] for b in centers.blocks)
    for rank in ranks:
        if rank > total_dim:
            raise ValueError(f"rank must be at most the total dimension {total_dim}, got "
                             f"{rank}")
    rows = _fit_rows(view, max_rows, rng)
    chunks = _chunks(rows, view.chunk_rows)
    # The start needs only a covariance estimate: every j-th fit row, at most INIT_ROWS.
    sample = rows[:: -(-rows.size // INIT_ROWS)]
    start = _Start.estimate(view, engine, centers, labels, _chunks(sample, view.chunk_rows))
    cached = _cached_batch(view, engine, rows)
    out = []
    for rank in ranks:
        mix = start.mixture(int(rank), prior_count)
        for _ in range(n_iter):
            batches = [cached] if cached is not None else (
                _Batch.read(view, engine, chunk) for chunk in chunks)
            mix = _maximise(mix, _expected_statistics(mix, batches), start.floors, ridge,
                            prior_count)
        out.append(mix)
    return out


def _chunks(rows: np.ndarray, size: int) -> list[np.ndarray]:
    return [rows[s : s + size] for s in range(0, rows.size, size)]


def _fit_rows(view: View, max_rows: int, rng: np.random.RandomState) -> np.ndarray:
    """The rows fitted on: those observing something, a sorted seeded sample beyond ``max_rows``."""
    rows = np.flatnonzero(view.mask.any(axis=1))
    if rows.size > max_rows:
        rows = np.sort(rng.choice(rows, max_rows, replace=False))
    return rows


@dataclass
class _Start:
    """What every mixture started from one k-means model shares: its means, the
    residual covariance, the cluster counts and the noise floors."""

    means: list[np.ndarray]
    cov: np.ndarray
    counts: np.ndarray
    floors: list[np.ndarray]
    split: list[slice]

    @classmethod
    def estimate(cls, view: View, engine: Engine, centers: Centers, labels: np.ndarray,
                 chunks) -> _Start:
        """Means from the centres; the residual covariance pairwise over observed modalities."""
        k, dims = centers.k, [b.shape[1] for b in centers.blocks]
        means = [np.where(centers.mask[:, m][:, None], b.astype(np.float64), 0.0)
                 for m, b in enumerate(centers.blocks)]
        edges = np.cumsum([0, *dims])
        gram = np.zeros((edges[-1], edges[-1]))
        z_sum, z_sq = np.zeros(edges[-1]), np.zeros(edges[-1])
        pairs, counts = np.zeros((len(dims), len(dims))), np.zeros(k)
        for chunk in chunks:
            blocks, mask = engine.take(view, chunk)
            lab = labels[chunk]
            z = np.hstack([np.where(mask[:, [m]], b.astype(np.float64), 0.0)
                           for m, b in enumerate(blocks)])
            resid = z - np.hstack([np.where(mask[:, [m]], mu[lab], 0.0)
                                   for m, mu in enumerate(means)])
            gram += resid.T @ resid
            z_sum += z.sum(axis=0)
            z_sq += (z * z).sum(axis=0)
            pairs += mask.T.astype(np.float64) @ mask
            counts += np.bincount(lab, minlength=k)
        seen = np.repeat(np.maximum(pairs, 1), dims, axis=0).repeat(dims, axis=1)
        n_seen = np.diag(seen)
        variance = np.maximum(z_sq / n_seen - (z_sum / n_seen) ** 2, 0.0)
        floors = np.maximum(NOISE_FLOOR * variance, MIN_NOISE)
        split = [slice(edges[m], edges[m + 1]) for m in range(len(dims))]
        return cls(means, gram / seen, counts, [floors[s] for s in split], split)

    def mixture(self, rank: int, prior_count: float) -> Mixture:
        """W from the covariance's top ``rank`` eigenvectors, Psi from what is left."""
        loadings = _top_loadings(self.cov, rank)
        noise = np.maximum(np.diag(self.cov) - np.sum(loadings * loadings, axis=1), 0.0)
        return Mixture(_log_weights(self.counts, prior_count), self.means,
                       [loadings[s] for s in self.split],
                       [np.maximum(noise[s], f) for s, f in zip(self.split, self.floors,
                                                                strict=True)])


def _top_loadings(cov: np.ndarray, rank: int) -> np.ndarray:
    """PPCA's loadings ``V_r (Lambda_r - sigma^2)^(1/2)`` from a covariance (D, rank)."""
    size = cov.shape[0]
    if rank == 0:
        return np.zeros((size, 0))
    values, vectors = scipy.linalg.eigh(cov, subset_by_index=[size - rank, size - 1])
    values, vectors = values[::-1], vectors[:, ::-1]
    rest = (np.trace(cov) - values.sum()) / max(size - rank, 1)
    return vectors * np.sqrt(np.maximum(values - rest, 0.0))


def _log_weights(counts: np.ndarray, prior_count: float) -> np.ndarray:
    with np.errstate(divide="ignore"):  # an empty cluster without prior gets -inf
        return np.log((counts + prior_count) / (counts.sum() + counts.size * prior_count))


@dataclass
class _Statistics:
    """Float64 expected sufficient statistics of one E-step, per modality m over its rows.

    With ``x = [onehot(c); t]`` (K + r), ``E[x x^T]`` summed over m's rows is
    ``[[diag(counts[m]), cross[m]], [cross[m]^T, tt[m]]]``; ``xz[m] = sum E[x] z^T``,
    ``zz[m]`` the per-coordinate sums of squares, ``rows[m]`` the rows observing m,
    ``total`` the cluster counts over all rows.
    """

    counts: np.ndarray  # (M, K)
    cross: np.ndarray  # (M, K, r)
    tt: np.ndarray  # (M, r, r)
    xz: list[np.ndarray]
    zz: list[np.ndarray]
    rows: np.ndarray
    total: np.ndarray

    @classmethod
    def zeros(cls, mix: Mixture) -> _Statistics:
        n_mod, k, r = len(mix.means), mix.k, mix.rank
        return cls(np.zeros((n_mod, k)), np.zeros((n_mod, k, r)), np.zeros((n_mod, r, r)),
                   [np.zeros((k + r, mu.shape[1])) for mu in mix.means],
                   [np.zeros(mu.shape[1]) for mu in mix.means], np.zeros(n_mod), np.zeros(k))

    def xx(self, m: int) -> np.ndarray:
        return np.block([[np.diag(self.counts[m]), self.cross[m]],
                         [self.cross[m].T, self.tt[m]]])


class _Batch(NamedTuple):
    """Fit rows read once: their pattern groups and, per modality, the float64 block of
    the rows observing it, those rows, the block squared and its column sums."""

    n: int
    groups: list
    rows: list
    blocks: list
    squares: list
    square_sums: list

    @classmethod
    def read(cls, view: View, engine: Engine, rows: np.ndarray) -> _Batch:
        blocks, mask = engine.take(view, rows)
        observing = [np.flatnonzero(mask[:, m]) for m in range(mask.shape[1])]
        data = [b[at].astype(np.float64) for b, at in zip(blocks, observing, strict=True)]
        squares = [d * d for d in data]
        return cls(mask.shape[0], list(_groups(mask)), observing, data, squares,
                   [q.sum(axis=0) for q in squares])


def _cached_batch(view: View, engine: Engine, rows: np.ndarray) -> _Batch | None:
    """All fit rows as one batch, read once, when their float64 blocks and squares fit
    in GROUP_CACHE_BYTES (the EM then reads no data per iteration and multiplies the
    largest blocks); None otherwise (each iteration reads the rows chunk by chunk)."""
    if 16 * rows.size * sum(view.data.dims) > GROUP_CACHE_BYTES:
        return None
    return _Batch.read(view, engine, rows)


def _expected_statistics(mix: Mixture, batches) -> _Statistics:
    """One E-step over the fit rows: per batch, one product per modality for every row
    observing it, the posterior per pattern group, one product per modality for the
    statistics."""
    k, r = mix.k, mix.rank
    stats, cache = _Statistics.zeros(mix), {}
    modality_terms = _ModalityTerms.of(mix)
    for batch in batches:
        new = [p for p, _ in batch.groups if p.any() and p.tobytes() not in cache]
        if new:
            for pattern, terms in zip(new, _patterns(modality_terms, np.array(new)),
                                      strict=True):
                cache[pattern.tobytes()] = terms
        y, zz = np.zeros((batch.n, k + r)), np.zeros(batch.n)
        for m, rows in enumerate(batch.rows):
            if rows.size:
                y[rows] += batch.blocks[m] @ modality_terms.project[m]
                zz[rows] += batch.squares[m] @ modality_terms.inv[m]
        expected = np.zeros((batch.n, k + r))  # E[x] = [g; t-bar] per row
        for pattern, rows in batch.groups:
            if not pattern.any():
                continue
            terms = cache[pattern.tobytes()]
            g, u, _ = _posterior(mix, terms, y[rows], zz[rows], None, per_row=False,
                                 want_loglik=False)
            _accumulate(stats, terms, g, u)
            expected[rows] = np.hstack([g, (u - g @ terms.v) @ terms.cov])
        for m, rows in enumerate(batch.rows):
            if rows.size:
                stats.xz[m] += expected[rows].T @ batch.blocks[m]
                stats.zz[m] += batch.square_sums[m]
    return stats


def _accumulate(stats: _Statistics, terms: _Pattern, g: np.ndarray, u: np.ndarray) -> None:
    """Add one pattern group's ``E[x x^T]`` pieces (E[t | i, c] = S (u_i - v_c))."""
    s, v = terms.cov, terms.v
    counts = g.sum(axis=0)
    gu = g.T @ u
    cross = (gu - counts[:, None] * v) @ s  # sum_i g_ic E[t | i, c]^T  (K, r)
    ug_v = gu.T @ v
    # sum_i sum_c g_ic E[t t^T | i, c] = n S + S (sum_ic g_ic (u_i - v_c)(u_i - v_c)^T) S
    tt = g.shape[0] * s + s @ (u.T @ u - ug_v - ug_v.T + v.T @ (counts[:, None] * v)) @ s
    observed = terms.observed
    stats.total += counts
    stats.counts[observed] += counts
    stats.cross[observed] += cross
    stats.tt[observed] += tt
    stats.rows[observed] += g.shape[0]


def _ridge_solve(a: np.ndarray, b: np.ndarray, positive: bool) -> np.ndarray:
    """``a^-1 b`` for the M-step's normal equations: a direct solve when both penalties
    make ``a`` positive definite, else least squares (a cluster of zero weight with no
    prior leaves the system singular). NumPy's LAPACK, as every product of the EM: a
    second BLAS library (SciPy's) would wait on the first one's spinning threads."""
    if positive:
        try:
            return np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            pass
    return np.linalg.lstsq(a, b, rcond=None)[0]


def _maximise(mix: Mixture, stats: _Statistics, floors: list[np.ndarray], ridge: float,
              prior_count: float) -> Mixture:
    """Ridge solve per modality for ``[mu^m; W_m^T]``, then the noise from the residuals."""
    k, r = mix.k, mix.rank
    penalty = np.diag(np.concatenate([np.full(k, float(prior_count)), np.full(r, float(ridge))]))
    means, loadings, noise = list(mix.means), list(mix.loadings), list(mix.noise)
    for m, xz in enumerate(stats.xz):
        if stats.rows[m] == 0:
            continue  # no fit row observes m: keep its initial parameters
        xx = stats.xx(m)
        theta = _ridge_solve(xx + penalty, xz, positive=prior_count > 0 and ridge > 0)
        resid = stats.zz[m] - 2 * np.sum(theta * xz, axis=0) + np.sum(theta * (xx @ theta),
                                                                       axis=0)
        means[m], loadings[m] = theta[:k], theta[k:].T.copy()
        noise[m] = np.maximum(resid / stats.rows[m], floors[m])
    return Mixture(_log_weights(stats.total, prior_count), means, loadings, noise)
