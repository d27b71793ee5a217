"""Text of error messages shared by every layer."""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_ROWS_SHOWN", "first_line", "format_rows", "one_line"]

#: How many offending row indices an error message lists.
MAX_ROWS_SHOWN = 10


def format_rows(rows: np.ndarray, *, count: bool = False) -> str:
    """A list of row indices for an error message, cut after :data:`MAX_ROWS_SHOWN`.

    Parameters
    ----------
    rows : ndarray of int
        The offending row indices, in the order to show them.
    count : bool, default False
        Always follow the list with the number of rows (``"[1, 2] (2 in all)"``);
        by default the number is given only when the list is cut.

    Returns
    -------
    str

    Examples
    --------
    >>> format_rows(np.array([3, 7]))
    '[3, 7]'
    >>> format_rows(np.arange(12))
    '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... (12 rows in all)]'
    >>> format_rows(np.arange(12), count=True)
    '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...] (12 in all)'
    """
    shown = ", ".join(str(int(r)) for r in rows[:MAX_ROWS_SHOWN])
    cut = rows.size > MAX_ROWS_SHOWN
    if count:
        return f"[{shown}{', ...' if cut else ''}] ({rows.size} in all)"
    return f"[{shown}{f', ... ({rows.size} rows in all)' if cut else ''}]"


def one_line(message: object) -> str:
    """A message (an exception, a warning, text) on one line, its whitespace runs as one space.

    Examples
    --------
    >>> one_line(ValueError("bad\n  input"))
    'bad input'
    """
    return " ".join(str(message).split())


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str

    Examples
    --------
    >>> first_line(ValueError("bad value\\nmore detail"))
    'bad value'
    >>> first_line(KeyError())
    'KeyError'
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
