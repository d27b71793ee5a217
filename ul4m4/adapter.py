"""A 2-D adapter of :class:`~ul4m4.UL4M4Imputer` for scikit-learn pipelines."""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted, validate_data

from ._utils.validation import TypeOf, check_params
from .imputer import UL4M4Imputer, checked_settings
from .inputs import warn_inexact_integers
from .parameters import PARAMETERS, Parameter, parameter_docs, table_init
from .persistence import ModelFileError, load_model, save_model

__all__ = ["ModalityImputer"]

_MODALITIES_DOC = """\
Modality name -> its columns of ``X``. A selector is a ``slice``, an int
(one column), a list or array of int column indices (negative indices
count from the end), a boolean mask of length ``n_features``, or, when
``X`` is a pandas DataFrame with string column names, a column name or a
list of column names. Integers are always positions, whatever the
DataFrame's column labels. A modality's columns keep their order in
``X``, whatever their order in the selector. Selectors must be disjoint.
``None`` makes all columns one modality named ``"0"``.

Columns covered by no modality are **passed through unchanged**: they are
neither used for fitting nor filled, and any NaN in them stays NaN."""

_INDICATOR_DOC = """\
As in scikit-learn's :class:`~sklearn.impute.SimpleImputer`: :meth:`transform`
appends, after the columns of ``X``, one column per modality (in the order
of ``modality_columns_``) that is 1 where the modality was missing in the
row and was filled, 0 where it was observed, in the output's dtype. They
are named ``missingindicator_<modality>`` in :meth:`get_feature_names_out`.
Downstream estimators can then tell a filled block from an observed one."""

#: The adapter's parameters: its column layout, then those of the estimator (its table:
#: passed on to the inner imputer), then the missing indicator.
PARAMETER_TABLE: dict[str, Parameter] = {
    "modalities": Parameter(None, [], "mapping of str to column selector",
                            "Mapping[Any, Any] | None", short=_MODALITIES_DOC),
    **PARAMETERS,
    "add_indicator": Parameter(False, [TypeOf((bool, np.bool_), "a bool")], "bool", "bool",
                               short=_INDICATOR_DOC),
}
#: The checks of the adapter's own parameters (``modalities`` is resolved against the
#: columns of X in fit).
_OWN_CONSTRAINTS = {name: p.allowed for name, p in PARAMETER_TABLE.items()
                    if name not in PARAMETERS and p.allowed}

#: Name of the single modality used when ``modalities=None``.
_WHOLE = "0"
#: Accepted working dtypes of X; anything else (ints, float16, ...) becomes float64.
_DTYPES = (np.float64, np.float32)
#: Prefix of the names of the missing-indicator columns, as scikit-learn's imputers name them.
_INDICATOR = "missingindicator_"
#: Attributes set by a successful fit.
_FITTED = ("imputer_", "modality_columns_", "passthrough_columns_", "n_iter_")


class ModalityImputer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """UL4M4 imputation of missing modalities stored side by side in one 2-D array.

    Each modality is a group of columns of ``X``; a sample misses a modality when
    all of that modality's columns are NaN in its row. The columns are split into
    ``{modality: block}``, an inner :class:`~ul4m4.UL4M4Imputer` is fitted on the
    blocks, and :meth:`transform` writes the filled blocks back in place of the
    NaN rows. This makes UL4M4 usable as a step of a :class:`~sklearn.pipeline.Pipeline`.
    With ``add_indicator=True`` one 0/1 column per modality says which rows were filled.

    Every parameter but ``modalities`` and ``add_indicator`` is one of
    :class:`~ul4m4.UL4M4Imputer`, with the same default and allowed values, and is
    passed to the inner imputer; its docstring says more.

    Parameters
    ----------
    {parameters}

    Attributes
    ----------
    imputer_ : UL4M4Imputer
        The fitted inner imputer (centres, labels, statistics per modality). With
        ``empty="mean"``, its ``labels_`` cover only the training samples that
        observe at least one modality.
    modality_columns_ : dict of str to ndarray of int
        The resolved column indices of each modality, in increasing order.
    passthrough_columns_ : ndarray of int
        Indices of the columns covered by no modality.
    n_iter_ : int
        Lloyd iterations run by the inner imputer.
    n_features_in_ : int
        Number of columns seen during fit.
    feature_names_in_ : ndarray of str of shape (n_features_in_,)
        Column names seen during fit; only when ``X`` had string column names.

    See Also
    --------
    UL4M4Imputer : The underlying estimator, on ``{modality: array}`` input.

    Notes
    -----
    **Missing values.** Within a modality a row must be either entirely NaN
    (missing) or entirely finite (observed); a partly NaN row raises
    ``ValueError`` unless ``partial="missing"``. Infinite values raise. Observed
    values are returned bit-identical and the caller's array is never modified.

    **pandas.** A DataFrame ``X`` may select columns by name; nullable
    ``Float64``/``Int64`` columns are read as floats with ``pd.NA`` as NaN. With
    ``set_output(transform="pandas")`` (or on a pipeline) :meth:`transform`
    returns a DataFrame with the input's index and column names
    (:meth:`get_feature_names_out`).

    **scikit-learn compatibility.** With ``partial="missing", empty="mean"`` the
    estimator passes :func:`~sklearn.utils.estimator_checks.check_estimator`.
    With the defaults it passes every check except ``check_estimators_pickle``
    (both variants): the check sets 10 random cells of ``X`` to NaN, so some rows
    of the single default modality are partly NaN, and by default a partly NaN
    row is rejected rather than silently reinterpreted (pickling itself works).
    The default stays ``"raise"`` because UL4M4 models whole missing modalities:
    scattered NaN cells usually mean a broken upstream step, and silently
    discarding a row's finite values would hide it.

    Like :class:`~sklearn.cluster.KMeans`, fitting raises ``ValueError`` when
    there are fewer than 2 or fewer than ``n_clusters`` samples (the message
    starts with ``n_samples=...``, which scikit-learn's one-sample check
    accepts), or when a modality is observed in fewer than 2 training samples.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from ul4m4.adapter import ModalityImputer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(120, 7))            # text: columns 0-3, image: 4-6
    >>> y = (X[:, 0] + X[:, 4] > 0).astype(int)
    >>> X[:40, 4:] = np.nan                      # 40 samples miss their image
    >>> pipe = make_pipeline(
    ...     ModalityImputer({"text": slice(0, 4), "image": slice(4, 7)},
    ...                     n_clusters=4, random_state=0),
    ...     LogisticRegression(),
    ... )
    >>> pipe.fit(X, y).predict(X[:3]).shape
    (3,)
    >>> filled = pipe[0].transform(X)
    >>> bool(np.isnan(filled).any())
    False
    >>> bool(np.array_equal(filled[40:], X[40:]))
    True
    """

    # The column layout, the estimator's parameters (from its table) and the indicator,
    # stored as given (checked by fit).
    __init__ = table_init(PARAMETER_TABLE, n_positional=2)

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.target_tags.required = False
        # The inner imputer keeps a floating input's dtype.
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        # validate_data sets n_features_in_ before the selectors are checked, so that
        # attribute alone does not prove a successful fit.
        return hasattr(self, "imputer_")

    def _validate(self, X: Any, **kwargs: Any) -> np.ndarray:
        """``X`` as a float32 or float64 array (sklearn's ``validate_data``).

        Integers become float64, which rounds those beyond 2**53: a warning says so.
        """
        warn_inexact_integers("X", X, stacklevel=3)
        return validate_data(self, X, ensure_all_finite="allow-nan", dtype=_DTYPES, **kwargs)

    def _make_imputer(self) -> UL4M4Imputer:
        # The estimator's parameters belong to the inner imputer.
        params = self.get_params(deep=False)
        return UL4M4Imputer(**{name: params[name] for name in PARAMETERS})

    def fit(self, X: Any, y: Any = None) -> ModalityImputer:
        """Resolve the column selectors and fit the inner UL4M4 imputer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; NaN rows of a modality's columns mark it missing.
        y : ignored
            Present for API consistency; UL4M4 never looks at labels.

        Returns
        -------
        self : ModalityImputer
        """
        # A failed refit must not leave the previous model looking valid for the new data.
        for attr in _FITTED:
            self.__dict__.pop(attr, None)
        imputer = self._make_imputer()
        # Parameter errors before data errors, so a bad n_clusters is not reported as
        # a problem with the data.
        checked_settings(imputer)  # cached: the inner fit does not check them again
        check_params(self.get_params(deep=False), _OWN_CONSTRAINTS)
        X = self._validate(X, reset=True)
        n_samples = X.shape[0]
        if n_samples < 2:
            raise ValueError(
                f"n_samples={n_samples}: UL4M4 needs at least 2 training samples (a modality's "
                "standard deviation is undefined otherwise)"
            )
        columns = _resolve_modalities(
            self.modalities, X.shape[1], getattr(self, "feature_names_in_", None)
        )
        covered = np.zeros(X.shape[1], dtype=bool)
        for cols in columns.values():
            covered[cols] = True
        blocks = _split(X, columns)
        imputer.fit(blocks)
        self.modality_columns_ = columns
        self.passthrough_columns_ = np.flatnonzero(~covered)
        self.imputer_ = imputer
        self.n_iter_ = imputer.n_iter_
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Fill the missing modalities of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with the columns seen during fit, any missing pattern.

        Returns
        -------
        X_filled : ndarray of shape (n_samples, n_features + n_indicators)
            A new array, same column order; float32 input stays float32, other
            input becomes float64. Observed values and pass-through columns are
            bit-identical to ``X``. With ``add_indicator=True``, one more column
            per modality (``n_indicators``, else 0): 1 where it was filled.
        """
        check_is_fitted(self)
        # copy=True copies only when the validated array could alias the caller's.
        out = self._validate(X, reset=False, copy=True)
        if not out.flags.writeable:
            out = out.copy()
        filled, observed = self.imputer_.transform(_split(out, self.modality_columns_),
                                                   return_mask=True)
        for name, cols in self.modality_columns_.items():
            out[:, cols] = filled[name]
        if not self.add_indicator:
            return out
        return np.hstack([out, (~observed).astype(out.dtype)])

    def sources(self, X: Any) -> dict[str, np.ndarray]:
        """Which training centre fills each missing modality row of ``X``.

        The 2-D counterpart of ``UL4M4Imputer.transform(..., return_sources=True)``:
        ``transform`` returns one array, so the audit trail is a method of its own.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data with the columns seen during fit.

        Returns
        -------
        sources : dict of str to ndarray of int64, shape (n_samples,)
            Per modality (keys in the order of ``modality_columns_``): the index of
            the centre that filled the row (soft completion: the centre of largest
            weight), -1 where the modality was observed, -2 where the training mean
            filled it. Refused (``ValueError``) for an ensemble of several fits,
            where no single centre fills a block.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        _, found = self.imputer_.transform(_split(X, self.modality_columns_),
                                           return_sources=True)
        return {name: found[name] for name in self.modality_columns_}

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted adapter to ``path``: pickle-free, checksummed, atomic.

        The file is the inner imputer's model file (:mod:`ul4m4.persistence`,
        format ``ul4m4-modality-imputer``) with the column layout added:
        ``modality_columns_``, ``passthrough_columns_``, ``n_features_in_``,
        ``feature_names_in_`` and the ``add_indicator`` parameter. :meth:`load`
        restores an adapter that transforms bit-identically. The ``modalities``
        parameter is stored as the resolved column positions (selectors by name,
        slice or mask come back as lists of positions selecting the same columns).
        """
        check_is_fitted(self)
        names = getattr(self, "feature_names_in_", None)
        layout = {
            # pairs, not a mapping: meta.json is written with sorted keys
            "modalities": [[n, [int(c) for c in cols]] for n, cols in
                           self.modality_columns_.items()],
            "whole": self.modalities is None,
            "passthrough": [int(c) for c in self.passthrough_columns_],
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": None if names is None else [str(f) for f in names],
            "add_indicator": bool(self.add_indicator),
        }
        save_model(self.imputer_.model_, self.imputer_.get_params(deep=False), path,
                   adapter=layout)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModalityImputer:
        """Read an adapter written by :meth:`save`; it transforms bit-identically.

        Raises :class:`~ul4m4.persistence.ModelFileError` for a damaged file, an
        inconsistent column layout, or a file of ``UL4M4Imputer.save``.
        """
        params, model, layout = load_model(path, adapter=True)
        columns, passthrough, n_features, names, indicator = _check_layout(
            layout, model, os.fspath(path))
        imputer = UL4M4Imputer.from_model(params, model)
        modalities = None if layout.get("whole") is True else {
            n: cols.tolist() for n, cols in columns.items()}
        adapter = cls(modalities, add_indicator=indicator, **params)
        adapter.modality_columns_ = columns
        adapter.passthrough_columns_ = passthrough
        adapter.n_features_in_ = n_features
        if names is not None:
            adapter.feature_names_in_ = names
        adapter.imputer_ = imputer
        adapter.n_iter_ = imputer.n_iter_
        return adapter

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output feature names: the input feature names, since columns are kept in place.

        With ``add_indicator=True`` they are followed by ``missingindicator_<modality>``
        for each modality, in the order of ``modality_columns_``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Input feature names. ``None`` uses ``feature_names_in_`` when defined,
            else ``["x0", "x1", ...]``. When given, it must match
            ``feature_names_in_`` if that is defined.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        names = super().get_feature_names_out(input_features)
        if not self.add_indicator:
            return names
        indicators = [_INDICATOR + name for name in self.modality_columns_]
        return np.concatenate([names, np.asarray(indicators, dtype=object)])


if ModalityImputer.__doc__:  # None under python -OO
    ModalityImputer.__doc__ = ModalityImputer.__doc__.replace(
        "    {parameters}", parameter_docs(PARAMETER_TABLE, short=True))


def _check_layout(layout: dict[str, Any], model: Any, where: str):
    """The stored column layout, checked against itself and the model it belongs to."""
    try:
        n_features = int(layout["n_features_in"])
        stored = [(name, cols) for name, cols in layout["modalities"]]
        if [name for name, _ in stored] != list(model.names):
            raise ValueError("its modalities are not the model's")
        columns = {str(n): np.asarray(cols, dtype=np.intp).reshape(-1) for n, cols in stored}
        passthrough = np.asarray(layout["passthrough"], dtype=np.intp).reshape(-1)
        every = np.concatenate([*columns.values(), passthrough])
        if (n_features < 1 or every.size != n_features
                or not np.array_equal(np.sort(every), np.arange(n_features))):
            raise ValueError("its columns do not cover 0..n_features_in-1 exactly once")
        for (name, cols), width in zip(columns.items(), model.dims, strict=True):
            if cols.size != width or not np.all(np.diff(cols) > 0):
                raise ValueError(f"modality {name!r} has {cols.size} columns, the model "
                                 f"{width}, or they are not increasing")
        if np.any(np.diff(passthrough) <= 0):
            raise ValueError("the pass-through columns are not increasing")
        names = layout.get("feature_names_in")
        if names is not None:
            if not isinstance(names, list) or len(names) != n_features or not all(
                    isinstance(f, str) for f in names):
                raise ValueError("feature_names_in does not match n_features_in")
            names = np.asarray(names, dtype=object)
        # Files written before add_indicator existed have none.
        indicator = layout.get("add_indicator", False)
        if not isinstance(indicator, bool):
            raise ValueError(f"add_indicator={indicator!r} is not a bool")
    except ModelFileError:
        raise
    except (LookupError, TypeError, ValueError, OverflowError) as exc:
        raise ModelFileError(f"{where}: malformed column layout ({exc})") from None
    return columns, passthrough, n_features, names, indicator


def _split(X: np.ndarray, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    # Contiguous column ranges become views: the inner imputer only reads its input.
    return {name: X[:, _as_slice(cols)] for name, cols in columns.items()}


def _as_slice(cols: np.ndarray) -> slice | np.ndarray:
    if cols.size and np.array_equal(cols, np.arange(cols[0], cols[0] + cols.size)):
        return slice(int(cols[0]), int(cols[0]) + cols.size)
    return cols


def _resolve_modalities(
    modalities: Mapping[Any, Any] | None, n_features: int, feature_names: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Turn the ``modalities`` parameter into disjoint sorted column-index arrays."""
    if modalities is None:
        return {_WHOLE: np.arange(n_features)}
    if not isinstance(modalities, Mapping):
        raise ValueError(
            "modalities must be None or a mapping {modality name: column selector}, got "
            f"{type(modalities).__name__}"
        )
    if not modalities:
        raise ValueError("modalities is empty: give at least one modality")
    resolved: dict[str, np.ndarray] = {}
    for key, selector in modalities.items():
        name = str(key)
        if name in resolved:
            raise ValueError(f"modality names must be unique as strings; {name!r} repeats")
        resolved[name] = _resolve_selector(name, selector, n_features, feature_names)
    _check_disjoint(resolved, feature_names)
    return resolved


def _resolve_selector(
    name: str, selector: Any, n_features: int, feature_names: np.ndarray | None
) -> np.ndarray:
    if isinstance(selector, slice):
        cols = _resolve_slice(name, selector, n_features)
    else:
        if isinstance(selector, str | numbers.Integral) and not isinstance(selector, bool):
            selector = [selector]
        try:
            items = np.asarray(selector)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"modality {name!r}: invalid column selector ({exc})") from exc
        if items.ndim != 1:
            raise ValueError(
                f"modality {name!r}: a column selector must be a slice, an int, a column name "
                f"or a 1-D list of them, got {selector!r}"
            )
        if items.dtype.kind == "b":
            if items.size != n_features:
                raise ValueError(
                    f"modality {name!r}: boolean mask has length {items.size}, X has "
                    f"{n_features} columns"
                )
            cols = np.flatnonzero(items)
        elif items.dtype.kind in "iu":
            cols = _resolve_indices(name, items, n_features)
        elif items.size and all(isinstance(item, str) for item in items.tolist()):
            cols = _resolve_names(name, items.tolist(), feature_names)
        elif items.size:
            raise ValueError(
                f"modality {name!r}: columns must be all integer positions or all column "
                f"names, got {selector!r}"
            )
        else:
            cols = np.empty(0, dtype=np.intp)
    if not cols.size:
        raise ValueError(f"modality {name!r}: the selector {selector!r} selects no column")
    repeated = np.unique(cols[np.flatnonzero(np.diff(np.sort(cols)) == 0)])
    if repeated.size:
        raise ValueError(f"modality {name!r}: selects columns {repeated.tolist()} more than once")
    return np.sort(cols).astype(np.intp)


def _resolve_slice(name: str, selector: slice, n_features: int) -> np.ndarray:
    for bound in (selector.start, selector.stop):
        if bound is None:
            continue
        if not isinstance(bound, numbers.Integral) or isinstance(bound, bool):
            raise ValueError(f"modality {name!r}: slice bounds must be integers, got {selector!r}")
        # Python would silently truncate; an overlong slice means the declared widths do
        # not match X, which must not go unnoticed.
        if not -n_features <= bound <= n_features:
            raise ValueError(
                f"modality {name!r}: {selector!r} is out of range for X with {n_features} columns"
            )
    return np.arange(n_features)[selector]


def _resolve_indices(name: str, items: np.ndarray, n_features: int) -> np.ndarray:
    items = items.astype(np.int64)
    bad = items[(items < -n_features) | (items >= n_features)]
    if bad.size:
        raise ValueError(
            f"modality {name!r}: column indices {bad.tolist()} are out of range for X with "
            f"{n_features} columns"
        )
    return np.where(items < 0, items + n_features, items)


def _resolve_names(name: str, labels: list[str], feature_names: np.ndarray | None) -> np.ndarray:
    if feature_names is None:
        raise ValueError(
            f"modality {name!r}: column names {labels} can only be used when X is a DataFrame "
            "with string column names"
        )
    position = {str(f): i for i, f in enumerate(feature_names)}
    unknown = [label for label in labels if label not in position]
    if unknown:
        raise ValueError(f"modality {name!r}: unknown columns {unknown}")
    return np.array([position[label] for label in labels], dtype=np.intp)


def _check_disjoint(resolved: Mapping[str, np.ndarray], feature_names: np.ndarray | None) -> None:
    owner: dict[int, str] = {}
    for name, cols in resolved.items():
        for col in cols.tolist():
            if col in owner:
                other = owner[col]
                shared = np.intersect1d(resolved[other], cols).tolist()
                shown = shared if feature_names is None else [str(feature_names[c]) for c in shared]
                raise ValueError(
                    f"modalities {other!r} and {name!r} overlap on columns {shown}; "
                    "column selectors must be disjoint"
                )
            owner[col] = name
