"""The Dask engine and its view: NumPy passes mapped over row blocks, tree reductions,
and lazy outputs stitched from per-block results."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed

from ...centers import Centers
from ...engine import Candidates, EStep
from ...validation import Multimodal
from ...view import ViewFields
from .placement import (
    block_offsets,
    broadcast,
    current_client,
    hold_on,
    mask_blocks,
    row_blocks,
)
from .store import BlockLabels, StoredLabels, in_block_order, store_pass
from .tasks import (
    NUMPY,
    apply_task,
    e_step_task,
    farthest_task,
    hold_task,
    seed_task,
    take_task,
)
from .tree import add, delayed_sum, fold, pairwise_sum, root_size

__all__ = ["DaskEngine", "DaskView"]



@dataclass
class DaskView(ViewFields):
    """The z-scored view of a dask data set: blocks z-scored and held by workers on first use.

    The Dask implementation of :class:`ul4m4.engine.View` (its rows stay on the
    workers, so it is no :class:`~ul4m4.engine.HostView`: the drivers gather rows
    with :meth:`DaskEngine.take`, and ``apply`` hands each block over as a host view).
    """

    _held: tuple | None = None
    _passes: int = 0

    @property
    def offsets(self) -> np.ndarray:
        return block_offsets(self.data.arrays[0])

    def held_blocks(self, client: Any = None) -> list:
        """Per block, the z-scored samples, kept on the workers (made once per scheduler).

        Futures under a distributed ``client``, persisted delayed values otherwise.
        """
        if self._held is None or self._held[0] is not client:
            blocks = row_blocks(self.data.arrays)
            parts = [
                delayed(hold_task)(chunk, mask, self.data.names, self.mean, self.scale,
                                       self.dtype, self.chunk_rows)
                for chunk, mask in zip(blocks, mask_blocks(self.data), strict=True)
            ]
            if client is None:
                self._held = (None, list(dask.persist(*parts)), ())
            else:
                self._held = (client, *hold_on(client, parts, blocks, self.data.dims,
                                                       np.diff(self.offsets).tolist()))
        return self._held[1]

    def stores(self, client: Any) -> tuple:
        """The block stores, ``(future, actor, block indices)`` per worker holding blocks."""
        self.held_blocks(client)
        return self._held[2]

    def forget(self) -> None:
        """Drop the held blocks and their stores (a worker was lost): made again on use."""
        self._held = None

    def next_pass(self) -> int:
        self._passes += 1
        return self._passes


def _per_block(view: DaskView, fn: Callable, per_block: Mapping[int, tuple], *common) -> list:
    """``fn(held block i, *per_block[i], *common)`` for the listed blocks, in block order.

    Under a distributed client each store runs its blocks' calls in one call of
    its own; otherwise they are tasks on the local scheduler.
    """
    client = current_client()
    if client is not None:
        return in_block_order([
            actor.map(fn, {i: per_block[i] for i in indices if i in per_block}, *common)
            for _, actor, indices in view.stores(client)])
    held = view.held_blocks(None)
    common = tuple(broadcast(c, "shared") for c in common)
    tasks = [delayed(fn)(held[i], *per_block[i], *common) for i in sorted(per_block)]
    return list(dask.compute(*tasks, optimize_graph=False))


# ----------------------------------------------------------------- engine
class DaskEngine:
    """The ``backend="dask"`` engine: NumPy passes mapped over row blocks, tree reductions.

    Examples
    --------
    >>> DaskEngine().name
    'dask'
    """

    name = "dask"

    def __init__(self, device: Any = None) -> None:
        # None or "cpu": the estimator's parameter check (parameters.check_device) refuses
        # any other device for this backend.
        self.device = device

    #: The engine of rows gathered to the client (see :func:`ul4m4.engine.local_engine`).
    local_engine = NUMPY


    # data access
    def view(self, data: Multimodal, mean, scale, dtype: np.dtype, chunk_rows: int,
             n_threads: int = 1, cache_bytes: int = 0) -> DaskView:
        return DaskView(data, list(mean), list(scale), np.dtype(dtype), chunk_rows, n_threads)

    def take(self, view: DaskView, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        rows = np.asarray(rows, dtype=np.int64)
        offsets = view.offsets
        chunk_of = np.searchsorted(offsets, rows, side="right") - 1
        fetched = _per_block(view, take_task, {int(c): (rows[chunk_of == c] - offsets[c],)
                                                for c in np.unique(chunk_of)})
        widths = [len(m) for m in view.mean]
        if not fetched:
            return ([np.zeros((0, d), dtype=view.dtype) for d in widths],
                    np.zeros((0, len(widths)), dtype=bool))
        blocks = [np.concatenate([f[0][m] for f in fetched]) for m in range(len(widths))]
        return blocks, np.concatenate([f[1] for f in fetched])

    def apply(self, view: DaskView, fn: Callable[[Any, Any], Any]) -> Any:
        data = view.data
        offsets = view.offsets
        tasks = [
            delayed(apply_task)(blocks, mask, data.names, view.mean, view.scale, view.dtype,
                                 view.chunk_rows, fn, int(offsets[i]))
            for i, (blocks, mask) in enumerate(zip(row_blocks(data.arrays), mask_blocks(data),
                                                   strict=True))
        ]
        first = dask.compute(tasks[0])[0]
        rows = data.arrays[0].chunks[0]
        return _stitch(first, tasks, rows)

    # reductions
    def reduce_blocks(self, arrays: Sequence[Any], fn: Callable[..., Any], combine: Callable,
                      *aligned: np.ndarray, n_threads: int = 1) -> Any:
        """``fn`` on every row block (one task each, on one thread: the workers run the
        tasks side by side), combined along the pairwise tree, one task per node."""
        offsets = block_offsets(arrays[0])
        cuts = [[a[offsets[i]:offsets[i + 1]] for a in aligned]
                for i in range(offsets.size - 1)]
        parts = [delayed(fn)(blocks, *cut, n_threads=1)
                 for blocks, cut in zip(row_blocks(arrays), cuts, strict=True)]
        return dask.compute(pairwise_sum(parts, lambda a, b: delayed(combine)(a, b)))[0]

    # passes
    def e_step(self, view: DaskView, centers: Centers, rounding: float, *, update_centers: bool,
               previous: Any = None) -> EStep:
        """One pass over the blocks; the member sums are added along the pairwise tree.

        Under a distributed client each worker's block store runs the pass over
        its blocks in one call (the centres go straight to it), keeps the labels
        (the handle names the pass), and sends back one summary per node it
        completed; the client adds the nodes. Otherwise one task per block and
        one per node of the tree run as one ``dask.compute`` on the local scheduler.
        """
        client = current_client()
        n_blocks = len(view.offsets) - 1
        if client is not None:
            scalars, nodes, rows, labels = store_pass(view, client, centers, rounding,
                                                       update_centers, previous)
            total = (fold(0, root_size(n_blocks), n_blocks, lambda lo, size: nodes.get((lo, size)),
                           add) if update_centers else None)
        else:
            held = view.held_blocks(None)
            previous = previous or [None] * n_blocks
            shared = broadcast(centers, "centers")
            parts = [delayed(e_step_task)(chunk, before, shared, rounding, update_centers)
                     for chunk, before in zip(held, previous, strict=True)]
            tree = delayed_sum([p.summary for p in parts]) if update_centers else None
            found, total = dask.compute(parts, tree, optimize_graph=False)
            scalars = [f.scalars for f in found]
            labels = BlockLabels(f.labels for f in found)
            rows = [(f.labels, f.best) for f in found]
        scalars = np.asarray(scalars).reshape(-1, 2)
        # -1 marks a block not compared (no previous labels, or they were lost).
        changed = None if (scalars[:, 1] < 0).any() else int(scalars[:, 1].sum())
        step = EStep(labels, float(np.sum(scalars[:, 0])), changed)
        if not update_centers:
            step.labels = np.concatenate([r[0] for r in rows])
            step.best = np.concatenate([r[1] for r in rows])
            return step
        step.sums, step.counts, members = total
        step.members = members.astype(np.int64)
        return step

    def seed_distances(self, view: DaskView, seed: Centers, rounding: float) -> np.ndarray:
        parts = _per_block(view, seed_task, dict.fromkeys(range(len(view.offsets) - 1), ()),
                           seed, rounding)
        return np.concatenate(parts)

    def farthest(self, view: DaskView, centers: Centers, labels: Any, n: int) -> Candidates:
        if isinstance(labels, StoredLabels):
            parts = in_block_order([a.farthest(labels.pass_id, centers, n)
                                     for _, a, _ in labels.stores])
        else:
            parts = _per_block(view, farthest_task, {i: (b,) for i, b in enumerate(labels)},
                               centers, n)
        return Candidates.concatenate(parts)


def _stitch(first: Any, tasks: list[Delayed], rows: tuple[int, ...]) -> Any:
    """Lazy dask arrays of per-block results shaped like ``first`` (the first block's)."""

    def pick(value, path):
        for key in path:
            value = value[key]
        return value

    def build(template, path):
        if isinstance(template, tuple):
            return tuple(build(t, (*path, i)) for i, t in enumerate(template))
        if isinstance(template, dict):
            return {k: build(v, (*path, k)) for k, v in template.items()}
        pieces = [da.from_array(template, chunks=template.shape)]
        for task, r in zip(tasks[1:], rows[1:], strict=True):
            piece = delayed(pick)(task, path)
            pieces.append(da.from_delayed(piece, shape=(r, *template.shape[1:]),
                                          dtype=template.dtype))
        return da.concatenate(pieces, axis=0)

    return build(first, ())
