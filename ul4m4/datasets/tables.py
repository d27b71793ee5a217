"""Read a modality table (``.parquet`` or ``.csv``) in row batches, in bounded memory.

A :class:`Table` knows a file's data columns, its id column (if one is named),
the row index that pandas stored in a parquet file, and whether a CSV file
starts with a header line. :meth:`Table.batches` yields ``(ids, values)`` row
batches: ``values`` as float (empty cells NaN), ``ids`` the id column's values
(or None). Parquet is read with ``pyarrow.parquet.ParquetFile.iter_batches``
(one thread, no pre-buffering), CSV with ``pandas.read_csv(chunksize=...)``.

Checks that guard against silently wrong rows:

* a CSV file whose first line is numbers is read as headerless data (its first
  line is the first sample), except a line ``0,1,...,d-1`` (or ``1,...,d``),
  which is the header pandas writes for unnamed columns;
* a column that looks like a sample id (named ``id`` or ``*_id``, or integers
  that are distinct and increasing) but is read as a feature raises a warning
  naming it (:class:`IdColumnWarning`);
* ids must be present and unique within a file.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.text import first_line

__all__ = [
    "TABLE_BATCH_BYTES",
    "IdColumnWarning",
    "Table",
    "batch_rows",
    "normalise_ids",
]

#: Bytes of float64 cells per parquet / csv batch (and per scan of a memory map).
TABLE_BATCH_BYTES = 4 * 2**20
#: Read buffer of a parquet column chunk (its pages are then decoded as they stream in).
_PARQUET_BUFFER = 2**20
_ID_NAME = re.compile(r"(^|[_\-\s.])id$", re.IGNORECASE)
_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")


class IdColumnWarning(UserWarning):
    """A column that looks like a sample id is read as an embedding dimension."""


def batch_rows(width: int) -> int:
    """Rows per batch so that a batch of ``width`` float64 cells is about TABLE_BATCH_BYTES."""
    return int(max(1, TABLE_BATCH_BYTES // (8 * max(width, 1))))


@dataclass
class Table:
    """One ``.parquet`` or ``.csv`` modality file, read in row batches.

    Parameters
    ----------
    path : Path
    id_column : str, optional
        The column that holds each row's sample id (not a feature).

    Attributes
    ----------
    columns : list of str
        The data columns (the feature dimensions), in file order.
    header : bool
        False for a CSV file without a header line (its columns are named
        ``"0"``, ``"1"``, ...).
    dtype : numpy.dtype
        float32 for a parquet file whose data columns are all float32 (or
        float16), else float64.
    """

    path: Path
    id_column: str | None = None
    columns: list[str] = field(init=False)
    header: bool = field(init=False, default=True)
    dtype: np.dtype = field(init=False)
    _parquet: Any = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.path.suffix == ".parquet":
            self._parquet = _parquet_file(self.path)
            names = self._parquet.schema_arrow.names
            stored = set(_index_columns(self._parquet)) - {self.id_column}
            self.columns = [c for c in names if c not in stored]
        else:
            self.columns, self.header = _csv_columns(self.path)
        if self.id_column is not None:
            if self.id_column not in self.columns:
                raise ValueError(f"{self.path}: has no column {self.id_column!r} for --id "
                                 f"(columns: {_listing(self.columns)})")
            self.columns.remove(self.id_column)
        if not self.columns:
            raise ValueError(f"{self.path}: the table has no data columns")
        self.dtype = self._dtype()

    @property
    def rows(self) -> int | None:
        """Rows, where the file's metadata say it (parquet), else None."""
        return None if self._parquet is None else int(self._parquet.metadata.num_rows)

    def batches(self) -> Iterator[tuple[np.ndarray | None, np.ndarray]]:
        """``(ids, values)`` row batches; every batch has at least one row."""
        frames = self._parquet_frames() if self._parquet is not None else self._csv_frames()
        start, ids_seen = 0, _IdLikeColumns(self.columns) if self.id_column is None else None
        for frame in frames:
            if not len(frame):
                continue
            ids = None if self.id_column is None else self._ids(frame[self.id_column], start)
            data = frame[self.columns]
            values = _numeric_block(data, self.path, start, self.dtype)
            if ids_seen is not None:
                ids_seen.update(data, _pandas(self.path))
            start += len(frame)
            yield ids, values
        if ids_seen is not None:
            ids_seen.warn(self.path)

    def ids(self) -> np.ndarray:
        """The id column, whole (ints, or text), checked present and unique."""
        frames = self._parquet_frames(columns=[self.id_column]) if self._parquet is not None \
            else self._csv_frames(columns=[self.id_column])
        parts, start = [], 0
        for frame in frames:
            parts.append(self._ids(frame[self.id_column], start))
            start += len(frame)
        ids = normalise_ids(np.concatenate(parts) if parts else np.array([], dtype=object),
                            self.path, self.id_column)
        _check_unique(ids, self.path, self.id_column)
        return ids

    def stored_index(self) -> np.ndarray | None:
        """The row index pandas stored in a parquet file (None: CSV, or no index kept)."""
        if self._parquet is None:
            return None
        meta = self._parquet.schema_arrow.pandas_metadata or {}
        index = meta.get("index_columns") or []
        if len(index) != 1:
            return None
        if isinstance(index[0], dict):  # a RangeIndex is stored as its bounds only
            spec = index[0]
            if spec.get("kind") != "range":
                return None
            return np.arange(spec["start"], spec["stop"], spec["step"])
        column = self._parquet.read(columns=[index[0]], use_threads=False).column(0)
        return column.to_numpy(zero_copy_only=False)

    def _ids(self, column: Any, start: int) -> np.ndarray:
        values = column.to_numpy()
        empty = [i for i, v in enumerate(values) if v is None or v == ""
                 or (isinstance(v, float) and np.isnan(v))]
        if empty:
            raise ValueError(f"{self.path}: row {start + empty[0]} has no id in column "
                             f"{self.id_column!r}")
        return values

    def _dtype(self) -> np.dtype:
        if self._parquet is None:
            return np.dtype(np.float64)
        schema = self._parquet.schema_arrow
        types = {str(schema.field(c).type) for c in self.columns}
        return np.dtype(np.float32 if types <= {"float", "halffloat"} else np.float64)

    def _parquet_frames(self, columns: list[str] | None = None) -> Iterator[Any]:
        if columns is None:
            columns = self.columns + ([self.id_column] if self.id_column else [])
        # One thread: parallel column decoding holds several batches' buffers at once.
        batches = self._parquet.iter_batches(batch_size=batch_rows(len(columns)),
                                             columns=columns, use_threads=False)
        for batch in _reading(batches, self.path, "a parquet table", Exception):
            yield batch.to_pandas(ignore_metadata=True)

    def _csv_frames(self, columns: list[str] | None = None) -> Iterator[Any]:
        pd = _pandas(self.path)
        errors = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError)
        options: dict[str, Any] = {"skip_blank_lines": False}
        if self.id_column is not None:
            options["dtype"] = {self.id_column: str}
            options["keep_default_na"] = False
            options["na_values"] = {c: ["", "NA", "NaN", "nan", "N/A", "NULL", "null"]
                                    for c in self.columns}
        if not self.header:
            options["header"] = None
            options["names"] = self.columns
        width = len(self.columns) + (self.id_column is not None)
        try:
            chunks = pd.read_csv(self.path, chunksize=batch_rows(width), usecols=columns,
                                 **options)
        except errors as exc:
            raise ValueError(f"{self.path}: cannot be read as a CSV table "
                             f"({first_line(exc)})") from exc
        with chunks:  # closes the file when reading stops early, on an error too
            yield from _reading(chunks, self.path, "a CSV table", errors)


class _IdLikeColumns:
    """Tracks which data columns look like sample ids (by name, or distinct increasing ints)."""

    #: Fewer rows than this say nothing about a column being increasing.
    MIN_ROWS = 3

    def __init__(self, columns: list[str]) -> None:
        self.named = [c for c in columns if _ID_NAME.search(str(c))]
        self.increasing: dict[str, Any] = {c: None for c in columns}
        self.rows = 0

    def update(self, frame: Any, pd: Any) -> None:
        self.rows += len(frame)
        for column in list(self.increasing):
            values = frame[column]
            last = self.increasing[column]
            if (not pd.api.types.is_integer_dtype(values) or values.isna().any()
                    or not (values.diff().iloc[1:] > 0).all()
                    or (last is not None and values.iloc[0] <= last)):
                del self.increasing[column]
            else:
                self.increasing[column] = values.iloc[-1]

    def warn(self, path: Path) -> None:
        increasing = list(self.increasing) if self.rows >= self.MIN_ROWS else []
        found = list(dict.fromkeys([*self.named, *increasing]))
        if found:
            name = found[0]
            why = "is named like an id" if name in self.named else \
                "holds distinct increasing integers"
            warnings.warn(
                f"{path}: column {name!r} {why} but is read as an embedding dimension; "
                f"pass --id {name} to join the files on it, or remove the column",
                IdColumnWarning, stacklevel=3,
            )


def normalise_ids(values: np.ndarray, path: Path, column: str | None) -> np.ndarray:
    """Ids as int64 where they are all integers (numbers or integer text), else as text."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)):
            return values.astype(np.int64)
        raise ValueError(f"{path}: ids in column {column!r} must be integers or text, "
                         f"got fractional numbers")
    text = np.array([str(v) for v in values], dtype=str)
    if len(text) and all(_INTEGER_TEXT.match(t) for t in text):
        try:
            return np.array([int(t) for t in text], dtype=np.int64)
        except OverflowError:
            pass
    return text


def _check_unique(ids: np.ndarray, path: Path, column: str | None) -> None:
    order = np.argsort(ids, kind="stable")
    same = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if len(same):
        first, second = order[same[0]], order[same[0] + 1]
        raise ValueError(f"{path}: id {ids[first].item()!r} appears twice in column {column!r} "
                         f"(rows {first} and {second}); ids must be unique")


def _index_columns(parquet: Any) -> list[str]:
    meta = parquet.schema_arrow.pandas_metadata or {}
    return [c for c in meta.get("index_columns") or [] if isinstance(c, str)]


def _csv_columns(path: Path) -> tuple[list[str], bool]:
    """The CSV file's column names, and whether its first line is a header."""
    pd = _pandas(path)
    try:  # two lines: a first row longer than the header would become pandas' index
        first = pd.read_csv(path, nrows=2, header=None, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot be read as a CSV table ({first_line(exc)})") from exc
    cells = [c.strip() for c in first.iloc[0].tolist()] if len(first) else []
    if not cells:
        raise ValueError(f"{path}: the table is empty")
    if _numeric_line(cells) and not _default_names(cells):
        return [str(j) for j in range(len(cells))], False
    unnamed = [j for j, c in enumerate(cells) if not c]
    twice = [c for j, c in enumerate(cells) if c in cells[:j]]
    if twice:
        raise ValueError(f"{path}: column {twice[0]!r} appears twice in the header line")
    if unnamed:
        raise ValueError(
            f"{path}: a column has no name in the header line (column {unnamed[0]}); the first line "
            "must name every column (pandas: to_csv(path, index=False)), or be the first "
            "row of numbers"
        )
    return cells, True


def _numeric_line(cells: list[str]) -> bool:
    def number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return False
        return True

    return any(cells) and all(number(c) for c in cells if c)


def _default_names(cells: list[str]) -> bool:
    """``0,1,...,d-1`` or ``1,...,d``: the header of unnamed columns, not a sample."""
    return cells in ([str(j) for j in range(len(cells))], [str(j + 1) for j in range(len(cells))])


def _numeric_block(frame: Any, path: Path, start: int, dtype: np.dtype) -> np.ndarray:
    """The cells of ``frame`` as ``dtype`` (empty cells NaN); reject text columns."""
    pd = _pandas(path)
    bad = [
        str(c) for c in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_complex_dtype(frame[c])
    ]
    if bad:
        raise ValueError(
            f"{path}: columns {bad[:5]} are not numeric (rows {start}..{start + len(frame) - 1}); "
            "a modality table may hold numbers and empty cells only"
        )
    return frame.to_numpy(dtype=dtype, na_value=np.nan)


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


def _reading(batches: Any, path: Path, what: str, errors: Any) -> Iterator[Any]:
    """Yield from ``batches``; a read error becomes a ValueError naming ``path``."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except errors as exc:  # the readers raise their own types (ArrowInvalid, ...)
            raise ValueError(f"{path}: cannot be read as {what} ({first_line(exc)})") from exc
        yield batch


def _pandas(path: Path) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(f"{path}: reading tables needs pandas (pip install pandas)") from exc
    return pd


def _listing(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
