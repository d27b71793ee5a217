"""Tier 2: applying a fitted model to new data.

:func:`transform_view` validates new data against a
:class:`~ul4m4.model.FittedModel` and returns the engine's view of it;
:func:`complete` fills its missing blocks (each member with its rule, blended
by the ensemble weights, with the predicted error on request); :func:`predict`
gives the first member's nearest centres; :func:`transform_to_files` completes
block by block into ``.npy`` files of an output folder that appears whole.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._utils.chunks import iter_row_chunks
from ._utils.files import NpyWriter, output_folder
from .backends import check_input
from .cluster import assign
from .complete import FROM_MEAN, OBSERVED
from .engine import Engine, HostView, View, local_engine, rounding_factor
from .inputs import output_dtype
from .members import Member
from .model import FittedModel
from .rules import COMPLETION_RULES, FillTask
from .settings import Settings
from .statistics import check_magnitudes
from .stream import RowSubset
from .uncertainty import ensemble_variance
from .validation import Multimodal

__all__ = ["complete", "predict", "transform_to_files", "transform_view"]

logger = logging.getLogger("ul4m4")

#: Bytes of input per row block of a streamed transform.
TRANSFORM_BLOCK_BYTES = 64 * 2**20


# ---------------------------------------------------------------- transform
def transform_view(X: Any, model: FittedModel, settings: Settings, engine: Engine):
    """Validate new data against the model and return the engine's view of it.

    ``X`` is read by the reader of ``settings.backend`` (:func:`ul4m4.backends.check_input`).
    """
    data = check_input(
        settings.backend, engine, X, names=model.names,
        dims=dict(zip(model.names, model.dims, strict=True)),
        require_observed=settings.empty == "raise", n_threads=settings.n_threads,
        partial=settings.partial,
    )
    chunk_rows = settings.chunk_rows(data.dims, data.n_samples)
    check_magnitudes(data, model.means, model.scales, model.dtype, chunk_rows,
                     settings.n_threads, engine.reduce_blocks)
    return engine.view(data, model.means, model.scales, model.dtype, chunk_rows,
                       settings.n_threads)


def predict(view: View, model: FittedModel, engine: Engine) -> np.ndarray:
    """Nearest-centre labels of the first member; -1 for samples with no observed modality."""
    rounding = rounding_factor(engine, model.dims, model.dtype)
    labels, _ = assign(view, model.members[0].centers, rounding, engine)
    labels[~view.mask.any(axis=1)] = OBSERVED
    return labels


def complete(view: HostView, model: FittedModel, engine: Engine, order: Sequence[str], *,
             return_sources: bool = False, return_weights: bool = False,
             return_std: bool = False) -> Any:
    """Fill every missing block of ``view``; outputs keyed in ``order``.

    Observed rows are copied bit-identical; floating input keeps its dtype. With
    several ensemble members each missing block is the mean of their fills, or,
    for an ensemble chosen by ``completion="auto"``, the weighted blend of
    :attr:`FittedModel.weights`. ``return_std`` adds, last, each block's
    predicted root-mean-square error per coordinate in z-space (NaN where
    observed).
    """
    members = model.members
    if len(members) > 1 and (return_sources or return_weights):
        raise ValueError(
            f"return_sources/return_weights describe a single model, but this imputer "
            f"averages the fills of {len(members)} ensemble members (n_ensemble="
            f"{len(members)}); refit with n_ensemble=1 to audit which centre filled a block"
        )
    rounding = rounding_factor(engine, model.dims, model.dtype)
    weights = _member_weights(model)
    tasks = [_fill_member(view, model, rounding, member, np.flatnonzero(weights[j] > 0),
                          return_std) for j, member in enumerate(members)]
    # Before the blend, which writes into the first member's arrays.
    std = _predicted_std(view, model, tasks, weights) if return_std else None
    if model.weights is None:
        filled = tasks[0].filled
        if len(members) > 1:
            _average_members(view, [t.filled for t in tasks[1:]], filled)
    else:
        filled = _blend(view, model, [t.filled for t in tasks])
    names = model.names
    result = {name: filled[names.index(name)] for name in order}
    extras = []
    if return_sources:
        extras.append({n: tasks[0].sources[:, names.index(n)] for n in order})
    if return_weights:
        extras.append({n: tasks[0].weights[:, names.index(n)] for n in order})
    if std is not None:
        extras.append({n: std[names.index(n)] for n in order})
    return (result, *extras) if extras else result


def _member_weights(model: FittedModel) -> np.ndarray:
    """(n_members, M): the model's ensemble weights, or equal weights."""
    if model.weights is not None:
        return model.weights
    n = len(model.members)
    return np.full((n, len(model.names)), 1.0 / n)


def _fill_member(view: HostView, model: FittedModel, rounding: float, member: Member,
                 modalities: np.ndarray, want_variance: bool) -> FillTask:
    """One member's completion of ``modalities`` of ``view`` (its filled arrays, sources,
    weights and, with ``want_variance``, predicted variances); a set completion's
    shrinkage is applied here."""
    if member.rule is None:
        task = FillTask.for_member(view, rounding, member, model.temperature,
                                   want_variance=want_variance)
        for name, rule in COMPLETION_RULES.items():
            chosen = [m for m, method in enumerate(model.completion) if method == name]
            if chosen:
                rule.fill(task, chosen)
    else:
        task = FillTask.for_member(view, rounding, member,
                                   [member.temperature] * len(model.names),
                                   want_variance=want_variance)
        if modalities.size:
            COMPLETION_RULES[member.rule].fill(task, [int(m) for m in modalities])
    empty_rows = ~view.mask.any(axis=1)
    for m in range(len(model.names)):
        sources = task.sources[:, m]
        # Modalities no centre carries and samples with no observed modality
        # (empty="mean") get the training mean.
        if not member.centers.mask[:, m].any():
            sources[~view.mask[:, m]] = FROM_MEAN
        sources[empty_rows] = FROM_MEAN
        from_mean = sources == FROM_MEAN
        if from_mean.any():
            task.filled[m][from_mean] = model.means[m].astype(task.filled[m].dtype)
            if task.variance is not None:
                task.variance[m][from_mean] = 1.0
        if model.weights is None:
            _shrink(task.filled[m], model.means[m], model.shrinkage[m], sources >= 0)
        task.weights[from_mean, m] = 1.0
    return task


def _shrink(out: np.ndarray, mean: np.ndarray, s: float, rows: np.ndarray) -> None:
    if s and rows.any():
        out[rows] = (mean + (1.0 - s) * (out[rows].astype(np.float64) - mean)).astype(out.dtype)


def _average_members(view: View, others: list[list[np.ndarray]], filled: list[np.ndarray]) -> None:
    """Replace the first member's fills by the mean over all members (float64 sums)."""
    missing = [~view.mask[:, m] for m in range(len(filled))]
    totals = [f[rows].astype(np.float64) for f, rows in zip(filled, missing, strict=True)]
    for other in others:
        for total, values, rows in zip(totals, other, missing, strict=True):
            total += values[rows]
    for out, total, rows in zip(filled, totals, missing, strict=True):
        out[rows] = (total / (len(others) + 1)).astype(out.dtype)


def _blend(view: View, model: FittedModel, fills: list[list[np.ndarray]]) -> list[np.ndarray]:
    """``mean + sum_j w_jm (fill_j - mean)`` in float64 on each missing block."""
    out = fills[0]
    for m, mean in enumerate(model.means):
        rows = ~view.mask[:, m]
        if not rows.any():
            continue
        total = np.zeros((int(rows.sum()), mean.size))
        for j, member_fills in enumerate(fills):
            if model.weights[j, m] > 0:
                total += model.weights[j, m] * (member_fills[m][rows].astype(np.float64) - mean)
        out[m][rows] = (mean + total).astype(out[m].dtype)
    return out


def _predicted_std(view: View, model: FittedModel, tasks: list[FillTask], weights: np.ndarray
                   ) -> list[np.ndarray]:
    """Per modality (n,): sqrt(calibration * ensemble variance) in z-space, NaN where observed.

    The ensemble variance is the weighted members' own variance plus their spread
    around the blend (:func:`~ul4m4.uncertainty.ensemble_variance`); a modality whose
    weights are all 0 is the training mean (variance 1).
    """
    out = []
    calibration = model.calibration or [1.0] * len(model.names)
    for m, (mean, scale) in enumerate(zip(model.means, model.scales, strict=True)):
        std = np.full(view.n_samples, np.nan)
        rows = ~view.mask[:, m]
        used = np.flatnonzero(weights[:, m] > 0)
        if rows.any() and used.size:
            z = [(tasks[j].filled[m][rows].astype(np.float64) - mean) / scale for j in used]
            _, variance = ensemble_variance(z, [tasks[j].variance[m][rows] for j in used],
                                            weights[used, m] / weights[used, m].sum())
            std[rows] = np.sqrt(calibration[m] * variance)
        elif rows.any():
            std[rows] = np.sqrt(calibration[m])
        out.append(std)
    return out


# ------------------------------------------------------------- files output
def _block_rows(view: View) -> int:
    """Rows per transform block: a multiple of the chunk size, so chunks are unchanged."""
    row_bytes = max(1, sum(view.data.dims) * np.dtype(view.dtype).itemsize)
    per_block = max(1, TRANSFORM_BLOCK_BYTES // (row_bytes * view.chunk_rows))
    return int(view.chunk_rows * per_block)


def _block_view(view: View, rows: slice, engine: Engine):
    """One row block as a view of ``engine`` (its rows are read into this process)."""
    arrays = [a[rows] if isinstance(a, np.ndarray) else RowSubset(a, rows)
              for a in view.data.arrays]
    data = Multimodal(list(view.data.names), arrays, view.data.mask[rows])
    return engine.view(data, view.mean, view.scale, view.dtype, view.chunk_rows, view.n_threads)


def transform_to_files(
    view: View,
    model: FittedModel,
    engine: Engine,
    order: list[str],
    out_dir: str | os.PathLike,
    *,
    return_sources: bool = False,
    return_weights: bool = False,
    return_std: bool = False,
) -> Any:
    """Complete ``view`` block by block into ``out_dir/<modality>.npy``; return memory maps.

    With ``return_std`` each modality's predicted error (see :func:`complete`) is
    written to ``out_dir/<modality>.std.npy`` too, and returned last, memory-mapped.

    Each row block (a whole number of chunks, about 64 MiB of input) is completed
    exactly as an in-memory transform would complete it (completion is per
    sample), then appended to the files of an :class:`~ul4m4._utils.files.OutputFolder`,
    which replaces ``out_dir`` whole once every file is written: a failure or a
    kill leaves ``out_dir`` as it was, never a mix of old and new files.
    ``out_dir`` must be new, empty or an earlier output (``ValueError``
    otherwise). Memory stays O(block), plus the (n_samples, n_modalities)
    source and weight codes.

    Returns the same tuple as ``complete``, with the filled arrays as read-only
    ``np.memmap`` opened on the new files.
    """
    with output_folder(out_dir) as folder:
        filled = _write_files(view, model, engine, order, folder.path,
                              return_sources=return_sources, return_weights=return_weights,
                              return_std=return_std)
    directory = folder.target
    result = {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in order}
    if return_std:
        filled.append({name: np.load(directory / f"{name}.std.npy", mmap_mode="r")
                       for name in order})
    return (result, *filled) if filled else result


def _write_files(view: View, model: FittedModel, engine: Engine, order: list[str], directory: Path,
                 *, return_sources: bool, return_weights: bool,
                 return_std: bool = False) -> list[dict[str, np.ndarray]]:
    """Write the completed modalities (and with ``return_std`` their predicted errors)
    into ``directory``; return the wanted codes."""
    names = list(view.data.names)
    n = view.n_samples
    writers: dict[str, NpyWriter] = {}
    sources = {name: np.empty(n, dtype=np.int64) for name in order}
    weights = {name: np.empty(n) for name in order}
    try:
        for name in order:
            m = names.index(name)
            writers[name] = NpyWriter(directory / f"{name}.npy", (n, view.data.dims[m]),
                                      output_dtype(view.data.arrays[m].dtype))
            if return_std:
                writers[f"{name}.std"] = NpyWriter(directory / f"{name}.std.npy", (n,),
                                                   np.dtype(np.float64))
        local = local_engine(engine)  # each block is read into this process
        for rows in iter_row_chunks(n, _block_rows(view)):
            block = complete(_block_view(view, rows, local), model, local, order,
                             return_sources=return_sources, return_weights=return_weights,
                             return_std=return_std)
            filled, *extras = block if isinstance(block, tuple) else (block,)
            src = extras.pop(0) if return_sources else None
            w = extras.pop(0) if return_weights else None
            for name in order:
                writers[name].write(filled[name])
                if src is not None:
                    sources[name][rows] = src[name]
                if w is not None:
                    weights[name][rows] = w[name]
                if return_std:
                    writers[f"{name}.std"].write(extras[-1][name])
            logger.info("transform: %d of %d rows written", rows.stop, n)
        for writer in writers.values():
            writer.commit()
    except BaseException:
        for writer in writers.values():
            writer.abort()  # a no-op for the writers already committed
        raise
    return [d for d, wanted in ((sources, return_sources), (weights, return_weights)) if wanted]
