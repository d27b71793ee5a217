"""The summary of an availability mask: :func:`missing_report` and :class:`MissingReport`."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np

from .masks import as_mask

__all__ = ["MissingReport", "missing_report"]


@dataclass(frozen=True)
class MissingReport:
    """Summary of an availability mask (see :func:`missing_report`).

    Attributes
    ----------
    n_samples : int
    modalities : tuple of str
    missing_share : float
        Share of missing (sample, modality) slots; NaN when the mask has no sample.
    missing_rates : dict {name: float}
        Share of samples missing each modality.
    pattern_counts : dict {str: int}
        Samples per pattern of present modalities, such as ``"text+image"`` (``"(none)"`` for
        no modality), by decreasing count; ties put more complete patterns first.
    n_empty : int
        Samples with no modality.
    """

    n_samples: int
    modalities: tuple[str, ...]
    missing_share: float
    missing_rates: dict[str, float]
    pattern_counts: dict[str, int]
    n_empty: int

    def to_markdown(self) -> str:
        """Render the report as Markdown tables."""

        def pct(x: float) -> str:
            return "n/a" if math.isnan(x) else f"{100.0 * x:.2f}%"

        lines = [
            f"samples: {self.n_samples} | missing slots: {pct(self.missing_share)} | "
            f"samples with no modality: {self.n_empty}",
            "",
            "| modality | missing rate |",
            "|---|---:|",
        ]
        lines += [f"| {m} | {pct(r)} |" for m, r in self.missing_rates.items()]
        lines += ["", "| pattern | count | share |", "|---|---:|---:|"]
        for pattern, count in self.pattern_counts.items():
            share = count / self.n_samples if self.n_samples else float("nan")
            lines.append(f"| {pattern} | {count} | {pct(share)} |")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_markdown()


def missing_report(mask: np.ndarray, modalities: Iterable[Hashable] | None = None) -> MissingReport:
    """Summarise an availability mask.

    Parameters
    ----------
    mask : ndarray of bool, shape (n, M)
    modalities : iterable of names, optional
        One name per column (a data dict works: its keys are used); default ``m0, m1, ...``.

    Returns
    -------
    MissingReport
        Printing it (or calling ``to_markdown()``) shows a table.

    Examples
    --------
    >>> rep = missing_report(np.array([[True, True], [True, False]]), ["text", "image"])
    >>> rep.missing_share, rep.missing_rates, rep.pattern_counts
    (0.25, {'text': 0.0, 'image': 0.5}, {'text+image': 1, 'text': 1})
    """
    m = as_mask(mask)
    n, n_mod = m.shape
    names = (
        tuple(f"m{j}" for j in range(n_mod))
        if modalities is None
        else tuple(str(x) for x in modalities)
    )
    if len(names) != n_mod:
        raise ValueError(f"mask has {n_mod} columns but {len(names)} modality names were given")
    if len(set(names)) != len(names):
        raise ValueError(f"modality names must be distinct, got {names}")

    missing_share = float((~m).sum() / m.size) if m.size else float("nan")
    col_missing = (~m).sum(axis=0)
    missing_rates = {
        name: (float(col_missing[j] / n) if n else float("nan")) for j, name in enumerate(names)
    }
    if n:
        rows, counts = np.unique(m, axis=0, return_counts=True)
    else:
        rows, counts = np.zeros((0, n_mod), dtype=bool), np.zeros(0, dtype=int)
    order = sorted(
        range(len(counts)), key=lambda r: (-counts[r], -int(rows[r].sum()), tuple(~rows[r]))
    )
    pattern_counts = {
        ("+".join(nm for nm, on in zip(names, rows[r], strict=True) if on) or "(none)"): int(
            counts[r]
        )
        for r in order
    }
    return MissingReport(
        n_samples=n,
        modalities=names,
        missing_share=missing_share,
        missing_rates=missing_rates,
        pattern_counts=pattern_counts,
        n_empty=int((~m.any(axis=1)).sum()),
    )
