"""One fitted model of the completion ensemble: its centres, and what its rule needs.

A :class:`Member` is a k-means model (z-space :class:`~ul4m4.centers.Centers`,
their completion plan and raw-space copy) and, for members chosen by
``completion="auto"``, the completion rule that fills from it, its
temperature and the rule's fitted state (the conditional mixture of
:mod:`ul4m4.mixture`), plus the spread of each centre's members used for the
predicted uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from .centers import Centers
from .plan import CompletionPlan

__all__ = ["Member", "ModelKey"]


class ModelKey(NamedTuple):
    """Which fitted model a completion needs: k-means at ``k`` and, for a mixture, its rank."""

    k: int
    rank: int | None = None

    def order(self) -> tuple[int, int]:
        """A sort key: by k, the k-means model before its mixtures, then by rank."""
        return self.k, -1 if self.rank is None else self.rank


@dataclass
class Member:
    """One fitted k-means model of the completion ensemble.

    ``rule`` is None for models that fill with the model-wide per-modality rule
    (``FittedModel.completion``); a rule name (and ``temperature``) for members
    of an ensemble chosen by ``completion="auto"``. ``state`` is the rule's
    fitted parameters (None for the centre rules). ``spread`` (k, M) is the mean
    per-coordinate z-space variance of each centre's members around it (None
    when unknown: files of earlier releases).
    """

    centers: Centers
    plan: CompletionPlan
    raw: list[np.ndarray]  # per modality, raw-space centres (NaN where a centre lacks it)
    rule: str | None = None
    temperature: float | None = None
    state: Any = None
    spread: np.ndarray | None = None

    @classmethod
    def of(cls, centers: Centers, means, scales, dtype: np.dtype, **extra: Any) -> Member:
        return cls(centers, CompletionPlan.from_centers(centers),
                   centers.to_raw(means, scales, dtype), **extra)

    def with_rule(self, rule: str, temperature: float | None) -> Member:
        """This model, filled by ``rule`` at ``temperature``."""
        return replace(self, rule=rule, temperature=temperature)
