"""Completion rules: how one fitted model fills the missing blocks of its modalities.

Each rule fills the modalities assigned to it (``completion_`` per modality) for
one model of the ensemble: it writes the values it chooses into ``task.filled``
and records, per entry, the centre they came from (``task.sources``), its
weight (``task.weights``) and the predicted per-coordinate z-space variance of
the fill (``task.variance``, see :mod:`ul4m4.uncertainty`). What every rule
shares — the training mean for entries no centre can fill, shrinkage toward the
mean, ensemble averaging — is done by :func:`ul4m4.model.complete`.

Adding a rule is one class here (or in its own module) with a ``fill`` method,
plus one line in :data:`COMPLETION_RULES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .complete import FROM_MEAN, complete_sources, soft_complete
from .engine import Engine
from .plan import CompletionPlan

__all__ = ["COMPLETION_RULES", "CompletionRule", "FillTask"]


@dataclass
class FillTask:
    """One model's completion of one view: inputs, and the arrays the rules write."""

    view: Any
    engine: Engine
    gamma: float
    plan: CompletionPlan
    raw_centers: list[np.ndarray]  # per modality (k, d_m), NaN where a centre lacks it
    temperature: list[float | None]
    filled: list[np.ndarray]  # per modality (n, d_m), observed rows already in place
    sources: np.ndarray  # (n, M) int64, OBSERVED where observed
    weights: np.ndarray  # (n, M) float64, NaN where observed
    spread: np.ndarray | None  # (k, M) float64 centre spread (centre_spread); None: unknown
    variance: list[np.ndarray]  # per modality (n,) float64, NaN where observed / not filled

    def spread_or_unit(self) -> np.ndarray:
        """The centre spread, or 1 per centre and modality (z-space unit variance) if unknown."""
        if self.spread is None:
            return np.ones(self.plan.centers.mask.shape)
        return self.spread


class CompletionRule(Protocol):
    """Fills the missing entries of ``modalities`` (indices) in ``task``."""

    def fill(self, task: FillTask, modalities: list[int]) -> None: ...


class Greedy:
    """The method's completion: copy each missing block from one centre (the greedy search)."""

    def fill(self, task: FillTask, modalities: list[int]) -> None:
        sources = complete_sources(task.view, task.plan, task.gamma, task.engine)
        spread = task.spread_or_unit()
        for m in modalities:
            task.sources[:, m] = sources[:, m]
            from_centre = sources[:, m] >= 0
            if from_centre.any():
                task.filled[m][from_centre] = task.raw_centers[m][sources[from_centre, m]].astype(
                    task.filled[m].dtype)
            missing = ~task.view.mask[:, m]
            task.weights[missing, m] = 1.0
            # A copied centre is off by its members' spread; the training mean by 1.
            task.variance[m][missing] = 1.0
            task.variance[m][from_centre] = spread[sources[from_centre, m], m]


class Soft:
    """A softmax-weighted mean of the centres that carry the block (see ``soft_complete``)."""

    def fill(self, task: FillTask, modalities: list[int]) -> None:
        values = [np.nan_to_num(r.astype(np.float64)) for r in task.raw_centers]
        out = [task.filled[m] if m in modalities else None for m in range(len(task.filled))]
        variance = [task.variance[m] if m in modalities else None
                    for m in range(len(task.filled))]
        top, top_weight = soft_complete(task.view, task.plan, values, task.temperature, out,
                                        task.gamma, task.engine, variance=variance,
                                        spread=task.spread_or_unit())
        task.sources[:, modalities] = top[:, modalities]
        task.weights[:, modalities] = top_weight[:, modalities]


class Mean:
    """The training mean (what a rule that cannot beat it is replaced by)."""

    def fill(self, task: FillTask, modalities: list[int]) -> None:
        for m in modalities:
            missing = ~task.view.mask[:, m]
            task.sources[missing, m] = FROM_MEAN
            task.weights[missing, m] = 1.0
            task.variance[m][missing] = 1.0  # z-space unit variance


#: Completion rules by name; ``completion_`` values and the saved model files use these.
COMPLETION_RULES: dict[str, CompletionRule] = {"greedy": Greedy(), "soft": Soft(),
                                               "mean": Mean()}
