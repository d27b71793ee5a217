"""The public estimator: :class:`UL4M4Imputer`."""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

from .cluster import Centers, assign, kmeans_plusplus, lloyd, random_init
from .complete import FROM_MEAN, OBSERVED, CompletionPlan, complete_sources
from .data import Multimodal, Standardized, check_multimodal, modality_statistics
from .distance import error_factor

__all__ = ["UL4M4Imputer"]

logger = logging.getLogger("ul4m4")

#: Working memory (bytes) the automatic batch size aims for.
_WORKING_MEMORY = 64 * 2**20
_INIT_OPTIONS = ("k-means++", "random")
_EMPTY_OPTIONS = ("raise", "mean")


class UL4M4Imputer(BaseEstimator):
    """Impute missing modality embeddings by partial-modality k-means and greedy completion.

    UL4M4 (Ismkhan & Bouchachia, 2026) fills the missing modality embeddings of a
    sample without labels: each modality is z-scored with the statistics of the
    training samples that have it; the incomplete training samples are clustered
    by k-means under the partial-modality distance (centres may be partial); then
    each missing modality of any sample is copied from a training centre chosen
    by a greedy search over all centres. Observed modalities are never changed.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of centres k.
    max_iter : int, default=300
        Maximum number of Lloyd iterations.
    tol : float, default=0.0
        Stop when the total squared centre shift in z-space is at most ``tol``.
        With the default 0 the iterations stop only at a fixed point (no label
        changes).
    init : {"k-means++", "random"} or mapping of str to array-like, default="k-means++"
        Seeding: k-means++ under the partial distance, k distinct random samples,
        or explicit initial centres ``{modality: array (k, d_m)}`` in the raw
        input space (an all-NaN row means the centre lacks that modality).
    random_state : int, RandomState instance or None, default=None
        Drives every random choice (seeding). Same seed, same result.
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Working precision of z-scored data and centres. Labels are the exact
        argmin in either precision: near-ties are rechecked in float64.
    batch_size : int or None, default=None
        Rows per chunk of every pass over the data; ``None`` picks it from a
        64 MiB working-memory budget. Peak extra memory is O(batch_size * k).
    reference_one_step : bool, default=False
        Reproduce the public reference scripts (seeding, one assignment, one mean
        update), for comparison only: the result is not a k-means fixed point.
    verbose : bool, default=False
        Log progress (inertia per iteration) to the ``"ul4m4"`` logger on stderr.
    empty : {"raise", "mean"}, default="raise"
        What :meth:`transform` and :meth:`predict` do with a sample that has no
        observed modality: raise, or fill every modality with its training mean
        (``predict`` then returns label -1 for it).

    Attributes
    ----------
    modalities_ : list of str
        Modality names, in the order seen during fit.
    n_features_ : dict of str to int
        Width d_m of each modality.
    mean_, scale_ : dict of str to ndarray of shape (d_m,)
        Per-modality mean and unbiased std (1 where std <= 1e-8) over the
        training rows that observe the modality.
    cluster_centers_ : dict of str to ndarray of shape (n_clusters, d_m)
        Centres in the raw input space; an all-NaN row where the centre lacks
        the modality.
    center_modalities_ : ndarray of shape (n_clusters, n_modalities), bool
        Which modalities each centre carries.
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample.
    n_iter_ : int
        Lloyd iterations run.
    inertia_ : float
        Sum of squared partial distances of the training samples to their centres.
    converged_ : bool
        Whether the iterations reached a fixed point (or ``tol``).
    history_ : list of float
        Inertia after the assignment step of every iteration.

    Notes
    -----
    The greedy completion is computed in its exact closed form (see
    :mod:`ul4m4.complete`). One consequence is faithful to the method and worth
    knowing: a centre that shares none of a sample's observed modalities is at
    distance exactly 0 from its own candidate, so it ranks first and fills the
    sample's missing modalities (lowest such centre index). This can only happen
    when some centres lack a modality the sample has.

    Examples
    --------
    >>> import numpy as np
    >>> from ul4m4 import UL4M4Imputer
    >>> rng = np.random.default_rng(0)
    >>> X = {"text": rng.normal(size=(100, 4)), "image": rng.normal(size=(100, 3))}
    >>> X["image"][:30] = np.nan                      # 30 samples miss their image
    >>> imp = UL4M4Imputer(n_clusters=4, random_state=0).fit(X)
    >>> filled = imp.transform(X)
    >>> bool(np.isnan(filled["image"]).any())
    False
    >>> bool(np.array_equal(filled["text"], X["text"]))
    True
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        max_iter: int = 300,
        tol: float = 0.0,
        init: str | Mapping[str, Any] = "k-means++",
        random_state: int | np.random.RandomState | None = None,
        dtype: Any = np.float32,
        batch_size: int | None = None,
        reference_one_step: bool = False,
        verbose: bool = False,
        empty: str = "raise",
    ) -> None:
        self.n_clusters = n_clusters
        self.max_iter = max_iter
        self.tol = tol
        self.init = init
        self.random_state = random_state
        self.dtype = dtype
        self.batch_size = batch_size
        self.reference_one_step = reference_one_step
        self.verbose = verbose
        self.empty = empty

    # ------------------------------------------------------------------ params
    def _validate_params(self) -> None:
        """Check every constructor parameter once; resolved values go to private attributes."""
        _check_int("n_clusters", self.n_clusters, 1)
        _check_int("max_iter", self.max_iter, 1)
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1)
        if (
            not isinstance(self.tol, numbers.Real)
            or isinstance(self.tol, bool)
            or not np.isfinite(self.tol)
            or self.tol < 0
        ):
            raise ValueError(f"tol must be a finite real >= 0, got {self.tol!r}")
        if isinstance(self.init, str):
            if self.init not in _INIT_OPTIONS:
                raise ValueError(f"init must be one of {_INIT_OPTIONS} or a mapping of centres, "
                                 f"got {self.init!r}")
        elif not isinstance(self.init, Mapping | list | tuple):
            raise TypeError(f"init must be a string or a mapping of centres, got "
                            f"{type(self.init).__name__}")
        if self.empty not in _EMPTY_OPTIONS:
            raise ValueError(f"empty must be one of {_EMPTY_OPTIONS}, got {self.empty!r}")
        for name in ("reference_one_step", "verbose"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        self._dtype = _resolve_dtype(self.dtype)

    def _chunk_rows(self, dims: list[int]) -> int:
        if self.batch_size is not None:
            return int(self.batch_size)
        k = int(self.n_clusters)
        itemsize = np.dtype(self._dtype).itemsize
        # Per row: the z-scored block, a few (k,) float64 rows, the (k, k) candidate tensor.
        row_bytes = itemsize * sum(dims) + 8 * (8 * k + min(k * k, 1 << 16))
        return int(np.clip(_WORKING_MEMORY // row_bytes, 256, 1 << 16))

    # --------------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any = None) -> UL4M4Imputer:
        """Fit the normalisation statistics and the centres on training data.

        Parameters
        ----------
        X : mapping of str to array-like of shape (n_samples, d_m), or list of array-likes
            Training data; an all-NaN row means the modality is missing. Arrays
            are read in row chunks and never modified (memory-mapped arrays work).
        y : ignored
            Present for API consistency; UL4M4 never looks at labels.

        Returns
        -------
        self : UL4M4Imputer
        """
        self._validate_params()
        with _verbosity(self.verbose):
            data = check_multimodal(X)
            self._check_training_data(data)
            chunk_rows = self._chunk_rows(data.dims)
            means, scales = modality_statistics(data, chunk_rows)
            view = Standardized(data, means, scales, self._dtype, chunk_rows)
            gamma = error_factor(data.dims, self._dtype)
            rng = check_random_state(self.random_state)
            centers = self._initial_centers(view, data, rng, gamma)
            result = lloyd(
                view,
                centers,
                max_iter=int(self.max_iter),
                tol=float(self.tol),
                gamma=gamma,
                one_step=bool(self.reference_one_step),
            )
        self._set_fitted(data, means, scales, result.centers)
        self.labels_ = result.labels
        self.n_iter_ = result.n_iter
        self.inertia_ = result.inertia
        self.converged_ = result.converged
        self.history_ = result.history
        return self

    def _check_training_data(self, data: Multimodal) -> None:
        counts = data.mask.sum(axis=0)
        scarce = [f"{n!r} ({c})" for n, c in zip(data.names, counts, strict=True) if c < 2]
        if scarce:
            raise ValueError(
                "every modality must be observed in at least 2 training samples (its std is "
                f"undefined otherwise); observed counts: {', '.join(scarce)}"
            )
        if data.n_samples < self.n_clusters:
            raise ValueError(
                f"n_samples={data.n_samples} should be >= n_clusters={self.n_clusters}"
            )

    def _initial_centers(self, view, data, rng, gamma) -> Centers:
        k = int(self.n_clusters)
        if isinstance(self.init, str):
            if self.init == "random":
                return random_init(view, k, rng)
            return kmeans_plusplus(view, k, rng, gamma)[0]
        init = check_multimodal(
            self.init, names=data.names, dims=dict(zip(data.names, data.dims, strict=True))
        )
        if init.n_samples != k:
            raise ValueError(f"init has {init.n_samples} centres, expected n_clusters={k}")
        init_view = Standardized(init, view.mean, view.scale, view.dtype, k)
        blocks, mask = init_view.rows(slice(0, k))
        return Centers(blocks, mask.copy())

    def _set_fitted(self, data: Multimodal, means, scales, centers: Centers) -> None:
        names = list(data.names)
        self.modalities_ = names
        self.n_features_ = dict(zip(names, data.dims, strict=True))
        self.mean_ = dict(zip(names, means, strict=True))
        self.scale_ = dict(zip(names, scales, strict=True))
        self.center_modalities_ = centers.mask.copy()
        self.cluster_centers_ = {}
        for m, name in enumerate(names):
            raw = centers.blocks[m].astype(np.float64) * scales[m] + means[m]
            raw[~centers.mask[:, m]] = np.nan
            self.cluster_centers_[name] = raw.astype(self._dtype)
        self._centers = centers
        self._plan = CompletionPlan.from_centers(centers)
        uncovered = [n for m, n in enumerate(names) if not centers.mask[:, m].any()]
        if uncovered:
            logger.warning(
                "no centre carries modalities %s: missing entries of them are filled with "
                "the training mean", uncovered,
            )

    # --------------------------------------------------------------- transform
    def _check_fitted(self) -> None:
        if not hasattr(self, "_plan"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first."
            )

    def _view(self, X: Any) -> Standardized:
        self._check_fitted()
        data = check_multimodal(
            X,
            names=self.modalities_,
            dims=self.n_features_,
            require_observed=self.empty == "raise",
        )
        means = [self.mean_[n] for n in self.modalities_]
        scales = [self.scale_[n] for n in self.modalities_]
        return Standardized(data, means, scales, self._dtype, self._chunk_rows(data.dims))

    def transform(self, X: Any, *, return_sources: bool = False) -> Any:
        """Fill every missing modality row; observed rows are returned bit-identical.

        Parameters
        ----------
        X : mapping of str to array-like of shape (n_samples, d_m), or list of array-likes
            Data with the fitted modalities, any missing pattern.
        return_sources : bool, default=False
            Also return, per modality, the index of the centre that filled each
            row: -1 where the row was observed, -2 where it was filled with the
            training mean.

        Returns
        -------
        X_filled : dict of str to ndarray of shape (n_samples, d_m)
            Keys in the order of ``X`` (or the fitted order for a list input);
            floating input keeps its dtype, integer input becomes float64.
        sources : dict of str to ndarray of shape (n_samples,), optional
            Only with ``return_sources=True``.
        """
        view = self._view(X)
        gamma = error_factor(view.data.dims, self._dtype)
        sources = complete_sources(view, self._plan, gamma)
        filled = {}
        for m, name in enumerate(self.modalities_):
            filled[name] = self._fill(view.data.arrays[m], name, sources[:, m])
        order = _output_order(X, self.modalities_)
        filled = {name: filled[name] for name in order}
        if return_sources:
            return filled, {name: sources[:, self.modalities_.index(name)] for name in order}
        return filled

    def _fill(self, array: Any, name: str, source: np.ndarray) -> np.ndarray:
        dtype = np.dtype(array.dtype)
        out_dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
        out = np.array(array, dtype=out_dtype, copy=True)
        from_centre = source >= 0
        if from_centre.any():
            out[from_centre] = self.cluster_centers_[name][source[from_centre]].astype(out_dtype)
        from_mean = source == FROM_MEAN
        if from_mean.any():
            out[from_mean] = self.mean_[name].astype(out_dtype)
        return out

    def fit_transform(self, X: Any, y: Any = None, **kwargs: Any) -> Any:
        """Fit on ``X`` and return it completed (same as ``fit(X).transform(X)``)."""
        return self.fit(X, y).transform(X, **kwargs)

    def predict(self, X: Any) -> np.ndarray:
        """Nearest-centre label of each sample under the partial distance.

        Ties go to the lowest centre index. With ``empty="mean"`` a sample with
        no observed modality gets label -1.
        """
        view = self._view(X)
        gamma = error_factor(view.data.dims, self._dtype)
        labels, _ = assign(view, self._centers, gamma)
        labels[~view.mask.any(axis=1)] = OBSERVED
        return labels

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the fitted model to ``path`` (pickle-free, versioned; see :mod:`ul4m4.persistence`)."""
        from .persistence import save_imputer

        self._check_fitted()
        save_imputer(self, path)

    @classmethod
    def load(cls, path: str | Path) -> UL4M4Imputer:
        """Read a model written by :meth:`save`; it transforms bit-identically."""
        from .persistence import load_imputer

        return load_imputer(path)


def _output_order(X: Any, fitted: list[str]) -> list[str]:
    if isinstance(X, Mapping):
        return [str(k) for k in X.keys()]
    return list(fitted)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _resolve_dtype(dtype: Any) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return resolved


class _verbosity:
    """Route the ``ul4m4`` logger's INFO records to stderr while ``verbose`` is on."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    def __enter__(self) -> None:
        if not self.verbose:
            return
        self.handler = logging.StreamHandler()
        self.handler.setFormatter(logging.Formatter("[ul4m4] %(message)s"))
        self.previous = logger.level
        logger.addHandler(self.handler)
        logger.setLevel(logging.INFO)

    def __exit__(self, *exc: object) -> None:
        if self.verbose:
            logger.removeHandler(self.handler)
            logger.setLevel(self.previous)
