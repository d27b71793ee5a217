"""The public estimator: :class:`UL4M4Imputer`."""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

from .cluster import Centers, random_init
from .complete import FROM_MEAN, OBSERVED, CompletionPlan
from .data import (
    Multimodal,
    Standardized,
    check_multimodal,
    check_observed_twice,
    map_modalities,
    modality_statistics,
)
from .selection import select_model
from .stream import is_streamed, subset_rows

__all__ = ["UL4M4Imputer"]

logger = logging.getLogger("ul4m4")

#: Working memory (bytes) the automatic batch size aims for.
_WORKING_MEMORY = 64 * 2**20
#: Bytes of z-scored rows per automatic chunk: a chunk then stays in the CPU's
#: cache from its GEMMs to the additions of its rows into the centre sums.
_CHUNK_CACHE_BYTES = 4 * 2**20
#: Training data whose z-scored copy fits in this many bytes (or, for in-memory
#: inputs, in the input's own size) are standardised once per fit instead of once
#: per pass (k seeding passes + one per Lloyd iteration).
_CACHE_BYTES = 512 * 2**20
_INIT_OPTIONS = ("k-means++", "random")
_EMPTY_OPTIONS = ("raise", "mean")
_COMPLETION_OPTIONS = ("greedy", "soft", "auto")
_ALGORITHM_OPTIONS = ("lloyd", "minibatch")
_SOFT_TEMPERATURES = (0.02, 0.05, 0.1, 0.2)
_SHRINKAGES = (0.0, 0.25, 0.5)
#: Members of the completion ensemble when ``completion="auto"`` and ``n_ensemble=None``.
_AUTO_ENSEMBLE = 5


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
    n_clusters : int or "auto", default=8
        Number of centres k; ``"auto"`` picks it from ``k_grid`` by masked
        reconstruction on the training data (no labels), like ``completion="auto"``.
    max_iter : int, default=300
        Maximum number of Lloyd iterations; with ``algorithm="minibatch"``, the
        budget in epochs (at most ``ceil(max_iter * n_samples / batch_size)``
        mini-batch steps).
    tol : float, default=0.0
        Stop when the total squared centre shift in z-space is at most ``tol``
        (per iteration; per mini-batch step with ``algorithm="minibatch"``).
        With the default 0 the Lloyd iterations stop only at a fixed point (no
        label changes).
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
        64 MiB working-memory budget and at most 4 MiB of z-scored rows (256 rows
        at least). Peak extra memory is O(batch_size * (k + d))
        plus O(n_samples) labels: memory-mapped and other row-sliceable inputs
        are streamed chunk by chunk and never copied whole. Results do not
        depend on it with ``algorithm="lloyd"``. With ``algorithm="minibatch"``
        it is also the mini-batch size (``None``: 1024) and changes the result.
    reference_one_step : bool, default=False
        Reproduce the public reference scripts (seeding, one assignment, one mean
        update), for comparison only: the result is not a k-means fixed point.
    verbose : bool, default=False
        Log progress (inertia per iteration) to the ``"ul4m4"`` logger on stderr.
    empty : {"raise", "mean"}, default="raise"
        What :meth:`transform` and :meth:`predict` do with a sample that has no
        observed modality: raise, or fill every modality with its training mean
        (``predict`` then returns label -1 for it).
    completion : {"greedy", "soft", "auto"}, default="greedy"
        ``"greedy"`` is the method's completion (copy each missing modality from
        one centre). ``"soft"`` fills each missing modality with the mean of the
        centres that carry it, weighted by ``softmax(-(d_j^2 - min d^2) /
        (temperature * median d^2))`` over the partial distances d_j of the
        sample to the centres. ``"auto"`` chooses, per modality, among greedy,
        soft (temperatures 0.02, 0.05, 0.1, 0.2) and mean imputation by masked
        reconstruction on the training data (see :mod:`ul4m4.selection`); the
        scores are in ``selection_``.
    temperature : float, default=0.05
        Relative temperature of ``completion="soft"``.
    n_init : int, default=1
        Number of seedings; the run with the lowest inertia is kept.
    n_ensemble : int or None, default=None
        Number of independently seeded k-means fits (same k, seeds drawn from
        ``random_state``) whose completions are averaged: a missing block is
        the mean of the members' fills, which lowers the variance that one
        seeding leaves in the completion. The first member is the model
        described by ``cluster_centers_``, ``labels_`` and ``predict``; the
        others are in ``ensemble_centers_``. ``None`` means 5 with
        ``completion="auto"`` and 1 otherwise (the faithful method). With more
        than one member ``return_sources``/``return_weights`` are refused (no
        single centre filled a block). Fit cost grows by one fit per member.
    k_grid : tuple of int, default=(4, 8, 16, 32, 64)
        Candidate k when ``n_clusters="auto"`` (values above n_samples dropped).
    selection_fraction : float, default=0.2
        Share of the training samples with two or more modalities that get one
        block hidden for ``"auto"`` selection (at most 10,000 samples).
    n_jobs : int or None, default=None
        Threads that process row chunks in parallel (BLAS is then limited to one
        thread each); ``None`` uses every CPU. Results do not depend on it.
    shrinkage : float, default=0.0
        Pull every value filled from centres toward the training mean:
        ``mean + (1 - shrinkage) * (filled - mean)``. 0 keeps the method's values.
        ``completion="auto"`` chooses it per modality among 0, 0.25 and 0.5.
    algorithm : {"lloyd", "minibatch"}, default="lloyd"
        ``"lloyd"``: full Lloyd iterations (one pass over the data each) to a
        fixed point. ``"minibatch"``: Sculley's mini-batch k-means under the
        partial distance (see :mod:`ul4m4.minibatch`): k-means++ seeds drawn
        from a random sample of ``max(3 * batch_size, 3 * k)`` rows, then steps
        on ``batch_size`` rows drawn with replacement through ``random_state``,
        each moving a centre toward its new members with rate 1 / (members seen
        so far, per modality); it stops when the smoothed batch inertia has not
        improved for 10 steps, by ``tol``, or after ``max_iter`` epochs, and
        ends with one exact assignment pass over all the data for ``labels_``
        and ``inertia_``. ``n_iter_`` then counts steps, and ``history_`` holds
        the smoothed batch inertia scaled to n_samples. Much faster on large
        data; the centres are not a Lloyd fixed point.
    backend : {"numpy", "torch", "dask"}, default="numpy"
        Compute engine (see :mod:`ul4m4.backends`). ``"torch"`` runs the distance
        GEMMs, Lloyd sums and completion tensors on PyTorch tensors (same labels,
        centres and completions as ``"numpy"``; see :mod:`ul4m4.backends._torch`)
        and accepts tensors, returning tensors on the input's device. ``"dask"``
        fits on ``dask.array`` inputs chunked by rows on the active dask scheduler
        (a ``dask.distributed`` cluster when a ``Client`` is open), and
        ``transform``/``predict`` return lazy dask arrays; see
        :mod:`ul4m4.backends.dask` (no ``"auto"`` selection, Lloyd only).
    device : str, torch.device or None, default=None
        Device of the torch backend (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...);
        ``None`` uses the device of tensor input, else the CPU.

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
        Cluster of each training sample (-1 for a sample with no observed
        modality, which ``empty="mean"`` admits and leaves out of the fit).
    n_iter_ : int
        Lloyd iterations run.
    inertia_ : float
        Sum of squared partial distances of the training samples to their centres.
    converged_ : bool
        Whether the iterations reached a fixed point (or ``tol``).
    history_ : list of float
        Inertia after the assignment step of every iteration.
    n_clusters_ : int
        The number of centres used (``n_clusters``, or the one selected).
    completion_ : dict of str to str
        Completion used per modality: "greedy", "soft" or "mean".
    temperature_ : dict of str to float or None
        Soft-completion temperature per modality (None unless "soft").
    shrinkage_ : dict of str to float
        Shrinkage toward the training mean used per modality.
    selection_ : Selection or None
        With ``"auto"``: the masked-reconstruction scores of every candidate
        (``selection_.table``, ``selection_.to_markdown()``).

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
        completion: str = "greedy",
        temperature: float = 0.05,
        n_init: int = 1,
        k_grid: tuple[int, ...] = (4, 8, 16, 32, 64),
        selection_fraction: float = 0.2,
        shrinkage: float = 0.0,
        n_jobs: int | None = None,
        algorithm: str = "lloyd",
        backend: str = "numpy",
        device: Any = None,
        n_ensemble: int | None = None,
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
        self.completion = completion
        self.temperature = temperature
        self.n_init = n_init
        self.k_grid = k_grid
        self.selection_fraction = selection_fraction
        self.shrinkage = shrinkage
        self.n_jobs = n_jobs
        self.backend = backend
        self.device = device
        self.algorithm = algorithm
        self.n_ensemble = n_ensemble

    # ------------------------------------------------------------------ params
    def _validate_params(self) -> None:
        """Check every constructor parameter once; resolved values go to private attributes."""
        if not (isinstance(self.n_clusters, str) and self.n_clusters == "auto"):
            _check_int("n_clusters", self.n_clusters, 1)
        _check_int("max_iter", self.max_iter, 1)
        _check_int("n_init", self.n_init, 1)
        if self.n_ensemble is not None:
            _check_int("n_ensemble", self.n_ensemble, 1)
        if self.completion not in _COMPLETION_OPTIONS:
            raise ValueError(
                f"completion must be one of {_COMPLETION_OPTIONS}, got {self.completion!r}"
            )
        for name in ("temperature", "selection_fraction"):
            value = getattr(self, name)
            if (not isinstance(value, numbers.Real) or isinstance(value, bool)
                    or not np.isfinite(value) or value <= 0):
                raise ValueError(f"{name} must be a finite real > 0, got {value!r}")
        if (not isinstance(self.shrinkage, numbers.Real) or isinstance(self.shrinkage, bool)
                or not 0 <= self.shrinkage < 1):
            raise ValueError(f"shrinkage must be a real in [0, 1), got {self.shrinkage!r}")
        if self.selection_fraction > 1:
            raise ValueError(f"selection_fraction must be <= 1, got {self.selection_fraction!r}")
        grid = tuple(self.k_grid) if isinstance(self.k_grid, list | tuple) else ()
        if not grid:
            raise ValueError(f"k_grid must be a non-empty tuple of integers, got {self.k_grid!r}")
        for k in grid:
            _check_int("every k_grid entry", k, 1)
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1)
        if self.n_jobs is not None:
            _check_int("n_jobs", self.n_jobs, 1)
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
        if self.algorithm not in _ALGORITHM_OPTIONS:
            raise ValueError(
                f"algorithm must be one of {_ALGORITHM_OPTIONS}, got {self.algorithm!r}"
            )
        if self.algorithm == "minibatch" and self.reference_one_step is True:
            raise ValueError("reference_one_step=True reproduces Lloyd's first step; it "
                             "cannot be combined with algorithm='minibatch'")
        for name in ("reference_one_step", "verbose"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        _check_backend(self.backend, self.device)
        self._dtype = _resolve_dtype(self.dtype)

    def _threads(self) -> int:
        return int(self.n_jobs) if self.n_jobs is not None else max(1, os.cpu_count() or 1)

    def _chunk_rows(self, dims: list[int]) -> int:
        if self.batch_size is not None:
            return int(self.batch_size)
        k = max(self.k_grid) if self.n_clusters == "auto" else int(self.n_clusters)
        itemsize = np.dtype(self._dtype).itemsize
        # Per row: the z-scored block, a few (k,) float64 rows, the (k, k) candidate tensor.
        row_bytes = itemsize * sum(dims) + 8 * (8 * k + min(k * k, 1 << 16))
        rows = min(_WORKING_MEMORY // row_bytes, _CHUNK_CACHE_BYTES // (itemsize * sum(dims)))
        return int(np.clip(rows, 256, 1 << 16))

    # --------------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any = None) -> UL4M4Imputer:
        """Fit the normalisation statistics and the centres on training data.

        Parameters
        ----------
        X : mapping of str to array-like of shape (n_samples, d_m), or list of array-likes
            Training data; an all-NaN row means the modality is missing. Arrays
            are read in row chunks and never modified. Memory-mapped arrays
            (``np.load(path, mmap_mode="r")``) and any object with ``shape``,
            ``dtype`` and row slicing (an h5py dataset, a custom class) are
            streamed: memory stays O(batch_size * (k + d)) whatever n_samples
            (see :mod:`ul4m4.stream`).
        y : ignored
            Present for API consistency; UL4M4 never looks at labels.

        Returns
        -------
        self : UL4M4Imputer
        """
        self._validate_params()
        if self.backend == "dask":
            from .backends.dask import fit_dask

            return fit_dask(self, X)
        with _verbosity(self.verbose):
            engine, X, _ = self._backend_for(X)
            self._fit_engine = engine
            _reject_sparse(X)
            data = check_multimodal(X, require_observed=self.empty == "raise",
                                    n_threads=self._threads())
            data, kept = _without_empty_samples(data)
            self._check_training_data(data)
            chunk_rows = self._chunk_rows(data.dims)
            gamma = engine.error_factor(data.dims, self._dtype)
            rng = check_random_state(self.random_state)
            selection = self._select(data, chunk_rows, gamma, rng)
            k = selection.n_clusters if selection else int(self.n_clusters)
            means, scales, (result, *members) = self._fit_core(
                data, k, chunk_rows, gamma, rng, n_models=self._ensemble_size()
            )
        if not self.reference_one_step:
            for run in (result, *members):
                run.warn(int(self.max_iter), stacklevel=2)
        self._set_fitted(data, means, scales, result.centers)
        self._set_members([run.centers for run in members])
        self.labels_ = result.labels
        if kept is not None:
            self.labels_ = np.full(kept.size, OBSERVED, dtype=np.int64)
            self.labels_[kept] = result.labels
        self.n_iter_ = result.n_iter
        self.inertia_ = result.inertia
        self.converged_ = result.converged
        self.history_ = result.history
        self.n_clusters_ = k
        self.selection_ = selection
        self._set_completion(selection)
        return self

    def _ensemble_size(self) -> int:
        if self.n_ensemble is not None:
            return int(self.n_ensemble)
        return _AUTO_ENSEMBLE if self.completion == "auto" else 1

    def _fit_core(self, data: Multimodal, k: int, chunk_rows: int, gamma: float, rng,
                  n_models: int = 1):
        """Statistics, then ``n_models`` k-means models on one view of the data.

        Each model is the best of ``n_init`` seedings; the models draw from ``rng`` one
        after the other. Returns ``(means, scales, [results])``.
        """
        means, scales = modality_statistics(data, chunk_rows, self._threads())
        _check_magnitudes(data, means, scales, self._dtype, chunk_rows, self._threads())
        # Streamed inputs (memory maps, array-likes) are never copied whole; an
        # in-memory input may be, once, when the copy is no larger than the input
        # (scikit-learn's k-means copies its input too).
        cache = 0 if is_streamed(data) else max(_CACHE_BYTES, data.nbytes)
        view = self._fit_engine.view(
            data, means, scales, self._dtype, chunk_rows, self._threads(), cache
        )
        results = [self._best_of_inits(view, data, k, rng, gamma) for _ in range(n_models)]
        return means, scales, results

    def _best_of_inits(self, view, data: Multimodal, k: int, rng, gamma: float):
        best = None
        for run in range(int(self.n_init)):
            if self.algorithm == "minibatch":
                result = self._minibatch_run(view, data, k, rng, gamma)
            else:
                centers = self._initial_centers(view, data, k, rng, gamma)
                result = self._fit_engine.lloyd(
                    view,
                    centers,
                    max_iter=int(self.max_iter),
                    tol=float(self.tol),
                    gamma=gamma,
                    one_step=bool(self.reference_one_step),
                )
            logger.info("init %d: inertia %.6g after %d iterations", run, result.inertia,
                        result.n_iter)
            if best is None or result.inertia < best.inertia:
                best = result
        return best

    def _minibatch_run(self, view: Standardized, data: Multimodal, k: int, rng, gamma: float):
        from .minibatch import DEFAULT_BATCH_SIZE, minibatch_kmeans, seeding_sample

        batch = int(self.batch_size) if self.batch_size is not None else DEFAULT_BATCH_SIZE
        seeding = view
        if self.init == "k-means++":
            size = min(view.n_samples, max(3 * batch, 3 * k))
            seeding = seeding_sample(view, size, rng)
        centers = self._initial_centers(seeding, data, k, rng, gamma)
        return minibatch_kmeans(view, centers, batch_size=batch, max_iter=int(self.max_iter),
                                tol=float(self.tol), gamma=gamma, rng=rng)

    def _select(self, data: Multimodal, chunk_rows: int, gamma: float, rng):
        auto_k = self.n_clusters == "auto"
        if not (auto_k or self.completion == "auto"):
            return None
        grid = [k for k in self.k_grid if k <= data.n_samples] if auto_k else [self.n_clusters]
        if not grid:
            raise ValueError(
                f"n_samples={data.n_samples} is smaller than every k_grid entry {self.k_grid}"
            )
        methods = ("greedy", "soft", "mean") if self.completion == "auto" else (self.completion,)
        temperatures = _SOFT_TEMPERATURES if self.completion == "auto" else (self.temperature,)

        def fit(masked: Multimodal, k: int):
            means, scales, (result,) = self._fit_core(masked, k, chunk_rows, gamma, rng)
            return means, scales, result.centers

        selection = select_model(
            data, fit, k_grid=sorted(set(grid)), methods=methods, temperatures=temperatures,
            shrinkages=_SHRINKAGES if self.completion == "auto" else (float(self.shrinkage),),
            fraction=float(self.selection_fraction), rng=rng, dtype=self._dtype,
            chunk_rows=chunk_rows, gamma=gamma, n_threads=self._threads(),
        )
        if not selection.table:
            logger.warning(
                "no training sample has two observed modalities: nothing to hide for the "
                "'auto' selection; using k=%d and the greedy completion", selection.n_clusters
            )
        logger.info("model selection (z-space MSE on hidden blocks):\n%s",
                    selection.to_markdown())
        return selection

    def _set_completion(self, selection) -> None:
        names = self.modalities_
        if selection is not None and selection.completion and self.completion == "auto":
            self.completion_ = dict(selection.completion)
            self.temperature_ = dict(selection.temperature)
            self.shrinkage_ = dict(selection.shrinkage)
            return
        self.shrinkage_ = {n: float(self.shrinkage) for n in names}
        method = "greedy" if self.completion == "auto" else self.completion
        self.completion_ = {n: method for n in names}
        t = float(self.temperature) if method == "soft" else None
        self.temperature_ = {n: t for n in names}

    def _check_training_data(self, data: Multimodal) -> None:
        if data.n_samples < 2:
            raise ValueError(
                f"n_samples={data.n_samples}: UL4M4 needs at least 2 training samples (a "
                "modality's standard deviation is undefined otherwise)"
            )
        check_observed_twice(data)
        if self.n_clusters != "auto" and data.n_samples < self.n_clusters:
            raise ValueError(
                f"n_samples={data.n_samples} should be >= n_clusters={self.n_clusters}"
            )

    def _initial_centers(self, view, data, k, rng, gamma) -> Centers:
        if isinstance(self.init, str):
            if self.init == "random":
                return random_init(view, k, rng)
            return self._fit_engine.kmeans_plusplus(view, k, rng, gamma)[0]
        try:
            init = check_multimodal(
                self.init, names=data.names, dims=dict(zip(data.names, data.dims, strict=True))
            )
        except (ValueError, TypeError) as exc:
            # The validator speaks of samples; here its rows are initial centres.
            message = str(exc).replace("samples [", "centres [").replace("sample ", "centre ")
            raise type(exc)(f"init: {message}") from None
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

    def _set_members(self, centers: list[Centers]) -> None:
        """Store the ensemble members beyond the first (z-space centres)."""
        self._members = [self._member(c) for c in centers]
        self.ensemble_centers_ = [member.raw_centers for member in self._members]
        self.n_ensemble_ = 1 + len(self._members)

    def _member(self, centers: Centers) -> _Member:
        raw = {}
        for m, name in enumerate(self.modalities_):
            block = centers.blocks[m].astype(np.float64) * self.scale_[name] + self.mean_[name]
            block[~centers.mask[:, m]] = np.nan
            raw[name] = block.astype(self._dtype)
        return _Member(centers, CompletionPlan.from_centers(centers), raw, centers.mask.copy())

    # --------------------------------------------------------------- transform
    def _check_fitted(self) -> None:
        if not hasattr(self, "_plan"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first."
            )

    def _backend_for(self, X: Any):
        """This call's engine (on the input's device if none is set), X as host arrays,
        and the conversion of results back to the caller's type (tensors stay tensors)."""
        from .backends import get_engine

        engine = get_engine(self.backend, self.device)
        X, caller = engine.to_host(X)
        return engine.for_input(caller), X, caller

    def _view(self, X: Any, engine: Any = None) -> Standardized:
        self._check_fitted()
        _reject_sparse(X)
        data = check_multimodal(
            X,
            names=self.modalities_,
            dims=self.n_features_,
            require_observed=self.empty == "raise",
            n_threads=self._threads(),
        )
        means = [self.mean_[n] for n in self.modalities_]
        scales = [self.scale_[n] for n in self.modalities_]
        _check_magnitudes(data, means, scales, self._dtype, self._chunk_rows(data.dims),
                          self._threads())
        if engine is not None:
            return engine.view(
                data, means, scales, self._dtype, self._chunk_rows(data.dims), self._threads()
            )
        return Standardized(
            data, means, scales, self._dtype, self._chunk_rows(data.dims), self._threads()
        )

    def transform(
        self,
        X: Any,
        *,
        return_sources: bool = False,
        return_weights: bool = False,
        out_dir: str | os.PathLike | None = None,
    ) -> Any:
        """Fill every missing modality row; observed rows are returned bit-identical.

        Parameters
        ----------
        X : mapping of str to array-like of shape (n_samples, d_m), or list of array-likes
            Data with the fitted modalities, any missing pattern.
        return_sources : bool, default=False
            Also return, per modality, the index of the centre that filled each
            row (soft completion: the centre of largest weight): -1 where the row
            was observed, -2 where it was filled with the training mean.
        return_weights : bool, default=False
            Also return, per modality, the weight of that centre (1 for greedy
            and mean filling, NaN where observed).
        out_dir : str or path-like, optional
            Write the completed data to ``out_dir/<modality>.npy`` instead of
            memory, streaming row blocks (memory O(block), not O(data)), and
            return read-only ``np.memmap`` arrays opened on those files. Each
            file is written under a temporary name and moved into place only
            when complete; existing files of the same names are replaced. The
            values are the same as without ``out_dir``.

        Returns
        -------
        X_filled : dict of str to ndarray (or np.memmap) of shape (n_samples, d_m)
            Keys in the order of ``X`` (or the fitted order for a list input);
            floating input keeps its dtype, integer input becomes float64.
        sources : dict of str to ndarray of shape (n_samples,), optional
            Only with ``return_sources=True``.
        weights : dict of str to ndarray of shape (n_samples,), optional
            Only with ``return_weights=True`` (after ``sources`` if both).
        """
        if self.backend == "dask":
            from .backends.dask import transform_dask

            return transform_dask(self, X, return_sources=return_sources,
                                  return_weights=return_weights, out_dir=out_dir)
        engine, X, caller = self._backend_for(X)
        view = self._view(X, engine)
        order = _output_order(X, self.modalities_)
        if out_dir is not None:
            from .stream import transform_to_files

            return transform_to_files(self, view, order, out_dir,
                                      return_sources=return_sources,
                                      return_weights=return_weights)
        return caller.wrap(
            self._complete_view(view, order, return_sources, return_weights, engine)
        )

    def _complete_view(
        self, view: Standardized, order: list[str], return_sources: bool, return_weights: bool,
        engine: Any = None,
    ) -> Any:
        """The body of :meth:`transform` on a validated view; outputs keyed in ``order``."""
        if engine is None:
            from .backends import NumpyEngine

            engine = NumpyEngine()
        members = self._member_models()
        if len(members) > 1 and (return_sources or return_weights):
            raise ValueError(
                f"return_sources/return_weights describe a single model, but this imputer "
                f"averages the fills of {len(members)} ensemble members (n_ensemble="
                f"{len(members)}); refit with n_ensemble=1 to audit which centre filled a block"
            )
        filled, sources, weights = self._fill_member(view, engine, members[0])
        if len(members) > 1:
            self._average_members(view, engine, members, filled)
        names = self.modalities_
        result = {name: filled[names.index(name)] for name in order}
        extras = []
        if return_sources:
            extras.append({n: sources[:, names.index(n)] for n in order})
        if return_weights:
            extras.append({n: weights[:, names.index(n)] for n in order})
        return (result, *extras) if extras else result

    def _member_models(self) -> list[_Member]:
        """The fitted model first, then the other ensemble members."""
        first = _Member(self._centers, self._plan, self.cluster_centers_,
                        self.center_modalities_)
        return [first, *getattr(self, "_members", [])]

    def _fill_member(self, view: Standardized, engine: Any, member: _Member):
        """One model's completion of ``view``: filled arrays, sources and weights."""
        gamma = engine.error_factor(view.data.dims, self._dtype)
        names = self.modalities_
        methods = [self.completion_[n] for n in names]
        filled = [_output_copy(a) for a in view.data.arrays]
        sources = np.full(view.mask.shape, OBSERVED, dtype=np.int64)
        weights = np.full(view.mask.shape, np.nan)
        if "greedy" in methods:
            greedy = engine.complete_sources(view, member.plan, gamma)
            for m in (m for m, method in enumerate(methods) if method == "greedy"):
                sources[:, m] = greedy[:, m]
        if "soft" in methods:
            soft = [m for m, method in enumerate(methods) if method == "soft"]
            raw = [np.nan_to_num(member.raw_centers[n].astype(np.float64)) for n in names]
            out = [filled[m] if m in soft else None for m in range(len(names))]
            temperatures = [self.temperature_[n] for n in names]
            top, top_weight = engine.soft_complete(
                view, member.plan, raw, temperatures, out, gamma
            )
            sources[:, soft] = top[:, soft]
            weights[:, soft] = top_weight[:, soft]
        empty_rows = ~view.mask.any(axis=1)
        for m, method in enumerate(methods):
            missing = ~view.mask[:, m]
            # Mean imputation, samples with no observed modality (empty="mean") and
            # modalities no centre carries all get the training mean.
            if method == "mean" or not member.center_modalities[:, m].any():
                sources[missing, m] = FROM_MEAN
            sources[empty_rows, m] = FROM_MEAN
            centres = member.raw_centers[names[m]] if method == "greedy" else None
            self._fill_from(filled[m], names[m], sources[:, m], centres)
            self._shrink(filled[m], names[m], sources[:, m] >= 0)
            if method != "soft":
                weights[missing, m] = 1.0
            weights[sources[:, m] == FROM_MEAN, m] = 1.0
        return filled, sources, weights

    def _average_members(self, view: Standardized, engine: Any, members: list[_Member],
                         filled: list[np.ndarray]) -> None:
        """Replace the first member's fills by the mean over all members (float64 sums)."""
        missing = [~view.mask[:, m] for m in range(len(filled))]
        totals = [f[rows].astype(np.float64) for f, rows in zip(filled, missing, strict=True)]
        for member in members[1:]:
            other, _, _ = self._fill_member(view, engine, member)
            for total, values, rows in zip(totals, other, missing, strict=True):
                total += values[rows]
        for out, total, rows in zip(filled, totals, missing, strict=True):
            out[rows] = (total / len(members)).astype(out.dtype)

    def _shrink(self, out: np.ndarray, name: str, rows: np.ndarray) -> None:
        s = self.shrinkage_[name]
        if s and rows.any():
            mean = self.mean_[name]
            out[rows] = (mean + (1.0 - s) * (out[rows].astype(np.float64) - mean)).astype(
                out.dtype
            )

    def _fill_from(self, out: np.ndarray, name: str, source: np.ndarray,
                   centres: np.ndarray | None) -> None:
        """Copy ``centres`` rows (greedy; None: already filled) and the mean into ``out``."""
        if centres is not None:
            from_centre = source >= 0
            if from_centre.any():
                out[from_centre] = centres[source[from_centre]].astype(out.dtype)
        from_mean = source == FROM_MEAN
        if from_mean.any():
            out[from_mean] = self.mean_[name].astype(out.dtype)

    def fit_transform(self, X: Any, y: Any = None, **kwargs: Any) -> Any:
        """Fit on ``X`` and return it completed (same as ``fit(X).transform(X)``)."""
        return self.fit(X, y).transform(X, **kwargs)

    def predict(self, X: Any) -> np.ndarray:
        """Nearest-centre label of each sample under the partial distance.

        Ties go to the lowest centre index. With ``empty="mean"`` a sample with
        no observed modality gets label -1.
        """
        if self.backend == "dask":
            from .backends.dask import predict_dask

            return predict_dask(self, X)
        engine, X, caller = self._backend_for(X)
        view = self._view(X, engine)
        gamma = engine.error_factor(view.data.dims, self._dtype)
        labels, _ = engine.assign(view, self._centers, gamma)
        labels[~view.mask.any(axis=1)] = OBSERVED
        return caller.wrap(labels)

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


class _Member(NamedTuple):
    """One fitted k-means model of the completion ensemble."""

    centers: Centers
    plan: CompletionPlan
    raw_centers: dict[str, np.ndarray]
    center_modalities: np.ndarray


def _without_empty_samples(data: Multimodal) -> tuple[Multimodal, np.ndarray | None]:
    """Drop samples with no observed modality (allowed with ``empty="mean"``).

    They carry nothing to cluster or to estimate statistics from. Returns the
    reduced data (rows copied) and a boolean mask of the kept samples, or the data
    itself and None when no sample is empty.
    """
    kept = data.mask.any(axis=1)
    if kept.all():
        return data, None
    rows = np.flatnonzero(kept)
    # In-memory arrays are copied; streamed ones stay on disk behind a lazy row map.
    arrays = [subset_rows(a, rows) for a in data.arrays]
    return Multimodal(list(data.names), arrays, data.mask[rows]), kept


def _reject_sparse(X: Any) -> None:
    """Name the modality of a scipy.sparse input (its rows do not read as dense arrays)."""
    items = X.items() if isinstance(X, Mapping) else enumerate(X) if isinstance(X, list) else ()
    for name, value in items:
        if sparse.issparse(value):
            raise TypeError(
                f"modality {str(name)!r}: scipy.sparse input is not supported; pass a dense "
                "array (e.g. value.toarray())"
            )


def _check_magnitudes(data: Multimodal, means, scales, dtype: np.dtype, chunk_rows: int,
                      n_threads: int = 1) -> None:
    """Raise where z-scoring in ``dtype`` would overflow, instead of yielding NaN centres.

    The statistics are float64: a spread beyond ~1e154 overflows the squared deviations.
    A float32 working dtype cannot hold a centred value beyond ~3.4e38, and squared
    distances overflow once a sample lies ~1e19 standard deviations from the training
    mean (new data far outside the training range).
    """
    for name, mean, scale in zip(data.names, means, scales, strict=True):
        if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
            raise ValueError(
                f"modality {name!r}: values are too large (their mean or standard deviation "
                "overflows float64, which happens beyond about 1e154); rescale the data"
            )
    if np.dtype(dtype) != np.float32:
        return
    limit = float(np.finfo(np.float32).max)
    width = sum(data.dims)

    def extremes(m: int) -> tuple[float, float] | None:
        array = data.arrays[m]
        if np.dtype(array.dtype).kind != "f" or np.dtype(array.dtype).itemsize < 4:
            return None
        return _largest_centred(array, data.mask[:, m], means[m], scales[m], chunk_rows)

    found = map_modalities(extremes, data.arrays, n_threads)
    for name, extreme in zip(data.names, found, strict=True):
        if extreme is None:
            continue
        largest, largest_z = extreme
        if largest > limit:
            raise ValueError(
                f"modality {name!r}: values up to {largest:.3g} away from the mean do not fit "
                f"the working dtype float32 (max {limit:.3g}); use dtype=numpy.float64 or "
                "rescale the data"
            )
        if largest_z * largest_z * width > limit:
            raise ValueError(
                f"modality {name!r}: values up to {largest_z:.3g} standard deviations from the "
                "training mean overflow squared distances in the working dtype float32; use "
                "dtype=numpy.float64 or check the data"
            )


def _largest_centred(
    array: Any, observed: np.ndarray, mean: np.ndarray, scale: np.ndarray, chunk_rows: int
) -> tuple[float, float]:
    """Largest max(|x|, |x - mean|) and largest |x - mean| / scale over observed rows.

    Column maxima and minima suffice; ``fmax``/``fmin`` skip the NaN of missing rows,
    so the chunks are reduced in their own dtype without a copy (the extrema are
    exact in any dtype) and only the (d,) results go to float64.
    """
    high = np.full(mean.shape, -np.inf)
    low = np.full(mean.shape, np.inf)
    n = observed.shape[0]
    for start in range(0, n, max(1, chunk_rows)):
        block = np.asarray(array[start:min(start + chunk_rows, n)])
        if block.size:
            high = np.fmax(high, np.fmax.reduce(block, axis=0).astype(np.float64))
            low = np.fmin(low, np.fmin.reduce(block, axis=0).astype(np.float64))
    if not observed.any():
        return 0.0, 0.0
    centred = np.maximum(high - mean, mean - low)
    spread = np.maximum(np.maximum(np.abs(high), np.abs(low)), centred)
    return float(spread.max()), float((centred / scale).max())


def _output_copy(array: Any) -> np.ndarray:
    """A copy of the caller's array; floating input keeps its dtype, integers become float64."""
    dtype = np.dtype(array.dtype)
    return np.array(array, dtype=dtype if dtype.kind == "f" else np.float64, copy=True)


def _output_order(X: Any, fitted: list[str]) -> list[str]:
    if isinstance(X, Mapping):
        return [str(k) for k in X.keys()]
    return list(fitted)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_backend(backend: Any, device: Any) -> None:
    """Validate ``backend`` and the form of ``device`` (the engine checks the device itself)."""
    from .backends import BACKENDS

    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if device is None:
        return
    if not (isinstance(device, str) or type(device).__name__ == "device"):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', a torch.device or "
                        f"None, got {type(device).__name__}")
    if backend == "numpy" and str(device) != "cpu":
        raise ValueError(
            f"device={str(device)!r} needs backend='torch'; the numpy backend runs on the CPU"
        )


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
