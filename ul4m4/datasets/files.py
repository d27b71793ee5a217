"""Open a folder of modality files as memory-mapped arrays, in bounded memory.

Layout (what ``ul4m4 fit`` and ``ul4m4 impute`` read)::

    my_data/
    ├── image.npy          # (n, d_image) numbers, opened memory-mapped
    ├── text.parquet       # n rows of numeric columns (needs pandas + pyarrow)
    └── tabular.csv        # a header line, then n rows of numbers (needs pandas)

* Each ``<name>.npy``, ``<name>.parquet`` or ``<name>.csv`` file is the modality
  ``<name>``; row ``i`` of every file describes sample ``i``, so every file must
  have the same number of rows.
* A modality that is missing for a sample is a row of NaN (``.npy``) or of empty
  / NaN cells (``.parquet``, ``.csv``).
* ``labels.*`` files, other extensions, sub-folders and hidden files are ignored,
  so a benchmark folder (see :mod:`ul4m4.datasets.folder`) can be read as is.

Tables are never read whole: a ``.parquet`` file is read in row batches
(``pyarrow.parquet.ParquetFile.iter_batches``) and a ``.csv`` file in chunks
(``pandas.read_csv(chunksize=...)``); each batch is appended to a temporary
``.npy`` file in a scratch folder, which is then memory-mapped. The caller owns
the scratch folder and deletes it when done.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .folder import read_npy

__all__ = [
    "ModalityFile",
    "ProgressCallback",
    "TABLE_BATCH_BYTES",
    "count_missing_rows",
    "discover_modality_files",
    "open_modality_files",
]

#: Called as ``callback(label, rows_done, total_rows)``; ``total_rows`` is None while
#: unknown and equals ``rows_done`` on the last call for a file.
ProgressCallback = Callable[[str, int, "int | None"], None]

_SUFFIXES = (".npy", ".parquet", ".csv")
_IGNORED_STEMS = ("labels",)
#: Bytes of float64 cells per parquet / csv batch (and per scan of a memory map).
TABLE_BATCH_BYTES = 4 * 2**20
#: A version-1.0 .npy header of a 2-D array always fits 128 bytes (it is padded to 64).
_NPY_HEADER_BYTES = 128
#: Read buffer of a parquet column chunk (its pages are then decoded as they stream in).
_PARQUET_BUFFER = 2**20


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
        if (entry.name.startswith(".") or entry.suffix not in _SUFFIXES
                or entry.stem in _IGNORED_STEMS or not entry.is_file()):
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
        If a file cannot be read, is not a 2-D table of numbers, or the files
        have different numbers of rows (the message lists every file's count).
    ImportError
        If a table is present and pandas (or, for parquet, pyarrow) is missing.
    """
    _check_known_rows(files)
    opened = []
    for name, path in files.items():
        if path.suffix == ".npy":
            array = _open_npy(path)
        else:
            array = _convert_table(path, Path(scratch) / f"{name}.npy", progress)
        opened.append(ModalityFile(name, path, array))
    _check_same_rows({m.path.name: m.array.shape[0] for m in opened})
    return opened


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
    missing, step = 0, _batch_rows(array.shape[1])
    for start in range(0, array.shape[0], step):
        block = np.asarray(array[start : start + step])
        missing += int(np.isnan(block).all(axis=1).sum())
    return missing


def _batch_rows(width: int) -> int:
    return int(max(1, TABLE_BATCH_BYTES // (8 * max(width, 1))))


def _check_known_rows(files: dict[str, Path]) -> None:
    """Compare the row counts readable from file headers before converting anything."""
    rows = {}
    for path in files.values():
        if path.suffix == ".npy":
            rows[path.name] = _open_npy(path).shape[0]
        elif path.suffix == ".parquet":
            rows[path.name] = _parquet_file(path).metadata.num_rows
    _check_same_rows(rows)


def _check_same_rows(rows: dict[str, int]) -> None:
    if len(set(rows.values())) > 1:
        listing = ", ".join(f"{name}: {n}" for name, n in rows.items())
        raise ValueError(f"the files have different numbers of rows ({listing})")


def _open_npy(path: Path) -> np.ndarray:
    array = read_npy(path, mmap=True)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path}: dtype {array.dtype} is not numeric")
    if array.ndim != 2 or 0 in array.shape:
        hint = "; save a single feature as shape (n, 1)" if array.ndim == 1 else ""
        raise ValueError(f"{path}: expected a non-empty 2-D (n, d) array, got {array.shape}{hint}")
    return array


def _parquet_file(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(f"{path}: reading .parquet files needs pyarrow (pip install "
                          "pyarrow pandas)") from exc
    try:
        # No pre-buffering: it reads several row groups ahead (three times the memory).
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=_PARQUET_BUFFER)
    except Exception as exc:  # pyarrow raises its own types (ArrowInvalid, ...)
        raise ValueError(f"{path}: cannot be read as a parquet table ({exc})") from exc


def _convert_table(path: Path, target: Path, progress: ProgressCallback | None) -> np.ndarray:
    """Append the batches of a table to ``target`` (.npy) and memory-map it."""
    batches = _parquet_batches(path) if path.suffix == ".parquet" else _csv_batches(path)
    total = _parquet_file(path).metadata.num_rows if path.suffix == ".parquet" else None
    rows, width = 0, None
    with open(target, "wb") as out:
        out.write(b"\0" * _NPY_HEADER_BYTES)
        for block in batches:
            width = block.shape[1] if width is None else width
            out.write(np.ascontiguousarray(block, dtype="<f8"))
            rows += block.shape[0]
            if progress is not None:
                progress(path.name, rows, total)
        if not rows or not width:
            raise ValueError(f"{path}: the table has no rows or no columns")
        _write_npy_header(out, (rows, width))
    if progress is not None:
        progress(path.name, rows, rows)
    return np.load(target, mmap_mode="r")


def _write_npy_header(out: Any, shape: tuple[int, int]) -> None:
    out.seek(0)
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(out, header)
    if out.tell() != _NPY_HEADER_BYTES:
        raise ValueError(f"table of shape {shape} is too large for a .npy header")


def _parquet_batches(path: Path) -> Iterator[np.ndarray]:
    parquet = _parquet_file(path)
    # One thread: parallel column decoding holds several batches' buffers at once.
    batches = parquet.iter_batches(batch_size=_batch_rows(len(parquet.schema_arrow.names)),
                                   use_threads=False)
    start = 0
    for batch in _reading(batches, path, "a parquet table", Exception):
        yield _numeric_block(batch.to_pandas(), path, start)
        start += batch.num_rows


def _csv_batches(path: Path) -> Iterator[np.ndarray]:
    pd = _pandas(path)
    errors = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError)
    try:
        width = len(pd.read_csv(path, nrows=0).columns)
        chunks = pd.read_csv(path, chunksize=_batch_rows(width), skip_blank_lines=False)
    except errors as exc:
        raise ValueError(f"{path}: cannot be read as a CSV table ({_first_line(exc)})") from exc
    start = 0
    for frame in _reading(chunks, path, "a CSV table", errors):
        yield _numeric_block(frame, path, start)
        start += len(frame)


def _reading(batches: Any, path: Path, what: str, errors: Any) -> Iterator[Any]:
    """Yield from ``batches``; a read error becomes a ValueError naming ``path``."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except errors as exc:  # the readers raise their own types (ArrowInvalid, ...)
            raise ValueError(f"{path}: cannot be read as {what} ({_first_line(exc)})") from exc
        yield batch


def _numeric_block(frame: Any, path: Path, start: int) -> np.ndarray:
    """The cells of ``frame`` as float64 (empty cells NaN); reject text columns."""
    pd = _pandas(path)
    unnamed = [str(c) for c in frame.columns if str(c).startswith("Unnamed: ")]
    if unnamed:
        raise ValueError(
            f"{path}: a column has no name in the header ({unnamed[0]}); the first line "
            "must name every column (pandas: to_csv(path, index=False))"
        )
    bad = [
        str(c) for c in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_complex_dtype(frame[c])
    ]
    if bad:
        raise ValueError(
            f"{path}: columns {bad[:5]} are not numeric (rows {start}..{start + len(frame) - 1}); "
            "a modality table may hold numbers and empty cells only"
        )
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def _pandas(path: Path) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(f"{path}: reading tables needs pandas (pip install pandas)") from exc
    return pd


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
