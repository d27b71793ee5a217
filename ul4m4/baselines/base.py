"""The interface every imputation method of the benchmark follows.

A method is fitted on a masked training set ``{modality: (n, d_m)}`` (an all-NaN row
means the modality is missing) and fills any data set with the same modalities:
``transform`` returns a new dict with no NaN in which every observed row is
bit-identical to the input. Each method has a ``name`` and a ``transductive`` flag:
a transductive method cannot fill new data from a fitted model alone and refits on
the training data together with the data it fills (see :mod:`ul4m4.baselines.mofa`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from ..statistics import modality_statistics
from ..validation import Multimodal, check_multimodal, check_observed_twice
from ..view import standardize_rows

__all__ = ["BaseImputer"]

#: Rows per chunk when statistics and z-scores are computed.
_CHUNK_ROWS = 8192


class BaseImputer(BaseEstimator):
    """Common validation, training statistics and output assembly of the baselines.

    Subclasses implement :meth:`_fit` and :meth:`_fill`. After :meth:`fit` every
    method has ``modalities_``, ``n_features_`` and the per-modality z-score
    statistics ``mean_`` and ``scale_`` computed, as in :class:`ul4m4.UL4M4Imputer`,
    over the training rows that observe the modality (unbiased std; a constant
    dimension, see :func:`ul4m4.statistics.constant_dimensions`, gets scale 1).

    Attributes
    ----------
    name : str
        Short method name used in result tables.
    transductive : bool
        Whether :meth:`transform` refits on the data it fills.
    """

    name: str = "base"
    transductive: bool = False

    # ----------------------------------------------------------------- public
    def fit(self, X: Mapping[str, Any], y: Any = None) -> BaseImputer:
        """Fit on a masked training set.

        Parameters
        ----------
        X : mapping of str to array-like of shape (n_samples, d_m)
            Training data; an all-NaN row means the modality is missing. Every
            modality must be observed in at least two samples.
        y : ignored
            No baseline looks at labels.

        Returns
        -------
        self
        """
        data = check_multimodal(X, require_observed=False)
        check_observed_twice(data)
        means, scales = modality_statistics(data, _CHUNK_ROWS)
        self.modalities_ = list(data.names)
        self.n_features_ = dict(zip(data.names, data.dims, strict=True))
        self.mean_ = dict(zip(data.names, means, strict=True))
        self.scale_ = dict(zip(data.names, scales, strict=True))
        self._fit(data)
        return self

    def transform(self, X: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Fill every missing modality row of ``X``.

        Parameters
        ----------
        X : mapping of str to array-like of shape (n_samples, d_m)
            Data with the fitted modalities (any order), any missing pattern.

        Returns
        -------
        dict of str to ndarray of shape (n_samples, d_m)
            Keys in the order of ``X``; no NaN; observed rows bit-identical to the
            input. Floating input keeps its dtype, other input becomes float64.
        """
        data = self._validate(X)
        fills = self._fill(data)
        out: dict[str, np.ndarray] = {}
        for m, name in enumerate(data.names):
            array = data.arrays[m]
            dtype = np.dtype(array.dtype)
            out_dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
            filled = np.array(array, dtype=out_dtype, copy=True)
            missing = ~data.mask[:, m]
            if missing.any():
                values = np.asarray(fills[name])
                if values.shape != (int(missing.sum()), data.dims[m]):
                    raise RuntimeError(
                        f"{type(self).__name__} produced fills of shape {values.shape} for "
                        f"modality {name!r}, expected {(int(missing.sum()), data.dims[m])}"
                    )
                filled[missing] = values.astype(out_dtype)
            out[name] = filled
        order = [str(k) for k in X.keys()]
        return {name: out[name] for name in order}

    def fit_transform(self, X: Mapping[str, Any], y: Any = None) -> dict[str, np.ndarray]:
        """``fit(X).transform(X)``."""
        return self.fit(X, y).transform(X)

    # ------------------------------------------------------------- subclasses
    def _fit(self, data: Multimodal) -> None:
        """Fit method-specific state; the statistics are already set."""

    def _fill(self, data: Multimodal) -> dict[str, np.ndarray]:
        """Raw-space values of the missing rows: ``{name: (n_missing_m, d_m)}``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- helpers
    def _validate(self, X: Any) -> Multimodal:
        if not hasattr(self, "modalities_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first."
            )
        if not isinstance(X, Mapping):
            raise TypeError(f"X must be a dict {{modality: array}}, got {type(X).__name__}")
        return check_multimodal(
            X, names=self.modalities_, dims=self.n_features_, require_observed=False
        )

    def _zscored(self, data: Multimodal) -> tuple[list[np.ndarray], np.ndarray]:
        """float64 z-scored blocks (zeros on missing rows) and the availability mask."""
        means = [self.mean_[n] for n in data.names]
        scales = [self.scale_[n] for n in data.names]
        return standardize_rows(data, slice(None), means, scales, np.dtype(np.float64))

    def _concat_z(self, data: Multimodal) -> np.ndarray:
        """Concatenated z-scored blocks with NaN on missing rows (scikit-learn layout)."""
        blocks, mask = self._zscored(data)
        for m, block in enumerate(blocks):
            block[~mask[:, m]] = np.nan
        return np.hstack(blocks)

    def _split_denormalise(self, Z: np.ndarray, data: Multimodal) -> dict[str, np.ndarray]:
        """Cut a filled concatenated z-matrix into blocks; raw values of the missing rows."""
        fills = {}
        start = 0
        for m, name in enumerate(data.names):
            stop = start + data.dims[m]
            missing = ~data.mask[:, m]
            fills[name] = Z[missing, start:stop] * self.scale_[name] + self.mean_[name]
            start = stop
        return fills
