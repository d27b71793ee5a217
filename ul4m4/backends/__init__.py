"""Compute backends of :class:`ul4m4.UL4M4Imputer`: engines of the protocol in :mod:`ul4m4.engine`.

* ``"numpy"`` (:class:`NumpyEngine`): in-process NumPy and compiled kernels.
* ``"torch"`` (``backends/_torch.py``): the same kernels on PyTorch tensors, on any
  device.
* ``"dask"`` (``backends/dask/``): row-chunked ``dask.array`` input on a
  ``dask.distributed`` cluster (or dask's local scheduler): the NumPy kernels
  mapped over row blocks by one block store per worker, sums added along a
  fixed pairwise tree.

:data:`ENGINES` is the one list of backends: the estimator's ``backend``
parameter accepts its names (checked, documented and offered by the command
line from it), so a new backend is one module plus one :class:`Backend` line
here. Engines are loaded lazily, so importing :mod:`ul4m4` never imports
PyTorch or dask.

Examples
--------
>>> from ul4m4.backends import get_engine
>>> get_engine("numpy").name
'numpy'
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .numpy_engine import NumpyEngine

__all__ = [
    "AsGiven",
    "Backend",
    "ENGINES",
    "NumpyEngine",
    "backend_names",
    "check_device",
    "engine_for_input",
    "get_engine",
]


@dataclass(frozen=True)
class Backend:
    """One registered backend: where its engine and its input adapter live.

    Attributes
    ----------
    engine : str
        ``"module:Class"`` of the engine; the class is called with the device.
    inputs : str or None
        ``"module:function"`` of the input adapter, ``function(X, engine)`` ->
        ``(X as host arrays, the engine for this input, output converter)``
        (the converter's ``wrap`` turns results back into the caller's type,
        e.g. tensors on the input's device). None: the input is read as given
        and results are returned as they are (:class:`AsGiven`).
    cpu_only : str or None
        Why the backend takes no device but the CPU (the end of the error
        message for another ``device``); None where it takes any device its
        engine accepts.
    """

    engine: str
    inputs: str | None = None
    cpu_only: str | None = None


#: ``name -> Backend`` of every backend, in the order the documentation lists them.
ENGINES: dict[str, Backend] = {
    "numpy": Backend(f"{__name__}.numpy_engine:NumpyEngine",
                     cpu_only="the numpy backend runs on the CPU"),
    "torch": Backend(f"{__name__}._torch:TorchEngine", inputs=f"{__name__}._torch:tensor_input"),
    "dask": Backend(f"{__name__}.dask:DaskEngine",
                    cpu_only="backend='dask' runs the NumPy engine on the workers' CPUs"),
}


class AsGiven:
    """The output converter of input read as given: results are returned as they are."""

    def wrap(self, value: Any) -> Any:
        return value


def backend_names() -> tuple[str, ...]:
    """The names ``backend`` accepts: those of :data:`ENGINES`, as registered now."""
    return tuple(ENGINES)


def check_device(backend: str, device: Any) -> None:
    """Raise ValueError where ``backend`` cannot run on ``device`` (a CPU-only backend).

    The one place the rule lives; the estimator's parameter check calls it. A
    device the engine itself must interpret (e.g. ``"cuda:7"`` for torch) is
    checked when that engine is made.

    Examples
    --------
    >>> check_device("numpy", "cpu")
    >>> check_device("numpy", "cuda")
    Traceback (most recent call last):
    ...
    ValueError: device='cuda' needs backend='torch'; the numpy backend runs on the CPU
    """
    reason = ENGINES[backend].cpu_only
    if reason is not None and device is not None and str(device) != "cpu":
        devices = " or ".join(repr(n) for n, b in ENGINES.items() if b.cpu_only is None)
        raise ValueError(f"device={str(device)!r} needs backend={devices}; {reason}")


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
        parameter check, :func:`check_device`, admits only ``None`` or ``"cpu"``).

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

    The backend's input adapter (:attr:`Backend.inputs`) reads ``X``: torch
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
