"""Centres in z-space: the value every driver and engine passes around.

A centre may be partial: it carries a modality iff at least one of its members
has it. Blocks hold zeros where a centre lacks a modality, so GEMMs need no NaN
handling; ``mask`` says which entries are real.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .distance import squared_norms

__all__ = ["Centers", "center_shift", "shift_tolerance"]


@dataclass
class Centers:
    """k centres in z-space: one (k, d_m) block per modality and a (k, M) mask.

    Examples
    --------
    >>> import numpy as np
    >>> c = Centers([np.array([[1.0, 2.0], [3.0, 4.0]])], np.array([[True], [False]]))
    >>> c.k, c.blocks[0][1].tolist(), c.norms[0].tolist()
    (2, [0.0, 0.0], [5.0, 0.0])
    """

    blocks: list[np.ndarray]
    mask: np.ndarray
    norms: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Re-zero absent entries and recompute the squared norms after an edit."""
        for m, block in enumerate(self.blocks):
            block[~self.mask[:, m]] = 0
        self.norms = squared_norms(self.blocks)

    @property
    def k(self) -> int:
        return int(self.mask.shape[0])

    @property
    def dtype(self) -> np.dtype:
        return self.blocks[0].dtype

    @classmethod
    def from_sums(cls, sums: list[np.ndarray], counts: np.ndarray, dtype: np.dtype) -> Centers:
        """Member means from float64 sums and per-modality member counts."""
        mask = counts > 0
        blocks = []
        for m, s in enumerate(sums):
            with np.errstate(divide="ignore", invalid="ignore"):
                mean = s / counts[:, m][:, None]
            blocks.append(np.where(mask[:, m][:, None], mean, 0.0).astype(dtype))
        return cls(blocks, mask)

    def to_raw(self, means, scales, dtype: np.dtype) -> list[np.ndarray]:
        """The centres in the raw input space, NaN rows where a centre lacks a modality."""
        raw = []
        for m, (mean, scale) in enumerate(zip(means, scales, strict=True)):
            block = self.blocks[m].astype(np.float64) * scale + mean
            block[~self.mask[:, m]] = np.nan
            raw.append(block.astype(dtype))
        return raw


def center_shift(old: Centers, new: Centers) -> float:
    """Total squared z-space move of the modalities both centre sets carry."""
    shift = 0.0
    for m, (a, b) in enumerate(zip(old.blocks, new.blocks, strict=True)):
        both = old.mask[:, m] & new.mask[:, m]
        diff = a[both].astype(np.float64) - b[both]
        shift += float(np.sum(diff * diff))
    return shift


def shift_tolerance(tol: float, mask: np.ndarray, dims) -> float:
    """The absolute bound on :func:`center_shift` for a relative ``tol`` (scikit-learn's).

    scikit-learn's KMeans stops when the total squared centre shift of an
    iteration is at most ``tol * mean(np.var(X, axis=0))``: ``tol`` times the
    mean per-feature variance (ddof=0) of the data it clusters. Here the
    clustered data are the z-scored training data and a dimension of modality m
    is observed in the ``n_m`` samples that have m, where z-scoring with the
    unbiased std makes its variance exactly ``(n_m - 1) / n_m``. So, with
    ``D = sum(d_m)``::

        bound = tol * (1 / D) * sum_m d_m * (n_m - 1) / n_m

    (the mean per-dimension z-space variance, just under 1). A constant
    dimension (:func:`ul4m4.statistics.constant_dimensions`, scale 1) counts like the others.
    ``tol=0`` gives 0: stop only at a fixed point.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.array([[True, True], [True, False], [True, True], [True, False]])
    >>> shift_tolerance(0.01, mask, [2, 6])  # (2 * 3/4 + 6 * 1/2) / 8 = 0.5625
    0.005625
    """
    if tol == 0:
        return 0.0
    counts = mask.sum(axis=0).astype(np.float64)
    dims = np.asarray(dims, dtype=np.float64)
    variance = np.where(counts > 0, (counts - 1) / np.maximum(counts, 1), 0.0)
    return float(tol * np.sum(dims * variance) / np.sum(dims))
