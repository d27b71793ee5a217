"""Completion rules: how one fitted model fills the missing blocks of its modalities.

Each rule fills the modalities assigned to it (``completion_`` per modality) for
one model of the ensemble: it writes the values it chooses into ``task.filled``
and records, per entry, the centre they came from (``task.sources``), its
weight (``task.weights``) and the predicted per-coordinate z-space variance of
the fill (``task.variance``, see :mod:`ul4m4.uncertainty`). What every rule
shares — the training mean for entries no centre can fill, shrinkage toward the
mean, ensemble averaging — is done by :func:`ul4m4.inference.complete`.

Adding a rule is one class here (or in its own module) with a ``fill`` method
and a ``candidates`` method (the settings ``completion="auto"`` should try; an
empty tuple keeps it out of the selection), plus one line in
:data:`COMPLETION_RULES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .centers import Centers
from .complete import FROM_MEAN, FROM_MODEL, OBSERVED, complete_sources, soft_complete
from .engine import Engine, HostView, View
from .inputs import output_copy
from .members import Member, ModelKey
from .mixture import Mixture, conditional_fill, fit_mixtures
from .plan import CompletionPlan
from .settings import SOFT_TEMPERATURES

__all__ = ["COMPLETION_RULES", "ENSEMBLE", "CompletionRule", "ConditionalMixture", "FillTask",
           "fit_rule_states"]


@dataclass
class FillTask:
    """One model's completion of one view: inputs, and the arrays the rules write."""

    view: HostView  # rows in this process: every rule runs on host blocks
    rounding: float
    plan: CompletionPlan
    raw_centers: list[np.ndarray]  # per modality (k, d_m), NaN where a centre lacks it
    temperature: list[float | None]
    filled: list[np.ndarray]  # per modality (n, d_m), observed rows already in place
    sources: np.ndarray  # (n, M) int64, OBSERVED where observed
    weights: np.ndarray  # (n, M) float64, NaN where observed
    spread: np.ndarray | None  # (k, M) float64 centre spread (centre_spread); None: unknown
    # Per modality (n,) float64, NaN where observed / not filled; None when the caller
    # does not want predicted variances (rules then skip computing them).
    variance: list[np.ndarray] | None
    state: Any = None  # the member's fitted rule state (the conditional mixture)

    @classmethod
    def for_member(cls, view: HostView, rounding: float, member: Member,
                   temperature: list[float | None], *, want_variance: bool) -> FillTask:
        """The task of filling ``view`` from ``member``; observed rows copied in place."""
        shape = view.mask.shape
        variance = ([np.full(shape[0], np.nan) for _ in range(shape[1])] if want_variance
                    else None)
        return cls(view, rounding, member.plan, member.raw, temperature,
                   [output_copy(a) for a in view.data.arrays],
                   np.full(shape, OBSERVED, dtype=np.int64), np.full(shape, np.nan),
                   member.spread, variance, member.state)

    def spread_or_unit(self) -> np.ndarray:
        """The centre spread, or 1 per centre and modality (z-space unit variance) if unknown."""
        if self.spread is None:
            return np.ones(self.plan.centers.mask.shape)
        return self.spread


class CompletionRule(Protocol):
    """Fills the missing entries of ``modalities`` (indices) in ``task``."""

    def fill(self, task: FillTask, modalities: list[int]) -> None: ...

    def candidates(self, ks: tuple[int, ...], n_dims: int) -> tuple[dict, ...]:
        """The settings (``k`` and the rule's options) ``completion="auto"`` tries."""


class Greedy:
    """The method's completion: copy each missing block from one centre (the greedy search)."""

    def fill(self, task: FillTask, modalities: list[int]) -> None:
        sources = complete_sources(task.view, task.plan, task.rounding)
        for m in modalities:
            task.sources[:, m] = sources[:, m]
            from_centre = sources[:, m] >= 0
            if from_centre.any():
                task.filled[m][from_centre] = task.raw_centers[m][sources[from_centre, m]].astype(
                    task.filled[m].dtype)
            missing = ~task.view.mask[:, m]
            task.weights[missing, m] = 1.0
            if task.variance is not None:
                # A copied centre is off by its members' spread; the training mean by 1.
                task.variance[m][missing] = 1.0
                task.variance[m][from_centre] = task.spread_or_unit()[sources[from_centre, m], m]

    def candidates(self, ks: tuple[int, ...], n_dims: int) -> tuple[dict, ...]:
        return tuple({"k": k} for k in ks)


class Soft:
    """A softmax-weighted mean of the centres that carry the block (see ``soft_complete``)."""

    def fill(self, task: FillTask, modalities: list[int]) -> None:
        values = [np.nan_to_num(r.astype(np.float64)) for r in task.raw_centers]
        out = [task.filled[m] if m in modalities else None for m in range(len(task.filled))]
        variance = None if task.variance is None else [
            task.variance[m] if m in modalities else None for m in range(len(task.filled))]
        top, top_weight = soft_complete(task.view, task.plan, values, task.temperature, out,
                                        task.rounding, variance=variance,
                                        spread=task.spread_or_unit())
        task.sources[:, modalities] = top[:, modalities]
        task.weights[:, modalities] = top_weight[:, modalities]

    def candidates(self, ks: tuple[int, ...], n_dims: int) -> tuple[dict, ...]:
        return tuple({"k": k, "temperature": t} for k in ks for t in SOFT_TEMPERATURES)


class Mean:
    """The training mean (what a rule that cannot beat it is replaced by)."""

    def fill(self, task: FillTask, modalities: list[int]) -> None:
        for m in modalities:
            missing = ~task.view.mask[:, m]
            task.sources[missing, m] = FROM_MEAN
            task.weights[missing, m] = 1.0
            if task.variance is not None:
                task.variance[m][missing] = 1.0  # z-space unit variance

    def candidates(self, ks: tuple[int, ...], n_dims: int) -> tuple[dict, ...]:
        return ()  # the baseline every selection scores anyway


class ConditionalMixture:
    """The conditional mean of the missing blocks under a low-rank Gaussian mixture.

    The member's ``state`` is a :class:`~ul4m4.mixture.Mixture` fitted by EM on
    the training rows from the member's k-means model; a missing block is
    ``sum_c gamma_ic (mu_c + W S_O (u_i - v_c))`` given the observed blocks
    (see :func:`~ul4m4.mixture.conditional_fill`). Its source code is
    ``FROM_MODEL``: no single centre filled it.
    """

    #: Rank of the shared covariance tried at k = 1 (probabilistic PCA) besides its
    #: double; it falls linearly in log k to 0 at k = 64 (a soft blend of centres).
    TOP_RANK = 40

    def fill(self, task: FillTask, modalities: list[int]) -> None:
        view = task.view
        blocks, mask = view.rows(np.arange(view.n_samples))
        fills, variance = conditional_fill(task.state, [b.astype(np.float64) for b in blocks],
                                           mask, task.temperature[modalities[0]], modalities,
                                           with_variance=task.variance is not None)
        for m in modalities:
            rows = ~mask[:, m]
            values = np.asarray(view.mean[m]) + np.asarray(view.scale[m]) * fills[m][rows]
            task.filled[m][rows] = values.astype(task.filled[m].dtype)
            task.sources[rows, m] = FROM_MODEL
            task.weights[rows, m] = 1.0
            if task.variance is not None:
                task.variance[m][rows] = variance[rows, m]

    def candidates(self, ks: tuple[int, ...], n_dims: int) -> tuple[dict, ...]:
        out: list[dict] = []
        for k in sorted({1, *ks}):
            rank = int(round(self.TOP_RANK * max(0.0, 1.0 - np.log2(k) / 6.0)))
            for r in (rank, 2 * rank):
                option = {"k": k, "rank": min(r, n_dims - 1)}
                if option not in out:
                    out.append(option)
        return tuple(out)


def fit_rule_states(keys: list[ModelKey], view: View, engine: Engine, centers: Centers,
                    labels: np.ndarray, rng: np.random.RandomState, max_rows: int
                    ) -> dict[ModelKey, Mixture | None]:
    """The fitted state each key's rule needs from one k-means model (``centers``,
    ``labels``): a mixture per key with a rank (fitted together on at most ``max_rows``
    rows: one read of the rows), None for the centre rules."""
    ranked = [key for key in keys if key.rank is not None]
    mixtures = fit_mixtures(view, engine, centers, labels, ranks=[key.rank for key in ranked],
                            max_rows=max_rows, rng=rng) if ranked else []
    states: dict[ModelKey, Mixture | None] = {key: None for key in keys}
    states.update(zip(ranked, mixtures, strict=True))
    return states


#: ``completion_`` of a modality that ``completion="auto"`` fills with a weighted
#: ensemble of members, each with its own rule (not a rule itself).
ENSEMBLE = "ensemble"

#: Completion rules by name; ``completion_`` values and the saved model files use these.
COMPLETION_RULES: dict[str, CompletionRule] = {"greedy": Greedy(), "soft": Soft(),
                                               "mean": Mean(), "mixture": ConditionalMixture()}
