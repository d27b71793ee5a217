"""Label-free model selection by masked reconstruction on the training data.

No labels exist at imputation time, so the imputer scores itself on its own
training data: for a seeded fraction of the training samples that observe at
least two modalities, one observed modality is hidden (:func:`hide_blocks`); a
model is fitted on the data *without* the hidden blocks (statistics and
centres alike, so nothing leaks), the completion fills the hidden blocks, and
the z-space MSE per modality (``||z_hat - z||^2 / d_m`` averaged over hidden
blocks) scores it. :class:`Selection` keeps every score with its standard error
and renders them (``repr``, :meth:`Selection.to_markdown`,
:meth:`Selection.to_frame`).

This module chooses k for ``n_clusters="auto"`` with a set completion
(:func:`select_model`): one fit per k of the grid, its hidden blocks filled by
the set completion, and the chosen k minimises the mean over modalities of
their scores. The grid is not a wall: while the chosen k is the largest k
scored, ``min(2k, n_samples)`` is scored too (at most
:data:`MAX_GRID_EXTENSIONS` more values), so the choice ends inside the grid or
at a stated limit. ``completion="auto"`` chooses an ensemble of registered
rules instead (:mod:`ul4m4.auto`), with the same hiding and scores, keeping a
rule for a modality only if it beats mean imputation on that modality's hidden
blocks by more than two standard errors (a paired one-sided test,
:func:`paired_margin`), and renders through the same :class:`Selection`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .centers import Centers
from .complete import complete_sources, soft_complete
from .engine import Engine, local_engine
from .plan import CompletionPlan
from .validation import Multimodal

__all__ = ["Selection", "hidden_block_errors", "hide_blocks", "paired_margin", "select_model",
           "standard_error"]

#: Cap on the samples whose blocks are hidden (bounds the evaluation's cost).
MAX_HIDDEN_SAMPLES = 10_000
_KEYS = ("n_clusters", "method", "temperature", "shrinkage")
#: Table keys that are not modality names.
_RESERVED = (*_KEYS, "se", "rank")
#: Most doublings of k beyond the largest k_grid value when the grid may be extended.
MAX_GRID_EXTENSIONS = 3
#: Standard errors by which a completion must beat mean imputation to be chosen.
_MARGIN_SE = 2.0


@dataclass(repr=False)
class Selection:
    """Outcome of :func:`select_model`.

    ``table`` holds one row per candidate: ``n_clusters``, ``method``,
    ``temperature``, ``shrinkage``, the mean hidden-block error of each modality
    under its name, and under ``"se"`` a ``{modality: standard error}`` dict
    (``std(ddof=1) / sqrt(n)`` of the per-block errors; NaN with fewer than two
    hidden blocks; absent in files written before release 0.2). ``k_grid`` is
    every k that was scored, in order, ``k_added`` those added beyond the given
    grid, and ``k_limit`` the largest k the grid could have been extended to
    (``None`` when it was not allowed to grow).
    """

    n_clusters: int
    completion: dict[str, str]
    temperature: dict[str, float | None]
    table: list[dict] = field(default_factory=list)
    shrinkage: dict[str, float] = field(default_factory=dict)
    k_grid: tuple[int, ...] = ()
    k_added: tuple[int, ...] = ()
    k_limit: int | None = None
    # An ensemble selection (completion="auto", see ul4m4.auto): per modality the
    # chosen [(table row, weight)], its (score, SE), its calibration factor; the
    # rows of the subsample it ran on, the blocks hidden, and the models used.
    ensemble: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    ensemble_scores: dict[str, tuple[float, float]] = field(default_factory=dict)
    calibration: dict[str, float] = field(default_factory=dict)
    n_rows: int = 0
    n_hidden: int = 0
    models: list = field(default_factory=list)

    # ------------------------------------------------------------- reading
    @property
    def is_ensemble(self) -> bool:
        """Whether this is ``completion="auto"``'s ensemble selection (see :mod:`ul4m4.auto`)."""
        return self.n_rows > 0

    def members(self, name: str) -> list[str]:
        """The ensemble of modality ``name``: one ``"<weight> x <candidate>"`` per member."""
        return [f"{w:.2f} x {_candidate(self.table[row])}"
                for row, w in self.ensemble.get(name, [])]

    def __repr__(self) -> str:
        if self.is_ensemble and not self.table:
            return (f"Selection(no ensemble: no training sample has two observed modalities; "
                    f"rows={self.n_rows})")
        if self.is_ensemble:
            parts = ", ".join(f"{n}=[{'; '.join(self.members(n)) or 'mean'}]"
                              for n in self.completion)
            return (f"Selection(ensembles: {parts}; candidates={len(self.table) - 1}, "
                    f"rows={self.n_rows})")
        parts = ", ".join(f"{n}={_describe(self, n)}" for n in self.completion)
        return (f"Selection(k={self.n_clusters}, completion={{{parts}}}, "
                f"candidates={len(self.table)})")

    @property
    def names(self) -> list[str]:
        """Modality names, in the table's column order."""
        if not self.table:
            return list(self.completion)
        return [c for c in self.table[0] if c not in _RESERVED]

    def chosen_for(self, row: dict) -> list[str]:
        """The modalities whose completion is this row's candidate (at the chosen k)."""
        if self.is_ensemble:
            index = next(i for i, r in enumerate(self.table) if r is row)
            return [n for n in self.names if any(i == index for i, _ in self.ensemble.get(n, []))]
        if row["n_clusters"] != self.n_clusters:
            return []
        return [n for n in self.names
                if self.completion.get(n) == row["method"]
                and self.temperature.get(n) == row["temperature"]
                and self.shrinkage.get(n, 0.0) == row["shrinkage"]
                and np.isfinite(row[n])]

    def notes(self) -> list[str]:
        """The selection rule and, when it applies, that the chosen k is at the grid's edge."""
        if not self.table:
            return []
        if self.is_ensemble:
            return [
                f"Scores: z-space MSE on {self.n_hidden} training blocks hidden in a subsample "
                f"of {self.n_rows} rows (lower is better; mean imputation scores about 1), "
                "mean ± standard error over the hidden blocks.",
                "Rule: per modality, greedy forward selection (with replacement) of the "
                "candidates, then a shrinkage toward the mean; the ensemble replaces the mean "
                f"only if it wins by more than {_MARGIN_SE:g} SE (paired over the same hidden "
                f"blocks); the ensembles use {len(self.models)} fitted model(s) in all.",
            ]
        lines = [
            "Scores: z-space MSE on the hidden training blocks (lower is better; mean "
            "imputation scores about 1), mean ± standard error over the hidden blocks.",
            f"Rule: a completion replaces the mean only if it wins by more than "
            f"{_MARGIN_SE:g} SE (paired over the same hidden blocks); k minimises the mean "
            "over modalities of each modality's best eligible score.",
        ]
        edge = self.edge_note()
        if edge:
            lines.append(edge)
        return lines

    def edge_note(self) -> str | None:
        """A sentence when the chosen k is the smallest or largest k scored, else None."""
        grid = sorted(self.k_grid or {row["n_clusters"] for row in self.table})
        k = self.n_clusters
        if len(grid) < 2:
            return None
        added = f" (grid extended by {list(self.k_added)})" if self.k_added else ""
        if k == grid[-1]:
            if self.k_limit is not None and k >= self.k_limit:
                return (f"Edge: the chosen k={k} is the largest k scored{added} and the "
                        "largest the data allow (n_samples).")
            if self.k_limit is not None:
                return (f"Edge: the chosen k={k} is the largest k scored{added}; the extension "
                        f"stopped at its cap of {MAX_GRID_EXTENSIONS} doublings, so a larger "
                        "k might score better.")
            return (f"Edge: the chosen k={k} is the largest value of k_grid; a larger k might "
                    "score better (add larger values to k_grid).")
        if k == grid[0]:
            return (f"Edge: the chosen k={k} is the smallest value of k_grid; a smaller k "
                    "might score better.")
        return None

    def score(self, k: int | None = None) -> float:
        """Mean over modalities of the hidden-block MSE of each modality's choice at ``k``.

        At the chosen k (the default) this is what the selection minimised. For an
        ensemble selection: the mean over modalities of the chosen ensembles' scores.
        """
        if self.is_ensemble:
            scores = [v[0] for v in self.ensemble_scores.values() if np.isfinite(v[0])]
            return float(np.mean(scores)) if scores else float("nan")
        k = self.n_clusters if k is None else k
        names = self.names if self.table else []
        chosen = []
        for n in names:
            for row in self.table:
                if (row["n_clusters"] == k and row["method"] == self.completion.get(n)
                        and row["temperature"] == self.temperature.get(n)
                        and row["shrinkage"] == self.shrinkage.get(n, 0.0)
                        and np.isfinite(row[n])):
                    chosen.append(row[n])
                    break
        return float(np.mean(chosen)) if chosen else float("nan")

    def summary(self, *, auto_k: bool = True, auto_completion: bool = True) -> str:
        """One line: the chosen k and per-modality completion, and why.

        ``auto_k`` / ``auto_completion`` say which of the two were chosen here
        (the other was set by the caller and is reported as such).
        """
        if self.is_ensemble:
            return self._ensemble_summary()
        if not self.table:
            return (f"auto: k={self.n_clusters}, greedy completion (no training sample has "
                    "two observed modalities: nothing could be hidden to compare candidates)")
        grid = sorted({row["n_clusters"] for row in self.table})
        if auto_k:
            head = (f"auto: k={self.n_clusters} (lowest hidden-block MSE {self.score():.3g} of "
                    f"k in {grid})")
        else:
            head = f"auto: k={self.n_clusters} (as set; hidden-block MSE {self.score():.3g})"
        if not auto_completion:
            return f"{head}; completion as set"
        names = self.names
        parts, means = [], []
        for n in names:
            method = self.completion.get(n, "greedy")
            if method == "mean":
                means.append(n)
            text = f"{n} {method}"
            if method == "soft":
                text += f" T={self.temperature[n]:g}"
            if self.shrinkage.get(n, 0.0):
                text += f" shrinkage {self.shrinkage[n]:g}"
            if not any(np.isfinite(row[n]) for row in self.table):
                text += " (never hidden)"
            parts.append(text)
        line = f"{head}; completion: {', '.join(parts)}"
        if means:
            line += (f" ({', '.join(means)}: no completion beat the mean by {_MARGIN_SE:g} "
                     "standard errors)")
        return line

    def _ensemble_summary(self) -> str:
        if not self.table:
            return ("auto: mean imputation (no training sample has two observed modalities: "
                    "nothing could be hidden to compare candidates)")
        parts = []
        for n in self.names:
            score = self.ensemble_scores.get(n)
            text = f"{n}: {' + '.join(self.members(n)) or 'mean'}"
            if self.shrinkage.get(n):
                text += f", shrinkage {self.shrinkage[n]:g}"
            if score is not None:
                text += f" (hidden-block MSE {score[0]:.3g} ± {score[1]:.2g})"
            parts.append(text)
        means = [n for n in self.names if self.completion.get(n) == "mean"]
        line = (f"auto: {len(self.table) - 1} candidates scored on {self.n_hidden} blocks "
                f"hidden in {self.n_rows} rows; " + "; ".join(parts))
        if means:
            line += (f" ({', '.join(means)}: no ensemble beat the mean by {_MARGIN_SE:g} "
                     "standard errors)")
        return line

    def to_markdown(self) -> str:
        """The score table as Markdown, the chosen rows marked, followed by the rule."""
        if not self.table:
            return "(no selection was run)"
        if self.is_ensemble:
            return self._ensemble_markdown()
        names = self.names
        lines = ["| k | method | T | shrinkage | " + " | ".join(names) + " | chosen for |",
                 "|---|---|---|---|" + "---:|" * len(names) + "---|"]
        for row in self.table:
            t = "" if row["temperature"] is None else f"{row['temperature']:g}"
            chosen = self.chosen_for(row)
            cells = []
            for n in names:
                cell = _score(row, n)
                cells.append(f"**{cell}**" if n in chosen else cell)
            lines.append(
                f"| {row['n_clusters']} | {row['method']} | {t} | {row['shrinkage']:g} | "
                f"{' | '.join(cells)} | {', '.join(chosen)} |"
            )
        return "\n".join([*lines, "", *self.notes()])

    def _ensemble_markdown(self) -> str:
        names = self.names
        lines = ["| k | method | T | rank | " + " | ".join(names) + " | chosen for |",
                 "|---|---|---|---|" + "---:|" * len(names) + "---|"]
        for row in self.table:
            t = "" if row["temperature"] is None else f"{row['temperature']:g}"
            rank = "" if row.get("rank") is None else str(row["rank"])
            chosen = self.chosen_for(row)
            cells = [f"**{_score(row, n)}**" if n in chosen else _score(row, n) for n in names]
            k = "" if row["method"] == "mean" else str(row["n_clusters"])
            lines.append(f"| {k} | {row['method']} | {t} | {rank} | {' | '.join(cells)} | "
                         f"{', '.join(chosen)} |")
        lines += ["", "| modality | ensemble | shrinkage | hidden-block MSE | calibration |",
                  "|---|---|---:|---:|---:|"]
        for n in names:
            score = self.ensemble_scores.get(n, (np.nan, np.nan))
            lines.append(f"| {n} | {' + '.join(self.members(n)) or 'mean'} | "
                         f"{self.shrinkage.get(n, 0.0):g} | {score[0]:.4f} ± {score[1]:.4f} | "
                         f"{self.calibration.get(n, 1.0):.3g} |")
        return "\n".join([*lines, "", *self.notes()])

    def to_frame(self):
        """The score table as a pandas DataFrame (needs pandas).

        One row per candidate; per modality its mean hidden-block error and
        ``"<modality> se"``, its standard error; ``chosen_for`` lists the
        modalities that use the row (empty otherwise). The rule and any edge note
        are in ``frame.attrs["notes"]``.
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("Selection.to_frame needs pandas (pip install pandas)") from exc
        names = self.names
        keys = (*_KEYS, "rank") if self.is_ensemble else _KEYS
        records = []
        for row in self.table:
            record = {key: row.get(key) for key in keys}
            for n in names:
                record[n] = row[n]
                record[f"{n} se"] = row.get("se", {}).get(n, np.nan)
            record["chosen_for"] = ", ".join(self.chosen_for(row))
            records.append(record)
        columns = [*keys, *(c for n in names for c in (n, f"{n} se")), "chosen_for"]
        frame = pd.DataFrame.from_records(records, columns=columns)
        frame.attrs["notes"] = self.notes()
        return frame


def _describe(selection: Selection, name: str) -> str:
    method = selection.completion[name]
    if method == "soft" and selection.temperature.get(name) is not None:
        method += f"(T={selection.temperature[name]:g})"
    shrink = selection.shrinkage.get(name, 0.0)
    return f"{method}, shrink {shrink:g}" if shrink else method


def _candidate(row: dict) -> str:
    """A table row's candidate in words, e.g. ``"mixture k=16 r=7"``."""
    text = f"{row['method']} k={row['n_clusters']}"
    if row.get("rank") is not None:
        text += f" r={row['rank']}"
    if row["temperature"] is not None:
        text += f" T={row['temperature']:g}"
    return text


def _score(row: dict, name: str) -> str:
    value = row[name]
    if value is None or not np.isfinite(value):
        return "-"
    se = row.get("se", {}).get(name)
    if se is None or not np.isfinite(se):
        return f"{value:.4f}"
    return f"{value:.4f} ± {se:.4f}"


def hide_blocks(
    mask: np.ndarray, fraction: float, rng: np.random.RandomState,
    limit: int = MAX_HIDDEN_SAMPLES,
) -> np.ndarray:
    """Choose one observed block to hide in a ``fraction`` of the multi-modal samples.

    Returns a boolean (n, M) array, True at the hidden entries. Only samples with
    at least two observed modalities are eligible, so none becomes empty; at
    most ``limit`` samples are chosen.
    """
    eligible = np.flatnonzero(mask.sum(axis=1) >= 2)
    hidden = np.zeros_like(mask)
    n_pick = min(int(round(fraction * eligible.size)), limit)
    if n_pick == 0:
        return hidden
    rows = np.sort(rng.choice(eligible, size=n_pick, replace=False))
    # A uniform draw among each row's observed modalities.
    u = rng.random_sample(n_pick)
    observed = mask[rows]
    counts = observed.sum(axis=1)
    target = np.floor(u * counts).astype(np.int64)
    rank = np.cumsum(observed, axis=1) - 1
    cols = np.argmax(observed & (rank == target[:, None]), axis=1)
    hidden[rows, cols] = True
    return hidden


def hidden_block_errors(fill: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per hidden block (row), its z-space squared error per dimension, ``||fill - truth||^2 / d``."""
    return np.sum((fill - truth) ** 2, axis=1) / truth.shape[1]


def _errors(hat: list, true: list, hidden_rows: list) -> dict[int, np.ndarray]:
    """Per modality, the squared z-space error of every hidden block (per dimension)."""
    return {m: hidden_block_errors(h, t)
            for m, (h, t) in enumerate(zip(hat, true, strict=True)) if hidden_rows[m].size}


def standard_error(errors: np.ndarray) -> float:
    """``std(ddof=1) / sqrt(n)`` of the per-block errors; NaN with fewer than two blocks."""
    if errors.size < 2:
        return float("nan")
    return float(errors.std(ddof=1) / np.sqrt(errors.size))


def paired_margin(errors: np.ndarray, mean_errors: np.ndarray) -> float:
    """Mean paired difference of block errors plus two standard errors (inf with < 2 blocks).

    Negative when a completion beats mean imputation beyond noise: otherwise
    mean imputation is kept, so that data whose modalities carry no information
    about each other are not imputed worse than by the mean.
    """
    diff = errors - mean_errors
    if diff.size < 2:
        return float("inf")
    return float(diff.mean() + _MARGIN_SE * diff.std(ddof=1) / np.sqrt(diff.size))


def select_model(
    data: Multimodal,
    fit: Callable[[Multimodal, int], tuple[list, list, Centers]],
    *,
    k_grid: Sequence[int],
    method: str,
    temperature: float,
    shrinkage: float = 0.0,
    fraction: float,
    rng: np.random.RandomState,
    dtype: np.dtype,
    chunk_rows: int,
    rounding: float,
    engine: Engine,
    n_threads: int = 1,
    max_k: int | None = None,
) -> Selection:
    """Score every k of the grid on hidden training blocks, under one completion; pick the best.

    ``fit(data, k)`` must return ``(means, scales, centers)`` fitted on ``data``.
    ``method`` is ``"greedy"`` or ``"soft"`` (with ``temperature``), its fills
    shrunk toward the mean by ``shrinkage``. The hidden
    samples are gathered into this process and completed on the host
    (:func:`~ul4m4.engine.local_engine`).

    With ``max_k`` (an int), the grid grows past its upper edge: while the best
    k is the largest one scored and below ``max_k``, ``min(2k, max_k)`` is scored
    too, at most :data:`MAX_GRID_EXTENSIONS` times. With ``None`` only
    ``k_grid`` is scored.
    """
    local = local_engine(engine)
    names = data.names
    hidden = hide_blocks(data.mask, fraction, rng)
    if not hidden.any():
        return Selection(int(k_grid[0]), {}, {}, [], k_grid=(int(k_grid[0]),))
    masked = Multimodal(names, data.arrays, data.mask & ~hidden)
    rows = np.flatnonzero(hidden.any(axis=1))
    subset = Multimodal(names, [np.asarray(a[rows]) for a in data.arrays], masked.mask[rows])
    hidden_sub = hidden[rows]
    hidden_rows = [np.flatnonzero(hidden_sub[:, m]) for m in range(len(names))]
    table: list[dict] = []
    scores: dict[int, dict[int, float]] = {}

    def score(k: int) -> None:
        means, scales, centers = fit(masked, int(k))
        view = local.view(subset, means, scales, dtype, chunk_rows, n_threads)
        truth_view = local.view(
            Multimodal(names, subset.arrays, subset.mask | hidden_sub), means, scales, dtype,
            chunk_rows,
        )
        true_blocks, _ = local.take(truth_view, np.arange(len(rows)))
        true = [true_blocks[m][hidden_rows[m]].astype(np.float64) for m in range(len(names))]
        plan = CompletionPlan.from_centers(centers)
        if method == "greedy":
            t = None
            src = complete_sources(view, plan, rounding)
            hat = [plan.exact_blocks[m][src[hidden_rows[m], m]] for m in range(len(names))]
        else:
            t = float(temperature)
            out = [np.zeros((len(rows), d)) for d in data.dims]
            soft_complete(view, plan, plan.exact_blocks, [t] * len(names), out, rounding)
            hat = [out[m][hidden_rows[m]] for m in range(len(names))]
        per_modality = _errors([(1.0 - shrinkage) * h for h in hat], true, hidden_rows)
        row = {"n_clusters": int(k), "method": method, "temperature": t,
               "shrinkage": float(shrinkage)}
        row.update({n: float(per_modality[m].mean()) if m in per_modality else np.nan
                    for m, n in enumerate(names)})
        row["se"] = {n: standard_error(per_modality[m]) if m in per_modality else np.nan
                     for m, n in enumerate(names)}
        table.append(row)
        scores[int(k)] = {m: float(err.mean()) for m, err in per_modality.items()}

    for k in k_grid:
        score(int(k))
    chosen_k = _choose_k(scores)
    added: list[int] = []
    while (max_k is not None and chosen_k == max(scores) and chosen_k < max_k
           and len(added) < MAX_GRID_EXTENSIONS):
        k = min(2 * chosen_k, max_k)
        added.append(k)
        score(k)
        chosen_k = _choose_k(scores)
    scored = scores[chosen_k]
    t = float(temperature) if method == "soft" else None
    completion = {n: method if m in scored else "greedy" for m, n in enumerate(names)}
    temperatures = {n: t if m in scored else None for m, n in enumerate(names)}
    shrinkages = {n: float(shrinkage) if m in scored else 0.0 for m, n in enumerate(names)}
    return Selection(chosen_k, completion, temperatures, table, shrinkages,
                     k_grid=tuple(scores), k_added=tuple(added), k_limit=max_k)


def _choose_k(scores: dict[int, dict[int, float]]) -> int:
    """The k of the lowest mean over modalities of their hidden-block scores (ties: smaller k)."""
    return min(scores, key=lambda k: (np.mean(list(scores[k].values())), k))
