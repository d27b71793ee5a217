"""Compute backends of :class:`ul4m4.UL4M4Imputer`: engines of the protocol in :mod:`ul4m4.engine`.

* ``"numpy"`` (:class:`NumpyEngine`): in-process NumPy and compiled kernels.
* ``"torch"`` (``backends/_torch.py``): the same kernels on PyTorch tensors, on any
  device.
* ``"dask"`` (``backends/dask/``): row-chunked ``dask.array`` input on a
  ``dask.distributed`` cluster (or dask's local scheduler): the NumPy kernels
  mapped over row blocks by one block store per worker, sums added along a
  fixed pairwise tree.

Engines are loaded lazily from :data:`ENGINES`, so importing :mod:`ul4m4` never
imports PyTorch or dask.

Examples
--------
>>> from ul4m4.backends import get_engine
>>> get_engine("numpy").name
'numpy'
"""

from __future__ import annotations

import importlib
from typing import Any

from ..settings import BACKENDS
from .numpy_engine import NumpyEngine

__all__ = ["BACKENDS", "ENGINES", "NumpyEngine", "get_engine"]

#: ``name -> "module:Class"`` of every engine.
ENGINES = {
    "numpy": f"{__name__}.numpy_engine:NumpyEngine",
    "torch": f"{__name__}._torch:TorchEngine",
    "dask": f"{__name__}.dask:DaskEngine",
}


def get_engine(backend: str, device: Any = None) -> Any:
    """The engine of ``backend`` for ``device``.

    Parameters
    ----------
    backend : str
        One of :data:`BACKENDS`.
    device : str, torch.device or None
        Where the torch backend computes (``None``: the device of tensor input,
        else the CPU). The other backends accept only ``None`` or ``"cpu"``.

    Returns
    -------
    engine
        An object implementing :class:`ul4m4.engine.Engine`.

    Examples
    --------
    >>> type(get_engine("numpy")).__name__
    'NumpyEngine'
    """
    if backend not in ENGINES:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    module_name, class_name = ENGINES[backend].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"backend={backend!r} needs an optional dependency that is not installed ({exc}); "
            f"install the '{backend}' extra, e.g. pip install 'ul4m4[{backend}]'"
        ) from exc
    return getattr(module, class_name)(device)
