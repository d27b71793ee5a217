"""Checks of the fusion model's inputs (NumPy only); every error names modality and rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._utils.text import format_rows
from .metrics import TASKS


@dataclass
class Inputs:
    """Validated modality data: float32 arrays with missing rows zero-filled, and the mask."""

    names: list[str]
    arrays: list[np.ndarray]
    mask: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.mask.shape[0])


def check_task(task: Any) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return str(task)


def _as_matrix(name: str, value: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: modality {name!r} cannot be read as an array ({exc})") from exc
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{what}: modality {name!r} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"{what}: modality {name!r} must be 2-D (n_samples, d_m), got shape {arr.shape}"
        )
    if arr.shape[1] < 1:
        raise ValueError(f"{what}: modality {name!r} has zero features")
    return arr.astype(np.float64, copy=False)


def _ordered(
    X: Any, names: Sequence[str] | None, what: str
) -> tuple[list[str], list[Any], list[int]]:
    """Names and arrays in the reference order, and each one's position in ``X``'s order."""
    if not isinstance(X, Mapping):
        raise TypeError(
            f"{what} must be a dict {{modality name: array (n, d_m)}}, got {type(X).__name__}"
        )
    got = [str(k) for k in X]
    if not got:
        raise ValueError(f"{what} has no modality")
    values = list(X.values())
    if names is None:
        return got, values, list(range(len(got)))
    names = list(names)
    if set(got) != set(names) or len(got) != len(names):
        missing = [n for n in names if n not in got]
        extra = [n for n in got if n not in names]
        raise ValueError(
            f"{what} modalities {got} do not match the training modalities {names}: "
            f"missing {missing}, unexpected {extra}"
        )
    position = [got.index(n) for n in names]
    return names, [values[p] for p in position], position


def _check_mask(
    masks: Any, n: int, n_modalities: int, position: list[int], what: str
) -> np.ndarray:
    mask = np.asarray(masks)
    if mask.shape != (n, n_modalities):
        raise ValueError(
            f"masks for {what} must have shape (n_samples, n_modalities) = {(n, n_modalities)}, "
            f"got {mask.shape}"
        )
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError(f"masks for {what} must be boolean (True = observed)")
        mask = mask.astype(bool)
    # Columns follow the order of the caller's dict; put them in the reference order.
    return mask[:, position]


def check_inputs(
    X: Any,
    masks: Any = None,
    *,
    mask_aware: bool,
    names: Sequence[str] | None = None,
    dims: Sequence[int] | None = None,
    what: str = "X",
) -> Inputs:
    """Validate one data set for the fusion model.

    Without ``mask_aware`` every value must be finite (the data are complete or
    already imputed) and ``masks`` is only shape-checked. With ``mask_aware`` a missing
    modality is an all-NaN row (or any row whose mask entry is False); observed rows
    must be finite and every sample needs at least one observed modality. The returned
    arrays are float32 copies with the missing rows set to 0 (their values never reach
    the model's output).
    """
    names, values, position = _ordered(X, names, what)
    arrays = [_as_matrix(name, v, what) for name, v in zip(names, values, strict=True)]
    rows = {name: a.shape[0] for name, a in zip(names, arrays, strict=True)}
    if len(set(rows.values())) != 1:
        raise ValueError(f"{what}: modalities have different numbers of rows: {rows}")
    n = arrays[0].shape[0]
    if n == 0:
        raise ValueError(f"{what} has zero rows")
    if dims is not None:
        for name, a, d in zip(names, arrays, dims, strict=True):
            if a.shape[1] != d:
                raise ValueError(
                    f"{what}: modality {name!r} has {a.shape[1]} features, the model expects {d}"
                )
    finite = [np.isfinite(a) for a in arrays]
    if masks is None:
        mask = np.column_stack([~np.isnan(a).all(axis=1) for a in arrays])
    else:
        mask = _check_mask(masks, n, len(names), position, what)
    if not mask_aware:
        _require_finite(names, finite, np.ones_like(mask), what, mask_aware=False)
        return Inputs(names, [a.astype(np.float32) for a in arrays], np.ones((n, len(names)), bool))
    _require_finite(names, finite, mask, what, mask_aware=True)
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(f"{what}: samples {format_rows(empty)} have no observed modality")
    filled = [
        np.where(m[:, None], a, 0.0).astype(np.float32) for a, m in zip(arrays, mask.T, strict=True)
    ]
    return Inputs(names, filled, mask)


def _require_finite(
    names: list[str], finite: list[np.ndarray], mask: np.ndarray, what: str, *, mask_aware: bool
) -> None:
    for j, (name, ok) in enumerate(zip(names, finite, strict=True)):
        bad = np.flatnonzero(mask[:, j] & ~ok.all(axis=1))
        if not bad.size:
            continue
        if mask_aware:
            raise ValueError(
                f"{what}: modality {name!r} rows {format_rows(bad)} are observed but hold NaN or "
                "infinite values (a missing modality must be an all-NaN row or masked out)"
            )
        raise ValueError(
            f"{what}: modality {name!r} has NaN or infinite values in rows {format_rows(bad)}; "
            "the fusion model needs complete data (impute first, or use mask_aware=True)"
        )


def check_targets(y: Any, task: str, n: int, what: str = "y") -> np.ndarray:
    """Validate targets: (n, L) 0/1, (n,) non-negative ints, or (n,) finite floats."""
    arr = np.asarray(y)
    if task == "multilabel":
        if arr.ndim != 2:
            raise ValueError(
                f"{what} for task 'multilabel' must be 2-D (n, n_labels), got shape {arr.shape}"
            )
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{what} for task 'multilabel' must hold only 0 and 1")
        out = arr.astype(np.float32)
    elif task == "multiclass":
        if arr.ndim != 1:
            raise ValueError(
                f"{what} for task 'multiclass' must be 1-D (n,), got shape {arr.shape}"
            )
        if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            raise ValueError(f"{what} for task 'multiclass' must hold integer class labels")
        if arr.dtype.kind not in "fiub":
            raise ValueError(
                f"{what} for task 'multiclass' must hold integers, got dtype {arr.dtype}"
            )
        out = arr.astype(np.int64)
        if out.size and out.min() < 0:
            raise ValueError(
                f"{what} for task 'multiclass' has negative labels (rows "
                f"{format_rows(np.flatnonzero(out < 0))})"
            )
    else:
        if arr.ndim != 1:
            raise ValueError(
                f"{what} for task 'regression' must be 1-D (n,), got shape {arr.shape}"
            )
        out = arr.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(out))
        if bad.size:
            raise ValueError(f"{what} has non-finite targets in rows {format_rows(bad)}")
    if out.shape[0] != n:
        raise ValueError(f"{what} has {out.shape[0]} rows but the modalities have {n}")
    return out
