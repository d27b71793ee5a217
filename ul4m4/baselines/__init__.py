"""Imputation baselines behind one interface, and a registry to build them by name.

Every method has ``fit(X_train) -> self`` and ``transform(X) -> dict`` on
``{modality: (n, d_m)}`` dicts (an all-NaN row is a missing modality), returns no
NaN and keeps observed rows bit-identical, and carries a ``name`` and a
``transductive`` flag.

==================  ==========================================================
name                method
==================  ==========================================================
``zero``            raw zero vector (:class:`ZeroImputer`)
``mean``            per-modality training mean (:class:`MeanImputer`)
``knn``             scikit-learn ``KNNImputer`` on z-scored blocks
``iterative``       scikit-learn ``IterativeImputer`` on z-scored blocks
``nearest``         copy from the nearest training sample having the modality
``softimpute``      inductive SoftImpute (low rank, fitted on training rows only)
``ul4m4``           :class:`ul4m4.UL4M4Imputer` (Lloyd to a fixed point)
``ul4m4-onestep``   UL4M4 with the reference scripts' one-step clustering
``mofa``            iMML's MOFA imputer (optional, transductive; needs ``imml``)
==================  ==========================================================

Examples
--------
>>> import numpy as np
>>> from ul4m4.baselines import make_method
>>> X = {"a": np.array([[1.0], [np.nan], [3.0]]), "b": np.ones((3, 2))}
>>> method = make_method("mean").fit(X)
>>> method.name, method.transductive
('mean', False)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .base import BaseImputer
from .mofa import MOFABaseline
from .nearest import NearestSampleImputer
from .simple import MeanImputer, ZeroImputer
from .sklearn_imputers import IterativeBaseline, KNNBaseline
from .softimpute import SoftImputeBaseline
from .ul4m4_method import UL4M4Method

__all__ = [
    "BaseImputer",
    "IterativeBaseline",
    "KNNBaseline",
    "MOFABaseline",
    "MeanImputer",
    "NearestSampleImputer",
    "SoftImputeBaseline",
    "UL4M4Method",
    "ZeroImputer",
    "available_methods",
    "make_method",
    "method_parameters",
]


def _onestep(**params: Any) -> UL4M4Method:
    if "reference_one_step" in params:
        raise TypeError("'ul4m4-onestep' fixes reference_one_step=True; use 'ul4m4' instead")
    return UL4M4Method(reference_one_step=True, **params)


def _soft(**params: Any) -> UL4M4Method:
    return UL4M4Method(completion="soft", **params)


def _auto(**params: Any) -> UL4M4Method:
    # k is selected (n_clusters="auto" over k_grid), so the benchmark runs it once.
    return UL4M4Method(**{"n_clusters": "auto", **params, "completion": "auto"})


#: Method name -> (class, factory). New methods register here.
METHODS: dict[str, tuple[type[BaseImputer], Callable[..., BaseImputer]]] = {
    "zero": (ZeroImputer, ZeroImputer),
    "mean": (MeanImputer, MeanImputer),
    "knn": (KNNBaseline, KNNBaseline),
    "iterative": (IterativeBaseline, IterativeBaseline),
    "nearest": (NearestSampleImputer, NearestSampleImputer),
    "softimpute": (SoftImputeBaseline, SoftImputeBaseline),
    "ul4m4": (UL4M4Method, UL4M4Method),
    "ul4m4-onestep": (UL4M4Method, _onestep),
    "ul4m4-soft": (UL4M4Method, _soft),
    "ul4m4-auto": (UL4M4Method, _auto),
    "mofa": (MOFABaseline, MOFABaseline),
}


def available_methods() -> list[str]:
    """Names accepted by :func:`make_method`."""
    return list(METHODS)


def method_parameters(name: str) -> set[str]:
    """Constructor parameters of method ``name`` (e.g. whether it takes ``random_state``)."""
    cls, factory = _lookup(name)
    params = set(inspect.signature(cls.__init__).parameters) - {"self"}
    if factory is _onestep:
        params.discard("reference_one_step")
    return params


def make_method(name: str, **params: Any) -> BaseImputer:
    """Build an unfitted imputation method by registry name.

    Parameters
    ----------
    name : str
        One of :func:`available_methods`.
    **params
        Constructor parameters of that method, e.g. ``n_clusters=16`` for ``"ul4m4"``
        or ``n_neighbors=10`` for ``"knn"``.

    Returns
    -------
    BaseImputer

    Raises
    ------
    ValueError
        For an unknown name.
    TypeError
        For a parameter the method does not take.
    """
    _, factory = _lookup(name)
    return factory(**params)


def _lookup(name: str) -> tuple[type[BaseImputer], Callable[..., BaseImputer]]:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; available: {', '.join(available_methods())}"
        ) from None
