"""Dask backend: fit and transform on ``dask.array`` inputs chunked by rows.

``UL4M4Imputer(backend="dask")`` runs the drivers of :mod:`ul4m4.model` (the
same as every backend) on :class:`DaskEngine`, which implements the engine
protocol of :mod:`ul4m4.engine` over a row-chunked ``dask.array`` data set: each
pass maps the NumPy engine's pass over the row blocks and adds the results
along one fixed pairwise tree, on whatever scheduler dask is using (a ``dask.distributed`` cluster
when a ``Client`` is active, otherwise the local threaded scheduler). Every
option runs: ``n_clusters="auto"``, ``completion="auto"``, ``algorithm=
"minibatch"``, ``n_ensemble``, ``n_init``, explicit ``init``.

Running on a cluster
--------------------
Start a client before fitting; every computation below then runs on its workers::

    from dask.distributed import Client
    import dask.array as da
    from ul4m4 import UL4M4Imputer

    client = Client("tcp://scheduler:8786")          # or Client() for a local cluster
    X = {"text": da.from_zarr("text.zarr"),          # (n, 384), chunks (100_000, 384)
         "image": da.from_zarr("image.zarr")}        # (n, 1280), same row chunks
    imp = UL4M4Imputer(n_clusters=64, random_state=0, backend="dask").fit(X)
    filled = imp.transform(X)                        # dict of lazy dask arrays
    filled = dask.compute(filled)[0]                 # or write them with da.to_zarr
    imp.save("model.ul4m4")                          # fitted attributes are NumPy

Compute the outputs of one ``transform`` together (one ``dask.compute`` or
``da.store`` call): every row chunk is completed once for all modalities, and
computing them one at a time repeats that work.

Input
-----
``X`` is a mapping (or list) of 2-D arrays with the same number of rows; dask
arrays are used as they are, anything else is wrapped with ``da.from_array``
in chunks of about 64 MiB. Row chunks must be aligned across modalities: when
they are not, every modality is rechunked to the row chunks of the first one
and a ``UserWarning`` says so. Column chunks are always merged. Chunk sizes
must be known (call ``compute_chunk_sizes()`` after boolean indexing).

Design
------
* The input check is one pass (the NaN/inf scan of :func:`ul4m4.validation.scan_block`
  on every block; the (n, M) availability mask comes back to the client).
* Statistics, the overflow check and every Lloyd E-step map the NumPy code over
  the blocks; float64 partial sums are added along the pairwise tree over the
  blocks (aligned power-of-two runs, :func:`_fold`), wherever its nodes are
  computed, so sums depend on the row chunks only, never on the workers.
* Each block is z-scored once and kept on a worker for the whole fit, in the
  working dtype, as one packed copy (each modality's observed rows only; passes
  read it in place). Each worker gets one run of consecutive blocks with its
  share of the rows by threads, the run it already holds most of: data sitting
  in runs (as dask places the chunks it computes) moves little, the rest moves
  once, at preparation.
* Under a ``dask.distributed`` client each worker then starts a block store (a
  dask actor, :class:`_BlockStore`) over its blocks. A Lloyd E-step is one call
  per store, sent straight to the worker with the centres (no task, no
  scheduler round trip): the store runs the NumPy pass on its blocks (on its
  threads), keeps the labels (the labels handle names the pass; stores keep
  the latest two), adds the member sums of each complete tree node it holds
  (one or a few per run of blocks), and sends back those summaries
  (``k * (D + M + 1)`` float64 each) and two scalars per block; the client adds
  the nodes. Every other use of the prepared blocks (reseeding, the final
  labels, gathering rows, distances to a seed) is a store call too. When a
  worker is lost during a pass, the blocks are prepared again on the workers
  left (dask recomputes lost input from its graph) and the pass is repeated,
  with a warning; that pass cannot count changed labels, so Lloyd runs on.
  Labels are lost only if a worker goes between a pass and their use in the
  same iteration (reseeding, the final labels): that call fails.
* Without a client a pass is one task per block and one per tree node, run as
  one ``dask.compute`` (``optimize_graph=False``) on the local scheduler.
* Reseeding: every block proposes its farthest samples; the client picks.
* k-means++ runs on a uniform sample gathered to the client (the whole data
  when it fits in 256 MiB as float64, and then the seeds are those of the NumPy
  backend); mini-batch steps gather their batch rows.
* ``transform``/``predict`` map the NumPy completion over the row blocks and
  return lazy dask arrays with the input's row chunks (the first block is
  computed at once, to learn the output's structure).

Results: one row chunk gives the NumPy backend's results bit for bit; several
row chunks add statistics and member sums block by block (along the pairwise
tree) instead of row by row, the same bits on any cluster and on the local
scheduler, which differs from the NumPy backend by float64 rounding (about 1e-15
relative), so labels, selections and outputs agree unless a sample sits within
that rounding of a tie.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed

from ..blocks import PackedBlocks
from ..centers import Centers
from ..engine import Candidates, EStep, Identity
from ..inputs import check_2d, named_values
from ..plan import PatternTerms
from ..rowsums import sequential_sums
from ..statistics import (
    check_finite_statistics,
    check_float32_range,
    column_extremes,
    largest_centred,
)
from ..validation import (
    Multimodal,
    check_no_empty_samples,
    check_shapes,
    match_names,
    raise_bad_rows,
    scan_block,
)
from ..view import Standardized
from .numpy_engine import NumpyEngine

__all__ = ["STORE_STATS", "DaskEngine", "DaskView", "StoreStats", "as_row_chunks"]

#: Bytes (as float64) of the sample that k-means++ gathers to the client.
SEED_SAMPLE_BYTES = 256 * 2**20
#: The seeding sample holds at least this many rows per centre.
SEED_ROWS_PER_CLUSTER = 64
#: Seconds to wait for the scheduler to report a store's worker lost, after a failed call.
LOSS_WAIT_SECONDS = 10.0
#: Bytes per row chunk when a non-dask input is wrapped.
WRAP_BYTES = 64 * 2**20

_NUMPY = NumpyEngine()
logger = logging.getLogger("ul4m4")


# ------------------------------------------------------------------ input
def as_row_chunks(X: Any, *, names: list[str] | None = None,
                  dims: Mapping[str, int] | None = None) -> tuple[list[str], list[da.Array]]:
    """Validate the shape of a multimodal input and align its row chunks (values unread)."""
    got, values = named_values(X)
    if names is not None:
        got, values = match_names(got, values, list(names), isinstance(X, Mapping))
    arrays = [_as_dask(name, v) for name, v in zip(got, values, strict=True)]
    check_shapes(got, arrays, dims)
    return got, _align_rows(got, arrays)


def _as_dask(name: str, value: Any) -> da.Array:
    if not isinstance(value, da.Array):
        value = np.asarray(value) if not hasattr(value, "shape") else value
        width = value.shape[1] if len(value.shape) == 2 else 1
        rows = max(1, WRAP_BYTES // (8 * max(1, width)))
        value = da.from_array(value, chunks=(rows, -1), name=False)
    check_2d(name, value.shape)
    if any(math.isnan(c) for c in value.chunks[0]) or math.isnan(value.shape[0]):
        raise ValueError(
            f"modality {name!r}: unknown row chunk sizes; call compute_chunk_sizes() first"
        )
    dtype = np.dtype(value.dtype)
    if dtype.kind not in "fiu":
        raise TypeError(
            f"modality {name!r}: expected a real numeric dtype (float or int), got {dtype}"
        )
    if value.shape[1] < 1:
        raise ValueError(f"modality {name!r}: has zero features")
    if len(value.chunks[1]) > 1:
        # A task needs whole rows of every modality; merging columns is cheap.
        value = value.rechunk({1: -1})
    return value


def _align_rows(names: list[str], arrays: list[da.Array]) -> list[da.Array]:
    reference = arrays[0].chunks[0]
    misaligned = [n for n, a in zip(names, arrays, strict=True) if a.chunks[0] != reference]
    if not misaligned:
        return arrays
    warnings.warn(
        f"modalities {misaligned} have row chunks that differ from those of {names[0]!r}; "
        f"rechunking them to the row chunks of {names[0]!r} (chunk every modality the same "
        "way to avoid this copy)",
        UserWarning,
        stacklevel=3,
    )
    return [a if a.chunks[0] == reference else a.rechunk({0: reference}) for a in arrays]


# ------------------------------------------------------------- reductions
def _add(left: Any, right: Any, *, into: bool = False) -> Any:
    """``left + right`` for equally shaped nested tuples/lists of arrays.

    With ``into``, ``right`` is added into ``left``'s arrays (the caller owns
    them): a pass then allocates no new (k, d) sums per node, which matters on
    workers whose allocator hands every large block back to the system.
    """
    if isinstance(left, tuple | list):
        return type(left)(_add(a, b, into=into) for a, b in zip(left, right, strict=True))
    if into:
        left += right
        return left
    return left + right


def _add_into(left: Any, right: Any) -> Any:
    """``right`` added into ``left`` (owned by the caller), which is returned."""
    return _add(left, right, into=True)


def _fold(lo: int, size: int, n: int, value_of: Callable[[int, int], Any],
          combine: Callable[[Any, Any], Any]) -> Any:
    """The value of node ``(lo, size)`` of the pairwise tree over ``n`` per-block parts.

    The tree's nodes are the aligned power-of-two runs of blocks ``[lo, lo +
    size)`` (cut at ``n``); a node is its left child plus its right one (or its
    left one alone past ``n``). ``value_of(lo, size)`` gives a node's value when
    it is known (every leaf must be), None otherwise. Every sum over blocks uses
    this one association, wherever its nodes are computed, so results depend on
    the row chunks only, never on the workers or the scheduling.
    """
    known = value_of(lo, size)
    if known is not None:
        return known
    half = size // 2
    left = _fold(lo, half, n, value_of, combine)
    if lo + half >= n:
        return left
    return combine(left, _fold(lo + half, half, n, value_of, combine))


def _root(n: int) -> int:
    """The size of the pairwise tree's root over ``n`` parts."""
    return 1 << max(0, (n - 1).bit_length())


def _node_sum(lo: int, size: int, n: int, leaves: Sequence[Any] | Mapping[int, Any],
              add: Callable[[Any, Any], Any]) -> Any:
    """Node ``(lo, size)`` of the pairwise tree over ``n`` blocks, from its blocks' ``leaves``."""
    return _fold(lo, size, n, lambda at, width: leaves[at] if width == 1 else None, add)


def _pairwise_sum(parts: list[Any], add: Callable[[Any, Any], Any] = _add) -> Any:
    """``parts`` summed along the pairwise tree (delayed parts give a delayed sum)."""
    return _node_sum(0, _root(len(parts)), len(parts), parts, add)


def _delayed_sum(parts: list[Delayed]) -> Delayed:
    """Per-block partial results summed along the pairwise tree, one task per node."""
    return _pairwise_sum(parts, lambda left, right: delayed(_add)(left, right))


def _owned_nodes(held: Sequence[int], n: int) -> list[tuple[int, int]]:
    """The largest nodes of the pairwise tree over ``n`` blocks whose blocks are all ``held``."""
    held = set(held)
    found = []

    def visit(lo: int, size: int) -> None:
        if all(i in held for i in range(lo, min(lo + size, n))):
            found.append((lo, size))
        elif size > 1:
            visit(lo, size // 2)
            if lo + size // 2 < n:
                visit(lo + size // 2, size // 2)

    visit(0, _root(n))
    return found


def _client() -> Any:
    """The ``dask.distributed`` client dask computes on now, or None (a local scheduler)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:  # never imported: no client can exist
        return None
    client = getattr(dask.base.get_scheduler(), "__self__", None)
    return client if isinstance(client, distributed.Client) else None


def _broadcast(value: Any, label: str) -> Delayed:
    """One graph key holding ``value``: a worker fetches it once, not once per task."""
    return delayed(value, name=f"ul4m4-{label}-{uuid.uuid4().hex}", traverse=False)


def _blocks(arrays: Sequence[da.Array]) -> list[list[Delayed]]:
    """Per row block, the list of its per-modality blocks (delayed)."""
    per_modality = [a.to_delayed().ravel() for a in arrays]
    return [list(chunk) for chunk in zip(*per_modality, strict=True)]


def _offsets(array: da.Array) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(array.chunks[0])]).astype(np.int64)


def _mask_blocks(data: Multimodal) -> list[np.ndarray]:
    """The host availability mask cut at the row blocks of ``data``'s arrays."""
    offsets = _offsets(data.arrays[0])
    return [data.mask[offsets[i]:offsets[i + 1]] for i in range(offsets.size - 1)]


# ------------------------------------------------------------ block tasks
def _scan_task(blocks: list[np.ndarray], partial: str = "raise"):
    found = [scan_block(np.asarray(b), partial) for b in blocks]
    return np.column_stack([f[0] for f in found]), [f[1] for f in found], [f[2] for f in found]


def _sums_task(blocks: list[np.ndarray], mask: np.ndarray):
    sums = [sequential_sums(np.zeros((1, b.shape[1])), np.zeros(b.shape[0], dtype=np.int64),
                            b, rows=mask[:, m]) for m, b in enumerate(blocks)]
    return sums, mask.sum(axis=0).astype(np.float64)


def _squares_task(blocks: list[np.ndarray], mask: np.ndarray, means: list[np.ndarray]):
    squares = []
    for m, (block, mean) in enumerate(zip(blocks, means, strict=True)):
        deviation = block[mask[:, m]].astype(np.float64) - mean
        squares.append(sequential_sums(np.zeros((1, block.shape[1])),
                                       np.zeros(deviation.shape[0], dtype=np.int64),
                                       deviation * deviation))
    return squares


def _extremes_task(blocks: list[np.ndarray]):
    return [column_extremes(b, max(1, b.shape[0])) for b in blocks]


def _prepare_task(blocks, mask, names, means, scales, dtype, chunk_rows) -> _Prepared:
    kept = np.flatnonzero(mask.any(axis=1))
    arrays = [np.asarray(b) for b in blocks]
    if kept.size < mask.shape[0]:
        arrays = [a[kept] for a in arrays]
    # Standardised once: the worker holds its block and one packed z-scored copy
    # (the observed rows only); passes read the copy.
    view = Standardized(Multimodal(list(names), arrays, mask[kept]), means, scales, dtype,
                        chunk_rows, cache_bytes=np.iinfo(np.int64).max).cached()
    return _Prepared(mask.shape[0], kept, view)


@dataclass
class _Prepared:
    """A block z-scored once and held by a worker: its samples with a modality."""

    n_rows: int
    kept: np.ndarray  # local indices of the rows with a modality
    view: Standardized

    def __sizeof__(self) -> int:
        # dask.sizeof falls back to sys.getsizeof: the scheduler must see the block's real
        # size, for its memory accounting and so that it never moves a block to small inputs.
        data = self.view.data
        return int(self.kept.nbytes + data.mask.nbytes + data.nbytes + self.view.cache_nbytes)


class _Assigned(NamedTuple):
    """One block's E-step, in a store (or a task's result on the local scheduler).

    A store keeps the labels, adds the summaries into its nodes and sends the
    scalars. A tuple, so that ``dask.sizeof`` sees its real size.
    """

    labels: np.ndarray
    best: np.ndarray
    summary: tuple | None  # (sums, counts, members) as float64, with update_centers
    scalars: np.ndarray  # [inertia, changed labels (-1 without previous)]


def _e_step_task(prepared: _Prepared, previous: np.ndarray | None, centers: Centers,
                 gamma: float, update_centers: bool) -> _Assigned:
    labels = np.full(prepared.n_rows, -1, dtype=np.int64)
    best = np.zeros(prepared.n_rows)
    k, widths = centers.k, [b.shape[1] for b in centers.blocks]
    summary = None
    if prepared.kept.size:
        step = _NUMPY.e_step(prepared.view, centers, gamma, update_centers=update_centers)
        labels[prepared.kept], best[prepared.kept] = step.labels, step.best
        if update_centers:
            summary = (step.sums, step.counts, step.members.astype(np.float64))
    elif update_centers:
        summary = ([np.zeros((k, d)) for d in widths], np.zeros((k, len(widths))), np.zeros(k))
    changed = -1 if previous is None else int(np.count_nonzero(labels != previous))
    return _Assigned(labels, best, summary, np.array([float(best.sum()), changed]))


@dataclass
class StoreStats:
    """What the block stores of one worker process did (read there by the benchmarks)."""

    passes: int = 0
    seconds: float = 0.0  # spent inside the stores' passes
    summaries: int = 0  # node summaries sent back
    summary_bytes: int = 0


#: The block stores' totals in this process (each worker has its own).
STORE_STATS = StoreStats()


class _BlockStore:
    """A worker's prepared blocks and the labels of its latest passes: a dask actor.

    One store per worker runs every pass over that worker's blocks in one call
    (its threads share the blocks), keeps the labels where they were computed,
    and sums the member sums of each of its largest complete nodes of the
    pairwise tree (:func:`_owned_nodes`), so a pass sends the client one summary
    per node instead of one per block, with the bits of any other placement.
    """

    #: Passes whose labels a store keeps: the latest, and the one before (its ``previous``).
    KEPT_PASSES = 2

    def __init__(self, indices: Sequence[int], n_blocks: int, n_threads: int,
                 *prepared: _Prepared) -> None:
        self.indices = list(indices)
        self.prepared = dict(zip(self.indices, prepared, strict=True))
        self.n_blocks = n_blocks
        self.n_threads = max(1, int(n_threads))
        self.nodes = _owned_nodes(self.indices, n_blocks)
        # With fewer blocks than threads, a block's pass spreads its chunks over its
        # share of the threads.
        for block in prepared:
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

    def e_step(self, pass_id: int, previous: int | None, centers: Centers, gamma: float,
               update_centers: bool) -> tuple[dict, dict, dict | None]:
        """Per block scalars; node summaries (update) or per block (labels, best)."""
        start = time.perf_counter()
        before = None if previous is None else self.labels(previous)
        steps = self._map(lambda i: _e_step_task(
            self.prepared[i], None if before is None else before[i], centers, gamma,
            update_centers))
        scalars = {i: a.scalars for i, a in steps.items()}
        nodes, rows = {}, None
        if update_centers:
            self.passes[pass_id] = {i: a.labels for i, a in steps.items()}
            for old in sorted(self.passes)[:-self.KEPT_PASSES]:
                del self.passes[old]
            leaves = {i: a.summary for i, a in steps.items()}
            nodes = {node: _node_sum(*node, self.n_blocks, leaves, _add_into)
                     for node in self.nodes}
        else:
            rows = {i: (a.labels, a.best) for i, a in steps.items()}
        STORE_STATS.passes += 1
        STORE_STATS.seconds += time.perf_counter() - start
        STORE_STATS.summaries += len(nodes)
        STORE_STATS.summary_bytes += sum(dask.sizeof.sizeof(v) for v in nodes.values())
        return scalars, nodes, rows

    def map(self, fn: Callable, per_block: Mapping[int, tuple], *common) -> dict[int, Any]:
        """``fn(prepared block i, *per_block[i], *common)`` for the blocks listed, by index."""
        return self._map(lambda i: fn(self.prepared[i], *per_block[i], *common), per_block)

    def farthest(self, pass_id: int, centers: Centers, n: int) -> dict[int, Candidates]:
        """Per block index, its ``n`` samples farthest from their centres in pass ``pass_id``."""
        labels = self.labels(pass_id)
        return self.map(_farthest_task, {i: (labels[i],) for i in labels}, centers, n)


@dataclass(frozen=True)
class _StoredLabels:
    """The labels handle of a pass run by block stores: the labels stay on the workers."""

    stores: tuple
    pass_id: int


def _farthest_task(prepared: _Prepared, labels: np.ndarray, centers: Centers, n: int):
    if not prepared.kept.size:
        widths = [b.shape[1] for b in centers.blocks]
        return Candidates(np.zeros(0), [np.zeros((0, d)) for d in widths],
                          np.zeros((0, len(widths)), dtype=bool))
    return _NUMPY.farthest(prepared.view, centers, labels[prepared.kept], n)


def _seed_task(prepared: _Prepared, seed: Centers, gamma: float) -> np.ndarray:
    out = np.full(prepared.n_rows, np.inf)
    if prepared.kept.size:
        out[prepared.kept] = _NUMPY.seed_distances(prepared.view, seed, gamma)
    return out


def _take_task(prepared: _Prepared, local: np.ndarray):
    return prepared.view.rows(np.searchsorted(prepared.kept, local))


def _apply_task(blocks, mask, names, means, scales, dtype, chunk_rows, fn, start: int):
    data = Multimodal(list(names), [np.asarray(b) for b in blocks], mask)
    view = _NUMPY.view(data, means, scales, dtype, chunk_rows)
    try:
        return fn(view, _NUMPY)
    except ValueError as exc:
        stop = start + mask.shape[0]
        raise ValueError(f"rows {start}..{stop - 1} of X (row numbers below count from row "
                         f"{start}): {exc}") from exc


# ------------------------------------------------------------------- view
@dataclass
class DaskView:
    """The z-scored view of a dask data set: blocks prepared on the workers on first use."""

    data: Multimodal
    mean: list[np.ndarray]
    scale: list[np.ndarray]
    dtype: np.dtype
    chunk_rows: int
    n_threads: int = 1
    _prepared: tuple | None = None
    _passes: int = 0

    @property
    def n_samples(self) -> int:
        return self.data.n_samples

    @property
    def mask(self) -> np.ndarray:
        return self.data.mask

    @property
    def offsets(self) -> np.ndarray:
        return _offsets(self.data.arrays[0])

    def prepared(self, client: Any = None) -> list:
        """Per block, the z-scored samples, kept on the workers (made once per scheduler).

        Futures under a distributed ``client``, persisted delayed values otherwise.
        """
        if self._prepared is None or self._prepared[0] is not client:
            blocks = _blocks(self.data.arrays)
            parts = [
                delayed(_prepare_task)(chunk, mask, self.data.names, self.mean, self.scale,
                                       self.dtype, self.chunk_rows)
                for chunk, mask in zip(blocks, _mask_blocks(self.data), strict=True)
            ]
            if client is None:
                self._prepared = (None, list(dask.persist(*parts)), ())
            else:
                self._prepared = (client, *_prepare_on(client, parts, blocks, self.data.dims,
                                                       np.diff(self.offsets).tolist()))
        return self._prepared[1]

    def stores(self, client: Any) -> tuple:
        """The block stores, ``(future, actor, block indices)`` per worker holding blocks."""
        self.prepared(client)
        return self._prepared[2]

    def forget(self) -> None:
        """Drop the prepared blocks and their stores (a worker was lost): made again on use."""
        self._prepared = None

    def next_pass(self) -> int:
        self._passes += 1
        return self._passes


def _prepare_on(client: Any, parts: list[Delayed], blocks: list[list[Delayed]],
                dims: Sequence[int], rows: Sequence[int]) -> tuple[list, tuple]:
    """Prepare the blocks on the workers :func:`_homes` picks and start a store on each."""
    made = [client.compute(p, workers=home, allow_other_workers=home is not None)
            for p, home in zip(parts, _homes(client, blocks, dims, rows), strict=True)]
    sys.modules["distributed"].wait(made)
    held = client.who_has(made)
    by_worker: dict[str, list[int]] = {}
    for i, future in enumerate(made):
        holders = sorted(held.get(future.key, ()))
        if not holders:
            raise RuntimeError("a worker left while the blocks were prepared; fit again")
        by_worker.setdefault(holders[0], []).append(i)
    threads = _worker_threads(client)
    futures = [client.submit(_BlockStore, indices, len(made), threads.get(worker, 1),
                             *[made[i] for i in indices], workers=[worker],
                             allow_other_workers=False, actor=True, pure=False)
               for worker, indices in by_worker.items()]
    return made, tuple((future, future.result(), indices)
                       for future, indices in zip(futures, by_worker.values(), strict=True))


def _worker_threads(client: Any) -> dict[str, int]:
    """Threads per worker address of the ``client``'s cluster."""
    return {w: info.get("nthreads", 1) or 1
            for w, info in client.scheduler_info()["workers"].items()}


def _homes(client: Any, blocks: list[list[Delayed]], dims: Sequence[int],
           rows: Sequence[int]) -> list:
    """Per row block, the worker to prepare it on: a run of consecutive blocks per worker.

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
    threads = _worker_threads(client)
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


def _per_block(view: DaskView, fn: Callable, per_block: Mapping[int, tuple], *common) -> list:
    """``fn(prepared block i, *per_block[i], *common)`` for the listed blocks, in block order.

    Under a distributed client each store runs its blocks' calls in one call of
    its own; otherwise they are tasks on the local scheduler.
    """
    client = _client()
    if client is not None:
        return _in_block_order([
            actor.map(fn, {i: per_block[i] for i in indices if i in per_block}, *common)
            for _, actor, indices in view.stores(client)])
    prepared = view.prepared(None)
    common = tuple(_broadcast(c, "shared") for c in common)
    tasks = [delayed(fn)(prepared[i], *per_block[i], *common) for i in sorted(per_block)]
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
        if device is not None and str(device) != "cpu":
            raise ValueError(f"device={str(device)!r} needs backend='torch'; backend='dask' "
                             "runs the NumPy engine on the workers' CPUs")
        self.device = device

    @property
    def host(self) -> NumpyEngine:
        return _NUMPY

    def error_factor(self, dims: Sequence[int], dtype: np.dtype) -> float:
        return _NUMPY.error_factor(dims, dtype)

    def to_host(self, X: Any) -> tuple[Any, Identity]:
        return X, Identity()

    def for_input(self, caller: Any) -> DaskEngine:
        return self

    def fetch(self, labels: Any) -> np.ndarray:
        if isinstance(labels, np.ndarray):
            return labels
        if isinstance(labels, _StoredLabels):
            labels = _in_block_order([a.labels(labels.pass_id) for _, a, _ in labels.stores])
        return np.concatenate(labels).astype(np.int64)

    # data access
    def check_input(self, X: Any, *, names=None, dims=None, require_observed: bool = True,
                    n_threads: int = 1, partial: str = "raise") -> Multimodal:
        got, arrays = as_row_chunks(X, names=names, dims=dims)
        parts = [delayed(_scan_task, nout=3)(blocks, partial) for blocks in _blocks(arrays)]
        found = dask.compute(*parts)
        offsets = _offsets(arrays[0])
        for m, name in enumerate(got):
            raise_bad_rows(
                name,
                np.concatenate([f[1][m] + offsets[c] for c, f in enumerate(found)]),
                np.concatenate([f[2][m] + offsets[c] for c, f in enumerate(found)]),
            )
        mask = np.concatenate([f[0] for f in found])
        if require_observed:
            check_no_empty_samples(mask)
        return Multimodal(got, arrays, mask)

    def view(self, data: Multimodal, mean, scale, dtype: np.dtype, chunk_rows: int,
             n_threads: int = 1, cache_bytes: int = 0) -> DaskView:
        return DaskView(data, list(mean), list(scale), np.dtype(dtype), chunk_rows, n_threads)

    def take(self, view: DaskView, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        rows = np.asarray(rows, dtype=np.int64)
        offsets = view.offsets
        chunk_of = np.searchsorted(offsets, rows, side="right") - 1
        fetched = _per_block(view, _take_task, {int(c): (rows[chunk_of == c] - offsets[c],)
                                                for c in np.unique(chunk_of)})
        widths = [len(m) for m in view.mean]
        if not fetched:
            return ([np.zeros((0, d), dtype=view.dtype) for d in widths],
                    np.zeros((0, len(widths)), dtype=bool))
        blocks = [np.concatenate([f[0][m] for f in fetched]) for m in range(len(widths))]
        return blocks, np.concatenate([f[1] for f in fetched])

    def seed_sample_rows(self, view: DaskView, k: int) -> int:
        width = sum(len(m) for m in view.mean)
        return max(SEED_ROWS_PER_CLUSTER * k, SEED_SAMPLE_BYTES // (8 * width), k)

    def apply(self, view: DaskView, fn: Callable[[Any, Any], Any]) -> Any:
        data = view.data
        offsets = view.offsets
        tasks = [
            delayed(_apply_task)(blocks, mask, data.names, view.mean, view.scale, view.dtype,
                                 view.chunk_rows, fn, int(offsets[i]))
            for i, (blocks, mask) in enumerate(zip(_blocks(data.arrays), _mask_blocks(data),
                                                   strict=True))
        ]
        first = dask.compute(tasks[0])[0]
        rows = data.arrays[0].chunks[0]
        return _stitch(first, tasks, rows)

    # reductions
    def statistics(self, data: Multimodal, chunk_rows: int, n_threads: int):
        masks = _mask_blocks(data)
        blocks = _blocks(data.arrays)
        sums = [delayed(_sums_task)(b, m) for b, m in zip(blocks, masks, strict=True)]
        totals, counts = dask.compute(_delayed_sum(sums))[0]
        # Overflowing means give non-finite scales, which check_magnitudes reports.
        means = [s[0] / c for s, c in zip(totals, counts, strict=True)]
        shared = _broadcast(means, "means")
        squares = [delayed(_squares_task)(b, m, shared) for b, m in zip(blocks, masks,
                                                                       strict=True)]
        total = dask.compute(_delayed_sum(squares))[0]
        stds = []
        for sq, c in zip(total, counts, strict=True):
            with np.errstate(divide="ignore", invalid="ignore"):
                stds.append(np.sqrt(sq[0] / (c - 1)))
        return means, stds

    def check_magnitudes(self, data: Multimodal, means, scales, dtype: np.dtype,
                         chunk_rows: int, n_threads: int) -> None:
        check_finite_statistics(data.names, means, scales)
        if np.dtype(dtype) != np.float32:
            return
        parts = dask.compute(*[delayed(_extremes_task)(b) for b in _blocks(data.arrays)])
        found = []
        for m, array in enumerate(data.arrays):
            kind, size = np.dtype(array.dtype).kind, np.dtype(array.dtype).itemsize
            if kind != "f" or size < 4:
                found.append(None)
                continue
            high = np.max([p[m][0] for p in parts], axis=0)
            low = np.min([p[m][1] for p in parts], axis=0)
            found.append(largest_centred(array, data.mask[:, m], means[m], scales[m],
                                         chunk_rows, extremes=(high, low)))
        check_float32_range(data.names, found, sum(data.dims))

    # passes
    def e_step(self, view: DaskView, centers: Centers, gamma: float, *, update_centers: bool,
               previous: Any = None) -> EStep:
        """One pass over the blocks; the member sums are added along the pairwise tree.

        Under a distributed client each worker's block store runs the pass over
        its blocks in one call (the centres go straight to it), keeps the labels
        (the handle names the pass), and sends back one summary per node it
        completed; the client adds the nodes. Otherwise one task per block and
        one per node of the tree run as one ``dask.compute`` on the local scheduler.
        """
        client = _client()
        n_blocks = len(view.offsets) - 1
        if client is not None:
            scalars, nodes, rows, labels = _store_pass(view, client, centers, gamma,
                                                       update_centers, previous)
            total = (_fold(0, _root(n_blocks), n_blocks, lambda lo, size: nodes.get((lo, size)),
                           _add) if update_centers else None)
        else:
            prepared = view.prepared(None)
            previous = previous or [None] * n_blocks
            shared = _broadcast(centers, "centers")
            parts = [delayed(_e_step_task)(chunk, before, shared, gamma, update_centers)
                     for chunk, before in zip(prepared, previous, strict=True)]
            tree = _delayed_sum([p.summary for p in parts]) if update_centers else None
            found, total = dask.compute(parts, tree, optimize_graph=False)
            scalars = [f.scalars for f in found]
            labels = [f.labels for f in found]
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

    def seed_distances(self, view: DaskView, seed: Centers, gamma: float) -> np.ndarray:
        parts = _per_block(view, _seed_task, dict.fromkeys(range(len(view.offsets) - 1), ()),
                           seed, gamma)
        return np.concatenate(parts)

    def farthest(self, view: DaskView, centers: Centers, labels: Any, n: int) -> Candidates:
        if isinstance(labels, _StoredLabels):
            parts = _in_block_order([a.farthest(labels.pass_id, centers, n)
                                     for _, a, _ in labels.stores])
        else:
            parts = _per_block(view, _farthest_task, {i: (b,) for i, b in enumerate(labels)},
                               centers, n)
        return Candidates.concatenate(parts)

    def assign_rows(self, view: DaskView, rows: np.ndarray, centers: Centers, gamma: float):
        blocks, mask = self.take(view, rows)
        labels, best = _NUMPY.nearest(None, None, PackedBlocks.of_full(blocks, mask), mask,
                                      centers, centers, gamma)
        return labels, best, blocks, mask

    def candidate_scores(self, view: DaskView, rows: np.ndarray, terms: PatternTerms,
                         gamma: float):
        blocks, mask = self.take(view, rows)
        local = gather_local(view, blocks, mask)
        return _NUMPY.candidate_scores(local, np.arange(rows.size), terms, gamma)

    def soft_distances(self, view: DaskView, centers: Centers, gamma: float):
        blocks, mask = self.take(view, np.arange(view.n_samples))
        yield from _NUMPY.soft_distances(gather_local(view, blocks, mask), centers, gamma)


def _store_pass(view: DaskView, client: Any, centers: Centers, gamma: float,
                update_centers: bool, previous: _StoredLabels | None):
    """One pass run by the view's block stores: (scalars, nodes, rows, labels handle).

    ``scalars`` and ``rows`` (per block (labels, best), without ``update_centers``)
    come in block order; ``nodes`` maps the stores' tree nodes to their summaries.
    When a store's worker is lost, the blocks are prepared again on the workers
    left and the pass is repeated, without the comparison with ``previous``
    (those labels are gone: the changed count is then -1 per block).
    """
    stores = view.stores(client)
    pass_id = view.next_pass()
    before = None if previous is None or previous.stores is not stores else previous.pass_id
    try:
        calls = [actor.e_step(pass_id, before, centers, gamma, update_centers)
                 for _, actor, _ in stores]
        found = [call.result() for call in calls]
    except (OSError, RuntimeError) as exc:  # a closed comm, or "Worker holding Actor was lost"
        if not _lost(stores):
            raise
        logger.warning("a worker holding row blocks was lost (%s); preparing its blocks again "
                       "and repeating the pass", exc)
        view.forget()
        return _store_pass(view, client, centers, gamma, update_centers, None)
    nodes = {node: value for f in found for node, value in f[1].items()}
    rows = None if update_centers else _in_block_order([f[2] for f in found])
    return (_in_block_order([f[0] for f in found]), nodes, rows,
            _StoredLabels(stores, pass_id))


def _lost(stores: tuple, wait: float = LOSS_WAIT_SECONDS) -> bool:
    """Whether the worker of one of ``stores`` left the cluster (given ``wait`` s to tell)."""
    deadline = time.monotonic() + wait
    while True:
        if any(future.status not in ("finished", "pending") for future, _, _ in stores):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _in_block_order(results: list[Any]) -> list:
    """Per-block values from the stores (futures of dicts by block index), in block order."""
    merged: dict[int, Any] = {}
    for result in results:
        merged.update(result if isinstance(result, dict) else result.result())
    return [merged[i] for i in sorted(merged)]


def gather_local(view: DaskView, blocks: list[np.ndarray], mask: np.ndarray) -> Standardized:
    """Gathered z-scored rows as a NumPy view (identity statistics keep every value)."""
    identity = [np.zeros(b.shape[1]) for b in blocks], [np.ones(b.shape[1]) for b in blocks]
    return _NUMPY.view(Multimodal(list(view.data.names), blocks, mask), *identity, view.dtype,
                       view.chunk_rows, 1, np.iinfo(np.int64).max)


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
