"""An inductive SoftImpute: a soft-thresholded low-rank model fitted on the training rows only.

SoftImpute (Mazumder, Hastie and Tibshirani, 2010) fills a matrix by repeating: put
the current low-rank estimate in the missing entries, take the SVD, shrink every
singular value by ``lambda`` (dropping those below it). Used as published it is
transductive: the rows to fill take part in the fit. Here it is fitted on the
training rows, in training z-space, and a new row is filled from the model alone:
its latent code is the ridge solution on its observed coordinates, as in
probabilistic PCA, so filling never refits and a row's fill does not depend on the
other rows it is sent with.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np
import scipy.linalg
from sklearn.utils import check_random_state

from .._utils.validation import Interval, Options, check_params
from ..validation import Multimodal
from .base import BaseImputer

__all__ = ["SoftImputeBaseline"]

#: Shrinkage ratios tried by ``shrinkage="auto"``, largest first (each fit starts from the
#: previous one, the warm-started path of Mazumder et al.).
SHRINKAGE_GRID = (0.2, 0.1, 0.05, 0.02, 0.01)
#: Share of the training rows with two or more observed modalities that lose one
#: observed block for the choice of ``shrinkage="auto"``.
_HOLDOUT_SHARE = 0.1

#: Floor of the ridge on the latent code, relative to the mean squared singular value:
#: keeps the solve well posed when the training residual is (numerically) zero.
_RIDGE_FLOOR = 1e-10


class SoftImputeBaseline(BaseImputer):
    """Inductive SoftImpute on the concatenated z-scored modalities.

    Parameters
    ----------
    rank : int, default=50
        Largest rank of the model; capped at ``D - 1`` (``D``: total dimensions) and at
        the number of training rows. Components whose shrunk singular value is 0 are
        dropped, so the fitted rank (``rank_``) may be lower.
    shrinkage : float or "auto", default="auto"
        ``lambda`` as a share of the largest singular value of the zero-filled
        z-scored training matrix (``fancyimpute`` uses 1/50). ``"auto"`` picks it from
        :data:`SHRINKAGE_GRID` without labels: one observed block of 10 % of the
        training rows that observe two modalities or more is hidden, the model is
        fitted along the grid (largest first, each fit warm-started from the last)
        and the share whose fill of the hidden blocks has the lowest block-MSE is
        refitted on all the training data.
    max_iter : int, default=100
        Largest number of SoftImpute iterations per fit.
    tol : float, default=1e-3
        Stop when the relative change of the imputed training entries,
        ``||L_new - L_old||_F / ||L_old||_F`` over the missing entries, is below it.
    random_state : int, RandomState instance or None, default=None
        Seed of the hidden blocks of ``shrinkage="auto"`` (nothing else is random).

    Attributes
    ----------
    components_ : ndarray of shape (rank_, D)
        Right singular vectors of the fitted low-rank training matrix.
    loadings_ : ndarray of shape (D, rank_)
        ``components_.T * s / sqrt(n)``: a training row is ``loadings_ @ a`` with a
        latent code ``a`` of unit mean square per component.
    noise_ : float
        Mean squared residual of the model on the observed training entries: the
        ridge of the latent-code solve (the noise-to-prior ratio of PPCA).
    shrinkage_ : float
        The share used; ``lambda_`` is the shrinkage applied to the singular values.
    shrinkage_scores_ : dict of float to float
        ``shrinkage="auto"``: block-MSE of the hidden blocks per share tried.
    n_iter_ : int
        Iterations of the final fit.

    Notes
    -----
    Each iteration costs one ``D x D`` Gram matrix of the training rows and its top
    ``rank`` eigenpairs: ``O(n D^2 + D^2 rank)``. Filling solves one
    ``rank x rank`` system per missing pattern for all rows that share it.
    The shrinkage biases the training fills toward 0, but a new row's fill,
    ``L_M (L_O^T L_O + noise I)^-1 L_O^T z_O`` with ``L = loadings_``, depends on the
    shrunk values only through the ridge: on exactly low-rank data it recovers the
    missing blocks.
    """

    name = "softimpute"

    def __init__(
        self,
        rank: int = 50,
        *,
        shrinkage: float | str = "auto",
        max_iter: int = 100,
        tol: float = 1e-3,
        random_state: Any = None,
    ) -> None:
        self.rank = rank
        self.shrinkage = shrinkage
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _check_params(self) -> None:
        check_params(
            {"rank": self.rank, "shrinkage": self.shrinkage, "max_iter": self.max_iter,
             "tol": self.tol},
            {"rank": [Interval(numbers.Integral, 1)],
             "shrinkage": [Options(("auto",)), Interval(numbers.Real, 0, 1, "left")],
             "max_iter": [Interval(numbers.Integral, 1)],
             "tol": [Interval(numbers.Real, 0)]})

    def _fit(self, data: Multimodal) -> None:
        self._check_params()
        blocks, mask = self._zscored(data)
        Z = np.hstack(blocks)
        dims = list(data.dims)
        rank = int(min(self.rank, max(Z.shape[1] - 1, 1), Z.shape[0]))
        s_max = np.sqrt(max(_top_eigen(Z, 1)[0][0], 0.0))
        self.shrinkage_scores_ = {}
        share = self.shrinkage
        if share == "auto":
            share = self._choose_shrinkage(Z, mask, dims, rank, s_max)
        fit = self._soft_impute(Z, np.repeat(mask, dims, axis=1), float(share) * s_max, rank)
        self.components_ = fit.vectors.T.copy()
        self.loadings_, self.noise_ = fit.loadings, fit.noise
        self.shrinkage_ = float(share)
        self.lambda_ = float(share) * s_max
        self.rank_ = int(fit.loadings.shape[1])
        self.n_iter_ = fit.n_iter

    def _choose_shrinkage(self, Z: np.ndarray, mask: np.ndarray, dims: list[int], rank: int,
                          s_max: float) -> float:
        """The share of :data:`SHRINKAGE_GRID` that best fills held-out training blocks."""
        rng = check_random_state(self.random_state)
        candidates = np.flatnonzero(mask.sum(axis=1) >= 2)
        n_hold = int(round(_HOLDOUT_SHARE * candidates.size))
        if n_hold == 0:
            return SHRINKAGE_GRID[len(SHRINKAGE_GRID) // 2]
        rows = np.sort(rng.choice(candidates, size=n_hold, replace=False))
        # One observed modality of each held-out row, uniformly among those it has.
        pick = np.array([rng.choice(np.flatnonzero(mask[i])) for i in rows])
        fit_mask = mask.copy()
        fit_mask[rows, pick] = False
        observed = np.repeat(fit_mask, dims, axis=1)
        Z_fit = np.where(observed, Z, 0.0)
        starts = np.concatenate([[0], np.cumsum(dims)])
        low = None
        for share in SHRINKAGE_GRID:
            fit = self._soft_impute(Z_fit, observed, share * s_max, rank, low)
            low = fit.low
            filled = _ridge_fill(Z_fit[rows], fit_mask[rows], dims, fit.loadings, fit.noise)
            errors = [
                np.mean((filled[i, starts[m]:starts[m + 1]] - Z[r, starts[m]:starts[m + 1]]) ** 2)
                for i, (r, m) in enumerate(zip(rows, pick, strict=True))
            ]
            self.shrinkage_scores_[share] = float(np.mean(errors))
        return min(self.shrinkage_scores_, key=self.shrinkage_scores_.__getitem__)

    def _soft_impute(self, Z: np.ndarray, observed: np.ndarray, lam: float, rank: int,
                     low: np.ndarray | None = None) -> _Fit:
        """SoftImpute iterations from ``low`` (zeros: the z-space mean) in the missing entries."""
        n = Z.shape[0]
        low = np.zeros_like(Z) if low is None else low
        filled = np.where(observed, Z, low)
        n_iter = 0
        while n_iter < self.max_iter:
            n_iter += 1
            values, vectors = _top_eigen(filled, rank)
            s = np.sqrt(np.maximum(values, 0.0))
            keep = s > lam
            s, vectors = s[keep], vectors[:, keep]
            # U S' V^T with U = Z V / s: the left vectors never need to be stored.
            new = (filled @ vectors) * ((s - lam) / s) @ vectors.T
            old = low[~observed]
            change = np.linalg.norm(new[~observed] - old)
            low = new
            filled = np.where(observed, Z, low)
            if old.size == 0 or change <= self.tol * max(np.linalg.norm(old), 1e-300):
                break
        s_shrunk = s - lam
        residual = (Z - low)[observed]
        scale = float(np.mean(s_shrunk**2) / n) if s_shrunk.size else 1.0
        noise = max(float(np.mean(residual**2)) if residual.size else 0.0,
                    _RIDGE_FLOOR * scale, 1e-300)
        return _Fit(low, vectors, vectors * (s_shrunk / np.sqrt(n)), noise, n_iter)

    def _fill(self, data: Multimodal) -> dict[str, np.ndarray]:
        blocks, mask = self._zscored(data)
        out = _ridge_fill(np.hstack(blocks), mask, list(data.dims), self.loadings_, self.noise_)
        return self._split_denormalise(out, data)


@dataclasses.dataclass
class _Fit:
    """One SoftImpute fit: the training low-rank matrix and the inductive model from it."""

    low: np.ndarray
    vectors: np.ndarray
    loadings: np.ndarray
    noise: float
    n_iter: int


def _ridge_fill(Z: np.ndarray, mask: np.ndarray, dims: list[int], loadings: np.ndarray,
                noise: float) -> np.ndarray:
    """``loadings @ a`` per row, ``a`` the ridge code of its observed blocks; 0 with none."""
    out = np.zeros_like(Z)
    starts = np.concatenate([[0], np.cumsum(dims)])
    columns = [np.arange(starts[m], starts[m + 1]) for m in range(len(dims))]
    patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    ridge = noise * np.eye(loadings.shape[1])
    for p, pattern in enumerate(patterns):
        if pattern.all() or not pattern.any():
            continue  # nothing to fill, or nothing to condition on (z-space mean: 0)
        rows = np.flatnonzero(inverse == p)
        obs = np.concatenate([columns[m] for m in np.flatnonzero(pattern)])
        L_obs = loadings[obs]
        # Ridge codes of every row of the pattern at once: (L_O^T L_O + noise I) a = L_O^T z_O.
        codes = scipy.linalg.solve(
            L_obs.T @ L_obs + ridge, L_obs.T @ Z[np.ix_(rows, obs)].T, assume_a="pos"
        )
        out[rows] = (loadings @ codes).T
    return out


def _top_eigen(Z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenvalues (descending) of ``Z^T Z`` and their eigenvectors."""
    gram = Z.T @ Z
    D = gram.shape[0]
    k = min(k, D)
    values, vectors = scipy.linalg.eigh(gram, subset_by_index=(D - k, D - 1))
    return values[::-1], vectors[:, ::-1]
