"""Dask backend: fit and transform on ``dask.array`` inputs chunked by rows.

``UL4M4Imputer(backend="dask")`` runs the drivers of :mod:`ul4m4.model` (the
same as every backend) on :class:`DaskEngine`, which implements the engine
protocol of :mod:`ul4m4.engine` over a row-chunked ``dask.array`` data set: each
pass maps the NumPy engine's pass over the row blocks and tree-reduces the
results, on whatever scheduler dask is using (a ``dask.distributed`` cluster
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
* The input check is one pass (the NaN/inf scan of :func:`ul4m4.data.scan_block`
  on every block; the (n, M) availability mask comes back to the client).
* Statistics, the overflow check and every Lloyd E-step map the NumPy code over
  the blocks and tree-reduce float64 partial sums on the workers, ``FAN_IN``
  partial results per task.
* A Lloyd E-step is one task per block (labels, and the block's member sums in
  row order) plus ``ceil(blocks / FAN_IN)`` summing tasks per level. Under a
  ``dask.distributed`` client it is submitted as futures in one go and costs
  one round trip: the centres are scattered once to every worker, each block's
  labels stay in its worker's memory (the futures are the labels handle of the
  next E-step and of reseeding), and only the summed member sums and two
  scalars per block come back. Without a client the same tasks run as one
  ``dask.compute`` (``optimize_graph=False``) on the local scheduler.
* Each block is z-scored on the worker holding its (widest modality's) input,
  unless that worker holds more than its share of the rows (by threads): such
  blocks move once, to the workers furthest below their share. Every E-step of
  the block runs where it was z-scored (a loose restriction: another worker
  takes over if that one is gone), so the passes are balanced and blocks never
  move again.
* The z-scored training samples are kept on the workers for the whole fit, in
  the working dtype, as one packed copy per block (each modality's observed
  rows only; passes read it in place); per
  block a worker also keeps its labels and squared distances (16 bytes a row)
  and, until the next E-step, its member sums (``k * (D + M + 1)`` float64).
* Reseeding: every block proposes its farthest samples; the client picks.
* k-means++ runs on a uniform sample gathered to the client (the whole data
  when it fits in 256 MiB as float64, and then the seeds are those of the NumPy
  backend); mini-batch steps gather their batch rows.
* ``transform``/``predict`` map the NumPy completion over the row blocks and
  return lazy dask arrays with the input's row chunks (the first block is
  computed at once, to learn the output's structure).

Results: one row chunk gives the NumPy backend's results bit for bit; several
row chunks add statistics and member sums chunk by chunk instead of row by
row, which differs from the NumPy backend by float64 rounding (about 1e-15
relative), so labels, selections and outputs agree unless a sample sits within
that rounding of a tie.
"""

from __future__ import annotations

import math
import sys
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed

from ..blocks import PackedBlocks
from ..centers import Centers
from ..data import (
    Multimodal,
    Standardized,
    check_finite_statistics,
    check_float32_range,
    check_no_empty_samples,
    check_shapes,
    column_extremes,
    largest_centred,
    match_names,
    named_values,
    raise_bad_rows,
    scan_block,
    sequential_sums,
)
from ..engine import Candidates, EStep, Identity
from ..plan import PatternTerms
from .numpy_engine import NumpyEngine

__all__ = ["DaskEngine", "DaskView", "as_row_chunks"]

#: Bytes (as float64) of the sample that k-means++ gathers to the client.
SEED_SAMPLE_BYTES = 256 * 2**20
#: The seeding sample holds at least this many rows per centre.
SEED_ROWS_PER_CLUSTER = 64
#: Partial results combined per task of a tree reduction.
FAN_IN = 8
#: Bytes per row chunk when a non-dask input is wrapped.
WRAP_BYTES = 64 * 2**20

_NUMPY = NumpyEngine()


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
    if value.ndim != 2:
        raise ValueError(
            f"modality {name!r}: expected a 2-D array (n_samples, n_features), "
            f"got shape {tuple(value.shape)}"
        )
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
def _add(*parts):
    """Element-wise sum of equally shaped nested tuples/lists of arrays, left to right."""
    first = parts[0]
    if isinstance(first, tuple | list):
        return type(first)(_add(*items) for items in zip(*parts, strict=True))
    total = first.copy()
    for part in parts[1:]:
        total += part
    return total


def _tree_sum(parts: list[Delayed]) -> Delayed:
    """Reduce per-block partial results on the workers, ``FAN_IN`` at a time."""
    return _tree(parts, lambda group: delayed(_add)(*group))


def _tree(parts: list, combine: Callable[[list], Any]) -> Any:
    """Combine ``FAN_IN`` consecutive parts at a time, level by level, until one is left.

    Every reduction of the engine uses this one association (``combine`` runs at
    least once), so sums do not depend on how they are scheduled.
    """
    while True:
        parts = [combine(parts[i : i + FAN_IN]) for i in range(0, len(parts), FAN_IN)]
        if len(parts) == 1:
            return parts[0]


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
        # dask.sizeof falls back to sys.getsizeof: the scheduler must see the block's size
        # so that it never moves a block to the (small) centres or labels.
        data = self.view.data
        return int(self.kept.nbytes + data.mask.nbytes + data.nbytes + self.view.cache_nbytes)


class _Assigned(NamedTuple):
    """One block's E-step: kept where it was computed; only ``summary`` and ``scalars`` travel.

    A tuple, so that ``dask.sizeof`` (and so the scheduler) sees its real size.
    """

    labels: np.ndarray
    best: np.ndarray
    summary: tuple | None  # (sums, counts, members) as float64, with update_centers
    scalars: np.ndarray  # [inertia, changed labels (-1 without previous)]


def _labels_of(handle: Any) -> np.ndarray:
    return handle.labels if isinstance(handle, _Assigned) else handle


def _e_step_task(prepared: _Prepared, previous, centers: Centers, gamma: float,
                 update_centers: bool) -> _Assigned:
    labels = np.full(prepared.n_rows, -1, dtype=np.int64)
    best = np.zeros(prepared.n_rows)
    k, widths = centers.k, [b.shape[1] for b in centers.blocks]
    summary = None
    if update_centers:
        summary = ([np.zeros((k, d)) for d in widths], np.zeros((k, len(widths))), np.zeros(k))
    if prepared.kept.size:
        step = _NUMPY.e_step(prepared.view, centers, gamma, update_centers=update_centers)
        labels[prepared.kept], best[prepared.kept] = step.labels, step.best
        if update_centers:
            summary = (step.sums, step.counts, step.members.astype(np.float64))
    changed = -1 if previous is None else int(np.count_nonzero(labels != _labels_of(previous)))
    return _Assigned(labels, best, summary, np.array([float(best.sum()), changed]))


def _reduce_task(*parts):
    """Sum of the summaries (left to right) and the stacked scalars of some blocks' E-steps.

    Parts are :class:`_Assigned` (the first level) or earlier ``_reduce_task`` results.
    """
    if isinstance(parts[0], _Assigned):
        parts = tuple((p.summary, p.scalars[None, :]) for p in parts)
    return _add(*[p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _farthest_task(prepared: _Prepared, labels, centers: Centers, n: int):
    labels = _labels_of(labels)
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
    _prepared: list | None = None

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
                self._prepared = (None, list(dask.persist(*parts)), [None] * len(parts))
            else:
                made = [client.compute(p, workers=home, allow_other_workers=home is not None)
                        for p, home in zip(parts, _homes(client, blocks, self.data.dims,
                                                         np.diff(self.offsets).tolist()),
                                           strict=True)]
                sys.modules["distributed"].wait(made)
                held = client.who_has(made)
                self._prepared = (client, made, [list(held.get(f.key, ())) or None
                                                 for f in made])
        return self._prepared[1]

    def homes(self) -> list:
        """Per block, the workers that hold it once prepared (None: any), for task placement."""
        return self._prepared[2]


def _homes(client: Any, blocks: list[list[Delayed]], dims: Sequence[int],
           rows: Sequence[int]) -> list:
    """Per row block, the worker to prepare it on: where it is, unless that worker has too much.

    A block is prepared where its widest modality's block is held, which moves the
    least data, as long as that worker's share of the rows stays within its share
    of the threads; the other blocks go, largest first, to the workers furthest
    below their share. Every E-step then runs where its block was prepared, so a
    one-time move at preparation evens out every later pass.
    """
    widest = int(np.argmax(dims))
    keys = [chunk[widest].key for chunk in blocks]
    futures = [sys.modules["distributed"].Future(key, client) for key in keys]
    held = client.who_has(futures)
    threads = {w: info.get("nthreads", 1) or 1
               for w, info in client.scheduler_info()["workers"].items()}
    if not threads:
        return [list(held.get(key, ()))[:1] or None for key in keys]
    total = sum(threads.values())
    share = {w: sum(rows) * n / total for w, n in threads.items()}
    load = dict.fromkeys(threads, 0)
    homes: list = [None] * len(keys)
    largest_first = np.argsort(rows, kind="stable")[::-1]
    for i in largest_first:
        where = [w for w in held.get(keys[i], ()) if w in threads]
        if where and load[where[0]] + rows[i] <= share[where[0]] + rows[i] / 2:
            homes[i] = where[0]
            load[where[0]] += rows[i]
    for i in largest_first:
        if homes[i] is None:
            homes[i] = min(threads, key=lambda w: (load[w] - share[w], w))
            load[homes[i]] += rows[i]
    return [[w] for w in homes]


def _per_block(view: DaskView, fn: Callable, per_block: Sequence[tuple], *common) -> list:
    """``fn(prepared block, *per_block[i], *common)`` for every block, results in block order.

    Under a distributed client the tasks are submitted as futures next to the
    blocks and the common arguments are scattered once to every worker.
    """
    client = _client()
    prepared = view.prepared(client)
    if client is not None:
        common = tuple(_scatter(client, c) for c in common)
        futures = [client.submit(fn, chunk, *args, *common, pure=False)
                   for chunk, args in zip(prepared, per_block, strict=True)]
        return client.gather(futures)
    common = tuple(_broadcast(c, "shared") for c in common)
    tasks = [delayed(fn)(chunk, *args, *common)
             for chunk, args in zip(prepared, per_block, strict=True)]
    return list(dask.compute(*tasks, optimize_graph=False))


def _scatter(client: Any, value: Any) -> Any:
    """``value`` sent once to every worker (a small one is passed inline)."""
    if isinstance(value, int | float | bool | str) or value is None:
        return value
    return client.scatter([value], broadcast=True, hash=False)[0]


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
        client = _client()
        if client is not None and not isinstance(labels[0], np.ndarray):
            # Futures of the blocks' E-steps: only their labels travel.
            labels = client.gather(client.map(_labels_of, list(labels), pure=False))
        return np.concatenate([_labels_of(b) for b in labels]).astype(np.int64)

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
        client = _client()
        prepared = view.prepared(client)
        wanted = [(prepared[c], rows[chunk_of == c] - offsets[c]) for c in np.unique(chunk_of)]
        if client is not None:
            fetched = client.gather([client.submit(_take_task, *w, pure=False) for w in wanted])
        else:
            fetched = dask.compute(*[delayed(_take_task)(*w) for w in wanted],
                                   optimize_graph=False)
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
        totals, counts = dask.compute(_tree_sum(sums))[0]
        # Overflowing means give non-finite scales, which check_magnitudes reports.
        means = [s[0] / c for s, c in zip(totals, counts, strict=True)]
        shared = _broadcast(means, "means")
        squares = [delayed(_squares_task)(b, m, shared) for b, m in zip(blocks, masks,
                                                                       strict=True)]
        total = dask.compute(_tree_sum(squares))[0]
        scales = []
        for sq, c in zip(total, counts, strict=True):
            with np.errstate(divide="ignore", invalid="ignore"):
                std = np.sqrt(sq[0] / (c - 1))
            scales.append(np.where(std <= 1e-8, 1.0, std))
        return means, scales

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
        """One task per block (E-step and the block's member sums), a FAN_IN-ary tree of sums.

        Under a distributed client everything is submitted at once as futures: the
        centres are scattered once to every worker, each block's labels stay in
        its worker's memory (the futures are the labels handle), and only the
        reduced sums and the per-block scalars come back, in one round trip.
        """
        client = _client()
        prepared = view.prepared(client)
        previous = previous or [None] * len(prepared)
        if client is not None:
            shared = _scatter(client, centers)
            parts = [client.submit(_e_step_task, chunk, labels, shared, gamma, update_centers,
                                   pure=False, workers=home,
                                   allow_other_workers=home is not None)
                     for chunk, labels, home in zip(prepared, previous, view.homes(),
                                                    strict=True)]
            if update_centers:
                total, scalars = client.gather(_tree(
                    parts, lambda group: client.submit(_reduce_task, *group, pure=False)))
                labels = parts
            else:
                found = client.gather(parts)
        else:
            shared = _broadcast(centers, "centers")
            parts = [delayed(_e_step_task)(chunk, labels, shared, gamma, update_centers)
                     for chunk, labels in zip(prepared, previous, strict=True)]
            if update_centers:
                labels, (total, scalars) = dask.compute(
                    [delayed(_labels_of)(p) for p in parts],
                    _tree(parts, lambda group: delayed(_reduce_task)(*group)),
                    optimize_graph=False)
            else:
                found = dask.compute(*parts, optimize_graph=False)
        if not update_centers:
            scalars = np.array([f.scalars for f in found])
        scalars = np.asarray(scalars).reshape(-1, 2)
        changed = None if previous[0] is None else int(scalars[:, 1].sum())
        if not update_centers:
            step = EStep(None, float(np.sum(scalars[:, 0])), changed)
            step.labels = np.concatenate([f.labels for f in found])
            step.best = np.concatenate([f.best for f in found])
            return step
        step = EStep(list(labels), float(np.sum(scalars[:, 0])), changed)
        step.sums, step.counts, members = total
        step.members = members.astype(np.int64)
        return step

    def seed_distances(self, view: DaskView, seed: Centers, gamma: float) -> np.ndarray:
        parts = _per_block(view, _seed_task, [()] * len(view.offsets[1:]), seed, gamma)
        return np.concatenate(parts)

    def farthest(self, view: DaskView, centers: Centers, labels: Any, n: int) -> Candidates:
        parts = _per_block(view, _farthest_task, [(b,) for b in labels], centers, n)
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
