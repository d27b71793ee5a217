"""Caller input as row-chunked dask arrays: the checks of every input, aligned row chunks."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np

from ...inputs import check_array, named_values
from ...validation import check_shapes, match_names

__all__ = ["WRAP_BYTES", "align_rows", "as_dask", "as_row_chunks"]

#: Bytes per row chunk when a non-dask input is wrapped.
WRAP_BYTES = 64 * 2**20


def as_row_chunks(X: Any, *, names: list[str] | None = None,
                  dims: Mapping[str, int] | None = None) -> tuple[list[str], list[da.Array]]:
    """Validate the shape of a multimodal input and align its row chunks (values unread)."""
    got, values = named_values(X)
    if names is not None:
        got, values = match_names(got, values, list(names), isinstance(X, Mapping))
    arrays = [as_dask(name, v) for name, v in zip(got, values, strict=True)]
    check_shapes(got, arrays, dims)
    return got, align_rows(got, arrays)


def as_dask(name: str, value: Any) -> da.Array:
    """``value`` as a dask array of whole rows, checked as every input is
    (:func:`~ul4m4.inputs.check_array`); a non-dask value is wrapped in row chunks."""
    if not hasattr(value, "shape"):
        value = np.asarray(value)
    check_array(name, value)
    if not isinstance(value, da.Array):
        rows = max(1, WRAP_BYTES // (8 * value.shape[1]))
        value = da.from_array(value, chunks=(rows, -1), name=False)
    if any(math.isnan(c) for c in value.chunks[0]) or math.isnan(value.shape[0]):
        raise ValueError(
            f"modality {name!r}: unknown row chunk sizes; call compute_chunk_sizes() first"
        )
    if len(value.chunks[1]) > 1:
        # A task needs whole rows of every modality; merging columns is cheap.
        value = value.rechunk({1: -1})
    return value


def align_rows(names: list[str], arrays: list[da.Array]) -> list[da.Array]:
    reference = arrays[0].chunks[0]
    misaligned = [n for n, a in zip(names, arrays, strict=True) if a.chunks[0] != reference]
    if not misaligned:
        return arrays
    warnings.warn(
        f"modalities {misaligned} have row chunks that differ from those of {names[0]!r}; "
        f"rechunking them to the row chunks of {names[0]!r} (chunk every modality the same "
        "way to avoid this copy)",
        UserWarning,
        stacklevel=3,
    )
    return [a if a.chunks[0] == reference else a.rechunk({0: reference}) for a in arrays]
