"""PyTorch backend: the UL4M4 algorithm with its heavy kernels on tensors, on any device.

Design
------
The NumPy engine (:mod:`ul4m4.cluster`, :mod:`ul4m4.complete`,
:mod:`ul4m4.distance`) stays the one implementation of the algorithm's
*decisions*. This module reuses its control logic unchanged and swaps only the
kernels whose cost grows with ``n * d``:

=====================================  =========================================
shared with the NumPy engine           on tensors here
=====================================  =========================================
k-means++ draws (``_draw_next_seed``)  masked-GEMM partial distances per chunk
seed rows, random init, ``Centers``    (``||x||^2 + ||c||^2 - 2 x.c`` and the
exact argmin and its float64 recheck   rigorous rounding bound, in float64)
(``exact_argmin``, exact kernels)      per-cluster float64 member sums
empty-cluster reseeding, centre shift  (CPU: the shared row-order sparse
completion choice (``_choose``), its   operator on the tensors' memory; other
float64 rechecks, ``_PatternTerms``    devices: ``index_put_`` with accumulate)
soft weights (``_soft_weights``)       the greedy completion's (B, k, k)
                                       float32 candidate-score tensor
=====================================  =========================================

:func:`kmeans_plusplus` and :func:`lloyd` are the NumPy drivers themselves,
given this module's distance pass and E-step as arguments; :func:`assign`,
:func:`complete_sources` and :func:`soft_complete` are the NumPy drivers' loops
over device chunks, calling the NumPy engine's own helpers for every branch,
recheck and choice (the soft fill and its greedy fallback are shared functions of
:mod:`ul4m4.complete`). Only small (B, k) float64 arrays, labels and the rows
that need an exact recheck cross from the device to the host.

Parity with ``backend="numpy"`` (same seed, same dtype)
-------------------------------------------------------
* Labels, completion sources and convergence (``n_iter_``, ``converged_``) are
  equal: every label is the exact float64 argmin (ties to the lowest index)
  whatever the GEMM's summation order, because entries the rounding bound
  cannot separate are recomputed by the same NumPy float64 kernel. This holds
  in float32 and float64 alike.
* Centres are bit-identical: members are equal, and their sums are formed in
  row order in float64 onto the running total, as in the NumPy engine (on the
  CPU by the very same compiled row-order kernel; on CUDA by the sort-based
  ``index_put_(accumulate=True)`` kernel, which adds the duplicates of one index
  one after the other in their stable-sorted order onto the running total).
* ``inertia_`` and ``history_`` agree to rounding (about 1e-15 relative in
  float64): unrechecked distances come from the GEMM, whose summation order
  differs between BLAS libraries. For the same reason the k-means++ draw (a
  uniform number against the cumulative sum of those distances) and the
  ``n_init`` choice (lowest inertia) could differ only if the draw fell within
  rounding of a boundary (probability of order 1e-16 per draw in float64,
  1e-7 in float32) or two runs' inertias tied to rounding.
* Soft completion is a smooth function of the distances: equal to rounding.

Threads: on the CPU, chunks are processed on ``n_jobs`` worker threads with one
PyTorch intra-op thread each (the NumPy engine's ``map_chunks``), so the two
backends use the cores the same way. ``algorithm="minibatch"`` runs its
mini-batch steps with the NumPy engine (the torch backend seeds it).

Devices: any device PyTorch supports with float64 (CPU, CUDA). Tensors are
moved to the host only through ``.cpu()``. With TF32 matmuls enabled on CUDA
(``torch.backends.cuda.matmul.allow_tf32``) float32 GEMMs are rounded to a
10-bit mantissa; the error bound then uses TF32's unit roundoff, so labels stay
exact (more rows are rechecked).

Examples
--------
>>> import numpy as np, torch
>>> from ul4m4 import UL4M4Imputer
>>> rng = np.random.default_rng(0)
>>> X = {"a": torch.tensor(rng.normal(size=(60, 3))), "b": torch.tensor(rng.normal(size=(60, 2)))}
>>> X["b"][:20] = float("nan")
>>> imp = UL4M4Imputer(n_clusters=3, random_state=0, backend="torch").fit(X)
>>> out = imp.transform(X)
>>> type(out["b"]).__name__, bool(torch.isnan(out["b"]).any())
('Tensor', False)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import cluster
from ..cluster import (
    Centers,
    LloydResult,
    random_init,
)
from ..complete import (
    _F32_REL,
    _PAIR_BLOCK_ELEMENTS,
    FROM_MEAN,
    OBSERVED,
    CompletionPlan,
    _choose,
    _PatternTerms,
    fill_stuck_greedily,
    soft_fill_chunk,
)
from ..data import Multimodal, RowOrderSums, Standardized, iter_row_chunks
from ..distance import error_factor, exact_argmin, exact_partial_sq_dists

__all__ = [
    "DeviceCenters",
    "TorchEngine",
    "TorchView",
    "assign",
    "complete_sources",
    "kmeans_plusplus",
    "lloyd",
    "partial_sq_dists",
    "soft_complete",
]

_F64 = torch.float64
#: Unit roundoff of TF32 (10 explicit mantissa bits), for the error bound.
_TF32_EPS = 2.0**-10


# ------------------------------------------------------- input and output
class _Caller:
    """Converts results back to the caller's type: tensors on ``device``, or as they are."""

    def __init__(self, device: torch.device | None) -> None:
        self.device = device

    def wrap(self, value: Any) -> Any:
        if self.device is None:
            return value
        if isinstance(value, np.ndarray):
            return torch.from_numpy(value).to(self.device)
        if isinstance(value, Mapping):
            return {k: self.wrap(v) for k, v in value.items()}
        if isinstance(value, tuple):
            return tuple(self.wrap(v) for v in value)
        if isinstance(value, list):
            return [self.wrap(v) for v in value]
        return value


def _tf32_possible(device: torch.device | None) -> bool:
    """Whether float32 matmuls on ``device`` may round their inputs to TF32."""
    cuda = device is None or device.type == "cuda"
    tf32 = (torch.backends.cuda.matmul.allow_tf32
            or torch.get_float32_matmul_precision() != "highest")
    return bool(cuda and torch.cuda.is_available() and tf32)


def _to_host(X: Any) -> tuple[Any, torch.device | None]:
    if isinstance(X, Mapping):
        items = list(X.items())
    elif isinstance(X, list | tuple):
        items = list(enumerate(X))
    else:
        return X, None
    devices = {name: v.device for name, v in items if isinstance(v, torch.Tensor)}
    if not devices:
        return X, None
    if len(set(devices.values())) > 1:
        raise ValueError(f"all tensors of X must be on one device, got {devices}")
    host = [(name, _tensor_to_numpy(str(name), v)) for name, v in items]
    values = dict(host) if isinstance(X, Mapping) else [v for _, v in host]
    return values, next(iter(devices.values()))


def _tensor_to_numpy(name: str, value: Any) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    if value.is_complex() or value.dtype in (torch.bfloat16, torch.bool):
        raise TypeError(
            f"modality {name!r}: expected a real float or integer tensor, got {value.dtype}"
        )
    return value.detach().cpu().numpy()


# ------------------------------------------------------------------- view
@dataclass
class TorchView(Standardized):
    """A :class:`~ul4m4.data.Standardized` view that also yields its chunks as tensors.

    NumPy rows (``rows``, ``chunks``) serve the shared control logic (seed rows,
    reseeding, exact rechecks); ``device_rows`` and ``device_chunks`` serve the
    kernels, with the same values bit for bit: on the CPU they are the NumPy
    blocks themselves, on other devices the raw rows are moved there and z-scored
    with the same elementwise IEEE operations, ``(fl(x) - fl(mu)) / fl(sigma)``.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _device_cache: list | None = field(default=None, init=False, repr=False)
    _stats: tuple | None = field(default=None, init=False, repr=False)

    @property
    def on_cpu(self) -> bool:
        return self.device.type == "cpu"

    def _device_stats(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if self._stats is None:
            self._stats = (
                [torch.from_numpy(m.astype(self.dtype)).to(self.device) for m in self.mean],
                [torch.from_numpy(s.astype(self.dtype)).to(self.device) for s in self.scale],
            )
        return self._stats

    def device_rows(self, rows: slice | np.ndarray) -> list[torch.Tensor]:
        """z-scored tensors of the given rows on ``device`` (zeros on missing rows)."""
        if self.on_cpu:
            return [torch.from_numpy(b) for b in self.rows(rows)[0]]
        return _standardize_on_device(self, rows)

    def map_device_chunks(self, fn: Callable[[slice, list[torch.Tensor], np.ndarray], Any]):
        """Yield ``(rows, fn(rows, blocks, mask))`` for every chunk, in row order.

        On the CPU this is the NumPy engine's :meth:`~ul4m4.data.Standardized.map_chunks`
        (chunks z-scored and processed on ``n_threads`` worker threads, each running
        single-threaded kernels) with the blocks handed over as tensors; on other
        devices the chunks are processed one after the other, the device providing
        the parallelism.
        """
        if self.on_cpu:
            def on_tensors(rows, blocks, mask):
                return fn(rows, [torch.from_numpy(b) for b in blocks], mask)

            yield from self.map_chunks(on_tensors)
            return
        for rows, blocks, mask in self.device_chunks():
            yield rows, fn(rows, blocks, mask)

    def device_chunks(self) -> Iterator[tuple[slice, list[torch.Tensor], np.ndarray]]:
        """Yield ``(rows, blocks, mask)`` with tensor blocks, in row order.

        Data whose z-scored copy fits in ``cache_bytes`` are z-scored once, on the
        first pass, and kept on the device.
        """
        if self.on_cpu:
            for rows, blocks, mask in self.chunks():
                yield rows, [torch.from_numpy(b) for b in blocks], mask
            return
        if self._device_cache is not None:
            yield from self._device_cache
            return
        cache = [] if self._cacheable() else None
        for rows in iter_row_chunks(self.n_samples, self.chunk_rows):
            item = (rows, self.device_rows(rows), self.data.mask[rows])
            if cache is not None:
                cache.append(item)
            yield item
        if cache is not None:
            self._device_cache = cache


def _cpu_threads(driver):
    """Run ``driver(view, ...)`` with one PyTorch CPU thread per worker.

    On the CPU the parallelism comes from the ``n_threads`` chunk workers of
    :meth:`TorchView.map_device_chunks`, as in the NumPy engine; PyTorch's own
    intra-op threads are set to 1 meanwhile (nested thread pools oversubscribe the
    cores and, on a busy machine, spin-wait each other out). The previous setting
    is restored afterwards.
    """

    @functools.wraps(driver)
    def run(view, *args, **kwargs):
        previous = torch.get_num_threads()
        if not view.on_cpu or previous == 1:
            return driver(view, *args, **kwargs)
        torch.set_num_threads(1)
        try:
            return driver(view, *args, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return run


def _standardize_on_device(view: TorchView, rows: slice | np.ndarray) -> list[torch.Tensor]:
    """Move raw rows to ``view.device`` and z-score them there, as NumPy does on the host."""
    mask = view.data.mask[rows]
    means, scales = view._device_stats()
    blocks = []
    for m, array in enumerate(view.data.arrays):
        raw = np.asarray(array[rows])
        if raw.dtype.kind != "f":
            raw = raw.astype(view.dtype)  # the cast NumPy makes, done on the host
        elif not raw.flags.writeable:
            raw = raw.copy()  # e.g. a read-only memory map; torch wants writable memory
        block = torch.as_tensor(np.ascontiguousarray(raw)).to(view.device)
        # A copy, so the caller's tensor is never modified in place.
        block = block.to(dtype=_torch_dtype(view.dtype), copy=True)
        block -= means[m]
        block /= scales[m]
        block[torch.from_numpy(~mask[:, m]).to(view.device)] = 0
        blocks.append(block)
    return blocks


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.float32 if np.dtype(dtype) == np.float32 else torch.float64


def _host(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


# ---------------------------------------------------------------- kernels
@dataclass
class DeviceCenters:
    """The tensors of a :class:`~ul4m4.cluster.Centers` on a device (norms as computed there)."""

    centers: Centers
    blocks: list[torch.Tensor]
    norms: list[torch.Tensor]
    has: torch.Tensor  # (k, M) float64

    @classmethod
    def of(cls, centers: Centers, device: torch.device) -> DeviceCenters:
        return cls(
            centers,
            [torch.from_numpy(b).to(device) for b in centers.blocks],
            # The NumPy engine's own float64 norms, so both backends use the same ones.
            [torch.from_numpy(n).to(device) for n in centers.norms],
            torch.from_numpy(centers.mask.astype(np.float64)).to(device),
        )


def _modality_sq_dists(block: torch.Tensor, center: torch.Tensor, center_norms: torch.Tensor):
    """:func:`ul4m4.distance.modality_sq_dists` on tensors: ``(sq, norms)``, float64 (B, k)."""
    d_m = block.shape[1]
    row_norms = (block * block).sum(dim=1).to(_F64)
    cross = (block @ center.T).to(_F64)
    norms = row_norms[:, None] + center_norms[None, :]
    sq = norms - 2.0 * cross
    sq.clamp_(min=0.0)
    sq /= d_m
    norms /= d_m
    return sq, norms


def partial_sq_dists(
    blocks: Sequence[torch.Tensor], mask: np.ndarray, centers: DeviceCenters, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`ul4m4.distance.partial_sq_dists` on tensors: ``(sq, err)``, float64 (B, k).

    The same formula and rounding bound; only the GEMM's summation order differs,
    which the bound covers (it holds for any order).
    """
    device = blocks[0].device
    center_mask = centers.centers.mask
    obs = torch.from_numpy(mask.astype(np.float64)).to(device)
    count = obs @ centers.has.T
    num = torch.zeros(count.shape, dtype=_F64, device=device)
    bound = torch.zeros(count.shape, dtype=_F64, device=device)
    for m, block in enumerate(blocks):
        if not (mask[:, m].any() and center_mask[:, m].any()):
            continue
        sq, norms = _modality_sq_dists(block, centers.blocks[m], centers.norms[m])
        if mask[:, m].all() and center_mask[:, m].all():
            num += sq
            bound += norms
        else:
            shared = torch.outer(obs[:, m], centers.has[:, m])
            num += sq * shared
            bound += norms * shared
    shares = count > 0
    sq = torch.where(shares, num / count, torch.inf)
    err = torch.where(shares, gamma * bound / count, 0.0)
    return sq, err


def _exact_rows(blocks: Sequence[torch.Tensor], mask: np.ndarray, centers: Centers):
    """The NumPy float64 recheck of chosen rows of a tensor chunk (the shared exact kernel)."""

    def exact(rows: np.ndarray) -> np.ndarray:
        index = torch.from_numpy(rows).to(blocks[0].device)
        host = [_host(b[index]) for b in blocks]
        return exact_partial_sq_dists(host, mask[rows], centers.blocks, centers.mask)

    return exact


def _nearest(blocks, mask, device_centers: DeviceCenters, gamma: float):
    sq, err = partial_sq_dists(blocks, mask, device_centers, gamma)
    return exact_argmin(_host(sq), _host(err), _exact_rows(blocks, mask, device_centers.centers))


def _scatter_member_sums(
    running: torch.Tensor, labels: np.ndarray, block: torch.Tensor
) -> torch.Tensor:
    """``running[j] + the rows of block labelled j``, added in row order in float64.

    For devices other than the CPU (where the NumPy engine's compiled kernel is
    used). ``[running; block]`` is scattered into zeros with
    ``index_put_(accumulate=True)``, whose sort-based CUDA kernel adds the entries
    of one index one after the other in stable-sorted order: ``0 + running + x_a
    + x_b + ...``, the same sequence of float64 additions as the kernel's (the
    zero rows of a missing modality add +0.0, which changes no sum).
    """
    k = running.shape[0]
    index = torch.cat([
        torch.arange(k, device=running.device),
        torch.from_numpy(labels).to(running.device),
    ])
    values = torch.cat([running, block.to(_F64)])
    return torch.zeros_like(running).index_put_((index,), values, accumulate=True)


# ---------------------------------------------------------------- stage 1
@_cpu_threads
def assign(view: TorchView, centers: Centers, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ul4m4.cluster.assign` with the distance GEMMs on ``view.device``."""
    device_centers = DeviceCenters.of(centers, view.device)
    labels = np.empty(view.n_samples, dtype=np.int64)
    best = np.empty(view.n_samples)

    def nearest(rows, blocks, mask):
        return _nearest(blocks, mask, device_centers, gamma)

    for rows, (chunk_labels, chunk_best) in view.map_device_chunks(nearest):
        labels[rows], best[rows] = chunk_labels, chunk_best
    return labels, best


def _assign_and_accumulate(view: TorchView, centers: Centers, gamma: float):
    """One E-step and the float64 member sums (in row order) and counts of the new clusters."""
    device_centers = DeviceCenters.of(centers, view.device)
    if view.on_cpu:
        return _assign_and_accumulate_on_cpu(view, centers, device_centers, gamma)
    k = centers.k
    labels = np.empty(view.n_samples, dtype=np.int64)
    best = np.empty(view.n_samples)
    counts = np.zeros((k, len(centers.blocks)))
    sums = [torch.zeros((k, b.shape[1]), dtype=_F64, device=view.device)
            for b in centers.blocks]
    for rows, blocks, mask in view.device_chunks():
        chunk_labels, chunk_best = _nearest(blocks, mask, device_centers, gamma)
        labels[rows], best[rows] = chunk_labels, chunk_best
        for m in range(len(sums)):
            sums[m] = _scatter_member_sums(sums[m], chunk_labels, blocks[m])
            counts[:, m] += np.bincount(chunk_labels, weights=mask[:, m], minlength=k)
    return labels, best, [_host(s) for s in sums], counts


def _assign_and_accumulate_on_cpu(view: TorchView, centers: Centers, device_centers, gamma):
    """The CPU E-step with the NumPy engine's accumulator, each worker adding its own chunk."""
    labels = np.empty(view.n_samples, dtype=np.int64)
    best = np.empty(view.n_samples)
    accumulator = RowOrderSums(centers.k, [b.shape[1] for b in centers.blocks])

    def nearest(rows, blocks, mask):
        def chunk():
            found = _nearest(blocks, mask, device_centers, gamma)
            return found, accumulator.prepare(found[0], [b.numpy() for b in blocks], mask)

        return accumulator.compute_and_add(rows, chunk)

    for rows, (chunk_labels, chunk_best) in view.map_device_chunks(nearest):
        labels[rows], best[rows] = chunk_labels, chunk_best
    return labels, best, accumulator.sums, accumulator.counts


def _min_sq_update(view: TorchView, seed: Centers, min_sq: np.ndarray, gamma: float) -> None:
    """:func:`ul4m4.cluster._min_sq_update`: distances to a new seed, exact near zero."""
    device_seed = DeviceCenters.of(seed, view.device)

    def to_seed(rows, blocks, mask):
        sq, err = partial_sq_dists(blocks, mask, device_seed, gamma)
        sq, err = _host(sq[:, 0]), _host(err[:, 0])
        # A copy of the seed must be at distance exactly 0 so it is never drawn again.
        near_zero = np.flatnonzero(np.isfinite(sq) & (sq - err <= 0))
        if near_zero.size:
            sq[near_zero] = _exact_rows(blocks, mask, seed)(near_zero)[:, 0]
        return sq

    for rows, sq in view.map_device_chunks(to_seed):
        np.minimum(min_sq[rows], sq, out=min_sq[rows])


@_cpu_threads
def kmeans_plusplus(
    view: TorchView, k: int, rng: np.random.RandomState, gamma: float
) -> tuple[Centers, np.ndarray]:
    """:func:`ul4m4.cluster.kmeans_plusplus` with the distance passes on ``view.device``."""
    return cluster.kmeans_plusplus(view, k, rng, gamma, min_sq_update=_min_sq_update)


@_cpu_threads
def lloyd(
    view: TorchView,
    centers: Centers,
    *,
    max_iter: int,
    tol: float,
    gamma: float,
    one_step: bool = False,
) -> LloydResult:
    """:func:`ul4m4.cluster.lloyd`, step for step, with the E-step and sums on tensors."""
    return cluster.lloyd(view, centers, max_iter=max_iter, tol=tol, gamma=gamma,
                         one_step=one_step, assign_and_accumulate=_assign_and_accumulate)


# ---------------------------------------------------------------- stage 2
@_cpu_threads
def complete_sources(
    view: TorchView, plan: CompletionPlan, gamma: float, *, force_general: bool = False
) -> np.ndarray:
    """:func:`ul4m4.complete.complete_sources` with the score tensors on ``view.device``."""
    mask = view.mask
    sources = np.full(mask.shape, OBSERVED, dtype=np.int64)
    missing_rows = np.flatnonzero(~mask.all(axis=1))
    if not missing_rows.size:
        return sources
    device_centers = DeviceCenters.of(plan.centers, view.device)
    patterns, inverse = np.unique(mask[missing_rows], axis=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        rows = missing_rows[inverse.ravel() == p]
        sources[rows] = _complete_pattern(
            view, plan, device_centers, pattern, rows, gamma, force_general
        )
    return sources


def _complete_pattern(view, plan, device_centers, pattern, rows, gamma, force_general):
    centers = plan.centers
    out = np.full((rows.size, pattern.size), OBSERVED, dtype=np.int64)
    missing = np.flatnonzero(~pattern)
    if not pattern.any():
        out[:, missing] = FROM_MEAN
        return out
    terms = _PatternTerms.build(plan, pattern)
    general = not plan.all_complete or force_general
    step = view.chunk_rows
    if general:
        step = max(1, min(step, _PAIR_BLOCK_ELEMENTS // max(1, centers.k**2)))
        device_terms = _DeviceTerms.of(terms, view.device)
    for start in range(0, rows.size, step):
        chunk = rows[start : start + step]
        blocks, mask = view.device_rows(chunk), view.mask[chunk]
        if general:
            chosen = _greedy_sources(blocks, mask, device_centers, terms, device_terms, gamma)
        else:
            labels, _ = _nearest(blocks, mask, device_centers, gamma)
            chosen = np.repeat(labels[:, None], missing.size, axis=1)
        out[start : start + step, missing] = chosen
    return out


@dataclass
class _DeviceTerms:
    """The float32 pattern tensors of :meth:`_PatternTerms.candidate_scores` on a device."""

    q_open: torch.Tensor
    inverse: torch.Tensor
    exact_self: torch.Tensor

    @classmethod
    def of(cls, terms: _PatternTerms, device: torch.device) -> _DeviceTerms:
        return cls(
            torch.from_numpy(terms.q_open).to(device),
            torch.from_numpy(terms.inverse).to(device),
            torch.from_numpy(terms.exact_self).to(device),
        )


def _candidate_scores(p: torch.Tensor, p_err: torch.Tensor, terms: _DeviceTerms):
    """:meth:`ul4m4.complete._PatternTerms.candidate_scores` on tensors (same float32 steps)."""
    buffer = p.to(torch.float32)[:, None, :] + terms.q_open[None, :, :]
    buffer *= terms.inverse[None, :, :]
    scores = buffer.amin(dim=2).to(_F64)
    slack = p_err.amax(dim=1)[:, None] + _F32_REL * scores
    slack[(scores == 0) & terms.exact_self[None, :]] = 0.0
    return scores, slack


def _greedy_sources(blocks, mask, device_centers, terms, device_terms, gamma) -> np.ndarray:
    has = device_centers.has
    p = torch.zeros((mask.shape[0], device_centers.centers.k), dtype=_F64, device=has.device)
    bound = torch.zeros_like(p)
    for m in np.flatnonzero(terms.pattern):
        sq, norms = _modality_sq_dists(blocks[m], device_centers.blocks[m],
                                       device_centers.norms[m])
        p += sq * has[:, m][None, :]
        bound += norms * has[:, m][None, :]
    scores, slack = _candidate_scores(p, gamma * bound, device_terms)
    scores, slack = _host(scores), _host(slack)
    chosen, ambiguous = _choose(scores, terms.eligible, slack)
    if ambiguous.size:
        index = torch.from_numpy(ambiguous).to(has.device)
        exact_blocks = [_host(b[index]).astype(np.float64) for b in blocks]
        exact_scores = terms.exact_candidate_scores(exact_blocks)
        chosen[ambiguous], _ = _choose(exact_scores, terms.eligible, np.zeros_like(exact_scores))
    return chosen


@_cpu_threads
def soft_complete(
    view: TorchView,
    plan: CompletionPlan,
    values: list[np.ndarray],
    temperature: list[float | None],
    out: list[np.ndarray | None],
    gamma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ul4m4.complete.soft_complete` with the distances on ``view.device``.

    The weights (the shared ``_soft_weights``) and the weighted means are formed
    on the host from the (B, k) distances.
    """
    centers = plan.centers
    device_centers = DeviceCenters.of(centers, view.device)
    n, n_mod = view.mask.shape
    top = np.full((n, n_mod), OBSERVED, dtype=np.int64)
    weight = np.full((n, n_mod), np.nan)
    fallback = np.zeros((n, n_mod), dtype=bool)
    def distances(rows, blocks, mask):
        sq, err = partial_sq_dists(blocks, mask, device_centers, gamma)
        return _host(sq), _host(err), mask

    for rows, (sq, err, mask) in view.map_device_chunks(distances):
        soft_fill_chunk(rows, sq, err, mask, centers.mask, values, temperature, out, top,
                        weight, fallback)
    if fallback.any():
        fill_stuck_greedily(complete_sources(view, plan, gamma), fallback, values, out, top,
                            weight)
    return top, weight


# ----------------------------------------------------------------- engine
class TorchEngine:
    """The ``backend="torch"`` engine: NumPy control logic, tensor kernels on ``device``.

    Parameters
    ----------
    device : str, torch.device or None
        Where the kernels run; ``None`` uses the device of tensor input, else the CPU.

    Examples
    --------
    >>> TorchEngine("cpu").name
    'torch'
    """

    name = "torch"

    def __init__(self, device: Any = None) -> None:
        try:
            self.device = None if device is None else torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device must name a torch device, got {device!r} ({exc})") from None

    def kmeans_plusplus(self, view: Standardized, k: int, rng: np.random.RandomState,
                        gamma: float) -> tuple[Centers, np.ndarray]:
        """:func:`kmeans_plusplus` on ``view`` (a plain view is moved to this engine's device)."""
        return kmeans_plusplus(self._torch_view(view), k, rng, gamma)

    def random_init(self, view: Standardized, k: int, rng: np.random.RandomState) -> Centers:
        """The NumPy engine's :func:`~ul4m4.cluster.random_init` (it only reads k rows)."""
        return random_init(view, k, rng)

    def lloyd(self, view: Standardized, centers: Centers, **kwargs: Any) -> LloydResult:
        """:func:`lloyd` on ``view``."""
        return lloyd(self._torch_view(view), centers, **kwargs)

    def assign(self, view: Standardized, centers: Centers, gamma: float):
        """:func:`assign` on ``view``."""
        return assign(self._torch_view(view), centers, gamma)

    def complete_sources(self, view: Standardized, plan: CompletionPlan, gamma: float,
                         **kwargs: Any) -> np.ndarray:
        """:func:`complete_sources` on ``view``."""
        return complete_sources(self._torch_view(view), plan, gamma, **kwargs)

    def soft_complete(self, view: Standardized, plan: CompletionPlan, values, temperature, out,
                      gamma: float):
        """:func:`soft_complete` on ``view``."""
        return soft_complete(self._torch_view(view), plan, values, temperature, out, gamma)

    def for_input(self, caller: _Caller) -> TorchEngine:
        """This engine, on the input's device when no device was given."""
        if self.device is not None or caller.device is None:
            return self
        return TorchEngine(caller.device)

    def _torch_view(self, view: Standardized) -> TorchView:
        if isinstance(view, TorchView):
            return view
        return self.view(view.data, view.mean, view.scale, view.dtype, view.chunk_rows,
                         view.n_threads, view.cache_bytes)

    def error_factor(self, dims: Sequence[int], dtype: np.dtype) -> float:
        """The GEMM error factor; TF32's unit roundoff when CUDA float32 matmuls may use it."""
        factor = error_factor(dims, dtype)
        if np.dtype(dtype) == np.float32 and _tf32_possible(self.device):
            factor *= _TF32_EPS / np.finfo(np.float32).eps
        return factor

    def to_host(self, X: Any) -> tuple[Any, _Caller]:
        """Host (NumPy) arrays for validation, and the conversion back to the caller's type.

        Tensors become NumPy arrays (without a copy on the CPU); all tensors of
        one input must be on one device, which is where results are returned.
        """
        host, device = _to_host(X)
        return host, _Caller(device)

    def view(
        self,
        data: Multimodal,
        mean: Sequence[np.ndarray],
        scale: Sequence[np.ndarray],
        dtype: np.dtype,
        chunk_rows: int,
        n_threads: int = 1,
        cache_bytes: int = 0,
    ) -> TorchView:
        """The z-scored view: NumPy rows for the shared logic, tensors for the kernels."""
        device = torch.device("cpu") if self.device is None else self.device
        return TorchView(
            data, mean, scale, dtype, chunk_rows, n_threads, cache_bytes, device=device
        )
