"""Availability masks and NaN-bearing data: :func:`apply_mask` and :func:`mask_from_data`.

A data dict ``{name: (n, d_m) array}`` carries a modality's absence as an all-NaN row;
these functions turn an ``(n, M)`` boolean mask into such rows and read it back.  The
read-back uses the core's row scan (:func:`ul4m4.validation.scan_block`), so "missing" means
here what it means to the estimators: the whole row is NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..validation import scan_block

__all__ = ["apply_mask", "as_mask", "check_data", "mask_from_data"]


def check_data(X: Any) -> tuple[list[str], list[np.ndarray]]:
    if not isinstance(X, Mapping):
        raise TypeError(f"X must be a dict {{modality name: (n, d) array}}, got {type(X).__name__}")
    if len(X) == 0:
        raise ValueError("X must contain at least one modality")
    names = list(X.keys())
    arrays: list[np.ndarray] = []
    n_ref: int | None = None
    for name in names:
        arr = np.asarray(X[name])
        if arr.ndim != 2:
            raise ValueError(f"modality {name!r} must be a 2-D (n, d) array, got shape {arr.shape}")
        if n_ref is None:
            n_ref = arr.shape[0]
        elif arr.shape[0] != n_ref:
            raise ValueError(
                f"modality {name!r} has {arr.shape[0]} rows but modality {names[0]!r} "
                f"has {n_ref}; all modalities must have the same number of samples"
            )
        arrays.append(arr)
    return names, arrays


def as_mask(mask: Any) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be a 2-D (n, M) array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind in "iuf" and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    raise ValueError(
        f"mask must be boolean (or contain only 0/1), got dtype {arr.dtype} with other values"
    )


def apply_mask(X: Mapping[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    """Return a new data dict in which the rows marked absent are all-NaN.

    Parameters
    ----------
    X : dict {name: ndarray (n, d_m)}
        Data; never modified.
    mask : ndarray of bool, shape (n, M)
        Availability mask with ``M = len(X)`` columns in the order of ``X``; 0/1 integers are
        accepted.

    Returns
    -------
    dict {name: ndarray (n, d_m)}
        Copies with the same keys and order.  Floating arrays keep their dtype; any other
        dtype is converted to float64 so that NaN can be stored.  Rows that were already NaN
        in ``X`` stay NaN.

    Examples
    --------
    >>> X = {"text": np.ones((2, 2)), "image": np.zeros((2, 1), dtype=int)}
    >>> out = apply_mask(X, np.array([[True, False], [False, True]]))
    >>> out["image"].tolist()
    [[nan], [0.0]]
    """
    names, arrays = check_data(X)
    m = as_mask(mask)
    n = arrays[0].shape[0]
    if m.shape[1] != len(names):
        raise ValueError(f"mask has {m.shape[1]} columns but X has {len(names)} modalities {names}")
    if m.shape[0] != n:
        raise ValueError(f"mask has {m.shape[0]} rows but modality {names[0]!r} has {n} samples")
    out: dict[str, np.ndarray] = {}
    for j, (name, arr) in enumerate(zip(names, arrays, strict=True)):
        if arr.dtype.kind == "c":
            raise TypeError(f"modality {name!r} is complex; only real data can be masked")
        dtype = arr.dtype if arr.dtype.kind == "f" else np.float64
        res = np.array(arr, dtype=dtype, copy=True)
        res[~m[:, j]] = np.nan
        out[name] = res
    return out


def mask_from_data(X: Mapping[str, np.ndarray]) -> np.ndarray:
    """Availability mask of a NaN-bearing data dict.

    A modality of a sample is missing exactly when its whole row is NaN; a row with only some
    NaN entries (or with infinite values) counts as present.  Non-floating arrays cannot hold
    NaN and are fully present.  Rows are read with the estimators' own scan
    (:func:`ul4m4.validation.scan_block`), which only looks closely at rows whose sum is not finite.

    Examples
    --------
    >>> X = {"text": np.array([[1.0, np.nan], [np.nan, np.nan]]), "image": np.ones((2, 1))}
    >>> mask_from_data(X).tolist()
    [[True, True], [False, True]]
    """
    names, arrays = check_data(X)
    n = arrays[0].shape[0]
    mask = np.ones((n, len(names)), dtype=bool)
    for j, (name, arr) in enumerate(zip(names, arrays, strict=True)):
        if arr.shape[1] == 0:
            raise ValueError(f"modality {name!r} has no columns, so missing rows are undefined")
        if arr.dtype.kind in "fc":
            # The scan's partly-NaN and infinite rows are the estimators' errors, not ours:
            # here they simply count as present.
            mask[:, j] = scan_block(arr)[0]
    return mask
