"""Constant fills: raw zeros and the per-modality training mean."""

from __future__ import annotations

import numpy as np

from ..validation import Multimodal
from .base import BaseImputer

__all__ = ["MeanImputer", "ZeroImputer"]


class ZeroImputer(BaseImputer):
    """Fill every missing modality with the raw zero vector.

    Literally zeros in the input space (not in z-space, where zero would be the
    training mean: that is :class:`MeanImputer`). It is the floor that many
    multimodal pipelines use implicitly when they zero-pad a missing embedding.

    Examples
    --------
    >>> import numpy as np
    >>> X = {"a": np.array([[1.0], [np.nan], [3.0]]), "b": np.ones((3, 2))}
    >>> ZeroImputer().fit(X).transform(X)["a"].ravel().tolist()
    [1.0, 0.0, 3.0]
    """

    name = "zero"

    def _fill(self, data: Multimodal) -> dict[str, np.ndarray]:
        return {
            name: np.zeros((int((~data.mask[:, m]).sum()), data.dims[m]))
            for m, name in enumerate(data.names)
        }


class MeanImputer(BaseImputer):
    """Fill every missing modality with its mean over the training rows that have it.

    The same as scikit-learn's ``SimpleImputer(strategy="mean")`` on block-missing
    data, and the same as UL4M4 with a single cluster.

    Examples
    --------
    >>> import numpy as np
    >>> X = {"a": np.array([[1.0], [np.nan], [3.0]]), "b": np.ones((3, 2))}
    >>> MeanImputer().fit(X).transform(X)["a"].ravel().tolist()
    [1.0, 2.0, 3.0]
    """

    name = "mean"

    def _fill(self, data: Multimodal) -> dict[str, np.ndarray]:
        return {
            name: np.broadcast_to(self.mean_[name], (int((~data.mask[:, m]).sum()), data.dims[m]))
            for m, name in enumerate(data.names)
        }
