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

import numpy as np
import scipy.linalg

from ..data import Multimodal
from .base import BaseImputer

__all__ = ["SoftImputeBaseline"]

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
    shrinkage : float, default=0.02
        ``lambda`` as a share of the largest singular value of the zero-filled
        z-scored training matrix (the rule of the ``fancyimpute`` package, which
        uses 1/50).
    max_iter : int, default=100
        Largest number of SoftImpute iterations.
    tol : float, default=1e-4
        Stop when the relative change of the imputed training entries,
        ``||L_new - L_old||_F / ||L_old||_F`` over the missing entries, is below it.

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
    lambda_ : float
        The shrinkage applied to the singular values.
    n_iter_ : int
        Iterations run.

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
        self, rank: int = 50, *, shrinkage: float = 0.02, max_iter: int = 100, tol: float = 1e-4
    ) -> None:
        self.rank = rank
        self.shrinkage = shrinkage
        self.max_iter = max_iter
        self.tol = tol

    def _check_params(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int | np.integer) or self.rank < 1:
            raise ValueError(f"rank must be a positive integer, got {self.rank!r}")
        if not (isinstance(self.shrinkage, int | float) and 0.0 <= self.shrinkage < 1.0):
            raise ValueError(f"shrinkage must be in [0, 1), got {self.shrinkage!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not (isinstance(self.tol, int | float) and self.tol >= 0.0):
            raise ValueError(f"tol must be >= 0, got {self.tol!r}")

    def _fit(self, data: Multimodal) -> None:
        self._check_params()
        blocks, mask = self._zscored(data)
        Z = np.hstack(blocks)
        observed = np.repeat(mask, data.dims, axis=1)
        n, D = Z.shape
        rank = int(min(self.rank, max(D - 1, 1), n))
        s_max = np.sqrt(max(_top_eigen(Z, 1)[0][0], 0.0))
        lam = float(self.shrinkage) * s_max
        filled = Z.copy()  # z-space mean (0) in the missing entries to start
        low = np.zeros_like(Z)
        n_iter = 0
        while n_iter < self.max_iter:
            n_iter += 1
            values, vectors = _top_eigen(filled, rank)
            s = np.sqrt(np.maximum(values, 0.0))
            keep = s > lam
            s, vectors = s[keep], vectors[:, keep]
            # U S' V^T with U = Z V / s: the left vectors never need to be stored.
            shrunk = np.divide(s - lam, s, out=np.zeros_like(s), where=s > 0)
            new = (filled @ vectors) * shrunk @ vectors.T
            old = low[~observed]
            change = np.linalg.norm(new[~observed] - old)
            low = new
            filled = np.where(observed, Z, low)
            if old.size == 0 or change <= self.tol * max(np.linalg.norm(old), 1e-300):
                break
        s_shrunk = s - lam
        self.components_ = vectors.T.copy()
        self.loadings_ = vectors * (s_shrunk / np.sqrt(n))
        residual = (Z - low)[observed]
        scale = float(np.mean(s_shrunk**2) / n) if s_shrunk.size else 1.0
        self.noise_ = max(float(np.mean(residual**2)) if residual.size else 0.0,
                          _RIDGE_FLOOR * scale, 1e-300)
        self.lambda_ = lam
        self.rank_ = int(s_shrunk.size)
        self.n_iter_ = n_iter

    def _fill(self, data: Multimodal) -> dict[str, np.ndarray]:
        blocks, mask = self._zscored(data)
        Z = np.hstack(blocks)
        out = np.zeros_like(Z)
        starts = np.concatenate([[0], np.cumsum(data.dims)])
        columns = [np.arange(starts[m], starts[m + 1]) for m in range(len(data.dims))]
        patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        L = self.loadings_
        ridge = self.noise_ * np.eye(L.shape[1])
        for p, pattern in enumerate(patterns):
            if pattern.all() or not pattern.any():
                continue  # nothing to fill, or nothing to condition on (z-space mean: 0)
            rows = np.flatnonzero(inverse == p)
            obs = np.concatenate([columns[m] for m in np.flatnonzero(pattern)])
            L_obs = L[obs]
            # Ridge codes of every row of the pattern at once: (L_O^T L_O + noise I) a = L_O^T z_O.
            codes = scipy.linalg.solve(
                L_obs.T @ L_obs + ridge, L_obs.T @ Z[np.ix_(rows, obs)].T, assume_a="pos"
            )
            out[rows] = (L @ codes).T
        return self._split_denormalise(out, data)


def _top_eigen(Z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenvalues (descending) of ``Z^T Z`` and their eigenvectors."""
    gram = Z.T @ Z
    D = gram.shape[0]
    k = min(k, D)
    values, vectors = scipy.linalg.eigh(gram, subset_by_index=(D - k, D - 1))
    return values[::-1], vectors[:, ::-1]
