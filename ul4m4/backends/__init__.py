"""Compute backends of :class:`ul4m4.UL4M4Imputer`: engines of the protocol in :mod:`ul4m4.engine`.

* ``"numpy"`` (:class:`NumpyEngine`): in-process NumPy and compiled kernels.
* ``"torch"`` (``backends/_torch.py``): the same kernels on PyTorch tensors, on any
  device.
* ``"dask"`` (``backends/dask/``): row-chunked ``dask.array`` input on a
  ``dask.distributed`` cluster (or dask's local scheduler): the NumPy kernels
  mapped over row blocks by one block store per worker, sums added along a
  fixed pairwise tree.

:data:`ENGINES` (defined beside the parameter table, in
:mod:`ul4m4.parameters`, which the parameter check reads without importing an
engine) is the one list of backends: the estimator's ``backend`` parameter
accepts its names (checked, documented and offered by the command line from
it), so a new backend is one module here plus one
:class:`~ul4m4.parameters.Backend` line there.
This module loads engines, input adapters and readers from it lazily, so
importing :mod:`ul4m4` never imports PyTorch or dask. Reading the caller's input
is the backend's input side, not its engine's: :func:`engine_for_input` adapts
it (tensors to arrays) and :func:`check_input` reads it with the registry's
reader and runs the one NaN/inf scan over the engine's ``reduce_blocks``.

Examples
--------
>>> from ul4m4.backends import get_engine
>>> get_engine("numpy").name
'numpy'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from ..parameters import ENGINES, backend_names
from ..validation import Multimodal, check_multimodal, read_arrays
from .numpy_engine import NumpyEngine

__all__ = ["ENGINES", "AsGiven", "NumpyEngine", "check_input", "engine_for_input", "get_engine"]


class AsGiven:
    """The output converter of input read as given: results are returned as they are."""

    def wrap(self, value: Any) -> Any:
        return value


def _load(backend: str, what: str) -> Any:
    module_name, name = what.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"backend={backend!r} needs an optional dependency that is not installed ({exc}); "
            f"install the '{backend}' extra, e.g. pip install 'ul4m4[{backend}]'"
        ) from exc
    return getattr(module, name)


def get_engine(backend: str, device: Any = None) -> Any:
    """The engine of ``backend`` for ``device``.

    Parameters
    ----------
    backend : str
        One of :data:`ENGINES`.
    device : str, torch.device or None
        Where the torch backend computes (``None``: the device of tensor input,
        else the CPU). The CPU-only backends ignore it (the estimator's
        parameter check, :func:`ul4m4.parameters.check_device`, admits only
        ``None`` or ``"cpu"``).

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
        raise ValueError(f"backend must be one of {backend_names()}, got {backend!r}")
    return _load(backend, ENGINES[backend].engine)(device)


def engine_for_input(backend: str, device: Any, X: Any) -> tuple[Any, Any, Any]:
    """One call's engine, its input as host arrays, and the converter of its results.

    The backend's input adapter (:attr:`ul4m4.parameters.Backend.inputs`) reads ``X``: torch
    tensors become NumPy arrays, the engine moves to their device when
    ``device`` is None, and results go back as tensors there. Without one,
    ``X`` is passed on as given and results come back as they are.

    Returns
    -------
    engine, X, output
        ``output.wrap(result)`` is what the caller gets.
    """
    engine = get_engine(backend, device)
    inputs = ENGINES[backend].inputs
    if inputs is None:
        return engine, X, AsGiven()
    X, engine, output = _load(backend, inputs)(X, engine)
    return engine, X, output


def check_input(backend: str, engine: Any, X: Any, *, names: Sequence[str] | None = None,
                dims: Mapping[str, int] | None = None, require_observed: bool = True,
                n_threads: int = 1, partial: str = "raise") -> Multimodal:
    """The caller's input as ``backend``'s arrays, validated: the data set and its mask.

    The registry's reader (:attr:`ul4m4.parameters.Backend.reader`) reads the
    values its way (as given; Dask: row-chunked dask arrays) and the one NaN/inf
    scan runs over ``engine``'s ``reduce_blocks``
    (:func:`ul4m4.validation.check_multimodal`).

    Parameters
    ----------
    backend : str
        One of :data:`ENGINES`: whose reader reads ``X``.
    engine : Engine
        The engine the data set is for (:func:`engine_for_input`).
    X : mapping or list of 2-D arrays
        The input, adapted by :func:`engine_for_input`.
    names, dims, require_observed, n_threads, partial
        As for :func:`ul4m4.validation.check_multimodal`.

    Returns
    -------
    Multimodal
    """
    reader = ENGINES[backend].reader
    read = read_arrays if reader is None else _load(backend, reader)
    return check_multimodal(X, names=names, dims=dims, require_observed=require_observed,
                            n_threads=n_threads, partial=partial, read=read,
                            reduce_blocks=engine.reduce_blocks)
