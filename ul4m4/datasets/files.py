"""Open a folder of modality files as memory-mapped arrays, in bounded memory.

Layout (what ``ul4m4 fit`` and ``ul4m4 impute`` read)::

    my_data/
    ├── image.npy          # (n, d_image) numbers, opened memory-mapped
    ├── text.parquet       # n rows of numeric columns (needs pandas + pyarrow)
    └── tabular.csv        # a header line (or none), then n rows of numbers (needs pandas)

* Each ``<name>.npy``, ``<name>.parquet`` or ``<name>.csv`` file is the modality
  ``<name>``; row ``i`` of every file describes sample ``i``, so every file must
  have the same number of rows (:func:`open_modality_files`). Parquet files
  that store a pandas row index must store the same one.
* Or every file is a table with an id column, holding only the samples that
  have that modality, in any order (:func:`join_modality_files`): the files are
  joined on the union of the ids.
* A modality that is missing for a sample is a row of NaN (``.npy``) or of empty
  / NaN cells (``.parquet``, ``.csv``).
* ``labels.*`` files, other extensions, sub-folders and hidden files are ignored,
  so a benchmark folder (see :mod:`ul4m4.datasets.folder`) can be read as is.

Tables are never read whole (:mod:`ul4m4.datasets.tables`): each row batch is
written to a temporary ``.npy`` file in a scratch folder, which is then
memory-mapped. The caller owns the scratch folder and deletes it when done.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .folder import read_npy
from .tables import Table, batch_rows

__all__ = [
    "ModalityFile",
    "ProgressCallback",
    "SUFFIXES",
    "count_missing_rows",
    "discover_modality_files",
    "is_modality_name",
    "join_modality_files",
    "open_modality_files",
]

#: Called as ``callback(label, rows_done, total_rows)``; ``total_rows`` is None while
#: unknown and equals ``rows_done`` on the last call for a file.
ProgressCallback = Callable[[str, int, "int | None"], None]

#: The suffixes of modality files.
SUFFIXES = (".npy", ".parquet", ".csv")
_IGNORED_STEMS = ("labels", "ids")
#: A version-1.0 .npy header of a 2-D array always fits 128 bytes (it is padded to 64).
_NPY_HEADER_BYTES = 128


@dataclass(frozen=True)
class ModalityFile:
    """One modality of a folder: its name, its file and its (memory-mapped) rows.

    Attributes
    ----------
    name : str
        The modality (the file name without its extension).
    path : Path
        The file in the data folder.
    array : numpy.ndarray
        The rows, ``(n, d)``, read-only and memory-mapped (from ``path`` itself
        for ``.npy``, from a temporary ``.npy`` for tables).
    """

    name: str
    path: Path
    array: np.ndarray


def is_modality_name(name: str) -> bool:
    """Whether :func:`discover_modality_files` reads a file of this name as a modality."""
    path = Path(name)
    return (not name.startswith(".") and path.suffix in SUFFIXES
            and path.stem not in _IGNORED_STEMS)


def discover_modality_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Find the modality files of ``folder``, by modality name in sorted order.

    Parameters
    ----------
    folder : str or path-like
        The data folder.

    Returns
    -------
    dict of str to Path
        One file per modality.

    Raises
    ------
    FileNotFoundError
        If ``folder`` is not a folder or holds no modality file.
    ValueError
        If two files define the same modality (``a.npy`` and ``a.csv``).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    found: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if not (is_modality_name(entry.name) and entry.is_file()):
            continue
        found.setdefault(entry.stem, []).append(entry)
    if not found:
        raise FileNotFoundError(
            f"{folder} holds no modality file (<name>.npy, <name>.parquet or <name>.csv)"
        )
    for stem, files in found.items():
        if len(files) > 1:
            raise ValueError(
                f"{folder}: {' and '.join(f.name for f in files)} both define modality "
                f"{stem!r}; keep one"
            )
    return {stem: files[0] for stem, files in found.items()}


def open_modality_files(
    files: dict[str, Path],
    scratch: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
) -> list[ModalityFile]:
    """Open every file as a read-only ``(n, d)`` memory map; tables go through ``scratch``.

    Row ``i`` of every file is sample ``i``.

    Parameters
    ----------
    files : dict of str to Path
        Modality name to file, e.g. from :func:`discover_modality_files`.
    scratch : str or path-like
        An existing folder for the temporary ``.npy`` copies of tables; the
        caller deletes it when the arrays are no longer used.
    progress : callable, optional
        Told of the rows converted so far (see :data:`ProgressCallback`).

    Returns
    -------
    list of ModalityFile
        In the order of ``files``.

    Raises
    ------
    ValueError
        If a file cannot be read, is not a 2-D table of numbers, the files
        have different numbers of rows (the message lists every file's count),
        or parquet files store different row indexes (rows paired by position
        would then pair different samples).
    ImportError
        If a table is present and pandas (or, for parquet, pyarrow) is missing.
    """
    npys = {name: _open_npy(path) for name, path in files.items() if path.suffix == ".npy"}
    tables = {name: Table(path) for name, path in files.items() if path.suffix != ".npy"}
    known = {n: a.shape[0] for n, a in npys.items()}
    known.update({n: t.rows for n, t in tables.items() if t.rows is not None})
    _check_same_rows({path.name: known[n] for n, path in files.items() if n in known})
    _check_same_index(list(tables.values()))
    opened = [
        ModalityFile(name, path, npys[name] if name in npys else
                     _convert_table(tables[name], Path(scratch) / f"{name}.npy", progress))
        for name, path in files.items()
    ]
    _check_same_rows({m.path.name: m.array.shape[0] for m in opened})
    return opened


def join_modality_files(
    files: dict[str, Path],
    id_column: str,
    scratch: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
) -> tuple[list[ModalityFile], np.ndarray]:
    """Open tables keyed by ``id_column`` as memory maps over the union of their ids.

    Each file holds the samples that have its modality, in any order. Sample
    ``i`` of the result is ``ids[i]``, the sorted union of the ids of every file;
    a file that lacks an id has a missing (all-NaN) row there.

    Parameters
    ----------
    files : dict of str to Path
        Modality name to ``.parquet`` or ``.csv`` file.
    id_column : str
        The column of every file that holds the sample ids (integers or text;
        an integer in one file matches the same integer written as text in
        another).
    scratch : str or path-like
        An existing folder for the joined ``.npy`` copies.
    progress : callable, optional
        Told of the rows converted so far.

    Returns
    -------
    opened : list of ModalityFile
        In the order of ``files``, each ``(len(ids), d)``.
    ids : numpy.ndarray
        int64 where every id is an integer, else text.

    Raises
    ------
    ValueError
        If a file is an ``.npy`` array (it has no columns), lacks the column,
        has a row without an id or an id twice.
    """
    arrays = [name for name, path in files.items() if path.suffix == ".npy"]
    if arrays:
        raise ValueError(f"{files[arrays[0]]}: an .npy array has no id column; with --id every "
                         "modality file must be a .parquet or .csv table holding the column "
                         f"{id_column!r}")
    tables = {name: Table(path, id_column) for name, path in files.items()}
    keys = _common_ids({name: table.ids() for name, table in tables.items()})
    ids = np.unique(np.concatenate(list(keys.values())))
    opened = [
        ModalityFile(name, table.path, _convert_table(
            table, Path(scratch) / f"{name}.npy", progress,
            rows=(len(ids), np.searchsorted(ids, keys[name]))))
        for name, table in tables.items()
    ]
    return opened, ids


def count_missing_rows(array: np.ndarray) -> int:
    """Number of all-NaN rows of a 2-D array, read in row chunks (bounded memory).

    Parameters
    ----------
    array : numpy.ndarray of shape (n, d)

    Returns
    -------
    int
    """
    if array.dtype.kind != "f":
        return 0
    missing, step = 0, batch_rows(array.shape[1])
    for start in range(0, array.shape[0], step):
        block = np.asarray(array[start : start + step])
        missing += int(np.isnan(block).all(axis=1).sum())
    return missing


def _common_ids(keys: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The files' ids in one kind: all int64, or all text where any file holds text ids."""
    if all(k.dtype.kind == "i" for k in keys.values()):
        return keys
    return {name: k.astype(str) for name, k in keys.items()}


def _check_same_rows(rows: dict[str, int]) -> None:
    if len(set(rows.values())) > 1:
        listing = ", ".join(f"{name}: {n}" for name, n in rows.items())
        raise ValueError(f"the files have different numbers of rows ({listing}); row i of every "
                         "file is sample i, unless the files are tables joined on an id column "
                         "(--id COLUMN)")


def _check_same_index(tables: list[Table]) -> None:
    """Parquet files that kept a pandas row index must keep the same one."""
    stored = [(t, t.stored_index()) for t in tables]
    stored = [(t, index) for t, index in stored if index is not None]
    for (first, a), (other, b) in zip(stored, stored[1:], strict=False):
        if len(a) == len(b) and np.array_equal(a, b):
            continue
        row = _first_difference(a, b)
        raise ValueError(
            f"{first.path} and {other.path.name} store different row indexes (row {row}: "
            f"{_cell(a, row)} and {_cell(b, row)}), so pairing their rows by position would "
            "pair different samples; save them with one index (reindex to the union of the "
            "indexes), or keep the ids in a column and pass --id COLUMN to join the files on it"
        )


def _first_difference(a: np.ndarray, b: np.ndarray) -> int:
    common = min(len(a), len(b))
    differ = np.flatnonzero(a[:common] != b[:common])
    return int(differ[0]) if len(differ) else common


def _cell(index: np.ndarray, row: int) -> str:
    if row >= len(index):
        return "no row"
    value = index[row]
    return repr(value.item() if isinstance(value, np.generic) else value)


def _open_npy(path: Path) -> np.ndarray:
    array = read_npy(path, mmap=True)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path}: dtype {array.dtype} is not numeric")
    if array.ndim != 2 or 0 in array.shape:
        hint = "; save a single feature as shape (n, 1)" if array.ndim == 1 else ""
        raise ValueError(f"{path}: expected a non-empty 2-D (n, d) array, got {array.shape}{hint}")
    return array


def _convert_table(table: Table, target: Path, progress: ProgressCallback | None, *,
                   rows: tuple[int, np.ndarray] | None = None) -> np.ndarray:
    """Copy the batches of a table to ``target`` (.npy) and memory-map it.

    ``rows=(n, positions)`` writes row ``j`` of the table at row ``positions[j]``
    of an ``(n, d)`` array whose other rows are NaN; else rows are appended.
    """
    name, total = table.path.name, table.rows
    with open(target, "wb") as out:
        out.write(b"\0" * _NPY_HEADER_BYTES)
        width = len(table.columns)
        if rows is not None:
            _write_npy_header(out, (rows[0], width), table.dtype)
            _fill_nan(out, rows[0] * width, table.dtype)
            out.flush()
            placed = np.memmap(target, dtype=table.dtype, mode="r+", offset=_NPY_HEADER_BYTES,
                               shape=(rows[0], width))
        done = 0
        for _, block in table.batches():
            if rows is None:
                out.write(np.ascontiguousarray(block))
            else:
                placed[rows[1][done : done + len(block)]] = block
            done += len(block)
            if progress is not None:
                progress(name, done, total)
        if not done:
            raise ValueError(f"{table.path}: the table has no rows")
        if rows is None:
            _write_npy_header(out, (done, width), table.dtype)
        else:
            placed.flush()
            del placed
    if progress is not None:
        progress(name, done, done)
    return np.load(target, mmap_mode="r")


def _fill_nan(out: Any, cells: int, dtype: np.dtype) -> None:
    step = batch_rows(1)
    chunk = np.full(min(cells, step), np.nan, dtype=dtype)
    for start in range(0, cells, step):
        out.write(chunk[: min(step, cells - start)])


def _write_npy_header(out: Any, shape: tuple[int, int], dtype: np.dtype) -> None:
    out.seek(0)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": shape}
    np.lib.format.write_array_header_1_0(out, header)
    if out.tell() != _NPY_HEADER_BYTES:
        raise ValueError(f"table of shape {shape} is too large for a .npy header")
    out.seek(0, os.SEEK_END)
