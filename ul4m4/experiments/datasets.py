"""Data sets the benchmark can run on: registered loaders and the folder layout.

A data set is ``(X, y)``: ``X`` a dict ``{modality: float array (n, d_m)}`` and ``y``
the targets, ``(n,)`` class labels or an ``(n, C)`` 0/1 multi-label matrix.

Registered names (:data:`DATASETS`; add more with :func:`register_dataset`):

- ``mfeat``: UCI Multiple Features, 2000 digits, 6 modalities (shipped);
- ``movielens``: :func:`ul4m4.datasets.movielens.load_movielens`, when installed.

Folder layout
-------------
Any other ``--dataset`` value is read as a folder by :func:`ul4m4.datasets.load_folder`::

    my_data/
        text.npy        # (n, d_text)  one file per modality, named <modality>.npy
        image.npy       # (n, d_image) numbers; an all-NaN row = modality missing
        labels.npy      # (n,) class labels, or (n, C) 0/1 multi-label matrix
        modalities.txt  # optional: modality names, one a line, in the order to use

Modalities may also be ``<modality>.parquet`` files (every column numeric) and the
labels ``labels.parquet`` (one column: classes; several: multi-label), read with
pandas when pyarrow (or fastparquet) is installed. Without ``modalities.txt`` every
modality file is used, in alphabetical order. All files must have the same number
of rows, aligned sample by sample. NaN rows already present count as missing before
any simulated missingness and are never scored.

Split-aware loaders
-------------------
Some data sets compute a modality from the training split (MovieLens fits its
rating SVD on the training movies only). Their entry in :data:`SPLIT_AWARE` takes
the training row indices and is called once per seed with the benchmark's own
split, so no test sample shapes the training features.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.text import first_line

__all__ = [
    "DATASETS",
    "SPLIT_AWARE",
    "DatasetError",
    "describe_dataset",
    "load_dataset",
    "load_folder",
    "register_dataset",
]

Loader = Callable[[], tuple[dict[str, np.ndarray], np.ndarray]]


class DatasetError(ValueError):
    """A data set that cannot be found or read; the message is one line for the CLI."""


def _load_mfeat() -> tuple[dict[str, np.ndarray], np.ndarray]:
    from ..datasets import load_mfeat

    return load_mfeat()


def _movielens(train_idx: np.ndarray | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    try:
        from ..datasets.movielens import load_movielens
    except ImportError as exc:
        raise DatasetError(f"the movielens loader is not available ({exc})") from None
    try:
        if train_idx is None:
            return load_movielens(progress=False)
        return load_movielens(progress=False, train_idx=train_idx)
    except ImportError as exc:
        raise DatasetError(f"movielens cannot be built here: {first_line(exc)}") from None


def _load_movielens() -> tuple[dict[str, np.ndarray], np.ndarray]:
    return _movielens(None)


#: Registered data set names and their loaders (no argument, return ``(X, y)``).
DATASETS: dict[str, Loader] = {
    "mfeat": _load_mfeat,
    "movielens": _load_movielens,
}

#: Data sets whose features depend on the training split: ``loader(train_idx) -> (X, y)``.
SPLIT_AWARE: dict[str, Callable[[np.ndarray], tuple[dict[str, np.ndarray], np.ndarray]]] = {
    "movielens": _movielens,
}


def register_dataset(name: str, loader: Loader) -> None:
    """Make ``--dataset name`` call ``loader()``, which returns ``(X, y)``."""
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"a data set name must be a plain word, got {name!r}")
    DATASETS[name] = loader


def load_dataset(spec: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Load a registered data set by name, or a folder in the documented layout.

    Raises
    ------
    DatasetError
        With a one-line message, for an unknown name, a missing path or bad files.
    """
    if spec in DATASETS:
        X, y = DATASETS[spec]()
        return _check(X, y, spec)
    path = Path(spec)
    if path.is_dir():
        return load_folder(path)
    if path.exists():
        raise DatasetError(f"dataset {spec!r} is a file; give a folder (see --help for the layout)")
    raise DatasetError(
        f"unknown dataset {spec!r}: neither a registered name ({', '.join(DATASETS)}) "
        "nor an existing folder"
    )


def load_folder(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Read a data set folder (layout in the module docstring).

    A thin layer over :func:`ul4m4.datasets.load_folder` that honours
    ``modalities.txt`` and turns every problem into a one-line :class:`DatasetError`.

    Parameters
    ----------
    path : str or Path
        The folder.

    Returns
    -------
    X : dict of str to ndarray of shape (n, d_m)
    y : ndarray of shape (n,) or (n, C)
    """
    from ..datasets import load_folder as read_folder

    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"dataset folder {str(path)!r} does not exist")
    order_file = path / "modalities.txt"
    names = None
    if order_file.is_file():
        names = [ln.strip() for ln in order_file.read_text().splitlines() if ln.strip()]
    try:
        X, y = read_folder(path, modalities=names)
    except (OSError, ValueError, ImportError) as exc:
        raise DatasetError(first_line(exc)) from None
    return _check(X, y, str(path))


def _check(X: dict[str, Any], y: Any, source: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    if not X:
        raise DatasetError(f"dataset {source!r} has no modality")
    y = np.asarray(y)
    n = y.shape[0] if y.ndim else -1
    for name, array in X.items():
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[1] == 0:
            raise DatasetError(
                f"dataset {source!r}: modality {name!r} must be a 2-D (n, d) array, "
                f"got shape {array.shape}"
            )
        if array.shape[0] != n:
            raise DatasetError(
                f"dataset {source!r}: modality {name!r} has {array.shape[0]} rows but the "
                f"labels have {n}"
            )
        if np.isinf(array).any():
            raise DatasetError(f"dataset {source!r}: modality {name!r} contains inf")
        X[name] = array
    if y.ndim not in (1, 2) or n < 4:
        raise DatasetError(
            f"dataset {source!r}: labels must have shape (n,) or (n, C) with n >= 4, got {y.shape}"
        )
    if y.ndim == 2 and not np.isin(y, (0, 1)).all():
        raise DatasetError(f"dataset {source!r}: 2-D labels must be a 0/1 multi-label matrix")
    if y.ndim == 1 and y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise DatasetError(f"dataset {source!r}: labels contain NaN or inf")
    return X, y


def describe_dataset(X: dict[str, np.ndarray], y: np.ndarray) -> dict[str, Any]:
    """Sizes of a data set, for ``config.json`` and the summary."""
    task = "multilabel" if y.ndim == 2 else "multiclass"
    return {
        "n_samples": int(y.shape[0]),
        "modalities": {name: int(a.shape[1]) for name, a in X.items()},
        "task": task,
        "n_classes": int(y.shape[1]) if task == "multilabel" else int(np.unique(y).size),
    }
