"""The worker-side block stores (dask actors), the labels they keep, and a pass run by them.

A pass whose worker is lost is repeated on the blocks z-scored and held again (:func:`store_pass`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...centers import Centers
from ...engine import Candidates
from .tasks import HeldBlock, e_step_task, farthest_task
from .tree import add_into, node_sum, owned_nodes

if TYPE_CHECKING:
    from .engine import DaskView

__all__ = ["LOSS_WAIT_SECONDS", "BlockLabels", "BlockStore", "StoredLabels", "in_block_order",
           "store_pass", "worker_lost"]

#: Seconds to wait for the scheduler to report a store's worker lost, after a failed call.
LOSS_WAIT_SECONDS = 10.0
logger = logging.getLogger("ul4m4")


class BlockStore:
    """A worker's held blocks and the labels of its latest passes: a dask actor.

    One store per worker runs every pass over that worker's blocks in one call
    (its threads share the blocks), keeps the labels where they were computed,
    and sums the member sums of each of its largest complete nodes of the
    pairwise tree (:func:`owned_nodes`), so a pass sends the client one summary
    per node instead of one per block, with the bits of any other placement.
    """

    #: Passes whose labels a store keeps: the latest, and the one before (its ``previous``).
    KEPT_PASSES = 2

    def __init__(self, indices: Sequence[int], n_blocks: int, n_threads: int,
                 *held: HeldBlock) -> None:
        self.indices = list(indices)
        self.held = dict(zip(self.indices, held, strict=True))
        self.n_blocks = n_blocks
        self.n_threads = max(1, int(n_threads))
        self.nodes = owned_nodes(self.indices, n_blocks)
        # With fewer blocks than threads, a block's pass spreads its chunks over its
        # share of the threads.
        for block in held:
            block.view.n_threads = max(1, self.n_threads // len(self.indices))
        self.passes: dict[int, dict[int, np.ndarray]] = {}

    def _map(self, fn: Callable[[int], Any], indices: Sequence[int] | None = None
             ) -> dict[int, Any]:
        """``fn(i)`` for the blocks ``indices`` (all of this store's), on its threads."""
        indices = self.indices if indices is None else sorted(indices)
        if self.n_threads == 1 or len(indices) <= 1:
            return {i: fn(i) for i in indices}
        with ThreadPoolExecutor(min(self.n_threads, len(indices))) as pool:
            return dict(zip(indices, pool.map(fn, indices), strict=True))

    def labels(self, pass_id: int) -> dict[int, np.ndarray]:
        """Per block index, the labels of pass ``pass_id``."""
        if pass_id not in self.passes:
            raise LookupError(f"the labels of pass {pass_id} are no longer kept (only the "
                              f"latest {self.KEPT_PASSES} passes are)")
        return self.passes[pass_id]

    def e_step(self, pass_id: int, previous: int | None, centers: Centers, rounding: float,
               update_centers: bool) -> tuple[dict, dict, dict | None]:
        """Per block scalars; node summaries (update) or per block (labels, best)."""
        before = None if previous is None else self.labels(previous)
        steps = self._map(lambda i: e_step_task(
            self.held[i], None if before is None else before[i], centers, rounding,
            update_centers))
        scalars = {i: a.scalars for i, a in steps.items()}
        nodes, rows = {}, None
        if update_centers:
            self.passes[pass_id] = {i: a.labels for i, a in steps.items()}
            for old in sorted(self.passes)[:-self.KEPT_PASSES]:
                del self.passes[old]
            leaves = {i: a.summary for i, a in steps.items()}
            nodes = {node: node_sum(*node, self.n_blocks, leaves, add_into)
                     for node in self.nodes}
        else:
            rows = {i: (a.labels, a.best) for i, a in steps.items()}
        return scalars, nodes, rows

    def map(self, fn: Callable, per_block: Mapping[int, tuple], *common) -> dict[int, Any]:
        """``fn(held block i, *per_block[i], *common)`` for the blocks listed, by index."""
        return self._map(lambda i: fn(self.held[i], *per_block[i], *common), per_block)

    def farthest(self, pass_id: int, centers: Centers, n: int) -> dict[int, Candidates]:
        """Per block index, its ``n`` samples farthest from their centres in pass ``pass_id``."""
        labels = self.labels(pass_id)
        return self.map(farthest_task, {i: (labels[i],) for i in labels}, centers, n)


@dataclass(frozen=True)
class StoredLabels:
    """The labels handle of a pass run by block stores: the labels stay on the workers."""

    stores: tuple
    pass_id: int

    def fetch(self) -> np.ndarray:
        blocks = in_block_order([a.labels(self.pass_id) for _, a, _ in self.stores])
        return np.concatenate(blocks).astype(np.int64)


class BlockLabels(list):
    """The labels handle of a pass on the local scheduler: per block, its labels."""

    def fetch(self) -> np.ndarray:
        return np.concatenate(self).astype(np.int64)


def store_pass(view: DaskView, client: Any, centers: Centers, rounding: float,
                update_centers: bool, previous: StoredLabels | None):
    """One pass run by the view's block stores: (scalars, nodes, rows, labels handle).

    ``scalars`` and ``rows`` (per block (labels, best), without ``update_centers``)
    come in block order; ``nodes`` maps the stores' tree nodes to their summaries.
    When a store's worker is lost, the blocks are z-scored and held again on the workers
    left and the pass is repeated, without the comparison with ``previous``
    (those labels are gone: the changed count is then -1 per block).
    """
    stores = view.stores(client)
    pass_id = view.next_pass()
    before = None if previous is None or previous.stores is not stores else previous.pass_id
    try:
        calls = [actor.e_step(pass_id, before, centers, rounding, update_centers)
                 for _, actor, _ in stores]
        found = [call.result() for call in calls]
    except (OSError, RuntimeError) as exc:  # a closed comm, or "Worker holding Actor was lost"
        if not worker_lost(stores):
            raise
        logger.warning("a worker holding row blocks was lost (%s); z-scoring its blocks again "
                       "and repeating the pass", exc)
        view.forget()
        return store_pass(view, client, centers, rounding, update_centers, None)
    nodes = {node: value for f in found for node, value in f[1].items()}
    rows = None if update_centers else in_block_order([f[2] for f in found])
    return (in_block_order([f[0] for f in found]), nodes, rows,
            StoredLabels(stores, pass_id))


def worker_lost(stores: tuple, wait: float = LOSS_WAIT_SECONDS) -> bool:
    """Whether the worker of one of ``stores`` left the cluster (given ``wait`` s to tell)."""
    deadline = time.monotonic() + wait
    while True:
        if any(future.status not in ("finished", "pending") for future, _, _ in stores):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def in_block_order(results: list[Any]) -> list:
    """Per-block values from the stores (futures of dicts by block index), in block order."""
    merged: dict[int, Any] = {}
    for result in results:
        merged.update(result if isinstance(result, dict) else result.result())
    return [merged[i] for i in sorted(merged)]
