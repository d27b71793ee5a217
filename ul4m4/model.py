"""Tier 2: the fitted model as a value, and the plain function that makes it.

:func:`fit_model` turns validated training data into a :class:`FittedModel`
(statistics, every ensemble member with its rule and state, per-modality
completion settings, the selection table and diagnostics);
:mod:`ul4m4.inference` applies one to new data. They take the resolved
:class:`~ul4m4.settings.Settings` and an engine (:mod:`ul4m4.engine`), and never
the estimator: the estimator (:mod:`ul4m4.imputer`) validates and delegates, and
:mod:`ul4m4.persistence` reads and writes :class:`FittedModel`.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._utils.progress import FitProgress
from .auto import (
    MAX_SELECTION_ROWS,
    ensemble_members,
    registered_candidates,
    select_ensemble,
)
from .centers import Centers, shift_tolerance
from .cluster import (
    LloydResult,
    kmeans_plusplus,
    lloyd,
    random_init,
    seed_sample_size,
)
from .complete import OBSERVED
from .engine import Engine, View, local_engine, rounding_factor
from .members import Member, ModelKey
from .minibatch import DEFAULT_BATCH_SIZE, minibatch_kmeans, seeding_sample
from .mixture import MAX_ROWS
from .rules import fit_rule_states
from .selection import Selection, select_model
from .settings import Settings
from .statistics import (
    check_magnitudes,
    modality_moments,
    unit_scales,
    warn_constant_dimensions,
)
from .stream import is_streamed
from .uncertainty import sample_spread
from .validation import Multimodal, check_observed_twice, without_empty_samples
from .view import gather_view

__all__ = ["FittedModel", "RunInfo", "fit_model"]

logger = logging.getLogger("ul4m4")

#: Training data whose z-scored copy fits in this many bytes (or, for in-memory
#: inputs, in the input's own size) are standardised once per fit instead of once
#: per pass (k seeding passes + one per Lloyd iteration).
CACHE_BYTES = 512 * 2**20
#: Most seedings drawn, beyond ``n_init``, for a k-means model the library fits on
#: its own (an ensemble member, a model-selection fit, the model of a selected k)
#: while its best run so far stopped in a Lloyd cycle.
MAX_RESEEDS = 3
#: ``tol`` of the k-means fits that ``completion="auto"`` scores candidates with.
SELECTION_TOL = 1e-3
#: Rows the candidates' mixtures fit on at most (the final models': ``mixture.MAX_ROWS``);
#: candidates are compared, not kept, so a smaller sample of the subsample serves.
SELECTION_MIXTURE_ROWS = 6_144


@dataclass
class RunInfo:
    """How one member's k-means run ended (for warnings and diagnostics).

    ``stopped_by`` is one of ``"fixed_point"``, ``"tol"``, ``"cycle"``,
    ``"max_iter"``, ``"one_step"``, ``"no_improvement"`` (mini-batch) or
    ``"unknown"`` (model files of release 0.1); ``cycle_period`` is the number
    of iterations of the cycle when ``stopped_by == "cycle"`` (else 0).
    ``n_reseeds`` counts the seedings drawn beyond ``n_init`` because the best
    run so far had entered a Lloyd cycle (ensemble members and fits under
    ``"auto"`` only, at most :data:`MAX_RESEEDS`); the run described is the
    best of all of them, so ``n_reseeds > 0`` with ``stopped_by !=
    "cycle"`` records a cycle that a fresh seeding replaced.
    """

    n_iter: int
    converged: bool
    inertia: float
    n_dead: int = 0
    stopped_by: str = "unknown"
    cycle_period: int = 0
    n_reseeds: int = 0

    def warn(self, max_iter: int, k: int, stacklevel: int, *, member: int = 0,
             n_members: int = 1, n_init: int = 1) -> None:
        """ConvergenceWarnings for a run that cycled, hit ``max_iter`` or left dead centres.

        ``member`` (0-based) of ``n_members`` names the ensemble member in the message.
        """
        who = "k-means"
        if n_members > 1:
            who = f"k-means of ensemble member {member + 1} of {n_members}"
        if n_init > 1:
            who += f" (the lowest-inertia of n_init={n_init} seedings)"
        if self.n_reseeds:
            who += (f" (and of {self.n_reseeds} more seedings drawn because the earlier "
                    "ones cycled)")
        if self.stopped_by == "cycle":
            warnings.warn(
                f"{who} did not converge: its Lloyd iterations entered a cycle of period "
                f"{self.cycle_period} (iteration {self.n_iter} started from the same centres "
                f"as iteration {self.n_iter - self.cycle_period}; the partial distance is not "
                "a metric, so Lloyd can cycle) and the run stopped there. Labels are the "
                "exact nearest centres, but the centres are not their members' means. "
                "Increasing max_iter will not help; another seeding usually reaches a fixed "
                "point: change random_state, or set n_init > 1 to keep the best of several "
                "seedings.",
                ConvergenceWarning,
                stacklevel=stacklevel + 1,
            )
        elif not self.converged:
            warnings.warn(
                f"{who} did not converge in max_iter={max_iter} iterations (no fixed point "
                "and no cycle was reached); labels are the exact nearest centres, but the "
                "centres are not yet their members' means. Increase max_iter, or set tol > 0 "
                "to stop once the centres barely move.",
                ConvergenceWarning,
                stacklevel=stacklevel + 1,
            )
        if self.n_dead:
            warnings.warn(
                f"only {k - self.n_dead} distinct clusters found for n_clusters={k}: the data "
                f"have fewer distinct points than clusters; {self.n_dead} centres are left "
                "empty (no modality) and are never used",
                ConvergenceWarning,
                stacklevel=stacklevel + 1,
            )


@dataclass
class FittedModel:
    """Everything a fitted imputer knows; what model files store.

    Attributes
    ----------
    names, dims : list
        Modality names and widths, in the fitted order.
    means, scales : list of ndarray (d_m,)
        Float64 per-modality statistics.
    dtype : numpy.dtype
        Working dtype of the centres.
    members : list of Member
        The ensemble; the first is the model of ``labels``.
    completion, temperature, shrinkage : list
        Per modality: rule name (a key of :data:`ul4m4.rules.COMPLETION_RULES`),
        soft temperature (None unless soft), shrinkage toward the mean.
    labels, history, n_iter, inertia, n_clusters, selection
        The first member's fit, and the model selection (None without "auto").
    converged : bool
        Whether every member's run converged (a fixed point, or ``tol``).
    runs : list of RunInfo
        Per member, how its k-means run ended.
    weights : ndarray of shape (n_members, n_modalities) or None
        An ensemble chosen by ``completion="auto"``: member j's weight in the
        fill of modality m (each member fills with its own ``rule``); the rest,
        ``1 - sum_j w_jm``, goes to the training mean. None: every member fills
        with ``completion`` and the fills are averaged (then shrunk).
    calibration : list of float or None
        Per modality, the factor applied to the predicted variance (measured on
        the selection's hidden blocks; None means 1).
    """

    names: list[str]
    dims: list[int]
    means: list[np.ndarray]
    scales: list[np.ndarray]
    dtype: np.dtype
    members: list[Member]
    completion: list[str]
    temperature: list[float | None]
    shrinkage: list[float]
    labels: np.ndarray
    history: list[float]
    n_iter: int
    inertia: float
    converged: bool
    n_clusters: int
    selection: Selection | None = None
    runs: list[RunInfo] = field(default_factory=list)
    weights: np.ndarray | None = None
    calibration: list[float] | None = None


# ---------------------------------------------------------------------- fit
#: How a k-means run ended, for the stage lines.
_ENDINGS = {
    "fixed_point": "fixed point",
    "tol": "centre shift within tol",
    "cycle": "stopped in a cycle of period {period}",
    "max_iter": "max_iter reached",
    "no_improvement": "no improvement",
    "one_step": "one step (reference)",
}


def fit_model(data: Multimodal, settings: Settings, engine: Engine,
              rng: np.random.RandomState) -> FittedModel:
    """Fit statistics, the selection (with "auto") and every ensemble member.

    Prior validation is assumed: ``data`` comes from :func:`ul4m4.backends.check_input`.
    """
    data, kept = without_empty_samples(data)
    check_training_data(data, settings)
    chunk_rows = settings.chunk_rows(data.dims, data.n_samples)
    rounding = rounding_factor(engine, data.dims, settings.dtype)
    progress = FitProgress(settings.verbose)
    if settings.completion == "auto":
        return _fit_auto(data, kept, settings, engine, chunk_rows, rounding, rng, progress)
    selection = _select(data, settings, engine, chunk_rows, rounding, rng, progress)
    k = selection.n_clusters if selection else int(settings.n_clusters)
    # The library chooses k under "auto" and draws every ensemble member's seeds:
    # a member whose Lloyd run cycles is reseeded instead of left to a warning.
    reseed = settings.auto_k or settings.n_ensemble > 1
    fitted = fit_members(data, [k] * settings.n_ensemble, settings, engine, chunk_rows, rounding,
                         rng, progress=progress, warn_constant=4, reseed=reseed)
    completion, temperature, shrinkage = _completion_settings(settings, data.names)
    spreads = sample_spread(fitted.view, engine,
                            [(run.centers, run.labels) for run in fitted.results],
                            rng)
    members = [Member.of(run.centers, fitted.means, fitted.scales, settings.dtype, spread=spread)
               for run, spread in zip(fitted.results, spreads, strict=True)]
    return _assemble(data, kept, fitted, members, fitted.results, fitted.reseeds, settings,
                     completion, temperature, shrinkage, selection)


def _assemble(data: Multimodal, kept, fitted, members: list[Member], runs: list[LloydResult],
              reseeds: list[int], settings: Settings, completion, temperature, shrinkage,
              selection: Selection | None, weights=None, calibration=None) -> FittedModel:
    """The fitted model of its members; ``runs[j]`` is member j's k-means run."""
    first = runs[0]
    labels = first.labels
    if kept is not None:
        labels = np.full(kept.size, OBSERVED, dtype=np.int64)
        labels[kept] = first.labels
    _warn_uncovered(data.names, first.centers)
    return FittedModel(
        list(data.names), list(data.dims), list(fitted.means), list(fitted.scales),
        settings.dtype, members, completion, temperature, shrinkage, labels, first.history,
        first.n_iter, first.inertia, all(r.converged for r in runs), first.centers.k, selection,
        [RunInfo(r.n_iter, r.converged, r.inertia, r.n_dead, r.stopped_by, r.cycle_period, n)
         for r, n in zip(runs, reseeds, strict=True)], weights, calibration,
    )


def _fit_auto(data: Multimodal, kept, settings: Settings, engine: Engine, chunk_rows: int,
              rounding: float, rng, progress: FitProgress) -> FittedModel:
    """``completion="auto"``: choose the ensemble on a subsample, fit its models on all rows."""
    ks = _k_grid(data, settings)
    candidates = registered_candidates(ks, sum(data.dims),
                                       min(data.n_samples, MAX_SELECTION_ROWS))
    if not isinstance(settings.init, str):  # explicit centres: only models of their k
        candidates = [c for c in candidates if c.k == ks[0]]
    host = local_engine(engine)
    # The candidates are compared, not kept: their k-means stop once the centres barely move.
    loose = replace(settings, tol=max(settings.tol, SELECTION_TOL))

    def fit_on_sample(sample: Multimodal, keys):
        rows = settings.chunk_rows(sample.dims, sample.n_samples)
        fitted, (seeding,) = _fit_keys(sample, keys, loose, host, rows, rounding, rng, progress,
                                       "selection", mixture_rows=SELECTION_MIXTURE_ROWS)
        return fitted.means, fitted.scales, seeding.members

    progress.stage("selection: %d candidates on a subsample of at most %d rows",
                   len(candidates), MAX_SELECTION_ROWS)
    selection = select_ensemble(data, fit_on_sample, candidates,
                                fraction=settings.selection_fraction, rng=rng,
                                dtype=settings.dtype, chunk_rows=chunk_rows, rounding=rounding,
                                engine=engine)
    keys = list(selection.models) or [ModelKey(min(ks))]
    # n_ensemble seedings of every chosen model; each seeding's members share its weight.
    fitted, seedings = _fit_keys(data, keys, settings, engine, chunk_rows, rounding, rng, progress,
                                 "member", seedings=settings.n_ensemble, warn_constant=6)
    members, weights, runs, reseeds = [], [], [], []
    for seeding in seedings:
        if selection.models:
            chosen, w = ensemble_members(selection, seeding.members, data.names)
        else:  # every modality is filled with its mean; the k-means model gives the labels
            chosen, w = [seeding.members[keys[0]]], np.zeros((1, len(data.names)))
        members += chosen
        weights.append(w / settings.n_ensemble)
        # Members that share one k-means model share its run and its reseeds.
        runs += [seeding.runs[m.centers.k] for m in chosen]
        reseeds += [seeding.reseeds[m.centers.k] for m in chosen]
    names = data.names
    progress.stage("%s", selection.summary())
    return _assemble(data, kept, fitted, members, runs, reseeds, settings,
                     [selection.completion.get(n, "mean") for n in names], [None] * len(names),
                     [selection.shrinkage.get(n, 0.0) for n in names], selection,
                     np.concatenate(weights), [selection.calibration.get(n, 1.0) for n in names])


def _k_grid(data: Multimodal, settings: Settings) -> list[int]:
    """The k values a selection may use (``k_grid`` within n_samples, or the fixed k)."""
    if not settings.auto_k:
        return [int(settings.n_clusters)]
    grid = sorted({k for k in settings.k_grid if k <= data.n_samples})
    if not grid:
        raise ValueError(
            f"n_samples={data.n_samples} is smaller than every k_grid entry {settings.k_grid}"
        )
    return grid


class _Fitted(NamedTuple):
    """The statistics and view of one fit, and its k-means models' runs and reseeds."""

    means: list
    scales: list
    view: Any
    results: list
    reseeds: list


class _Seeding(NamedTuple):
    """One seeding of a set of model keys: ``{key: Member}``, and by k its k-means run and
    the extra seedings that run drew."""

    members: dict
    runs: dict
    reseeds: dict


def _fit_keys(data: Multimodal, keys, settings: Settings, engine: Engine, chunk_rows: int,
              rounding: float, rng, progress: FitProgress, label: str, *, seedings: int = 1,
              warn_constant: int = 0, mixture_rows: int = MAX_ROWS
              ) -> tuple[_Fitted, list[_Seeding]]:
    """``seedings`` times, one k-means model per distinct k of ``keys`` (reseeded after a
    cycle), all on one view of the data; then each key's rule state (the mixtures) on its
    model. Returns the fit and each seeding's members and runs."""
    ks = sorted({key.k for key in keys})
    # A k-means model that only starts mixtures needs no fixed point: their EM moves on.
    starts_only = [all(key.rank is not None for key in keys if key.k == k) for k in ks]
    fitted = fit_members(data, ks * seedings, settings, engine, chunk_rows, rounding, rng,
                         progress=progress, label=label, warn_constant=warn_constant,
                         reseed=True, loose=starts_only * seedings)
    labels = [run.labels for run in fitted.results]
    # The centre rules read their model's spread; a model that only starts mixtures has none.
    spread_at = [i for i in range(len(labels)) if not starts_only[i % len(ks)]]
    spreads = dict(zip(spread_at, sample_spread(
        fitted.view, engine, [(fitted.results[i].centers, labels[i]) for i in spread_at], rng),
        strict=True))
    out = []
    for seeding in range(seedings):
        at = dict(zip(ks, range(seeding * len(ks), (seeding + 1) * len(ks)), strict=True))
        members = {}
        for k, i in at.items():
            run = fitted.results[i]
            states = fit_rule_states([key for key in keys if key.k == k], fitted.view, engine,
                                     run.centers, labels[i], rng, mixture_rows)
            members.update({key: Member.of(run.centers, fitted.means, fitted.scales,
                                           settings.dtype, state=state, spread=spreads.get(i))
                            for key, state in states.items()})
        out.append(_Seeding(members, {k: fitted.results[i] for k, i in at.items()},
                            {k: fitted.reseeds[i] for k, i in at.items()}))
    return fitted, out


def check_training_data(data: Multimodal, settings: Settings) -> None:
    """Raise for training data too small for the statistics or for ``n_clusters``."""
    if data.n_samples < 2:
        raise ValueError(
            f"n_samples={data.n_samples}: UL4M4 needs at least 2 training samples (a "
            "modality's standard deviation is undefined otherwise)"
        )
    check_observed_twice(data)
    if not settings.auto_k and data.n_samples < settings.n_clusters:
        raise ValueError(
            f"n_samples={data.n_samples} should be >= n_clusters={settings.n_clusters}"
        )


def fit_members(data: Multimodal, ks: Sequence[int], settings: Settings, engine: Engine,
                chunk_rows: int, rounding: float, rng: np.random.RandomState, *,
                progress: FitProgress | None = None, label: str = "member",
                warn_constant: int = 0, reseed: bool = False,
                loose: Sequence[bool] | None = None) -> _Fitted:
    """Statistics, then one k-means model per entry of ``ks`` on one view of the data.

    Each model is the best of ``n_init`` seedings; the models draw from ``rng`` one
    after the other. With ``reseed`` (models the library fits on its own), a
    model whose best run entered a Lloyd cycle gets up to :data:`MAX_RESEEDS`
    more seedings, until one does not cycle. Returns the statistics, the view,
    the ``LloydResult`` of each model and the extra seedings each drew.
    ``progress`` logs each model's stages under ``label`` (numbered ``i/n`` when
    ``label`` is ``"member"``). ``warn_constant`` (a stack level: frames up to the
    user's call) warns about constant dimensions
    (once per fit: the fit of the final model sets it). ``loose[i]`` stops model i's
    Lloyd iterations at ``tol`` :data:`SELECTION_TOL` at least (a model that only
    starts the mixtures' EM).
    """
    progress = progress if progress is not None else FitProgress(0)
    means, stds = modality_moments(data, chunk_rows, settings.n_threads, engine.reduce_blocks)
    scales = unit_scales(means, stds)
    if warn_constant:
        warn_constant_dimensions(data.names, means, stds, stacklevel=warn_constant)
    check_magnitudes(data, means, scales, settings.dtype, chunk_rows, settings.n_threads,
                     engine.reduce_blocks)
    # Streamed inputs (memory maps, array-likes) are never copied whole; an
    # in-memory input may be, once, when the copy is no larger than the input
    # (scikit-learn's k-means copies its input too).
    cache = 0 if is_streamed(data) else max(CACHE_BYTES, data.nbytes)
    view = engine.view(data, means, scales, settings.dtype, chunk_rows, settings.n_threads,
                       cache)
    tols = {False: shift_tolerance(settings.tol, data.mask, data.dims),
            True: shift_tolerance(max(settings.tol, SELECTION_TOL), data.mask, data.dims)}
    loose = loose or [False] * len(ks)
    # Another seeding is another run of the same settings: it only helps where
    # the seeds are drawn (not an explicit init, nor the reference's one step).
    reseed = reseed and isinstance(settings.init, str) and not settings.reference_one_step
    results, reseeds = [], []
    for i, (k, tol) in enumerate(zip(ks, [tols[flag] for flag in loose], strict=True)):
        name = f"{label} {i + 1}/{len(ks)}" if label == "member" else f"{label}: k={k}"
        if label == "member":
            progress.stage("%s: k=%d", name, k)
        best = _best_of_inits(view, k, rng, rounding, settings, engine, tol, progress, name)
        extra = 0
        while reseed and best.stopped_by == "cycle" and extra < MAX_RESEEDS:
            extra += 1
            progress.stage("%s: reseeding after a Lloyd cycle (%d/%d)", name, extra,
                           MAX_RESEEDS)
            best = _better(best, _run_once(view, k, rng, rounding, settings, engine, tol,
                                           progress, f"{name}, reseed {extra}"))
        results.append(best)
        reseeds.append(extra)
    return _Fitted(means, scales, view, results, reseeds)


def _better(best: LloydResult | None, result: LloydResult) -> LloydResult:
    """The better of two runs of one model: a converged run beats one that cycled or ran
    out of iterations (the inertia of a non-converged iterate is that of centres that
    are not their members' means), then the lower inertia."""
    if best is None or (not result.converged, result.inertia) < (not best.converged,
                                                                  best.inertia):
        return result
    return best


def _best_of_inits(view: View, k: int, rng, rounding: float, settings: Settings,
                   engine: Engine, tol: float, progress: FitProgress,
                   label: str) -> LloydResult:
    best = None
    for run in range(settings.n_init):
        name = label if settings.n_init == 1 else f"{label}, init {run + 1}/{settings.n_init}"
        best = _better(best, _run_once(view, k, rng, rounding, settings, engine, tol,
                                       progress, name))
    return best


def _run_once(view: View, k: int, rng, rounding: float, settings: Settings,
              engine: Engine, tol: float, progress: FitProgress, name: str) -> LloydResult:
    """One seeding and its k-means run, with its progress under ``name``."""
    start = time.perf_counter()
    minibatch = settings.algorithm == "minibatch"
    # The seeding runs inside the progress context: k-means++ makes k passes over
    # the data, which a bar (or the elapsed time of the lines) then shows.
    with progress.iterations(name, "mini-batch step" if minibatch else "Lloyd iteration",
                             settings.max_iter) as callback:
        if minibatch:
            result = _minibatch_run(view, k, rng, rounding, settings, engine, tol, callback)
        else:
            centers = initial_centers(view, k, rng, rounding, settings, engine,
                                      None if callback is None else callback.seeded)
            result = lloyd(view, centers, engine, max_iter=settings.max_iter, tol=tol,
                           rounding=rounding, one_step=settings.reference_one_step,
                           progress=callback)
    ending = _ENDINGS.get(result.stopped_by, result.stopped_by)
    progress.stage("%s: %s after %d %s, inertia %.6g (%.1f s)", name,
                   ending.format(period=result.cycle_period), result.n_iter,
                   "mini-batch steps" if minibatch else "iterations",
                   result.inertia, time.perf_counter() - start)
    logger.debug("%s: inertia %.6g after %d iterations (%s)", name, result.inertia,
                 result.n_iter, result.stopped_by)
    return result


def _minibatch_run(view: View, k: int, rng, rounding: float, settings: Settings,
                   engine: Engine, tol: float, callback=None) -> LloydResult:
    batch = settings.batch_size if settings.batch_size is not None else DEFAULT_BATCH_SIZE
    seeding, seeding_engine = view, engine
    if settings.init == "k-means++":
        size = min(view.n_samples, max(3 * batch, 3 * k))
        seeding = seeding_sample(view, size, rng, engine)
        seeding_engine = local_engine(engine)
    centers = initial_centers(seeding, k, rng, rounding, settings, seeding_engine,
                              None if callback is None else callback.seeded)
    return minibatch_kmeans(view, centers, engine, batch_size=batch, max_iter=settings.max_iter,
                            tol=tol, rounding=rounding, rng=rng, progress=callback)


def initial_centers(view: View, k: int, rng, rounding: float, settings: Settings,
                    engine: Engine, progress=None) -> Centers:
    """The seeds of one run: k-means++ (on a gathered sample where the engine asks for
    one), k random samples, or the explicit ``init`` centres z-scored. ``progress``
    follows the k-means++ passes (see :func:`~ul4m4.cluster.kmeans_plusplus`)."""
    if settings.init == "random":
        return random_init(view, k, rng, engine)
    if settings.init == "k-means++":
        limit = seed_sample_size(view, k, engine)
        if limit is None:
            return kmeans_plusplus(view, k, rng, rounding, engine, progress)[0]
        n = view.n_samples
        rows = np.arange(n) if n <= limit else np.sort(rng.choice(n, size=limit, replace=False))
        if n > limit:
            logger.info("k-means++ seeding on a sample of %d of %d samples", limit, n)
        sample = gather_view(view, rows, engine, local_engine(engine))
        return kmeans_plusplus(sample, k, rng, rounding, local_engine(engine), progress)[0]
    return _explicit_centers(view, k, settings, engine)


def _explicit_centers(view: View, k: int, settings: Settings, engine: Engine) -> Centers:
    init = settings.init  # checked against the data by settings.resolve_init, once per fit
    if init.n_samples != k:
        raise ValueError(f"init has {init.n_samples} centres, expected n_clusters={k}")
    host = local_engine(engine)
    init_view = host.view(init, view.mean, view.scale, view.dtype, k)
    blocks, mask = host.take(init_view, np.arange(k))
    return Centers(blocks, mask.copy())


def _select(data: Multimodal, settings: Settings, engine: Engine, chunk_rows: int, rounding: float,
            rng, progress: FitProgress) -> Selection | None:
    """``n_clusters="auto"`` with a set completion: k chosen by masked reconstruction."""
    if not settings.auto_k:
        return None
    ks = _k_grid(data, settings)
    count = []

    def fit(masked: Multimodal, k: int):
        count.append(k)
        label = (f"selection: k={k}, {len(count)}/{len(ks)}" if len(count) <= len(ks)
                 else f"selection: k={k}, past the grid's top")
        progress.stage("%s", label)
        run = fit_members(masked, [k], settings, engine, chunk_rows, rounding, rng,
                          progress=progress, label=label, reseed=True)
        return run.means, run.scales, run.results[0].centers

    selection = select_model(
        data, fit, k_grid=ks, method=settings.completion,
        temperature=settings.temperature, shrinkage=settings.shrinkage,
        fraction=settings.selection_fraction, rng=rng, dtype=settings.dtype,
        chunk_rows=chunk_rows, rounding=rounding, engine=engine, n_threads=settings.n_threads,
        max_k=data.n_samples,
    )
    if not selection.table:
        logger.warning(
            "no training sample has two observed modalities: nothing to hide for the "
            "'auto' selection; using k=%d", selection.n_clusters
        )
    logger.debug("model selection (z-space MSE on hidden blocks):\n%s", selection.to_markdown())
    progress.stage("%s", selection.summary(auto_k=True, auto_completion=False))
    return selection


def _completion_settings(settings: Settings, names: Sequence[str]):
    """Per modality: rule, temperature and shrinkage (a set completion)."""
    method = settings.completion
    t = settings.temperature if method == "soft" else None
    return [method] * len(names), [t] * len(names), [settings.shrinkage] * len(names)


def _warn_uncovered(names: Sequence[str], centers: Centers) -> None:
    uncovered = [n for m, n in enumerate(names) if not centers.mask[:, m].any()]
    if uncovered:
        logger.warning(
            "no centre carries modalities %s: missing entries of them are filled with "
            "the training mean", uncovered,
        )
