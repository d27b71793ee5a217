"""Input adaptation: the caller's mapping or list of arrays, DataFrames, tensors or
sparse matrices, read as named 2-D arrays, and results given back in the caller's form.

A data set is a mapping ``{modality name: array (n_samples, d_m)}`` (or a list of
arrays, named ``"0"``, ``"1"``, ...). Arrays are never copied as a whole nor
modified: memory-mapped arrays and other row-sliceable array-likes are read
through row readers (:mod:`ul4m4.stream`).

pandas DataFrames are read as their values (nullable ``Float64``/``Int64`` columns
as floats, ``pd.NA`` as NaN); the rows of several DataFrames are paired by
position, so their indexes must be equal. :class:`InputForm` gives results back
in the caller's form: under the caller's own keys, and as a DataFrame where a
DataFrame came in.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from .stream import as_row_source
from .threads import fits_inline

__all__ = [
    "InputForm",
    "as_2d_array",
    "as_named_arrays",
    "check_2d",
    "check_array",
    "feature_names",
    "is_small_input",
    "named_values",
    "output_copy",
    "output_dtype",
    "reject_sparse",
    "warn_inexact_integers",
]


def is_small_input(X: Any) -> bool:
    """Whether ``X`` holds at most :data:`~ul4m4.threads.INLINE_BYTES` as float64 cells (a serving call).

    Read from the values' ``shape`` only; False where a value has none.
    """
    if isinstance(X, Mapping):
        values = list(X.values())
    elif isinstance(X, Sequence) and not isinstance(X, str | bytes):
        values = list(X)
    else:
        return False
    shapes = [getattr(value, "shape", None) for value in values]
    if not values or any(shape is None for shape in shapes):
        return False
    return fits_inline(sum(math.prod(shape) for shape in shapes) * 8)



def as_named_arrays(X: Any) -> tuple[list[str], list[Any]]:
    names, values = named_values(X)
    return names, [as_2d_array(name, v) for name, v in zip(names, values, strict=True)]



def named_values(X: Any) -> tuple[list[str], list[Any]]:
    """Modality names and the caller's values of a mapping or list input (names as str).

    Rejects what no engine reading these values takes: torch tensors (the torch
    engine converts them before) and DataFrames whose indexes differ.
    """
    if isinstance(X, Mapping):
        names = [str(k) for k in X.keys()]
        if len(set(names)) != len(names):
            raise ValueError(f"modality names must be unique as strings, got {list(X.keys())!r}")
        values = list(X.values())
    elif isinstance(X, Sequence) and not isinstance(X, str | bytes):
        names = [str(i) for i in range(len(X))]
        values = list(X)
    else:
        raise TypeError(
            "X must be a mapping {modality name: array (n_samples, n_features)} or a list of "
            f"such arrays, got {type(X).__name__}"
        )
    if not values:
        raise ValueError("X has no modality")
    for name, value in zip(names, values, strict=True):
        if _is_tensor(value):
            # NumPy has no bfloat16: such a tensor converts through float32.
            convert = ".float().numpy()" if str(value.dtype) == "torch.bfloat16" else ".numpy()"
            raise TypeError(
                f"modality {name!r} is a torch.Tensor: pass backend='torch' to take tensors "
                "(results come back as tensors on their device), or convert it with "
                f"{convert} for this backend"
            )
    _check_frame_indexes(names, values, list(X.keys()) if isinstance(X, Mapping) else None)
    return names, values



@dataclass(frozen=True)
class InputForm:
    """The caller's form of an input, to give results back in it.

    Results are computed under the modality names (keys as ``str``);
    :meth:`wrap` puts the caller's own keys back (``{0: a}`` gives ``{0: ...}``)
    and turns the filled array of a modality given as a DataFrame into a
    DataFrame of the same type, index and columns.

    Attributes
    ----------
    keys : dict of str to object
        Name -> the caller's key (empty for a list input: results are keyed by
        the fitted names).
    frames : dict of str to (type, index, columns)
        The modalities given as DataFrames.
    """

    keys: dict[str, Any]
    frames: dict[str, tuple[type, Any, Any]]

    @classmethod
    def of(cls, X: Any) -> InputForm:
        if not isinstance(X, Mapping):
            return cls({}, {})
        return cls({str(k): k for k in X},
                   {str(k): (type(v), v.index, v.columns) for k, v in X.items() if _is_frame(v)})

    def order(self, fitted: Sequence[str]) -> list[str]:
        """Output names: those of the input mapping in its order, else the fitted ones."""
        return list(self.keys) if self.keys else list(fitted)

    def as_frames(self, names: Sequence[str], dims: Sequence[int], n_rows: int) -> InputForm:
        """This form with every modality returned as a pandas DataFrame.

        Modalities given as arrays get columns ``<name>_0``, ``<name>_1``, ... and
        the index of the DataFrames in the input (rows pair by position), else a
        RangeIndex. Needs pandas.
        """
        import pandas as pd  # optional dependency, needed only for DataFrame output

        index = next((index for _, index, _ in self.frames.values()), pd.RangeIndex(n_rows))
        frames = {name: (pd.DataFrame, index, list(feature_names(name, d)))
                  for name, d in zip(names, dims, strict=True)}
        return InputForm(self.keys, {**frames, **self.frames})

    def wrap(self, result: Any, frames: bool = True) -> Any:
        """``result`` (a dict by name, or a tuple of them: filled, sources, weights) under
        the caller's keys; with ``frames``, filled host arrays of DataFrames as DataFrames."""
        if isinstance(result, tuple):
            return (self.wrap(result[0], frames), *(self.wrap(r, False) for r in result[1:]))
        out = {}
        for name, value in result.items():
            if frames and name in self.frames and isinstance(value, np.ndarray):
                kind, index, columns = self.frames[name]
                value = kind(value, index=index, columns=columns, copy=False)
            out[self.keys.get(name, name)] = value
        return out


#: Integers of larger magnitude do not all convert to float64 exactly.
_EXACT_INT = 2**53


def warn_inexact_integers(name: str, values: Any, stacklevel: int = 2) -> None:
    """Warn when integer values of ``values`` (an array or a DataFrame) exceed 2**53.

    For data converted to float64 (nullable integer columns, which hold NA, and
    the 2-D array of :class:`~ul4m4.adapter.ModalityImputer`): such integers are
    rounded, so they do not come back exactly. The check is exact (integer
    arithmetic) and reads only integer columns.
    """
    if _is_frame(values):
        columns = [values.iloc[:, j] for j, d in enumerate(values.dtypes)
                   if getattr(d, "kind", "") in ("i", "u")]
        extremes = [int(v) for c in columns if c.notna().any() for v in (c.min(), c.max())]
    elif np.dtype(getattr(values, "dtype", np.float64)).kind in "iu" and np.size(values):
        extremes = [int(np.min(values)), int(np.max(values))]
    else:
        return
    largest = max((abs(v) for v in extremes), default=0)
    if largest > _EXACT_INT:
        warnings.warn(
            f"{name}: integer values up to {largest} in magnitude exceed 2**53 and are "
            "rounded by the conversion to float64, so they do not come back exactly; "
            "pass them as a plain integer array to a UL4M4Imputer (returned unchanged) "
            "or as float64 deliberately",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def feature_names(name: str, width: int) -> np.ndarray:
    """The output column names of an array modality: ``<name>_0``, ``<name>_1``, ..."""
    return np.asarray([f"{name}_{j}" for j in range(width)], dtype=object)


def _is_tensor(value: Any) -> bool:
    # Without importing torch: importing ul4m4 never imports it.
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def _is_frame(value: Any) -> bool:
    """A pandas DataFrame (duck-typed: pandas is an optional dependency)."""
    return all(hasattr(value, a) for a in ("to_numpy", "columns", "index", "dtypes"))


def _check_frame_indexes(names: Sequence[str], values: Sequence[Any],
                         keys: Sequence[Any] | None = None) -> None:
    """Raise when DataFrame modalities have different indexes (rows pair by position).

    The message shows the fix: reindex every DataFrame on the union of their
    indexes, so that no sample is dropped (``keys``: the caller's mapping keys,
    None for a list input).
    """
    frames = [(i, name, v) for i, (name, v) in enumerate(zip(names, values, strict=True))
              if _is_frame(v)]
    for _, name, frame in frames[1:]:
        _, first, reference = frames[0]
        if not frame.index.equals(reference.index):
            raise ValueError(
                f"modalities {first!r} and {name!r} are DataFrames with different indexes, "
                "but rows are paired by position; align them first on the union of their "
                "indexes (labels a DataFrame lacks become all-NaN rows, i.e. missing "
                f"modalities), e.g. {_union_hint([i for i, _, _ in frames], keys)}"
            )


def _union_hint(positions: Sequence[int], keys: Sequence[Any] | None) -> str:
    """Python code that reindexes the DataFrames of ``X`` on the union of their indexes."""
    def item(i: int) -> str:
        return f"X[{keys[i]!r}]" if keys is not None else f"X[{i}]"

    index = item(positions[0]) + ".index" + "".join(
        f".union({item(i)}.index)" for i in positions[1:])
    if keys is None:
        return f"index = {index}; X = [df.reindex(index) for df in X]"
    return f"index = {index}; X = {{m: df.reindex(index) for m, df in X.items()}}"


def _frame_values(name: str, frame: Any) -> np.ndarray:
    """A DataFrame's values; nullable numeric columns (``Float64``, ``Int64``, ...) as floats.

    ``pd.NA`` becomes NaN, so a row of NA is a missing modality. Float columns keep
    their width (``Float32`` columns alone give float32).
    """
    numeric = [d if isinstance(d, np.dtype) else getattr(d, "numpy_dtype", None)
               for d in frame.dtypes]
    if all(isinstance(d, np.dtype) for d in frame.dtypes) or not all(
            isinstance(d, np.dtype) and d.kind in "fiu" for d in numeric):
        return frame.to_numpy()
    target = np.result_type(*numeric)
    if target.kind != "f":
        target = np.dtype(np.float64)
        warn_inexact_integers(f"modality {name!r}", frame)
    return frame.to_numpy(dtype=target, na_value=np.nan)


def as_2d_array(name: str, value: Any) -> Any:
    if _is_frame(value):
        value = _frame_values(name, value)
    elif not hasattr(value, "shape") or not hasattr(value, "dtype"):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"modality {name!r}: cannot be read as a numeric array ({exc})") from exc
    check_array(name, value)
    # Memory maps and other array-likes are read through a row reader, so that no
    # pass over them keeps more than a chunk of rows (or of mapped pages) resident.
    return as_row_source(value)



def check_array(name: str, value: Any) -> None:
    """Raise unless ``value`` (anything with ``shape`` and ``dtype``) is a 2-D real numeric
    array with at least one feature: the check of every modality, on every backend."""
    dtype = np.dtype(value.dtype)
    if dtype.kind not in "fiu":
        raise TypeError(
            f"modality {name!r}: expected a real numeric dtype (float or int), got {dtype}"
        )
    check_2d(name, value.shape)
    if value.shape[1] < 1:
        raise ValueError(f"modality {name!r}: has zero features")


def check_2d(name: str, shape: Sequence[int]) -> None:
    """Raise unless ``shape`` is 2-D; a 1-D shape gets the reshape that fixes it."""
    if len(shape) == 2:
        return
    message = (f"modality {name!r}: expected a 2-D array (n_samples, n_features), got shape "
               f"{tuple(shape)}")
    if len(shape) == 1:
        message += ("; for a single sample pass x.reshape(1, -1), for a single feature "
                    "x.reshape(-1, 1)")
    raise ValueError(message)



def reject_sparse(X: Any) -> None:
    """Name the modality of a scipy.sparse input (its rows do not read as dense arrays)."""
    items = X.items() if isinstance(X, Mapping) else enumerate(X) if isinstance(X, list) else ()
    for name, value in items:
        if sparse.issparse(value):
            raise TypeError(
                f"modality {str(name)!r}: scipy.sparse input is not supported; pass a dense "
                "array (e.g. value.toarray())"
            )


def output_dtype(dtype: Any) -> np.dtype:
    """The dtype of a completed modality: the input's (floating or integer).

    An integer array holds no NaN, so its modality is observed in every row and
    comes back unchanged: keeping its dtype keeps every value exact (float64
    would round integers beyond 2**53).
    """
    dtype = np.dtype(dtype)
    return dtype if dtype.kind in "fiu" else np.dtype(np.float64)


def output_copy(array: Any) -> np.ndarray:
    """A copy of the caller's array in :func:`output_dtype`."""
    return np.array(array, dtype=output_dtype(array.dtype), copy=True)
