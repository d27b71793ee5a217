"""``completion="auto"``: a label-free choice of a completion ensemble.

No labels exist at imputation time, so the imputer scores itself on its own
training data. On a seeded subsample of at most :data:`MAX_SELECTION_ROWS`
training rows, one observed block is hidden in a ``selection_fraction`` of the
rows that observe two modalities or more; every model a candidate needs is
fitted on the subsample *without* the hidden blocks (statistics, k-means and
the mixtures alike, so nothing leaks), and every candidate fills the hidden
blocks through the same completion rule that ``transform`` runs
(:data:`ul4m4.rules.COMPLETION_RULES`). The z-space MSE of each block
(``||z_hat - z||^2 / d_m``) scores it.

Candidates come from the registry: each rule lists the settings it wants tried
(:meth:`ul4m4.rules.CompletionRule.candidates`) for the k of the grid. Per
modality, greedy forward ensemble selection (with replacement, as Caruana et
al.'s) builds a weighted average of candidates, then a shrinkage toward the
training mean is chosen; the result replaces mean imputation only if it beats
it by more than two standard errors over the same hidden blocks (a paired
one-sided test), so modalities that say nothing about each other are not
filled worse than by the mean. The ensembles may use at most
:data:`MAX_MODELS` fitted models (a k-means model, or a mixture and its k-means
start) in all: the final fit then costs about that many fits on all the rows.

The hidden blocks also calibrate the predicted uncertainty: per modality, the
factor that makes the mean predicted variance equal the mean error measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .engine import Engine, local_engine
from .members import Member, ModelKey
from .rules import COMPLETION_RULES, ENSEMBLE, FillTask
from .selection import (
    Selection,
    hidden_block_errors,
    hide_blocks,
    paired_margin,
    standard_error,
)
from .uncertainty import calibration_factor, ensemble_variance
from .validation import Multimodal

__all__ = ["MAX_MODELS", "MAX_SELECTION_ROWS", "Candidate", "ensemble_members", "registered_candidates",
           "select_ensemble"]

#: Training rows the selection reads at most (a seeded subsample beyond).
MAX_SELECTION_ROWS = 8192
#: Distinct fitted models the chosen ensembles may use, over all modalities.
MAX_MODELS = 2
#: Steps of the forward selection (members, counted with repetition).
MAX_STEPS = 8
#: Shrinkages toward the mean tried on each modality's ensemble.
ENSEMBLE_SHRINKAGES = (0.0, 0.1, 0.25, 0.5)


@dataclass(frozen=True)
class Candidate:
    """One completion setting auto may use: a rule, the k of its model, its options."""

    rule: str
    k: int
    temperature: float | None = None
    rank: int | None = None

    @property
    def model(self) -> ModelKey:
        """The fitted model it needs: k-means at ``k``, and a mixture of ``rank``."""
        return ModelKey(self.k, self.rank)

    def row(self) -> dict:
        return {"n_clusters": self.k, "method": self.rule, "temperature": self.temperature,
                "shrinkage": 0.0, "rank": self.rank}


def registered_candidates(ks: Sequence[int], n_dims: int, n_rows: int) -> list[Candidate]:
    """Every registered rule's candidates for the k of ``ks`` (k at most ``n_rows``)."""
    out = []
    for name, rule in COMPLETION_RULES.items():
        # A rule without the method is not tried (as one that lists no candidates).
        listed = getattr(rule, "candidates", None)
        for option in listed(tuple(ks), n_dims) if listed else ():
            candidate = Candidate(name, **option)
            if candidate.k <= n_rows and candidate not in out:
                out.append(candidate)
    return out


@dataclass
class Scored:
    """The candidates' fills of the hidden blocks, in z-space, and their truth."""

    candidates: list[Candidate]
    fills: list[list[np.ndarray]]  # [candidate][modality] (h_m, d_m)
    variances: list[list[np.ndarray]]  # [candidate][modality] (h_m,)
    truth: list[np.ndarray]  # [modality] (h_m, d_m)

    def errors(self, c: int, m: int) -> np.ndarray:
        return hidden_block_errors(self.fills[c][m], self.truth[m])

    def mean_errors(self, m: int) -> np.ndarray:
        """Mean imputation's per-block errors (z = 0) on modality m."""
        return hidden_block_errors(np.zeros_like(self.truth[m]), self.truth[m])


def select_ensemble(
    data: Multimodal,
    fit: Callable[[Multimodal, Sequence[ModelKey]], tuple[list, list, dict]],
    candidates: Sequence[Candidate],
    *,
    fraction: float,
    rng: np.random.RandomState,
    dtype: np.dtype,
    chunk_rows: int,
    rounding: float,
    engine: Engine,
) -> Selection:
    """Score ``candidates`` on hidden blocks of a subsample; choose each modality's ensemble.

    ``fit(data, keys)`` returns ``(means, scales, {key: Member})`` fitted on
    ``data`` (z-space members, with the state their rule needs). The returned
    :class:`~ul4m4.selection.Selection` holds the score table, the ensembles
    (``ensemble``: per modality ``[(table row, weight)]``, weights summing to
    ``1 - shrinkage``), their scores and the calibration factors.
    """
    names = data.names
    sample = _subsample(data, rng)
    hidden = hide_blocks(sample.mask, fraction, rng, limit=sample.n_samples)
    if not hidden.any():
        return Selection(0, {}, {}, [], n_rows=sample.n_samples)
    masked = Multimodal(names, sample.arrays, sample.mask & ~hidden)
    keys = sorted({c.model for c in candidates}, key=ModelKey.order)
    means, scales, members = fit(masked, keys)
    scored = _score(sample, hidden, candidates, members, means, scales, dtype, chunk_rows, rounding,
                    local_engine(engine))
    table = _table(scored, names)
    choice = {m: _forward_select(scored, m, range(len(candidates))) for m in range(len(names))}
    choice = _within_budget(scored, choice)
    selection = Selection(0, {}, {}, table, n_rows=sample.n_samples,
                          n_hidden=int(hidden.sum()))
    for m, name in enumerate(names):
        if not scored.truth[m].shape[0]:
            selection.completion[name] = "mean"
            continue
        counts, shrink, errors, factor = _finish(scored, m, choice[m])
        total = sum(counts.values())
        selection.ensemble[name] = [(c + 1, (1.0 - shrink) * n / total)
                                    for c, n in sorted(counts.items())]
        selection.shrinkage[name] = shrink if counts else 0.0
        selection.completion[name] = ENSEMBLE if counts else "mean"
        selection.ensemble_scores[name] = (float(errors.mean()), standard_error(errors))
        selection.calibration[name] = factor
    selection.models = sorted({candidates[row - 1].model for pairs in selection.ensemble.values()
                               for row, _ in pairs}, key=ModelKey.order)
    return selection


def _subsample(data: Multimodal, rng: np.random.RandomState) -> Multimodal:
    """A seeded subsample of at most MAX_SELECTION_ROWS rows (all rows when fewer), read
    into memory."""
    n = data.n_samples
    rows = (np.arange(n) if n <= MAX_SELECTION_ROWS
            else np.sort(rng.choice(n, size=MAX_SELECTION_ROWS, replace=False)))
    return Multimodal(data.names, [np.asarray(a[rows]) for a in data.arrays], data.mask[rows])


def _score(sample, hidden, candidates, members, means, scales, dtype, chunk_rows, rounding,
           host) -> Scored:
    """Each candidate's z-space fills and predicted variances of the hidden blocks."""
    names = sample.names
    rows = np.flatnonzero(hidden.any(axis=1))
    hidden_sub = hidden[rows]
    subset = Multimodal(names, [a[rows] for a in sample.arrays], sample.mask[rows] & ~hidden_sub)
    view = host.view(subset, means, scales, dtype, chunk_rows)
    truth_view = host.view(Multimodal(names, subset.arrays, sample.mask[rows]), means, scales,
                           dtype, chunk_rows)
    blocks, _ = host.take(truth_view, np.arange(rows.size))
    at = [np.flatnonzero(hidden_sub[:, m]) for m in range(len(names))]
    truth = [blocks[m][at[m]].astype(np.float64) for m in range(len(names))]
    fills, variances = [], []
    for candidate in candidates:
        member = members[candidate.model]
        task = FillTask.for_member(view, rounding, member,
                                   [candidate.temperature] * len(names), want_variance=True)
        COMPLETION_RULES[candidate.rule].fill(task, [m for m in range(len(names)) if at[m].size])
        fills.append([((task.filled[m][at[m]].astype(np.float64) - means[m]) / scales[m])
                      for m in range(len(names))])
        variances.append([task.variance[m][at[m]] for m in range(len(names))])
    return Scored(list(candidates), fills, variances, truth)


def _table(scored: Scored, names: list[str]) -> list[dict]:
    """One row per candidate (and the mean first): mean hidden-block error and its SE."""
    rows = []
    mean_row = {"n_clusters": 0, "method": "mean", "temperature": None, "shrinkage": 0.0,
                "rank": None}
    for c, candidate in [(None, None), *enumerate(scored.candidates)]:
        row = dict(mean_row) if candidate is None else candidate.row()
        errors = [scored.mean_errors(m) if c is None else scored.errors(c, m)
                  for m in range(len(names))]
        row.update({n: float(e.mean()) if e.size else np.nan for n, e in zip(names, errors,
                                                                              strict=True)})
        row["se"] = {n: standard_error(e) for n, e in zip(names, errors, strict=True)}
        rows.append(row)
    return rows


def _forward_select(scored: Scored, m: int, pool) -> dict[int, int]:
    """Greedy forward selection with replacement: candidate -> times chosen (may be empty)."""
    truth = scored.truth[m]
    if not truth.shape[0]:
        return {}
    counts: dict[int, int] = {}
    total = np.zeros_like(truth)
    best_error = float(scored.mean_errors(m).mean())
    for step in range(1, MAX_STEPS + 1):
        trial = [(float(hidden_block_errors((total + scored.fills[c][m]) / step, truth).mean()), c)
                 for c in pool]
        error, c = min(trial)
        if error >= best_error:
            break
        best_error = error
        total += scored.fills[c][m]
        counts[c] = counts.get(c, 0) + 1
    return counts


def _within_budget(scored: Scored, choice: dict[int, dict[int, int]]) -> dict[int, dict[int, int]]:
    """Re-select with the MAX_MODELS models most used (by weight over modalities) if needed."""
    use: dict[ModelKey, float] = {}
    for counts in choice.values():
        total = sum(counts.values())
        for c, n in counts.items():
            key = scored.candidates[c].model
            use[key] = use.get(key, 0.0) + n / total
    if len(use) <= MAX_MODELS:
        return choice
    kept = sorted(use, key=lambda key: (-use[key], key.order()))[:MAX_MODELS]
    pool = [c for c, cand in enumerate(scored.candidates) if cand.model in kept]
    return {m: _forward_select(scored, m, pool) for m in choice}


def _finish(scored: Scored, m: int, counts: dict[int, int]):
    """Shrinkage, the 2-SE rule against the mean, and the calibration factor of one modality.

    Returns ``(counts, shrinkage, per-block errors, calibration factor)``; empty
    ``counts`` means mean imputation.
    """
    truth, mean_errors = scored.truth[m], scored.mean_errors(m)
    if counts:
        total = sum(counts.values())
        fill, variance = ensemble_variance([scored.fills[c][m] for c in counts],
                                           [scored.variances[c][m] for c in counts],
                                           np.array([n / total for n in counts.values()]))
        _, shrink = min((float(hidden_block_errors((1 - s) * fill, truth).mean()), s)
                        for s in ENSEMBLE_SHRINKAGES)
        errors = hidden_block_errors((1 - shrink) * fill, truth)
        if paired_margin(errors, mean_errors) < 0:
            return counts, shrink, errors, calibration_factor(variance, errors)
    # The mean: z = 0 with the unit variance of z-scored data.
    return {}, 0.0, mean_errors, calibration_factor(np.ones_like(mean_errors), mean_errors)


def ensemble_members(selection: Selection, members: dict, names: list[str]
                     ) -> tuple[list[Member], np.ndarray]:
    """The final members (one per chosen candidate) and their (n_members, M) weights."""
    chosen = sorted({row for pairs in selection.ensemble.values() for row, _ in pairs})
    out, weights = [], np.zeros((len(chosen), len(names)))
    for j, row in enumerate(chosen):
        spec = selection.table[row]
        key = ModelKey(spec["n_clusters"], spec["rank"])
        out.append(members[key].with_rule(spec["method"], spec["temperature"]))
        for m, name in enumerate(names):
            weights[j, m] = sum(w for r, w in selection.ensemble.get(name, []) if r == row)
    return out, weights

