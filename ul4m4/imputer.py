"""Tier 1, the public estimator: :class:`UL4M4Imputer`.

Parameters are checked once, at the start of :meth:`UL4M4Imputer.fit`, against
:data:`ul4m4.settings.PARAMETER_CONSTRAINTS` and resolved into an immutable
:class:`~ul4m4.settings.Settings`; the work is then delegated to the plain
functions of :mod:`ul4m4.model` on the engine of ``backend``. The fitted state
is one :class:`~ul4m4.model.FittedModel` (``model_``), from which every public
fitted attribute is derived.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

from ._utils.progress import BarSafeHandler
from .backends import check_input, engine_for_input
from .inference import complete, predict, transform_to_files, transform_view
from .inputs import InputForm, feature_names, is_small_input, reject_sparse
from .model import FittedModel, fit_model
from .parameters import PARAMETERS, parameter_docs
from .persistence import load_model, save_model
from .settings import Settings, resolve_init, resolve_settings

__all__ = ["UL4M4Imputer", "checked_settings"]

logger = logging.getLogger("ul4m4")


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
    {parameters}

    Attributes
    ----------
    modalities_ : list of str
        Modality names, in the order seen during fit.
    n_features_ : dict of str to int
        Width d_m of each modality.
    mean_, scale_ : dict of str to ndarray of shape (d_m,)
        Per-modality mean and unbiased std over the training rows that observe
        the modality; 1 for a constant dimension, one whose std is at most 1e-8
        of the modality's magnitude (:func:`ul4m4.statistics.constant_dimensions`;
        fit warns, naming the modality, when some are).
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
        Whether the k-means run of every ensemble member reached a fixed point
        (or ``tol``); False whenever fit warned that a run did not converge.
        ``runs_`` says it per member. (A warning that centres were left empty
        says the data have fewer distinct points than ``n_clusters``, not
        that Lloyd did not converge.)
    runs_ : list of RunInfo
        Per ensemble member, how its k-means run ended: ``n_iter``,
        ``converged``, ``inertia``, ``n_dead`` (centres left empty),
        ``stopped_by`` (``"fixed_point"``, ``"tol"``, ``"cycle"``,
        ``"max_iter"``, ``"no_improvement"`` for mini-batch, ``"one_step"``)
        ``cycle_period`` (iterations of the cycle for ``"cycle"``) and
        ``n_reseeds``. Lloyd under the partial distance can enter a cycle; a
        model the library fits on its own (an ensemble member, a fit under
        ``"auto"``) that cycles is reseeded (up to 3 more seedings drawn from
        ``random_state``), and ``n_reseeds`` counts those seedings. A
        ConvergenceWarning is issued at fit for every member that still did
        not converge; saved models keep ``runs_``.
    history_ : list of float
        Inertia after the assignment step of every iteration.
    n_clusters_ : int
        The number of centres used (``n_clusters``, or the one selected).
    completion_ : dict of str to str
        Completion used per modality: "greedy", "soft", "mean", or with
        ``completion="auto"`` "ensemble" (a weighted blend of the members in
        ``selection_.ensemble``, each with its own rule) or "mean".
    temperature_ : dict of str to float or None
        Soft-completion temperature per modality (None unless "soft").
    shrinkage_ : dict of str to float
        Shrinkage toward the training mean used per modality.
    selection_ : Selection or None
        With ``"auto"``: the masked-reconstruction scores of every candidate,
        with their standard errors (``selection_.table``; readable as
        ``selection_.to_markdown()`` or, with pandas, ``selection_.to_frame()``,
        which mark the chosen rows, state the selection rule and say when the
        chosen k is at the edge of the grid scored). With ``completion="auto"``
        also each modality's ensemble (``selection_.ensemble``, members and
        weights; ``selection_.members(name)`` in words), its score and standard
        error (``ensemble_scores``), the calibration factor of the predicted
        error, the subsample's size (``n_rows``) and the hidden blocks
        (``n_hidden``).

    Notes
    -----
    The greedy completion is computed in its exact closed form (see
    :mod:`ul4m4.complete`). One consequence is faithful to the method and worth
    knowing: a centre that shares none of a sample's observed modalities is at
    distance exactly 0 from its own candidate, so it ranks first and fills the
    sample's missing modalities (lowest such centre index). This can only happen
    when some centres lack a modality the sample has.

    Parameters are checked once, when :meth:`fit` starts (explicit ``init``
    centres right after the data scan), and the resolved settings are kept for
    :meth:`transform` and :meth:`predict`. As in scikit-learn, a parameter set
    after fit (``set_params`` or assignment) does not change the fitted model:
    those that shape it (``n_clusters``, ``init``, ``completion``, ``dtype``,
    ...) act at the next fit. Those that say how data is read and where the work
    runs (``backend``, ``device``, ``n_jobs``, ``batch_size``, ``partial``,
    ``empty``) act from the next ``transform`` or ``predict`` on, where the new
    values are checked, once, before any data is read.

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

    # Written out (not generated from the table) so that IDEs and type checkers see the
    # parameters; tests/test_parameters.py holds it equal to parameters.PARAMETERS.
    def __init__(
        self,
        n_clusters: int | Literal["auto"] = 8,
        *,
        max_iter: int = 300,
        tol: float = 0.0,
        init: Literal["k-means++", "random"] | Mapping[str, Any] = "k-means++",
        random_state: int | np.random.RandomState | None = None,
        dtype: Any = np.float32,
        batch_size: int | None = None,
        reference_one_step: bool = False,
        verbose: int = 0,
        empty: Literal["raise", "mean"] = "raise",
        partial: Literal["raise", "missing"] = "raise",
        completion: Literal["greedy", "soft", "auto"] = "greedy",
        temperature: float = 0.05,
        n_init: int = 1,
        n_ensemble: int | None = None,
        k_grid: tuple[int, ...] = (4, 8, 16, 32, 64),
        selection_fraction: float = 0.2,
        n_jobs: int | None = None,
        shrinkage: float = 0.0,
        algorithm: Literal["lloyd", "minibatch"] = "lloyd",
        backend: str = "numpy",
        device: Any = None,
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
        self.partial = partial
        self.completion = completion
        self.temperature = temperature
        self.n_init = n_init
        self.n_ensemble = n_ensemble
        self.k_grid = k_grid
        self.selection_fraction = selection_fraction
        self.n_jobs = n_jobs
        self.shrinkage = shrinkage
        self.algorithm = algorithm
        self.backend = backend
        self.device = device

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
            (see :mod:`ul4m4.stream`). Keys are modality names, compared as
            ``str`` (``modalities_`` holds ``"0"`` for a key ``0``). pandas
            DataFrames are read as their values, nullable ``Float64``/``Int64``
            columns as floats with ``pd.NA`` as NaN (a row of NA is a missing
            modality). Rows are paired **by position**: DataFrames with
            different indexes raise ``ValueError`` (reindex them to one index
            first; labels a DataFrame lacks then become missing rows).
        y : ignored
            Present for API consistency; UL4M4 never looks at labels.

        Returns
        -------
        self : UL4M4Imputer
        """
        settings = checked_settings(self)
        with _verbosity(settings.verbose):
            engine, X, _ = self._engine_for(X, settings)
            data = check_input(settings.backend, engine, X,
                               require_observed=settings.empty == "raise",
                               n_threads=settings.n_threads, partial=settings.partial)
            settings = resolve_init(settings, data)
            model = fit_model(data, settings, engine, check_random_state(settings.random_state))
        if not settings.reference_one_step:
            for member, run in enumerate(model.runs):
                run.warn(settings.max_iter, model.n_clusters, stacklevel=2, member=member,
                         n_members=len(model.runs), n_init=settings.n_init)
        self._set_model(model)
        return self

    def _engine_for(self, X: Any, settings: Settings):
        """This call's engine (on the input's device if none is set), X as host arrays,
        and the converter of results back to the caller's type (tensors stay tensors)."""
        reject_sparse(X)
        return engine_for_input(settings.backend, settings.device, X)

    def _set_model(self, model: FittedModel) -> None:
        """Store the fitted model and the public attributes derived from it."""
        names = model.names
        first = model.members[0]
        self.model_ = model
        self.modalities_ = list(names)
        self.n_features_ = dict(zip(names, model.dims, strict=True))
        self.mean_ = dict(zip(names, model.means, strict=True))
        self.scale_ = dict(zip(names, model.scales, strict=True))
        self.cluster_centers_ = dict(zip(names, first.raw, strict=True))
        self.center_modalities_ = first.centers.mask.copy()
        self.ensemble_centers_ = [dict(zip(names, m.raw, strict=True))
                                  for m in model.members[1:]]
        self.n_ensemble_ = len(model.members)
        self.labels_ = model.labels
        self.n_iter_ = model.n_iter
        self.inertia_ = model.inertia
        self.converged_ = model.converged
        self.runs_ = list(model.runs)
        self.history_ = model.history
        self.n_clusters_ = model.n_clusters
        self.selection_ = model.selection
        self.completion_ = dict(zip(names, model.completion, strict=True))
        self.temperature_ = dict(zip(names, model.temperature, strict=True))
        self.shrinkage_ = dict(zip(names, model.shrinkage, strict=True))

    # --------------------------------------------------------------- transform
    def _check_fitted(self) -> FittedModel:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first."
            )
        return self.model_

    def transform(
        self,
        X: Any,
        *,
        return_sources: bool = False,
        return_weights: bool = False,
        return_mask: bool = False,
        return_std: bool = False,
        out_dir: str | os.PathLike | None = None,
    ) -> Any:
        """Fill every missing modality row; observed rows are returned bit-identical.

        Parameters
        ----------
        X : mapping of str to array-like of shape (n_samples, d_m), or list of array-likes
            Data with the fitted modalities, any missing pattern, in any of the
            forms :meth:`fit` takes (keys match the fitted names as ``str``, so
            ``{0: ...}`` matches a model fitted on ``{0: ...}`` or ``{"0": ...}``;
            DataFrames must share one index, as in :meth:`fit`).
        return_sources : bool, default=False
            Also return, per modality, the index of the centre that filled each
            row (soft completion: the centre of largest weight): -1 where the row
            was observed, -2 where it was filled with the training mean.
        return_weights : bool, default=False
            Also return, per modality, the weight of that centre (1 for greedy
            and mean filling, NaN where observed).
        return_mask : bool, default=False
            Also return which modalities each row observed: an (n_samples,
            n_modalities) bool array, True where the modality was observed (and
            is returned unchanged), False where it was filled; columns in the
            order of the keys of ``X_filled``. A row that is partly NaN counts as
            missing with ``partial="missing"``, as the fill treats it.
        return_std : bool, default=False
            Also return, last, how far each filled block is likely to be from
            the truth: per modality an (n_samples,) float64 array, the predicted
            root-mean-square error per coordinate of the block in the model's
            z-space (``(x - mean_) / scale_``), NaN where the modality was
            observed. It comes from the completion's conditional variance (the
            spread of the centres' members, the weights' spread over centres,
            the mixture's conditional covariance, the ensemble members'
            disagreement) and, under ``completion="auto"``, is calibrated on
            the selection's hidden training blocks so that its mean square
            matches the error measured there. Rank blocks by it to drop or
            down-weight unreliable fills.
        out_dir : str or path-like, optional
            Write the completed data to ``out_dir/<modality>.npy`` instead of
            memory, streaming row blocks (memory O(block), not O(data)), and
            return read-only ``np.memmap`` arrays opened on those files. The
            folder appears whole or not at all: the files and a manifest
            (``ul4m4-output.json``, written last) go to a hidden folder beside
            ``out_dir``, which is then swapped in by one atomic rename, so
            ``out_dir`` must be new, empty or an earlier output (``ValueError``
            otherwise: no other file is ever replaced). The values are the same
            as without ``out_dir``.

        Returns
        -------
        X_filled : dict of ndarray (or np.memmap) of shape (n_samples, d_m)
            The keys of ``X``, in its order (the fitted names, in the fitted
            order, for a list input). What came in comes back: a modality given
            as a DataFrame is returned as a DataFrame with its index and
            columns, tensors as tensors (``backend="torch"``), other input as
            ndarrays; with ``out_dir``, always ``np.memmap``. Floating input
            keeps its dtype (nullable ``Float64`` gives float64; a bfloat16
            tensor, computed as float32, comes back as bfloat16). Integer input
            has no NaN, so it is observed in every row and comes back unchanged,
            in its own dtype (exact, also beyond 2**53); nullable ``Int64``
            columns, which can hold NA, are read as float64 (a warning says
            when values beyond 2**53 are rounded).
        sources : dict of ndarray of shape (n_samples,), optional
            Only with ``return_sources=True``; keyed like ``X_filled``.
        weights : dict of ndarray of shape (n_samples,), optional
            Only with ``return_weights=True`` (after ``sources`` if both).
        mask : ndarray of bool of shape (n_samples, n_modalities), optional
            Only with ``return_mask=True``, after ``sources`` and ``weights``
            (a tensor on the input's device for tensor input, as they are; a
            NumPy array for any other input, Dask included, whose mask the input
            check has already computed).
        std : dict of ndarray of shape (n_samples,), optional
            Only with ``return_std=True``, last; keyed like ``X_filled``.
            The tuple is ``(X_filled, [sources], [weights], [mask], [std])``, the
            requested items in that order.
        """
        with _taking_turns(X):
            model = self._check_fitted()
            settings = checked_settings(self)
            form = InputForm.of(X)
            engine, X, output = self._engine_for(X, settings)
            order = form.order(model.names)
            view = transform_view(X, model, settings, engine)
            if self._output_container() == "pandas":
                form = form.as_frames(model.names, model.dims, view.n_samples)
            # The mask the fill itself uses: the input's view, whatever the engine.
            mask = view.mask[:, [model.names.index(name) for name in order]]
            if out_dir is not None:
                result = form.wrap(transform_to_files(view, model, engine, order, out_dir,
                                                      return_sources=return_sources,
                                                      return_weights=return_weights,
                                                      return_std=return_std),
                                   frames=False)
            else:
                def fill(block, block_engine):
                    return complete(block, model, block_engine, order,
                                    return_sources=return_sources,
                                    return_weights=return_weights, return_std=return_std)

                result = output.wrap(form.wrap(engine.apply(view, fill)))
                mask = output.wrap(mask)
            result = list(result) if isinstance(result, tuple) else [result]
            std = [result.pop()] if return_std else []
            result += [mask] * return_mask + std
            return result[0] if len(result) == 1 else tuple(result)

    def set_output(self, *, transform: Literal["default", "pandas"] | None = None
                   ) -> UL4M4Imputer:
        """Choose what :meth:`transform` returns, as scikit-learn's ``set_output``.

        Parameters
        ----------
        transform : {"default", "pandas"} or None, default=None
            ``"pandas"``: a DataFrame per modality, whatever the input (array
            modalities get columns ``<name>_0``, ``<name>_1``, ...; DataFrames keep
            their index and columns). ``"default"``: the input's own form. None
            leaves the setting as it is.

        Returns
        -------
        self : UL4M4Imputer
        """
        if transform is None:
            return self
        if transform not in ("default", "pandas"):
            raise ValueError(f"transform must be 'default', 'pandas' or None, got {transform!r}")
        self._sklearn_output_config = {"transform": transform}
        return self

    def get_feature_names_out(
        self, input_features: Mapping[Any, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """Output feature names, per modality (the output is one array per modality).

        The names of the columns of ``set_output(transform="pandas")`` for a
        modality given as an array: ``<modality>_0``, ``<modality>_1``, ...
        (the fitted name, as ``str``). A modality given as a DataFrame keeps its
        own columns in the output; pass them as ``input_features`` to get them
        here.

        Parameters
        ----------
        input_features : mapping of str to array-like of str, optional
            Names of the columns of some modalities (keys compared as ``str``,
            each of its modality's width); the others get the default names.

        Returns
        -------
        feature_names_out : dict of str to ndarray of str objects
            Keyed by ``modalities_``, in the fitted order.
        """
        model = self._check_fitted()
        given = {str(k): v for k, v in (input_features or {}).items()}
        unknown = sorted(set(given) - set(model.names))
        if unknown:
            raise ValueError(f"input_features names unknown modalities {unknown}; the fitted "
                             f"modalities are {list(model.names)}")
        out = {}
        for name, width in zip(model.names, model.dims, strict=True):
            if name not in given:
                out[name] = feature_names(name, width)
                continue
            names = np.asarray(given[name], dtype=object).reshape(-1)
            if names.size != width:
                raise ValueError(f"input_features[{name!r}] has {names.size} names, modality "
                                 f"{name!r} has {width} features")
            out[name] = np.asarray([str(f) for f in names], dtype=object)
        return out

    def _output_container(self) -> str:
        return getattr(self, "_sklearn_output_config", {}).get("transform", "default")

    def fit_transform(self, X: Any, y: Any = None, **kwargs: Any) -> Any:
        """Fit on ``X`` and return it completed (same as ``fit(X).transform(X)``)."""
        return self.fit(X, y).transform(X, **kwargs)

    def predict(self, X: Any) -> np.ndarray:
        """Nearest-centre label of each sample under the partial distance.

        Ties go to the lowest centre index. With ``empty="mean"`` a sample with
        no observed modality gets label -1.
        """
        with _taking_turns(X):
            model = self._check_fitted()
            settings = checked_settings(self)
            engine, X, output = self._engine_for(X, settings)
            view = transform_view(X, model, settings, engine)
            return output.wrap(engine.apply(view, lambda block, e: predict(block, model, e)))

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the fitted model to ``path`` (pickle-free, versioned; see :mod:`ul4m4.persistence`)."""
        save_model(self._check_fitted(), self.get_params(deep=False), path)

    @classmethod
    def load(cls, path: str | Path) -> UL4M4Imputer:
        """Read a model written by :meth:`save`; it transforms bit-identically.

        Raises
        ------
        FileNotFoundError
            No file at ``path`` (the message names it).
        ul4m4.persistence.ModelFileError
            The file is damaged, of another format, or not a ul4m4 model.
        """
        params, model = load_model(path)
        return cls.from_model(params, model)

    @classmethod
    def from_model(cls, params: Mapping[str, Any], model: FittedModel) -> UL4M4Imputer:
        """A fitted estimator from its parameters and a :class:`~ul4m4.model.FittedModel`
        (what :func:`ul4m4.persistence.load_model` returns); invalid parameters raise."""
        imputer = cls(**params)
        checked_settings(imputer)  # a file with invalid parameters is refused here
        imputer._set_model(model)
        return imputer


if UL4M4Imputer.__doc__:  # None under python -OO
    UL4M4Imputer.__doc__ = UL4M4Imputer.__doc__.replace(
        "    {parameters}", parameter_docs(PARAMETERS))


def checked_settings(imputer: UL4M4Imputer) -> Settings:
    """The estimator's parameters, checked and resolved: at fit, and again only once a
    parameter was set anew (then on the next call that reads them).

    Every caller (fit, transform, predict, loading, the 2-D adapter's fit) goes through
    here, so each parameter set is checked once. Resolving (``get_params`` inspects the
    signature, then every constraint is checked) took a fifth of a 1-row ``transform``.
    The cache is keyed on the parameter objects themselves (``set_params`` and
    assignment replace them).
    """
    names = _param_names(type(imputer))
    values = tuple(getattr(imputer, name) for name in names)
    cached = getattr(imputer, "_resolved", None)
    if cached is not None and all(a is b for a, b in zip(cached[0], values, strict=True)):
        return cached[1]
    settings = resolve_settings(dict(zip(names, values, strict=True)))
    imputer._resolved = (values, settings)
    return settings

#: Small calls (:func:`~ul4m4.inputs.is_small_input`) from several threads take turns: such
#: a call is mostly Python, so running several at once only passes the GIL back and forth
#: (4 threads served half the one-row calls per second that one thread did).
_SMALL_CALLS = threading.RLock()


def _new_turns_lock() -> None:
    """A forked child (a DataLoader worker) starts with a free lock, whatever the parent held."""
    global _SMALL_CALLS
    _SMALL_CALLS = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_turns_lock)


def _taking_turns(X: Any) -> contextlib.AbstractContextManager:
    """The lock that small calls share, or nothing for a call big enough to use threads."""
    return _SMALL_CALLS if is_small_input(X) else contextlib.nullcontext()


@functools.cache
def _param_names(cls: type) -> tuple[str, ...]:
    """The constructor parameters of an estimator class (``get_params``' names), once."""
    return tuple(cls._get_param_names())


class _verbosity:
    """Route the ``ul4m4`` logger's records to stderr while ``verbose >= 1``.

    Level 1 shows INFO records (stages, periodic progress), 2 and above also
    DEBUG records (every iteration).
    """

    def __init__(self, verbose: int) -> None:
        self.verbose = int(verbose)

    def __enter__(self) -> None:
        if not self.verbose:
            return
        self.handler = BarSafeHandler()
        self.handler.setFormatter(logging.Formatter("[ul4m4] %(message)s"))
        self.previous = logger.level
        logger.addHandler(self.handler)
        logger.setLevel(logging.INFO if self.verbose == 1 else logging.DEBUG)

    def __exit__(self, *exc: object) -> None:
        if self.verbose:
            logger.removeHandler(self.handler)
            logger.setLevel(self.previous)
