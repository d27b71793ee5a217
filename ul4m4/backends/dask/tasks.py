"""The per-block tasks: the NumPy engine's passes on one row block (run on the workers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ...centers import Centers
from ...engine import Candidates
from ...validation import Multimodal
from ...view import Standardized
from ..numpy_engine import NumpyEngine

__all__ = ["NUMPY", "Assigned", "HeldBlock", "apply_task", "e_step_task", "farthest_task",
           "hold_task", "seed_task", "take_task"]

NUMPY = NumpyEngine()


def hold_task(blocks, mask, names, means, scales, dtype, chunk_rows) -> HeldBlock:
    kept = np.flatnonzero(mask.any(axis=1))
    arrays = [np.asarray(b) for b in blocks]
    if kept.size < mask.shape[0]:
        arrays = [a[kept] for a in arrays]
    # Standardised once: the worker holds its block and one packed z-scored copy
    # (the observed rows only); passes read the copy.
    view = Standardized(Multimodal(list(names), arrays, mask[kept]), means, scales, dtype,
                        chunk_rows, cache_bytes=np.iinfo(np.int64).max).cached()
    return HeldBlock(mask.shape[0], kept, view)


@dataclass
class HeldBlock:
    """A block z-scored once and held by a worker: its samples with a modality."""

    n_rows: int
    kept: np.ndarray  # local indices of the rows with a modality
    view: Standardized

    def __sizeof__(self) -> int:
        # dask.sizeof falls back to sys.getsizeof: the scheduler must see the block's real
        # size, for its memory accounting and so that it never moves a block to small inputs.
        data = self.view.data
        return int(self.kept.nbytes + data.mask.nbytes + data.nbytes + self.view.cache_nbytes)


class Assigned(NamedTuple):
    """One block's E-step, in a store (or a task's result on the local scheduler).

    A store keeps the labels, adds the summaries into its nodes and sends the
    scalars. A tuple, so that ``dask.sizeof`` sees its real size.
    """

    labels: np.ndarray
    best: np.ndarray
    summary: tuple | None  # (sums, counts, members) as float64, with update_centers
    scalars: np.ndarray  # [inertia, changed labels (-1 without previous)]


def e_step_task(held: HeldBlock, previous: np.ndarray | None, centers: Centers,
                 rounding: float, update_centers: bool) -> Assigned:
    labels = np.full(held.n_rows, -1, dtype=np.int64)
    best = np.zeros(held.n_rows)
    k, widths = centers.k, [b.shape[1] for b in centers.blocks]
    summary = None
    if held.kept.size:
        step = NUMPY.e_step(held.view, centers, rounding, update_centers=update_centers)
        labels[held.kept], best[held.kept] = step.labels, step.best
        if update_centers:
            summary = (step.sums, step.counts, step.members.astype(np.float64))
    elif update_centers:
        summary = ([np.zeros((k, d)) for d in widths], np.zeros((k, len(widths))), np.zeros(k))
    changed = -1 if previous is None else int(np.count_nonzero(labels != previous))
    return Assigned(labels, best, summary, np.array([float(best.sum()), changed]))


def farthest_task(held: HeldBlock, labels: np.ndarray, centers: Centers, n: int):
    if not held.kept.size:
        widths = [b.shape[1] for b in centers.blocks]
        return Candidates(np.zeros(0), [np.zeros((0, d)) for d in widths],
                          np.zeros((0, len(widths)), dtype=bool))
    return NUMPY.farthest(held.view, centers, labels[held.kept], n)


def seed_task(held: HeldBlock, seed: Centers, rounding: float) -> np.ndarray:
    out = np.full(held.n_rows, np.inf)
    if held.kept.size:
        out[held.kept] = NUMPY.seed_distances(held.view, seed, rounding)
    return out


def take_task(held: HeldBlock, local: np.ndarray):
    return held.view.rows(np.searchsorted(held.kept, local))


def apply_task(blocks, mask, names, means, scales, dtype, chunk_rows, fn, start: int):
    data = Multimodal(list(names), [np.asarray(b) for b in blocks], mask)
    view = NUMPY.view(data, means, scales, dtype, chunk_rows)
    try:
        return fn(view, NUMPY)
    except ValueError as exc:
        stop = start + mask.shape[0]
        raise ValueError(f"rows {start}..{stop - 1} of X (row numbers below count from row "
                         f"{start}): {exc}") from exc
