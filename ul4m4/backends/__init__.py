"""Compute backends of :class:`ul4m4.UL4M4Imputer`.

A backend is an *engine*: an object with the stage-1 and stage-2 drivers of the
NumPy engine (:mod:`ul4m4.cluster`, :mod:`ul4m4.complete`) under the same names
and signatures, a factory for the row-chunked data view they read, and the
conversion of the caller's input to host arrays and of results back to the
caller's type. The estimator talks only to an engine, so a backend is one entry
in :data:`ENGINES`.

* ``"numpy"`` (:class:`NumpyEngine`): the in-process NumPy engine itself; every
  method is the NumPy function, so results are those of the engine unchanged.
* ``"torch"`` (:class:`ul4m4.backends._torch.TorchEngine`): the same algorithm
  with its heavy kernels on PyTorch tensors, on any device.
* ``"dask"`` (:mod:`ul4m4.backends.dask`): row-chunked ``dask.array`` input on a
  ``dask.distributed`` cluster (or dask's local scheduler); each Lloyd iteration
  maps the NumPy E-step over chunks and reduces only k x D sums. Dispatched by the
  estimator itself, not an engine.

Engines are resolved lazily, so importing :mod:`ul4m4` never imports PyTorch.

Examples
--------
>>> from ul4m4.backends import get_engine
>>> get_engine("numpy").name
'numpy'
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..cluster import assign, kmeans_plusplus, lloyd, random_init
from ..complete import complete_sources, soft_complete
from ..data import Multimodal, Standardized
from ..distance import error_factor

__all__ = ["BACKENDS", "ENGINES", "NumpyEngine", "get_engine"]

#: Backend names the estimator accepts. ``"dask"`` is dispatched by the estimator
#: itself to :mod:`ul4m4.backends.dask`; the others are engines of :data:`ENGINES`.
BACKENDS = ("numpy", "torch", "dask")

#: ``name -> "module:Class"`` of every engine that can be loaded.
ENGINES = {
    "numpy": f"{__name__}:NumpyEngine",
    "torch": f"{__name__}._torch:TorchEngine",
}


class _Identity:
    """Output conversion of host input: results are returned as they are."""

    def wrap(self, value: Any) -> Any:
        return value


class NumpyEngine:
    """The NumPy engine, unchanged: every method is the function of the core modules."""

    name = "numpy"

    def __init__(self, device: Any = None) -> None:
        if device is not None and str(device) != "cpu":
            raise ValueError(
                f"device={device!r} needs backend='torch'; the numpy backend runs on the CPU"
            )
        self.device = device

    kmeans_plusplus = staticmethod(kmeans_plusplus)
    random_init = staticmethod(random_init)
    lloyd = staticmethod(lloyd)
    assign = staticmethod(assign)
    complete_sources = staticmethod(complete_sources)
    soft_complete = staticmethod(soft_complete)

    def error_factor(self, dims: Sequence[int], dtype: np.dtype) -> float:
        """The GEMM rounding factor of :func:`ul4m4.distance.error_factor`."""
        return error_factor(dims, dtype)

    def to_host(self, X: Any) -> tuple[Any, _Identity]:
        """The input as it is, and an identity output conversion."""
        return X, _Identity()

    def for_input(self, caller: Any) -> NumpyEngine:
        """The engine for one call's input (the numpy engine always runs here)."""
        return self

    def view(
        self,
        data: Multimodal,
        mean: Sequence[np.ndarray],
        scale: Sequence[np.ndarray],
        dtype: np.dtype,
        chunk_rows: int,
        n_threads: int = 1,
        cache_bytes: int = 0,
    ) -> Standardized:
        """The row-chunked z-scored view the drivers read."""
        return Standardized(data, mean, scale, dtype, chunk_rows, n_threads, cache_bytes)


def get_engine(backend: str, device: Any = None) -> Any:
    """The engine of ``backend`` for ``device``.

    Parameters
    ----------
    backend : str
        One of :data:`BACKENDS`.
    device : str, torch.device or None
        Where the torch backend computes (``None``: the device of tensor input,
        else the CPU). The numpy backend accepts only ``None`` or ``"cpu"``.

    Returns
    -------
    engine
        An object with the drivers of the NumPy engine under the same names.

    Examples
    --------
    >>> type(get_engine("numpy")).__name__
    'NumpyEngine'
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend not in ENGINES:
        raise ValueError(f"backend={backend!r} is not available in this installation")
    module_name, class_name = ENGINES[backend].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"backend={backend!r} needs an optional dependency that is not installed ({exc}); "
            f"install the '{backend}' extra, e.g. pip install 'ul4m4[{backend}]'"
        ) from exc
    return getattr(module, class_name)(device)
