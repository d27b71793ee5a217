"""Helpers shared by the experiments: row subsets, realised settings, JSON scalars, progress bars."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .._utils.progress import LineProgress, terminal_bar

__all__ = [
    "NoProgress",
    "RunResult",
    "json_scalar",
    "mean_or_none",
    "progress",
    "python_scalar",
    "setting_records",
    "take_rows",
]


@dataclasses.dataclass
class RunResult:
    """Rows of a finished run and what is needed to report them.

    The fields that the benchmark's and the deep experiment's results share; each
    subclass names its configuration type and adds its own fields.
    """

    config: Any
    rows: list[dict[str, Any]]
    dataset_info: dict[str, Any]
    started_at: str
    elapsed_s: float
    argv: list[str] | None = None

    def frame(self) -> Any:
        """The rows as a :class:`pandas.DataFrame`."""
        import pandas as pd

        return pd.DataFrame(self.rows)


def take_rows(X: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The rows ``rows`` of every modality of ``X``, under the same names.

    Parameters
    ----------
    X : mapping of str to ndarray
        One ``(n, d_m)`` array per modality.
    rows : ndarray
        Row indices (or a boolean mask) to take.

    Returns
    -------
    dict of str to ndarray
    """
    return {k: v[rows] for k, v in X.items()}


def mean_or_none(column: Any) -> float | None:
    """NaN-ignoring mean of a pandas column; ``None`` when absent, empty or all NaN.

    Parameters
    ----------
    column : pandas.Series or None
        E.g. ``frame.get(name)``, which is ``None`` when the column is absent.

    Returns
    -------
    float or None
    """
    if column is None or len(column) == 0:
        return None
    value = float(np.nanmean(column.to_numpy(dtype=float)))
    return None if math.isnan(value) else value


#: ``config.json`` key -> row column, for the realised missing shares of each setting.
_REALISED_COLUMNS = {
    "missing_realised": "missing_realised",
    "missing_train_realised": "missing_train",
    "missing_test_realised": "missing_test",
}


def setting_records(
    settings: Iterable[Any], frame: Any, extra: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Each setting as a dict, plus the mean realised shares of its rows in ``frame``.

    Parameters
    ----------
    settings : iterable of dataclass instances
        The settings of a run; each has a ``label`` matched against ``frame["setting"]``.
    frame : pandas.DataFrame
        The run's rows (may lack a ``setting`` column when no row was produced).
    extra : mapping of str to str, optional
        More ``{key: column}`` means to add after the realised shares.

    Returns
    -------
    list of dict
        ``None`` for a mean whose column is absent or empty.
    """
    columns = _REALISED_COLUMNS | dict(extra or {})
    records = []
    for s in settings:
        sub = frame[frame["setting"] == s.label] if "setting" in frame else frame.iloc[:0]
        records.append(
            dataclasses.asdict(s) | {key: mean_or_none(sub.get(col)) for key, col in columns.items()}
        )
    return records


def python_scalar(value: Any) -> Any:
    """A NumPy scalar as the Python scalar it holds; any other value unchanged.

    Examples
    --------
    >>> type(python_scalar(np.float32(0.5))).__name__, python_scalar("a")
    ('float', 'a')
    """
    if isinstance(value, np.generic):
        return value.item()
    return value


def json_scalar(value: Any) -> Any:
    """``default=`` of :func:`json.dumps` for stored rows: NumPy scalars only.

    Raises
    ------
    TypeError
        For any value that is not a NumPy scalar.
    """
    if isinstance(value, np.generic):
        return python_scalar(value)
    raise TypeError(f"cannot store {type(value).__name__} in a result file")


class NoProgress:
    """The progress bar used when bars are off or tqdm is absent: every method does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, enabled: bool, desc: str) -> Any:
    """Progress over ``total`` runs on stderr: a tqdm bar on a terminal, plain lines
    elsewhere, or a :class:`NoProgress`.

    Parameters
    ----------
    total : int
        Number of steps.
    enabled : bool
        Whether to show progress.
    desc : str
        The bar's label.

    Returns
    -------
    tqdm.tqdm, LineProgress or NoProgress
        An object with ``update``, ``set_postfix_str`` and ``close``. Where
        stderr is not a terminal (a file, a pipe, a CI log), or tqdm is not
        installed, lines such as ``"benchmark: 3/45 (seed 0 | ...), 12.0 s"``
        every few seconds (:class:`~ul4m4._utils.progress.LineProgress`): a
        bar's carriage returns would fill the file.
    """
    if not enabled:
        return NoProgress()
    bar = terminal_bar(total, desc, stream=sys.stderr, leave=False)
    return bar if bar is not None else LineProgress(total, desc, stream=sys.stderr)
