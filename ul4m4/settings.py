"""The estimator's parameters resolved once into :class:`Settings`.

:class:`~ul4m4.imputer.UL4M4Imputer` stores its constructor parameters as given
(scikit-learn's convention); ``fit`` checks them against the parameter table of
:mod:`ul4m4.parameters` (:data:`PARAMETER_CONSTRAINTS`, and the rules between
parameters below) and resolves them into an immutable :class:`Settings`, which
is all the layers below ever read.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ._utils.validation import Interval, check_params
from .parameters import AUTO_K, PARAMETERS, check_device
from .validation import Multimodal, check_multimodal, check_no_empty_samples

__all__ = [
    "AUTO_K",
    "PARAMETER_CONSTRAINTS",
    "SOFT_TEMPERATURES",
    "Settings",
    "available_cpus",
    "resolve_init",
    "resolve_n_jobs",
    "resolve_settings",
]

#: Soft-completion temperatures that ``completion="auto"`` tries.
SOFT_TEMPERATURES = (0.02, 0.05, 0.1, 0.2)
#: Working memory (bytes) of one automatic chunk of rows.
WORKING_MEMORY = 64 * 2**20
#: Automatic chunks per worker thread and pass, at least: enough to keep every
#: thread busy to the end of a pass. Beyond that, larger chunks are faster (a
#: pass pays per chunk for the GEMM's set-up, a Python call and a hand-off).
CHUNKS_PER_THREAD = 2
#: Most rows in an automatic chunk: past this, per-chunk costs are already negligible
#: and narrow data would only hold more memory per chunk in flight.
MAX_CHUNK_ROWS = 1 << 14

#: Allowed values of every constructor parameter of :class:`~ul4m4.UL4M4Imputer`
#: (from the parameter table; ``backend`` reads the backend registry when checked).
PARAMETER_CONSTRAINTS: dict[str, list] = {
    name: parameter.allowed for name, parameter in PARAMETERS.items()}
_INT1 = Interval(numbers.Integral, 1)


@dataclass(frozen=True)
class Settings:
    """The resolved, validated parameters of one fit (read by every lower layer)."""

    n_clusters: int | str
    max_iter: int
    tol: float
    init: Any
    random_state: Any
    dtype: np.dtype
    batch_size: int | None
    reference_one_step: bool
    verbose: int
    empty: str
    partial: str
    completion: str
    temperature: float
    n_init: int
    k_grid: tuple[int, ...]
    selection_fraction: float
    shrinkage: float
    n_threads: int
    algorithm: str
    backend: str
    device: Any
    n_ensemble: int

    @property
    def auto(self) -> bool:
        """Whether a label-free model selection runs (``"auto"`` k or completion)."""
        return self.auto_k or self.completion == "auto"

    @property
    def auto_k(self) -> bool:
        """Whether k is selected (``n_clusters="auto"``)."""
        return self.n_clusters in AUTO_K

    @property
    def largest_k(self) -> int:
        return max(self.k_grid) if self.auto_k else int(self.n_clusters)

    def chunk_rows(self, dims: list[int], n_samples: int) -> int:
        """Rows per chunk of every pass: ``batch_size``, or from the memory budget.

        A chunk holds its z-scored rows and, per row, a few (k,) float64 lines
        (distances, bounds, GEMM products); it is at most ``WORKING_MEMORY``
        bytes, and small enough that each of ``n_threads`` workers gets
        ``CHUNKS_PER_THREAD`` chunks.
        """
        if self.batch_size is not None:
            return int(self.batch_size)
        row_bytes = self.dtype.itemsize * sum(dims) + 8 * 8 * self.largest_k
        balanced = -(-int(n_samples) // (CHUNKS_PER_THREAD * self.n_threads))
        return int(np.clip(min(WORKING_MEMORY // row_bytes, balanced), 256, MAX_CHUNK_ROWS))


def resolve_settings(params: Mapping[str, Any]) -> Settings:
    """Check ``params`` (an estimator's ``get_params()``) and resolve them.

    Raises ValueError or TypeError naming the first invalid parameter.
    """
    params = dict(params)
    device = params["device"]
    if device is not None and type(device).__name__ == "device":
        device = str(device)  # a torch.device, checked by its name
    check_params({**params, "device": device}, PARAMETER_CONSTRAINTS)
    grid = tuple(params["k_grid"])
    if not grid:
        raise ValueError(f"k_grid must be a non-empty tuple of integers, got {params['k_grid']!r}")
    for k in grid:
        check_params({"every k_grid entry": k}, {"every k_grid entry": [_INT1]})
    if params["algorithm"] == "minibatch" and params["reference_one_step"] is True:
        raise ValueError("reference_one_step=True reproduces Lloyd's first step; it "
                         "cannot be combined with algorithm='minibatch'")
    check_device(params["backend"], device)
    n_ensemble = 1 if params["n_ensemble"] is None else params["n_ensemble"]
    return Settings(
        n_clusters=params["n_clusters"], max_iter=int(params["max_iter"]),
        tol=float(params["tol"]), init=params["init"], random_state=params["random_state"],
        dtype=_resolve_dtype(params["dtype"]), batch_size=params["batch_size"],
        reference_one_step=bool(params["reference_one_step"]), verbose=int(params["verbose"]),
        empty=params["empty"], partial=params["partial"], completion=params["completion"],
        temperature=float(params["temperature"]), n_init=int(params["n_init"]),
        k_grid=tuple(int(k) for k in grid),
        selection_fraction=float(params["selection_fraction"]),
        shrinkage=float(params["shrinkage"]),
        n_threads=resolve_n_jobs(params["n_jobs"]),
        algorithm=params["algorithm"], backend=params["backend"], device=params["device"],
        n_ensemble=int(n_ensemble),
    )


def resolve_init(settings: Settings, data: Multimodal) -> Settings:
    """``settings`` with explicit ``init`` centres checked against the training data, once.

    The one check of the centres that needs the data (their modalities, widths,
    values, and that each carries a modality): the estimator's fit runs it right
    after the data scan, so every seeding of the fit (``n_init``, ensemble
    members, reseeds) reads the checked :class:`~ul4m4.validation.Multimodal`. Named
    seedings (``"k-means++"``, ``"random"``) are returned unchanged.
    """
    if isinstance(settings.init, str | Multimodal):
        return settings
    try:
        init = check_multimodal(
            settings.init, names=data.names, dims=dict(zip(data.names, data.dims, strict=True)),
            require_observed=False,
        )
        # Not the samples' empty="mean" hint: a centre must carry some modality.
        check_no_empty_samples(init.mask, hint=False)
    except (ValueError, TypeError) as exc:
        # The validator speaks of samples; here its rows are initial centres.
        message = str(exc).replace("samples [", "centres [").replace("sample ", "centre ")
        raise type(exc)(f"init: {message}") from None
    return replace(settings, init=init)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this OS
        return max(1, os.cpu_count() or 1)


def resolve_n_jobs(n_jobs: int | None, cpus: int | None = None) -> int:
    """Threads for ``n_jobs``, as in scikit-learn: -1 all CPUs, -2 all but one, ...

    ``None`` also means every CPU (the passes are thread-parallel and give the
    same results for any number of threads). A negative value ``-j`` means
    ``cpus + 1 - j`` threads, at least 1.

    Examples
    --------
    >>> [resolve_n_jobs(n, cpus=8) for n in (None, 1, 3, 16, -1, -2, -8, -20)]
    [8, 1, 3, 16, 8, 7, 1, 1]
    """
    cpus = available_cpus() if cpus is None else int(cpus)
    if n_jobs is None:
        return cpus
    n_jobs = int(n_jobs)
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return n_jobs


def _resolve_dtype(dtype: Any) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return resolved
