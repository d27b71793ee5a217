"""PyTorch backend: the UL4M4 algorithm with its heavy kernels on tensors, on any device.

Design
------
The drivers (:mod:`ul4m4.cluster`, :mod:`ul4m4.complete`, :mod:`ul4m4.distance`)
stay the one implementation of the algorithm's *decisions*. This module reuses
them unchanged and swaps only the kernels of the passes over all rows, whose
cost grows with ``n * d``:

=====================================  =========================================
shared with the NumPy engine           on tensors here
=====================================  =========================================
every driver (seeding, Lloyd, mini-     masked-GEMM partial distances per chunk
batch, selection, completion rules     (``||x||^2 + ||c||^2 - 2 x.c`` and the
on host blocks), every pass of         rigorous rounding bound, in float64)
``ChunkedEngine``, exact argmin and    per-cluster float64 member sums
its float64 recheck, empty-cluster     (CPU: the shared row-order compiled
reseeding                              kernel on the tensors' memory; other
                                       devices: ``index_put_`` with accumulate)
=====================================  =========================================

:class:`TorchEngine` is kernels only: it subclasses
:class:`ul4m4.engine.ChunkedEngine`, whose passes (and the drivers above them)
are shared with the NumPy engine, and supplies the per-chunk kernels on tensors.
Only small (B, k) float64 arrays, labels and the rows that need an exact recheck
cross from the device to the host.

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
* Completion is bit-identical: it runs on the view's host blocks, with the
  NumPy kernels (the greedy candidate scores, the fixed-order float64 distances
  of the soft rule), whatever the device.

Threads: on the CPU, chunks are processed on ``n_jobs`` worker threads with one
PyTorch intra-op thread each (the NumPy engine's ``map_chunks``), so the two
backends use the cores the same way. Small calls (one chunk or a few MiB) run on
the calling thread and leave ``torch.get_num_threads()`` as it is. Every option (model selection, mini-batch,
explicit ``init``, ``out_dir``) runs on this engine.

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

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._utils.chunks import iter_row_chunks
from ..blocks import PackedBlocks
from ..centers import Centers
from ..distance import error_factor
from ..engine import ChunkedEngine
from ..rowsums import RowOrderSums
from ..validation import Multimodal
from ..view import Standardized

__all__ = [
    "DeviceCenters",
    "DeviceSums",
    "TorchEngine",
    "TorchView",
    "partial_sq_dists",
    "standardize_on_device",
    "tensor_input",
]

_F64 = torch.float64
#: Unit roundoff of TF32 (10 explicit mantissa bits), for the error bound.
_TF32_EPS = 2.0**-10


# ------------------------------------------------------- input and output
class _TensorOutput:
    """Converts results back to the caller's type: tensors on ``device``, or as they are.

    ``dtypes`` holds, per input position, the tensor dtype NumPy has no equivalent
    for (``torch.bfloat16``, read as float32): the filled arrays at those positions
    go back to it. The filled arrays come in the input's order (a mapping's keys,
    a list's positions), so positions pair them.
    """

    def __init__(self, device: torch.device | None,
                 dtypes: Sequence[torch.dtype | None] = ()) -> None:
        self.device = device
        self.dtypes = list(dtypes)

    def wrap(self, value: Any) -> Any:
        if self.device is None:
            return value
        # A mapping is transform's filled arrays; a tuple starting with one adds
        # sources and weights, which keep their own dtypes.
        if isinstance(value, tuple) and value and isinstance(value[0], Mapping):
            return (self._filled(value[0]), *(self._tensors(v) for v in value[1:]))
        if isinstance(value, Mapping):
            return self._filled(value)
        return self._tensors(value)

    def _filled(self, value: Mapping) -> dict:
        out = {}
        for i, (key, array) in enumerate(value.items()):
            tensor = self._tensors(array)
            dtype = self.dtypes[i] if i < len(self.dtypes) else None
            # float32 -> bfloat16 is exact on observed rows (they were bfloat16).
            out[key] = tensor if dtype is None else tensor.to(dtype)
        return out

    def _tensors(self, value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return torch.from_numpy(value).to(self.device)
        if isinstance(value, Mapping):
            return {k: self._tensors(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return type(value)(self._tensors(v) for v in value)
        return value


def _tf32_possible(device: torch.device | None) -> bool:
    """Whether float32 matmuls on ``device`` may round their inputs to TF32."""
    cuda = device is None or device.type == "cuda"
    tf32 = (torch.backends.cuda.matmul.allow_tf32
            or torch.get_float32_matmul_precision() != "highest")
    return bool(cuda and torch.cuda.is_available() and tf32)


def _to_host(X: Any) -> tuple[Any, _TensorOutput]:
    if isinstance(X, Mapping):
        items = list(X.items())
    elif isinstance(X, list | tuple):
        items = list(enumerate(X))
    else:
        return X, _TensorOutput(None)
    devices = {name: v.device for name, v in items if isinstance(v, torch.Tensor)}
    if not devices:
        return X, _TensorOutput(None)
    if len(set(devices.values())) > 1:
        raise ValueError(f"all tensors of X must be on one device, got {devices}")
    host = [(name, _tensor_to_numpy(str(name), v)) for name, v in items]
    values = dict(host) if isinstance(X, Mapping) else [v for _, v in host]
    narrow = [v.dtype if isinstance(v, torch.Tensor) and v.dtype == torch.bfloat16 else None
              for _, v in items]
    return values, _TensorOutput(next(iter(devices.values())), narrow)


def _tensor_to_numpy(name: str, value: Any) -> Any:
    if not isinstance(value, torch.Tensor):
        return value
    if value.is_complex() or value.dtype == torch.bool:
        raise TypeError(
            f"modality {name!r}: expected a real floating or integer tensor, got {value.dtype}"
        )
    if value.dtype == torch.bfloat16:
        # NumPy has no bfloat16: read it as float32 (exactly), compute as for float32
        # input, and hand the filled tensor back as bfloat16 (see _TensorOutput).
        return value.detach().cpu().float().numpy()
    return value.detach().cpu().numpy()


def tensor_input(X: Any, engine: TorchEngine) -> tuple[Any, TorchEngine, _TensorOutput]:
    """The torch backend's input adapter (see :class:`ul4m4.parameters.Backend`).

    Tensors become NumPy arrays (without a copy on the CPU; bfloat16, which
    NumPy lacks, as a float32 copy, and filled arrays come back as bfloat16);
    all tensors of one input must be on one device, which is where results are
    returned and, when ``engine`` has no device of its own, where it computes.
    """
    X, output = _to_host(X)
    if engine.device is None and output.device is not None:
        engine = TorchEngine(output.device)
    return X, engine, output


# ------------------------------------------------------------------- view
@dataclass
class TorchView(Standardized):
    """A :class:`~ul4m4.view.Standardized` view that also yields its chunks as tensors.

    NumPy rows (``rows``, ``chunks``) serve the shared logic (seed rows,
    reseeding, exact rechecks); ``device_rows`` and ``map_device_chunks`` serve
    the kernels, with the same values bit for bit: on the CPU they are the NumPy
    blocks themselves, on other devices the raw rows are moved there and z-scored
    with the same elementwise IEEE operations, ``(fl(x) - fl(mu)) / fl(sigma)``.
    """

    # Zero-filled chunks: the tensor kernels take whole (B, d_m) blocks.
    packed: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _device_cache: list | None = field(default=None, init=False, repr=False)
    _stats: tuple | None = field(default=None, init=False, repr=False)

    @property
    def on_cpu(self) -> bool:
        return self.device.type == "cpu"

    def device_stats(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The statistics in the working dtype, on the device (made once)."""
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
        return standardize_on_device(self, rows)

    def map_device_chunks(self, fn: Callable[[slice, list[torch.Tensor], np.ndarray], Any]):
        """Yield ``(rows, fn(rows, blocks, mask))`` for every chunk, in row order.

        On the CPU this is :meth:`~ul4m4.view.Standardized.map_chunks` (chunks
        z-scored and processed on ``n_threads`` worker threads) with the blocks
        handed over as tensors; on other devices the chunks are processed one
        after the other, the device providing the parallelism.
        """
        if self.on_cpu:
            def on_tensors(rows, blocks, mask):
                return fn(rows, [torch.from_numpy(b) for b in blocks.full()], mask)

            yield from self.map_chunks(on_tensors)
            return
        for rows, blocks, mask in self.device_chunks():
            yield rows, fn(rows, blocks, mask)

    def device_chunks(self) -> Iterator[tuple[slice, list[torch.Tensor], np.ndarray]]:
        """Yield ``(rows, blocks, mask)`` with device tensor blocks, in row order.

        Data whose z-scored copy fits in ``cache_bytes`` are z-scored once, on the
        first pass, and kept on the device.
        """
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


def standardize_on_device(view: TorchView, rows: slice | np.ndarray) -> list[torch.Tensor]:
    """Move raw rows to ``view.device`` and z-score them there, as NumPy does on the host."""
    mask = view.data.mask[rows]
    means, scales = view.device_stats()
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
    """The tensors of a :class:`~ul4m4.centers.Centers` on a device."""

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
    blocks: Sequence[torch.Tensor], mask: np.ndarray, centers: DeviceCenters, rounding: float
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
    err = torch.where(shares, rounding * bound / count, 0.0)
    return sq, err


class DeviceSums:
    """Row-order float64 member sums on a device (chunks arrive in row order, one at a time).

    ``[running; block]`` is scattered into zeros with ``index_put_(accumulate=True)``,
    whose sort-based CUDA kernel adds the entries of one index one after the other
    in stable-sorted order: ``0 + running + x_a + x_b + ...``, the same sequence of
    float64 additions as the compiled kernel's (the zero rows of a missing modality
    add +0.0, which changes no sum).
    """

    def __init__(self, k: int, dims: Sequence[int], device: torch.device) -> None:
        self.k = k
        self.device_sums = [torch.zeros((k, d), dtype=_F64, device=device) for d in dims]
        self.counts = np.zeros((k, len(dims)))

    def chunk_members(self, labels: np.ndarray, blocks: list[torch.Tensor], mask: np.ndarray):
        return labels, blocks, mask

    def best_of(self, members) -> None:
        """No per-row distances here: the E-step keeps the GEMM's."""
        return None

    def compute_and_add(self, rows: slice, compute: Callable[[], tuple[Any, Any]]) -> Any:
        result, (labels, blocks, mask) = compute()
        index = torch.from_numpy(labels).to(blocks[0].device)
        for m, block in enumerate(blocks):
            running = self.device_sums[m]
            ids = torch.cat([torch.arange(self.k, device=running.device), index])
            values = torch.cat([running, block.to(_F64)])
            self.device_sums[m] = torch.zeros_like(running).index_put_((ids,), values,
                                                                        accumulate=True)
            self.counts[:, m] += np.bincount(labels, weights=mask[:, m], minlength=self.k)
        return result

    @property
    def sums(self) -> list[np.ndarray]:
        return [_host(s) for s in self.device_sums]


class _TensorRowSums(RowOrderSums):
    """The compiled row-order sums fed with CPU tensors (their memory, no copy)."""

    def chunk_members(self, labels, blocks, mask):
        return super().chunk_members(
            labels, PackedBlocks.of_full([b.numpy() for b in blocks], mask), mask)


# ----------------------------------------------------------------- engine
class TorchEngine(ChunkedEngine):
    """The ``backend="torch"`` engine: the shared passes, tensor kernels on ``device``.

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
        if self.device is not None and self.device.type == "cuda" \
                and not torch.cuda.is_available():
            raise ValueError(
                f"device={str(device)!r}: no CUDA device is available to PyTorch (this build "
                f"of torch {torch.__version__} or this machine has none); use device='cpu'"
            )

    # input, output, views
    def rounding_factor(self, dims: Sequence[int], dtype: np.dtype) -> float:
        """The GEMM error factor; TF32's unit roundoff when CUDA float32 matmuls may use it."""
        factor = error_factor(dims, dtype)
        if np.dtype(dtype) == np.float32 and _tf32_possible(self.device):
            factor *= _TF32_EPS / np.finfo(np.float32).eps
        return factor

    def view(self, data: Multimodal, mean: Sequence[np.ndarray], scale: Sequence[np.ndarray],
             dtype: np.dtype, chunk_rows: int, n_threads: int = 1,
             cache_bytes: int = 0) -> TorchView:
        """The z-scored view: NumPy rows for the shared logic, tensors for the kernels."""
        device = torch.device("cpu") if self.device is None else self.device
        return TorchView(data, mean, scale, dtype, chunk_rows, n_threads, cache_bytes,
                         device=device)

    # kernels
    def native_centers(self, centers: Centers, view: TorchView) -> DeviceCenters:
        return DeviceCenters.of(centers, view.device)

    def sq_dists(self, view, rows, blocks, mask, native: DeviceCenters, rounding: float):
        sq, err = partial_sq_dists(blocks, mask, native, rounding)
        return _host(sq), _host(err)

    def host_rows(self, blocks: list[torch.Tensor], rows: np.ndarray) -> list[np.ndarray]:
        index = torch.from_numpy(rows).to(blocks[0].device)
        return [_host(b[index]) for b in blocks]

    def map_chunks(self, view: TorchView, fn: Callable):
        return view.map_device_chunks(fn)

    def member_sums(self, view: TorchView, centers: Centers):
        dims = [b.shape[1] for b in centers.blocks]
        if view.on_cpu:
            return _TensorRowSums(centers.k, dims)
        return DeviceSums(centers.k, dims, view.device)

    def kernel_threads(self, view: TorchView):
        """One PyTorch intra-op thread per chunk worker on the CPU (no nested pools).

        A small pass (:attr:`~ul4m4.view.Standardized.small`, e.g. a serving
        call of a few rows) runs on the calling thread and leaves PyTorch's
        setting alone: it is process-wide, and concurrent calls that set and
        restore it could leave it changed.
        """
        if not view.on_cpu or view.small:
            return contextlib.nullcontext()
        previous = torch.get_num_threads()
        if previous == 1:
            return contextlib.nullcontext()
        return _torch_threads(previous)


@contextlib.contextmanager
def _torch_threads(previous: int):
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
