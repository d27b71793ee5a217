"""Load a multimodal data set stored as one file per modality in a folder.

Layout::

    my_data/
    ├── image.npy          # (n, d_image) numeric array
    ├── text.npy           # (n, d_text)
    ├── tabular.parquet    # n rows, numeric columns (needs pyarrow or fastparquet)
    └── labels.npy         # (n,) labels, or (n, C) multi-label indicators / targets

* Every ``<name>.npy`` or ``<name>.parquet`` file other than the labels file is a
  modality called ``<name>``; row ``i`` of every file describes sample ``i``.
* A modality that is missing for a sample is a row of NaN in its file. A row
  may not be partly NaN, and infinite values are rejected.
* ``.npy`` files are read with ``allow_pickle=False``: save plain numeric
  arrays (``np.save("image.npy", array)``), not object arrays. A 1-D feature
  must be saved as an ``(n, 1)`` column.
* ``.parquet`` files are read with pandas; every column must be numeric
  (nullable integer / float columns are fine, ``<NA>`` becomes NaN). Column
  names are not kept.
* Other files (``README.md``, ``.csv``, ...), sub-folders and hidden files
  (names starting with ``.``) are ignored.
"""

from __future__ import annotations

import math
import os
import tokenize
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.npy import read_npy_header
from .._utils.text import format_rows, one_line

__all__ = ["load_folder", "read_npy"]

_EXTENSIONS = (".npy", ".parquet")
_NPZ_MAGIC = b"PK\x03\x04"
#: numpy's own default bound on a header it parses safely.
_MAX_NPY_HEADER = 10000
#: Rows examined at a time when scanning for NaN / inf (bounded memory for memmaps).
_SCAN_ROWS = 8192


def _discover(folder: Path) -> dict[str, Path]:
    found: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.is_file() or entry.suffix not in _EXTENSIONS:
            continue
        found.setdefault(entry.stem, []).append(entry)
    ambiguous = {stem: files for stem, files in found.items() if len(files) > 1}
    if ambiguous:
        stem, files = next(iter(ambiguous.items()))
        raise ValueError(
            f"{folder}: {' and '.join(f.name for f in files)} both define {stem!r}; keep one"
        )
    return {stem: files[0] for stem, files in found.items()}


def read_npy(path: Path, mmap: bool) -> np.ndarray:
    """A ``.npy`` file as an array (a read-only memory map with ``mmap``); clear errors for
    damaged files and ``.npz`` archives, and never unpickles.

    The header's shape is checked against the file's size before anything is
    read or mapped, so a header that declares an absurd or negative shape is
    refused with a ``ValueError`` naming the file.
    """
    _check_npy_header(path)
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    # A damaged header makes numpy's parser raise SyntaxError or tokenize.TokenError.
    except (OSError, ValueError, EOFError, SyntaxError, tokenize.TokenError) as exc:
        raise ValueError(
            f"{path}: cannot be read as a .npy array of numbers ({exc}); save it with "
            "numpy.save from a numeric (not object) array"
        ) from exc
    if not isinstance(array, np.ndarray):
        # np.load opens .npz archives whatever the file is called.
        array.close()
        raise ValueError(f"{path}: is an .npz archive, not a .npy array; save it with numpy.save")
    return array


def _check_npy_header(path: Path) -> None:
    """Refuse a ``.npy`` header whose shape is invalid or larger than the file."""
    with open(path, "rb") as handle:
        if handle.read(len(_NPZ_MAGIC)) == _NPZ_MAGIC:
            return  # an .npz archive: np.load says so below
        handle.seek(0)
        try:
            shape, _, dtype = read_npy_header(handle, _MAX_NPY_HEADER)
        except (ValueError, OverflowError, EOFError, SyntaxError, TypeError,
                tokenize.TokenError) as exc:
            raise ValueError(f"{path}: cannot be read as a .npy array of numbers (no valid "
                             f"header: {one_line(exc)}); save it with numpy.save from a "
                             "numeric (not object) array") from None
        offset, size = handle.tell(), os.fstat(handle.fileno()).st_size
    what = f"{path}: cannot be read as a .npy array of numbers (its header declares shape {shape}"
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"{what}, which is invalid)")
    needed = math.prod(shape) * dtype.itemsize
    if needed > size - offset:
        raise ValueError(f"{what}: {needed:,} bytes of data, but the file holds "
                         f"{size - offset:,}; it is truncated or damaged)")



def _read_parquet(path: Path, *, numeric: bool) -> np.ndarray:
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(f"{path}: reading .parquet files needs pandas and pyarrow") from exc
    try:
        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise ImportError(
            f"{path}: reading .parquet files needs pyarrow or fastparquet "
            f"(pip install pyarrow): {exc}"
        ) from exc
    except Exception as exc:
        # The engines raise their own exception types (ArrowInvalid, ...).
        raise ValueError(f"{path}: cannot be read as a parquet table ({exc})") from exc
    if frame.shape[1] == 0:
        raise ValueError(f"{path}: the table has no columns")
    if not numeric:
        return frame.iloc[:, 0].to_numpy() if frame.shape[1] == 1 else frame.to_numpy()
    bad = [
        str(c)
        for c in frame.columns
        if not (
            pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_complex_dtype(frame[c])
        )
    ]
    if bad:
        raise ValueError(
            f"{path}: columns {bad[:10]} are not numeric; a modality table may hold numbers only"
        )
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def _as_modality(path: Path, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{path}: dtype {array.dtype} is not numeric; a modality must hold numbers "
            "(NaN rows for missing samples)"
        )
    if array.ndim != 2:
        hint = "; save a single feature as shape (n, 1)" if array.ndim == 1 else ""
        raise ValueError(
            f"{path}: expected a 2-D (n_samples, n_features) array, got shape {array.shape}{hint}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{path}: empty array of shape {array.shape}")
    if array.dtype.kind != "f":
        # Integers and booleans cannot represent a missing row (NaN).
        array = np.asarray(array, dtype=np.float64)
    partial, infinite = [], []
    for start in range(0, array.shape[0], _SCAN_ROWS):
        block = np.asarray(array[start : start + _SCAN_ROWS])
        nan = np.isnan(block)
        partial.append(np.flatnonzero(nan.any(axis=1) & ~nan.all(axis=1)) + start)
        infinite.append(np.flatnonzero(np.isinf(block).any(axis=1)) + start)
    infinite_rows = np.concatenate(infinite)
    if infinite_rows.size:
        raise ValueError(
            f"{path}: rows {format_rows(infinite_rows, count=True)} contain infinite values"
        )
    partial_rows = np.concatenate(partial)
    if partial_rows.size:
        raise ValueError(
            f"{path}: rows {format_rows(partial_rows, count=True)} are partly NaN; a missing "
            "modality must be a whole row of NaN and an observed row must have no NaN"
        )
    return array


def _as_labels(path: Path, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind == "O" and all(isinstance(v, str) for v in array.ravel()):
        # pandas returns text columns as object arrays.
        array = array.astype(str)
    if array.dtype.kind in "OV":
        raise ValueError(f"{path}: labels of dtype {array.dtype} are not supported")
    if array.ndim not in (1, 2) or array.shape[0] == 0:
        raise ValueError(
            f"{path}: expected labels of shape (n,) or (n, n_labels), got {array.shape}"
        )
    return array


def load_folder(
    path: str | os.PathLike[str],
    *,
    modalities: Sequence[str] | None = None,
    labels: str = "labels",
    require_labels: bool = True,
    mmap: bool = False,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Load a folder holding one ``.npy`` / ``.parquet`` file per modality plus labels.

    See the module documentation for the layout.

    Parameters
    ----------
    path : str or path-like
        The folder.
    modalities : sequence of str, optional
        Modalities to load, in this order. Default: every modality file, in
        sorted name order.
    labels : str, default="labels"
        Stem of the labels file (``labels.npy`` or ``labels.parquet``).
    require_labels : bool, default=True
        Raise when there is no labels file; with False, ``y`` is None then.
    mmap : bool, default=False
        Memory-map floating-point ``.npy`` files (read-only) instead of
        reading them into memory; ul4m4 reads modalities in row chunks, so data
        larger than memory can be used. Integer files are converted to float64
        in memory either way.

    Returns
    -------
    X : dict of str to ndarray
        One ``(n, d_m)`` floating-point array per modality; integer and boolean
        files are converted to float64, float32 files stay float32.
    y : ndarray of shape (n,) or (n, n_labels), or None
        The labels as stored (any non-object dtype).

    Raises
    ------
    FileNotFoundError
        If the folder, a requested modality or (with ``require_labels``) the
        labels file does not exist, or the folder has no modality file.
    ValueError
        If a file cannot be read or has the wrong shape, dtype or content, or
        the files disagree on the number of rows; the message names the file.
    ImportError
        If a ``.parquet`` file is present and no parquet engine is installed.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> np.save(d / "a.npy", np.ones((4, 3)))
    >>> np.save(d / "b.npy", np.array([[1.0], [np.nan], [2.0], [3.0]]))
    >>> np.save(d / "labels.npy", np.array([0, 1, 0, 1]))
    >>> X, y = load_folder(d)
    >>> {k: v.shape for k, v in X.items()}, y.shape
    ({'a': (4, 3), 'b': (4, 1)}, (4,))
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    files = _discover(folder)
    label_file = files.pop(labels, None)
    if modalities is None:
        names = sorted(files)
        if not names:
            raise FileNotFoundError(
                f"{folder} holds no modality file (<name>.npy or <name>.parquet besides {labels}.*)"
            )
    else:
        names = [str(m) for m in modalities]
        if len(set(names)) != len(names):
            raise ValueError(f"modalities has repeated names: {names}")
        if not names:
            raise ValueError("modalities is empty")
        absent = [m for m in names if m not in files]
        if absent:
            raise FileNotFoundError(
                f"{folder}: no file for modalities {absent}; found {sorted(files)}"
            )

    X: dict[str, np.ndarray] = {}
    for name in names:
        file = files[name]
        raw = read_npy(file, mmap) if file.suffix == ".npy" else _read_parquet(file, numeric=True)
        X[name] = _as_modality(file, raw)

    y: Any = None
    if label_file is None:
        if require_labels:
            raise FileNotFoundError(
                f"{folder}: no {labels}.npy or {labels}.parquet with the class labels of the "
                "samples; add one to score a benchmark, or to fill in unlabelled files use "
                "`ul4m4 fit` and `ul4m4 impute` on the command line (from Python: "
                "load_folder(path, require_labels=False))"
            )
    elif label_file.suffix == ".npy":
        y = _as_labels(label_file, read_npy(label_file, False))
    else:
        y = _as_labels(label_file, _read_parquet(label_file, numeric=False))

    rows = {files[name].name: X[name].shape[0] for name in names}
    if y is not None and label_file is not None:
        rows[label_file.name] = y.shape[0]
    if len(set(rows.values())) > 1:
        listing = ", ".join(f"{f}: {n}" for f, n in rows.items())
        raise ValueError(f"{folder}: the files have different numbers of rows ({listing})")
    return X, y
