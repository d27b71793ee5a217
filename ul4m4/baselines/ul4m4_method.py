"""The package's own imputer behind the baseline interface."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..imputer import UL4M4Imputer
from ..validation import Multimodal
from .base import BaseImputer

__all__ = ["UL4M4Method"]


class UL4M4Method(BaseImputer):
    """:class:`ul4m4.UL4M4Imputer` with the benchmark interface.

    Parameters
    ----------
    n_clusters : int, default=16
        Number of centres k.
    reference_one_step : bool, default=False
        The reference scripts' clustering (seeding, one assignment, one mean
        update) instead of Lloyd iterations to a fixed point; named
        ``"ul4m4-onestep"``.
    random_state : int, RandomState instance or None, default=None
        Seed of the k-means++ seeding.
    dtype : numpy dtype, default=numpy.float32
        Working precision of the imputer.
    max_iter : int, default=300
        Maximum Lloyd iterations.
    completion : {"greedy", "soft", "auto"}, default="greedy"
        The imputer's completion; the method is named ``"ul4m4"``,
        ``"ul4m4-soft"`` or ``"ul4m4-auto"``.
    imputer_params : mapping, optional
        Further :class:`~ul4m4.UL4M4Imputer` parameters, e.g.
        ``{"temperature": 0.1}`` (on the command line:
        ``--param "ul4m4-soft.imputer_params={'temperature': 0.1}"``).

    Attributes
    ----------
    imputer_ : UL4M4Imputer
        The fitted imputer (centres, training labels, iterations).
    """

    transductive = False

    def __init__(
        self,
        n_clusters: int = 16,
        *,
        reference_one_step: bool = False,
        random_state: Any = None,
        dtype: Any = np.float32,
        max_iter: int = 300,
        completion: str = "greedy",
        imputer_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.completion = completion
        self.reference_one_step = reference_one_step
        self.random_state = random_state
        self.dtype = dtype
        self.max_iter = max_iter
        self.imputer_params = imputer_params

    @property
    def name(self) -> str:  # type: ignore[override]
        if self.reference_one_step:
            return "ul4m4-onestep"
        return "ul4m4" if self.completion == "greedy" else f"ul4m4-{self.completion}"

    def _fit(self, data: Multimodal) -> None:
        params = {"empty": "mean", "completion": self.completion, **(self.imputer_params or {})}
        self.imputer_ = UL4M4Imputer(
            n_clusters=self.n_clusters,
            random_state=self.random_state,
            dtype=self.dtype,
            max_iter=self.max_iter,
            reference_one_step=self.reference_one_step,
            **params,
        ).fit(dict(zip(data.names, data.arrays, strict=True)))

    def _fill(self, data: Multimodal) -> dict[str, np.ndarray]:
        filled = self.imputer_.transform(dict(zip(data.names, data.arrays, strict=True)))
        return {name: filled[name][~data.mask[:, m]] for m, name in enumerate(data.names)}

    def predict(self, X: Any) -> np.ndarray:
        """Nearest-centre cluster label of each sample (-1 for a sample with no modality)."""
        self._validate(X)
        return self.imputer_.predict(X)

    @property
    def labels_(self) -> np.ndarray:
        """Cluster of each training sample."""
        return self.imputer_.labels_
