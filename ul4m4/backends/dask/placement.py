"""Where the work runs: the client, broadcast values, row blocks and their homes on the workers."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed

from ...validation import Multimodal
from .store import BlockStore

__all__ = ["block_homes", "block_offsets", "broadcast", "current_client", "mask_blocks",
           "hold_on", "row_blocks", "worker_threads"]


def current_client() -> Any:
    """The ``dask.distributed`` client dask computes on now, or None (a local scheduler)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:  # never imported: no client can exist
        return None
    client = getattr(dask.base.get_scheduler(), "__self__", None)
    return client if isinstance(client, distributed.Client) else None


def broadcast(value: Any, label: str) -> Delayed:
    """One graph key holding ``value``: a worker fetches it once, not once per task."""
    return delayed(value, name=f"ul4m4-{label}-{uuid.uuid4().hex}", traverse=False)


def row_blocks(arrays: Sequence[da.Array]) -> list[list[Delayed]]:
    """Per row block, the list of its per-modality blocks (delayed)."""
    per_modality = [a.to_delayed().ravel() for a in arrays]
    return [list(chunk) for chunk in zip(*per_modality, strict=True)]


def block_offsets(array: da.Array) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(array.chunks[0])]).astype(np.int64)


def mask_blocks(data: Multimodal) -> list[np.ndarray]:
    """The host availability mask cut at the row blocks of ``data``'s arrays."""
    offsets = block_offsets(data.arrays[0])
    return [data.mask[offsets[i]:offsets[i + 1]] for i in range(offsets.size - 1)]


def hold_on(client: Any, parts: list[Delayed], blocks: list[list[Delayed]],
                dims: Sequence[int], rows: Sequence[int]) -> tuple[list, tuple]:
    """Prepare the blocks on the workers :func:`block_homes` picks and start a store on each."""
    made = [client.compute(p, workers=home, allow_other_workers=home is not None)
            for p, home in zip(parts, block_homes(client, blocks, dims, rows), strict=True)]
    sys.modules["distributed"].wait(made)
    held = client.who_has(made)
    by_worker: dict[str, list[int]] = {}
    for i, future in enumerate(made):
        holders = sorted(held.get(future.key, ()))
        if not holders:
            raise RuntimeError("a worker left while the blocks were z-scored; fit again")
        by_worker.setdefault(holders[0], []).append(i)
    threads = worker_threads(client)
    futures = [client.submit(BlockStore, indices, len(made), threads.get(worker, 1),
                             *[made[i] for i in indices], workers=[worker],
                             allow_other_workers=False, actor=True, pure=False)
               for worker, indices in by_worker.items()]
    return made, tuple((future, future.result(), indices)
                       for future, indices in zip(futures, by_worker.values(), strict=True))


def worker_threads(client: Any) -> dict[str, int]:
    """Threads per worker address of the ``client``'s cluster."""
    return {w: info.get("nthreads", 1) or 1
            for w, info in client.scheduler_info()["workers"].items()}


def block_homes(client: Any, blocks: list[list[Delayed]], dims: Sequence[int],
           rows: Sequence[int]) -> list:
    """Per row block, the worker to hold it: a run of consecutive blocks per worker.

    Each worker gets one run of consecutive blocks, with a share of the rows equal
    to its share of the threads, so that the passes are balanced and its store
    sums a few large nodes of the pairwise tree. Run by run, in block order, the
    worker that already holds the most of the run's rows (of the widest
    modality) takes it, so that data which sits in runs (as dask places the
    chunks it computes) moves little; the rest moves once, here.
    """
    widest = int(np.argmax(dims))
    keys = [chunk[widest].key for chunk in blocks]
    futures = [sys.modules["distributed"].Future(key, client) for key in keys]
    held = client.who_has(futures)
    threads = worker_threads(client)
    if not threads:
        return [list(held.get(key, ()))[:1] or None for key in keys]
    rows = np.asarray(rows, dtype=np.float64)
    middles = np.cumsum(rows) - rows / 2
    share = rows.sum() / sum(threads.values())
    homes: list = []
    start, reached = 0, 0.0
    remaining = sorted(threads)
    while remaining:
        best = None
        for worker in remaining:
            end = reached + share * threads[worker]
            stop = len(keys) if len(remaining) == 1 else int(np.searchsorted(middles, end))
            there = sum(rows[i] for i in range(start, stop) if worker in held.get(keys[i], ()))
            if best is None or there > best[0]:
                best = (there, worker, stop, end)
        _, worker, stop, reached = best
        homes += [[worker]] * (stop - start)
        start = stop
        remaining.remove(worker)
    return homes
