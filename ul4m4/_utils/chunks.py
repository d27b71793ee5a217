"""Row chunking."""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["iter_row_chunks"]


def iter_row_chunks(n_rows: int, chunk_rows: int) -> Iterator[slice]:
    """Yield ``slice`` objects covering ``range(n_rows)`` in chunks of ``chunk_rows``.

    Examples
    --------
    >>> list(iter_row_chunks(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    step = max(1, int(chunk_rows))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))
